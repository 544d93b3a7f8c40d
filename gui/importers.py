"""Read results for the GUI: a store (.db), a long-schema CSV, or JSON rows
(``backbench results --format json``), each validated with a message that says what to do.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from core.errors import BackbenchError, DataError, StoreError
from core.results import MEASUREMENT_COLUMNS, Measurement

log = logging.getLogger(__name__)

STORE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
CSV_SUFFIXES = (".csv", ".tsv", ".txt")
JSON_SUFFIXES = (".json",)
SQLITE_MAGIC = b"SQLite format 3\x00"
# The table can show any long-schema rows; these say what each row measured.
IMPORT_COLUMNS: tuple[str, ...] = ("model", "batch_size", "per_image_ms")
_COLUMNS_TEXT = ", ".join(IMPORT_COLUMNS)
FILE_FILTER = "Results (*.db *.sqlite *.sqlite3 *.csv *.json);;All files (*)"


@dataclass(frozen=True, slots=True)
class RunInfo:
    """One run in loaded data. ``key`` is unique across everything loaded."""

    key: str
    name: str
    source: str
    run_id: int | None = None
    status: str | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Imported:
    frame: pd.DataFrame
    run_keys: tuple[str, ...]  # one per row of ``frame``
    runs: tuple[RunInfo, ...]
    source: str


def _number(value: Any) -> int | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if math.isfinite(number) else None


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    text = str(value).strip()
    return text or None


def order_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Long-schema columns first, in their order, then any others."""
    first = [c for c in MEASUREMENT_COLUMNS if c in frame.columns]
    return frame[first + [c for c in frame.columns if c not in first]]


def describe_runs(
    frame: pd.DataFrame, source: str, known: Iterable[Any] = ()
) -> tuple[tuple[str, ...], tuple[RunInfo, ...]]:
    """A run key per row and a RunInfo per run. ``known`` are Run objects or dicts (id,
    name, status, manifest, spec) that add what rows cannot say, such as the manifest."""
    by_id: dict[int, Any] = {}
    for run in known:
        get = run.get if isinstance(run, Mapping) else lambda k, r=run: getattr(r, k, None)
        run_id = _number(get("id"))
        if run_id is not None:
            by_id[run_id] = get
    ids = frame["run_id"] if "run_id" in frame.columns else pd.Series(None, index=frame.index)
    names = frame["run_name"] if "run_name" in frame.columns else pd.Series(None, index=frame.index)
    keys: list[str] = []
    infos: dict[str, RunInfo] = {}
    rows_of: dict[str, list[int]] = {}
    for position, (raw_id, raw_name) in enumerate(zip(ids, names, strict=True)):
        run_id, name = _number(raw_id), _text(raw_name)
        if run_id is not None:
            key = f"{source}#{run_id}"
        elif name is not None:
            key = f"{source}#{name}"
        else:
            key = f"{source}#all"
        keys.append(key)
        rows_of.setdefault(key, []).append(position)
        if key in infos:
            continue
        get = by_id.get(run_id) if run_id is not None else None
        manifest, spec, status = {}, {}, None
        if get is not None:
            manifest = dict(get("manifest") or {})
            raw_spec = get("spec")
            spec = dict(raw_spec.to_dict() if hasattr(raw_spec, "to_dict") else raw_spec or {})
            status = _text(get("status"))
            name = name or _text(get("name"))
        label = name or (f"run {run_id}" if run_id is not None else Path(source).name or source)
        infos[key] = RunInfo(key, label, source, run_id, status, manifest, spec)
    runs = []
    for key, info in infos.items():
        if not info.spec:
            info = RunInfo(
                info.key, info.name, info.source, info.run_id, info.status, info.manifest,
                _spec_from_rows(frame.iloc[rows_of[key]]),
            )  # fmt: skip
        runs.append(info)
    return tuple(keys), tuple(runs)


def _spec_from_rows(rows: pd.DataFrame) -> dict[str, Any]:
    """What the rows say about their sweep, for sources that carry no spec."""
    spec: dict[str, Any] = {"recorded": "no; summarised from the rows"}
    for column in ("backend", "device", "precision", "mode"):
        if column in rows.columns:
            values = sorted({str(v) for v in rows[column].dropna()})
            if values:
                spec[column] = values[0] if len(values) == 1 else values
    if "batch_size" in rows.columns:
        batches = pd.to_numeric(rows["batch_size"], errors="coerce").dropna()
        spec["batch_sizes"] = sorted({int(b) for b in batches})
    if "model" in rows.columns:
        spec["models"] = sorted({str(m) for m in rows["model"].dropna()})
    return spec


