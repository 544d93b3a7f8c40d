"""A Qt table model over a long-schema DataFrame, and the proxy that sorts and filters it.

Raw values are kept: ``DisplayRole`` is rounded (and scaled to the unit in the header,
e.g. params in millions), ``UserRole``/``EditRole`` give the raw value. Sorting uses a
rank per column computed once with pandas (numeric columns by value, text columns in
natural order, so "resnet18" < "resnet101" and 9 < 10), and missing values always go
last. Filtering is one vectorised mask per query, so neither sorting nor filtering calls
back into Python per cell. A row that other processes disturbed (``disturbed`` true)
is tinted amber and says why in its tool tip.

Accuracy rows (issue 12) carry measured top-1/top-5 with the bounds of their 95% Wilson
intervals; the model shows each pair of bounds as one interval column ("74.93–77.31",
sorted by its lower bound) beside the figure, and a measured top-1's tool tip says what
it was measured on. Published (reference) figures are never in these columns: they are
labelled "reference" wherever they are shown (gui.accuracy_data).
"""

from __future__ import annotations

import logging
import math
import re
import shlex
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
)
from PySide6.QtGui import QBrush, QColor

from core.text import EN_DASH, significant
from gui.accuracy_data import as_number, interval_text, with_intervals

log = logging.getLogger(__name__)

RAW_ROLE = Qt.ItemDataRole.UserRole
ModelIndex = QModelIndex | QPersistentModelIndex


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """How a column is shown: header label, unit, a display scale and significant digits."""

    label: str
    unit: str = ""
    scale: float = 1.0
    digits: int = 4
    description: str = ""

    @property
    def header(self) -> str:
        return f"{self.label} ({self.unit})" if self.unit else self.label


