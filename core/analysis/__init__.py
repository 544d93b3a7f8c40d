"""Analysis of long-schema results: the study's figures, reproduced and taken further.

- ``load``: a store, CSV or JSON file -> the long DataFrame (load_store, load_csv_file,
  load_json_file, load_file, load_csv), for the CLI and the GUI.
- ``data``: prepare -> AnalysisInput (validated, zoo-filled); without_disturbed.
- ``accuracy``: top-1/top-5 vs GFLOPs, accuracy density with Wilson error bars.
- ``latency_batch``: clusters of per-image-time curves, AICc-chosen curve with a band.
- ``pareto``: top-1 vs FPS at batch 1 and the Pareto front, per platform.
- ``memory``: memory vs params (the model's share of RSS by default), one or two lines
  by BIC.
- ``speedup``: per-image time ratios between platforms.
- ``summary.analyze``: all of the above as one JSON-ready dict.

Names are resolved lazily so that ``import core.analysis`` does not pull in scipy,
scikit-learn and statsmodels until an analysis runs.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "AnalysisInput": "core.analysis.data",
    "load_csv": "core.analysis.load",
    "prepare": "core.analysis.data",
    "without_disturbed": "core.analysis.data",
    "MEMORY_CHOICES": "core.analysis.memory",
    "REQUIRED_COLUMNS": "core.analysis.data",
    "analyze": "core.analysis.summary",
    "to_jsonable": "core.analysis.summary",
    "SECTIONS": "core.analysis.summary",
    "wilson_interval": "core.analysis.accuracy",
    "fit_curve": "core.analysis.latency_batch",
    "cluster_curves": "core.analysis.latency_batch",
    "fit_lines": "core.analysis.memory",
    "pareto_front": "core.analysis.pareto",
    "speedup_table": "core.analysis.speedup",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
