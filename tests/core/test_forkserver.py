"""The fork server, conversions outside the measured process, interference and attempts,
all with real processes: a real zygote that imports torch or OpenVINO, a real busy loop
competing for the CPU, a real store.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from core.backends.base import ModelSource
from core.backends.convert import forbid_conversion, ir_cache_path
from core.errors import ModelFileError
from core.measure.forkserver import ForkServer, zygote_command
from core.measure.runner import run_sweep, time_summary
from core.measure.supervisor import CaseRunner, default_worker_command
from core.measure.worker import WorkerJob
from core.results import Backend, Case, FailureKind, Mode, Precision, RunSpec, Status, StoppingRule
from core.store import Store

MODEL = "squeezenet1_1"
FAST = StoppingRule(min_iters=5, target_ci=0.5, max_time_s=0.5, warmup_iters=1, warmup_time_s=0)
SYNTHETIC = [sys.executable, "-m", "tests.service.synthetic_worker"]


def _case(backend: Backend = Backend.TORCH, batch: int = 1, model: str = MODEL) -> Case:
    device = "CPU" if backend is Backend.OPENVINO else "cpu"
    return Case(model, backend, device, Precision.FP32, batch, Mode.LATENCY)


def test_the_zygote_is_single_threaded_with_no_cuda_context_when_it_forks() -> None:
    server = ForkServer(zygote_command(default_worker_command()) or [], "torch")
    try:
        server.start()
        info = server.info
        assert info["ready"] and info["unsafe"] is None
        assert "torch" in info["imported"] and "torchvision" in info["imported"]
        assert info["threads"] == 1
        assert info["cuda_initialized"] is False
        pid = int(info["pid"])
        assert len(os.listdir(f"/proc/{pid}/task")) == 1  # as seen from outside, too
        fifo, stderr = server.paths()
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        try:
            child = server.fork(WorkerJob(_case(), ModelSource(MODEL), FAST).to_dict(), fifo, stderr)
            assert server.last_fork_threads == 1, "the zygote had other threads as it forked"
            found = server.exit_of(child, wait_s=120)
            assert found is not None and os.WIFEXITED(found.status) and os.WEXITSTATUS(found.status) == 0
            assert found.ru_maxrss > 0
        finally:
            os.close(fd)
        # Serving a case started no thread in the zygote.
        assert len(os.listdir(f"/proc/{pid}/task")) == 1
    finally:
        server.close()
    assert not server.alive


def test_the_private_fifo_folder_lives_only_while_the_zygote_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    def folders() -> list[Path]:
        return sorted(tmp_path.glob("backbench-fork-*"))

    ForkServer(zygote_command(default_worker_command()) or [], "torch")  # never started
    assert folders() == []
    with CaseRunner() as runner:
        runner.prestart(Backend.TORCH)
        runner.prestart(Backend.TORCH)  # a second prestart reuses the server and its folder
        m = runner.run(WorkerJob(_case(), ModelSource(MODEL), FAST))
        assert m.status is Status.OK, m.error
        assert m.conditions["start"] == "fork-server"
        (folder,) = folders()
        assert folder.stat().st_mode & 0o777 == 0o700
        assert list(folder.iterdir()) == [], "a case's FIFO or stderr file was left behind"
    assert folders() == []


def test_folders_left_by_a_killed_supervisor_are_removed_by_the_next(tmp_path: Path) -> None:
    from core.measure.forkserver import DIR_PREFIX, remove_stale_dirs

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # a pid that is gone
    stale = tmp_path / f"{DIR_PREFIX}{child.pid}-abc"
    stale.mkdir(mode=0o700)
    (stale / "case-3.stderr").write_text("")
    live = tmp_path / f"{DIR_PREFIX}{os.getpid()}-def"
    live.mkdir(mode=0o700)
    other = tmp_path / "backbench-forkish"
    other.mkdir()
    link = tmp_path / f"{DIR_PREFIX}{child.pid}-lnk"
    link.symlink_to(other)
    assert remove_stale_dirs(tmp_path) == 1
    assert not stale.exists()
    assert live.is_dir() and other.is_dir() and link.is_symlink()


def test_a_thread_at_import_makes_the_runner_fall_back_to_exec(tmp_path: Path) -> None:
    # sitecustomize runs in every interpreter started with this PYTHONPATH, the zygote
    # included: a library that starts a thread at import looks like this.
    (tmp_path / "sitecustomize.py").write_text(
        "import threading, time\n"
        "threading.Thread(target=time.sleep, args=(3600,), daemon=True, name='lib-pool').start()\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    with CaseRunner(env=env) as runner:
        m = runner.run(WorkerJob(_case(), ModelSource(MODEL), FAST))
    assert m.status is Status.OK, m.error
    assert m.conditions["start"] == "exec"
    assert "threads are running" in m.conditions["start_fallback"]


def test_a_custom_worker_command_is_exec_d() -> None:
    assert zygote_command(SYNTHETIC) is None
    assert zygote_command([sys.executable, "-m", "core.measure.worker"]) == [
        sys.executable, "-m", "core.measure.zygote",
    ]  # fmt: skip


def test_openvino_model_memory_at_batch_1_is_the_model_not_the_converter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On an empty cache the conversion runs first, in a process of its own: batch 1
    (which used to convert in the measured process) reads like batch 2."""
    monkeypatch.setenv("BACKBENCH_CACHE_DIR", str(tmp_path / "cache"))
    spec = RunSpec(
        models=(MODEL, "shufflenet_v2_x0_5"), backend=Backend.OPENVINO, device="CPU",
        batch_sizes=(1, 2), stopping=FAST,
    )  # fmt: skip
    with Store(tmp_path / "r.db") as store:
        run = run_sweep(spec, store)
        b1, b2, other1, other2 = store.measurements(run.id)
        # Both models were converted up front, side by side; the conversion counts once,
        # in each model's first case.
        assert ir_cache_path(ModelSource("shufflenet_v2_x0_5")).is_file()
        assert other1.phase_s.get("convert", 0) > 0 and "convert" not in other2.phase_s
        assert other1.status is Status.OK and other2.status is Status.OK
        assert b1.status is Status.OK and b2.status is Status.OK, (b1.error, b2.error)
        assert ir_cache_path(ModelSource(MODEL)).is_file()
        assert b1.phase_s.get("convert", 0) > 0 and "convert" not in b2.phase_s
        assert b1.model_rss_mb and b2.model_rss_mb
        assert abs(b1.model_rss_mb - b2.model_rss_mb) <= 0.2 * b2.model_rss_mb, (b1.model_rss_mb, b2.model_rss_mb)
        assert b1.conditions["start"] == "fork-server"
        how = store.get_run(run.id).manifest["worker_start"]
        assert how["method"] == "fork-server" and how["fork_server"]["preload"] == "openvino"