COLUMN_SPECS: dict[str, ColumnSpec] = {
    "model": ColumnSpec("model"),
    "backend": ColumnSpec("backend"),
    "device": ColumnSpec("device"),
    "precision": ColumnSpec("precision"),
    "batch_size": ColumnSpec("batch", description="images per inference request"),
    "mode": ColumnSpec("mode", description="latency: one request at a time; throughput: async"),
    "latency_ms_median": ColumnSpec("median", "ms", description="median latency per batch"),
    "latency_ms_mean": ColumnSpec("mean", "ms", description="mean latency per batch"),
    "latency_ms_p90": ColumnSpec("p90", "ms", description="90th percentile latency per batch"),
    "latency_ms_p99": ColumnSpec("p99", "ms", description="99th percentile latency per batch"),
    "latency_ms_std": ColumnSpec("std", "ms", description="standard deviation of latency"),
    "latency_ms_min": ColumnSpec("min", "ms"),
    "latency_ms_max": ColumnSpec("max", "ms"),
    "ci95_rel": ColumnSpec(
        "CI95", "±%", 100.0, 3, "relative half-width of the 95% CI of the median"
    ),
    "iterations": ColumnSpec("iters", description="timed iterations"),
    "per_image_ms": ColumnSpec("per image", "ms", description="time per image"),
    "throughput_ips": ColumnSpec("throughput", "img/s", description="images per second"),
    "first_inference_ms": ColumnSpec("first inference", "ms"),
    "peak_rss_mb": ColumnSpec("peak RSS", "MB", description="peak process memory"),
    "peak_device_mem_mb": ColumnSpec("peak device mem", "MB", description="peak GPU memory"),
    "params": ColumnSpec("params", "M", 1e-6, description="parameters, in millions"),
    "flops": ColumnSpec("FLOPs", "G", 1e-9, description="GFLOPs per image (FLOPs = 2 x MACs)"),
    "macs": ColumnSpec("MACs", "G", 1e-9, description="GMACs per image"),
    "top1": ColumnSpec("top-1", "%", description="top-1 accuracy measured by an accuracy run"),
    "top5": ColumnSpec("top-5", "%", description="top-5 accuracy measured by an accuracy run"),
    "top1_ci95": ColumnSpec("top-1 95% CI", "%", description="95% Wilson interval of the measured top-1"),
    "top5_ci95": ColumnSpec("top-5 95% CI", "%", description="95% Wilson interval of the measured top-5"),
    "top1_ci_low": ColumnSpec("top-1 CI low", "%", description="lower bound of the 95% Wilson interval"),
    "top1_ci_high": ColumnSpec("top-1 CI high", "%", description="upper bound of the 95% Wilson interval"),
    "top5_ci_low": ColumnSpec("top-5 CI low", "%", description="lower bound of the 95% Wilson interval"),
    "top5_ci_high": ColumnSpec("top-5 CI high", "%", description="upper bound of the 95% Wilson interval"),
    "top1_agreement": ColumnSpec(
        "agreement", "%",
        description="share of images whose top-1 class equals the reference platform's (agreement vs)",
    ),
    "max_logit_diff": ColumnSpec(
        "max |Δ logit|", digits=3,
        description="largest absolute difference of any logit from the reference platform's",
    ),
    "accuracy_reference": ColumnSpec(
        "agreement vs", description="the platform agreement and logit differences are measured against"
    ),
    "n_eval_images": ColumnSpec("n images", description="images the accuracy was measured on"),
    "skipped_images": ColumnSpec("skipped", description="images that could not be read, left out"),
    "dataset_id": ColumnSpec("dataset", description="the evaluated images' identity (a hash of their list)"),
    "reference_top1": ColumnSpec(
        "reference top-1", "%",
        description="reference (ImageNet, torchvision): the model card's published top-1, not measured here",
    ),
    "reference_top5": ColumnSpec(
        "reference top-5", "%",
        description="reference (ImageNet, torchvision): the model card's published top-5, not measured here",
    ),
    "accuracy_source": ColumnSpec(
        "accuracy", description="measured (an accuracy run) or reference (ImageNet, torchvision): published"
    ),
    "platform": ColumnSpec("platform", description="backend/device/precision"),
    "status": ColumnSpec("status"),
    "error": ColumnSpec("error"),
    "target_met": ColumnSpec("CI target met"),
    "failure": ColumnSpec("failure"),
    "weights": ColumnSpec("weights"),
    "run_id": ColumnSpec("run id"),
    "run_name": ColumnSpec("run"),
    "measurement_id": ColumnSpec("id"),
    "environment_id": ColumnSpec("environment"),
    "started_at": ColumnSpec("started", description="local time the case started"),
    "model_rss_mb": ColumnSpec(
        "model memory", "MB",
        description="the model's own memory: peak RSS minus the baseline after the framework's imports",
    ),
    "baseline_rss_mb": ColumnSpec(
        "baseline RSS", "MB", description="RSS after the framework's imports, before the model loads"
    ),
    "interference": ColumnSpec(
        "interference", "cores", digits=2,
        description="CPU other processes used during warm-up and the timed loop, in cores",
    ),
    "disturbed": ColumnSpec(
        "disturbed", description="other processes used more CPU than the run's threshold"
    ),
    "attempt": ColumnSpec("attempt", description="1 for the first try; a retry, resume or re-queue adds one"),
    "convert_s": ColumnSpec("convert", "s", description="converting the model (0 when cached)"),
    "load_s": ColumnSpec("load", "s", description="loading the model"),
    "compile_s": ColumnSpec("compile", "s", description="compiling the model for the device"),
    "warmup_s": ColumnSpec("warm-up", "s", description="warm-up, first inference included"),
    "measure_s": ColumnSpec("measure", "s", description="the timed loop"),
    "wall_s": ColumnSpec("wall", "s", description="the whole case, worker start included"),
}  # fmt: skip
# Plain words in a filter match these columns.
TEXT_COLUMNS: tuple[str, ...] = (
    "model", "backend", "device", "precision", "mode", "status", "run_name", "source",
)  # fmt: skip
ALIASES: dict[str, str] = {"batch": "batch_size", "run": "run_name", "b": "batch_size"}
ID_COLUMNS: frozenset[str] = frozenset({"run_id", "measurement_id"})
# Counts: whole numbers even where a missing value made the column float ("5,000").
COUNT_COLUMNS: frozenset[str] = frozenset({"iterations", "n_eval_images", "skipped_images"})
# Yes/no columns: a filter may say disturbed=yes, as the cells read.
BOOL_COLUMNS: frozenset[str] = frozenset({"disturbed", "target_met"})
# The spellings core.analysis.data reads a CSV's disturbed flag in, and the cells' yes/no.
BOOL_WORDS: dict[str, bool] = {
    "yes": True, "y": True, "true": True, "t": True, "1": True,
    "no": False, "n": False, "false": False, "f": False, "0": False,
}  # fmt: skip
_FAILED_BRUSH = QBrush(QColor("#b00020"))
_DISTURBED_BRUSH = QBrush(QColor("#fff0d0"))
_DISTURBED_TEXT_BRUSH = QBrush(QColor("#8a4b00"))
_DISTURBED_MARK = QColor("#E69F00")  # a swatch before "yes" in the disturbed column
def spec_for(column: str) -> ColumnSpec:
    return COLUMN_SPECS.get(column, ColumnSpec(column))


