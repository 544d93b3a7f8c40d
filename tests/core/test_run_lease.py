"""Run leases (issue 10, M3) and what a resume measures (issue 10, L4).

One process at a time measures a run: a sweep claims its run in the store, renews the
claim while it runs and releases it however it ends; a second resume of a run whose
holder lives is refused in one line, and a claim whose holder died or went silent is
taken over. A resume measures only the cases with no result: a failed case has one.

Real SQLite files, two Store objects on one file standing for two processes, real dead
processes, and real `backbench run --resume` processes side by side.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.errors import StoreError
from core.measure.runner import SweepObserver, run_sweep
from core.measure.supervisor import CaseRunner
from core.results import (
    Backend,
    Case,
    FailureKind,
    LatencyStats,
    Measurement,
    Mode,
    Precision,
    RunSpec,
    Status,
    StoppingRule,
)
from core.store import Store
from core.store import lease as run_lease
from core.store import schema as store_schema
from core.store.lease import LeaseHolder, RunBusyError

REPO = Path(__file__).resolve().parents[2]
SYNTHETIC = [sys.executable, "-m", "tests.service.synthetic_worker"]
QUICK = StoppingRule(min_iters=5, target_ci=0.5, max_time_s=0.2, warmup_iters=1, warmup_time_s=0)
MANIFEST = {"host": "lab-1"}


def make_case(batch_size: int, model: str = "squeezenet1_1") -> Case:
    return Case(model, Backend.TORCH, "cpu", Precision.FP32, batch_size, Mode.LATENCY)


def ok(case: Case) -> Measurement:
    samples = tuple(1_000_000 + 10 * i for i in range(20))
    return Measurement(
        case=case, status=Status.OK, stats=LatencyStats.from_samples(samples), samples_ns=samples,
        weights="random", started_at=time.time(), duration_s=0.5,
    )  # fmt: skip


def crashed(case: Case) -> Measurement:
    return Measurement.failed(
        case, FailureKind.CRASHED, "killed by SIGSEGV", started_at=time.time()
    )


def cut_off(case: Case) -> Measurement:
    return Measurement.failed(
        case, FailureKind.INTERRUPTED, "interrupted while measuring", status=Status.CANCELLED
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "results.db"


@pytest.fixture
def two(db: Path) -> Iterator[tuple[Store, Store]]:
    """Two stores on one file: two processes, as far as the file can tell."""
    with Store(db) as first, Store(db) as second:
        yield first, second


def new_run(store: Store, batches: tuple[int, ...] = (1, 2, 4), name: str = "dres") -> int:
    spec = RunSpec(models=("squeezenet1_1",), batch_sizes=batches, name=name, stopping=QUICK)
    return store.create_run(spec, MANIFEST, status="interrupted").id


def age_heartbeat(db: Path, run_id: int, seconds: float) -> None:
    """Make a claim look silent for ``seconds``, as a stopped or hung holder's would."""
    conn = sqlite3.connect(db, timeout=10, isolation_level=None)
    try:
        conn.execute(
            "UPDATE run_leases SET heartbeat_at = heartbeat_at - ? WHERE run_id = ?",
            (seconds, run_id),
        )
    finally:
        conn.close()


def _exited_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ---- the schema ---------------------------------------------------------------------------


def test_a_version_3_store_migrates_and_its_runs_can_be_claimed(db: Path) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        store_schema.migrate(conn, store_schema.MIGRATIONS[:3])
        conn.execute("INSERT INTO environments VALUES ('env', '{}', 1.0)")
        spec = RunSpec(models=("squeezenet1_1",), name="old")
        conn.execute(
            "INSERT INTO runs (name, spec_json, environment_id, created_at, status) "
            "VALUES ('old', ?, 'env', 1.0, 'interrupted')",
            (json.dumps(spec.to_dict()),),
        )
    finally:
        conn.close()
    with Store(db) as store:
        assert store.query("PRAGMA user_version")[0][0] == store_schema.current_version()
        assert store.query("SELECT name FROM sqlite_master WHERE name = 'run_leases'")
        assert store.run_lease(1) is None
        lease = store.acquire_run_lease(1)
        found = store.run_lease(1)
        assert found is not None and (found.token, found.holder) == (lease.token, lease.holder)
    assert db.with_name(f"{db.name}.bak-v3").is_file()