def _check_columns(frame: pd.DataFrame, name: str) -> None:
    missing = [c for c in IMPORT_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(
            f"{name} lacks the column(s) {', '.join(missing)}.",
            f"Results need at least the columns {_COLUMNS_TEXT} (the long schema of "
            "`backbench results --format csv`); add or rename them.",
        )
    if frame.empty:
        raise DataError(f"{name} holds no measurements.", "Export a run that has results.")


def _rows_from_json(data: Any, name: str) -> list[dict[str, Any]]:
    rows: Any = data
    if isinstance(data, Mapping):
        for key in ("rows", "measurements", "results"):
            if isinstance(data.get(key), list):
                rows = data[key]
                break
        else:
            raise DataError(
                f"{name} is a JSON object, not a list of measurements.",
                "Give the output of `backbench results --format json` (a list of row objects).",
            )
    if not isinstance(rows, list) or not all(isinstance(r, Mapping) for r in rows):
        raise DataError(
            f"{name} is not a list of measurement objects.",
            "Give the output of `backbench results --format json` (a list of row objects).",
        )
    converted = []
    for index, row in enumerate(rows):
        if isinstance(row.get("case"), Mapping):
            # Measurement.to_dict() form (the agent's): nested case and stats.
            try:
                converted.append(Measurement.from_dict(dict(row)).to_row())
            except (BackbenchError, KeyError, TypeError, ValueError) as exc:
                raise DataError(
                    f"{name}: measurement {index + 1} cannot be read ({exc}).",
                    "Export the results again with `backbench results --format json`.",
                ) from None
        else:
            converted.append(dict(row))
    return converted


def load_json(path: Path) -> pd.DataFrame:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(
            f"{path.name} is not a JSON text file.",
            "Give the output of `backbench results --format json`.",
        ) from None
    if not text.strip():
        raise DataError(
            f"{path.name} is empty.", "Give the output of `backbench results --format json`."
        )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path.name} is not valid JSON ({exc.msg} at line {exc.lineno}).",
            "Give the output of `backbench results --format json`.",
        ) from None
    rows = _rows_from_json(data, path.name)
    frame = pd.DataFrame.from_records(rows)
    _check_columns(frame, path.name)
    return frame


def _load_store(path: Path) -> tuple[pd.DataFrame, list[Any]]:
    from core.store import Store

    if path.stat().st_size == 0:
        raise StoreError(
            f"{path.name} is empty: it holds no results.", "Choose a results store file."
        )
    store = Store(path, on_corrupt="raise", readonly=True)
    try:
        runs = store.list_runs()
        frame = store.to_dataframe()
    finally:
        store.close()
    if frame.empty:
        raise StoreError(
            f"The results store {path.name} holds no measurements.",
            "Run a benchmark into it first.",
        )
    return frame, runs


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in STORE_SUFFIXES:
        return "store"
    if suffix in JSON_SUFFIXES:
        return "json"
    if suffix in CSV_SUFFIXES:
        return "csv"
    with path.open("rb") as handle:
        head = handle.read(64)
    if head.startswith(SQLITE_MAGIC):
        return "store"
    if head.lstrip()[:1] in (b"[", b"{"):
        return "json"
    return "csv"


def load_results(path: str | Path, source: str | None = None) -> Imported:
    """Read a store, CSV or JSON file. Raises a BackbenchError (DataError, StoreError)
    whose message says what is wrong and what to do."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(f"No such file: {file}.", "Choose an existing results file.")
    label = source or file.name
    kind = _kind(file)
    runs: list[Any] = []
    if kind == "store":
        frame, runs = _load_store(file)
    elif kind == "json":
        frame = load_json(file)
    else:
        from core.analysis import load_csv

        frame = load_csv(file)
        _check_columns(frame, file.name)
    frame = order_columns(frame.reset_index(drop=True))
    keys, infos = describe_runs(frame, label, runs)
    log.info("imported %d rows, %d run(s) from %s", len(frame), len(infos), file)
    return Imported(frame, keys, infos, label)
