"""The results store: round trips, durability, schema versions and damaged files."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.errors import (
    RunNotFoundError,
    SchemaTooNewError,
    StoreCorruptError,
    StoreError,
    StoreFullError,
    UsageError,
)
from core.results import (
    MEASUREMENT_COLUMNS,
    Backend,
    Case,
    FailureKind,
    LatencyStats,
    Measurement,
    Mode,
    Precision,
    RunSpec,
    Status,
)
from core.store import Store, default_store_path
from core.store import schema as store_schema

REPO = Path(__file__).resolve().parents[2]
MANIFEST = {"host": "lab-1", "cpu": {"model": "Xeon", "cores": 8}, "versions": {"torch": "2.4"}}


def make_case(model: str = "resnet18", batch_size: int = 1) -> Case:
    return Case(model, Backend.TORCH, "cpu", Precision.FP32, batch_size, Mode.LATENCY)


def make_measurement(
    model: str = "resnet18", batch_size: int = 1, samples: tuple[int, ...] | None = None
) -> Measurement:
    samples = samples or tuple(1_000_000 + 37 * i + (i % 5) * 1_003 for i in range(50))
    return Measurement(
        case=make_case(model, batch_size),
        status=Status.OK,
        stats=LatencyStats.from_samples(samples),
        samples_ns=samples,
        throughput_ips=812.5,
        first_inference_ms=41.25,
        target_met=True,
        peak_rss_mb=512.75,
        peak_device_mem_mb=None,
        device_memory={"allocated_mb": 10.5, "reserved_mb": 32.0},
        params=11_689_512,
        flops=3_642_000_000,
        weights="random",
        backend_config={"threads": 4, "streams": 1, "hint": "LATENCY"},
        started_at=1_700_000_000.25,
        duration_s=3.5,
    )


def make_failed(model: str = "vgg16") -> Measurement:
    return Measurement.failed(
        make_case(model, 8),
        FailureKind.OOM,
        "out of memory: tried to allocate 2 GiB\nsecond line é",
        peak_rss_mb=2048.0,
        started_at=1_700_000_100.0,
    )


def make_spec(name: str | None = None) -> RunSpec:
    return RunSpec(models=("resnet18", "vgg16"), batch_sizes=(1, 8), name=name)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "results.db"


@pytest.fixture
def store(db: Path) -> Iterator[Store]:
    with Store(db) as opened:
        yield opened


def integrity(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


# ---- round trips -----------------------------------------------------------------------


def test_measurement_round_trip_keeps_every_field_and_exact_samples(store: Store) -> None:
    run = store.create_run(make_spec("sweep"), MANIFEST)
    big = (1, 2**40 + 7, 123_456_789_012, 5, 5, 9, 2**62)
    originals = [make_measurement(), make_failed(), make_measurement("mobilenet_v2", 8, big)]
    returned = [store.add_measurement(run.id, m) for m in originals]

    stored = store.measurements(run.id, include_samples=True)
    assert stored == returned
    for original, got in zip(originals, returned, strict=True):
        assert got == original.with_ids(
            measurement_id=got.measurement_id,
            run_id=run.id,
            run_name="sweep",
            environment_id=run_env_id(store, run.id),
        )
    assert len({m.measurement_id for m in stored}) == 3
    assert stored[1].stats is None and stored[1].samples_ns == ()
    assert stored[1].failure is FailureKind.OOM and "é" in (stored[1].error or "")
    # Without samples every other field is still there.
    light = store.measurements(run.id)
    assert [m.samples_ns for m in light] == [(), (), ()]
    assert light[0] == returned[0].with_ids(samples_ns=())
    # samples() returns the exact int64 values in timing order.
    got = store.samples(returned[2].measurement_id or 0)
    assert got.dtype == np.int64 and got.tolist() == list(big)
    assert store.samples(returned[1].measurement_id or 0).size == 0


def run_env_id(store: Store, run_id: int) -> str:
    return str(store.query("SELECT environment_id FROM runs WHERE id = ?", (run_id,))[0][0])


def test_nan_ci_and_numpy_scalars_survive(store: Store) -> None:
    run = store.create_run(make_spec(), MANIFEST)
    few = (3, 1, 2)  # under 6 samples: ci95_rel is NaN
    m = make_measurement(samples=few)
    m = m.with_ids(params=np.int64(42), flops=np.int64(84), device_memory={"a": np.float32(1.5)})
    store.add_measurement(run.id, m)
    (got,) = store.measurements(run.id, include_samples=True)
    assert got.stats is not None and math.isnan(got.stats.ci95_rel)
    assert got.stats.median_ns == 2.0 and got.samples_ns == few
    assert got.params == 42 and type(got.params) is int and got.flops == 84
    assert got.device_memory == {"a": 1.5}


def test_unknown_measurement_and_environment_are_errors(store: Store) -> None:
    run = store.create_run(make_spec(), MANIFEST)
    with pytest.raises(StoreError, match="No measurement 999"):
        store.samples(999)
    with pytest.raises(StoreError, match="environment 'feedbeef'"):
        store.add_measurement(run.id, make_measurement().with_ids(environment_id="feedbeef"))
    with pytest.raises(RunNotFoundError):
        store.add_measurement(run.id + 100, make_measurement())
    assert store.measurements(run.id) == []


# ---- runs --------------------------------------------------------------------------


def test_runs_listing_order_names_and_lookup(store: Store) -> None:
    assert store.list_runs() == [] and store.latest_run() is None
    first = store.create_run(make_spec("alpha"), MANIFEST)
    second = store.create_run(make_spec(), MANIFEST)
    third = store.create_run(make_spec("alpha"), {**MANIFEST, "host": "lab-2"}, name="beta")
    again = store.create_run(make_spec("alpha"), MANIFEST)

    assert second.name == f"run-{second.id}"
    assert third.name == "beta"
    assert [r.id for r in store.list_runs()] == [again.id, third.id, second.id, first.id]
    assert store.latest_run() == again
    assert store.get_run(first.id) == first
    assert store.get_run(str(second.id)) == second
    assert store.get_run("alpha").id == again.id  # the newest with that name
    assert store.get_run(second.name) == second
    fetched = store.get_run("beta")
    assert fetched.spec == make_spec("alpha") and fetched.manifest == third.manifest
    assert fetched.status == "running" and fetched.finished_at is None


def test_unknown_run_lists_recent_ones(store: Store) -> None:
    with pytest.raises(RunNotFoundError, match="no runs yet"):
        store.get_run("nope")
    store.create_run(make_spec("alpha"), MANIFEST)
    with pytest.raises(RunNotFoundError) as err:
        store.get_run("nope")
    assert "nope" in err.value.message and "alpha (id 1)" in (err.value.hint or "")
    with pytest.raises(RunNotFoundError):
        store.get_run(42)
    with pytest.raises(RunNotFoundError):
        store.set_run_status(42, "finished")


def test_run_status_and_finished_at(store: Store) -> None:
    run = store.create_run(make_spec("s"), MANIFEST, status="queued")
    store.set_run_status(run.id, "finished")
    done = store.get_run(run.id)
    assert done.status == "finished" and done.finished_at is not None
    store.set_run_status(run.id, "running")  # a resume clears it
    assert store.get_run(run.id).finished_at is None
    with pytest.raises(UsageError, match="Unknown run status"):
        store.set_run_status(run.id, "done")


def test_runs_share_one_environment_per_distinct_manifest(store: Store) -> None:
    reordered = {
        "versions": {"torch": "2.4"},
        "cpu": {"cores": 8, "model": "Xeon"},
        "host": "lab-1",
    }
    a = store.create_run(make_spec(), MANIFEST)
    b = store.create_run(make_spec(), reordered)
    c = store.create_run(make_spec(), {**MANIFEST, "host": "other"})
    ids = [run_env_id(store, r.id) for r in (a, b, c)]
    assert ids[0] == ids[1] != ids[2] and len(ids[0]) == 16
    assert store.query("SELECT COUNT(*) FROM environments")[0][0] == 2
    stored = store.add_measurement(a.id, make_measurement())
    assert stored.environment_id == ids[0]


def test_completed_cases_are_the_ok_ones(store: Store) -> None:
    run = store.create_run(make_spec(), MANIFEST)
    other = store.create_run(make_spec(), MANIFEST)
    store.add_measurement(run.id, make_measurement("resnet18", 1))
    store.add_measurement(run.id, make_measurement("resnet18", 8))
    store.add_measurement(run.id, make_failed("vgg16"))
    store.add_measurement(other.id, make_measurement("alexnet", 1))
    assert store.completed_cases(run.id) == {make_case("resnet18", 1), make_case("resnet18", 8)}
    assert store.completed_cases(other.id) == {make_case("alexnet", 1)}


# ---- attempts and the issue-9 fields ----------------------------------------------------


def attempts_of(store: Store, run_id: int, model: str) -> list[tuple[int, bool, str]]:
    """(attempt, current, status) of every stored try of ``model``'s case, oldest first."""
    return [
        (m.attempt, m.current, m.status.value)
        for m in store.measurements(run_id, all_attempts=True)
        if m.case.model == model
    ]