# ---- claiming -----------------------------------------------------------------------------


def test_a_second_claim_of_a_run_whose_holder_lives_is_refused_in_one_line(
    two: tuple[Store, Store],
) -> None:
    first, second = two
    run_id = new_run(first)
    held = first.acquire_run_lease(run_id)
    assert held.taken_over is None and held.holder.pid == os.getpid()
    with pytest.raises(RunBusyError) as refused:
        second.acquire_run_lease(run_id)
    text = str(refused.value)
    assert "\n" not in text
    assert f"pid {os.getpid()}" in text and "'dres'" in text
    assert "Wait for it to finish" in text and f"kill {os.getpid()}" in text
    assert isinstance(refused.value, StoreError)  # the agent fails such a job with this line
    # The refusal changed nothing: the claim is still the first one's.
    assert second.run_lease(run_id).token == held.token  # type: ignore[union-attr]


def test_a_released_claim_can_be_taken_and_an_old_lease_cannot_release_a_new_one(
    two: tuple[Store, Store],
) -> None:
    first, second = two
    run_id = new_run(first)
    old = first.acquire_run_lease(run_id)
    assert first.release_run_lease(old) is True
    assert first.run_lease(run_id) is None
    new = second.acquire_run_lease(run_id)
    assert new.taken_over is None
    assert first.release_run_lease(old) is False and first.renew_run_lease(old) is False
    assert second.run_lease(run_id).token == new.token  # type: ignore[union-attr]


def test_a_claim_whose_process_died_is_taken_over_and_said(db: Path) -> None:
    with Store(db) as store:
        run_id = new_run(store)
    # A real process claims the run and dies without releasing it.
    script = f"""
        import os
        from core.store import Store
        Store({str(db)!r}).acquire_run_lease({run_id})
        print(os.getpid(), flush=True)
        os._exit(0)
    """
    child = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], cwd=REPO, capture_output=True,
        text=True, check=True,
    )  # fmt: skip
    holder_pid = int(child.stdout.split()[0])
    with Store(db) as store:
        abandoned = store.run_lease(run_id)
        assert abandoned is not None and abandoned.holder.pid == holder_pid
        assert store.live_run_lease(run_id) is None
        lease = store.acquire_run_lease(run_id)
        assert lease.holder.pid == os.getpid()
        assert lease.taken_over is not None and lease.taken_over.holder.pid == holder_pid
        line = lease.takeover_line("dres")
        assert line is not None and "\n" not in line
        assert f"pid {holder_pid}" in line and "has exited" in line and "takes it over" in line


def test_a_silent_claim_is_taken_over_after_the_bound_and_not_before(
    db: Path, two: tuple[Store, Store]
) -> None:
    first, second = two
    run_id = new_run(first)
    held = first.acquire_run_lease(run_id)
    age_heartbeat(db, run_id, 120)
    # Its holder lives (it is this process), but has not renewed for 120 s.
    with pytest.raises(RunBusyError):
        second.acquire_run_lease(run_id, stale_after_s=600)
    taken = second.acquire_run_lease(run_id, stale_after_s=60)
    assert taken.taken_over is not None and taken.taken_over.token == held.token
    assert "not renewed its claim for 120 s" in (taken.takeover_line("dres") or "")
    # The silent holder learns it has lost the run when it next renews.
    assert first.renew_run_lease(held) is False


