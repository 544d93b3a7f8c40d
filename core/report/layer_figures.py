"""The report's per-layer figure: for each platform with per-layer profiles, every
profiled model's time split by layer type (stacked bars), with the end-to-end median of
the timed loop marked beside the sum of its layers, so the framework's overhead shows.

Built from core.results Measurements (core.report.layers), without pyplot.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from core.report.figures import _colors, _new_figure
from core.report.layers import by_type, platform_label, profiled

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from core.results import Measurement

TOP_TYPES = 8  # layer types coloured on their own; the rest are "other"
OTHER = "other types"


def figure_name(platform: str) -> str:
    """The file name (no suffix) of a platform's figure: layers_<platform, slugged>."""
    return "layers_" + re.sub(r"[^A-Za-z0-9]+", "_", platform).strip("_").lower()


def layer_type_figures(measurements: Sequence[Measurement]) -> dict[str, Figure]:
    """One figure per platform that has profiles, keyed by ``figure_name``; empty when
    no measurement carries a profile."""
    per_platform: dict[str, list[Measurement]] = defaultdict(list)
    for m in profiled(measurements):
        per_platform[platform_label(m)].append(m)
    return {
        figure_name(platform): layer_type_figure(platform, ms)
        for platform, ms in sorted(per_platform.items())
    }


def layer_type_figure(platform: str, measurements: Sequence[Measurement]) -> Figure:
    """Horizontal stacked bars, one per profiled case (model, batch) of ``platform``: its
    layers' time by type, and a black bar at its end-to-end median."""
    cases = sorted(profiled(measurements), key=lambda m: (m.case.model, m.case.batch_size))
    totals: dict[str, float] = defaultdict(float)
    per_case = []
    for m in cases:
        types = {t: ms for t, ms, _n in by_type(m)}
        per_case.append(types)
        for t, ms in types.items():
            totals[t] += ms
    ranked = sorted(totals, key=lambda t: -totals[t])
    shown = ranked[:TOP_TYPES] if len(ranked) > TOP_TYPES + 1 else ranked
    series = [*shown, OTHER] if len(shown) < len(ranked) else shown
    colors = dict(zip(series, _colors(len(series)), strict=True))
    if OTHER in colors:
        colors[OTHER] = (0.75, 0.75, 0.75, 1.0)

    figure = _new_figure(9.0, 2.2 + 0.5 * len(cases))
    ax = figure.add_subplot()
    labels = [f"{m.case.model} b{m.case.batch_size}" for m in cases]
    ys = list(range(len(cases)))
    left = [0.0] * len(cases)
    for name in series:
        if name == OTHER:
            widths = [sum(ms for t, ms in types.items() if t not in shown) for types in per_case]
        else:
            widths = [types.get(name, 0.0) for types in per_case]
        ax.barh(ys, widths, left=left, height=0.6, color=colors[name], label=name,
                edgecolor="white", linewidth=0.5)  # fmt: skip
        left = [a + b for a, b in zip(left, widths, strict=True)]
    e2e = [m.latency_ms_median for m in cases]
    marked = [(y, v) for y, v in zip(ys, e2e, strict=True) if v]
    if marked:
        ax.scatter([v for _y, v in marked], [y for y, _v in marked], marker="|", s=400, linewidths=2.5,
                   color="black", zorder=5, label="end-to-end median (timed loop)")  # fmt: skip
    span = max([*left, *(v for _y, v in marked)], default=1.0)
    for y, total, median in zip(ys, left, e2e, strict=True):
        text = f"layers {total:.3g} ms" + (f" · end-to-end {median:.3g} ms" if median else "")
        ax.text(max(total, median or 0.0) + span * 0.015, y, text, va="center", fontsize=8, color="#333")
    ax.set_yticks(ys, labels)
    ax.invert_yaxis()
    ax.set_xlim(0, span * 1.45)
    ax.set_xlabel("ms per inference (sum over the layers of each type)")
    ax.set_title(f"Where the time goes, by layer type: {platform}")
    ax.grid(axis="x", alpha=0.25)
    # Outside the axes, below: inside, it would cover the bars of some case.
    handles, names = ax.get_legend_handles_labels()
    figure.legend(handles, names, loc="outside lower center", fontsize=8, frameon=False,
                  ncols=min(5, len(names)))  # fmt: skip
    return figure
