"""The table of one per-layer profile: a Qt model over its layers, with the matched
layer of a second profile beside each row when two are compared.

``DisplayRole`` is rounded by core.text; ``RAW_ROLE`` gives the raw value, which the
proxy sorts by. ``row_of(index)`` finds a layer's row (layers keep their index in the
profile, ``INDEX_ROLE``). The highlighted layer is tinted, so it shows even when its table
does not have the focus.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
)
from PySide6.QtGui import QBrush, QColor

from core.report.layers import BY_FUSED, BY_NAME, BY_ORDER, output_shape_text
from core.results import LayerRecord
from core.text import EN_DASH, percent, significant

RAW_ROLE = Qt.ItemDataRole.UserRole
INDEX_ROLE = Qt.ItemDataRole.UserRole + 1
HIGHLIGHT_BRUSH = QBrush(QColor(232, 0, 11, 45))
ModelIndex = QModelIndex | QPersistentModelIndex
HOW_TEXT = {
    BY_NAME: "matched by node name",
    BY_FUSED: "matched by the original layers fused into it",
    BY_ORDER: "matched by type and place in the execution order",
}


@dataclass(frozen=True, slots=True)
class LayerRow:
    """One layer of the profile shown, and its counterpart in the compared profile."""

    index: int  # in its profile's layers
    layer: LayerRecord
    share: float | None
    other: LayerRecord | None = None
    how: str = ""

    def value(self, key: str) -> Any:
        layer = self.layer
        if key == "seq":
            return self.index
        if key == "gflops":
            return None if layer.flops is None else layer.flops / 1e9
        if key == "mb":
            return None if layer.bytes is None else layer.bytes / 1e6
        if key == "share":
            return self.share
        if key == "output":
            return output_shape_text(layer)
        if key == "other_ms":
            return None if self.other is None else self.other.time_ms
        if key == "ratio":
            if self.other is None or self.other.time_ms <= 0:
                return None
            return layer.time_ms / self.other.time_ms
        return getattr(layer, key)


# (key, header, right-aligned)
BASE_COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("seq", "#", True), ("name", "layer", False), ("type", "type", False),
    ("exec_type", "exec type", False), ("time_ms", "ms", True), ("share", "share", True),
    ("gflops", "GFLOPs", True), ("mb", "MB", True), ("output", "output", False),
)  # fmt: skip


class LayerTableModel(QAbstractTableModel):
    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._rows: list[LayerRow] = []
        self._columns: list[tuple[str, str, bool]] = list(BASE_COLUMNS)
        self._highlighted: int | None = None
        self._other_label = ""

    def set_rows(self, rows: Sequence[LayerRow], other_label: str = "") -> None:
        """Show ``rows``; with ``other_label`` (the compared profile), two more columns:
        the matched layer's time there, and this layer's time as a multiple of it."""
        self.beginResetModel()
        self._rows = list(rows)
        self._other_label = other_label
        self._columns = list(BASE_COLUMNS)
        if other_label:  # beside this profile's time, where the eye compares them
            at = self.columns().index("share") + 1
            self._columns[at:at] = [("other_ms", f"{other_label} ms", True), ("ratio", f"× {other_label}", True)]
        self._highlighted = None
        self.endResetModel()

    def rows(self) -> list[LayerRow]:
        return list(self._rows)

    def columns(self) -> list[str]:
        return [key for key, _header, _right in self._columns]

    def row_of(self, index: int) -> int | None:
        """The model row of the layer with ``index`` in its profile."""
        for row, item in enumerate(self._rows):
            if item.index == index:
                return row
        return None

    def set_highlighted(self, index: int | None) -> None:
        """Tint the row of the layer with ``index`` (None: no row)."""
        old, self._highlighted = self._highlighted, index
        for layer_index in (old, index):
            row = self.row_of(layer_index) if layer_index is not None else None
            if row is not None:
                self.dataChanged.emit(self.index(row, 0), self.index(row, self.columnCount() - 1),
                                      [Qt.ItemDataRole.BackgroundRole])  # fmt: skip

    def highlighted(self) -> int | None:
        return self._highlighted

    # -- the Qt model ----------------------------------------------------------------------

    def rowCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self._columns)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(self._columns):
            return None
        key, header, _right = self._columns[section]
        if role == Qt.ItemDataRole.DisplayRole:
            return header
        if role == Qt.ItemDataRole.ToolTipRole:
            return {
                "time_ms": "median time of the layer over the profiled iterations",
                "share": "of the sum of every layer's time",
                "gflops": "GFLOPs of the layer (2 per multiply-add), where its shapes say",
                "mb": "inputs, weights and outputs, in MB, where the shapes say",
                "exec_type": "how the framework ran it (kernel / primitive and its precision)",
                "other_ms": f"the matched layer's time in {self._other_label}",
                "ratio": f"this layer's time as a multiple of the matched layer's in {self._other_label}",
            }.get(key)
        return None

    def data(self, index: ModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        item = self._rows[index.row()]
        key, _header, right = self._columns[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(item, key)
        if role == RAW_ROLE:
            value = item.value(key)
            return "" if value is None else value
        if role == INDEX_ROLE:
            return item.index
        if role == Qt.ItemDataRole.TextAlignmentRole:
            horizontal = Qt.AlignmentFlag.AlignRight if right else Qt.AlignmentFlag.AlignLeft
            return int(horizontal | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.BackgroundRole and item.index == self._highlighted:
            return HIGHLIGHT_BRUSH
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tip(item)
        return None

    def _text(self, item: LayerRow, key: str) -> str:
        value = item.value(key)
        if key == "share":
            return percent(value, missing=EN_DASH)
        if key == "ratio":
            return EN_DASH if value is None else f"{significant(value, 3)}×"
        if key in ("time_ms", "other_ms", "gflops", "mb"):
            return significant(value, 3, missing=EN_DASH)
        return str(value)

    def _tip(self, item: LayerRow) -> str:
        layer = item.layer
        lines = [layer.name, f"{layer.type}, {layer.exec_type}" + (f", {layer.precision}" if layer.precision else "")]
        if layer.input_shapes:
            lines.append("inputs: " + "; ".join("x".join(str(d) for d in s) for s in layer.input_shapes))
        if layer.output_shapes:
            lines.append("outputs: " + output_shape_text(layer))
        fused = [name for name in layer.fused if name != layer.name]
        if fused:
            lines.append("fused: " + ", ".join(fused))
        if item.other is not None:
            lines.append(f"{self._other_label}: {item.other.name}, {item.other.exec_type}, "
                         f"{significant(item.other.time_ms, 3)} ms ({HOW_TEXT.get(item.how, item.how)})")  # fmt: skip
        elif self._other_label:
            lines.append(f"no matching layer in {self._other_label}")
        return "\n".join(lines)


class LayerSortProxy(QSortFilterProxyModel):
    """Sorts by the raw value; text and numbers never mix within a column."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.setSortRole(RAW_ROLE)

    def lessThan(self, left: ModelIndex, right: ModelIndex) -> bool:
        a, b = left.data(RAW_ROLE), right.data(RAW_ROLE)
        if a == "" and b == "":
            return False
        if a == "" or b == "":  # missing values last, whichever the order
            return (a != "") if self.sortOrder() == Qt.SortOrder.AscendingOrder else (a == "")
        try:
            return bool(a < b)
        except TypeError:
            return str(a) < str(b)
