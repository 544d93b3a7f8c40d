"""The results store's file: tables, ordered migrations, how the data model
(core.results) maps onto rows, and the file-level care (health check, quarantine,
backup, mapping SQLite errors to StoreError). ``core.store`` holds the API.

The schema version lives in ``PRAGMA user_version``. ``MIGRATIONS[i]`` moves a file from
version ``i`` to ``i + 1``, so the version this code knows is ``len(MIGRATIONS)``. To
change the schema, append a ``Migration``; never edit one that has shipped, because
files in the field were built by it. Each migration runs in its own transaction together
with the ``user_version`` bump, so a failure leaves the file at the old version.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import math
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from core.errors import StoreCorruptError, StoreError, StoreFullError
from core.results import (
    AccuracyResult,
    Case,
    FailureKind,
    LatencyStats,
    LayerProfile,
    LayerRecord,
    Measurement,
    Run,
    RunSpec,
    Status,
    parse_backend,
    parse_mode,
    parse_precision,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: ``sql`` (any number of statements) runs first, then ``apply``
    for changes that need Python (rewriting rows, say)."""

    description: str
    sql: str = ""
    apply: Callable[[sqlite3.Connection], None] | None = None


# Latencies are kept in ns (REAL, as the stats are means and percentiles); a measurement's
# raw samples are little-endian int64 BLOBs, one row per chunk (``seq``), so a writer that
# streams samples can append chunks and a reader concatenates them in ``seq`` order.
_V1 = """
CREATE TABLE environments (
    id            TEXT PRIMARY KEY,
    manifest_json TEXT NOT NULL,
    created_at    REAL NOT NULL
);

CREATE TABLE runs (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    name           TEXT NOT NULL,
    spec_json      TEXT NOT NULL,
    environment_id TEXT NOT NULL REFERENCES environments(id),
    created_at     REAL NOT NULL,
    finished_at    REAL,
    status         TEXT NOT NULL
);
CREATE INDEX runs_by_name ON runs(name, id);

CREATE TABLE measurements (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id              INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    model               TEXT NOT NULL,
    backend             TEXT NOT NULL,
    device              TEXT NOT NULL,
    precision           TEXT NOT NULL,
    batch_size          INTEGER NOT NULL,
    mode                TEXT NOT NULL,
    status              TEXT NOT NULL,
    failure             TEXT,
    error               TEXT,
    n                   INTEGER,
    mean_ns             REAL,
    std_ns              REAL,
    median_ns           REAL,
    p90_ns              REAL,
    p99_ns              REAL,
    min_ns              REAL,
    max_ns              REAL,
    ci95_rel            REAL,
    throughput_ips      REAL,
    first_inference_ms  REAL,
    target_met          INTEGER,
    peak_rss_mb         REAL,
    peak_device_mem_mb  REAL,
    device_memory_json  TEXT NOT NULL DEFAULT '{}',
    params              INTEGER,
    flops               INTEGER,
    weights             TEXT NOT NULL,
    backend_config_json TEXT NOT NULL DEFAULT '{}',
    environment_id      TEXT REFERENCES environments(id),
    started_at          REAL,
    duration_s          REAL
);
CREATE INDEX measurements_by_run ON measurements(run_id, id);

CREATE TABLE samples (
    measurement_id INTEGER NOT NULL REFERENCES measurements(id) ON DELETE CASCADE,
    seq            INTEGER NOT NULL,
    latency_ns     BLOB NOT NULL,
    PRIMARY KEY (measurement_id, seq)
) WITHOUT ROWID;
"""

# The agent's persistent job queue (service/jobs.py). A job's run is created when the job
# starts, and a resumed job keeps measuring into that same run.
_V2_AGENT_JOBS = """
CREATE TABLE agent_jobs (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    client_request_id TEXT NOT NULL UNIQUE,
    state             TEXT NOT NULL,
    spec_json         TEXT NOT NULL,
    options_json      TEXT NOT NULL DEFAULT '{}',
    run_id            INTEGER REFERENCES runs(id) ON DELETE SET NULL,
    reason            TEXT,
    attempts          INTEGER NOT NULL DEFAULT 0,
    submitted_at      REAL NOT NULL,
    started_at        REAL,
    finished_at       REAL,
    peer_uid          INTEGER
);
CREATE INDEX agent_jobs_by_state ON agent_jobs(state, id);
"""

