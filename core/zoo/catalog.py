"""The zoo catalogue: core/resources/zoo_catalog.json.

It holds every torchvision classification model's card (torchvision's published weight
metadata) and its measured Complexity, so that the zoo works where torch is not installed
(the GUI, an edge host with only OpenVINO). Reading it needs only the standard library.

``core.zoo.build_catalog`` regenerates it after a torchvision upgrade (a test compares
it with the live metadata).
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path
from typing import Any

from core.errors import BackbenchError
from core.paths import resources_dir

log = logging.getLogger(__name__)

CATALOG_FILE = "zoo_catalog.json"
CATALOG_FORMAT = 1

_REGENERATE_HINT = (
    "Reinstall backbench, or regenerate it with `python -m core.zoo.build_catalog --write`."
)


def catalog_path() -> Path:
    return resources_dir() / CATALOG_FILE


@functools.lru_cache(maxsize=4)
def _read(path: str) -> dict[str, dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise BackbenchError(f"The model catalogue {path} is missing.", _REGENERATE_HINT) from None
    except (OSError, ValueError) as exc:
        raise BackbenchError(
            f"The model catalogue {path} cannot be read: {exc}.", _REGENERATE_HINT
        ) from None
    if not isinstance(data, dict):
        data = {}
    models = data.get("models")
    if data.get("format") != CATALOG_FORMAT or not isinstance(models, dict):
        raise BackbenchError(f"The model catalogue {path} has an unknown format.", _REGENERATE_HINT)
    return models


def read_catalog(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Raw entries by model name: ``{"card": {...}, "complexity": {...}}``. Cached."""
    return _read(str(path or catalog_path()))
