"""The prediction panel: choose model, batch size and platform, get the predicted latency
and peak memory with their interval, next to how well the predictor did when each model
was held out (leave-one-model-out, against a FLOPs-only baseline). The metrics and their
wording are core.predict.evaluate's, the same as the CLI's and the report's."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHeaderView,
    QLabel,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from core.errors import BackbenchError
from core.predict.evaluate import (
    EVALUATION_METRICS,
    EvaluationMetric,
    evaluation_rows,
    evaluation_says,
)
from core.text import EN_DASH, fixed, percent
from gui.plot_axes import Log2Axis, LogAxis, log_wanted
from gui.plot_base import HIGHLIGHT, AnalysisPlot, color, fmt, tip_text

log = logging.getLogger(__name__)


def _platform_labels(frame: pd.DataFrame) -> pd.Series:
    from core.predict.predictor import platform_label

    mode = frame["mode"] if "mode" in frame.columns else pd.Series("latency", index=frame.index)
    labels = [
        platform_label(b, d, p, m)
        for b, d, p, m in zip(
            frame["backend"], frame["device"], frame["precision"], mode, strict=True
        )
    ]
    return pd.Series(labels, index=frame.index, dtype=object)


class PredictionPanel(AnalysisPlot):
    key = "prediction"
    title = "Prediction"
    section = "prediction"
    platform_key = "platforms"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._predictor: Any = None
        self._evaluation: dict[str, Any] | None = None
        self._frame = pd.DataFrame()
        self.last_prediction: Any = None
        self.evaluation_pending = False
        self.evaluation_table = pd.DataFrame()
        self.model_combo = QComboBox()
        self.model_combo.setEditable(True)
        self.model_combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.model_combo.setMinimumContentsLength(22)
        self.model_combo.setToolTip(
            "Measured models first, then every zoo model (predicted from its features)"
        )
        self.model_combo.currentTextChanged.connect(lambda _t: self.redraw())
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(1, 4096)
        self.batch_spin.setValue(1)
        self.batch_spin.valueChanged.connect(lambda _v: self.redraw())
        for position, widget in enumerate(
            (QLabel("Model:"), self.model_combo, QLabel("Batch:"), self.batch_spin)
        ):
            self.controls_layout.insertWidget(position, widget)
        self.result_label = QLabel("")
        self.result_label.setWordWrap(True)
        self.result_label.setTextFormat(Qt.TextFormat.RichText)
        self.result_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.plot_layout.insertWidget(1, self.result_label)
        self.eval_table = QTableWidget(0, 2 + 2 * len(EVALUATION_METRICS))
        headers = (
            ["platform", "cases"]
            + [metric.label for metric in EVALUATION_METRICS]
            + [f"FLOPs-only\n{metric.label}" for metric in EVALUATION_METRICS]
        )
        self.eval_table.setHorizontalHeaderLabels(headers)
        # Columns as wide as their two-line headers; a scroll bar rather than clipped text.
        self.eval_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.eval_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.eval_table.verticalHeader().setVisible(False)
        self.eval_table.setMaximumHeight(150)
        self.eval_table.setToolTip(
            "Leave-one-model-out: each model held out with all its rows and predicted from the others"
        )
        self.plot_layout.addWidget(
            QLabel("Leave-one-model-out accuracy of the predictor (and of a FLOPs-only baseline):")
        )
        self.plot_layout.addWidget(self.eval_table)
        self._controls.setVisible(True)

    # ---- data in ----------------------------------------------------------------------

    def set_analysis(self, analysis: Mapping[str, Any]) -> None:
        """The prediction comes from set_prediction; analyze()'s dict is not used here."""

    def set_prediction(self, result: Any, frame: pd.DataFrame) -> None:
        """Show a fit_worker.PredictionResult for the long-schema ``frame`` it was fitted on."""
        if result.predictor is None:
            self._predictor = None
            self.eval_table.setRowCount(0)
            self.show_skipped(
                f"no latency prediction: {result.error or 'the predictor did not fit'}"
            )
            self.says_label.setText("")
            return
        self._predictor, self._evaluation, self._frame = result.predictor, result.evaluation, frame
        self._fill_evaluation(result.evaluation or {})
        self.evaluation_pending = bool(result.evaluation_pending)
        platforms = list(self._predictor.platforms)
        self._section = {"platforms": {p: True for p in platforms}}
        self.skipped_reason = None
        self.stack.setCurrentIndex(0)
        self._fill_models(frame)
        self._fill_platforms(self._section)
        self._controls.setVisible(True)
        if result.evaluation:
            self.says_label.setText(evaluation_says(result.evaluation))
        elif result.evaluation_pending:
            self.says_label.setText(
                "Checking the predictor: each model is held out in turn and predicted from the "
                "others (leave-one-model-out). This takes a while; predictions work already."
            )
        else:
            self.says_label.setText(
                f"No leave-one-model-out check: {result.error or 'it did not run'}."
            )
        notes = (result.evaluation or {}).get("notes") or []
        skipped = self._predictor.skipped_platforms
        extra = [f"Not fitted: {p}: {why}." for p, why in skipped.items()]
        self.detail_label.setText("\n\n".join([*notes, *extra]))
        self.redraw()

    def _fill_models(self, frame: pd.DataFrame) -> None:
        measured = sorted({str(m) for m in frame.get("model", pd.Series(dtype=object)).dropna()})
        try:
            from core.zoo import zoo_names

            others = [m for m in zoo_names() if m not in measured]
        except BackbenchError as exc:
            log.info("no zoo models to offer: %s", exc)
            others = []
        current = self.model_combo.currentText()
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        self.model_combo.addItems(measured)
        if others:
            self.model_combo.insertSeparator(len(measured))
            self.model_combo.addItems(others)
        self.model_combo.setCurrentText(
            current if current in measured + others else (measured[0] if measured else "")
        )
        self.model_combo.blockSignals(False)

    def _fill_evaluation(self, evaluation: Mapping[str, Any]) -> None:
        if not evaluation:
            self.eval_table.setRowCount(0)
            self.evaluation_table = pd.DataFrame()
            return
        rows = evaluation_rows(evaluation)
        self.eval_table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            values = [row["platform"], "" if row["n"] is None else str(row["n"])]
            values += [self._metric(m, row[m.key]) for m in EVALUATION_METRICS]
            values += [self._metric(m, row[f"baseline_{m.key}"]) for m in EVALUATION_METRICS]
            for c, text in enumerate(values):
                item = QTableWidgetItem(text)
                if c > 0:
                    item.setTextAlignment(
                        Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                    )
                self.eval_table.setItem(r, c, item)
        # The exported CSV keeps its columns: the predictor's metrics, then the baseline's.
        columns = ["platform", "n", *(m.key for m in EVALUATION_METRICS)]
        columns += [f"baseline_{m.key}" for m in EVALUATION_METRICS]
        self.evaluation_table = pd.DataFrame(rows, columns=columns)

    @staticmethod
    def _metric(metric: EvaluationMetric, value: Any) -> str:
        if metric.share:
            return percent(value, missing=EN_DASH)
        return fixed(value, 2, missing=EN_DASH)

    def highlight_model(self, name: str | None) -> None:
        """Show the prediction for ``name``: here highlighting means choosing the model."""
        self._highlighted = name or None
        if name and self._predictor is not None and self.model_combo.findText(name) >= 0:
            self.model_combo.setCurrentText(name)

    def _apply_highlight(self) -> None:
        """Every point shown is the chosen model's: no rings needed."""

    # ---- drawing ----------------------------------------------------------------------

    def _platform_rows(self, platform: str) -> pd.DataFrame:
        frame = self._frame
        if frame.empty or not {"backend", "device", "precision", "batch_size"} <= set(
            frame.columns
        ):
            return frame.iloc[0:0]
        rows = frame[_platform_labels(frame) == platform]
        if "status" in rows.columns:
            rows = rows[rows["status"].astype(str).str.lower() == "ok"]
        return rows

    def _draw(self, section: Mapping[str, Any]) -> None:
        predictor, platform = self._predictor, self.platform()
        model = self.model_combo.currentText().strip()
        if predictor is None or not platform or not model:
            return
        rows = self._platform_rows(platform)
        batches = sorted(
            {int(b) for b in pd.to_numeric(rows["batch_size"], errors="coerce").dropna()}
        ) or [1]
        low, high = batches[0], batches[-1]
        grid = sorted({2**k for k in range(0, 13) if low <= 2**k <= high} | set(batches))
        chosen = int(self.batch_spin.value())
        try:
            predictions = [predictor.predict(model, b, platform) for b in grid]
            chosen_prediction = predictor.predict(model, chosen, platform)
        except BackbenchError as exc:
            self.result_label.setText(f"<span style='color:#b00020'>{exc}</span>")
            self.table = pd.DataFrame()
            return
        self.last_prediction = chosen_prediction
        per_image = [p.per_image_ms for p in predictions]
        lower = [p.latency_ms_low / p.batch_size for p in predictions]
        upper = [p.latency_ms_high / p.batch_size for p in predictions]
        measured = rows[rows["model"] == model]
        measured_ms = (
            measured.assign(per_image_ms=pd.to_numeric(measured["per_image_ms"], errors="coerce"))
            .groupby("batch_size")["per_image_ms"].median().dropna()
            if "per_image_ms" in measured.columns else pd.Series(dtype=float)
        )  # fmt: skip
        all_values = [*lower, *upper, *measured_ms.tolist(), chosen_prediction.per_image_ms]
        log_y = log_wanted(all_values, ratio=10.0)
        floor = min(v for v in all_values if v > 0) / 2.0
        x_axis = Log2Axis("bottom")
        x_axis.batch_sizes = sorted(set(grid) | {chosen})
        self.set_axes(bottom=x_axis, left=LogAxis("left") if log_y else None)

        def y_of(values: Any) -> np.ndarray:
            arr = np.asarray(values, dtype=float)
            return np.log10(np.maximum(arr, floor)) if log_y else arr

        xs = np.log2(np.asarray(grid, dtype=float))
        self.add_legend()
        interval = f"{chosen_prediction.interval:.0%}"
        lower_item = pg.PlotCurveItem(xs, y_of(lower), pen=pg.mkPen(color(0, 120), width=1))
        upper_item = pg.PlotCurveItem(xs, y_of(upper), pen=pg.mkPen(color(0, 120), width=1))
        self.band = pg.FillBetweenItem(lower_item, upper_item, brush=pg.mkBrush(color(0, 50)))
        for item in (lower_item, upper_item, self.band):
            self.plot.addItem(item)
        self.plot.addItem(
            pg.PlotDataItem(xs, y_of(per_image), pen=pg.mkPen(color(0), width=2), name="predicted")
        )
        self.plot.legend.addItem(
            pg.BarGraphItem(x=[0], height=[0], width=0, brush=pg.mkBrush(color(0, 50))),
            f"{interval} interval",
        )
        tips = [
            tip_text(
                f"{model} (predicted)",
                [
                    ("batch", p.batch_size),
                    ("per image", f"{fmt(p.per_image_ms)} ms"),
                    (f"{interval} interval", f"{fmt(lo)} – {fmt(hi)} ms"),
                ],
            )  # fmt: skip
            for p, lo, hi in zip(predictions, lower, upper, strict=True)
        ]
        self.scatter(
            "predicted",
            xs,
            y_of(per_image),
            [model] * len(grid),
            tips,
            size=6,
            brush=color(0),
            pen=pg.mkPen(None),
        )
        if not measured_ms.empty:
            mx = np.log2(measured_ms.index.to_numpy(dtype=float))
            mtips = [
                tip_text(f"{model} (measured)", [("batch", int(b)), ("per image", f"{fmt(v)} ms")])
                for b, v in measured_ms.items()
            ]
            self.scatter("measured", mx, y_of(measured_ms.to_numpy()), [model] * len(mx), mtips, size=10,
                         symbol="s", brush=color(1, 220), pen=pg.mkPen("#222"), legend="measured")  # fmt: skip
        self.scatter(
            "chosen", [math.log2(chosen)], y_of([chosen_prediction.per_image_ms]), [model],
            [tip_text(f"{model} at batch {chosen}", [("predicted", f"{fmt(chosen_prediction.per_image_ms)} ms per image")])],
            size=15, symbol="star", brush=pg.mkBrush(HIGHLIGHT), pen=pg.mkPen("#222"), legend=f"batch {chosen}",
        )  # fmt: skip
        self.label_axes(
            "batch size (log scale)",
            "time per image (ms)" + (", log scale" if log_y else ""),
            f"Predicted time per image: {model} on {platform}",
        )
        self.place_legend()
        self.result_label.setText(self._result_html(chosen_prediction, (low, high)))
        self.table = pd.DataFrame([p.to_dict() for p in predictions])

    @staticmethod
    def _result_html(p: Any, measured_range: tuple[int, int]) -> str:
        interval = f"{p.interval:.0%}"
        text = (
            f"<b>{p.model}</b> at batch {p.batch_size} on {p.platform}: "
            f"<b>{fmt(p.latency_ms)} ms</b> per batch ({interval} interval {fmt(p.latency_ms_low)} – "
            f"{fmt(p.latency_ms_high)} ms), {fmt(p.per_image_ms)} ms per image"
        )
        if p.peak_mem_mb is not None:
            text += (
                f"; peak memory <b>{fmt(p.peak_mem_mb)} MB</b> ({fmt(p.peak_mem_mb_low)} – "
                f"{fmt(p.peak_mem_mb_high)} MB)"
            )
        if p.measured_latency_ms is not None:
            error = (p.latency_ms - p.measured_latency_ms) / p.measured_latency_ms
            text += f". Measured: {fmt(p.measured_latency_ms)} ms ({error:+.1%} off; this model was in the training data)"
        if not measured_range[0] <= p.batch_size <= measured_range[1]:
            text += (
                f". <span style='color:#b00020'>Batch {p.batch_size} is outside the measured "
                f"{measured_range[0]}–{measured_range[1]}: extrapolated.</span>"
            )
        return text + "."

    def export(self, path: Any) -> Any:
        """PNG/SVG of the plot; CSV of the leave-one-model-out table."""
        from gui.export import export_table_csv

        if str(path).lower().endswith(".csv"):
            return export_table_csv(self.evaluation_table, path)
        return super().export(path)
