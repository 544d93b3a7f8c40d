"""Analysis plots, part 2: the fitted ones. Time per image vs batch size (clusters,
centroids, fitted curves, 95% prediction band) and memory vs parameters (fitted lines,
the model's own memory or the whole process's)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QLabel, QVBoxLayout, QWidget

from gui.memory_choice import (
    CHOICE_TEXT,
    CHOICES,
    MODEL,
    MODEL_COLUMN,
    PROCESS,
    PROCESS_COLUMN,
    MemoryChoices,
    axis_label,
    short_name,
)
from gui.plot_axes import Log2Axis, LogAxis, log_wanted
from gui.plot_base import AnalysisPlot, color, fmt, tip_text

MB_PER_MPARAM = 1e6 * 4.0 / 2**20  # fp32 weights: 4 bytes per parameter, MB = 2**20 bytes


def platform_sentence(says: str, platform: str, platforms: list[str]) -> str:
    """The part of a multi-platform "says" that starts "On <platform> ", else all of it."""
    starts = sorted((says.find(f"On {p} "), p) for p in platforms if says.find(f"On {p} ") >= 0)
    for i, (start, name) in enumerate(starts):
        if name == platform:
            end = starts[i + 1][0] if i + 1 < len(starts) else len(says)
            return says[start:end].strip()
    return says


class LatencyBatchPlot(AnalysisPlot):
    """Per-image time against batch size on one platform."""

    key = "latency"
    title = "Latency vs batch"
    section = "latency_vs_batch"
    platform_key = "per_platform"

    def platforms(self, section: Mapping[str, Any]) -> list[str]:
        per = section.get("per_platform")
        if per:
            return [name for name, value in per.items() if value]
        return [str(section.get("platform", ""))]

    def default_platform(self, section: Mapping[str, Any], names: list[str]) -> str:
        main = str(section.get("platform", ""))
        return main if main in names else (names[0] if names else "")

    def _data(self, section: Mapping[str, Any]) -> Mapping[str, Any] | None:
        per = section.get("per_platform")
        if per:
            return per.get(self.platform())
        return section

    def _draw(self, section: Mapping[str, Any]) -> None:
        data = self._data(section)
        if not data:
            return
        curves: Mapping[str, Mapping[str, float]] = data.get("curves") or {}
        clusters: Mapping[str, int] = data.get("clusters") or {}
        n_clusters = int(data.get("n_clusters") or 1)
        times = [v for curve in curves.values() for v in curve.values()]
        log_y = log_wanted(times)
        floor = min(times) / 3.0 if times else 1e-6
        x_axis = Log2Axis("bottom")
        x_axis.batch_sizes = [int(b) for b in data.get("batch_sizes", [])]
        self.set_axes(bottom=x_axis, left=LogAxis("left") if log_y else None)

        def y_of(values: Any) -> np.ndarray:
            arr = np.asarray(values, dtype=float)
            # A log axis cannot show 0 or less; bands are positive now, but keep the plot safe.
            return np.log10(np.maximum(arr, floor)) if log_y else arr

        self.add_legend()
        by_cluster: dict[int, list[tuple[str, int, float]]] = {}
        for model, curve in curves.items():
            label = clusters.get(model, -1)
            xs = [math.log2(int(b)) for b in curve]
            ys = y_of(list(curve.values()))
            line_color = color(label, 70) if label >= 0 else pg.mkColor(150, 150, 150, 70)
            self.plot.addItem(pg.PlotCurveItem(xs, ys, pen=pg.mkPen(line_color, width=1)))
            for b, v in curve.items():
                by_cluster.setdefault(label, []).append((model, int(b), float(v)))
        details = {int(d["label"]): d for d in data.get("cluster_details", [])}
        for label in sorted(by_cluster):
            points = by_cluster[label]
            members = len({m for m, _, _ in points})
            name = f"cluster {label} ({members} models)" if label >= 0 else "not clustered"
            fit = details.get(label, {}).get("fit") if n_clusters > 1 else None
            if fit:
                name += f": {fit['formula']}, R² (log) {fit['r2']:.2f}"
            tips = [
                tip_text(
                    m,
                    [
                        ("batch", b),
                        ("per image", f"{fmt(v)} ms"),
                        ("cluster", label if label >= 0 else "none"),
                    ],
                )
                for m, b, v in points
            ]
            brush = color(label, 170) if label >= 0 else pg.mkBrush(150, 150, 150, 170)
            self.scatter(
                f"cluster {label}", [math.log2(b) for _, b, _ in points], y_of([v for _, _, v in points]),
                [m for m, _, _ in points], tips, size=7, brush=brush, pen=pg.mkPen(None), legend=name,
            )  # fmt: skip
        for label, detail in sorted(details.items()):
            centroids = detail.get("centroids") or {}
            bs = [int(b) for b in centroids]
            tips = [
                tip_text(
                    f"cluster {label} centroid",
                    [
                        ("batch", b),
                        ("mean per image", f"{fmt(v)} ms"),
                        ("models", len(detail.get("models", []))),
                    ],
                )
                for b, v in centroids.items()
            ]
            self.scatter(
                f"centroids {label}", [math.log2(b) for b in bs], y_of(list(centroids.values())),
                [f"cluster {label} centroid"] * len(bs), tips, size=13, symbol="d",
                brush=color(label), pen=pg.mkPen("#111", width=1.2),
            )  # fmt: skip
            if n_clusters > 1 and detail.get("fit"):
                self._draw_fit(detail["fit"], color(label), y_of, band=True, dashed=False)
        overall = data.get("fit")
        if overall:
            pooled = n_clusters > 1
            self._draw_fit(overall, pg.mkColor("#111"), y_of, band=not pooled, dashed=pooled,
                           name=f"all models: {overall['formula']}, R² (log) {overall['r2']:.2f}")  # fmt: skip
        band = pg.BarGraphItem(x=[0], height=[0], width=0, brush=pg.mkBrush(120, 120, 120, 70))
        self.plot.legend.addItem(band, "95% prediction band")
        self.label_axes(
            "batch size (log scale)",
            "time per image (ms)" + (", log scale" if log_y else ""),
            f"Time per image vs batch size on {self.platform() or data.get('platform', '')}",
        )
        if times:
            self.plot.setYRange(
                float(y_of([min(times)])[0]), float(y_of([max(times)])[0]), padding=0.08
            )
        self.place_legend()
        self.says_label.setText(str(data.get("says") or ""))
        fit_text = (
            f"Curve: {overall['formula']} chosen by {overall.get('criterion', 'AICc')}; "
            f"band: {overall['band'].get('method', '')}. "
            if overall
            else f"No curve: {data.get('fit_skipped', '')}. "
        )
        clustering = data.get("clustering") or {}
        self.detail_label.setText(
            fit_text
            + f"Clusters: {clustering.get('choice', '')} ({clustering.get('criterion', '')})."
        )
        self.table = pd.DataFrame(
            [
                {
                    "platform": self.platform(),
                    "model": m,
                    "batch_size": b,
                    "per_image_ms": v,
                    "cluster": label,
                }
                for label, points in by_cluster.items()
                for m, b, v in points
            ]
        )

    def _draw_fit(self, fit: Mapping[str, Any], line_color: Any, y_of: Any, *, band: bool,
                  dashed: bool, name: str | None = None) -> None:  # fmt: skip
        grid = fit.get("band") or {}
        xs = np.log2(np.asarray(grid.get("batch_size", []), dtype=float))
        if xs.size == 0:
            return
        style = Qt.PenStyle.DashLine if dashed else Qt.PenStyle.SolidLine
        curve = pg.PlotDataItem(
            xs, y_of(grid["fit_ms"]), pen=pg.mkPen(line_color, width=2, style=style), name=name
        )
        self.plot.addItem(curve)
        if band:
            lower = pg.PlotCurveItem(xs, y_of(grid["lower_ms"]), pen=pg.mkPen(None))
            upper = pg.PlotCurveItem(xs, y_of(grid["upper_ms"]), pen=pg.mkPen(None))
            fill_color = pg.mkColor(line_color)
            fill_color.setAlpha(45)
            fill = pg.FillBetweenItem(lower, upper, brush=pg.mkBrush(fill_color))
            self.plot.addItem(lower)
            self.plot.addItem(upper)
            self.plot.addItem(fill)
            self.bands = [*getattr(self, "bands", []), fill]


class MemoryPlot(AnalysisPlot):
    """Memory against parameters (MB of fp32 weights) with the fitted line(s).

    By default the memory is the model's own (peak RSS minus the baseline after the
    framework's imports); a switch shows the whole process's peak RSS instead. A GPU
    platform with device memory shows that, whichever RSS figure is chosen, as core picks
    it. Data without a baseline (older results) show peak RSS, and the axis says so.
    """

    key = "memory"
    title = "Memory vs params"
    section = "memory_vs_params"
    platform_key = "per_platform"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._choices = MemoryChoices()
        self._source: Mapping[str, Any] = {}
        self.fallback = False  # the model's share was asked for, the data lack it: peak RSS
        self.memory_combo = QComboBox()
        for choice in CHOICES:
            self.memory_combo.addItem(CHOICE_TEXT[choice], choice)
        self.memory_combo.setToolTip(
            "Model memory: peak RSS minus the RSS after the framework's imports, before the "
            "model loads (what the model itself costs). Process memory: the whole worker "
            "process's peak RSS, framework included."
        )
        self.memory_combo.currentIndexChanged.connect(lambda _i: self._choice_changed())
        self.controls_layout.insertWidget(0, QLabel("Memory:"))
        self.controls_layout.insertWidget(1, self.memory_combo)
        # The switch sits above the stack, so that it stays in reach when one memory
        # figure has no fit and its reason shows in the plot's place.
        self.plot_layout.removeWidget(self._controls)
        column = QWidget()
        column_layout = QVBoxLayout(column)
        column_layout.setContentsMargins(0, 0, 0, 0)
        self.layout().replaceWidget(self.stack, column)
        column_layout.addWidget(self._controls)
        column_layout.addWidget(self.stack, 1)
        self._controls.setVisible(True)
        self._drawing_choice = False

    # ---- the memory figure ------------------------------------------------------------

    def memory_choice(self) -> str:
        return str(self.memory_combo.currentData())

    def set_memory_choice(self, choice: str) -> None:
        """Show ``choice`` (memory_choice.MODEL or PROCESS), as the switch does."""
        index = self.memory_combo.findData(choice)
        if index < 0:
            raise ValueError(f"unknown memory choice {choice!r}; use one of {', '.join(CHOICES)}")
        self.memory_combo.setCurrentIndex(index)

    def set_memory_choices(self, choices: MemoryChoices | None) -> None:
        """The section fitted for each memory figure (gui.memory_choice), for the switch.
        None: only analyze()'s own section (e.g. an analysis computed elsewhere)."""
        self._choices = choices or MemoryChoices()
        self.memory_combo.setEnabled(bool(self._choices.sections))

    def set_analysis(self, analysis: Mapping[str, Any]) -> None:
        self._source = analysis
        chosen, reason = self._chosen_section(analysis)
        view = dict(analysis)
        view[self.section] = chosen
        if reason:
            view["skipped"] = {**(analysis.get("skipped") or {}), self.section: reason}
        self._drawing_choice = True
        try:
            super().set_analysis(view)
        finally:
            self._drawing_choice = False

    def _chosen_section(self, analysis: Mapping[str, Any]) -> tuple[Any, str | None]:
        sections, reasons = self._choices.sections, self._choices.reasons
        if not sections:
            return analysis.get(self.section), None
        choice = self.memory_choice()
        section = sections.get(choice)
        if section is None:
            why = reasons.get(choice) or "no data"
            other = f"; switch to {CHOICE_TEXT[PROCESS]} above" if choice == MODEL else ""
            return None, f"{CHOICE_TEXT[choice]}: {why}{other}"
        return section, None

    def _choice_changed(self) -> None:
        if self._source:
            self.set_analysis(self._source)

    def _fill_platforms(self, section: Mapping[str, Any]) -> None:
        super()._fill_platforms(section)
        several = self.platform_combo.count() > 1
        self._platform_label.setVisible(several)
        self.platform_combo.setVisible(several)
        self._controls.setVisible(True)  # the memory switch stays in reach

    def show_skipped(self, reason: str) -> None:
        if not self._drawing_choice:  # no analysis at all: the switch has nothing to redraw
            self._source = {}
        super().show_skipped(reason)

    def axis_text(self) -> str:
        return str(self.plot.getAxis("left").labelText)

    # ---- drawing ----------------------------------------------------------------------

    def _draw(self, section: Mapping[str, Any]) -> None:
        platform = self.platform()
        data = (section.get("per_platform") or {}).get(platform)
        if not data:
            return
        self.set_axes()
        fits = [f for f in section.get("fits", []) if f.get("platform") == platform]
        points = data.get("points", [])
        column = str(data.get("memory_column", PROCESS_COLUMN))
        # core falls back to the process figure where the model's share is missing.
        self.fallback = bool(data.get("memory_fallback"))
        what = short_name(column)
        self.add_legend()
        for k, fit in enumerate(fits):
            line_points = [p for p in points if p.get("line") == fit.get("line", k)]
            xs_all = [p["params_mb"] for p in points]
            low, high = min(xs_all), max(xs_all)
            pad = 0.04 * (high - low)
            xs = np.array([max(low - pad, 0.0), high + pad])
            ys = fit["intercept"] + fit["slope"] * xs
            label = (
                f"line {k}: {fit['slope']:.2f} MB per MB of weights "
                f"({fit['slope_mb_per_mparam']:.2f} MB per M params), R² {fit['r2']:.3f}"
            )
            self.plot.addItem(pg.PlotDataItem(xs, ys, pen=pg.mkPen(color(k), width=2), name=label))
            tips = [
                tip_text(
                    p["model"],
                    [
                        ("params", f"{fmt(p['params_m'])} M ({fmt(p['params_mb'])} MB fp32)"),
                        (what, f"{fmt(p['memory_mb'])} MB"),
                        ("line", p.get("line")),
                        ("line fit", f"{fmt(fit['intercept'] + fit['slope'] * p['params_mb'])} MB"),
                    ],
                )  # fmt: skip
                for p in line_points
            ]
            self.scatter(
                f"line {k}", [p["params_mb"] for p in line_points], [p["memory_mb"] for p in line_points],
                [p["model"] for p in line_points], tips, size=10, brush=color(k, 190),
                pen=pg.mkPen("#222", width=0.8),
            )  # fmt: skip
        self.plot.showAxis("top")
        top = self.plot.getAxis("top")
        top.setScale(1.0 / MB_PER_MPARAM)
        top.setStyle(showValues=True)
        top.setGrid(False)  # its ticks fall between the bottom axis's grid lines
        self.plot.setLabel("top", "parameters (millions)", **{"font-size": "9pt", "color": "#555"})
        self.label_axes(
            "parameters (MB of fp32 weights, 4 bytes each)",
            axis_label(column, fallback=self.fallback),
            f"{what[:1].upper()}{what[1:]} at batch {data.get('batch_size', 1)} on {platform}",
        )
        self.place_legend()
        self.says_label.setText(
            platform_sentence(
                str(section.get("says", "")), platform, list(section.get("per_platform") or {})
            )
        )
        detail = f"{data.get('choice', '')}. Selection: {section.get('selection', '')}."
        if column == MODEL_COLUMN:
            detail += (
                " Model memory is the worker's peak RSS minus its RSS after the framework's "
                "imports, before the model loaded."
            )
        elif self.fallback:
            detail += f" {data['memory_fallback'][:1].upper()}{data['memory_fallback'][1:]}."
        self.detail_label.setText(detail)
        self.table = pd.DataFrame(
            [{"platform": platform, "memory_column": column, **p} for p in points]
        )
