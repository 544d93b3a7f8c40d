"""The results store: runs, measurements and raw samples in one SQLite file.

Durability comes first: WAL with ``synchronous=FULL``, and each measurement is committed
with its samples in one transaction the moment it is added, so a case finished before a
crash, a SIGKILL or Ctrl-C is never lost and a half-written one never appears.

On open the file is checked (``PRAGMA quick_check``). A corrupt file is, by default,
renamed to ``<name>.corrupt-<timestamp>`` (never deleted) and a fresh store takes its
place; ``quarantined`` names where it went. The schema is migrated forward (see
``core.store.schema``) after a backup, and a file from a newer backbench is refused.

pandas is imported only by ``to_dataframe`` and ``export``, so the agent and workers
that only write results start quickly.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from core.errors import (
    RunNotFoundError,
    SchemaTooNewError,
    StoreCorruptError,
    StoreError,
    UsageError,
)
from core.paths import default_db_path
from core.results import MEASUREMENT_COLUMNS, Case, LayerRecord, Measurement, Run, RunSpec, Status
from core.store import lease as run_lease
from core.store import schema as store_schema
from core.store.lease import LEASE_STALE_S, RunLease
from core.store.schema import decode_samples, dumps, encode_samples, environment_id

if TYPE_CHECKING:
    import pandas

log = logging.getLogger(__name__)

RUN_STATUSES = ("queued", "running", "finished", "interrupted", "cancelled", "failed")
TERMINAL_RUN_STATUSES = frozenset({"finished", "interrupted", "cancelled", "failed"})
ON_CORRUPT_CHOICES = ("quarantine", "raise")
EXPORT_FORMATS = ("csv", "json", "parquet")


def default_store_path() -> Path:
    """``$XDG_DATA_HOME/backbench/results.db``."""
    return default_db_path()


class Store:
    """One SQLite results file. Thread-safe; several processes may share the file."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        on_corrupt: str = "quarantine",
        readonly: bool = False,
    ) -> None:
        if on_corrupt not in ON_CORRUPT_CHOICES:
            raise UsageError(
                f"Unknown on_corrupt {on_corrupt!r}.",
                f"Use one of: {', '.join(ON_CORRUPT_CHOICES)}.",
            )
        self.path: Path = Path(path if path is not None else default_store_path())
        self.path = self.path.expanduser().absolute()
        self.readonly = readonly
        self.on_corrupt = on_corrupt
        self.quarantined: Path | None = None
        self._lock = threading.RLock()
        self._tx_depth = 0
        self._conn = self._open()

    # ---- opening -------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        store_schema.check_location(self.path, self.readonly)
        if self.path.is_file():
            # Checked through a read-only connection: closing a read-write one would
            # checkpoint a damaged file's WAL into it and delete the WAL, losing evidence.
            probe = self._connect(readonly=True)
            try:
                problem = store_schema.integrity_problem(probe)
            except sqlite3.DatabaseError as exc:
                raise self._map(exc, "open") from exc
            finally:
                probe.close()
            if problem is not None:
                self.quarantined = self._quarantine(problem)
        conn = self._connect(self.readonly)
        try:
            self._configure(conn)
            self._prepare_schema(conn)
        except BaseException:
            conn.close()
            raise
        log.debug("Opened the results store %s", self.path)
        return conn

    def _quarantine(self, problem: str) -> Path:
        if self.readonly or self.on_corrupt == "raise":
            raise StoreCorruptError(
                f"The results store {self.path} is corrupt ({problem}).",
                "Move it aside (`sqlite3 FILE .recover` may save part of it) or choose "
                "another --db path.",
            )
        try:
            dest = store_schema.quarantine(self.path)
        except OSError as exc:
            raise StoreCorruptError(
                f"The results store {self.path} is corrupt ({problem}) and could not be "
                f"moved aside: {exc.strerror or exc}.",
                "Move it away by hand or choose another --db path.",
            ) from exc
        log.warning(
            "The results store %s was corrupt (%s); it was moved to %s (not deleted) and a "
            "fresh store was created in its place.",
            self.path, problem, dest,
        )  # fmt: skip
        return dest

    def _connect(self, readonly: bool) -> sqlite3.Connection:
        uri = f"{self.path.as_uri()}?mode={'ro' if readonly else 'rwc'}"
        try:
            # Autocommit mode: transactions are explicit (see ``transaction``). The lock in
            # ``Store`` serialises threads, so the connection may cross them.
            conn = sqlite3.connect(
                uri, uri=True, timeout=store_schema.BUSY_TIMEOUT_S, isolation_level=None,
                check_same_thread=False,
            )  # fmt: skip
        except sqlite3.Error as exc:
            raise self._map(exc, "open") from exc
        conn.row_factory = sqlite3.Row
        return conn

    def _configure(self, conn: sqlite3.Connection) -> None:
        try:
            if not self.readonly:
                mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
                if mode != "wal":
                    log.warning(
                        "The results store %s runs in %s journal mode, not WAL (the file "
                        "system may not support it); concurrent readers will block writers.",
                        self.path, mode,
                    )  # fmt: skip
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as exc:
            raise self._map(exc, "open") from exc

    def _prepare_schema(self, conn: sqlite3.Connection) -> None:
        known = store_schema.current_version()
        try:
            version = store_schema.read_version(conn)
            tables = {
                str(r[0])
                for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
        except sqlite3.DatabaseError as exc:
            raise self._map(exc, "open") from exc
        if version > known:
            raise SchemaTooNewError(
                f"{self.path} was written by a newer backbench (schema {version}, this one "
                f"knows {known}); upgrade backbench.",
                "Or choose another --db path.",
            )
        if version == 0 and tables - store_schema.OWN_TABLES:
            raise StoreError(
                f"{self.path} is an SQLite file but not a backbench results store.",
                "Choose another --db path.",
            )
        if version == known:
            return
        if self.readonly:
            raise StoreError(
                f"The results store {self.path} has schema {version}; this backbench needs "
                f"{known}.",
                "Open it once without read-only mode to upgrade it.",
            )
        backup: Path | None = None
        if version > 0:  # version 0 is a new, empty file: nothing to keep
            try:
                backup = store_schema.backup(conn, self.path, version)
            except sqlite3.DatabaseError as exc:
                raise self._map(exc, "back up (before upgrading)") from exc
            log.info("Backed up the results store %s (schema %d) to %s", self.path, version, backup)
        try:
            store_schema.migrate(conn)
        except sqlite3.DatabaseError as exc:
            saved = f" It is unchanged; a copy is also at {backup}." if backup else ""
            raise self._map(exc, f"upgrade (schema {version} -> {known})", extra=saved) from exc
        log.info("The results store %s is now at schema %d (was %d).", self.path, known, version)

    def _map(self, exc: sqlite3.Error, action: str, extra: str = "") -> StoreError:
        return store_schema.map_error(exc, self.path, action, readonly=self.readonly, extra=extra)

    # ---- transactions ----------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE, so concurrent writers queue on the busy
        timeout instead of deadlocking). Committed on exit, rolled back on any exception,
        Ctrl-C included. Nested calls join the outer transaction."""
        with self._lock:
            if self._tx_depth:
                self._tx_depth += 1
                try:
                    yield self._conn
                finally:
                    self._tx_depth -= 1
                return
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.DatabaseError as exc:
                raise self._map(exc, "write to") from exc
            self._tx_depth = 1
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                self._rollback()
                if isinstance(exc, sqlite3.DatabaseError):
                    raise self._map(exc, "write to") from exc
                raise
            finally:
                self._tx_depth = 0

    def _rollback(self) -> None:
        # SQLite rolls back by itself after some errors (a full disk among them).
        if self._conn.in_transaction:
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error as exc:
                log.error("Rollback failed on %s: %s", self.path, exc)

    def query(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        """Run one read statement; errors come back as StoreError."""
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as exc:
                raise self._map(exc, "read") from exc

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: several SELECTs see one consistent state."""
        with self._lock:
            if self._tx_depth:
                yield self._conn
                return
            try:
                self._conn.execute("BEGIN")
                try:
                    yield self._conn
                finally:
                    self._conn.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                raise self._map(exc, "read") from exc

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    # ---- runs ------------------------------------------------------------------------

    def add_environment(self, manifest: dict[str, Any]) -> str:
        """Store a manifest once; returns its id (short sha256 of its sorted JSON)."""
        env_id = environment_id(manifest)
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO environments (id, manifest_json, created_at) "
                "VALUES (?, ?, ?)",
                (env_id, dumps(manifest), time.time()),
            )
        return env_id

    def create_run(
        self, spec: RunSpec, manifest: dict[str, Any], name: str | None = None,
        status: str = "running",
    ) -> Run:  # fmt: skip
        _check_run_status(status)
        now = time.time()
        finished_at = now if status in TERMINAL_RUN_STATUSES else None
        with self.transaction() as conn:
            env_id = self.add_environment(manifest)
            cursor = conn.execute(
                "INSERT INTO runs (name, spec_json, environment_id, created_at, finished_at, "
                "status) VALUES (?, ?, ?, ?, ?, ?)",
                (name or spec.name or "", dumps(spec.to_dict()), env_id, now, finished_at, status),
            )
            run_id = int(cursor.lastrowid or 0)
            run_name = name or spec.name or f"run-{run_id}"
            conn.execute("UPDATE runs SET name = ? WHERE id = ?", (run_name, run_id))
        log.info("Created run %s (id %d) in %s", run_name, run_id, self.path)
        return Run(run_id, run_name, spec, dict(manifest), now, status, finished_at)

    def set_run_manifest(self, run_id: int, manifest: dict[str, Any]) -> None:
        """Point a run at another environment manifest (the one it was created with plus
        what the sweep learned as it started, such as how its workers start)."""
        env_id = self.add_environment(manifest)
        with self.transaction() as conn:
            cursor = conn.execute(
                "UPDATE runs SET environment_id = ? WHERE id = ?", (env_id, int(run_id))
            )
            if cursor.rowcount == 0:
                raise self._run_not_found(run_id)

    def set_run_status(self, run_id: int, status: str) -> None:
        """Terminal statuses stamp ``finished_at``; queued/running clear it (a resume)."""
        _check_run_status(status)
        finished_at = time.time() if status in TERMINAL_RUN_STATUSES else None
        with self.transaction() as conn:
            cursor = conn.execute(
                "UPDATE runs SET status = ?, finished_at = ? WHERE id = ?",
                (status, finished_at, int(run_id)),
            )
            if cursor.rowcount == 0:
                raise self._run_not_found(run_id)

    def get_run(self, ref: int | str) -> Run:
        """By id, or by name (the newest run with that name; a numeric string that names
        no run is tried as an id)."""
        rows: list[sqlite3.Row] = []
        if isinstance(ref, str):
            rows = self.query(
                f"{store_schema.RUN_SELECT} WHERE r.name = ? ORDER BY r.id DESC LIMIT 1", (ref,)
            )
        if not rows and (isinstance(ref, int) or ref.strip().isdigit()):
            rows = self.query(f"{store_schema.RUN_SELECT} WHERE r.id = ?", (int(ref),))
        if not rows:
            raise self._run_not_found(ref)
        return store_schema.run_from_row(rows[0])

    def list_runs(self) -> list[Run]:
        """Newest first."""
        return [
            store_schema.run_from_row(row)
            for row in self.query(f"{store_schema.RUN_SELECT} ORDER BY r.id DESC")
        ]

    def latest_run(self) -> Run | None:
        rows = self.query(f"{store_schema.RUN_SELECT} ORDER BY r.id DESC LIMIT 1")
        return store_schema.run_from_row(rows[0]) if rows else None

    def _run_not_found(self, ref: int | str) -> RunNotFoundError:
        recent = self.query("SELECT id, name FROM runs ORDER BY id DESC LIMIT 5")
        if recent:
            listed = ", ".join(f"{row['name']} (id {row['id']})" for row in recent)
            hint = f"Recent runs: {listed}."
        else:
            hint = "This store holds no runs yet; run a benchmark first."
        return RunNotFoundError(f"No run {ref!r} in {self.path}.", hint)

    # ---- measurements ----------------------------------------------------------------

    def add_measurement(self, run_id: int, m: Measurement) -> Measurement:
        """Write ``m`` and its samples in one transaction, committed before returning."""
        blob = encode_samples(m.samples_ns) if m.samples_ns else None
        with self.transaction() as conn:
            run = conn.execute(
                "SELECT name, environment_id FROM runs WHERE id = ?", (int(run_id),)
            ).fetchone()
            if run is None:
                raise self._run_not_found(run_id)
            env_id = m.environment_id or str(run["environment_id"])
            if (
                m.environment_id
                and not conn.execute(
                    "SELECT 1 FROM environments WHERE id = ?", (env_id,)
                ).fetchone()
            ):
                raise StoreError(
                    f"Measurement of {m.case.label()} names environment {env_id!r}, which "
                    f"{self.path} does not hold.",
                    "Register its manifest with Store.add_environment first.",
                )
            # Every try of a case is kept, numbered; the newest is the one that counts.
            case_key = store_schema.measurement_params(m, int(run_id), env_id)
            match = " AND ".join(f"{c} = :{c}" for c in ("run_id", *store_schema.CASE_COLUMNS))
            previous = conn.execute(
                f"SELECT COALESCE(MAX(attempt), 0) FROM measurements WHERE {match}", case_key
            ).fetchone()[0]
            if previous:
                conn.execute(f"UPDATE measurements SET current = 0 WHERE {match}", case_key)
            m = replace(m, attempt=int(previous) + 1, current=True)
            cursor = conn.execute(
                store_schema.MEASUREMENT_INSERT,
                store_schema.measurement_params(m, int(run_id), env_id),
            )
            measurement_id = int(cursor.lastrowid or 0)
            if blob is not None:
                conn.execute(
                    "INSERT INTO samples (measurement_id, seq, latency_ns) VALUES (?, 0, ?)",
                    (measurement_id, blob),
                )
            if m.layer_profile is not None and m.layer_profile.layers:
                conn.executemany(store_schema.LAYER_INSERT, store_schema.layer_params(measurement_id, m.layer_profile))
        return m.with_ids(
            measurement_id=measurement_id, run_id=int(run_id), run_name=str(run["name"]),
            environment_id=env_id,
        )  # fmt: skip

    def measurements(
        self,
        run: int | str | None = None,
        include_samples: bool = False,
        *,
        all_attempts: bool = False,
    ) -> list[Measurement]:
        """A run's measurements in the order they were added; ``run=None`` means every
        run's, oldest run first. Only each case's current attempt, unless
        ``all_attempts``: counts, tables, analysis and prediction use one result a case."""
        clauses: list[str] = []
        params: tuple[Any, ...] = ()
        if run is not None:
            clauses.append("m.run_id = ?")
            params = (self.get_run(run).id,)
        if not all_attempts:
            clauses.append("m.current = 1")
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._snapshot() as conn:
            rows = conn.execute(
                f"{store_schema.MEASUREMENT_SELECT}{where} ORDER BY m.run_id, m.id", params
            ).fetchall()
            layers: dict[int, list[LayerRecord]] = {}
            if any(row["layer_profile_json"] for row in rows):
                layer_rows = conn.execute(
                    "SELECT l.* FROM layer_records l JOIN measurements m ON m.id = l.measurement_id"
                    f"{where} ORDER BY l.measurement_id, l.seq",
                    params,
                )
                for layer_row in layer_rows:
                    layers.setdefault(int(layer_row["measurement_id"]), []).append(store_schema.layer_from_row(layer_row))
            chunks: dict[int, list[bytes]] = {}
            if include_samples:
                sample_rows = conn.execute(
                    "SELECT s.measurement_id, s.latency_ns FROM samples s JOIN measurements m "
                    f"ON m.id = s.measurement_id{where} ORDER BY s.measurement_id, s.seq",
                    params,
                )
                for mid, blob in sample_rows:
                    chunks.setdefault(int(mid), []).append(bytes(blob))
        result = []
        for row in rows:
            samples: tuple[int, ...] = ()
            if include_samples and row["id"] in chunks:
                samples = tuple(decode_samples(chunks[row["id"]]).tolist())
            m = store_schema.measurement_from_row(row, samples)
            if m.layer_profile is not None:
                m = replace(m, layer_profile=replace(m.layer_profile, layers=tuple(layers.get(int(row["id"]), ()))))
            result.append(m)
        return result

    def samples(self, measurement_id: int) -> np.ndarray:
        """The raw latencies (int64 ns) of one measurement, in the order they were timed."""
        with self._snapshot() as conn:
            known = conn.execute("SELECT 1 FROM measurements WHERE id = ?", (int(measurement_id),))
            if known.fetchone() is None:
                raise StoreError(
                    f"No measurement {measurement_id} in {self.path}.",
                    "List a run's measurements to find their ids.",
                )
            blobs = [
                bytes(row[0])
                for row in conn.execute(
                    "SELECT latency_ns FROM samples WHERE measurement_id = ? ORDER BY seq",
                    (int(measurement_id),),
                )
            ]
        return decode_samples(blobs)

    def completed_cases(self, run_id: int) -> set[Case]:
        """Cases of a run whose current result is ok."""
        rows = self.query(
            "SELECT DISTINCT model, backend, device, precision, batch_size, mode "
            "FROM measurements WHERE run_id = ? AND status = ? AND current = 1",
            (int(run_id), Status.OK.value),
        )
        return {store_schema.case_from_row(row) for row in rows}

    def measured_cases(self, run_id: int) -> set[Case]:
        """Cases of a run that have a result, ok or failed (an error, a crash, OOM, a
        timeout): a resume skips these. A case cut off (interrupted or cancelled while it
        was measured) has none, so a resume measures it again."""
        rows = self.query(
            "SELECT DISTINCT model, backend, device, precision, batch_size, mode "
            "FROM measurements WHERE run_id = ? AND status != ? AND current = 1",
            (int(run_id), Status.CANCELLED.value),
        )
        return {store_schema.case_from_row(row) for row in rows}

    # ---- run leases (core.store.lease) -----------------------------------------------

    def acquire_run_lease(self, run_id: int, *, stale_after_s: float = LEASE_STALE_S) -> RunLease:
        """Claim ``run_id`` for this process before measuring it. Raises RunBusyError
        (one line: whose it is, and what to do) while another live process holds it; a
        claim whose holder is gone, or silent for ``stale_after_s``, is taken over and
        ``taken_over`` on the lease says whose it was."""
        with self.transaction() as conn:
            row = conn.execute("SELECT name FROM runs WHERE id = ?", (int(run_id),)).fetchone()
            if row is None:
                raise self._run_not_found(run_id)
            return run_lease.claim(conn, int(run_id), str(row["name"]), stale_after_s)

    def renew_run_lease(self, lease: RunLease) -> bool:
        """The holder's heartbeat; False when the run was taken over meanwhile."""
        with self.transaction() as conn:
            return run_lease.renew(conn, lease)

    def release_run_lease(self, lease: RunLease) -> bool:
        """Give the run up; a no-op (False) when it is no longer ``lease``'s."""
        with self.transaction() as conn:
            return run_lease.release(conn, lease)

    def run_lease(self, run_id: int) -> RunLease | None:
        """The claim on ``run_id``, live or not, or None."""
        with self._snapshot() as conn:
            return run_lease.read(conn, int(run_id))

    def live_run_lease(
        self, run_id: int, *, stale_after_s: float = LEASE_STALE_S
    ) -> RunLease | None:
        """The claim on ``run_id`` while its holder lives, or None."""
        found = self.run_lease(run_id)
        if found is None or run_lease.why_gone(found, time.time(), stale_after_s) is not None:
            return None
        return found

    def drop_dead_run_lease(
        self, run_id: int, *, stale_after_s: float = LEASE_STALE_S
    ) -> RunLease | None:
        """Remove the claim on ``run_id`` if its holder is gone; returns what was removed."""
        with self.transaction() as conn:
            found = run_lease.read(conn, int(run_id))
            if found is None or run_lease.why_gone(found, time.time(), stale_after_s) is None:
                return None
            run_lease.release(conn, found)
        log.info("Dropped the claim of %s on run %d: it is gone", found.holder.describe(), run_id)
        return found

    # ---- tables ----------------------------------------------------------------------

    def to_dataframe(
        self, run: int | str | None = None, *, all_attempts: bool = False
    ) -> pandas.DataFrame:
        """The long schema: one row per measurement, columns exactly MEASUREMENT_COLUMNS."""
        import pandas as pd

        rows = [m.to_row() for m in self.measurements(run, all_attempts=all_attempts)]
        return pd.DataFrame.from_records(rows, columns=list(MEASUREMENT_COLUMNS))

    def export(
        self,
        dest: str | os.PathLike[str] | IO[Any],
        fmt: str,
        run: int | str | None = None,
        *,
        all_attempts: bool = False,
    ) -> None:
        """Write the long schema as csv, json (a list of row objects, numbers as numbers,
        NaN as null) or parquet. A path is written atomically; a stream is written as is."""
        fmt = str(fmt).lower().lstrip(".")
        if fmt not in EXPORT_FORMATS:
            raise UsageError(
                f"Unknown export format {fmt!r}.", f"Use one of: {', '.join(EXPORT_FORMATS)}."
            )
        rows = [m.to_row() for m in self.measurements(run, all_attempts=all_attempts)]
        payload: str | bytes
        if fmt == "json":
            payload = json.dumps([_json_row(row) for row in rows], indent=1, allow_nan=False)
        else:
            import pandas as pd

            frame = pd.DataFrame.from_records(rows, columns=list(MEASUREMENT_COLUMNS))
            if fmt == "csv":
                payload = frame.to_csv(index=False)
            else:
                buffer = io.BytesIO()
                try:
                    frame.to_parquet(buffer, index=False)
                except ImportError as exc:
                    raise UsageError(
                        "Parquet export needs pyarrow, which is not installed.",
                        "Install it (pip install pyarrow) or export to csv or json.",
                    ) from exc
                payload = buffer.getvalue()
        _write_payload(dest, payload)
        log.info(
            "Exported %d measurements as %s to %s", len(rows), fmt, getattr(dest, "name", dest)
        )


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    return {
        key: None if isinstance(value, float) and not math.isfinite(value) else value
        for key, value in row.items()
    }