# Issue 9: the model's share of memory, where a case's time went, how disturbed it was,
# and attempts. Every try of a case is kept; ``current`` marks the one that counts.
_V3_ATTEMPTS = """
ALTER TABLE measurements ADD COLUMN baseline_rss_mb REAL;
ALTER TABLE measurements ADD COLUMN phase_s_json TEXT NOT NULL DEFAULT '{}';
ALTER TABLE measurements ADD COLUMN interference REAL;
ALTER TABLE measurements ADD COLUMN disturbed INTEGER;
ALTER TABLE measurements ADD COLUMN conditions_json TEXT NOT NULL DEFAULT '{}';
ALTER TABLE measurements ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
ALTER TABLE measurements ADD COLUMN current INTEGER NOT NULL DEFAULT 1;
CREATE INDEX measurements_by_case ON measurements(
    run_id, model, backend, device, precision, batch_size, mode, id);
"""

# Issue 10: who is measuring a run. A sweep (a fresh run or a resume, from the CLI or the
# agent) claims its run here and renews ``heartbeat_at`` while it measures; a second sweep
# of the run is refused while the holder lives (core/store/lease.py). ``boot_id`` and
# ``pid_start`` tell a live holder from a pid that was reused after it died.
_V4_RUN_LEASES = """
CREATE TABLE run_leases (
    run_id       INTEGER PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE,
    token        TEXT NOT NULL,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    pid_start    INTEGER,
    boot_id      TEXT,
    command      TEXT NOT NULL DEFAULT '',
    acquired_at  REAL NOT NULL,
    heartbeat_at REAL NOT NULL
);
"""

CASE_COLUMNS = ("model", "backend", "device", "precision", "batch_size", "mode")


# core.results.canonical_device, in SQL: rows stored before it keep matching the cases
# they belong to (a resume adds the next attempt of a case, found by its columns).
_V5_DEVICES = """
UPDATE measurements SET device = upper(replace(trim(device), ' ', ''))
    WHERE backend = 'openvino' AND device != upper(replace(trim(device), ' ', ''));
UPDATE measurements SET device = lower(trim(device))
    WHERE backend != 'openvino' AND device != lower(trim(device));
UPDATE measurements SET device = 'cuda:0' WHERE backend != 'openvino' AND device = 'cuda';
"""


# Issue 12: measured accuracy. The figures a query filters or sorts on are columns; the
# dataset's identity, the preprocessing and the skipped files stay in accuracy_json.
_V6_ACCURACY = """
ALTER TABLE measurements ADD COLUMN top1_correct INTEGER;
ALTER TABLE measurements ADD COLUMN top5_correct INTEGER;
ALTER TABLE measurements ADD COLUMN n_eval_images INTEGER;
ALTER TABLE measurements ADD COLUMN skipped_images INTEGER;
ALTER TABLE measurements ADD COLUMN top1_agreement REAL;
ALTER TABLE measurements ADD COLUMN max_logit_diff REAL;
ALTER TABLE measurements ADD COLUMN dataset_id TEXT;
ALTER TABLE measurements ADD COLUMN accuracy_json TEXT;
CREATE INDEX measurements_by_dataset ON measurements(dataset_id, model) WHERE dataset_id IS NOT NULL;
"""


# Issue 13: per-layer profiles (--profile-layers), one row per executed layer, in order.
_V7_LAYERS = """
CREATE TABLE layer_records (
    measurement_id     INTEGER NOT NULL REFERENCES measurements(id) ON DELETE CASCADE,
    seq                INTEGER NOT NULL,
    name               TEXT NOT NULL,
    type               TEXT NOT NULL,
    exec_type          TEXT NOT NULL,
    time_ms            REAL NOT NULL,
    input_shapes_json  TEXT NOT NULL DEFAULT '[]',
    output_shapes_json TEXT NOT NULL DEFAULT '[]',
    flops              INTEGER,
    bytes              INTEGER,
    fused_json         TEXT NOT NULL DEFAULT '[]',
    precision          TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (measurement_id, seq)
) WITHOUT ROWID;
ALTER TABLE measurements ADD COLUMN layer_profile_json TEXT;
"""


def _number_attempts(conn: sqlite3.Connection) -> None:
    """Files from before attempts may hold a case twice in one run (a resume measured a
    failed case again): number those rows in the order they were written, and let the
    last one count."""
    keys = ", ".join(CASE_COLUMNS)
    repeated = conn.execute(
        f"SELECT run_id, {keys} FROM measurements GROUP BY run_id, {keys} HAVING COUNT(*) > 1"
    ).fetchall()
    match = " AND ".join(f"{c} = ?" for c in ("run_id", *CASE_COLUMNS))
    for key in repeated:
        ids = [row[0] for row in conn.execute(f"SELECT id FROM measurements WHERE {match} ORDER BY id", tuple(key))]
        for attempt, mid in enumerate(ids, start=1):
            conn.execute(
                "UPDATE measurements SET attempt = ?, current = ? WHERE id = ?",
                (attempt, int(attempt == len(ids)), mid),
            )


