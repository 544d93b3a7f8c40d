"""Which memory figure the GUI's memory-vs-params view fits: the model's own memory (peak
RSS minus the baseline after the framework's imports, ``model_rss_mb``) or the whole
process's (``peak_rss_mb``).

core.analysis.memory fits one memory column, which it picks itself (device memory where
a GPU reports it, else ``peak_rss_mb``). So that the switch works with that core as it
is, each choice is fitted on a copy of the prepared input whose RSS columns hold only
that choice's figure: for the model's share, ``peak_rss_mb`` is replaced by
``model_rss_mb``; for the process figure, ``model_rss_mb`` and ``baseline_rss_mb`` are
emptied. Either way core sees one RSS figure and fits it. Results older than the
baseline have no ``model_rss_mb``: the model choice then falls back to the process
figure, and the axis says so.

No Qt here: the fit worker calls ``memory_choices`` on its thread.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

MODEL = "model"
PROCESS = "process"
CHOICES: tuple[str, ...] = (MODEL, PROCESS)
CHOICE_TEXT: dict[str, str] = {
    MODEL: "model memory (peak − baseline RSS)",
    PROCESS: "process memory (peak RSS)",
}
MODEL_COLUMN = "model_rss_mb"
BASELINE_COLUMN = "baseline_rss_mb"
PROCESS_COLUMN = "peak_rss_mb"
DEVICE_COLUMN = "peak_device_mem_mb"
MODEL_MEMORY_TEXT = "model memory"
PROCESS_MEMORY_TEXT = "peak RSS"  # how core's sentences name the process figure


@dataclass(frozen=True, slots=True)
class MemoryChoices:
    """The memory-vs-params section fitted for each choice (None where it could not be),
    why not, and whether any row has the model's share at all."""

    sections: Mapping[str, dict[str, Any] | None] = field(default_factory=dict)
    reasons: Mapping[str, str] = field(default_factory=dict)
    has_model_memory: bool = False


def numeric(frame: pd.DataFrame, column: str) -> pd.Series:
    """``frame[column]`` as floats, NaN where missing or not a number (old files lack
    the column altogether)."""
    if column not in frame.columns:
        return pd.Series(np.nan, index=frame.index, dtype=float)
    values = frame[column]
    if pd.api.types.is_bool_dtype(values):
        return pd.Series(np.nan, index=frame.index, dtype=float)
    return pd.to_numeric(values, errors="coerce").astype(float)


def has_model_memory(frame: pd.DataFrame) -> bool:
    return bool(numeric(frame, MODEL_COLUMN).notna().any())


def _as_model_memory(section: dict[str, Any]) -> dict[str, Any]:
    """Name a section fitted on model memory (in the ``peak_rss_mb`` slot) as such."""

    def rename(column: Any) -> Any:
        return MODEL_COLUMN if column in (PROCESS_COLUMN, MODEL_COLUMN) else column

    out = dict(section)
    out["fits"] = [{**f, "memory_column": rename(f.get("memory_column"))} for f in section.get("fits", [])]
    out["per_platform"] = {
        name: {**data, "memory_column": rename(data.get("memory_column"))}
        for name, data in (section.get("per_platform") or {}).items()
    }
    out["says"] = str(section.get("says", "")).replace(PROCESS_MEMORY_TEXT, MODEL_MEMORY_TEXT)
    out["y"] = "model memory: peak RSS minus the baseline after the framework's imports (MB)"
    return out


def memory_choices(inp: Any) -> MemoryChoices:
    """Fit memory against params for each choice, on a prepared ``AnalysisInput``."""
    from core.analysis.memory import memory_section

    frame: pd.DataFrame = inp.frame
    model = numeric(frame, MODEL_COLUMN)
    process_frame = frame.assign(
        **{MODEL_COLUMN: np.nan, BASELINE_COLUMN: np.nan, PROCESS_COLUMN: numeric(frame, PROCESS_COLUMN)}
    )
    frames = {PROCESS: process_frame}
    if model.notna().any():
        frames[MODEL] = frame.assign(**{PROCESS_COLUMN: model, MODEL_COLUMN: model})
    sections: dict[str, dict[str, Any] | None] = {}
    reasons: dict[str, str] = {}
    for choice, data in frames.items():
        try:
            section, reason, _notes = memory_section(replace(inp, frame=data))
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
            # analyze() treats a section's numerical trouble the same way: that part only.
            log.warning("memory fit (%s) failed: %s", choice, exc, exc_info=True)
            section, reason = None, f"could not be computed: {exc}"
        if section is not None and choice == MODEL:
            section = _as_model_memory(section)
        sections[choice] = section
        if section is None:
            reasons[choice] = reason or "no data"
    if MODEL not in frames:
        reasons[MODEL] = "these results have no baseline RSS (measured before it was recorded)"
    return MemoryChoices(sections, reasons, MODEL in frames)


def axis_label(column: str, batch: Any, *, fallback: bool = False) -> str:
    """The y axis of the memory plot: which figure, at which batch size, in MB."""
    at = f" at batch {batch}" if batch is not None else ""
    if column == DEVICE_COLUMN:
        return f"peak device memory{at} (MB)"
    if column == MODEL_COLUMN:
        return f"model memory{at}: peak − baseline RSS (MB)"
    if fallback:
        return f"process memory{at}: peak RSS (MB); no baseline RSS in these data"
    return f"process memory{at}: peak RSS (MB)"


def short_name(column: str) -> str:
    """The figure's name in a tool tip."""
    return {
        DEVICE_COLUMN: "peak device memory",
        MODEL_COLUMN: "model memory",
    }.get(column, "peak RSS")