def truth_values(series: pd.Series) -> pd.Series:
    """A yes/no column as a nullable boolean: True, False or <NA> (missing, or a value
    that is neither), whether it came from a store (bools), a CSV ("True", "False", "")
    or JSON."""
    words = series.astype("string").str.strip().str.lower().str.removesuffix(".0")
    truth = pd.Series(pd.NA, index=series.index, dtype="boolean")
    for word, value in BOOL_WORDS.items():
        truth = truth.mask((words == word).fillna(False), value)
    return truth


def disturbed_mask(frame: pd.DataFrame) -> np.ndarray:
    """Rows whose ``disturbed`` is true. False where it is false or unknown, and for
    older results that lack the column."""
    if "disturbed" not in frame.columns:
        return np.zeros(len(frame), dtype=bool)
    return truth_values(frame["disturbed"]).fillna(False).to_numpy(dtype=bool)


def format_value(value: Any, spec: ColumnSpec, column: str = "") -> str:
    """The display text of one cell: scaled, rounded to ``spec.digits`` significant
    figures (core.text.significant); '–' when a number is missing."""
    if value is None or value is pd.NA or value is pd.NaT:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, float, np.integer, np.floating)):
        number = float(value)
        if not math.isfinite(number):
            return EN_DASH
        if column == "started_at":
            return datetime.fromtimestamp(number).strftime("%Y-%m-%d %H:%M:%S")
        if column in COUNT_COLUMNS and number.is_integer():
            return significant(int(number))
        if isinstance(value, (int, np.integer)):
            if column in ID_COLUMNS:
                return str(value)  # an identifier, not a quantity: no thousands separator
            if spec.scale == 1.0:
                return significant(value, spec.digits)
        return significant(number * spec.scale, spec.digits, missing=EN_DASH)
    return str(value)


def natural_key(text: str) -> tuple[Any, ...]:
    """'resnet18' < 'resnet101': digit runs compare as numbers."""
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part)
        for part in re.split(r"(\d+)", text.casefold())
        if part
    )


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def sort_ranks(series: pd.Series) -> np.ndarray:
    """A float rank per row (NaN for missing) that orders the column correctly."""
    if _is_numeric(series) or pd.api.types.is_bool_dtype(series):
        values = pd.to_numeric(series, errors="coerce").astype(float)
        return values.rank(method="first").to_numpy(dtype=float)
    present = series.notna() & (series.astype(str).str.strip() != "")
    numeric = pd.to_numeric(series.where(present), errors="coerce")
    if present.any() and numeric[present].notna().all():
        # A text column of numbers (e.g. read from JSON as strings): sort as numbers.
        return numeric.rank(method="first").to_numpy(dtype=float)
    ranks = np.full(len(series), np.nan)
    positions = np.flatnonzero(present.to_numpy())
    keys = [natural_key(str(v)) for v in series.to_numpy()[positions]]
    order = sorted(range(len(positions)), key=lambda i: (keys[i], positions[i]))
    for rank, i in enumerate(order):
        ranks[positions[i]] = float(rank)
    return ranks


