"""Tests that need a real component of the machine (pyenv's CPython 3.10 with the
OpenVINO 2022.3 runtime, an OpenSSH server, dpkg-deb, systemd's tools).

Where the component is missing such a test is skipped with the reason, except under
``CI=true``: CI's machines have them all, so a missing one there is a broken set-up and
the test fails instead of passing silently as a skip.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def missing(reason: str) -> NoReturn:
    """Skip with ``reason``; fail with it under CI=true."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a missing real component fails the run)", pytrace=False)
    pytest.skip(reason)