def test_a_case_added_twice_gets_attempts_1_and_2_and_only_the_last_counts(store: Store) -> None:
    run = store.create_run(make_spec(), MANIFEST)
    first = store.add_measurement(run.id, make_failed("vgg16"))
    store.add_measurement(run.id, make_measurement("resnet18", 1))
    retry = store.add_measurement(run.id, make_measurement("vgg16", 8))
    assert (first.attempt, first.current) == (1, True)  # what add_measurement wrote
    assert (retry.attempt, retry.current) == (2, True)

    assert attempts_of(store, run.id, "vgg16") == [(1, False, "failed"), (2, True, "ok")]
    current = store.measurements(run.id)
    assert [(m.case.model, m.attempt, m.status.value) for m in current] == [
        ("resnet18", 1, "ok"),
        ("vgg16", 2, "ok"),
    ]
    assert all(m.current for m in current)
    assert len(store.measurements(run.id, all_attempts=True)) == 3
    assert store.measurements(run.id, include_samples=True, all_attempts=True)[0].samples_ns == ()
    assert store.completed_cases(run.id) == {make_case("resnet18", 1), make_case("vgg16", 8)}
    # The long schema (and so every export and analysis) holds one row per case.
    frame = store.to_dataframe(run.id)
    assert sorted(zip(frame["model"], frame["attempt"], strict=True)) == [
        ("resnet18", 1),
        ("vgg16", 2),
    ]


