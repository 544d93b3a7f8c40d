"""The measured-accuracy view: per model and platform, the top-1 an accuracy run measured
(with its 95% Wilson interval as error bars) beside the zoo's published reference top-1,
as a plot and a sortable table.

Measured and reference figures never share a mark: measured ones are filled circles with
error bars, in blue, in the "top-1" columns; reference ones are hollow orange diamonds,
in the "reference top-1" columns, and every legend entry, header and tool tip says which
is which. The data are the long-schema rows themselves (``set_rows``), not analyze()'s
dict, which keeps one accuracy per model and needs timings beside it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyqtgraph as pg
from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import QAbstractItemView, QHBoxLayout, QSplitter, QTableView, QWidget

from core.analysis.data import MEASURED, REFERENCE
from gui.accuracy_data import REFERENCE_ONLY, accuracy_table, interval_text
from gui.plot_base import AnalysisPlot, color, fmt, tip_text
from gui.table_model import DataFrameModel, ResultsProxyModel

MEASURED_COLOR = 0  # palette index: blue
REFERENCE_COLOR = 1  # vermilion
MEASURED_LEGEND = "measured top-1 (accuracy run), 95% CI"
REFERENCE_LEGEND = f"published top-1: {REFERENCE}"
REFERENCE_TIP = f"{REFERENCE}: the model card's published figure, not measured here"
REFERENCE_COLUMNS = frozenset({"reference_top1", "reference_top5"})
# The interval bounds are shown as interval columns; the raw bounds stay in the CSV.
HIDDEN_COLUMNS = frozenset({"top1_ci_low", "top1_ci_high", "top5_ci_low", "top5_ci_high"})
_REFERENCE_BRUSH = QBrush(QColor("#A04400"))


class AccuracyTableModel(DataFrameModel):
    """The accuracy table: reference cells in the reference colour and italics, each
    saying it is a published figure."""

    def data(
        self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if index.isValid() and self.columns()[index.column()] in REFERENCE_COLUMNS:
            if role == Qt.ItemDataRole.ForegroundRole:
                return _REFERENCE_BRUSH
            if role == Qt.ItemDataRole.FontRole:
                font = QFont()
                font.setItalic(True)
                return font
            if role == Qt.ItemDataRole.ToolTipRole and self.raw(index.row(), index.column()) is not None:
                return REFERENCE_TIP
        return super().data(index, role)


class MeasuredAccuracyView(AnalysisPlot):
    """Measured top-1 per model and platform, with CIs, against the published reference."""

    key = "measured_accuracy"
    title = "Measured accuracy"
    section = "measured_accuracy"
    from_rows = True  # fed by set_rows, not by analyze()'s dict

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.table_model = AccuracyTableModel(parent=self)
        self.proxy = ResultsProxyModel(self)
        self.proxy.setSourceModel(self.table_model)
        self.table_view = QTableView()
        self.table_view.setModel(self.proxy)
        self.table_view.setSortingEnabled(True)
        self.table_view.sortByColumn(-1, Qt.SortOrder.AscendingOrder)
        self.table_view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table_view.setAlternatingRowColors(True)
        self.table_view.verticalHeader().setVisible(False)
        self.table_view.verticalHeader().setDefaultSectionSize(22)
        self.table_view.horizontalHeader().setStretchLastSection(True)
        # The table under the plot and its text, across the whole width: a measured figure,
        # its interval and the published one beside it stay in view together.
        outer = self.layout()
        top = QWidget()
        top_layout = QHBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        while outer.count():
            widget = outer.takeAt(0).widget()
            top_layout.addWidget(widget, 1 if widget is self.stack else 0)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(top)
        splitter.addWidget(self.table_view)
        splitter.setStretchFactor(0, 2)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([460, 230])
        outer.addWidget(splitter)
        self.error_bars: pg.ErrorBarItem | None = None
        self.show_skipped("no accuracy runs in these data")

    def show_skipped(self, reason: str) -> None:
        super().show_skipped(reason)
        self.table_view.setVisible(False)

    # ---- data in ----------------------------------------------------------------------

    def set_analysis(self, analysis: Mapping[str, Any]) -> None:
        """Nothing to take from analyze(): this view reads the rows (``set_rows``)."""

    def set_rows(self, frame: pd.DataFrame) -> None:
        """Show the measured accuracy in long-schema ``frame`` beside the references."""
        table = accuracy_table(frame)
        self.table_model.set_dataframe(table)
        for i, name in enumerate(self.table_model.columns()):
            self.table_view.setColumnHidden(i, name in HIDDEN_COLUMNS)
        self.table_view.resizeColumnsToContents()
        if table.empty or not (table["accuracy_source"] == MEASURED).any():
            reason = "no accuracy runs in these data: submit one from the launcher (mode accuracy)"
            self.show_skipped(reason)
            self.table = table
            return
        self._section = {"table": table}
        self.skipped_reason = None
        self.stack.setCurrentIndex(0)
        self.table_view.setVisible(True)
        self.says_label.setText(self.says_text(self._section))
        self.redraw()

    def says_text(self, section: Mapping[str, Any]) -> str:
        table: pd.DataFrame = section["table"]
        measured = table[table["accuracy_source"] == MEASURED]
        parts = [
            f"Measured top-1 of {measured['model'].nunique()} model(s) on "
            f"{measured['platform'].nunique()} platform(s)"
        ]
        compared = measured.dropna(subset=["reference_top1"])
        if not compared.empty:
            gap = (compared["top1"] - compared["reference_top1"]).abs()
            far = compared.loc[gap.idxmax()]
            parts.append(
                f"furthest from its published figure: {far['model']} on {far['platform']}, "
                f"{fmt(far['top1'], 4)} % measured vs {fmt(far['reference_top1'], 4)} % reference"
            )
        agreement = measured.dropna(subset=["top1_agreement"])
        if not agreement.empty:
            low = agreement.loc[agreement["top1_agreement"].idxmin()]
            parts.append(
                f"lowest agreement with its reference platform: {low['model']} on {low['platform']}, "
                f"{fmt(low['top1_agreement'], 4)} % of images"
            )
        only = table.loc[table["accuracy_source"] == REFERENCE, "model"].tolist()
        if only:
            parts.append(f"not measured, reference only: {', '.join(only)}")
        return "; ".join(parts) + "."

    # ---- drawing -----------------------------------------------------------------------

    def _draw(self, section: Mapping[str, Any]) -> None:
        table: pd.DataFrame = section["table"]
        self.set_axes()
        n = len(table)
        ys = np.array([float(n - 1 - i) for i in range(n)])  # the first row on top
        self.add_legend()
        measured = table["accuracy_source"] == MEASURED
        m_rows = table[measured]
        m_ys = ys[measured.to_numpy()]
        with_ci = m_rows["top1_ci_low"].notna() & m_rows["top1_ci_high"].notna()
        self.error_bars = None
        if with_ci.any():
            top1 = m_rows.loc[with_ci, "top1"].to_numpy(dtype=float)
            self.error_bars = pg.ErrorBarItem(
                x=top1, y=m_ys[with_ci.to_numpy()],
                left=top1 - m_rows.loc[with_ci, "top1_ci_low"].to_numpy(dtype=float),
                right=m_rows.loc[with_ci, "top1_ci_high"].to_numpy(dtype=float) - top1,
                beam=0.25, pen=pg.mkPen(color(MEASURED_COLOR), width=1.5),
            )  # fmt: skip
            self.plot.addItem(self.error_bars)
        self.scatter(
            "measured", m_rows["top1"].tolist(), m_ys.tolist(), m_rows["model"].tolist(),
            [self._measured_tip(r) for r in m_rows.to_dict(orient="records")], size=10,
            brush=color(MEASURED_COLOR, 230), pen=pg.mkPen("#222", width=0.8), legend=MEASURED_LEGEND,
        )  # fmt: skip
        has_ref = table["reference_top1"].notna()
        r_rows = table[has_ref]
        self.scatter(
            "reference", r_rows["reference_top1"].tolist(), ys[has_ref.to_numpy()].tolist(),
            r_rows["model"].tolist(), [self._reference_tip(r) for r in r_rows.to_dict(orient="records")],
            size=12, symbol="d", brush=pg.mkBrush(255, 255, 255, 0),
            pen=pg.mkPen(color(REFERENCE_COLOR), width=2), legend=REFERENCE_LEGEND,
        )  # fmt: skip
        self.plot.getAxis("left").setTicks([[(float(y), self._row_label(r)) for y, r in
                                             zip(ys, table.to_dict(orient="records"), strict=True)]])  # fmt: skip
        self.plot.showGrid(x=True, y=False, alpha=0.15)
        # Headroom for the legend (two lines, about an eighth of a row per row in view).
        self.plot.setYRange(-0.8, n - 0.2 + max(0.7, 0.15 * n + 0.3), padding=0)
        self._fit_x(table)
        self.label_axes("top-1 accuracy (%)", "", "Measured vs published top-1")
        self.plot.legend.anchor(itemPos=(0, 0), parentPos=(0, 0), offset=(10, 10))
        self.detail_label.setText(
            "Measured: accuracy runs, the latest per model, platform and dataset; error bars are "
            "95% Wilson intervals over the images evaluated. Reference (ImageNet, torchvision): "
            "the zoo's published ImageNet top-1 of the torchvision weights, not measured here; "
            "it compares with a measured figure only on the ImageNet validation "
            "images with the weights' own preprocessing. Agreement: the share of images whose "
            "top-1 class equals the reference platform's (torch/cpu/fp32 for a zoo model)."
        )
        self.table = table

    def _fit_x(self, table: pd.DataFrame) -> None:
        values = pd.concat([table["top1_ci_low"], table["top1_ci_high"], table["top1"],
                            table["reference_top1"]]).dropna()  # fmt: skip
        if values.empty:
            return
        low, high = float(values.min()), float(values.max())
        pad = max(0.5, (high - low) * 0.15)
        self.plot.setXRange(max(0.0, low - pad), min(100.0, high + pad), padding=0)

    @staticmethod
    def _row_label(row: Mapping[str, Any]) -> str:
        if row["platform"] == REFERENCE_ONLY:
            return f"{row['model']} · not measured"
        return f"{row['model']} · {row['platform']}"

    @staticmethod
    def _measured_tip(row: Mapping[str, Any]) -> str:
        interval = interval_text(row.get("top1_ci_low"), row.get("top1_ci_high"))
        n = row.get("n_eval_images")
        agreement = row.get("top1_agreement")
        reference = row.get("accuracy_reference") or "the reference platform"
        lines = [
            ("measured top-1", f"{fmt(row['top1'], 4)} %" + (f", 95% CI {interval} %" if interval else "")),
            ("measured top-5", f"{fmt(row.get('top5'), 4)} %"),
            ("reference top-1", f"{fmt(row.get('reference_top1'), 4)} % ({REFERENCE}, published)"),
            ("images", fmt(int(n)) if isinstance(n, float) and math.isfinite(n) else fmt(n)),
        ]
        if isinstance(agreement, float) and math.isfinite(agreement):
            lines.append((f"agreement with {reference}", f"{fmt(agreement, 4)} %"))
            lines.append(("max |Δ logit|", fmt(row.get("max_logit_diff"))))
        elif row["platform"] == reference:
            lines.append(("agreement", "this is the reference platform"))
        if row.get("dataset_id"):
            lines.append(("dataset", str(row["dataset_id"])))
        return tip_text(f"{row['model']} on {row['platform']}: measured", lines)

    @staticmethod
    def _reference_tip(row: Mapping[str, Any]) -> str:
        return tip_text(f"{row['model']}: reference", [
            ("reference top-1", f"{fmt(row['reference_top1'], 4)} %"),
            ("reference top-5", f"{fmt(row.get('reference_top5'), 4)} %"),
            ("source", REFERENCE_TIP),
        ])  # fmt: skip
