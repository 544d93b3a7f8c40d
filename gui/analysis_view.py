"""The analysis views: every analysis of core/analysis as an interactive plot, one tab each,
plus the latency predictor and a notes tab.

``set_dataframe(df)`` hands the long-schema rows to a worker thread (gui.fit_worker); the
plots are drawn when the fit comes back, and a result for data that have since changed
is dropped. "Exclude disturbed" leaves out the measurements that other processes
disturbed (``disturbed`` true) from every analysis and from the predictor. Clicking a
point highlights its model in every plot and emits ``model_selected``;
``highlight_model`` does the same from outside without emitting.

The measured-accuracy tab reads the rows themselves (analyze() keeps one accuracy per
model, and refuses accuracy runs without timings): it is drawn at once, and stays when the
analysis fails.
"""

from __future__ import annotations

import html
import logging
import numbers
from pathlib import Path
from typing import Any, cast

import pandas as pd
from PySide6.QtCore import Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QTabWidget,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from core.analysis.data import MEASURED
from core.errors import BackbenchError
from core.results import Measurement
from gui.fit_worker import AnalysisResult, BackgroundCall, FitRunner, PredictionResult
from gui.memory_choice import MemoryChoices
from gui.plot_base import AnalysisPlot
from gui.plots import AccuracyPlot, DensityPlot, ParetoPlot, SpeedupPlot
from gui.plots_accuracy import MeasuredAccuracyView
from gui.plots_fits import LatencyBatchPlot, MemoryPlot
from gui.prediction_panel import PredictionPanel

log = logging.getLogger(__name__)

PLOT_CLASSES: tuple[type[AnalysisPlot], ...] = (
    AccuracyPlot, MeasuredAccuracyView, DensityPlot, LatencyBatchPlot, ParetoPlot, MemoryPlot,
    SpeedupPlot, PredictionPanel,
)  # fmt: skip
NOTES_KEY = "notes"