def test_completed_cases_follow_the_current_attempt_not_any_ok_one(store: Store) -> None:
    run = store.create_run(make_spec(), MANIFEST)
    store.add_measurement(run.id, make_measurement("vgg16", 8))
    assert store.completed_cases(run.id) == {make_case("vgg16", 8)}
    # A later attempt that failed is the one that counts: the case is no longer ok. (It has
    # a result all the same, so a resume leaves it be: see measured_cases.)
    store.add_measurement(run.id, make_failed("vgg16"))
    assert store.completed_cases(run.id) == set()
    assert attempts_of(store, run.id, "vgg16") == [(1, False, "ok"), (2, True, "failed")]
    third = store.add_measurement(run.id, make_failed("vgg16"))
    assert third.attempt == 3
    assert [m.attempt for m in store.measurements(run.id)] == [3]


def test_attempts_are_counted_per_run_and_per_case(store: Store) -> None:
    run = store.create_run(make_spec(), MANIFEST)
    other = store.create_run(make_spec(), MANIFEST)
    store.add_measurement(run.id, make_measurement("resnet18", 1))
    store.add_measurement(run.id, make_measurement("resnet18", 1))
    assert store.add_measurement(run.id, make_measurement("resnet18", 8)).attempt == 1
    assert store.add_measurement(other.id, make_measurement("resnet18", 1)).attempt == 1
    assert attempts_of(store, run.id, "resnet18") == [
        (1, False, "ok"),
        (2, True, "ok"),
        (1, True, "ok"),
    ]
    assert [m.attempt for m in store.measurements()] == [2, 1, 1]  # every run, current only