def test_renewing_keeps_a_claim_live(db: Path, two: tuple[Store, Store]) -> None:
    first, second = two
    run_id = new_run(first)
    held = first.acquire_run_lease(run_id)
    age_heartbeat(db, run_id, 120)
    assert first.renew_run_lease(held) is True
    with pytest.raises(RunBusyError):
        second.acquire_run_lease(run_id)


def test_a_pid_reused_by_another_process_is_not_the_holder(two: tuple[Store, Store]) -> None:
    started = run_lease.process_start(os.getpid())
    if started is None:
        pytest.skip("process start times need /proc")
    first, second = two
    run_id = new_run(first)
    # A holder that had this process's pid but started at another time: it is gone.
    ghost = LeaseHolder(
        host=LeaseHolder.this_process().host, pid=os.getpid(), pid_start=started - 1
    )
    with first.transaction() as conn:
        run_lease.claim(conn, run_id, "dres", run_lease.LEASE_STALE_S, holder=ghost)
    lease = second.acquire_run_lease(run_id)
    assert "belongs to another process" in (lease.takeover_line("dres") or "")


def test_a_claim_on_another_host_is_judged_by_its_heartbeat_alone(
    db: Path, two: tuple[Store, Store]
) -> None:
    first, second = two
    run_id = new_run(first)
    elsewhere = LeaseHolder(host="another-host.invalid", pid=_exited_pid())
    with first.transaction() as conn:
        run_lease.claim(conn, run_id, "dres", run_lease.LEASE_STALE_S, holder=elsewhere)
    # Its pid means nothing here: the claim stands while it is renewed.
    with pytest.raises(RunBusyError, match="on another-host.invalid"):
        second.acquire_run_lease(run_id)
    age_heartbeat(db, run_id, 120)
    assert second.acquire_run_lease(run_id).taken_over is not None


def test_the_agents_recovery_drops_a_dead_claim_and_leaves_a_live_run_alone(db: Path) -> None:
    from service.jobs import RUNNING, JobQueue

    with Store(db) as store:
        queue = JobQueue(store)
        dead_run, live_run = new_run(store, name="dead"), new_run(store, name="live")
        for run_id in (dead_run, live_run):
            store.set_run_status(run_id, "running")
            job, _ = queue.submit(store.get_run(run_id).spec, f"job-{run_id}", {}, None)
            with store.transaction() as conn:
                conn.execute(
                    "UPDATE agent_jobs SET state = ?, run_id = ? WHERE id = ?",
                    (RUNNING, run_id, job.id),
                )
        gone = LeaseHolder(host=LeaseHolder.this_process().host, pid=_exited_pid())
        with store.transaction() as conn:
            run_lease.claim(conn, dead_run, "dead", run_lease.LEASE_STALE_S, holder=gone)
        cli = store.acquire_run_lease(live_run)  # `backbench run --resume live`, say
        assert len(queue.recover()) == 2
        assert store.run_lease(dead_run) is None
        assert store.get_run(dead_run).status == "interrupted"
        assert store.get_run(live_run).status == "running"
        assert store.run_lease(live_run).token == cli.token  # type: ignore[union-attr]
        # And resuming the job while the CLI measures its run is refused, in one line.
        from core.errors import ProtocolError

        live_job = next(j for j in queue.list() if j.run_id == live_run)
        with pytest.raises(ProtocolError) as refused:
            queue.requeue(live_job.id)
        assert f"pid {os.getpid()}" in str(refused.value) and "\n" not in str(refused.value)
        assert queue.get(live_job.id).state == "interrupted"
        store.release_run_lease(cli)
        assert queue.requeue(live_job.id).state == "queued"


# ---- what a resume measures (L4) ------------------------------------------------------------


def test_measured_cases_hold_failed_results_but_not_cut_off_ones(db: Path) -> None:
    with Store(db) as store:
        run_id = new_run(store)
        store.add_measurement(run_id, ok(make_case(1)))
        store.add_measurement(run_id, crashed(make_case(2)))
        store.add_measurement(run_id, cut_off(make_case(4)))
        assert store.measured_cases(run_id) == {make_case(1), make_case(2)}
        assert store.completed_cases(run_id) == {make_case(1)}