MIGRATIONS: list[Migration] = [
    Migration("runs, measurements, samples and environments", sql=_V1),
    Migration("the agent's job queue", sql=_V2_AGENT_JOBS),
    Migration(
        "attempts, the model's share of memory, phase times and interference",
        sql=_V3_ATTEMPTS,
        apply=_number_attempts,
    ),
    Migration("run leases: who is measuring a run", sql=_V4_RUN_LEASES),
    Migration("one spelling per device (cpu, Cpu and CPU are one OpenVINO device)", sql=_V5_DEVICES),
    Migration("measured accuracy: top-1/top-5 counts, images, agreement, dataset", sql=_V6_ACCURACY),
    Migration("per-layer profiles", sql=_V7_LAYERS),
]

# The tables version 1 creates; a version-0 file holding other tables is not ours.
OWN_TABLES = frozenset({"environments", "runs", "measurements", "samples", "sqlite_sequence"})


def current_version() -> int:
    """The schema version this code writes (read at call time, so tests can extend it)."""
    return len(MIGRATIONS)


def split_statements(sql: str) -> Iterator[str]:
    """Yield whole statements. ``executescript`` would COMMIT the open transaction first,
    so scripts are run one statement at a time; ``complete_statement`` keeps semicolons
    inside triggers and string literals together."""
    buffer = ""
    for piece in sql.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            if buffer.strip(" \t\r\n;"):
                yield buffer.strip()
            buffer = ""
    if buffer.strip(" \t\r\n;"):
        raise ValueError(f"incomplete SQL statement in migration: {buffer.strip()[:80]!r}")


def read_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, migrations: list[Migration] | None = None) -> int:
    """Bring ``conn`` (autocommit mode) up to date; returns the version it started at.

    Foreign keys are switched off while a migration runs (SQLite's recipe for table
    rebuilds) and checked before its commit.
    """
    steps = MIGRATIONS if migrations is None else migrations
    start = read_version(conn)
    conn.execute("PRAGMA foreign_keys = OFF")
    try:
        for target in range(start + 1, len(steps) + 1):
            conn.execute("BEGIN IMMEDIATE")
            try:
                # Another process may have migrated while we waited for the write lock.
                version = read_version(conn)
                if version >= target:
                    conn.execute("COMMIT")
                    continue
                step = steps[version]
                for statement in split_statements(step.sql):
                    conn.execute(statement)
                if step.apply is not None:
                    step.apply(conn)
                broken = conn.execute("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise sqlite3.DatabaseError(
                        f"migration to schema {target} left {len(broken)} broken foreign keys"
                    )
                conn.execute(f"PRAGMA user_version = {int(target)}")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            log.info("Migrated the results store to schema %d: %s", target, step.description)
    finally:
        conn.execute("PRAGMA foreign_keys = ON")
    return start


# ---- file health ------------------------------------------------------------------------

BUSY_TIMEOUT_S = 10.0
WRITABLE_HINT = "Choose a writable --db path."
# SQLite primary result codes (sqlite3 exposes them as constants only from Python 3.11).
_SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_NOTADB = 11, 13, 26


def _error_code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else int(code) & 0xFF


def is_corruption(exc: sqlite3.Error) -> bool:
    if _error_code(exc) in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return True
    text = str(exc).lower()
    return "not a database" in text or "malformed" in text


def is_full(exc: sqlite3.Error) -> bool:
    return _error_code(exc) == _SQLITE_FULL or "database or disk is full" in str(exc).lower()