class AnalysisView(QWidget):
    model_selected = Signal(str)
    analysis_finished = Signal(object)  # analyze()'s dict, or None when it failed
    prediction_finished = Signal(object)  # fit_worker.PredictionResult
    report_written = Signal(str)  # the report's index.html

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._frame = pd.DataFrame()  # the rows analysed (disturbed ones left out if asked)
        self._input = pd.DataFrame()  # the rows given
        self._disturbed = 0  # rows of the input marked disturbed
        self._analysis: dict[str, Any] | None = None
        self._highlighted: str | None = None
        self._layer_profiles: list[Measurement] = []  # from the Layers tab, for the report
        self.last_analysis_thread: int | None = None
        self.last_prediction_thread: int | None = None
        self.runner = FitRunner(self)
        self.runner.analysis_ready.connect(self._on_analysis)
        self.runner.prediction_ready.connect(self._on_prediction)
        self.runner.busy_changed.connect(self._on_busy)

        self.summary_label = QLabel("No data: import results or run a benchmark.")
        self.summary_label.setWordWrap(True)  # it may name the accuracy runs too
        self.busy_bar = QProgressBar()
        self.busy_bar.setRange(0, 0)  # indeterminate: fits do not report progress
        self.busy_bar.setFixedWidth(140)
        self.busy_bar.setVisible(False)
        self.busy_label = QLabel("Fitting…")
        self.busy_label.setVisible(False)
        self.report_button = QPushButton("HTML report…")
        self.report_button.setToolTip("Write the `backbench report` HTML report of these data")
        self.report_button.clicked.connect(self.choose_report)
        self.report_button.setEnabled(False)
        self.report_call = BackgroundCall(self)
        self.report_call.done.connect(self._on_report_written)
        self.report_call.failed.connect(lambda text: self._on_report_failed(text))
        self.exclude_disturbed = QCheckBox("Exclude disturbed")
        self.exclude_disturbed.setToolTip(
            "Leave out measurements during which other processes used more CPU than the "
            "run's threshold (disturbed), from every analysis and from the predictor"
        )
        self.exclude_disturbed.setEnabled(False)
        self.exclude_disturbed.toggled.connect(lambda _on: self._analyse_input())
        bar = QHBoxLayout()
        bar.addWidget(self.summary_label, 1)
        bar.addWidget(self.exclude_disturbed)
        bar.addWidget(self.busy_label)
        bar.addWidget(self.busy_bar)
        bar.addWidget(self.report_button)
        self.error_label = QLabel("")
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #b00020;")
        self.error_label.setVisible(False)

        self.tabs = QTabWidget()
        self.plots: dict[str, AnalysisPlot] = {}
        for cls in PLOT_CLASSES:
            plot = cls()
            plot.model_clicked.connect(self._on_model_clicked)
            self.plots[plot.key] = plot
            self.tabs.addTab(plot, plot.title)
        self.notes = QTextBrowser()
        self.notes.setOpenLinks(False)
        self.tabs.addTab(self.notes, "Notes")
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self.error_label)
        layout.addWidget(self.tabs, 1)

    # ---- public API ---------------------------------------------------------------------

    def set_dataframe(self, df: pd.DataFrame) -> None:
        """Analyse long-schema rows (in a worker thread); an empty frame clears the views."""
        from core.analysis.data import disturbed_flags

        self._input = df.reset_index(drop=True).copy()
        try:
            self._disturbed = int(disturbed_flags(self._input).map(lambda flag: flag is True).sum())
        except BackbenchError:
            self._disturbed = 0  # an unreadable flag: the analysis says which row, when it runs
        self.exclude_disturbed.setText(
            f"Exclude disturbed ({self._disturbed})" if self._disturbed else "Exclude disturbed"
        )
        self.exclude_disturbed.setEnabled(self._disturbed > 0)
        self._analyse_input()

    def set_layer_profiles(self, measurements: list[Measurement]) -> None:
        """The per-layer profiles held (the Layers tab's): the HTML report adds a
        per-layer section for those of the measurements analysed."""
        self._layer_profiles = list(measurements)

    def layer_profiles_shown(self) -> list[Measurement]:
        """The profiles of the measurements analysed now (by run, id and case)."""
        columns = ("run_id", "measurement_id", "model", "backend", "device", "precision", "batch_size")
        frame = self._frame
        if frame.empty or not self._layer_profiles or any(c not in frame.columns for c in columns):
            return []

        def text(value: object) -> str:  # 3, 3.0 and numpy's 3 are one id
            if isinstance(value, numbers.Real) and not isinstance(value, bool) and float(value).is_integer():
                return str(int(value))
            return str(value)

        present = {tuple(text(v) for v in row) for row in frame[list(columns)].itertuples(index=False)}

        def key(m: Measurement) -> tuple[str, ...]:
            case = m.case
            values = (m.run_id, m.measurement_id, case.model, case.backend.value, case.device,
                      case.precision.value, case.batch_size)  # fmt: skip
            return tuple(text(v) for v in values)

        return [m for m in self._layer_profiles if key(m) in present]

    def excluded_disturbed(self) -> int:
        """How many disturbed rows the analysis leaves out now."""
        return self._disturbed if self.exclude_disturbed.isChecked() else 0

    def _analyse_input(self) -> None:
        from core.analysis.data import without_disturbed

        frame = self._input
        if self.excluded_disturbed():
            # The same rows core leaves out (--exclude-disturbed), for the predictor too.
            frame, _count = without_disturbed(frame)
        self._frame = frame
        if self._frame.empty:
            self.runner.cancel()
            self._analysis = None
            if self._input.empty:
                self.summary_label.setText("No data: import results or run a benchmark.")
                reason = "no measurements to analyse"
            else:
                self.summary_label.setText(
                    f"All {len(self._input)} measurements are disturbed: untick Exclude "
                    "disturbed to analyse them."
                )
                reason = "every measurement is disturbed, and disturbed ones are excluded"
            for plot in self.plots.values():
                plot.show_skipped(reason)
            self.report_button.setEnabled(False)
            return
        self.error_label.setVisible(False)
        self.measured_accuracy.set_rows(self._frame)
        self.summary_label.setText(f"Analysing {len(self._frame)} measurements…")
        self.plots[PredictionPanel.key].show_pending(
            "Fitting the latency predictor (after the analysis)…"
        )
        self.runner.submit(self._frame)

    def dataframe(self) -> pd.DataFrame:
        return self._frame

    @property
    def measured_accuracy(self) -> MeasuredAccuracyView:
        return cast(MeasuredAccuracyView, self.plots[MeasuredAccuracyView.key])

    def analysis(self) -> dict[str, Any] | None:
        return self._analysis

    def highlight_model(self, name: str) -> None:
        """Highlight ``name`` in every plot (no model_selected: the caller already knows)."""
        self._highlighted = name or None
        for plot in self.plots.values():
            plot.highlight_model(self._highlighted)

    def highlighted_model(self) -> str | None:
        return self._highlighted

    def view_keys(self) -> list[str]:
        return [*self.plots, NOTES_KEY]

    def show_view(self, key: str) -> None:
        """Bring tab ``key`` (see view_keys) to the front."""
        widget = self.notes if key == NOTES_KEY else self.plots[key]
        self.tabs.setCurrentWidget(widget)

    def is_busy(self) -> bool:
        return self.runner.is_busy()

    def shutdown(self, timeout_ms: int = 30_000) -> None:
        """Drop pending fits and wait for the running one (call before the app exits)."""
        self.runner.cancel()
        self.runner.wait(timeout_ms)

    def export_report(self, out_dir: str | Path, predictor: bool = True) -> Path:
        """The `backbench report` HTML report of the data shown, written now (blocks; the
        button uses start_report); returns its index.html."""
        return self.export_report_of(self._frame, Path(out_dir), predictor, self.layer_profiles_shown())

    def start_report(self, out_dir: str | Path, predictor: bool = True) -> bool:
        """Write the HTML report on a worker thread (its predictor check takes a while);
        ``report_written`` or the error line tells how it went."""
        frame = self._frame.copy()
        profiles = self.layer_profiles_shown()
        started = self.report_call.start(
            lambda: self.export_report_of(frame, Path(out_dir), predictor, profiles)
        )
        if started:
            self.report_button.setEnabled(False)
            self.report_button.setText("Writing report…")
        return started

    @staticmethod
    def export_report_of(
        frame: pd.DataFrame, out_dir: Path, predictor: bool, layer_profiles: list[Measurement] | None = None
    ) -> Path:
        from gui.export import export_report

        return export_report(frame, out_dir, title="backbench report", predictor=predictor,
                             layer_profiles=layer_profiles or ())  # fmt: skip

    def export_current(self) -> None:
        """Export what the current tab shows: its plot as PNG/SVG or its data as CSV (a
        file dialog); on the Notes tab, the HTML report."""
        widget = self.tabs.currentWidget()
        if not isinstance(widget, AnalysisPlot):
            self.choose_report()
            return
        path, _ = QFileDialog.getSaveFileName(
            self, f"Export {widget.title}", f"{widget.key}.png",
            "PNG image (*.png);;SVG image (*.svg);;CSV data (*.csv)",
        )  # fmt: skip
        if not path:
            return
        try:
            written = widget.export(path)
        except BackbenchError as exc:
            self._show_error(f"Could not export: {exc}")
            return
        self.summary_label.setText(f"Saved {written}")

    def choose_report(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder for the HTML report")
        if folder:
            self.start_report(Path(folder) / "backbench-report")

    def _on_report_written(self, index: Any) -> None:
        self.report_button.setText("HTML report…")
        self.report_button.setEnabled(True)
        self.summary_label.setText(f"Report written: {index}")
        self.report_written.emit(str(index))

    def _on_report_failed(self, message: str) -> None:
        self.report_button.setText("HTML report…")
        self.report_button.setEnabled(not self._frame.empty)
        self._show_error(f"Could not write the report: {message}")

    def closeEvent(self, event: QCloseEvent) -> None:
        # No waiting: the fit runs on a daemon thread and its result is now dropped.
        self.runner.cancel()
        super().closeEvent(event)

    # ---- results ----------------------------------------------------------------------

    def _on_busy(self, busy: bool) -> None:
        self.busy_bar.setVisible(busy)
        self.busy_label.setVisible(busy)

    def _show_error(self, message: str) -> None:
        self.error_label.setText(message)
        self.error_label.setVisible(True)

    def _on_analysis(self, result: AnalysisResult) -> None:
        self.last_analysis_thread = result.thread_id
        self._analysis = result.analysis
        if result.analysis is None:
            message = result.error or "the analysis failed"
            self._show_error(f"No analysis: {message}")
            text = f"{len(self._frame)} measurements: nothing to analyse."
            if self.measured_accuracy.skipped_reason is None:
                text += " Their measured accuracy is in the Measured accuracy tab."
            self.summary_label.setText(text)
            for plot in self.plots.values():
                if not isinstance(plot, (PredictionPanel, MeasuredAccuracyView)):
                    plot.show_skipped(message)
            self.notes.setHtml(f"<p>{html.escape(message)}</p>")
            self.analysis_finished.emit(None)
            return
        self.show_analysis(result.analysis, result.memory)

    def show_analysis(self, analysis: dict[str, Any], memory: MemoryChoices | None = None) -> None:
        """Draw an analyze() result; ``memory`` holds the memory view's fit per memory
        figure (gui.memory_choice). Without it (an analysis computed elsewhere, e.g.
        loaded from analysis.json) the memory view shows analyze()'s own figure."""
        self._analysis = analysis
        info = analysis.get("input") or {}
        excluded = self.excluded_disturbed()
        if excluded:
            disturbed = f" {excluded} disturbed measurement(s) excluded."
        elif self._disturbed:
            disturbed = f" Includes {self._disturbed} disturbed measurement(s)."
        else:
            disturbed = ""
        self.summary_label.setText(
            f"{info.get('rows_used', 0)} of {info.get('rows_read', 0)} measurements: "
            f"{len(info.get('models') or [])} models, {len(info.get('platforms') or [])} platform(s), "
            f"batch sizes {', '.join(str(b) for b in info.get('batch_sizes') or [])}.{disturbed}"
            + self._accuracy_note()
        )
        memory_plot = self.plots[MemoryPlot.key]
        if isinstance(memory_plot, MemoryPlot):
            memory_plot.set_memory_choices(memory)
        # Every view opens on the platform with the most data (the one analyze() leads with).
        main_platform = (analysis.get("latency_vs_batch") or {}).get("platform")
        for plot in self.plots.values():
            plot.preferred_platform = main_platform
            if not isinstance(plot, PredictionPanel):
                plot.set_analysis(analysis)
                plot.highlight_model(self._highlighted)
        self._fill_notes(analysis)
        self.report_button.setEnabled(not self._frame.empty)
        self.analysis_finished.emit(analysis)

    def _accuracy_note(self) -> str:
        """Where each platform's accuracy is: analyze() counts accuracy rows out of its
        measurements once their figures are joined to the timing rows."""
        table = self.measured_accuracy.table
        if self.measured_accuracy.skipped_reason is not None or table.empty:
            return ""
        measured = int((table["accuracy_source"] == MEASURED).sum())
        return f" Accuracy runs: {measured} model-platform result(s), in the Measured accuracy tab."

    def _on_prediction(self, result: PredictionResult) -> None:
        self.last_prediction_thread = result.thread_id
        panel = self.plots[PredictionPanel.key]
        if isinstance(panel, PredictionPanel):
            panel.set_prediction(result, self._frame)
            panel.highlight_model(self._highlighted)
        self.prediction_finished.emit(result)

    def _on_model_clicked(self, name: str) -> None:
        self.highlight_model(name)
        self.model_selected.emit(name)

    def _fill_notes(self, analysis: dict[str, Any]) -> None:
        info = analysis.get("input") or {}
        parts = [
            "<h3>Input</h3><ul>",
            f"<li>{info.get('rows_read')} rows read, {info.get('rows_used')} used; "
            f"{info.get('rows_excluded_status')} excluded by status, "
            f"{info.get('rows_dropped_missing')} dropped for missing values.</li>",
            f"<li>Models: {html.escape(', '.join(info.get('models') or []))}</li>",
            f"<li>Platforms: {html.escape(', '.join(info.get('platforms') or []))}</li>",
            f"<li>Batch sizes: {', '.join(str(b) for b in info.get('batch_sizes') or [])}</li>",
            "</ul>",
        ]
        skipped = analysis.get("skipped") or {}
        if skipped:
            parts.append("<h3>Not computed</h3><ul>")
            parts += [
                f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in skipped.items()
            ]
            parts.append("</ul>")
        notes = analysis.get("notes") or []
        if notes:
            parts.append("<h3>Notes</h3><ul>")
            parts += [f"<li>{html.escape(str(n))}</li>" for n in notes]
            parts.append("</ul>")
        self.notes.setHtml("".join(parts))
