"""Default locations, following the XDG base-directory spec."""

from __future__ import annotations

import os
from pathlib import Path


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var)
    base = Path(value) if value and os.path.isabs(value) else Path.home() / fallback
    return base / "backbench"


def data_dir() -> Path:
    """Where the default store lives: ``$XDG_DATA_HOME/backbench``."""
    return _xdg("XDG_DATA_HOME", ".local/share")


def cache_dir() -> Path:
    """Converted models (ONNX, OpenVINO IR) are cached here: ``$XDG_CACHE_HOME/backbench``."""
    return _xdg("XDG_CACHE_HOME", ".cache")


def config_dir() -> Path:
    """The user's settings (worker runtimes): ``$XDG_CONFIG_HOME/backbench``."""
    return _xdg("XDG_CONFIG_HOME", ".config")


def default_db_path() -> Path:
    return data_dir() / "results.db"


def resources_dir() -> Path:
    """core/resources: suites and the zoo catalogue, package data that ships in the wheel
    and in the frozen bundles."""
    return Path(__file__).resolve().parent / "resources"
