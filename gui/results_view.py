"""The results view: runs, a sortable, filterable table of measurements, and run details.

Data come from the agents (``set_dataframe``) or from files (``import_file``: a store,
CSV or JSON). Selecting runs in the runs list restricts the table to them, which is how
platforms are compared: pick the edge run and the cloud run, and ``selection_changed``
carries their rows to the analysis. A bad file never raises a dialog: the message goes
to the status line and ``import_failed``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PySide6.QtCore import QItemSelection, QItemSelectionModel, QModelIndex, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QSplitter,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from core.errors import BackbenchError
from gui.importers import (
    FILE_FILTER,
    Imported,
    RunInfo,
    describe_runs,
    load_profiles,
    load_results,
    order_columns,
)
from gui.run_details import RunDetails
from gui.table_model import DataFrameModel, ResultsProxyModel

log = logging.getLogger(__name__)

DEFAULT_HIDDEN: frozenset[str] = frozenset(
    {
        "latency_ms_mean", "latency_ms_std", "latency_ms_min", "latency_ms_max", "macs",
        "failure", "weights", "run_id", "measurement_id", "environment_id", "started_at",
        "target_met", "baseline_rss_mb", "convert_s", "load_s", "compile_s", "warmup_s",
        "measure_s", "wall_s",
        # The interval columns show the CI bounds; the figures behind them stay a click away.
        "top1_ci_low", "top1_ci_high", "top5_ci_low", "top5_ci_high", "top5_ci95",
        "accuracy_reference", "dataset_id",
    }
)  # fmt: skip
# Accuracy-run columns (issue 12), hidden while no row has a value: a table of timings
# gains no empty columns.
ACCURACY_DISPLAY: tuple[str, ...] = (
    "top1_ci95", "top1_agreement", "max_logit_diff", "n_eval_images", "skipped_images",
)  # fmt: skip
# Display order of the table: what a reader compares first, then the rest.
TABLE_ORDER: tuple[str, ...] = (
    "model", "backend", "device", "precision", "mode", "batch_size", "per_image_ms",
    "latency_ms_median", "latency_ms_p90", "latency_ms_p99", "ci95_rel", "iterations",
    "throughput_ips", "first_inference_ms", "model_rss_mb", "peak_rss_mb", "peak_device_mem_mb",
    "params", "flops", "top1", "top5", "top1_agreement", "max_logit_diff", "n_eval_images",
    "skipped_images", "status", "disturbed", "interference", "attempt", "run_name", "error",
)  # fmt: skip
FILTER_HELP = (
    "Words match model, backend, device, precision, mode, status or run.\n"
    "column:text matches one column; batch>=8, per_image_ms<5, params>20 (millions),\n"
    "flops<2 (GFLOPs) compare numbers in the header's unit; disturbed=no keeps the\n"
    "cases no other process disturbed. Terms combine with AND."
)
FILTER_DELAY_MS = 200


class ResultsView(QWidget):
    """Runs list + run details on the left, the measurements table on the right."""

    model_selected = Signal(str)
    selection_changed = Signal(object)  # DataFrame of the rows in view (runs x filter)
    import_failed = Signal(str)
    imported = Signal(str)  # source label
    # (list[Measurement] with per-layer profiles, source label, appended): what a file held
    profiles_loaded = Signal(object, str, bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._frame = pd.DataFrame()
        self._run_keys = np.array([], dtype=object)
        self._runs: dict[str, RunInfo] = {}
        self._source_label = ""
        self._echo_guard = False
        self._last_mask: np.ndarray | None = None
        self._info_text = ""
        self.last_error: str | None = None

        self.model = DataFrameModel(parent=self)
        self.proxy = ResultsProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self._build_ui()
        self._filter_timer = QTimer(self)
        self._filter_timer.setSingleShot(True)
        self._filter_timer.setInterval(FILTER_DELAY_MS)
        self._filter_timer.timeout.connect(self.apply_filter)

    # ---- layout ---------------------------------------------------------------------

    def _build_ui(self) -> None:
        self.import_button = QToolButton()
        self.import_button.setText("Import…")
        self.import_button.setToolTip("Open a results store (.db), CSV or JSON file (Ctrl+O)")
        self.import_button.setPopupMode(QToolButton.ToolButtonPopupMode.MenuButtonPopup)
        self.import_button.clicked.connect(lambda: self.choose_file(append=False))
        menu = QMenu(self.import_button)
        menu.addAction("Open (replace the table)…", lambda: self.choose_file(append=False))
        menu.addAction("Add to the table…", lambda: self.choose_file(append=True))
        self.import_button.setMenu(menu)
        self.export_button = QPushButton("Export CSV…")
        self.export_button.setToolTip("Save the rows in view as CSV, raw values")
        self.export_button.clicked.connect(self.choose_export)
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText(
            "Filter: resnet  backend:openvino  batch>=8  per_image_ms<5"
        )
        self.filter_edit.setToolTip(FILTER_HELP)
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.textChanged.connect(lambda _text: self._filter_timer.start())
        self.filter_edit.returnPressed.connect(self.apply_filter)
        self.count_label = QLabel("No data")
        bar = QHBoxLayout()
        bar.addWidget(self.import_button)
        bar.addWidget(self.export_button)
        bar.addWidget(self.filter_edit, 1)
        bar.addWidget(self.count_label)

        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(-1, Qt.SortOrder.AscendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionsMovable(True)
        header.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        header.customContextMenuRequested.connect(self._column_menu)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.selectionModel().selectionChanged.connect(self._on_row_selection)

        self.runs_table = QTableWidget(0, 4)
        self.runs_table.setHorizontalHeaderLabels(["Run", "Platform", "Rows", "Source"])
        self.runs_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.runs_table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.runs_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.runs_table.verticalHeader().setVisible(False)
        self.runs_table.horizontalHeader().setStretchLastSection(True)
        self.runs_table.itemSelectionChanged.connect(self._on_runs_selected)
        self.runs_table.setToolTip("Select runs (Ctrl/Shift-click) to compare their platforms")
        self.show_all_button = QPushButton("All runs")
        self.show_all_button.clicked.connect(self.runs_table.clearSelection)
        runs_title = QLabel("Runs: select to compare platforms")
        runs_bar = QHBoxLayout()
        runs_bar.addWidget(runs_title, 1)
        runs_bar.addWidget(self.show_all_button)
        runs_box = QWidget()
        runs_layout = QVBoxLayout(runs_box)
        runs_layout.setContentsMargins(0, 0, 0, 0)
        runs_layout.addLayout(runs_bar)
        runs_layout.addWidget(self.runs_table, 1)
        self.details = RunDetails()
        left = QSplitter(Qt.Orientation.Vertical)
        left.addWidget(runs_box)
        left.addWidget(self.details)
        left.setSizes([260, 420])
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(self.table)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([380, 1000])

        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self.splitter, 1)
        layout.addWidget(self.status_label)

    # ---- data in ----------------------------------------------------------------------

    def set_dataframe(
        self, df: pd.DataFrame, source_label: str = "", runs: Sequence[Any] | None = None
    ) -> None:
        """Show ``df`` (long schema). ``runs`` (core.results.Run objects or dicts with id,
        name, status, manifest, spec) supply run details the rows cannot carry."""
        label = source_label or "data"
        frame = order_columns(df.reset_index(drop=True))
        keys, infos = describe_runs(frame, label, runs or ())
        self._load(Imported(frame, keys, infos, label), append=False)

    def add_dataframe(
        self, df: pd.DataFrame, source_label: str = "", runs: Sequence[Any] | None = None
    ) -> None:
        """Add rows from another source (e.g. one agent's run) to the table. Rows of a run
        already shown (same source and run id) are replaced, so a refetched run is not doubled."""
        label = source_label or "data"
        frame = order_columns(df.reset_index(drop=True))
        keys, infos = describe_runs(frame, label, runs or ())
        if not self._frame.empty:
            keep = ~np.isin(self._run_keys, list(keys))
            self._frame = self._frame.loc[keep].reset_index(drop=True)
            self._run_keys = self._run_keys[keep]
            self._runs = {k: v for k, v in self._runs.items() if k in set(self._run_keys.tolist())}
        self._load(Imported(frame, keys, infos, label), append=True)

    def import_file(self, path: str | Path, append: bool = False) -> bool:
        """Load a store, CSV or JSON file. On a bad file the table is unchanged, the
        message shows in the status line and ``import_failed`` carries it; returns False."""
        try:
            imported = load_results(path)
        except BackbenchError as exc:
            self._fail(f"Could not import {Path(path).name}: {exc}")
            return False
        except OSError as exc:
            self._fail(
                f"Could not import {Path(path).name}: {exc.strerror or exc}. Check the path and permissions."
            )
            return False
        self._load(imported, append=append)
        self.imported.emit(imported.source)
        self.profiles_loaded.emit(load_profiles(path), imported.source, append)
        return True

    def _load(self, imported: Imported, append: bool) -> None:
        frame, keys = imported.frame, np.asarray(imported.run_keys, dtype=object)
        runs = {info.key: info for info in imported.runs}
        if append and not self._frame.empty:
            frame = order_columns(pd.concat([self._frame, frame], ignore_index=True, sort=False))
            keys = np.concatenate([self._run_keys, keys])
            runs = {**self._runs, **runs}
            sources = self._source_label.split(" + ")
            label = " + ".join(
                sources if imported.source in sources else [*sources, imported.source]
            )
        else:
            label = imported.source
        self._frame, self._run_keys, self._runs, self._source_label = frame, keys, runs, label
        first = [c for c in TABLE_ORDER if c in frame.columns]
        self.model.set_dataframe(frame[first + [c for c in frame.columns if c not in first]])
        self._apply_default_columns()
        self._fill_runs()
        self.last_error = None
        self._info_text = f"{len(frame)} measurements, {len(runs)} run(s) from {label}."
        self._show_info(self._info_text)
        self._emit_selection(force=True)

    def _show_info(self, text: str) -> None:
        self.status_label.setStyleSheet("")
        self.status_label.setText(text)

    def _fail(self, message: str) -> None:
        log.info("%s", message)
        self.last_error = message
        self.status_label.setStyleSheet("color: #b00020;")
        self.status_label.setText(message)
        self.import_failed.emit(message)

    def _apply_default_columns(self) -> None:
        header = self.table.horizontalHeader()
        frame = self.model.dataframe()
        for i, name in enumerate(self.model.columns()):
            empty = name in ACCURACY_DISPLAY and bool(frame[name].isna().all())
            self.table.setColumnHidden(i, name in DEFAULT_HIDDEN or empty)
        self.table.resizeColumnsToContents()
        for i in range(self.model.columnCount()):
            header.resizeSection(i, min(header.sectionSize(i), 260))

    def _fill_runs(self) -> None:
        self.runs_table.blockSignals(True)
        self.runs_table.setRowCount(0)
        for key, info in self._runs.items():
            rows = self._frame.loc[self._run_keys == key]
            platforms = sorted(
                {
                    "/".join(str(r.get(c, "?")) for c in ("backend", "device", "precision"))
                    for r in rows.to_dict(orient="records")
                }
            )
            row = self.runs_table.rowCount()
            self.runs_table.insertRow(row)
            name_item = QTableWidgetItem(info.name)
            name_item.setData(Qt.ItemDataRole.UserRole, key)
            name_item.setToolTip(f"{info.name} (status {info.status or 'unknown'})")
            self.runs_table.setItem(row, 0, name_item)
            self.runs_table.setItem(row, 1, QTableWidgetItem(", ".join(platforms)))
            count = QTableWidgetItem(str(len(rows)))
            count.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.runs_table.setItem(row, 2, count)
            self.runs_table.setItem(row, 3, QTableWidgetItem(info.source))
        self.runs_table.resizeColumnsToContents()
        self.runs_table.blockSignals(False)
        self.proxy.set_allowed_rows(None)
        if len(self._runs) == 1:
            only = next(iter(self._runs.values()))
            self.details.set_run(only.manifest, only.spec, only.name, self._run_rows(only.key))
        else:
            self.details.clear("Select a run to see its environment")
        self._update_count()

    # ---- selection and filter -----------------------------------------------------------

    def selected_run_keys(self) -> list[str]:
        rows = sorted({index.row() for index in self.runs_table.selectedIndexes()})
        return [self.runs_table.item(r, 0).data(Qt.ItemDataRole.UserRole) for r in rows]

    def select_runs(self, names_or_keys: Sequence[str]) -> None:
        """Select runs by name or key (as a user's Ctrl-click would)."""
        wanted = set(names_or_keys)
        self.runs_table.clearSelection()
        mode = QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
        for row in range(self.runs_table.rowCount()):
            item = self.runs_table.item(row, 0)
            if item.text() in wanted or item.data(Qt.ItemDataRole.UserRole) in wanted:
                self.runs_table.selectionModel().select(self.runs_table.model().index(row, 0), mode)

    def _on_runs_selected(self) -> None:
        keys = self.selected_run_keys()
        allowed = np.isin(self._run_keys, keys) if keys else None
        self.proxy.set_allowed_rows(allowed)
        current = self.runs_table.currentRow()
        if keys:
            key = (
                self.runs_table.item(current, 0).data(Qt.ItemDataRole.UserRole)
                if current >= 0
                else keys[0]
            )
            info = self._runs.get(key if key in keys else keys[0])
            if info is not None:
                self.details.set_run(info.manifest, info.spec, info.name, self._run_rows(info.key))
        self._update_count()
        self._emit_selection()

    def apply_filter(self) -> None:
        self._filter_timer.stop()
        if self.proxy.set_query(self.filter_edit.text()):
            self.filter_edit.setStyleSheet("")
            if self.last_error is None:
                self._show_info(self._info_text)
        else:
            self.filter_edit.setStyleSheet("border: 1px solid #b00020;")
            self.status_label.setStyleSheet("color: #b00020;")
            self.status_label.setText(self.proxy.query_error or "")
        self._update_count()
        self._emit_selection()

    def set_filter(self, text: str) -> None:
        """Set the filter text and apply it now (no typing delay)."""
        self.filter_edit.setText(text)
        self.apply_filter()

    def _run_rows(self, key: str) -> pd.DataFrame:
        return self._frame.loc[self._run_keys == key]

    def _update_count(self) -> None:
        shown, total = self.proxy.rowCount(), self.model.rowCount()
        text = f"{shown} of {total} rows" if total else "No data"
        disturbed = int((self.model.disturbed_rows() & self.proxy.accepted_mask()).sum())
        if disturbed:
            text += f", {disturbed} disturbed"
        self.count_label.setText(text)
        self.count_label.setToolTip(
            "Disturbed rows (tinted): other processes used more CPU than the run's threshold "
            "while they were measured." if disturbed else ""
        )

    def dataframe(self) -> pd.DataFrame:
        """The rows in view (selected runs, filtered), raw values, in source order."""
        if self._frame.empty:
            return self._frame.copy()
        return self._frame.loc[self.proxy.accepted_mask()].reset_index(drop=True)

    def selected_rows(self) -> pd.DataFrame:
        """The rows selected in the table."""
        rows = sorted(
            {self.proxy.mapToSource(i).row() for i in self.table.selectionModel().selectedRows()}
        )
        return self._frame.iloc[rows].reset_index(drop=True)

    def _emit_selection(self, force: bool = False) -> None:
        """Emit the rows in view, unless they are the same rows as last time (each
        emission may start a fit)."""
        mask = self.proxy.accepted_mask()
        if not force and self._last_mask is not None and np.array_equal(mask, self._last_mask):
            return
        self._last_mask = mask
        self.selection_changed.emit(self.dataframe())

    def _on_row_selection(self, _selected: QItemSelection, _deselected: QItemSelection) -> None:
        if self._echo_guard:
            return
        current = self.table.selectionModel().currentIndex()
        if not current.isValid() or "model" not in self._frame.columns:
            return
        row = self.proxy.mapToSource(current).row()
        if 0 <= row < len(self._frame):
            self.model_selected.emit(str(self._frame.at[row, "model"]))

    def select_model(self, name: str) -> int:
        """Select every visible row of model ``name`` (without emitting model_selected);
        returns how many rows were selected."""
        if "model" not in self._frame.columns:
            return 0
        column = self.model.column_index("model")
        selection = QItemSelection()
        first: QModelIndex | None = None
        matched = 0
        for proxy_row in range(self.proxy.rowCount()):
            index = self.proxy.index(proxy_row, column)
            if self.proxy.data(index, Qt.ItemDataRole.UserRole) == name:
                selection.select(index, index)
                matched += 1
                first = first or index
        self._echo_guard = True
        try:
            flags = (
                QItemSelectionModel.SelectionFlag.ClearAndSelect
                | QItemSelectionModel.SelectionFlag.Rows
            )
            self.table.selectionModel().select(selection, flags)
            if first is not None:
                self.table.selectionModel().setCurrentIndex(
                    first, QItemSelectionModel.SelectionFlag.NoUpdate
                )
                self.table.scrollTo(first, QAbstractItemView.ScrollHint.PositionAtCenter)
        finally:
            self._echo_guard = False
        return matched

    def source_label(self) -> str:
        return self._source_label

    def runs(self) -> list[RunInfo]:
        return list(self._runs.values())

    # ---- dialogs (interactive use only; tests call import_file / export_csv) ------------

    def choose_file(self, append: bool = False) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import results", "", FILE_FILTER)
        if path:
            self.import_file(path, append=append)

    def choose_export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export rows as CSV", "results.csv", "CSV (*.csv)"
        )
        if path:
            self.export_csv(path)

    def export_csv(self, path: str | Path) -> Path | None:
        from gui.export import export_table_csv

        try:
            written = export_table_csv(self.dataframe(), path)
        except BackbenchError as exc:
            self._fail(str(exc))
            return None
        self._show_info(f"Saved {len(self.dataframe())} rows to {written}.")
        return written

    def _column_menu(self, position: Any) -> None:
        menu = QMenu(self)
        for i, name in enumerate(self.model.columns()):
            header = self.model.headerData(i, Qt.Orientation.Horizontal)
            action = menu.addAction(f"{header}  [{name}]")
            action.setCheckable(True)
            action.setChecked(not self.table.isColumnHidden(i))
            action.toggled.connect(lambda on, column=i: self.table.setColumnHidden(column, not on))
        menu.exec(self.table.horizontalHeader().mapToGlobal(position))
