"""Analysis plots, part 1: accuracy vs GFLOPs, accuracy density, accuracy vs FPS with the
Pareto front, and the cross-platform speed-up. Each draws one section of analyze()'s dict
(see core/analysis); the fitted ones (latency vs batch, memory) are in plots_fits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyqtgraph as pg

from core.analysis.data import MEASURED, REFERENCE
from gui.plot_axes import LogAxis, log_wanted
from gui.plot_base import AnalysisPlot, add_text, color, fmt, tip_text

BUBBLE_MIN_PX = 7.0
BUBBLE_MAX_PX = 42.0


def _finite(value: Any) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)


def _interval(bounds: Any) -> str:
    if isinstance(bounds, (list, tuple)) and len(bounds) == 2 and all(_finite(b) for b in bounds):
        return f"{fmt(bounds[0], 4)} – {fmt(bounds[1], 4)} %"
    return "none (a published figure, or no image count)"


class AccuracyPlot(AnalysisPlot):
    """Top-1 and top-5 against GFLOPs; bubble area proportional to parameters.

    Measured accuracies are filled bubbles (top-1 with its 95% CI as error bars);
    published reference ones are hollow, and the legend names each."""

    key = "accuracy"
    title = "Accuracy vs FLOPs"
    section = "accuracy_density"

    def _draw(self, section: Mapping[str, Any]) -> None:
        models = [
            m for m in section.get("models", []) if _finite(m.get("gflops")) and m.get("gflops") > 0
        ]
        missing = sorted(m["model"] for m in section.get("models", []) if m not in models)
        params = [m["params_m"] for m in models if _finite(m.get("params_m"))]
        biggest = max(params) if params else 1.0
        log_x = log_wanted([m["gflops"] for m in models])
        self.set_axes(bottom=LogAxis("bottom") if log_x else None)

        def x_of(m: Mapping[str, Any]) -> float:
            return math.log10(m["gflops"]) if log_x else float(m["gflops"])

        def size_of(m: Mapping[str, Any]) -> float:
            p = m.get("params_m")
            if not _finite(p):
                return BUBBLE_MIN_PX
            return BUBBLE_MIN_PX + (BUBBLE_MAX_PX - BUBBLE_MIN_PX) * math.sqrt(p / biggest)

        self.add_legend()
        self.error_bars: pg.ErrorBarItem | None = None
        with_ci = [m for m in models if m.get("accuracy_source") == MEASURED and _finite(m.get("top1"))
                   and m.get("top1_ci95")]  # fmt: skip
        if with_ci:
            top1 = np.array([m["top1"] for m in with_ci], dtype=float)
            self.error_bars = pg.ErrorBarItem(
                x=np.array([x_of(m) for m in with_ci]), y=top1,
                bottom=top1 - np.array([m["top1_ci95"][0] for m in with_ci], dtype=float),
                top=np.array([m["top1_ci95"][1] for m in with_ci], dtype=float) - top1,
                beam=0.0, pen=pg.mkPen(color(0), width=1.3),
            )  # fmt: skip
            self.plot.addItem(self.error_bars)
        series = []
        for k, (column, label) in enumerate((("top1", "top-1"), ("top5", "top-5"))):
            measured = [m for m in models if _finite(m.get(column)) and m.get("accuracy_source") == MEASURED]
            published = [m for m in models if _finite(m.get(column)) and m.get("accuracy_source") != MEASURED]
            series.append((column, k, measured, f"{label}, measured", True))
            series.append((f"{column} reference", k, published, f"{label}, {REFERENCE}", False))
        for name, k, rows, legend, filled in series:
            if not rows:
                continue
            column = name.split()[0]
            tips = [
                tip_text(
                    m["model"],
                    [
                        ("GFLOPs per image", fmt(m["gflops"])),
                        ("params", f"{fmt(m.get('params_m'))} M"),
                        ("top-1", f"{fmt(m.get('top1'), 4)} %"),
                        ("top-5", f"{fmt(m.get('top5'), 4)} %"),
                        ("top-1 95% CI", _interval(m.get("top1_ci95"))),
                        ("accuracy", m.get("accuracy_source") or "unknown"),
                    ],
                )  # fmt: skip
                for m in rows
            ]
            self.scatter(
                name, [x_of(m) for m in rows], [float(m[column]) for m in rows],
                [m["model"] for m in rows], tips, size=[size_of(m) for m in rows],
                brush=color(k, 120) if filled else pg.mkBrush(255, 255, 255, 0),
                pen=pg.mkPen(color(k), width=1.2 if filled else 2.0), legend=legend,
            )  # fmt: skip
        self.label_axes(
            "GFLOPs per image (FLOPs = 2 × MACs)" + (", log scale" if log_x else ""),
            "ImageNet accuracy (%)",
            "Accuracy vs complexity (bubble area ∝ parameters)",
        )
        self.place_legend()
        with_params = [m for m in models if _finite(m.get("params_m"))]
        lines = [
            f"Accuracy: {section.get('accuracy_source', 'unknown')}. Filled: measured "
            f"(error bars: 95% CI); hollow: {REFERENCE}, published, not measured. Measured "
            "accuracy per platform is in the Measured accuracy tab."
        ]
        if with_params:
            small = min(with_params, key=lambda m: m["params_m"])
            large = max(with_params, key=lambda m: m["params_m"])
            lines.append(
                f"Bubble area ∝ parameters: from {fmt(small['params_m'])} M ({small['model']}) "
                f"to {fmt(large['params_m'])} M ({large['model']})."
            )
        if missing:
            lines.append(f"Not drawn (no FLOPs): {', '.join(missing)}.")
        self.detail_label.setText(" ".join(lines))
        self.table = pd.DataFrame(
            [
                {
                    k: m.get(k)
                    for k in ("model", "gflops", "params_m", "top1", "top5", "accuracy_source")
                }
                for m in models
            ]
        )


class DensityPlot(AnalysisPlot):
    """Accuracy density (top-1 % per million parameters) per model, with 95% error bars."""

    key = "density"
    title = "Accuracy density"
    section = "accuracy_density"

    def _draw(self, section: Mapping[str, Any]) -> None:
        self.set_axes()
        models = [m for m in section.get("models", []) if _finite(m.get("density"))]
        n = len(models)
        ys = [float(n - 1 - i) for i in range(n)]  # the densest model on top
        widths = [float(m["density"]) for m in models]
        bars = pg.BarGraphItem(
            x0=0, y=ys, height=0.7, width=widths, brush=color(0, 150), pen=pg.mkPen(color(0))
        )
        self.plot.addItem(bars)
        self.bars = bars
        with_ci = [(y, m) for y, m in zip(ys, models, strict=True) if m.get("density_ci95")]
        self.error_bars: pg.ErrorBarItem | None = None
        if with_ci:
            d = np.array([m["density"] for _, m in with_ci], dtype=float)
            low = np.array([m["density_ci95"][0] for _, m in with_ci], dtype=float)
            high = np.array([m["density_ci95"][1] for _, m in with_ci], dtype=float)
            self.error_bars = pg.ErrorBarItem(
                x=d, y=np.array([y for y, _ in with_ci]), left=d - low, right=high - d,
                beam=0.25, pen=pg.mkPen("#222", width=1.3),
            )  # fmt: skip
            self.plot.addItem(self.error_bars)
        tips = []
        for m in models:
            ci = m.get("density_ci95")
            rows = [
                ("density", f"{fmt(m['density'])} top-1 % per M params"),
                ("95% CI", f"{fmt(ci[0])} – {fmt(ci[1])}" if ci else "none (no sample size)"),
                ("top-1", f"{fmt(m.get('top1'), 4)} %"), ("params", f"{fmt(m.get('params_m'))} M"),
                ("accuracy", m.get("accuracy_source") or "unknown"),
            ]  # fmt: skip
            tips.append(tip_text(m["model"], rows))
        self.scatter(
            "density", widths, ys, [m["model"] for m in models], tips, size=8,
            brush=pg.mkBrush("#222"), pen=pg.mkPen(None),
        )  # fmt: skip
        self.plot.getAxis("left").setTicks(
            [[(y, m["model"]) for y, m in zip(ys, models, strict=True)]]
        )
        self.plot.showGrid(x=True, y=False, alpha=0.15)
        self.label_axes(
            "accuracy density (top-1 % per million parameters)",
            "",
            "Accuracy density, densest first",
        )
        self.plot.setYRange(-0.8, n - 0.2, padding=0)
        unit_note = f"Error bars: {section.get('error_bars', 'none')}."
        missing = section.get("missing_params") or []
        if missing:
            unit_note += f" No parameter count: {', '.join(missing)}."
        self.detail_label.setText(unit_note)
        self.table = pd.DataFrame(
            [
                {
                    "model": m["model"],
                    "density": m["density"],
                    "density_low": (m.get("density_ci95") or [None, None])[0],
                    "density_high": (m.get("density_ci95") or [None, None])[1],
                    "top1": m.get("top1"),
                    "params_m": m.get("params_m"),
                    "accuracy_source": m.get("accuracy_source"),
                }  # fmt: skip
                for m in models
            ]
        )


class ParetoPlot(AnalysisPlot):
    """Top-1 against FPS at batch 1, one platform at a time, the Pareto front joined."""

    key = "pareto"
    title = "Accuracy vs FPS"
    section = "pareto"
    platform_key = "platforms"

    def _draw(self, section: Mapping[str, Any]) -> None:
        data = (section.get("platforms") or {}).get(self.platform())
        if not data:
            return
        points = data["points"]
        log_x = log_wanted([p["fps"] for p in points])
        self.set_axes(bottom=LogAxis("bottom") if log_x else None)

        def x_of(p: Mapping[str, Any]) -> float:
            return math.log10(p["fps"]) if log_x else float(p["fps"])

        def tip(p: Mapping[str, Any]) -> str:
            return tip_text(p["model"], [
                ("FPS", fmt(p["fps"])), ("per image", f"{fmt(p['per_image_ms'])} ms"),
                ("top-1", f"{fmt(p['top1'], 4)} %"), ("Pareto-optimal", "yes" if p["on_front"] else "no"),
                ("accuracy", p.get("accuracy_source") or "unknown"),
            ])  # fmt: skip

        self.add_legend()
        front = sorted((p for p in points if p["on_front"]), key=lambda p: p["fps"])
        others = [p for p in points if not p["on_front"]]
        if len(front) > 1:
            line = pg.PlotDataItem(
                [x_of(p) for p in front], [p["top1"] for p in front],
                pen=pg.mkPen(color(1), width=2, style=pg.QtCore.Qt.PenStyle.DashLine), name="Pareto front",
            )  # fmt: skip
            self.plot.addItem(line)
        if others:
            self.scatter(
                "others", [x_of(p) for p in others], [p["top1"] for p in others],
                [p["model"] for p in others], [tip(p) for p in others], size=9,
                brush=color(0, 90), pen=pg.mkPen(color(0), width=1.2), legend="dominated",
            )  # fmt: skip
        self.scatter(
            "front", [x_of(p) for p in front], [p["top1"] for p in front],
            [p["model"] for p in front], [tip(p) for p in front], size=12,
            brush=color(1, 230), pen=pg.mkPen("#222", width=1), legend="Pareto-optimal",
        )  # fmt: skip
        for p in front:
            side = self.text_side(x_of(p))
            text = f"{p['model']} " if side else f" {p['model']}"
            add_text(self.plot, text, x_of(p), p["top1"], anchor=(side, 1.0))
        batch = data.get("batch_size", 1)
        self.label_axes(
            f"images per second at batch {batch} (FPS)" + (", log scale" if log_x else ""),
            "top-1 accuracy (%)",
            f"Accuracy vs speed on {self.platform()}",
        )
        self.place_legend()
        self.says_label.setText(str(data.get("says") or section.get("says") or ""))
        self.detail_label.setText(
            f"Front rule: {section.get('rule', '')}. FPS: {section.get('fps_source', '')}. "
            f"Accuracy: {section.get('accuracy_source', '')}."
        )
        self.table = pd.DataFrame([{"platform": self.platform(), **p} for p in points])


class SpeedupPlot(AnalysisPlot):
    """Speed-up over the baseline platform per batch size: the geometric mean over models
    as bars, each model as a point on its bar."""

    key = "speedup"
    title = "Speed-up"
    section = "speedup"

    def _draw(self, section: Mapping[str, Any]) -> None:
        table = pd.DataFrame(section.get("table") or [])
        geomean: Mapping[str, Mapping[str, Any]] = section.get("geomean") or {}
        if table.empty:
            return
        baseline = section.get("baseline", "baseline")
        batches = sorted({int(b) for by in geomean.values() for b in by})
        platforms = sorted(geomean)
        values = table["speedup"].astype(float)
        log_y = bool(values.max() / max(values.min(), 1e-12) > 20)
        self.set_axes(left=LogAxis("left") if log_y else None)

        def y_of(v: float) -> float:
            return math.log10(v) if log_y else v

        base_y = 0.0  # log10(1) on a log axis, or the bars' foot at 0
        group = 0.8
        width = group / max(len(platforms), 1)
        self.add_legend()
        self.bars: dict[str, pg.BarGraphItem] = {}
        rng = np.random.default_rng(0)
        for k, platform in enumerate(platforms):
            xs = [i - group / 2 + width * (k + 0.5) for i in range(len(batches))]
            heights = [
                y_of(geomean[platform].get(str(b), {}).get("speedup", math.nan)) - base_y
                for b in batches
            ]
            bar = pg.BarGraphItem(
                x=xs,
                height=heights,
                width=width * 0.9,
                y0=base_y,
                brush=color(k, 140),
                pen=pg.mkPen(color(k)),
            )
            self.plot.addItem(bar)
            self.bars[platform] = bar
            self.plot.legend.addItem(bar, f"{platform} (geometric mean)")
            rows = table[table["platform"] == platform]
            px, py, models, tips = [], [], [], []
            for r in rows.itertuples(index=False):
                if int(r.batch_size) not in batches:
                    continue
                i = batches.index(int(r.batch_size))
                px.append(xs[i] + float(rng.uniform(-0.3, 0.3)) * width)
                py.append(y_of(float(r.speedup)))
                models.append(str(r.model))
                tips.append(tip_text(str(r.model), [
                    ("platform", platform), ("batch", int(r.batch_size)), ("speed-up", f"{fmt(r.speedup)}×"),
                    ("per image", f"{fmt(r.per_image_ms)} ms vs {fmt(r.baseline_per_image_ms)} ms on {baseline}"),
                ]))  # fmt: skip
            self.scatter(
                platform, px, py, models, tips, size=6, brush=pg.mkBrush("#222"), pen=pg.mkPen(None)
            )
        one = pg.InfiniteLine(
            pos=0.0 if log_y else 1.0,
            angle=0,
            pen=pg.mkPen("#555", width=1, style=pg.QtCore.Qt.PenStyle.DashLine),
        )
        self.plot.addItem(one)
        self.plot.getAxis("bottom").setTicks([[(i, str(b)) for i, b in enumerate(batches)]])
        self.plot.showGrid(x=False, y=True, alpha=0.15)
        if not log_y:  # headroom above the tallest point for the legend
            self.plot.setYRange(0.0, float(values.max()) * 1.3, padding=0)
        self.label_axes(
            "batch size",
            "speed-up (×, baseline time / platform time)" + (", log scale" if log_y else ""),
            f"Speed-up over {baseline} (dashed line: as fast as the baseline)",
        )
        self.place_legend()
        self.detail_label.setText(
            f"Baseline: {baseline}, {section.get('baseline_rule', '')}. "
            f"{section.get('definition', '')}."
        )
        self.table = table
