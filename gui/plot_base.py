"""The frame every analysis plot shares: a pyqtgraph plot, the generated "what this says"
text beside it, the skip reason in its place when the analysis could not run, hover
tool tips, click-to-highlight, and PNG/SVG/CSV export.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from core.errors import BackbenchError
from core.text import EN_DASH, significant

log = logging.getLogger(__name__)

# Okabe-Ito, readable by colour-blind users and on white.
PALETTE: tuple[str, ...] = (
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#7F7F7F", "#8C564B",
)  # fmt: skip
HIGHLIGHT = "#E8000B"
SIDE_WIDTH_PX = 340
EXPORT_MIN_WIDTH_PX = 800
EXPORT_HIDDEN_SIZE = (1000, 700)
TICK_FONT = QFont()
TICK_FONT.setPointSize(9)
LABEL_STYLE = {"font-size": "10pt", "color": "#222"}


def color(i: int, alpha: int = 255) -> pg.QtGui.QColor:
    c = pg.mkColor(PALETTE[i % len(PALETTE)])
    c.setAlpha(alpha)
    return c


def fmt(value: Any, digits: int = 3) -> str:
    """A number for a tool tip or a note: core.text's significant figures, with the GUI's
    dash for a missing value."""
    return significant(value, digits, missing=EN_DASH)


class AnalysisPlot(QWidget):
    """Base of the analysis views. Subclasses set ``key``, ``title``, ``section`` and
    implement ``_draw(section)``; ``platform_key`` turns on a platform selector."""

    key = ""
    title = ""
    section = ""
    platform_key: str | None = None  # where per-platform data live in the section
    model_clicked = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._analysis: Mapping[str, Any] = {}
        self._section: Mapping[str, Any] | None = None
        self._points: list[tuple[str, float, float, float]] = []  # model, x, y, size px
        self._highlighted: str | None = None
        self.table = pd.DataFrame()
        self.scatters: dict[str, pg.ScatterPlotItem] = {}
        self.skipped_reason: str | None = None

        self.plot_widget = pg.PlotWidget(background="w")
        self.plot = self.plot_widget.getPlotItem()
        self.plot.setMenuEnabled(False)
        # Room for bubbles and labels at the edges of the data.
        self.plot.getViewBox().setDefaultPadding(0.06)
        self.platform_combo = QComboBox()
        self.platform_combo.setMinimumContentsLength(24)
        self.platform_combo.currentTextChanged.connect(lambda _t: self.redraw())
        # Only a platform the user picked survives new data; otherwise the default applies.
        self.chosen_platform: str | None = None
        self.preferred_platform: str | None = None  # set by the AnalysisView: the main platform
        self.platform_combo.activated.connect(
            lambda _i: setattr(self, "chosen_platform", self.platform_combo.currentText())
        )
        controls = QHBoxLayout()
        self._platform_label = QLabel("Platform:")
        controls.addWidget(self._platform_label)
        controls.addWidget(self.platform_combo)
        controls.addStretch(1)
        self._controls = QWidget()
        self._controls.setLayout(controls)
        controls.setContentsMargins(0, 0, 0, 0)
        self._controls.setVisible(self.platform_key is not None)
        plot_page = QWidget()
        plot_layout = QVBoxLayout(plot_page)
        plot_layout.setContentsMargins(0, 0, 0, 0)
        plot_layout.addWidget(self._controls)
        plot_layout.addWidget(self.plot_widget, 1)
        self.plot_layout = plot_layout
        self.controls_layout = controls
        self.skipped_label = QLabel()
        self.skipped_label.setWordWrap(True)
        self.skipped_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.skipped_label.setStyleSheet("color: #555; font-size: 12pt; padding: 40px;")
        self.stack = QStackedWidget()
        self.stack.addWidget(plot_page)
        self.stack.addWidget(self.skipped_label)

        self.says_label = QLabel("")
        self.says_label.setWordWrap(True)
        self.says_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.says_label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.detail_label = QLabel("")
        self.detail_label.setWordWrap(True)
        self.detail_label.setStyleSheet("color: #555;")
        self.detail_label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.detail_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        text_box = QWidget()
        text_layout = QVBoxLayout(text_box)
        heading = QLabel("What this says")
        heading.setStyleSheet("font-weight: bold;")
        text_layout.addWidget(heading)
        text_layout.addWidget(self.says_label)
        text_layout.addSpacing(8)
        text_layout.addWidget(self.detail_label)
        text_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(text_box)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        buttons = QHBoxLayout()
        self.export_buttons: dict[str, QPushButton] = {}
        for suffix, tip in (
            ("png", "the plot as an image"),
            ("svg", "the plot as vector graphics"),
            ("csv", "the plotted data"),
        ):
            button = QPushButton(f"{suffix.upper()}…")
            button.setToolTip(f"Save {tip}")
            button.clicked.connect(lambda _c=False, s=suffix: self.choose_export(s))
            buttons.addWidget(button)
            self.export_buttons[suffix] = button
        side = QWidget()
        side.setFixedWidth(SIDE_WIDTH_PX)
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(4, 0, 0, 0)
        side_layout.addWidget(scroll, 1)
        side_layout.addLayout(buttons)
        layout = QHBoxLayout(self)
        layout.addWidget(self.stack, 1)
        layout.addWidget(side)
        self._style_axes()

    # ---- data in ----------------------------------------------------------------------

    def set_analysis(self, analysis: Mapping[str, Any]) -> None:
        """Draw from analyze()'s dict; a skipped section shows its reason instead."""
        self._analysis = analysis
        section = analysis.get(self.section)
        if not section:
            reason = (analysis.get("skipped") or {}).get(self.section) or "no data for it"
            self.show_skipped(reason)
            return
        self._section = section
        self.skipped_reason = None
        self.stack.setCurrentIndex(0)
        if self.platform_key is not None:
            self._fill_platforms(section)
        self.says_label.setText(self.says_text(section))
        self.redraw()

    def says_text(self, section: Mapping[str, Any]) -> str:
        return str(section.get("says") or "")

    def show_skipped(self, reason: str) -> None:
        self._section = None
        self.skipped_reason = reason
        self.scatters = {}
        self._points = []
        self.table = pd.DataFrame()
        self.plot.clear()
        self.skipped_label.setText(
            f"{self.title}: not shown.\n\n{reason[:1].upper()}{reason[1:]}.".replace("..", ".")
        )
        self.says_label.setText("")
        self.detail_label.setText("")
        self.stack.setCurrentIndex(1)
        for button in self.export_buttons.values():
            button.setEnabled(False)

    def show_pending(self, text: str) -> None:
        """A placeholder while the data for this view are being computed."""
        self.show_skipped(text)
        self.skipped_reason = None
        self.skipped_label.setText(text)

    def _fill_platforms(self, section: Mapping[str, Any]) -> None:
        names = self.platforms(section)
        self.platform_combo.blockSignals(True)
        self.platform_combo.clear()
        self.platform_combo.addItems(names)
        default = self.default_platform(section, names)
        chosen = self.chosen_platform
        self.platform_combo.setCurrentText(chosen if chosen in names else default)
        self.platform_combo.blockSignals(False)
        self._controls.setVisible(len(names) > 1)

    def platforms(self, section: Mapping[str, Any]) -> list[str]:
        per = section.get(self.platform_key or "") or {}
        return [name for name, value in per.items() if value]

    def default_platform(self, section: Mapping[str, Any], names: list[str]) -> str:
        if self.preferred_platform in names:
            return str(self.preferred_platform)
        return names[0] if names else ""

    def platform(self) -> str:
        return self.platform_combo.currentText()

    def redraw(self) -> None:
        if self._section is None:
            return
        self.plot.clear()
        if self.plot.legend is not None:
            self.plot.legend.clear()
        self.scatters = {}
        self._points = []
        self._overlay = None
        self._draw(self._section)
        for button in self.export_buttons.values():
            button.setEnabled(True)
        self._apply_highlight()

    def _draw(self, section: Mapping[str, Any]) -> None:
        raise NotImplementedError

    # ---- building blocks -----------------------------------------------------------------

    def _style_axes(self) -> None:
        for name in ("left", "bottom", "top", "right"):
            axis = self.plot.getAxis(name)
            axis.setPen(pg.mkPen("#444"))
            axis.setTextPen(pg.mkPen("#222"))
            axis.setStyle(tickFont=TICK_FONT)
            axis.enableAutoSIPrefix(False)
        self.plot.showGrid(x=True, y=True, alpha=0.15)

    def set_axes(self, bottom: pg.AxisItem | None = None, left: pg.AxisItem | None = None) -> None:
        """Swap in log axes (or plain ones) before drawing."""
        axes = {"bottom": bottom or pg.AxisItem("bottom"), "left": left or pg.AxisItem("left")}
        self.plot.setAxisItems(axes)
        # A new axis learns the view's range only when that range changes: a redraw over
        # the same range (another memory figure, the same x) would leave it at 0-1.
        view = self.plot.getViewBox()
        for axis in axes.values():
            axis.linkedViewChanged(view)
        self._style_axes()

    def label_axes(self, bottom: str, left: str, title: str = "") -> None:
        self.plot.setLabel("bottom", bottom, **LABEL_STYLE)
        self.plot.setLabel("left", left, **LABEL_STYLE)
        self.plot.setTitle(title, size="11pt", color="#222")

    def add_legend(self) -> pg.LegendItem:
        if self.plot.legend is None:
            self.plot.addLegend(
                offset=(10, 10), brush=pg.mkBrush(255, 255, 255, 215),
                pen=pg.mkPen("#bbb"), labelTextColor="#222", labelTextSize="9pt",
            )  # fmt: skip
        return self.plot.legend

    def scatter(
        self,
        name: str,
        xs: Sequence[float],
        ys: Sequence[float],
        models: Sequence[str],
        tips: Sequence[str],
        *,
        size: float | Sequence[float] = 9,
        brush: Any = None,
        pen: Any = None,
        symbol: str = "o",
        legend: str | None = None,
    ) -> pg.ScatterPlotItem:
        """A hoverable, clickable point series; each point remembers its model."""
        item = pg.ScatterPlotItem(
            x=list(xs), y=list(ys), data=[{"model": m, "tip": t} for m, t in zip(models, tips, strict=True)],
            size=size, brush=brush if brush is not None else color(0, 200),
            pen=pen if pen is not None else pg.mkPen("#333", width=0.8), symbol=symbol,
            hoverable=True, hoverPen=pg.mkPen("#000", width=2), tip=self._tip, name=legend,
        )  # fmt: skip
        item.sigClicked.connect(self._on_clicked)
        self.plot.addItem(item)
        self.scatters[name] = item
        sizes = (
            [float(size)] * len(models)
            if isinstance(size, (int, float))
            else [float(v) for v in size]
        )
        self._points.extend(zip(models, xs, ys, sizes, strict=True))
        return item

    @staticmethod
    def _tip(x: float, y: float, data: Any) -> str:
        return str(data.get("tip", "")) if isinstance(data, dict) else ""

    def _on_clicked(self, _item: Any, points: Sequence[Any], _event: Any = None) -> None:
        if len(points) == 0:
            return
        data = points[0].data()
        model = data.get("model") if isinstance(data, dict) else None
        if model:
            self.highlight_model(model)
            self.model_clicked.emit(model)

    def click_model(self, model: str) -> None:
        """What a click on one of ``model``'s points does (used by tests and key actions)."""
        for item in self.scatters.values():
            for point in item.points():
                if point.data().get("model") == model:
                    item.sigClicked.emit(item, [point], None)
                    return

    def place_legend(self) -> None:
        """Put the legend in the corner with the fewest data points."""
        legend = self.plot.legend
        if legend is None or not self._points:
            return
        xs = np.array([p[1] for p in self._points], dtype=float)
        ys = np.array([p[2] for p in self._points], dtype=float)
        ok = np.isfinite(xs) & np.isfinite(ys)
        if not ok.any():
            return
        xs, ys = xs[ok], ys[ok]
        span_x = max(np.ptp(xs), 1e-12)
        span_y = max(np.ptp(ys), 1e-12)
        u, v = (xs - xs.min()) / span_x, (ys - ys.min()) / span_y
        corners = {  # (anchor x, anchor y in item coords, y up=1) -> points in that corner
            (0, 0): np.sum((u < 0.45) & (v > 0.55)),
            (1, 0): np.sum((u > 0.55) & (v > 0.55)),
            (0, 1): np.sum((u < 0.45) & (v < 0.45)),
            (1, 1): np.sum((u > 0.55) & (v < 0.45)),
        }
        best = min(corners, key=lambda c: (corners[c], c[1], -c[0]))
        offset = (10 if best[0] == 0 else -10, 10 if best[1] == 0 else -10)
        legend.anchor(itemPos=best, parentPos=best, offset=offset)

    def text_side(self, x: float) -> float:
        """A label's horizontal anchor: right-aligned near the right edge, so it stays in view."""
        xs = [p[1] for p in self._points if math.isfinite(p[1])]
        if not xs or max(xs) == min(xs):
            return 0.0
        return 1.0 if (x - min(xs)) / (max(xs) - min(xs)) > 0.7 else 0.0

    # ---- highlight ----------------------------------------------------------------------

    def highlight_model(self, name: str | None) -> None:
        self._highlighted = name or None
        self._apply_highlight()

    def highlighted_model(self) -> str | None:
        return self._highlighted

    def highlighted_points(self) -> list[tuple[float, float]]:
        overlay = getattr(self, "_overlay", None)
        if overlay is None:
            return []
        xs, ys = overlay.getData()
        return list(zip(xs.tolist(), ys.tolist(), strict=True))

    def _apply_highlight(self) -> None:
        overlay = getattr(self, "_overlay", None)
        if overlay is not None:
            self.plot.removeItem(overlay)
            self.plot.removeItem(self._overlay_label)
            self._overlay = None
        name = self._highlighted
        if not name:
            return
        points = [
            (x, y, size) for m, x, y, size in self._points
            if m == name and math.isfinite(x) and math.isfinite(y)
        ]  # fmt: skip
        if not points:
            return
        self._overlay = pg.ScatterPlotItem(
            x=[p[0] for p in points], y=[p[1] for p in points], size=[max(p[2] + 10, 20) for p in points], symbol="o",
            pen=pg.mkPen(HIGHLIGHT, width=2.5), brush=None,
        )  # fmt: skip
        self._overlay.setZValue(50)
        top = max(points, key=lambda p: p[1])
        self._overlay_label = pg.TextItem(
            name, color=HIGHLIGHT, anchor=(self.text_side(top[0]), 1.0)
        )
        font = QFont()
        font.setBold(True)
        self._overlay_label.setFont(font)
        self._overlay_label.setPos(top[0], top[1])
        self._overlay_label.setZValue(51)
        self.plot.addItem(self._overlay, ignoreBounds=True)
        self.plot.addItem(self._overlay_label, ignoreBounds=True)

    # ---- export -------------------------------------------------------------------------

    def export(self, path: str | Path) -> Path:
        """PNG or SVG by suffix, or CSV of the plotted data."""
        from gui.export import export_plot, export_table_csv

        if str(path).lower().endswith(".csv"):
            return export_table_csv(self.table, path)
        self._lay_out_for_export()
        return export_plot(
            self.plot, path, width_px=max(int(self.plot.width()), EXPORT_MIN_WIDTH_PX)
        )

    def _lay_out_for_export(self) -> None:
        """A plot that was never shown has no real geometry yet; give it one, so an export
        from a script or a hidden tab draws the same picture the window would."""
        if self.plot_widget.isVisible():
            return
        width, height = EXPORT_HIDDEN_SIZE
        self.plot_widget.resize(width, height)
        self.plot_widget.scene().setSceneRect(0, 0, width, height)
        self.plot.setGeometry(0, 0, width, height)
        view = self.plot.getViewBox()
        view.updateViewRange()
        view.updateMatrix()

    def choose_export(self, suffix: str) -> None:
        kinds = {"png": "PNG image (*.png)", "svg": "SVG image (*.svg)", "csv": "CSV (*.csv)"}
        path, _ = QFileDialog.getSaveFileName(self, "Export", f"{self.key}.{suffix}", kinds[suffix])
        if not path:
            return
        try:
            self.export(path)
        except BackbenchError as exc:
            self.detail_label.setText(f"Export failed: {exc}")


def tip_text(title: str, rows: Sequence[tuple[str, Any]]) -> str:
    return "\n".join([title, *(f"{label}: {value}" for label, value in rows)])


def add_text(plot: pg.PlotItem, text: str, x: float, y: float, color_: str = "#333",
             anchor: tuple[float, float] = (0, 0.5)) -> pg.TextItem:  # fmt: skip
    item = pg.TextItem(text, color=color_, anchor=anchor)
    font = QFont()
    font.setPointSize(8)
    item.setFont(font)
    item.setPos(x, y)
    plot.addItem(item, ignoreBounds=True)
    return item