def test_issue_9_fields_round_trip(store: Store) -> None:
    run = store.create_run(make_spec(), MANIFEST)
    phases = {
        "convert": 0.0,
        "start": 0.021,
        "load": 0.5,
        "compile": 1.25,
        "warmup": 0.75,
        "measure": 3.0,
    }
    conditions = {"worker_start": "fork-server", "memory_limit": "rlimit-as", "steal_pct": 0.5}
    disturbed = dataclasses.replace(
        make_measurement(), baseline_rss_mb=312.5, phase_s=phases, interference=0.375,
        disturbed=True, conditions=conditions,
    )  # fmt: skip
    quiet = dataclasses.replace(
        make_measurement("vgg16", 8), baseline_rss_mb=300.0, interference=0.0, disturbed=False
    )
    unknown = make_measurement("alexnet", 1)  # as a store from before issue 9 holds it
    returned = [store.add_measurement(run.id, m) for m in (disturbed, quiet, unknown)]
    stored = store.measurements(run.id, include_samples=True)
    assert stored == returned
    got = stored[0]
    assert got.baseline_rss_mb == 312.5 and got.model_rss_mb == 512.75 - 312.5
    assert got.phase_s == phases and got.conditions == conditions
    assert got.interference == 0.375 and got.disturbed is True
    assert stored[1].disturbed is False and stored[1].interference == 0.0
    assert (
        stored[2].disturbed is None and stored[2].model_rss_mb is None and stored[2].phase_s == {}
    )
    row = store.to_dataframe(run.id).iloc[0]
    assert row["model_rss_mb"] == pytest.approx(200.25) and bool(row["disturbed"]) is True
    assert (row["load_s"], row["compile_s"], row["measure_s"], row["wall_s"]) == (
        0.5,
        1.25,
        3.0,
        3.5,
    )