class DataFrameModel(QAbstractTableModel):
    """Read-only model over a DataFrame. The frame is copied; rows keep their order."""

    def __init__(self, frame: pd.DataFrame | None = None, parent: Any = None) -> None:
        super().__init__(parent)
        self._frame = pd.DataFrame()
        self._columns: list[str] = []
        self._values: list[np.ndarray] = []
        self._ranks: dict[int, np.ndarray] = {}
        self._numeric: list[bool] = []
        self._failed = np.zeros(0, dtype=bool)
        self._disturbed = np.zeros(0, dtype=bool)
        self._interference: np.ndarray = np.zeros(0)
        self._interval_highs: dict[str, np.ndarray] = {}
        if frame is not None:
            self.set_dataframe(frame)

    # ---- data -------------------------------------------------------------------------

    def set_dataframe(self, frame: pd.DataFrame) -> None:
        self.beginResetModel()
        self._frame, self._interval_highs = with_intervals(frame.reset_index(drop=True).copy())
        self._columns = [str(c) for c in self._frame.columns]
        # Object arrays per column: one lookup per cell, no pandas indexing in data().
        self._values = [self._frame[c].to_numpy(dtype=object) for c in self._frame.columns]
        self._ranks = {}
        self._numeric = [
            _is_numeric(self._frame[c]) or bool(spec_for(str(c)).unit) for c in self._frame.columns
        ]
        if "status" in self._frame.columns:
            status = self._frame["status"].astype("string").str.lower()
            self._failed = status.isin(["failed", "cancelled"]).fillna(False).to_numpy(dtype=bool)
        else:
            self._failed = np.zeros(len(self._frame), dtype=bool)
        self._disturbed = disturbed_mask(self._frame)
        if "interference" in self._frame.columns:
            interference = pd.to_numeric(self._frame["interference"], errors="coerce")
            self._interference = interference.to_numpy(dtype=float, na_value=np.nan)
        else:
            self._interference = np.full(len(self._frame), np.nan)
        self.endResetModel()

    def dataframe(self) -> pd.DataFrame:
        return self._frame

    def columns(self) -> list[str]:
        return list(self._columns)

    def column_index(self, name: str) -> int:
        return self._columns.index(name)

    def disturbed_rows(self) -> np.ndarray:
        """A mask of the disturbed rows, in source order."""
        return self._disturbed.copy()

    def _disturbed_tip(self, row: int) -> str:
        cores = self._interference[row]
        used = f"{significant(cores, 2)} cores' worth of CPU" if math.isfinite(cores) else "CPU"
        return (
            f"Disturbed: other processes used {used} while this case warmed up and was "
            "timed, above the run's threshold; its latency may read high."
        )

    def _accuracy_tip(self, row: int) -> str | None:
        """What a measured top-1 was measured on, for its tool tip; None for other rows."""

        def value(name: str) -> Any:
            return self.raw(row, self._columns.index(name)) if name in self._columns else None

        n = as_number(value("n_eval_images"))
        if n is None:
            return None
        parts = [f"Measured by an accuracy run on {significant(int(n))} images"]
        skipped = as_number(value("skipped_images"))
        if skipped:
            parts[0] += f" ({significant(int(skipped))} unreadable, skipped)"
        if value("dataset_id"):
            parts.append(f"dataset {value('dataset_id')}")
        interval = interval_text(value("top1_ci_low"), value("top1_ci_high"))
        if interval:
            parts.append(f"95% CI {interval} %")
        agreement = as_number(value("top1_agreement"))
        if agreement is not None:
            parts.append(f"top-1 agrees with {value('accuracy_reference') or 'the reference'} on "
                         f"{significant(agreement, 4)} % of images")  # fmt: skip
        return "; ".join(parts) + ". Not a published figure."

    def raw(self, row: int, column: int) -> Any:
        value = self._values[column][row]
        if isinstance(value, float) and math.isnan(value):
            return None
        return None if value is pd.NA or value is pd.NaT else value

    def sort_ranks(self, column: int) -> np.ndarray:
        ranks = self._ranks.get(column)
        if ranks is None:
            ranks = sort_ranks(self._frame.iloc[:, column])
            self._ranks[column] = ranks
        return ranks

    # ---- Qt interface -----------------------------------------------------------------

    def rowCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._frame)

    def columnCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._columns)

    def data(self, index: ModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row, column = index.row(), index.column()
        name = self._columns[column]
        highs = self._interval_highs.get(name)
        if role == Qt.ItemDataRole.DisplayRole:
            value = self.raw(row, column)
            if value is None:
                return EN_DASH if self._numeric[column] else ""
            if highs is not None:
                return interval_text(value, highs[row]) or EN_DASH
            return format_value(value, spec_for(name), name)
        if role in (RAW_ROLE, Qt.ItemDataRole.EditRole):
            value = self.raw(row, column)
            if highs is not None:
                return None if value is None else [float(value), float(highs[row])]
            return value.item() if isinstance(value, np.generic) else value
        if role == Qt.ItemDataRole.ToolTipRole:
            if self._disturbed[row] and name in ("disturbed", "interference", "model"):
                return self._disturbed_tip(row)
            if name in ("top1", "top5", "top1_ci95", "top5_ci95") and self.raw(row, column) is not None:
                tip = self._accuracy_tip(row)
                if tip is not None:
                    return tip
            value = self.raw(row, column)
            if value is None:
                return None
            return str(value) if name != "error" else str(value)[:2000]
        if role == Qt.ItemDataRole.TextAlignmentRole:
            value = self.raw(row, column)
            if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
                value, (bool, np.bool_)
            ):
                return Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
            return Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
        if role == Qt.ItemDataRole.ForegroundRole:
            if self._failed[row]:
                return _FAILED_BRUSH
            if self._disturbed[row] and name in ("disturbed", "interference"):
                return _DISTURBED_TEXT_BRUSH
            return None
        if role == Qt.ItemDataRole.BackgroundRole and self._disturbed[row]:
            return _DISTURBED_BRUSH
        if role == Qt.ItemDataRole.DecorationRole and self._disturbed[row] and name == "disturbed":
            return _DISTURBED_MARK
        return None

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation == Qt.Orientation.Vertical:
            return str(section + 1) if role == Qt.ItemDataRole.DisplayRole else None
        if not 0 <= section < len(self._columns):
            return None
        name = self._columns[section]
        spec = spec_for(name)
        if role == Qt.ItemDataRole.DisplayRole:
            return spec.header
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{name}: {spec.description}" if spec.description else name
        if role == RAW_ROLE:
            return name
        return None

    def flags(self, index: ModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable


# ---- filtering --------------------------------------------------------------------------


class QueryError(ValueError):
    """A filter term that names no column or compares text with a number."""


_COMPARISON = re.compile(r"^([A-Za-z_][\w]*)\s*(>=|<=|!=|>|<|=|:)\s*(.+)$")


def _column_named(frame: pd.DataFrame, name: str) -> str:
    column = ALIASES.get(name.lower(), name)
    for candidate in frame.columns:
        if str(candidate).lower() == column.lower():
            return str(candidate)
    known = ", ".join(c for c in frame.columns if c in COLUMN_SPECS or c in TEXT_COLUMNS)
    raise QueryError(f"No column {name!r} to filter on. Columns: {known}.")


def _term_mask(frame: pd.DataFrame, term: str) -> pd.Series:
    match = _COMPARISON.match(term)
    if match is None:
        needle = term.casefold()
        mask = pd.Series(False, index=frame.index)
        for column in TEXT_COLUMNS:
            if column in frame.columns:
                text = frame[column].astype("string").str.casefold()
                mask |= text.str.contains(needle, regex=False).fillna(False).astype(bool)
        return mask
    name, op, wanted = match.groups()
    column = _column_named(frame, name)
    series = frame[column]
    word = wanted.strip().lower()
    if (column in BOOL_COLUMNS or pd.api.types.is_bool_dtype(series)) and word in BOOL_WORDS:
        if op not in ("=", ":", "!="):
            raise QueryError(f"{term!r}: {column} is yes or no; use {column}=yes or {column}=no.")
        equal = (truth_values(series) == BOOL_WORDS[word]).fillna(False).astype(bool)
        return ~equal if op == "!=" else equal
    numeric_column = _is_numeric(series)
    try:
        number = float(wanted)
    except ValueError:
        number = None
    if op == ":" and not (numeric_column and number is not None):
        text = series.astype("string").str.casefold()
        return text.str.contains(wanted.casefold(), regex=False).fillna(False).astype(bool)
    if number is None:
        if op in ("=", "!="):
            equal = series.astype("string").str.casefold() == wanted.casefold()
            equal = equal.fillna(False).astype(bool)
            return equal if op == "=" else ~equal
        raise QueryError(f"{term!r}: {op} needs a number, e.g. {name}{op}8.")
    if not numeric_column:
        values = pd.to_numeric(series, errors="coerce")
        if values.notna().sum() == 0:
            raise QueryError(f"{term!r}: the column {column!r} holds text, not numbers.")
    else:
        values = series.astype(float)
    # Compare in the unit the header shows (params in millions, FLOPs in G).
    values = values * spec_for(column).scale
    tolerance = 1e-9 * max(abs(number), 1.0)
    result = {
        ">=": values >= number - tolerance,
        "<=": values <= number + tolerance,
        ">": values > number + tolerance,
        "<": values < number - tolerance,
        "=": (values - number).abs() <= tolerance,
        ":": (values - number).abs() <= tolerance,
        "!=": (values - number).abs() > tolerance,
    }[op]
    return result.fillna(False).astype(bool)


def query_mask(frame: pd.DataFrame, query: str) -> np.ndarray:
    """Rows matching every term of ``query``.

    A plain word matches model, backend, device, precision, mode, status or run name
    (substring, any case). ``column:text`` matches within one column; ``column>=8``,
    ``<``, ``>``, ``<=``, ``=``, ``!=`` compare numbers in the unit the header shows.
    Raises QueryError for an unknown column or a bad comparison.
    """
    try:
        terms = shlex.split(query)
    except ValueError:
        terms = query.split()
    mask = pd.Series(True, index=frame.index)
    for term in terms:
        mask &= _term_mask(frame, term)
    return mask.to_numpy(dtype=bool)


class ResultsProxyModel(QSortFilterProxyModel):
    """Sorts by the source model's ranks (missing values last) and filters by a row mask."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.setSortRole(RAW_ROLE)
        self._mask: np.ndarray | None = None
        self._row_allowed: np.ndarray | None = None
        self._query = ""
        self.query_error: str | None = None

    def setSourceModel(self, model: Any) -> None:
        super().setSourceModel(model)
        if model is None:
            return
        # Masks are per source row: a new frame drops the run selection and re-runs the query.
        model.modelAboutToBeReset.connect(self.reset_filters)
        model.modelReset.connect(lambda: self.set_query(self._query))

    def _source(self) -> DataFrameModel:
        source = self.sourceModel()
        if not isinstance(source, DataFrameModel):
            raise TypeError("ResultsProxyModel needs a DataFrameModel as its source")
        return source

    def _change_filter(self, apply: Any) -> None:
        if hasattr(self, "beginFilterChange"):
            self.beginFilterChange()
            apply()
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:  # Qt < 6.9
            apply()
            self.invalidateRowsFilter()

    def set_query(self, query: str) -> bool:
        """Filter by ``query`` (see query_mask). False, with ``query_error`` set, when the
        query is bad; the previous filter then stays."""
        frame = self._source().dataframe()
        try:
            mask = query_mask(frame, query) if query.strip() else None
        except QueryError as exc:
            self.query_error = str(exc)
            return False
        self.query_error = None
        self._query = query

        def apply() -> None:
            self._mask = mask

        self._change_filter(apply)
        return True

    def set_allowed_rows(self, allowed: np.ndarray | None) -> None:
        """Restrict to rows where ``allowed`` is True (e.g. the selected runs); None: all."""

        def apply() -> None:
            self._row_allowed = None if allowed is None else np.asarray(allowed, dtype=bool)

        self._change_filter(apply)

    def reset_filters(self) -> None:
        self._mask = None
        self._row_allowed = None
        self.query_error = None

    def accepted_mask(self) -> np.ndarray:
        n = self._source().rowCount()
        mask = np.ones(n, dtype=bool)
        for part in (self._mask, self._row_allowed):
            if part is not None and part.size == n:
                mask &= part
        return mask

    def filterAcceptsRow(self, source_row: int, source_parent: ModelIndex) -> bool:
        for part in (self._mask, self._row_allowed):
            if part is not None and source_row < part.size and not part[source_row]:
                return False
        return True

    def lessThan(self, left: ModelIndex, right: ModelIndex) -> bool:
        ranks = self._source().sort_ranks(left.column())
        a, b = ranks[left.row()], ranks[right.row()]
        a_missing, b_missing = math.isnan(a), math.isnan(b)
        if a_missing or b_missing:
            if a_missing and b_missing:
                return left.row() < right.row()
            # Missing values go last whichever way the column is sorted.
            ascending = self.sortOrder() == Qt.SortOrder.AscendingOrder
            return b_missing if ascending else a_missing
        return bool(a < b)