def map_error(
    exc: sqlite3.Error, path: Path, action: str, *, readonly: bool = False, extra: str = ""
) -> StoreError:
    """A StoreError saying what went wrong with ``path`` and what to do. Errors that mean
    a bug (constraint violations, API misuse) are not the user's to fix: they re-raise."""
    if isinstance(exc, (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError)):
        raise exc
    text = str(exc).lower()
    where = f"the results store {path}"
    if is_full(exc):
        return StoreFullError(
            f"Cannot {action} {where}: the database or disk is full.{extra}",
            "Free some disk space or choose another --db path; the results stored so far "
            "are intact.",
        )
    if is_corruption(exc):
        return StoreCorruptError(
            f"Cannot {action} {where}: the file is corrupt ({exc}).{extra}",
            "Reopen it to have it quarantined and replaced, or choose another --db path.",
        )
    if "locked" in text or "busy" in text:
        return StoreError(
            f"Cannot {action} {where}: another process kept it locked for "
            f"{BUSY_TIMEOUT_S:.0f} s.{extra}",
            "Wait for the other backbench process to finish, or choose another --db path.",
        )
    hint = "Open it without read-only mode." if readonly and "readonly" in text else WRITABLE_HINT
    return StoreError(f"Cannot {action} {where}: {exc}.{extra}", hint)


def check_location(path: Path, readonly: bool) -> None:
    """Fail early, with a message naming ``path``, where SQLite would fail obscurely."""
    if path.is_dir():
        raise StoreError(
            f"The results store path {path} is a folder, not a file.",
            f"Give a file path, e.g. --db {path / 'results.db'}.",
        )
    if readonly:
        if not path.is_file():
            raise StoreError(
                f"There is no results store at {path}.",
                "Run a benchmark first, or give the right --db path.",
            )
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        message = f"Cannot create the folder for the results store {path}: {exc.strerror or exc}."
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StoreFullError(
                message, "Free some disk space or choose another --db path."
            ) from exc
        raise StoreError(message, WRITABLE_HINT) from exc
    # SQLite creates -wal and -shm files next to the database.
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise StoreError(
            f"Cannot write the results store {path}: its folder is not writable.", WRITABLE_HINT
        )
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise StoreError(
            f"Cannot write the results store {path}: the file is read-only.", WRITABLE_HINT
        )


def integrity_problem(conn: sqlite3.Connection) -> str | None:
    """What ``PRAGMA quick_check`` finds wrong, or None. A file that is not a database
    counts as corrupt; other errors (a lock, say) propagate."""
    try:
        rows = conn.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        if is_corruption(exc):
            return str(exc)
        raise
    messages = [str(row[0]) for row in rows]
    if messages == ["ok"]:
        return None
    return "; ".join(messages[:3]) or "quick_check returned nothing"


def _free_name(path: Path, suffix: str) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%S")
    dest = path.with_name(f"{path.name}{suffix}-{stamp}")
    counter = 1
    while dest.exists():
        dest = path.with_name(f"{path.name}{suffix}-{stamp}-{counter}")
        counter += 1
    return dest


def quarantine(path: Path) -> Path:
    """Rename a corrupt file to ``<name>.corrupt-<timestamp>`` (never delete it). Its
    -wal/-shm move along under SQLite's naming, so the pair can be opened together for
    recovery. Raises OSError."""
    dest = _free_name(path, ".corrupt")
    for suffix in ("-wal", "-shm", "-journal"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            os.replace(side, dest.with_name(dest.name + suffix))
    os.replace(path, dest)
    return dest


def backup(conn: sqlite3.Connection, path: Path, version: int) -> Path:
    """Copy the live database (WAL included) to ``<name>.bak-v<version>``, never over an
    older backup. Raises sqlite3.Error."""
    dest = path.with_name(f"{path.name}.bak-v{version}")
    if dest.exists():
        dest = _free_name(path, f".bak-v{version}")
    try:
        target = sqlite3.connect(dest)
        try:
            conn.backup(target)
        finally:
            target.close()
    except BaseException:
        dest.unlink(missing_ok=True)  # a partial copy must not pass for a backup
        raise
    return dest


# ---- row mapping ------------------------------------------------------------------------

STATS_COLUMNS = ("n", "mean_ns", "std_ns", "median_ns", "p90_ns", "p99_ns", "min_ns", "max_ns")
MEASUREMENT_INSERT_COLUMNS = (
    "run_id", "model", "backend", "device", "precision", "batch_size", "mode", "status",
    "failure", "error", *STATS_COLUMNS, "ci95_rel", "throughput_ips", "first_inference_ms",
    "target_met", "peak_rss_mb", "peak_device_mem_mb", "device_memory_json", "params",
    "flops", "weights", "backend_config_json", "environment_id", "started_at", "duration_s",
    "baseline_rss_mb", "phase_s_json", "interference", "disturbed", "conditions_json",
    "attempt", "current", "top1_correct", "top5_correct", "n_eval_images", "skipped_images",
    "top1_agreement", "max_logit_diff", "dataset_id", "accuracy_json", "layer_profile_json",
)  # fmt: skip
MEASUREMENT_INSERT = (
    f"INSERT INTO measurements ({', '.join(MEASUREMENT_INSERT_COLUMNS)}) "
    f"VALUES ({', '.join(':' + c for c in MEASUREMENT_INSERT_COLUMNS)})"
)
MEASUREMENT_SELECT = (
    "SELECT m.*, r.name AS run_name FROM measurements m JOIN runs r ON r.id = m.run_id"
)
RUN_SELECT = (
    "SELECT r.*, e.manifest_json FROM runs r JOIN environments e ON e.id = r.environment_id"
)
SAMPLE_DTYPE = np.dtype("<i8")


def _json_default(value: Any) -> Any:
    # Manifests and backend configs come from many libraries: numpy scalars, enums and
    # paths are common and have an obvious JSON form.
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (PurePath, set, frozenset, tuple)):
        return str(value) if isinstance(value, PurePath) else sorted(value, key=str)
    return str(value)


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_json_default)