def test_a_measured_process_never_converts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKBENCH_CACHE_DIR", str(tmp_path))
    from core.backends.convert import ensure_ir

    with forbid_conversion(), pytest.raises(ModelFileError, match="is missing"):
        ensure_ir(ModelSource(MODEL))
    assert not ir_cache_path(ModelSource(MODEL)).exists()


def _busy_loop() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def test_a_busy_process_marks_the_case_disturbed() -> None:
    """The synthetic worker sleeps between samples, so the busy loop gets a whole core:
    about 1.0 of interference with it, about 0 without."""
    rule = StoppingRule(min_iters=1, target_ci=0.5, max_time_s=1.5, warmup_iters=1, warmup_time_s=0)
    job = WorkerJob(_case(), ModelSource(MODEL), rule)
    env = {**os.environ, "BACKBENCH_SYNTHETIC_RATE": "200"}
    with CaseRunner(worker_command=SYNTHETIC, env=env) as runner:
        # The quietest of up to three readings: other work on the machine (another test
        # run) is what this measures, and it comes and goes.
        quiet = runner.run(job)
        for _ in range(2):
            if quiet.interference is not None and quiet.interference < 0.3:
                break
            again = runner.run(job)
            if again.interference is not None and (quiet.interference is None or again.interference < quiet.interference):
                quiet = again
        free = (os.cpu_count() or 1) - (quiet.interference or 0.0)
        if free < 1.0:
            pytest.skip(f"other work keeps {quiet.interference:.1f} cores busy: no free core to show a busy loop on")
        hog = _busy_loop()
        try:
            time.sleep(0.3)  # let it reach the CPU
            busy = runner.run(job)
        finally:
            hog.kill()
            hog.wait()
    assert quiet.status is Status.OK and busy.status is Status.OK, (quiet.error, busy.error)
    assert busy.disturbed is True
    assert busy.interference is not None and quiet.interference is not None
    assert busy.interference - quiet.interference >= 0.8, (quiet.interference, busy.interference)


def test_disturbed_cases_are_retried_and_every_attempt_is_kept(tmp_path: Path) -> None:
    # A busy loop for the whole sweep: every attempt is disturbed.
    spec = RunSpec(
        models=(MODEL,), backend=Backend.TORCH, device="cpu", batch_sizes=(1, 2),
        stopping=StoppingRule(min_iters=1, target_ci=0.5, max_time_s=0.5, warmup_iters=1, warmup_time_s=0),
        retry_disturbed=2,
    )  # fmt: skip
    hog = _busy_loop()
    try:
        with Store(tmp_path / "r.db") as store, CaseRunner(worker_command=SYNTHETIC) as runner:
            run = run_sweep(spec, store, case_runner=runner)
            current = store.measurements(run.id)
            every = store.measurements(run.id, all_attempts=True)
    finally:
        hog.kill()
        hog.wait()
    assert len(current) == 2, "a case counts once"
    assert len(every) == 6, "three attempts per case: the first and two retries"
    assert sorted(m.attempt for m in every if m.case.batch_size == 1) == [1, 2, 3]
    assert all(m.attempt == 3 and m.current for m in current)
    assert all(m.disturbed for m in every)
    assert time_summary(current, 10.0).cases == 2