def write_version_2_file(path: Path) -> None:
    """A store as schema 2 wrote it: no attempts, and one case measured twice in run 1 (a
    resume that measured a failed case again), once in run 2."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        store_schema.migrate(conn, store_schema.MIGRATIONS[:2])
        assert store_schema.read_version(conn) == 2
        conn.execute("INSERT INTO environments VALUES ('env', '{}', 1.0)")
        for name in ("old", "other"):
            conn.execute(
                "INSERT INTO runs (name, spec_json, environment_id, created_at, status) "
                "VALUES (?, ?, 'env', 1.0, 'finished')",
                (name, json.dumps(make_spec(name).to_dict())),
            )
        rows = [
            (1, "vgg16", 8, "failed", None),
            (1, "resnet18", 1, "ok", 4_000_000.0),
            (1, "vgg16", 8, "ok", 9_000_000.0),
            (2, "vgg16", 8, "ok", 8_000_000.0),
        ]
        for run_id, model, batch, status, median in rows:
            conn.execute(
                "INSERT INTO measurements (run_id, model, backend, device, precision, batch_size, "
                "mode, status, median_ns, n, weights, environment_id) "
                "VALUES (?, ?, 'torch', 'cpu', 'fp32', ?, 'latency', ?, ?, ?, 'random', 'env')",
                (run_id, model, batch, status, median, None if median is None else 9),
            )
    finally:
        conn.close()


def test_version_2_file_with_a_case_measured_twice_gets_numbered_attempts(db: Path) -> None:
    write_version_2_file(db)
    with Store(db) as store:
        assert store.query("PRAGMA user_version")[0][0] == store_schema.current_version()
        assert attempts_of(store, 1, "vgg16") == [(1, False, "failed"), (2, True, "ok")]
        assert attempts_of(store, 1, "resnet18") == [(1, True, "ok")]
        assert attempts_of(store, 2, "vgg16") == [(1, True, "ok")]
        current = store.measurements("old")
        assert [(m.case.model, m.status.value) for m in current] == [
            ("resnet18", "ok"),
            ("vgg16", "ok"),
        ]
        assert current[1].stats is not None and current[1].stats.median_ns == 9_000_000.0
        assert store.completed_cases(1) == {make_case("resnet18", 1), make_case("vgg16", 8)}
        # The fields the old file never had read as unknown, not as zero.
        assert all(m.baseline_rss_mb is None and m.disturbed is None for m in current)
        # A new try of the case continues the numbering.
        assert store.add_measurement(1, make_failed("vgg16")).attempt == 3
        assert store.completed_cases(1) == {make_case("resnet18", 1)}
    assert db.with_name(f"{db.name}.bak-v2").is_file()


# ---- file settings and versions ------------------------------------------------------


def test_wal_synchronous_full_foreign_keys_busy_timeout_and_version(store: Store, db: Path) -> None:
    conn = store._conn
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 10_000
    with sqlite3.connect(db) as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert other.execute("PRAGMA user_version").fetchone()[0] == store_schema.current_version()
    assert store_schema.current_version() >= 1


def test_default_path_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    expected = tmp_path / "data" / "backbench" / "results.db"
    assert default_store_path() == expected
    with Store() as store:
        assert store.path == expected and store.quarantined is None
    assert expected.is_file()


def test_two_stores_on_one_file_see_each_others_commits(db: Path) -> None:
    with Store(db) as writer, Store(db) as reader:
        run = writer.create_run(make_spec("shared"), MANIFEST)
        writer.add_measurement(run.id, make_measurement())
        assert [m.case for m in reader.measurements("shared")] == [make_case()]
        reader.add_measurement(run.id, make_failed())
        assert len(writer.measurements(run.id)) == 2


def test_a_writer_blocked_past_the_busy_timeout_gets_a_store_error(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_schema, "BUSY_TIMEOUT_S", 0.2)
    with Store(db) as holder, Store(db) as waiter:
        run = holder.create_run(make_spec("busy"), MANIFEST)
        with holder.transaction():
            with pytest.raises(StoreError, match="locked") as err:
                waiter.add_measurement(run.id, make_measurement())
            assert "another process" in err.value.message
            assert len(waiter.measurements(run.id)) == 0  # WAL: readers are not blocked
        waiter.add_measurement(run.id, make_measurement())
        assert len(holder.measurements(run.id)) == 1


def test_threads_share_one_store(store: Store) -> None:
    run = store.create_run(make_spec(), MANIFEST)

    def add(model: str) -> None:
        for batch_size in range(1, 11):
            store.add_measurement(run.id, make_measurement(model, batch_size))

    threads = [threading.Thread(target=add, args=(f"m{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(store.completed_cases(run.id)) == 40
    assert store.query("SELECT COUNT(*) FROM samples")[0][0] == 40


def add_jobs_table() -> store_schema.Migration:
    return store_schema.Migration(
        "job queue",
        sql="""
        CREATE TABLE jobs (id INTEGER PRIMARY KEY, run_id INTEGER REFERENCES runs(id),
                           state TEXT NOT NULL DEFAULT 'queued');
        CREATE TRIGGER jobs_touch AFTER UPDATE ON jobs BEGIN SELECT 1; SELECT 2; END;
        """,
        apply=lambda conn: conn.execute("INSERT INTO jobs (run_id) SELECT id FROM runs"),
    )


def test_migration_from_older_version_takes_a_backup(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Store(db) as store:
        run = store.create_run(make_spec("old"), MANIFEST)
        store.add_measurement(run.id, make_measurement())
    monkeypatch.setattr(store_schema, "MIGRATIONS", [*store_schema.MIGRATIONS, add_jobs_table()])
    new_version = store_schema.current_version()

    with Store(db) as store:
        assert store.query("PRAGMA user_version")[0][0] == new_version
        assert [tuple(r) for r in store.query("SELECT run_id, state FROM jobs")] == [
            (run.id, "queued")
        ]
        assert store.measurements("old")[0].case == make_case()
        assert store._conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    backup = db.with_name(f"{db.name}.bak-v{new_version - 1}")
    assert backup.is_file()
    with sqlite3.connect(backup) as old:
        assert old.execute("PRAGMA user_version").fetchone()[0] == new_version - 1
        assert old.execute("SELECT name FROM runs").fetchall() == [("old",)]
        assert old.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 1
    assert integrity(backup) == "ok"


def test_fresh_file_gets_every_migration_and_no_backup(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_schema, "MIGRATIONS", [*store_schema.MIGRATIONS, add_jobs_table()])
    with Store(db) as store:
        assert store.query("PRAGMA user_version")[0][0] == store_schema.current_version()
        assert store.query("SELECT COUNT(*) FROM jobs")[0][0] == 0
    assert list(db.parent.glob("*.bak-*")) == []


def test_failed_migration_leaves_the_file_at_its_old_version(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Store(db) as store:
        store.create_run(make_spec("keep"), MANIFEST)
    old_version = store_schema.current_version()
    broken = store_schema.Migration(
        "broken", sql="CREATE TABLE t (x); INSERT INTO missing VALUES (1);"
    )
    monkeypatch.setattr(store_schema, "MIGRATIONS", [*store_schema.MIGRATIONS, broken])
    with pytest.raises(StoreError, match="upgrade") as err:
        Store(db)
    assert f"bak-v{old_version}" in err.value.message
    monkeypatch.undo()
    with Store(db) as store:
        assert store.query("PRAGMA user_version")[0][0] == old_version
        assert store.get_run("keep").name == "keep"
        assert store.query("SELECT COUNT(*) FROM sqlite_master WHERE name = 't'")[0][0] == 0


def test_newer_schema_is_refused_and_left_alone(db: Path) -> None:
    with Store(db) as store:
        store.create_run(make_spec("future"), MANIFEST)
    known = store_schema.current_version()
    newer = known + 1
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {newer}")
    with pytest.raises(SchemaTooNewError) as err:
        Store(db)
    text = str(err.value)
    assert f"written by a newer backbench (schema {newer}, this one knows {known})" in text
    assert "upgrade backbench" in text and str(db) in text
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == newer
    assert list(db.parent.glob("*.corrupt-*")) == []


def test_foreign_sqlite_file_is_not_taken_over(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER)")
    with pytest.raises(StoreError, match="not a backbench results store"):
        Store(db)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == [("invoices",)]


# ---- damaged and unusable files -------------------------------------------------------


def test_garbage_file_is_quarantined_and_a_fresh_store_works(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    garbage = os.urandom(8192)
    db.write_bytes(garbage)
    db.with_name(db.name + "-wal").write_bytes(b"stale wal")
    with Store(db) as store:
        moved = store.quarantined
        assert moved is not None and moved.name.startswith("results.db.corrupt-")
        assert moved.read_bytes() == garbage
        assert moved.with_name(moved.name + "-wal").read_bytes() == b"stale wal"
        run = store.create_run(make_spec("after"), MANIFEST)
        store.add_measurement(run.id, make_measurement())
        assert len(store.measurements("after")) == 1
    assert any("corrupt" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    assert integrity(db) == "ok"


def test_damaged_pages_are_quarantined_or_refused(db: Path) -> None:
    with Store(db) as store:
        run = store.create_run(make_spec("x"), MANIFEST)
        for i in range(20):
            store.add_measurement(
                run.id, make_measurement(f"model{i}", samples=tuple(range(1, 2000)))
            )
    with sqlite3.connect(db) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    data = bytearray(db.read_bytes())
    for page in range(1, len(data) // page_size):
        data[page * page_size : page * page_size + 64] = b"\xff" * 64
    db.write_bytes(bytes(data))

    with pytest.raises(StoreCorruptError, match="corrupt"):
        Store(db, on_corrupt="raise")
    assert db.read_bytes() == bytes(data)  # "raise" touches nothing
    with Store(db) as store:
        assert store.quarantined is not None and store.quarantined.read_bytes() == bytes(data)
        assert store.list_runs() == []


def test_unwritable_paths_raise_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError) as err:
        Store(blocker / "results.db")
    assert str(blocker / "results.db") in err.value.message
    assert "writable --db" in (err.value.hint or "")
    with pytest.raises(StoreError, match="is a folder") as err:
        Store(tmp_path)
    assert "results.db" in (err.value.hint or "")
    with pytest.raises(UsageError):
        Store(tmp_path / "x.db", on_corrupt="ignore")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through file permissions")
def test_read_only_file_raises_store_error(db: Path) -> None:
    Store(db).close()
    db.chmod(0o444)
    with pytest.raises(StoreError, match="read-only"):
        Store(db)


def test_readonly_mode(db: Path) -> None:
    with pytest.raises(StoreError, match="no results store"):
        Store(db, readonly=True)
    with Store(db) as store:
        run = store.create_run(make_spec("ro"), MANIFEST)
        store.add_measurement(run.id, make_measurement())
    with Store(db, readonly=True) as ro:
        assert ro.measurements("ro")[0].case == make_case()
        with pytest.raises(StoreError):
            ro.create_run(make_spec(), MANIFEST)


# ---- durability ----------------------------------------------------------------------

KILL_SCRIPT = """
import os, signal, sys
from core.results import Case, LatencyStats, Measurement, RunSpec, Status
from core.store import Store