def environment_id(manifest: dict[str, Any]) -> str:
    """The short sha256 of the manifest's sorted JSON: equal manifests share one row."""
    return hashlib.sha256(dumps(manifest).encode("utf-8")).hexdigest()[:16]


def encode_samples(samples_ns: Iterable[int]) -> bytes:
    return np.asarray(tuple(samples_ns), dtype=SAMPLE_DTYPE).tobytes()


def decode_samples(chunks: Iterable[bytes]) -> np.ndarray:
    parts = [np.frombuffer(chunk, dtype=SAMPLE_DTYPE) for chunk in chunks]
    if not parts:
        return np.empty(0, dtype=np.int64)
    return np.concatenate(parts).astype(np.int64)  # native order, and a writable copy


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def measurement_params(m: Measurement, run_id: int, env_id: str) -> dict[str, Any]:
    s = m.stats
    stats: dict[str, Any] = dict.fromkeys((*STATS_COLUMNS, "ci95_rel"))
    if s is not None:
        stats.update(
            n=int(s.n), mean_ns=float(s.mean_ns), std_ns=float(s.std_ns),
            median_ns=float(s.median_ns), p90_ns=float(s.p90_ns), p99_ns=float(s.p99_ns),
            min_ns=float(s.min_ns), max_ns=float(s.max_ns), ci95_rel=float(s.ci95_rel),
        )  # fmt: skip
    return {
        "run_id": run_id,
        **m.case.to_dict(),
        "batch_size": int(m.case.batch_size),
        "status": m.status.value,
        "failure": m.failure.value if m.failure else None,
        "error": m.error,
        **stats,
        "throughput_ips": _opt_float(m.throughput_ips),
        "first_inference_ms": _opt_float(m.first_inference_ms),
        "target_met": None if m.target_met is None else int(bool(m.target_met)),
        "peak_rss_mb": _opt_float(m.peak_rss_mb),
        "peak_device_mem_mb": _opt_float(m.peak_device_mem_mb),
        "device_memory_json": dumps(m.device_memory),
        "params": _opt_int(m.params),
        "flops": _opt_int(m.flops),
        "weights": m.weights,
        "backend_config_json": dumps(m.backend_config),
        "environment_id": env_id,
        "started_at": _opt_float(m.started_at),
        "duration_s": _opt_float(m.duration_s),
        "baseline_rss_mb": _opt_float(m.baseline_rss_mb),
        "phase_s_json": dumps(m.phase_s),
        "interference": _opt_float(m.interference),
        "disturbed": None if m.disturbed is None else int(bool(m.disturbed)),
        "conditions_json": dumps(m.conditions),
        "attempt": int(m.attempt),
        "current": int(bool(m.current)),
        **_accuracy_params(m.accuracy),
        "layer_profile_json": None if m.layer_profile is None else dumps(m.layer_profile.to_dict(include_layers=False)),
    }