class _NoCase(CaseRunner):
    """A case runner that fails the test if asked to measure anything."""

    def run(self, job, observer, cancel=None):  # type: ignore[no-untyped-def,override]
        raise AssertionError(f"{job.case.label()} was measured again")


def test_a_resume_of_a_finished_run_does_not_measure_its_failed_case_again(db: Path) -> None:
    with Store(db) as store:
        run_id = new_run(store, batches=(1, 2))
        store.add_measurement(run_id, ok(make_case(1)))
        store.add_measurement(run_id, crashed(make_case(2)))
        store.set_run_status(run_id, "finished")
        with _NoCase(worker_command=SYNTHETIC) as runner:
            run = run_sweep(
                store.get_run(run_id).spec, store, resume=store.get_run(run_id), case_runner=runner
            )
        assert run.status == "finished"
        rows = store.measurements(run_id, all_attempts=True)
        assert [(m.case.batch_size, m.attempt, m.status.value) for m in rows] == [
            (1, 1, "ok"),
            (2, 1, "failed"),
        ]
        assert store.run_lease(run_id) is None


# ---- the sweep holds its run ------------------------------------------------------------------


class _Probe(SweepObserver):
    """At the first case: what another process sees of the run."""

    def __init__(self, db: Path, run_id: Callable[[], int], fail: bool = False) -> None:
        self.db = db
        self.run_id = run_id
        self.fail = fail
        self.refusal: str | None = None
        self.holder: int | None = None

    def on_case_start(self, index: int, total: int, case: Case) -> None:
        with Store(self.db) as other:
            run_id = self.run_id()
            found = other.run_lease(run_id)
            self.holder = found.holder.pid if found else None
            try:
                other.acquire_run_lease(run_id)
            except RunBusyError as exc:
                self.refusal = str(exc)
        if self.fail:
            raise RuntimeError("a bug in an observer")


def test_a_fresh_sweep_holds_its_run_while_it_measures_and_releases_it(db: Path) -> None:
    spec = RunSpec(models=("squeezenet1_1",), stopping=QUICK, name="fresh")
    with Store(db) as store:
        probe = _Probe(db, lambda: store.get_run("fresh").id)
        with CaseRunner(worker_command=SYNTHETIC) as runner:
            run = run_sweep(spec, store, observer=probe, case_runner=runner, validate=False)
        assert probe.holder == os.getpid()
        assert probe.refusal is not None and "is being measured by" in probe.refusal
        assert run.status == "finished" and store.run_lease(run.id) is None
        assert [m.status for m in store.measurements(run.id)] == [Status.OK]


@pytest.mark.parametrize("how", ["exception", "cancelled", "interrupted"])
def test_the_claim_is_released_however_the_sweep_ends(db: Path, how: str) -> None:
    with Store(db) as store:
        run_id = new_run(store, batches=(1,))
        run = store.get_run(run_id)
        cancel = threading.Event()
        observer: SweepObserver = SweepObserver()
        if how == "cancelled":
            cancel.set()
        elif how == "exception":
            observer = _Probe(db, lambda: run_id, fail=True)
        else:

            class _CtrlC(SweepObserver):
                def on_case_start(self, index: int, total: int, case: Case) -> None:
                    raise KeyboardInterrupt

            observer = _CtrlC()
        expected: type[BaseException] | None = {
            "exception": RuntimeError, "interrupted": KeyboardInterrupt,
        }.get(how)  # fmt: skip
        with CaseRunner(worker_command=SYNTHETIC) as runner:
            if expected is None:
                run_sweep(
                    run.spec,
                    store,
                    resume=run,
                    cancel=cancel,
                    observer=observer,
                    case_runner=runner,
                )
            else:
                with pytest.raises(expected):
                    run_sweep(
                        run.spec, store, resume=run, cancel=cancel, observer=observer,
                        case_runner=runner,
                    )  # fmt: skip
        assert store.run_lease(run_id) is None
        assert store.get_run(run_id).status == (
            "cancelled" if how == "cancelled" else "interrupted"
        )
        with Store(db) as other:  # another process may resume it now
            assert other.acquire_run_lease(run_id).taken_over is None