def test_an_interrupted_case_is_an_attempt_and_the_resume_is_the_next(tmp_path: Path) -> None:
    """Ctrl-C during a case stores it as an interrupted attempt; the resume measures it
    again as attempt 2, which is the one that counts."""
    db = tmp_path / "r.db"
    script = tmp_path / "sweep.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, signal, sys, threading
            from core.measure.runner import SweepObserver, run_sweep
            from core.measure.supervisor import CaseRunner
            from core.results import *
            from core.store import Store

            class Interrupt(SweepObserver):
                def on_phase(self, phase):
                    if phase == "measure":
                        os.kill(os.getpid(), signal.SIGINT)

            spec = RunSpec(models=({MODEL!r},), backend=Backend.TORCH, device="cpu",
                           stopping=StoppingRule(min_iters=1, max_time_s=5))
            try:
                with CaseRunner(worker_command={SYNTHETIC!r}) as runner:
                    run_sweep(spec, Store({str(db)!r}), observer=Interrupt(), case_runner=runner)
            except KeyboardInterrupt:
                sys.exit(130)
            """
        )
    )
    # SIGINT at its default disposition even when pytest runs as a background job.
    done = subprocess.run(
        [sys.executable, str(script)], cwd=os.getcwd(), timeout=120,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    assert done.returncode == 130
    with Store(db) as store:
        run = store.latest_run()
        assert run is not None and run.status == "interrupted"
        (cut,) = store.measurements(run.id, all_attempts=True)
        assert cut.failure is FailureKind.INTERRUPTED and cut.attempt == 1
        assert store.completed_cases(run.id) == set()
        with CaseRunner(worker_command=SYNTHETIC) as runner:
            run_sweep(run.spec, store, resume=run, case_runner=runner)
        every = store.measurements(run.id, all_attempts=True)
        (now,) = store.measurements(run.id)
    assert [m.attempt for m in every] == [1, 2]
    assert now.attempt == 2 and now.status is Status.OK and now.current


def test_run_options_reach_the_runner(tmp_path: Path) -> None:
    spec = RunSpec(models=(MODEL,), stopping=FAST, worker_start="exec", disturbed_threshold=5.0)
    with Store(tmp_path / "r.db") as store:
        run = run_sweep(spec, store)
        (m,) = store.measurements(run.id)
        how = store.get_run(run.id).manifest["worker_start"]
    assert m.status is Status.OK, m.error
    assert m.conditions["start"] == "exec" and how == {"method": "exec", "requested": "exec"}
    assert m.disturbed is False  # nothing on a 2-core machine reaches 5 cores of other work


def test_an_unknown_start_method_is_refused() -> None:
    from core.errors import UsageError

    with pytest.raises(UsageError, match="Unknown worker start"):
        RunSpec(models=(MODEL,), worker_start="spawn")


def test_conversions_side_by_side_are_bounded_by_cores_and_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    import psutil

    from core.measure.runner import conversion_workers

    available = {"bytes": 64 << 30}
    monkeypatch.setattr(psutil, "virtual_memory", lambda: types.SimpleNamespace(available=available["bytes"]))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert conversion_workers(33) == (2, 1)  # one thread each, side by side
    assert conversion_workers(1) == (1, 2)  # alone, it has both cores
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert conversion_workers(33) == (4, 4)
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert conversion_workers(33) == (1, 1)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    available["bytes"] = 7 << 30  # two large conversions' worth
    assert conversion_workers(33) == (2, 8)
    available["bytes"] = 1 << 30
    assert conversion_workers(33) == (1, 16)


def test_side_by_side_conversions_get_their_share_of_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A conversion job's thread count reaches the converter's torch."""
    import torch

    from core.measure.worker import TASK_CONVERT, convert_for

    monkeypatch.setenv("BACKBENCH_CACHE_DIR", str(tmp_path))
    before = torch.get_num_threads()
    try:
        job = WorkerJob(_case(Backend.OPENVINO), ModelSource(MODEL), FAST, task=TASK_CONVERT, threads=1)
        assert WorkerJob.from_dict(job.to_dict()) == job
        result = convert_for(job)
        assert result["converted"] is True
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_a_failed_conversion_fails_its_model_s_cases_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Weights that do not fit the model (a real state-dict file, so it passes the
    up-front check): the conversion fails in the converter's process, once, and every
    case of that model says why; the measured workers never start."""
    import torch

    monkeypatch.setenv("BACKBENCH_CACHE_DIR", str(tmp_path / "cache"))
    garbage = tmp_path / "weights.pth"
    torch.save({"not_a_layer.weight": torch.zeros(3)}, garbage)
    spec = RunSpec(
        models=(MODEL,), backend=Backend.OPENVINO, device="CPU", batch_sizes=(1, 2),
        stopping=FAST, weights={MODEL: str(garbage)},
    )  # fmt: skip
    with Store(tmp_path / "r.db") as store:
        run = run_sweep(spec, store)
        cases = store.measurements(run.id)
    assert [m.case.batch_size for m in cases] == [1, 2]
    for m in cases:
        assert m.status is Status.FAILED
        assert (m.error or "").startswith("converting the model for openvino failed"), m.error
        assert m.peak_rss_mb is None  # the converter's memory is not the model's