LAYER_INSERT = (
    "INSERT INTO layer_records (measurement_id, seq, name, type, exec_type, time_ms, input_shapes_json, "
    "output_shapes_json, flops, bytes, fused_json, precision) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def layer_params(measurement_id: int, profile: LayerProfile) -> list[tuple[Any, ...]]:
    return [
        (
            measurement_id, seq, layer.name, layer.type, layer.exec_type, float(layer.time_ms),
            dumps([list(s) for s in layer.input_shapes]), dumps([list(s) for s in layer.output_shapes]),
            layer.flops, layer.bytes, dumps(list(layer.fused)), layer.precision,
        )  # fmt: skip
        for seq, layer in enumerate(profile.layers)
    ]


def layer_from_row(row: sqlite3.Row) -> LayerRecord:
    return LayerRecord(
        name=row["name"], type=row["type"], exec_type=row["exec_type"], time_ms=float(row["time_ms"]),
        input_shapes=tuple(tuple(int(d) for d in s) for s in json.loads(row["input_shapes_json"])),
        output_shapes=tuple(tuple(int(d) for d in s) for s in json.loads(row["output_shapes_json"])),
        flops=row["flops"], bytes=row["bytes"], fused=tuple(json.loads(row["fused_json"])),
        precision=row["precision"],
    )  # fmt: skip


def _accuracy_params(acc: AccuracyResult | None) -> dict[str, Any]:
    if acc is None:
        return dict.fromkeys((
            "top1_correct", "top5_correct", "n_eval_images", "skipped_images", "top1_agreement",
            "max_logit_diff", "dataset_id", "accuracy_json",
        ))  # fmt: skip
    return {
        "top1_correct": int(acc.top1_correct),
        "top5_correct": _opt_int(acc.top5_correct),
        "n_eval_images": int(acc.n_images),
        "skipped_images": int(acc.skipped),
        "top1_agreement": _opt_float(acc.agreement_top1),
        "max_logit_diff": _opt_float(acc.max_logit_diff),
        "dataset_id": acc.dataset_id,
        "accuracy_json": dumps(acc.to_dict()),
    }


def case_from_row(row: sqlite3.Row) -> Case:
    return Case(
        model=row["model"], backend=parse_backend(row["backend"]), device=row["device"],
        precision=parse_precision(row["precision"]), batch_size=int(row["batch_size"]),
        mode=parse_mode(row["mode"]),
    )  # fmt: skip


def measurement_from_row(row: sqlite3.Row, samples_ns: tuple[int, ...]) -> Measurement:
    stats = None
    if row["n"] is not None:
        # SQLite stores NaN as NULL; ci95_rel is NaN when there were too few samples.
        ci = row["ci95_rel"]
        stats = LatencyStats(
            n=int(row["n"]), mean_ns=row["mean_ns"], std_ns=row["std_ns"],
            median_ns=row["median_ns"], p90_ns=row["p90_ns"], p99_ns=row["p99_ns"],
            min_ns=row["min_ns"], max_ns=row["max_ns"], ci95_rel=math.nan if ci is None else ci,
        )  # fmt: skip
    return Measurement(
        case=case_from_row(row),
        status=Status(row["status"]),
        stats=stats,
        samples_ns=samples_ns,
        throughput_ips=row["throughput_ips"],
        first_inference_ms=row["first_inference_ms"],
        target_met=None if row["target_met"] is None else bool(row["target_met"]),
        peak_rss_mb=row["peak_rss_mb"],
        peak_device_mem_mb=row["peak_device_mem_mb"],
        device_memory=json.loads(row["device_memory_json"] or "{}"),
        params=row["params"],
        flops=row["flops"],
        failure=FailureKind(row["failure"]) if row["failure"] else None,
        error=row["error"],
        weights=row["weights"],
        backend_config=json.loads(row["backend_config_json"] or "{}"),
        environment_id=row["environment_id"],
        started_at=row["started_at"],
        duration_s=row["duration_s"],
        run_id=int(row["run_id"]),
        run_name=row["run_name"],
        measurement_id=int(row["id"]),
        baseline_rss_mb=row["baseline_rss_mb"],
        phase_s=json.loads(row["phase_s_json"] or "{}"),
        interference=row["interference"],
        disturbed=None if row["disturbed"] is None else bool(row["disturbed"]),
        conditions=json.loads(row["conditions_json"] or "{}"),
        attempt=int(row["attempt"]),
        current=bool(row["current"]),
        accuracy=AccuracyResult.from_dict(json.loads(row["accuracy_json"])) if row["accuracy_json"] else None,
        layer_profile=LayerProfile.from_dict(json.loads(row["layer_profile_json"])) if row["layer_profile_json"] else None,
    )


def run_from_row(row: sqlite3.Row) -> Run:
    return Run(
        id=int(row["id"]), name=row["name"], spec=RunSpec.from_dict(json.loads(row["spec_json"])),
        manifest=json.loads(row["manifest_json"]), created_at=row["created_at"],
        status=row["status"], finished_at=row["finished_at"],
    )  # fmt: skip