def test_a_resume_of_a_run_another_process_measures_is_refused_and_changes_nothing(
    db: Path, two: tuple[Store, Store]
) -> None:
    first, second = two
    run_id = new_run(first)
    first.add_measurement(run_id, ok(make_case(1)))
    held = first.acquire_run_lease(run_id)
    with _NoCase(worker_command=SYNTHETIC) as runner, pytest.raises(RunBusyError):
        run_sweep(
            first.get_run(run_id).spec, second, resume=second.get_run(run_id), case_runner=runner
        )
    assert second.get_run(run_id).status == "interrupted"
    assert len(second.measurements(run_id, all_attempts=True)) == 1
    assert second.run_lease(run_id).token == held.token  # type: ignore[union-attr]


def test_a_resume_takes_over_a_dead_holders_run_and_logs_it(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with Store(db) as store:
        run_id = new_run(store, batches=(1,))
        gone = LeaseHolder(host=LeaseHolder.this_process().host, pid=_exited_pid())
        with store.transaction() as conn:
            run_lease.claim(conn, run_id, "dres", run_lease.LEASE_STALE_S, holder=gone)
        with CaseRunner(worker_command=SYNTHETIC) as runner:
            run = run_sweep(
                store.get_run(run_id).spec, store, resume=store.get_run(run_id), case_runner=runner
            )
        assert run.status == "finished" and store.run_lease(run_id) is None
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(f"pid {gone.pid}" in w and "takes it over" in w for w in warned), warned


class _AtMeasure(SweepObserver):
    """Runs ``action`` once, when the first case starts its timed loop (in a worker)."""

    def __init__(self, action: Callable[[], None]) -> None:
        self.action: Callable[[], None] | None = action

    def on_phase(self, phase: str) -> None:
        if phase == "measure" and self.action is not None:
            action, self.action = self.action, None
            action()


def test_the_claim_is_renewed_while_a_case_measures(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_lease, "LEASE_HEARTBEAT_S", 0.05)
    with Store(db) as store:
        run_id = new_run(store, batches=(1,))
        renewed: list[bool] = []

        def wait_for_a_beat() -> None:
            # The case is under way and this thread waits: only the timer can renew.
            age_heartbeat(db, run_id, 120)
            deadline = time.monotonic() + 60
            with Store(db) as other:
                while time.monotonic() < deadline:
                    found = other.run_lease(run_id)
                    if found is not None and time.time() - found.heartbeat_at < 60:
                        renewed.append(True)
                        return
                    time.sleep(0.05)

        run = store.get_run(run_id)
        with CaseRunner(worker_command=SYNTHETIC) as runner:
            run_sweep(
                run.spec,
                store,
                resume=run,
                observer=_AtMeasure(wait_for_a_beat),
                case_runner=runner,
            )
        assert renewed == [True]
        assert store.run_lease(run_id) is None


def test_a_sweep_whose_run_was_taken_over_stops_and_stores_nothing_more(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_lease, "LEASE_HEARTBEAT_S", 3600.0)  # silent from the start
    with Store(db) as store, Store(db) as other:
        run_id = new_run(store, batches=(1, 2))
        taken: list[run_lease.RunLease] = []

        def take_over() -> None:  # as a process that found this one silent for 120 s would
            age_heartbeat(db, run_id, 120)
            taken.append(other.acquire_run_lease(run_id))

        run = store.get_run(run_id)
        with (
            CaseRunner(worker_command=SYNTHETIC) as runner,
            pytest.raises(run_lease.RunLeaseLostError, match="was taken over by pid"),
        ):
            run_sweep(
                run.spec, store, resume=run, observer=_AtMeasure(take_over), case_runner=runner
            )
        assert store.measurements(run_id, all_attempts=True) == []
        # The run and its status are the new holder's: this sweep neither released nor marked it.
        assert store.run_lease(run_id).token == taken[0].token  # type: ignore[union-attr]
        assert store.get_run(run_id).status == "running"


# ---- two real `backbench run --resume` at once -----------------------------------------------


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "core.cli", *args]


