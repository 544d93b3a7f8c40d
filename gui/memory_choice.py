"""Which memory figure the GUI's memory-vs-params view shows: the model's own memory (peak
RSS minus the baseline after the framework's imports, ``model_rss_mb``) or the whole
process's (``peak_rss_mb``).

core.analysis.memory fits either (``memory_section(inp, memory)``) and, where the data
lack the model's share (results from before the baseline was recorded), falls back to
the process figure and marks the platform's ``memory_fallback``. The fit worker fits
both figures once, so that the switch redraws at once instead of refitting; the axis
names the figure shown, and says when the model's share had to fall back.

No Qt here: the fit worker calls ``memory_choices`` on its thread. core.analysis (and
scipy with it) is imported only when a fit runs or a label is made, so opening the
window stays quick.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# core.analysis.memory.MEMORY_CHOICES, by name (tests/gui checks they agree).
MODEL = "model"
PROCESS = "process"
CHOICES: tuple[str, ...] = (MODEL, PROCESS)
CHOICE_TEXT: dict[str, str] = {
    MODEL: "model memory (peak − baseline RSS)",
    PROCESS: "process memory (peak RSS)",
}
MODEL_COLUMN = "model_rss_mb"
PROCESS_COLUMN = "peak_rss_mb"
DEVICE_COLUMN = "peak_device_mem_mb"
FALLBACK_NOTE = "no baseline RSS in these data"


@dataclass(frozen=True, slots=True)
class MemoryChoices:
    """The memory-vs-params section fitted for each choice (None where it could not be)
    and why not."""

    sections: Mapping[str, dict[str, Any] | None] = field(default_factory=dict)
    reasons: Mapping[str, str] = field(default_factory=dict)


def memory_choices(inp: Any) -> MemoryChoices:
    """Fit memory against params for each memory figure, on a prepared ``AnalysisInput``."""
    from core.analysis.memory import memory_section

    sections: dict[str, dict[str, Any] | None] = {}
    reasons: dict[str, str] = {}
    for choice in CHOICES:
        try:
            section, reason, _notes = memory_section(inp, choice)
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
            # analyze() treats a section's numerical trouble the same way: that part only.
            log.warning("memory fit (%s) failed: %s", choice, exc, exc_info=True)
            section, reason = None, f"could not be computed: {exc}"
        sections[choice] = section
        if section is None:
            reasons[choice] = reason or "no data"
    return MemoryChoices(sections, reasons)


def axis_label(column: str, *, fallback: bool = False) -> str:
    """The y axis of the memory plot: which figure, in MB, and whether the model's share
    fell back to the process figure."""
    from core.analysis.memory import memory_label

    label = memory_label(column)
    return f"{label}; {FALLBACK_NOTE}" if fallback else label


def short_name(column: str) -> str:
    """The figure's name in a tool tip."""
    return {DEVICE_COLUMN: "peak device memory", MODEL_COLUMN: "model memory"}.get(
        column, "peak RSS"
    )
