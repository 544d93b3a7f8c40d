"""Read results for analysis: a results store, a long-schema CSV or a JSON export, as the
long DataFrame (one row per measurement, columns as ``core.results.MEASUREMENT_COLUMNS``)
that core.analysis, core.predict and core.report take, with where it came from.

The CLI's ``analyze``, ``predict`` and ``report`` and the GUI's import both read here:

- ``load_store``: every run of a store, or one run, with the runs (and so their manifests);
- ``load_csv_file``: a CSV, where ``run`` picks a run by the run_id/run_name columns;
- ``load_json_file``: ``backbench results --format json``, or the agent's measurements;
- ``load_file``: any of the three, told apart by suffix or content, checked to have the
  columns a table of results needs (what the GUI opens);
- ``load_csv``: the CSV reader underneath, a DataFrame.

Every failure is a core.errors exception whose message says what to do. No rich and no
Qt: the GUI imports this module.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from core.analysis.data import REQUIRED_COLUMNS
from core.errors import BackbenchError, DataError, StoreError, UsageError
from core.results import Backend, Measurement, canonical_device

if TYPE_CHECKING:
    from core.results import Run

log = logging.getLogger(__name__)

STORE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
CSV_SUFFIXES = (".csv", ".tsv", ".txt")
JSON_SUFFIXES = (".json",)
SQLITE_MAGIC = b"SQLite format 3\x00"
JSON_HINT = "Give the output of `backbench results --format json`."
ROWS_HINT = "Give the output of `backbench results --format json` (a list of row objects)."

_REQUIRED_TEXT = ", ".join(REQUIRED_COLUMNS)


@dataclass(frozen=True, slots=True, eq=False)
class LoadedData:
    """Long-schema rows and where they came from.

    ``source`` says so in words ("store PATH", "CSV PATH", "JSON PATH"); ``runs`` are the
    store's runs whose rows are in ``frame``, by id (empty for a file, whose rows carry
    at most a run_id and run_name).
    """

    frame: pd.DataFrame
    source: str
    runs: tuple[Run, ...] = ()

    def __post_init__(self) -> None:
        # A file written by hand or by an older backbench may spell one device several
        # ways (cpu, Cpu, CPU); they are one platform.
        object.__setattr__(self, "frame", canonical_devices(self.frame))

    @property
    def manifests(self) -> tuple[dict[str, Any], ...]:
        """The environment manifests of ``runs``, each once, in run order."""
        unique: list[dict[str, Any]] = []
        for run in self.runs:
            if run.manifest and run.manifest not in unique:
                unique.append(run.manifest)
        return tuple(unique)

    @property
    def run_label(self) -> str | None:
        """Which runs, by name and id ("run NAME (id N)", or "K runs: ..."); None without."""
        if not self.runs:
            return None
        names = ", ".join(f"{r.name} (id {r.id})" for r in self.runs)
        return f"run {names}" if len(self.runs) == 1 else f"{len(self.runs)} runs: {names}"


# -- a results store ----------------------------------------------------------------------


def load_store(path: str | Path | None = None, run: str | None = None) -> LoadedData:
    """Every run of the results store at ``path``, or only ``run`` (an id or a name).

    ``path`` None is the default store, which quarantines a corrupt file and starts
    afresh, as the agent does; a file the user named is never renamed behind their back,
    so a corrupt one is an error. Raises StoreError (no store, empty file, corrupt, no
    such run) and DataError (no measurements).
    """
    from core.store import open_store

    if path is not None:
        file = Path(path).expanduser()
        if file.is_file() and file.stat().st_size == 0:
            raise StoreError(
                f"{file.name} is empty: it holds no results.", "Choose a results store file."
            )
    store = open_store(path, readonly=True)
    try:
        selected = store.get_run(run) if run is not None else None
        frame = store.to_dataframe(selected.id if selected is not None else None)
        if frame.empty:
            where = (
                f"run {selected.name!r} (id {selected.id}) of {store.path}"
                if selected is not None
                else str(store.path)
            )
            raise DataError(
                f"No measurements in {where}.",
                f"Run `backbench run -m MODEL --batch 1,2,4 --db {store.path}` first.",
            )
        if selected is not None:
            runs = [selected]
        else:
            present = {int(v) for v in frame["run_id"].dropna().unique()}
            runs = [r for r in store.list_runs() if r.id in present]
    finally:
        store.close()
    return LoadedData(frame, f"store {store.path}", tuple(sorted(runs, key=lambda r: r.id)))


def canonical_devices(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its device column in each backend's one spelling: the same frame
    when nothing changes, else a copy (the caller's frame is never modified)."""
    if "device" not in frame.columns or "backend" not in frame.columns or frame.empty:
        return frame
    backends = {b.value: b for b in Backend}

    def spell(backend: Any, device: Any) -> Any:
        known = backends.get(str(backend).strip().lower())
        if known is None or not isinstance(device, str):
            return device
        return canonical_device(known, device)

    spelled = [spell(b, d) for b, d in zip(frame["backend"], frame["device"], strict=True)]
    if spelled == list(frame["device"]):
        return frame
    frame = frame.copy()
    frame["device"] = spelled
    return frame


# -- a CSV --------------------------------------------------------------------------------


