"""Results for the GUI's table: a file read by core.analysis.load (a store, a long-schema
CSV or JSON rows, each validated with a message that says what to do), or rows from an
agent, described run by run with a key unique across everything loaded.
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

from core.analysis.load import file_kind, load_file
from core.errors import BackbenchError
from core.report.layers import load_profiles as load_store_profiles
from core.report.layers import profiled
from core.results import MEASUREMENT_COLUMNS, Measurement

log = logging.getLogger(__name__)

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


def load_results(path: str | Path, source: str | None = None) -> Imported:
    """Read a store, CSV or JSON file (core.analysis.load.load_file). Raises a
    BackbenchError (DataError, StoreError) whose message says what is wrong and what to do."""
    file = Path(path).expanduser()
    loaded = load_file(file)
    label = source or file.name
    frame = order_columns(loaded.frame.reset_index(drop=True))
    keys, infos = describe_runs(frame, label, loaded.runs)
    log.info("imported %d rows, %d run(s) from %s", len(frame), len(infos), file)
    return Imported(frame, keys, infos, label)


def load_profiles(path: str | Path) -> list[Measurement]:
    """The per-layer profiles (``run --profile-layers``) in a results file: a store's, or
    those of a JSON file of measurements in the agent's form (Measurement.to_dict); a CSV
    holds none. Call after ``load_results`` took the file: a file that cannot be read
    here gives no profiles, and the reason is logged (the import has said what is wrong)."""
    file = Path(path).expanduser()
    try:
        kind = file_kind(file)
        if kind == "store":
            return load_store_profiles(file)
        if kind != "json":
            return []
        data = json.loads(file.read_text(encoding="utf-8"))
    except (BackbenchError, OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.info("no per-layer profiles read from %s: %s", file, exc)
        return []
    return profiled_measurements(_json_rows(data))


def _json_rows(data: object) -> list[object]:
    if isinstance(data, Mapping):
        for key in ("measurements", "rows", "results"):
            if isinstance(data.get(key), list):
                return list(data[key])
        return []
    return list(data) if isinstance(data, list) else []


def profiled_measurements(items: Iterable[object]) -> list[Measurement]:
    """The measurements with a per-layer profile among Measurement dicts (an agent's
    get_results, a JSON export); an item that is not one is skipped, with a log line."""
    found = []
    for item in items:
        if not isinstance(item, Mapping) or not item.get("layer_profile") or not isinstance(item.get("case"), Mapping):
            continue
        try:
            found.append(Measurement.from_dict(dict(item)))
        except (BackbenchError, KeyError, TypeError, ValueError) as exc:
            log.warning("Skipping a measurement whose profile cannot be read: %s", exc)
    return profiled(found)
