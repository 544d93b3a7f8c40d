"""analyze(): every analysis in one JSON-ready dict, the object `backbench analyze --json` prints.

Top-level keys: the five sections ``latency_vs_batch``, ``memory_vs_params``,
``accuracy_density``, ``pareto``, ``speedup`` (each null when its data are absent, with the
reason under ``skipped``), plus ``input`` (what was read and used), ``notes`` (everything
dropped, filled or assumed) and ``skipped``. Each present section carries ``says``, a
sentence or two generated from its numbers. Values are plain JSON: no numpy types, and
NaN/inf become null.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from core.analysis.accuracy import accuracy_section
from core.analysis.data import AnalysisInput, coerce_input
from core.analysis.latency_batch import latency_section
from core.analysis.memory import check_memory, memory_section
from core.analysis.pareto import pareto_section
from core.analysis.speedup import speedup_section
from core.errors import DataError

log = logging.getLogger(__name__)

SECTIONS: tuple[str, ...] = (
    "latency_vs_batch",
    "memory_vs_params",
    "accuracy_density",
    "pareto",
    "speedup",
)


def to_jsonable(value: Any) -> Any:
    """Plain JSON values: numpy scalars to Python, NaN/inf to None, tuples to lists,
    mapping keys to str."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, np.ndarray, pd.Series)):
        return [to_jsonable(v) for v in (value.tolist() if hasattr(value, "tolist") else value)]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return number if math.isfinite(number) else None
    if value is None or isinstance(value, str):
        return value
    if value is pd.NA or value is pd.NaT:
        return None
    if hasattr(value, "value") and isinstance(value.value, str):  # a str Enum
        return value.value
    return str(value)


def _run_info(run: Any) -> dict[str, Any] | None:
    if run is None:
        return None
    if isinstance(run, str):
        return {"name": run}
    return {"id": getattr(run, "id", None), "name": getattr(run, "name", None)}


def analyze(
    data: pd.DataFrame | AnalysisInput,
    run: Any = None,
    baseline: str | None = None,
    *,
    memory: str = "model",
    exclude_disturbed: bool = False,
    names: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Run every analysis on long-schema data and return the JSON-ready result.

    ``run`` (a core.results.Run or a name) is recorded under ``input``; ``baseline``
    names the platform ("backend/device/precision") that speed-ups are relative to (the
    slowest by default). ``memory`` is the RSS figure that memory_vs_params fits: "model"
    (peak − baseline RSS, falling back to the process figure where the data lack it) or
    "process" (peak RSS). ``exclude_disturbed`` leaves out disturbed measurements (when
    ``data`` is a DataFrame; an AnalysisInput was already prepared). ``names`` maps the
    data's model names to zoo names where matching them by spelling does not (see
    ``core.analysis.data.prepare``). Raises UsageError for an unknown ``memory`` or a
    mapping to no zoo model, and DataError only when the input itself is unusable; a part
    that cannot be computed is null and named under ``skipped``.
    """
    check_memory(memory)
    inp = coerce_input(data, exclude_disturbed=exclude_disturbed, names=names)
    if baseline is not None and baseline not in inp.platforms:
        raise DataError(
            f"Baseline platform {baseline!r} is not in the data.",
            f"Use one of: {', '.join(inp.platforms)} (backend/device/precision).",
        )
    notes = list(inp.notes)
    skipped: dict[str, str] = {}
    result: dict[str, Any] = {}

    def with_notes(
        fn: Callable[[AnalysisInput], tuple[Any, ...]],
    ) -> Callable[[AnalysisInput], tuple[Any, str | None]]:
        def call(arg: AnalysisInput) -> tuple[Any, str | None]:
            section, reason, extra = fn(arg)
            notes.extend(extra)
            return section, reason

        return call

    builders: dict[str, Callable[[AnalysisInput], tuple[Any, str | None]]] = {
        "latency_vs_batch": with_notes(latency_section),
        "memory_vs_params": with_notes(lambda i: memory_section(i, memory)),
        "accuracy_density": accuracy_section,
        "pareto": with_notes(pareto_section),
        "speedup": with_notes(lambda i: speedup_section(i, baseline)),
    }
    for name in SECTIONS:
        try:
            section, reason = builders[name](inp)
        except (DataError, ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
            # One part's numerical trouble must not cost the user the other parts.
            log.warning("analysis %s failed: %s", name, exc, exc_info=True)
            section, reason = None, f"could not be computed: {exc}"
        result[name] = section
        if section is None:
            skipped[name] = reason or "no data"
    result["input"] = {
        "rows_read": inp.n_rows_read,
        "rows_used": int(len(inp.frame)),
        "rows_excluded_status": inp.n_excluded_status,
        "rows_dropped_missing": inp.n_dropped_missing,
        "rows_disturbed": inp.n_disturbed,
        "rows_excluded_disturbed": inp.n_excluded_disturbed,
        "memory": memory,
        "models": inp.models,
        "platforms": inp.platforms,
        "batch_sizes": inp.batch_sizes,
        "run": _run_info(run),
    }
    result["notes"] = notes
    result["skipped"] = skipped
    return to_jsonable(result)
