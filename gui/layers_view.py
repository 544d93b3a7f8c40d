"""The Layers view: where a model's time goes, layer by layer, from the per-layer
profiles that ``--profile-layers`` (or the launcher's "Profile layers") records.

Pick a profiled case (model, platform, batch): the slowest layers as bars and a table,
the time by layer type, and the sum of the layers against the end-to-end median of the
timed loop (the framework's overhead is shown, not hidden). Pick a second profile of the
same model (another precision or device) to put the two side by side: layers are matched
by node name, then by the original layers fused into them, then by type and order
(core.report.layers.match_layers). A click on a layer, in a chart or a table, highlights
it, and its counterpart, everywhere.

Profiles come from the Measurements the GUI holds: an imported store or JSON file
(``set_profiles``/``add_profiles`` from the results view), or an agent's finished run.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QItemSelectionModel, QModelIndex, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from core.errors import BackbenchError, UsageError
from core.report.layers import (
    HOW_TO_PROFILE,
    LayerMatch,
    by_type,
    match_counts,
    match_layers,
    overhead_line,
    platform_label,
    profiled,
    short_name,
)
from core.results import LayerRecord, Measurement, Precision
from core.text import significant
from gui.layers_chart import LayerBarChart
from gui.layers_table import HOW_TEXT, INDEX_ROLE, LayerRow, LayerSortProxy, LayerTableModel

log = logging.getLogger(__name__)

DEFAULT_TOP = 15
NO_COMPARISON = "(none)"
NARROW = {"name": 140, "type": 88, "exec_type": 172, "output": 110}  # px: long names elide, the full text is in the tip
EMPTY_TEXT = "No per-layer profile in the results loaded.\n\n" + HOW_TO_PROFILE


@dataclass(frozen=True, slots=True)
class ProfileEntry:
    key: str  # unique across everything loaded
    source: str
    measurement: Measurement

    @property
    def layers(self) -> tuple[LayerRecord, ...]:
        profile = self.measurement.layer_profile
        return profile.layers if profile is not None else ()


def case_label(m: Measurement) -> str:
    """The platform and batch of a profiled case: openvino/CPU/bf16 b1."""
    return f"{platform_label(m)} b{m.case.batch_size}"


def side_labels(a: Measurement, b: Measurement) -> tuple[str, str]:
    """Short names for two profiles of one model: the parts of the case that differ
    (fp32 / bf16; CPU / MYRIAD; b1 / b8), else their runs."""
    parts_a = [a.case.backend.value, a.case.device, a.case.precision.value, f"b{a.case.batch_size}"]
    parts_b = [b.case.backend.value, b.case.device, b.case.precision.value, f"b{b.case.batch_size}"]
    differ = [i for i, (x, y) in enumerate(zip(parts_a, parts_b, strict=True)) if x != y]
    if differ:
        return " ".join(parts_a[i] for i in differ), " ".join(parts_b[i] for i in differ)
    return (f"run {a.run_name or a.run_id}", f"run {b.run_name or b.run_id}")


def _ratio(new: float | None, old: float | None) -> str:
    if not new or not old:
        return ""
    return f" ({significant(new / old, 3)}×)"


class LayersView(QWidget):
    profiles_changed = Signal(object)  # list[Measurement]: every profile held
    layer_selected = Signal(str)  # the clicked layer's name (in the first profile, where it has one)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._entries: list[ProfileEntry] = []
        self._a: ProfileEntry | None = None
        self._b: ProfileEntry | None = None
        self.matches: list[LayerMatch] = []
        self._highlighted: int | None = None  # index into self.matches
        self._labels = ("", "")
        self._syncing = False

        self.profile_combo = QComboBox()
        self.profile_combo.setMinimumContentsLength(40)
        self.profile_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.profile_combo.setToolTip("The profiled case to show: model, platform, batch size and run")
        self.profile_combo.currentIndexChanged.connect(lambda _i: self._on_profile_chosen())
        self.compare_combo = QComboBox()
        self.compare_combo.setMinimumContentsLength(28)
        self.compare_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.compare_combo.setToolTip("A second profile of the same model (another precision, device or "
                                      "batch size) to put side by side")  # fmt: skip
        self.compare_combo.currentIndexChanged.connect(lambda _i: self._redraw())
        self.top_spin = QSpinBox()
        self.top_spin.setRange(3, 200)
        self.top_spin.setValue(DEFAULT_TOP)
        self.top_spin.setPrefix("top ")
        self.top_spin.setSuffix(" layers")
        self.top_spin.setToolTip("Layers shown in the chart; the tables hold every layer")
        self.top_spin.valueChanged.connect(lambda _v: self._draw_charts())
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Save the view as PNG, or the matched layers as CSV")
        self.export_button.clicked.connect(self.export_current)
        controls = QHBoxLayout()
        controls.addWidget(QLabel("Profile:"))
        controls.addWidget(self.profile_combo, 3)
        controls.addWidget(QLabel("Compare with:"))
        controls.addWidget(self.compare_combo, 2)
        controls.addWidget(self.top_spin)
        controls.addWidget(self.export_button)

        self.summary_label = QLabel()
        self.summary_label.setWordWrap(True)
        self.summary_label.setTextFormat(Qt.TextFormat.RichText)
        self.summary_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.top_chart = LayerBarChart()
        self.type_chart = LayerBarChart()
        self.top_chart.row_clicked.connect(self._on_bar_clicked)
        self.type_chart.row_clicked.connect(lambda _key: None)  # a type row only tints itself
        charts = QSplitter(Qt.Orientation.Horizontal)
        charts.addWidget(self.top_chart)
        charts.addWidget(self.type_chart)
        charts.setStretchFactor(0, 3)
        charts.setStretchFactor(1, 2)
        charts.setSizes([600, 400])

        self.models = (LayerTableModel(self), LayerTableModel(self))
        self.proxies = (LayerSortProxy(self), LayerSortProxy(self))
        self.tables = (QTableView(), QTableView())
        self.table_titles = (QLabel(), QLabel())
        self.table_boxes: list[QWidget] = []
        tables = QSplitter(Qt.Orientation.Horizontal)
        for side in (0, 1):
            self.proxies[side].setSourceModel(self.models[side])
            table = self.tables[side]
            table.setModel(self.proxies[side])
            table.setSortingEnabled(True)
            table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
            table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
            table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
            table.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # kernels differ at the end: ..._amx_bf16
            table.verticalHeader().setVisible(False)
            table.verticalHeader().setDefaultSectionSize(21)
            table.horizontalHeader().setStretchLastSection(True)
            table.selectionModel().currentRowChanged.connect(
                lambda current, _previous, s=side: self._on_row_changed(s, current)
            )
            self.table_titles[side].setStyleSheet("font-weight: bold;")
            box = QWidget()
            box_layout = QVBoxLayout(box)
            box_layout.setContentsMargins(0, 0, 0, 0)
            box_layout.addWidget(self.table_titles[side])
            box_layout.addWidget(table, 1)
            tables.addWidget(box)
            self.table_boxes.append(box)

        self.selection_label = QLabel("Click a layer (a bar or a row) to follow it across both profiles.")
        self.selection_label.setWordWrap(True)
        self.selection_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        body = QSplitter(Qt.Orientation.Vertical)
        body.addWidget(charts)
        body.addWidget(tables)
        body.setStretchFactor(0, 3)
        body.setStretchFactor(1, 2)
        body.setSizes([520, 340])
        content = QWidget()
        content_layout = QVBoxLayout(content)
        content_layout.setContentsMargins(0, 0, 0, 0)
        content_layout.addLayout(controls)
        content_layout.addWidget(self.summary_label)
        content_layout.addWidget(body, 1)
        content_layout.addWidget(self.selection_label)
        self.empty_label = QLabel(EMPTY_TEXT)
        self.empty_label.setWordWrap(True)
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setStyleSheet("color: #555; font-size: 12pt; padding: 40px;")
        self.stack = QStackedWidget()
        self.stack.addWidget(content)
        self.stack.addWidget(self.empty_label)
        layout = QVBoxLayout(self)
        layout.addWidget(self.stack)
        self._fill_profiles()

    # ---- data in ------------------------------------------------------------------------

    def set_profiles(self, measurements: Sequence[Measurement], source: str = "") -> None:
        """Show the profiles among ``measurements`` (others are ignored), replacing all."""
        self._entries = []
        self.add_profiles(measurements, source)

    def add_profiles(self, measurements: Sequence[Measurement], source: str = "") -> None:
        """Add the profiles among ``measurements`` from ``source`` (an agent, a file); a
        profile already held (same source, run and measurement) is replaced."""
        label = source or "data"
        new = [ProfileEntry(self._key(label, m, i), label, m) for i, m in enumerate(profiled(measurements))]
        keys = {entry.key for entry in new}
        self._entries = [e for e in self._entries if e.key not in keys] + new
        self._fill_profiles()
        self.profiles_changed.emit(self.profiles())

    @staticmethod
    def _key(source: str, m: Measurement, position: int) -> str:
        if m.measurement_id is None:
            return f"{source}#{m.run_id}#{m.case.label()}#{position}"
        return f"{source}#{m.run_id}#{m.measurement_id}"

    def profiles(self) -> list[Measurement]:
        return [entry.measurement for entry in self._entries]

    def has_profiles(self) -> bool:
        return bool(self._entries)

    # ---- choosing -----------------------------------------------------------------------

    def _entry_text(self, entry: ProfileEntry, with_model: bool = True) -> str:
        m = entry.measurement
        run = m.run_name or (f"run {m.run_id}" if m.run_id is not None else "")
        parts = [m.case.model] if with_model else []
        parts += [case_label(m), run]
        if len({e.source for e in self._entries}) > 1:
            parts.append(entry.source)
        return " · ".join(p for p in parts if p)

    def _fill_profiles(self) -> None:
        current = self._a.key if self._a is not None else None
        self.profile_combo.blockSignals(True)
        self.profile_combo.clear()
        order = sorted(self._entries, key=self._order)
        for entry in order:
            self.profile_combo.addItem(self._entry_text(entry), entry.key)
        index = self.profile_combo.findData(current) if current is not None else -1
        self.profile_combo.setCurrentIndex(max(0, index) if order else -1)
        self.profile_combo.blockSignals(False)
        self.stack.setCurrentIndex(0 if self._entries else 1)
        self._on_profile_chosen(keep_comparison=index >= 0)

    @staticmethod
    def _order(entry: ProfileEntry) -> tuple[object, ...]:
        """Model, then platform with fp32 first (the usual baseline), then batch size."""
        case = entry.measurement.case
        return (case.model, case.backend.value, case.device, case.precision is not Precision.FP32,
                case.precision.value, case.mode.value, case.batch_size, entry.key)  # fmt: skip

    def _entry(self, key: object) -> ProfileEntry | None:
        return next((e for e in self._entries if e.key == key), None)

    def select_profile(self, key: str, compare: str | None = None) -> None:
        """Show profile ``key``, compared with ``compare`` (a key; None: none)."""
        index = self.profile_combo.findData(key)
        if index < 0:
            raise UsageError(f"No profile {key!r} is loaded.", "Pick one from the Profile list.")
        self.profile_combo.setCurrentIndex(index)
        self.set_comparison(compare)

    def set_comparison(self, key: str | None) -> None:
        index = self.compare_combo.findData(key) if key is not None else 0
        if index < 0:
            raise UsageError(f"{key!r} is not a profile of the same model.", "Pick one from the Compare list.")
        self.compare_combo.setCurrentIndex(index)
        self._redraw()

    def keys(self) -> list[str]:
        return [str(self.profile_combo.itemData(i)) for i in range(self.profile_combo.count())]

    def key_of(self, model: str, precision: str | None = None, device: str | None = None) -> str | None:
        """The first profile of ``model`` (at ``precision`` and on ``device`` if given)."""
        for key in self.keys():
            m = self._entry(key).measurement  # type: ignore[union-attr]
            if m.case.model == model and precision in (None, m.case.precision.value) \
                    and device in (None, m.case.device):  # fmt: skip
                return key
        return None

    def show_model(self, model: str) -> None:
        """Show a profile of ``model``, if one is loaded (a click on it elsewhere)."""
        if self._a is not None and self._a.measurement.case.model == model:
            return
        key = self.key_of(model)
        if key is not None:
            self.profile_combo.setCurrentIndex(self.profile_combo.findData(key))

    def _on_profile_chosen(self, keep_comparison: bool = False) -> None:
        entry = self._entry(self.profile_combo.currentData())
        previous = self.compare_combo.currentData() if keep_comparison else None
        self._a = entry
        self.compare_combo.blockSignals(True)
        self.compare_combo.clear()
        self.compare_combo.addItem(NO_COMPARISON, None)
        default = None
        if entry is not None:
            m = entry.measurement
            others = [e for e in self._entries if e is not entry and e.measurement.case.model == m.case.model]
            others.sort(key=lambda e: (e.measurement.case.batch_size != m.case.batch_size,
                                       case_label(e.measurement), e.key))  # fmt: skip
            for other in others:
                self.compare_combo.addItem(self._entry_text(other, with_model=False), other.key)
            # Another platform at the same batch size is the comparison a user opens this for.
            default = next((o.key for o in others if o.measurement.case.batch_size == m.case.batch_size
                            and case_label(o.measurement) != case_label(m)), None)  # fmt: skip
        wanted = previous if previous is not None and self.compare_combo.findData(previous) >= 0 else default
        self.compare_combo.setCurrentIndex(max(0, self.compare_combo.findData(wanted)) if wanted else 0)
        self.compare_combo.blockSignals(False)
        self._redraw()

    # ---- drawing ------------------------------------------------------------------------

    def _redraw(self) -> None:
        self._b = self._entry(self.compare_combo.currentData())
        self._highlighted = None
        a, b = self._a, self._b
        if a is None:
            self.matches = []
            for model in self.models:
                model.set_rows([])
            self.top_chart.set_bars([], [], [])
            self.type_chart.set_bars([], [], [])
            self.summary_label.setText("")
            return
        if b is not None:
            self.matches = match_layers(a.layers, b.layers)
            self._labels = side_labels(a.measurement, b.measurement)
        else:
            self.matches = [LayerMatch(i, None) for i in range(len(a.layers))]
            self._labels = (case_label(a.measurement), "")
        self._fill_tables()
        self._draw_charts()
        self.summary_label.setText(self._summary_html())
        self.selection_label.setText("Click a layer (a bar or a row) to follow it"
                                     + (" across both profiles." if b is not None else "."))  # fmt: skip

    def _fill_tables(self) -> None:
        a, b = self._a, self._b
        if a is None:
            return
        label_a, label_b = self._labels
        for side, (entry, other, other_label) in enumerate(((a, b, label_b), (b, a, label_a))):
            self.table_boxes[side].setVisible(entry is not None)
            if entry is None:
                self.models[side].set_rows([])
                continue
            layers = entry.layers
            total = sum(layer.time_ms for layer in layers)
            partner: dict[int, tuple[int | None, str]] = {}
            for match in self.matches:
                mine, theirs = (match.a, match.b) if side == 0 else (match.b, match.a)
                if mine is not None:
                    partner[mine] = (theirs, match.how)
            rows = []
            for i, layer in enumerate(layers):
                j, how = partner.get(i, (None, ""))
                matched = other.layers[j] if other is not None and j is not None else None
                rows.append(LayerRow(i, layer, layer.time_ms / total if total > 0 else None, matched, how))
            self.models[side].set_rows(rows, other_label if other is not None else "")
            title = case_label(entry.measurement)
            self.table_titles[side].setText(f"{entry.measurement.case.model}, {title}: {len(layers)} layers")
            self.tables[side].sortByColumn(self.models[side].columns().index("time_ms"), Qt.SortOrder.DescendingOrder)
            self.tables[side].resizeColumnsToContents()
            header = self.tables[side].horizontalHeader()
            for column, key in enumerate(self.models[side].columns()):
                header.resizeSection(column, min(header.sectionSize(column), NARROW.get(key, 240)))

    def _times(self, match: LayerMatch) -> tuple[float | None, float | None]:
        a = self._a.layers[match.a].time_ms if self._a is not None and match.a is not None else None
        b = self._b.layers[match.b].time_ms if self._b is not None and match.b is not None else None
        return a, b

    def _layer_of(self, match: LayerMatch) -> LayerRecord:
        """The layer a match stands for: its first profile's, else the compared one's."""
        if match.a is not None and self._a is not None:
            return self._a.layers[match.a]
        if match.b is not None and self._b is not None:
            return self._b.layers[match.b]
        raise UsageError("A layer match names no layer.", "Pick the profiles again.")

    def top_rows(self) -> list[int]:
        """The matches the chart shows: the slowest, by the larger of their two times."""
        ranked = sorted(range(len(self.matches)), key=lambda k: -max(t or 0.0 for t in self._times(self.matches[k])))
        return ranked[: self.top_spin.value()]

    def _draw_charts(self) -> None:
        if self._a is None:
            return
        label_a, label_b = self._labels
        rows = self.top_rows()
        labels, tips, values_a, values_b = [], [], [], []
        for k in rows:
            match = self.matches[k]
            layer = self._layer_of(match)
            ta, tb = self._times(match)
            only = ""
            if self._b is not None and (match.a is None or match.b is None):
                only = f" [{label_a if match.a is not None else label_b} only]"
            labels.append(f"{short_name(layer, 30)}{only}")
            tips.append(self._match_text(k))
            values_a.append(ta)
            values_b.append(tb)
        series = [(label_a, values_a)] + ([(label_b, values_b)] if self._b is not None else [])
        model = self._a.measurement.case.model
        self.top_chart.set_bars(rows, labels, series, tips=tips, x_label="ms (median over the profiled iterations)",
                                title=f"{model}: the {len(rows)} slowest layers")  # fmt: skip
        self.top_chart.highlight(self._highlighted)
        types_a = {t: (ms, n) for t, ms, n in by_type(self._a.measurement)}
        types_b = {t: (ms, n) for t, ms, n in by_type(self._b.measurement)} if self._b is not None else {}
        names = sorted(set(types_a) | set(types_b), key=lambda t: -max(types_a.get(t, (0.0, 0))[0],
                                                                       types_b.get(t, (0.0, 0))[0]))  # fmt: skip
        type_tips = []
        for t in names:
            parts = [f"{label}: {significant(d[t][0], 3)} ms in {d[t][1]} layer(s)"
                     for label, d in ((label_a, types_a), (label_b, types_b)) if t in d]  # fmt: skip
            type_tips.append("\n".join([t, *parts]))
        type_series = [(label_a, [types_a.get(t, (None, 0))[0] for t in names])]
        if self._b is not None:
            type_series.append((label_b, [types_b.get(t, (None, 0))[0] for t in names]))
        self.type_chart.set_bars(names, names, type_series, tips=type_tips, title="Time by layer type",
                                 x_label="ms (sum over the layers of each type)")  # fmt: skip

    def _summary_html(self) -> str:
        a, b = self._a, self._b
        if a is None:
            return ""
        label_a, label_b = self._labels
        lines = [f"<b>{html.escape(label_a)}</b>: {html.escape(overhead_line(a.measurement))}"]
        if b is None:
            return "<br>".join(lines)
        lines.append(f"<b>{html.escape(label_b)}</b>: {html.escape(overhead_line(b.measurement))}")
        ma, mb = a.measurement, b.measurement
        sum_a, sum_b = (ma.layer_profile.sum_ms if ma.layer_profile else None,
                        mb.layer_profile.sum_ms if mb.layer_profile else None)  # fmt: skip
        counts = match_counts(self.matches)
        text = (f"layer sum {significant(sum_a, 4)} → {significant(sum_b, 4)} ms{_ratio(sum_b, sum_a)}; "
                f"end-to-end median {significant(ma.latency_ms_median, 4)} → "
                f"{significant(mb.latency_ms_median, 4)} ms{_ratio(mb.latency_ms_median, ma.latency_ms_median)}. "
                f"Layers matched: {counts['name']} by name, {counts['fused']} by fused layers, "
                f"{counts['order']} by type and order; {counts['only_a']} only in {label_a}, "
                f"{counts['only_b']} only in {label_b}.")  # fmt: skip
        lines.append(f"<b>{html.escape(label_b)} vs {html.escape(label_a)}</b>: {html.escape(text)}")
        return "<br>".join(lines)

    # ---- highlight ----------------------------------------------------------------------

    def _match_text(self, k: int) -> str:
        match = self.matches[k]
        label_a, label_b = self._labels
        parts = []
        for label, entry, index in ((label_a, self._a, match.a), (label_b, self._b, match.b)):
            if entry is None:
                continue
            if index is None:
                parts.append(f"{label}: no matching layer")
                continue
            layer = entry.layers[index]
            parts.append(f"{label}: {layer.name} ({layer.type}), {significant(layer.time_ms, 3)} ms, {layer.exec_type}")
        ta, tb = self._times(match)
        if ta and tb:
            parts.append(f"{label_b} / {label_a}: {significant(tb / ta, 3)}×, {HOW_TEXT.get(match.how, match.how)}")
        return "\n".join(parts)

    def highlighted(self) -> tuple[int | None, int | None]:
        """The highlighted layer's index in each profile (None where there is none)."""
        if self._highlighted is None:
            return None, None
        match = self.matches[self._highlighted]
        return match.a, match.b

    def highlight_layer(self, side: int, index: int) -> None:
        """Highlight layer ``index`` of profile ``side`` (0: the first, 1: the compared
        one) and its counterpart: bars, table rows and the selection line."""
        for k, match in enumerate(self.matches):
            if (match.a if side == 0 else match.b) == index:
                self._highlight(k)
                return

    def _on_bar_clicked(self, key: Hashable) -> None:
        if isinstance(key, int):
            self._highlight(key)

    def _highlight(self, k: int) -> None:
        self._highlighted = k
        match = self.matches[k]
        self.top_chart.highlight(k)
        layer = self._layer_of(match)
        self.type_chart.highlight(layer.type)
        self._syncing = True
        try:
            for side, index in enumerate((match.a, match.b)):
                self.models[side].set_highlighted(index)
                self._select_row(side, index)
        finally:
            self._syncing = False
        self.selection_label.setText("Selected: " + self._match_text(k).replace("\n", " · "))
        self.layer_selected.emit(layer.name)

    def _select_row(self, side: int, index: int | None) -> None:
        table, model, proxy = self.tables[side], self.models[side], self.proxies[side]
        row = model.row_of(index) if index is not None else None
        if row is None:
            table.selectionModel().clearSelection()
            return
        target = proxy.mapFromSource(model.index(row, 0))
        flags = QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows
        table.selectionModel().setCurrentIndex(target, flags)
        table.scrollTo(target, QAbstractItemView.ScrollHint.EnsureVisible)

    def _on_row_changed(self, side: int, current: QModelIndex) -> None:
        if self._syncing or not current.isValid():
            return
        index = current.data(INDEX_ROLE)
        if isinstance(index, int):
            self.highlight_layer(side, index)

    # ---- export -------------------------------------------------------------------------

    def matched_rows(self) -> list[dict[str, object]]:
        """Every matched pair (and unmatched layer) as raw values: what CSV export writes."""
        label_a, label_b = self._labels
        rows = []
        for match in self.matches:
            row: dict[str, object] = {"matched_by": match.how}
            for prefix, entry, index in (("a", self._a, match.a), ("b", self._b, match.b)):
                layer = entry.layers[index] if entry is not None and index is not None else None
                row[f"{prefix}_profile"] = (label_a, label_b)[prefix == "b"] if entry is not None else ""
                for field in ("name", "type", "exec_type", "time_ms", "flops", "bytes", "precision"):
                    row[f"{prefix}_{field}"] = getattr(layer, field) if layer is not None else None
            rows.append(row)
        return rows

    def export(self, path: str | Path) -> Path:
        """PNG of the view, or CSV of the matched layers, by the file's suffix."""
        target = Path(path).expanduser()
        if target.suffix.lower() == ".csv":
            import pandas as pd

            from gui.export import export_table_csv

            return export_table_csv(pd.DataFrame.from_records(self.matched_rows()), target)
        if target.suffix.lower() != ".png":
            raise UsageError(f"Cannot export to {target.name}.", "Give a file name ending in .png or .csv.")
        if not self.grab().save(str(target)):
            raise UsageError(f"Could not write {target}.", "Check the folder and its permissions.")
        return target

    def export_current(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export the layers view", "layers.png",
                                              "PNG image (*.png);;CSV data (*.csv)")  # fmt: skip
        if not path:
            return
        try:
            written = self.export(path)
        except BackbenchError as exc:
            self.selection_label.setText(f"Could not export: {exc}")
            return
        self.selection_label.setText(f"Saved {written}")