def _holder_pid(db: Path, run_id: int) -> int | None:
    conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=10)
    try:
        row = conn.execute("SELECT pid FROM run_leases WHERE run_id = ?", (run_id,)).fetchone()
    finally:
        conn.close()
    return None if row is None else int(row[0])


def _store_is_writable_now(db: Path) -> bool:
    """Whether no process holds the write lock (a stopped process must not hold it)."""
    conn = sqlite3.connect(db, timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


def test_two_concurrent_resumes_measure_each_case_once_and_the_second_is_refused(
    db: Path,
) -> None:
    """`backbench run -m squeezenet1_1 --batch 1,2,4 --name dres` was interrupted with
    batch 1 measured and batch 2 crashed; two resumes start at once. The first measures
    batch 4; the second is refused in one line (exit 2); every case has one row."""
    with Store(db) as store:
        run_id = new_run(store)
        store.add_measurement(run_id, ok(make_case(1)))
        store.add_measurement(run_id, crashed(make_case(2)))
    env = {**os.environ, "COLUMNS": "200"}
    first = subprocess.Popen(
        _cli("run", "--db", str(db), "--resume", "dres"), cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    stopped = False
    try:
        deadline = time.monotonic() + 120
        # The first resume holds the run; it is then held still (SIGSTOP, outside any
        # write to the store), so the second certainly starts while the first measures.
        while not stopped:
            assert time.monotonic() < deadline, "the first resume never claimed the run"
            assert first.poll() is None, first.communicate()
            if _holder_pid(db, run_id) == first.pid:
                first.send_signal(signal.SIGSTOP)
                stopped = _store_is_writable_now(db)
                if not stopped:
                    first.send_signal(signal.SIGCONT)
            time.sleep(0.05)
        second = subprocess.run(
            _cli("run", "--db", str(db), "--resume", "dres"), cwd=REPO, env=env,
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        if stopped:
            first.send_signal(signal.SIGCONT)
    out, err = first.communicate(timeout=180)
    assert first.returncode == 0, err
    assert second.returncode == 2, second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, second.stderr
    assert f"pid {first.pid}" in lines[0] and "Wait for it to finish" in lines[0]
    assert "Traceback" not in second.stderr and second.stdout == ""
    # Counts count cases: batch 2's crash is one case of three, and it was not redone.
    assert "1 of 3 cases did not complete" in err
    with Store(db) as store:
        rows = store.measurements(run_id, all_attempts=True)
        current = store.measurements(run_id)
        assert store.get_run(run_id).status == "finished"
        assert store.run_lease(run_id) is None
    assert sorted((m.case.batch_size, m.attempt, m.current) for m in rows) == [
        (1, 1, True), (2, 1, True), (4, 1, True),
    ]  # fmt: skip
    assert [m.status.value for m in sorted(current, key=lambda m: m.case.batch_size)] == [
        "ok", "failed", "ok",
    ]  # fmt: skip

    # Resuming the finished run again: one line, nothing measured, exit 0.
    again = subprocess.run(
        _cli("run", "--db", str(db), "--resume", "dres"), cwd=REPO, env=env,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    said = again.stdout.strip().splitlines()
    assert len(said) == 1 and again.stderr == ""
    assert "is finished" in said[0] and "nothing to resume" in said[0]
    assert "-m squeezenet1_1 --batch 2" in said[0]
    with Store(db) as store:
        assert len(store.measurements(run_id, all_attempts=True)) == 3