def _write_payload(dest: str | os.PathLike[str] | IO[Any], payload: str | bytes) -> None:
    if hasattr(dest, "write"):
        stream: Any = dest
        if isinstance(stream, io.TextIOBase):
            if isinstance(payload, bytes):
                raise UsageError("Parquet is binary and cannot go to a text stream.",
                                 "Give a file path or a binary stream.")  # fmt: skip
            stream.write(payload)
        else:
            stream.write(payload.encode("utf-8") if isinstance(payload, str) else payload)
        return
    path = Path(os.fspath(dest)).expanduser()
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    data = payload.encode("utf-8") if isinstance(payload, str) else payload
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(
            f"Cannot write the export {path}: {exc.strerror or exc}.",
            "Choose a writable output path.",
        ) from exc


def _check_run_status(status: str) -> None:
    if status not in RUN_STATUSES:
        raise UsageError(
            f"Unknown run status {status!r}.", f"Use one of: {', '.join(RUN_STATUSES)}."
        )


def open_store(path: str | os.PathLike[str] | None, *, readonly: bool = False) -> Store:
    """The store a user asked for: ``path``, or the default one when it is None.

    The default store quarantines a corrupt file and starts afresh (the agent does the
    same); a file the user named is never renamed behind their back, so a corrupt one
    raises StoreCorruptError.
    """
    return Store(path, readonly=readonly, on_corrupt="quarantine" if path is None else "raise")