def load_csv(path: str | Path) -> pd.DataFrame:
    """Read a long-schema CSV. Raises DataError (with what to do) for unreadable input."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"No such file: {file}.", "Give the path of a results CSV.")
    try:
        with file.open("r", encoding="utf-8", newline="") as handle:
            head = handle.read(4096)
    except UnicodeDecodeError:
        raise DataError(
            f"{file} is not a text CSV file (it is not UTF-8 text).",
            "Export the results as CSV (backbench results --format csv) and pass that file.",
        ) from None
    except OSError as exc:
        raise DataError(
            f"Cannot read {file}: {exc.strerror}.", "Check the path and permissions."
        ) from None
    if not head.strip():
        raise DataError(
            f"{file} is empty.",
            f"A results CSV needs a header row with at least: {_REQUIRED_TEXT}, then one row per measurement.",
        )
    if "\x00" in head:
        raise DataError(
            f"{file} is not a CSV file (it holds binary data).",
            "Export the results as CSV (backbench results --format csv) and pass that file.",
        )
    try:
        frame = pd.read_csv(file)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error, UnicodeDecodeError) as exc:
        raise DataError(
            f"{file} cannot be read as CSV: {str(exc).strip().splitlines()[0]}.",
            f"Give a comma-separated file with a header row naming at least: {_REQUIRED_TEXT}.",
        ) from None
    frame.columns = [str(c).strip() for c in frame.columns]
    if len(frame.columns) < 2 or not any(c in frame.columns for c in REQUIRED_COLUMNS):
        raise DataError(
            f"{file} does not look like a results CSV (header: {', '.join(frame.columns[:8])}).",
            f"The first line must name the columns, at least: {_REQUIRED_TEXT}.",
        )
    log.debug("read %d rows, %d columns from %s", len(frame), len(frame.columns), file)
    return frame


def load_csv_file(path: str | Path, run: str | None = None) -> LoadedData:
    """A long-schema CSV, or only the rows of ``run`` (an id or a name): a CSV exported
    from a store carries run_id and run_name columns, so a run can still be picked."""
    frame = load_csv(path)
    source = f"CSV {path}"
    if run is None:
        return LoadedData(frame, source)
    by_id = frame["run_id"].astype(str) == run if "run_id" in frame.columns else None
    by_name = frame["run_name"].astype(str) == run if "run_name" in frame.columns else None
    if by_id is None and by_name is None:
        raise UsageError(
            f"--run {run!r} cannot select from {path}: it has no run_id or run_name column.",
            "Leave out --run, or export the run you want with `backbench results --run RUN --format csv`.",
        )
    chosen = by_name if by_name is not None and bool(by_name.any()) else by_id
    if chosen is None or not bool(chosen.any()):
        raise DataError(
            f"No rows of run {run!r} in {path}.",
            "Check the run_id/run_name columns for the runs it holds.",
        )
    return LoadedData(frame.loc[chosen].reset_index(drop=True), f"{source} (run {run})")


# -- a JSON export ------------------------------------------------------------------------


def load_json_file(path: str | Path) -> LoadedData:
    """``backbench results --format json`` (a list of row objects, or an object holding
    one under rows/measurements/results), or measurements in the agent's nested form."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{file.name} is not a JSON text file.", JSON_HINT) from None
    if not text.strip():
        raise DataError(f"{file.name} is empty.", JSON_HINT)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{file.name} is not valid JSON ({exc.msg} at line {exc.lineno}).", JSON_HINT
        ) from None
    rows = _rows_from_json(data, file.name)
    return LoadedData(pd.DataFrame.from_records(rows), f"JSON {path}")


def _rows_from_json(data: Any, name: str) -> list[dict[str, Any]]:
    rows: Any = data
    if isinstance(data, Mapping):
        for key in ("rows", "measurements", "results"):
            if isinstance(data.get(key), list):
                rows = data[key]
                break
        else:
            raise DataError(f"{name} is a JSON object, not a list of measurements.", ROWS_HINT)
    if not isinstance(rows, list) or not all(isinstance(r, Mapping) for r in rows):
        raise DataError(f"{name} is not a list of measurement objects.", ROWS_HINT)
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


# -- any results file ---------------------------------------------------------------------


def file_kind(path: Path) -> str:
    """The kind of results file at ``path``, "store", "json" or "csv": by the suffix, else
    by the first bytes of the file."""
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


def load_file(path: str | Path) -> LoadedData:
    """A results store, CSV or JSON file (see ``file_kind``). A CSV or JSON file must name
    at least REQUIRED_COLUMNS and hold a row. Raises DataError or StoreError, and OSError
    when the file cannot be read at all."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(f"No such file: {file}.", "Choose an existing results file.")
    kind = file_kind(file)
    if kind == "store":
        return load_store(file)
    loaded = load_json_file(file) if kind == "json" else load_csv_file(file)
    check_columns(loaded.frame, file.name)
    return loaded


def check_columns(frame: pd.DataFrame, name: str) -> None:
    """Raise DataError unless ``frame`` (read from ``name``) names REQUIRED_COLUMNS and
    holds a row."""
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(
            f"{name} lacks the column(s) {', '.join(missing)}.",
            f"Results need at least the columns {_REQUIRED_TEXT} (the long schema of "
            "`backbench results --format csv`); add or rename them.",
        )
    if frame.empty:
        raise DataError(f"{name} holds no measurements.", "Export a run that has results.")
