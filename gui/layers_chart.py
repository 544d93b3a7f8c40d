"""A horizontal bar chart of layers (or layer types): one row per item, top down, one
bar per profile in it (two when profiles are compared), the value at the end of each
bar. A click on a row (its bars or its label) emits ``row_clicked`` with the row's key;
``highlight`` tints a row across the whole width.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QFont, QFontMetrics
from PySide6.QtWidgets import QVBoxLayout, QWidget

from core.text import significant
from gui.plot_base import HIGHLIGHT, LABEL_STYLE, TICK_FONT, color

BAR_SPAN = 0.8  # of a row's height, shared by its bars
MAX_LABEL_PX = 320
VALUE_FONT = QFont()
VALUE_FONT.setPointSize(8)


class LayerBarChart(QWidget):
    row_clicked = Signal(object)  # the clicked row's key

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plot_widget = pg.PlotWidget(background="w")
        self.plot = self.plot_widget.getPlotItem()
        self.plot.setMenuEnabled(False)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        self.plot.invertY(True)
        self.plot.showGrid(x=True, y=False, alpha=0.15)
        for name in ("left", "bottom"):
            axis = self.plot.getAxis(name)
            axis.setPen(pg.mkPen("#444"))
            axis.setTextPen(pg.mkPen("#222"))
            axis.setStyle(tickFont=TICK_FONT)
            axis.enableAutoSIPrefix(False)
        self.keys: list[Hashable] = []
        self.labels: list[str] = []
        self.tips: list[str] = []
        self.series: list[tuple[str, list[float | None]]] = []
        self.bars: list[pg.BarGraphItem] = []
        self._highlight_item: pg.LinearRegionItem | None = None
        self._highlighted: Hashable | None = None
        self.plot_widget.scene().sigMouseClicked.connect(self._on_scene_click)
        self.plot_widget.scene().sigMouseMoved.connect(self._on_mouse_moved)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot_widget)

    def set_bars(
        self,
        keys: Sequence[Hashable],
        labels: Sequence[str],
        series: Sequence[tuple[str, Sequence[float | None]]],
        *,
        tips: Sequence[str] = (),
        title: str = "",
        x_label: str = "ms",
    ) -> None:
        """Rows ``keys`` labelled ``labels``, top down; ``series`` is (name, one value per
        row) for each profile, drawn side by side in each row (None: no bar)."""
        self.plot.clear()
        if self.plot.legend is not None:
            self.plot.legend.clear()
        self._highlight_item = None
        self.keys, self.labels = list(keys), list(labels)
        self.tips = list(tips) if tips else list(labels)
        self.series = [(name, list(values)) for name, values in series]
        self.bars = []
        n_rows, n_series = len(self.keys), max(1, len(self.series))
        height = BAR_SPAN / n_series
        if n_series > 1 and self.plot.legend is None:
            self.plot.addLegend(offset=(-10, -10), brush=pg.mkBrush(255, 255, 255, 225),
                                pen=pg.mkPen("#bbb"), labelTextColor="#222", labelTextSize="9pt")  # fmt: skip
        if self.plot.legend is not None:
            self.plot.legend.setVisible(n_series > 1)
        biggest = max((v for _n, values in self.series for v in values if v), default=1.0)
        for k, (name, values) in enumerate(self.series):
            offset = -BAR_SPAN / 2 + height * (k + 0.5)
            ys = [row + offset for row in range(n_rows)]
            widths = [v or 0.0 for v in values]
            bar = pg.BarGraphItem(x0=0, y=ys, height=height * 0.92, width=widths, brush=color(k, 230),
                                  pen=pg.mkPen(color(k), width=0.5), name=name)  # fmt: skip
            self.plot.addItem(bar)
            self.bars.append(bar)
            for y, value in zip(ys, values, strict=True):
                if value:
                    text = pg.TextItem(significant(value, 3), color="#333", anchor=(0, 0.5))
                    text.setFont(VALUE_FONT)
                    text.setPos(value + biggest * 0.01, y)
                    self.plot.addItem(text, ignoreBounds=True)
        left = self.plot.getAxis("left")
        left.setTicks([[(row, label) for row, label in enumerate(self.labels)], []])
        metrics = QFontMetrics(TICK_FONT)
        widest = max((metrics.horizontalAdvance(label) for label in self.labels), default=40)
        left.setWidth(min(MAX_LABEL_PX, widest + 14))
        self.plot.setLabel("bottom", x_label, **LABEL_STYLE)
        self.plot.setTitle(title, size="10pt", color="#222")
        self.plot.setXRange(0, biggest * 1.16, padding=0)
        self.plot.setYRange(-0.6, max(n_rows, 1) - 0.4, padding=0)
        if self.plot.legend is not None and n_series > 1:
            self.plot.legend.anchor(itemPos=(1, 1), parentPos=(1, 1), offset=(-10, -10))
        self.highlight(self._highlighted)

    def values(self, key: Hashable) -> list[float | None]:
        """Each series' value in row ``key`` (what its bars show)."""
        row = self.keys.index(key)
        return [values[row] for _name, values in self.series]

    # -- highlight and clicks -------------------------------------------------------------

    def highlight(self, key: Hashable | None) -> None:
        """Tint the row of ``key``; a key not shown (or None) clears the tint."""
        self._highlighted = key
        if self._highlight_item is not None:
            self.plot.removeItem(self._highlight_item)
            self._highlight_item = None
        if key is None or key not in self.keys:
            return
        row = self.keys.index(key)
        region = pg.LinearRegionItem(
            values=(row - 0.5, row + 0.5), orientation="horizontal", movable=False,
            brush=pg.mkBrush(232, 0, 11, 40), pen=pg.mkPen(HIGHLIGHT, width=1.5),
        )  # fmt: skip
        region.setZValue(-10)
        self.plot.addItem(region, ignoreBounds=True)
        self._highlight_item = region

    def highlighted_key(self) -> Hashable | None:
        """The key whose row is tinted now (None when that row is not shown)."""
        return self._highlighted if self._highlight_item is not None else None

    def row_at(self, scene_pos: QPointF) -> int | None:
        """The row under a scene position, over the bars or their labels."""
        if not self.plot.sceneBoundingRect().contains(scene_pos):
            return None
        y = self.plot.getViewBox().mapSceneToView(scene_pos).y()
        row = int(round(y))
        return row if 0 <= row < len(self.keys) and abs(y - row) <= 0.5 else None

    def click_row(self, key: Hashable) -> None:
        """What a click on the row of ``key`` does."""
        self.highlight(key)
        self.row_clicked.emit(key)

    def scene_pos_of(self, key: Hashable) -> QPointF:
        """The scene position of the middle of ``key``'s first bar (for tests and tools)."""
        row = self.keys.index(key)
        value = next((v for _n, values in self.series if (v := values[row])), 0.0)
        return self.plot.getViewBox().mapViewToScene(QPointF(value / 2, row))

    def _on_scene_click(self, event: Any) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            return
        row = self.row_at(event.scenePos())
        if row is not None:
            self.click_row(self.keys[row])

    def _on_mouse_moved(self, scene_pos: QPointF) -> None:
        row = self.row_at(scene_pos)
        self.plot_widget.setToolTip(self.tips[row] if row is not None and row < len(self.tips) else "")
