"""Shared by the spec files (which PyInstaller runs with this folder as SPECPATH)."""

from __future__ import annotations

import re

# Never wanted in a bundle: test suites, GUI toolkits other than Qt, notebooks.
EXCLUDES = [
    "tkinter", "_tkinter", "turtle", "turtledemo", "idlelib", "pydoc_data", "lib2to3",
    "IPython", "ipykernel", "jupyter_client", "notebook", "pytest", "_pytest", "hypothesis",
    "PyQt5", "PyQt6", "PySide2", "wx", "gi", "sphinx", "pip",
]  # fmt: skip

# Modules of test suites that hooks collect wholesale (numpy.*.tests, sklearn.*.tests...).
_TESTS = re.compile(r"(^|\.)(tests|conftest)(\.|$)")
# Files of the same under a package folder.
_TEST_FILES = re.compile(r"(^|/)tests/")


def keep_module(name: str) -> bool:
    """Drop the suites of tests (``*.tests.*``); ``numpy.testing``, ``pandas.testing`` stay:
    their packages import them."""
    return not _TESTS.search(name)


def strip_tests(analysis, drop_data=()) -> None:  # noqa: ANN001 - PyInstaller's Analysis
    """Drop test modules and data files from an Analysis, and data under ``drop_data``."""
    analysis.pure = [entry for entry in analysis.pure if keep_module(entry[0])]
    analysis.datas = [
        entry
        for entry in analysis.datas
        if not _TEST_FILES.search(entry[0]) and not entry[0].startswith(tuple(drop_data))
    ]