store = Store(sys.argv[1])
run = store.create_run(RunSpec(models=("m",)), {"host": "h"}, name="killed")

def make(i):
    samples = tuple(1000 + 7 * i + k for k in range(5000))
    case = Case.from_dict({"model": f"m{i}", "backend": "torch", "device": "cpu",
                           "precision": "fp32", "batch_size": 1})
    return Measurement(case, Status.OK, LatencyStats.from_samples(samples), samples)

store.add_measurement(run.id, make(0))
store.add_measurement(run.id, make(1))

def die_before_samples(sql):
    # Inside the third add_measurement: its row is written, its samples come next.
    if sql.lstrip().upper().startswith("INSERT INTO SAMPLES"):
        if not store._conn.in_transaction:
            sys.exit("expected an open transaction")
        os.kill(os.getpid(), signal.SIGKILL)

store._conn.set_trace_callback(die_before_samples)
store.add_measurement(run.id, make(2))
sys.exit("not killed")
"""


def test_sigkill_mid_write_keeps_exactly_the_completed_measurements(db: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, str(db)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert integrity(db) == "ok"
    with Store(db) as store:
        assert store.quarantined is None
        got = store.measurements("killed", include_samples=True)
        assert [m.case.model for m in got] == ["m0", "m1"]
        assert got[1].samples_ns == tuple(1007 + k for k in range(5000))
        assert store.query("SELECT COUNT(*) FROM measurements")[0][0] == 2
        assert store.query("SELECT COUNT(*) FROM samples")[0][0] == 2
    assert integrity(db) == "ok"


def test_full_disk_fails_cleanly_and_keeps_the_store(store: Store, db: Path) -> None:
    run = store.create_run(make_spec("full"), MANIFEST)
    store.add_measurement(run.id, make_measurement())
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
    store._conn.execute(f"PRAGMA max_page_count = {pages}")
    huge = make_measurement("big", samples=tuple(range(1, 200_001)))
    with pytest.raises(StoreFullError) as err:
        store.add_measurement(run.id, huge)
    assert "full" in err.value.message and str(db) in err.value.message
    assert "intact" in (err.value.hint or "")
    assert not store._conn.in_transaction
    assert [m.case.model for m in store.measurements(run.id)] == ["resnet18"]
    assert integrity(db) == "ok"
    store._conn.execute("PRAGMA max_page_count = 1073741823")
    store.add_measurement(run.id, huge)
    assert store.samples(store.measurements(run.id)[-1].measurement_id or 0).size == 200_000


def test_interrupt_inside_a_transaction_rolls_back(store: Store) -> None:
    run = store.create_run(make_spec(), MANIFEST)
    with pytest.raises(KeyboardInterrupt), store.transaction() as conn:
        conn.execute("UPDATE runs SET name = 'changed'")
        raise KeyboardInterrupt
    assert store.get_run(run.id).name == run.name
    store.add_measurement(run.id, make_measurement())  # the store is usable afterwards
    assert len(store.measurements(run.id)) == 1


# ---- tables and exports ---------------------------------------------------------------


@pytest.fixture
def filled(store: Store) -> Store:
    first = store.create_run(make_spec("first"), MANIFEST)
    store.add_measurement(first.id, make_measurement("resnet18", 1))
    store.add_measurement(first.id, make_failed("vgg16"))
    second = store.create_run(make_spec("second"), MANIFEST)
    store.add_measurement(second.id, make_measurement("alexnet", 8, samples=(5, 6, 7)))
    return store


def test_to_dataframe_has_the_long_schema_in_order(filled: Store) -> None:
    frame = filled.to_dataframe()
    assert list(frame.columns) == list(MEASUREMENT_COLUMNS)
    assert frame["model"].tolist() == ["resnet18", "vgg16", "alexnet"]
    assert frame["run_name"].tolist() == ["first", "first", "second"]
    one = filled.to_dataframe("second")
    assert one["model"].tolist() == ["alexnet"]
    expected = filled.measurements("second")[0].to_row()
    assert one.iloc[0]["latency_ms_median"] == expected["latency_ms_median"]
    assert one.iloc[0]["per_image_ms"] == pytest.approx(expected["per_image_ms"])
    with Store(filled.path.with_name("empty.db")) as other:
        empty = other.to_dataframe()
    assert list(empty.columns) == list(MEASUREMENT_COLUMNS) and len(empty) == 0


def test_export_csv_json_parquet_read_back(filled: Store, tmp_path: Path) -> None:
    rows = [m.to_row() for m in filled.measurements()]
    for fmt in ("csv", "json", "parquet"):
        dest = tmp_path / f"out.{fmt}"
        filled.export(dest, fmt)
        frame = getattr(pd, f"read_{fmt}")(dest)
        assert list(frame.columns) == list(MEASUREMENT_COLUMNS), fmt
        assert frame["model"].tolist() == ["resnet18", "vgg16", "alexnet"], fmt
        assert frame["latency_ms_p99"].iloc[0] == pytest.approx(rows[0]["latency_ms_p99"]), fmt
        assert frame["status"].tolist() == ["ok", "failed", "ok"], fmt
        assert list(tmp_path.glob(".out*")) == []  # no temporary file left behind

    data = json.loads((tmp_path / "out.json").read_text())
    assert [list(row) for row in data] == [list(MEASUREMENT_COLUMNS)] * 3
    assert isinstance(data[0]["latency_ms_median"], float) and data[0]["flops"] == 3_642_000_000
    assert data[2]["ci95_rel"] is None  # NaN (three samples) becomes null
    assert data[1]["latency_ms_median"] is None and data[1]["failure"] == "oom"


def test_export_one_run_to_streams(filled: Store) -> None:
    text = io.StringIO()
    filled.export(text, "csv", run="second")
    assert pd.read_csv(io.StringIO(text.getvalue()))["model"].tolist() == ["alexnet"]
    binary = io.BytesIO()
    filled.export(binary, "json", run="first")
    assert [r["model"] for r in json.loads(binary.getvalue())] == ["resnet18", "vgg16"]
    parquet = io.BytesIO()
    filled.export(parquet, "parquet")
    assert len(pd.read_parquet(io.BytesIO(parquet.getvalue()))) == 3
    with pytest.raises(UsageError, match="Unknown export format"):
        filled.export(io.StringIO(), "xlsx")


def test_parquet_without_pyarrow_says_what_to_do(
    filled: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "fastparquet", None)
    with pytest.raises(UsageError, match="pyarrow"):
        filled.export(tmp_path / "x.parquet", "parquet")
    assert not (tmp_path / "x.parquet").exists()


def test_devices_stored_in_other_spellings_are_respelled_by_the_migration(tmp_path: Path) -> None:
    """Rows from before one spelling per device still match their cases: a resume finds
    an interrupted case's earlier attempt under the device's one name."""
    import sqlite3

    from core.results import Backend, Case, Measurement, Precision, RunSpec, Status
    from core.store import Store
    from core.store.schema import _V5_DEVICES, MIGRATIONS, migrate

    db = tmp_path / "old.db"
    with Store(db) as store:
        run = store.create_run(RunSpec(models=("resnet18",), backend=Backend.TORCH, device="cuda"), {})
        store.add_measurement(run.id, Measurement(
            case=Case("resnet18", Backend.TORCH, "cuda:0", Precision.FP32, 1), status=Status.OK))  # fmt: skip
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("UPDATE measurements SET device = 'cuda'")  # as an older backbench wrote it
    respell = next(i for i, m in enumerate(MIGRATIONS) if m.sql is _V5_DEVICES)
    conn.execute(f"PRAGMA user_version = {respell}")
    columns = [r[1] for r in conn.execute("PRAGMA table_info(measurements)") if r[1] != "id"]
    picked = ", ".join("'openvino'" if c == "backend" else "' Cpu '" if c == "device" else c for c in columns)
    conn.execute(f"INSERT INTO measurements ({', '.join(columns)}) SELECT {picked} FROM measurements")
    migrate(conn, MIGRATIONS[: respell + 1])  # that step alone: later ones are in the file already
    rows = sorted(conn.execute("SELECT backend, device FROM measurements").fetchall())
    conn.close()
    assert rows == [("openvino", "CPU"), ("torch", "cuda:0")]
