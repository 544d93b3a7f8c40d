"""The parent side of a worker: spawn, stream, watch, classify.

One worker process per case, in a session of its own, forked from a fork server that
imported the frameworks once (core.measure.forkserver, core.measure.zygote), or started
by fork+exec (subprocess, never multiprocessing's fork) where forking is unsafe or
unavailable. Either way the worker sets PDEATHSIG, so its parent's death takes it along.
Frames arrive on a pipe (core.measure.pipe). A watchdog enforces a heartbeat and a time
limit per phase (load, compile and measure are timed apart: an NCS2 compile is slow) and
ends a stuck worker with SIGTERM, then SIGKILL, to its whole process group. The exit is
classified as ok, failed (error, crashed with its signal, OOM, timeout) or cancelled.
Peak RSS comes from ``wait4``'s ``ru_maxrss`` (the fork server's, for a forked worker);
the worker reports its RSS after the imports (the baseline) and the phase stamps, and
the interference window (core.measure.interference) covers warm-up and the timed loop.

The CLI's runner and the agent both use ``CaseRunner``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from core.backends.base import (
    PHASE_COMPILE,
    PHASE_CONVERT,
    PHASE_LOAD,
    PHASE_MEASURE,
    PHASE_PROFILE,
    PHASE_WARMUP,
)
from core.measure.cgroup import MemoryCgroup
from core.measure.forkserver import ForkServer, ForkServerError, zygote_command
from core.measure.interference import CLOCK_TICKS, InterferenceWindow
from core.measure.pipe import (
    KIND_ERROR,
    KIND_HEARTBEAT,
    KIND_PHASE,
    KIND_RESULT,
    KIND_SAMPLES,
    FrameDecoder,
)
from core.measure.preload import preload_key
from core.measure.runtimes import RUNTIME_CWD, WorkerRuntime
from core.measure.worker import TASK_CHECK_CONVERTED, TASK_CONVERT, TASK_MEASURE, WorkerJob
from core.results import (
    DEFAULT_DISTURBED_THRESHOLD,
    WORKER_START_EXEC,
    WORKER_START_FORK,
    AccuracyResult,
    Backend,
    Case,
    FailureKind,
    LatencyStats,
    LayerProfile,
    Measurement,
    Mode,
    Status,
)

log = logging.getLogger(__name__)

TICK_S = 0.1  # watchdog resolution and RSS sampling period (10 Hz)
# Per-case memory cgroups are named backbench-<pid>-<n>, n unique in this process (an
# agent makes a CaseRunner per job), so a name is never reused.
_CGROUP_SEQ = itertools.count(1)


@dataclass(frozen=True, slots=True)
class PhaseLimits:
    """Watchdog limits in seconds. ``measure_s=None`` derives it from the stopping rule."""

    load_s: float = 300.0
    compile_s: float = 900.0
    measure_s: float | None = None
    heartbeat_s: float = 30.0
    term_grace_s: float = 5.0
    measure_slack_s: float = 120.0  # beyond 3 x max_time, before the pace is known

    def for_phase(self, phase: str, job: WorkerJob) -> float:
        if phase in (PHASE_COMPILE, PHASE_CONVERT, PHASE_PROFILE):
            return self.compile_s  # a profile compiles the model again, with counters
        if phase in (PHASE_WARMUP, PHASE_MEASURE):
            if self.measure_s is not None:
                return self.measure_s
            if job.case.mode is Mode.ACCURACY:
                # Until its first batch; then each batch moves the deadline (accuracy_allowance).
                return ACCURACY_FIRST_BATCH_S
            # Warm-up (capped at a quarter of max_time), the timed loop, and slack for a
            # slow model that needs longer than max_time to reach min_iters; the timed
            # loop gets more once its first samples show the pace (progress_allowance).
            return 3.0 * job.rule.max_time_s + self.measure_slack_s
        return self.load_s

    @staticmethod
    def accuracy_allowance(slowest_ns: int) -> float:
        """Seconds an accuracy case may go without finishing a batch: a dataset takes as
        long as it takes, but a batch twenty times slower than the slowest so far is hung."""
        return max(ACCURACY_FIRST_BATCH_S, 20 * slowest_ns / 1e9)

    def progress_allowance(self, job: WorkerJob, slowest_ns: int) -> float:
        """Seconds the timed loop may take at the pace of its slowest iteration so far:
        the minimum iterations half as slow again, the time limit, and half the slack."""
        return job.rule.min_iters * slowest_ns / 1e9 * 1.5 + job.rule.max_time_s + self.measure_slack_s / 2


# How long an accuracy case may take to finish its first batch (a slow device compiles
# lazily, and a big batch of a big model on an NCS2 takes a while).
ACCURACY_FIRST_BATCH_S = 300.0


class CaseObserver:
    """Live hooks for one case; the defaults do nothing. Called on the supervising thread."""

    def on_phase(self, phase: str) -> None:
        return None

    def on_samples(self, samples: np.ndarray) -> None:
        """``samples`` is an (k, 2) int64 array of (timestamp_ns, latency_ns)."""
        return None

    def on_memory(self, rss_mb: float | None, device_memory: dict[str, float]) -> None:
        return None

    def on_progress(self, done: int, total: int) -> None:
        """An accuracy case: ``done`` of ``total`` images evaluated (or skipped)."""
        return None


def default_worker_command() -> list[str]:
    """A frozen build re-execs itself with the ``worker`` subcommand."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "worker"]
    return [sys.executable, "-m", "core.measure.worker"]


def _oom_kills() -> int | None:
    """The kernel's OOM-kill counter, to tell its OOM killer from a plain SIGKILL:
    /proc/vmstat's ``oom_kill`` (every kill, by a cgroup's limit or the system's, on any
    cgroup version; kernel 4.13+), else cgroup v2's root ``memory.events``."""
    for path, sep in ((Path("/proc/vmstat"), " "), (Path("/sys/fs/cgroup/memory.events"), " ")):
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            name, _, value = line.partition(sep)
            if name == "oom_kill":
                return int(value)
    return None


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


_SIGNAL_MEANING: dict[int, str] = {
    signal.SIGSEGV: "segmentation fault",
    signal.SIGBUS: "bus error",
    signal.SIGABRT: "aborted",
    signal.SIGFPE: "floating-point exception",
    signal.SIGILL: "illegal instruction",
}


@dataclass
class _Outcome:
    samples: list[np.ndarray] = field(default_factory=list)
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    phase: str = PHASE_LOAD
    killed_for: tuple[FailureKind, str] | None = None
    cancelled: bool = False
    device_memory: dict[str, float] = field(default_factory=dict)
    # (phase, CLOCK_MONOTONIC ns) as the worker entered each phase; the result's stamp ends it.
    timeline: list[tuple[str, int]] = field(default_factory=list)
    worker_info: dict[str, Any] = field(default_factory=dict)  # baseline RSS, memory limit
    conditions: dict[str, Any] = field(default_factory=dict)
    exit_status: int | None = None  # the wait status, once the worker ended
    precise_oom: bool = False  # the case has a memory cgroup, which counts its OOM kills


class _Child:
    """A worker process, however it was started: fork+exec, or forked by the fork server."""

    pid: int
    start: str

    def poll(self, wait_s: float = 0.0) -> tuple[int, Any] | None:
        """(wait status, rusage with ru_maxrss) once it exited, else None."""
        raise NotImplementedError


class _ExecChild(_Child):
    start = WORKER_START_EXEC

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.pid = proc.pid

    def poll(self, wait_s: float = 0.0) -> tuple[int, Any] | None:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                pid, status, rusage = os.wait4(self.pid, os.WNOHANG)
            except ChildProcessError:
                return (signal.SIGKILL, None)  # someone else reaped it: no rusage to give
            if pid:
                # Tell Popen the child is reaped, so it never waits on a recycled pid.
                self.proc.returncode = os.waitstatus_to_exitcode(status)
                return status, rusage
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.02)


class _ForkedChild(_Child):
    start = WORKER_START_FORK

    def __init__(self, server: ForkServer, pid: int) -> None:
        self.server = server
        self.pid = pid

    def poll(self, wait_s: float = 0.0) -> tuple[int, Any] | None:
        found = self.server.exit_of(self.pid, wait_s)
        return None if found is None else (found.status, found)


@dataclass
class _Spawned:
    child: _Child
    read_fd: int
    stderr: Any  # a binary file open for reading
    t_spawn_ns: int
    stderr_path: Path | None = None  # a forked child's, which the child opens by name

    def close(self) -> None:
        os.close(self.read_fd)
        self.stderr.close()
        if self.stderr_path is not None:
            with contextlib.suppress(OSError):
                self.stderr_path.unlink()


@dataclass(frozen=True, slots=True)
class Conversion:
    """A model converted (or found in the cache) for a case's backend, before the case."""

    seconds: float
    converted: bool
    path: str | None


class CaseRunner:
    """Runs cases in worker processes, one at a time per instance.

    ``start="fork-server"`` forks each worker from a fork server that imported the
    frameworks once (core.measure.zygote), falling back to fork+exec where that is
    unsafe or unavailable; ``"exec"`` always starts a fresh interpreter. Either way a
    case has a process of its own. ``close()`` (or ``with``) stops the fork servers.

    With a ``runtime`` (core.measure.runtimes), workers and their fork server run on
    that interpreter, with its PYTHONPATH, and each case records the runtime's name;
    conversions (torch to ONNX, which that interpreter may lack) run on this one, in
    the format the runtime's own check asked for.
    """

    def __init__(
        self,
        worker_command: list[str] | None = None,
        limits: PhaseLimits | None = None,
        max_mem_mb: int | None = None,
        env: dict[str, str] | None = None,
        start: str = WORKER_START_FORK,
        disturbed_threshold: float = DEFAULT_DISTURBED_THRESHOLD,
        runtime: WorkerRuntime | None = None,
    ) -> None:
        self.worker_command = list(worker_command or default_worker_command())
        self.limits = limits or PhaseLimits()
        self.max_mem_mb = max_mem_mb
        self.env = env
        # Conversions run here unless a runtime moves the workers elsewhere.
        self.convert_command = list(self.worker_command)
        self.convert_env = env
        self.runtime: WorkerRuntime | None = None
        if runtime is not None:
            self.use_runtime(runtime)
        self.start = start
        self.disturbed_threshold = disturbed_threshold
        # --max-mem-mb by a memory cgroup per case where one can be made (else RLIMIT_AS).
        self.mem_cgroups = True
        self._servers: dict[str, ForkServer] = {}
        self._servers_lock = threading.RLock()  # conversions start servers from threads
        # Why a case's worker was exec'd rather than forked, by preload set.
        self.fallbacks: dict[str, str] = {}

    def use_runtime(self, runtime: WorkerRuntime) -> None:
        """Run the workers (and their fork server) on ``runtime``; before any case."""
        self.runtime = runtime
        self.worker_command = runtime.worker_command()
        self.env = runtime.env(self.convert_env)

    def _command_for(self, key: str) -> tuple[list[str], dict[str, str] | None]:
        """The worker command and environment of a preload set's processes."""
        if key == preload_key(None, convert=True):
            return self.convert_command, self.convert_env
        return self.worker_command, self.env

    def _cwd_for(self, key: str) -> str:
        """The working folder of a preload set's processes: a runtime's start in a neutral
        one (``python -m`` puts the working folder ahead of the runtime's PYTHONPATH, so a
        core/ there would shadow its backbench; model paths are absolute by then)."""
        if self.runtime is not None and key != preload_key(None, convert=True):
            return RUNTIME_CWD
        return os.getcwd()

    # -- fork servers --------------------------------------------------------------------

    def start_method(self, backend: Backend | str, convert: bool = False) -> tuple[str, str | None]:
        """How a case of ``backend`` will start (starting its fork server now if needed):
        (method, why it falls back to exec or None)."""
        server = self._server(preload_key(backend, convert))
        if server is None:
            return WORKER_START_EXEC, self.fallbacks.get(preload_key(backend, convert))
        return WORKER_START_FORK, None

    def prestart(self, backend: Backend | str) -> None:
        """Launch the backend's fork server without waiting for it, so its imports overlap
        with the caller's own work (validating the spec); the first case waits for it."""
        with self._servers_lock:
            self._prestart(backend)

    def _prestart(self, backend: Backend | str) -> None:
        key = preload_key(backend)
        worker_command, env = self._command_for(key)
        command = zygote_command(worker_command)
        if self.start != WORKER_START_FORK or key in self.fallbacks or command is None:
            return
        if not hasattr(os, "fork") or not hasattr(os, "mkfifo"):
            return
        server = self._servers.get(key)
        if server is None:
            server = self._servers[key] = ForkServer(command, key, env, self._cwd_for(key))
        try:
            server.launch()
        except ForkServerError as exc:
            self.fallbacks[key] = str(exc)

    def _server(self, key: str) -> ForkServer | None:
        with self._servers_lock:
            return self._server_unlocked(key)

    def _server_unlocked(self, key: str) -> ForkServer | None:
        if self.start != WORKER_START_FORK:
            return None
        if key in self.fallbacks:
            return None
        worker_command, env = self._command_for(key)
        command = zygote_command(worker_command)
        if command is None:
            self.fallbacks[key] = "the worker command is not backbench's worker"
            return None
        if not hasattr(os, "fork") or not hasattr(os, "mkfifo"):
            self.fallbacks[key] = "this platform has no fork"
            return None
        server = self._servers.get(key)
        if server is None:
            server = self._servers[key] = ForkServer(command, key, env, self._cwd_for(key))
        try:
            server.start()
        except ForkServerError as exc:
            self.fallbacks[key] = str(exc)
            return None
        return server

    def server_info(self, backend: Backend | str) -> dict[str, Any]:
        """What the fork server of ``backend`` reported when it started (import time,
        RSS, modules), or {} when there is none."""
        server = self._servers.get(preload_key(backend))
        if server is None or not server.alive:
            return {}
        keep = ("pid", "preload", "imported", "missing", "import_s", "rss_mb", "start_s")
        return {k: server.info[k] for k in keep if k in server.info}

    def server_pids(self) -> list[int]:
        return [int(s.info["pid"]) for s in self._servers.values() if s.alive and s.info.get("pid")]

    def close(self) -> None:
        for server in self._servers.values():
            server.close()
        self._servers.clear()

    def __enter__(self) -> CaseRunner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- one case --------------------------------------------------------------------------

    def run(
        self,
        job: WorkerJob,
        observer: CaseObserver | None = None,
        cancel: threading.Event | None = None,
    ) -> Measurement:
        observer = observer or CaseObserver()
        if self.max_mem_mb and not job.max_mem_mb:
            job = replace(job, max_mem_mb=self.max_mem_mb)
        outcome = _Outcome()
        group = self._case_cgroup(job, outcome)
        # The case's own cgroup counts its OOM kills exactly; the system-wide counter is
        # only for cases without one.
        outcome.precise_oom = group is not None
        if group is not None:
            job = replace(job, mem_cgroup=f"{group.version}:{group.path}")
        try:
            m = self._execute(job, observer, cancel, outcome, InterferenceWindow(job.case.device))
        finally:
            kills = group.oom_kills() if group is not None else 0
            if group is not None and not group.remove():
                log.warning("could not remove the memory cgroup %s", group.path)
        if kills and m.status is Status.FAILED and m.failure in (FailureKind.CRASHED, FailureKind.OOM):
            m = replace(m, failure=FailureKind.OOM, error=(
                f"out of memory: the model needed more than --max-mem-mb {job.max_mem_mb} MB "
                "above the framework's imports, and the kernel stopped it (memory cgroup)"
            ))  # fmt: skip
        return m

    def _case_cgroup(self, job: WorkerJob, outcome: _Outcome) -> MemoryCgroup | None:
        """A memory cgroup limited to the case's --max-mem-mb, or None (no limit asked,
        or none can be made here: then the worker uses RLIMIT_AS, and the case says why)."""
        if not job.max_mem_mb or not self.mem_cgroups or job.task != TASK_MEASURE:
            return None
        made = MemoryCgroup.create(f"backbench-{os.getpid()}-{next(_CGROUP_SEQ)}", job.max_mem_mb)
        if isinstance(made, str):
            outcome.conditions["mem_cgroup"] = f"none: {made}"
            return None
        return made

    def _execute(
        self,
        job: WorkerJob,
        observer: CaseObserver,
        cancel: threading.Event | None,
        outcome: _Outcome,
        window: InterferenceWindow | None,
    ) -> Measurement:
        """Start a worker for ``job``, supervise it to its end, and classify that end.
        ``outcome`` keeps what the worker sent (a conversion job reads its result)."""
        started_at = time.time()
        t_start = time.monotonic()
        oom_before = _oom_kills()
        spawned = self._spawn(job)
        if isinstance(spawned, str):
            return Measurement.failed(job.case, FailureKind.ERROR, spawned, started_at=started_at)
        try:
            try:
                status, rusage = self._supervise(spawned, job, observer, cancel, outcome, window)
            except BaseException:
                # KeyboardInterrupt or a bug here: never leave an orphaned worker behind.
                self._kill_group(spawned.child.pid)
                spawned.child.poll(wait_s=self.limits.term_grace_s)
                raise
            stderr_tail = self._stderr_tail(spawned.stderr)
        finally:
            spawned.close()
        outcome.exit_status = status
        outcome.conditions["start"] = spawned.child.start
        if self.runtime is not None:
            outcome.conditions["runtime"] = self.runtime.name
        if spawned.child.start == WORKER_START_EXEC and self.start == WORKER_START_FORK:
            key = preload_key(job.case.backend, job.task == TASK_CONVERT)  # a check: the backend's own
            if key in self.fallbacks:
                outcome.conditions["start_fallback"] = self.fallbacks[key]
        return self._classify(
            job, outcome, status, rusage, stderr_tail, oom_before, started_at,
            time.monotonic() - t_start, spawned.t_spawn_ns,
        )  # fmt: skip

    def convert(
        self, job: WorkerJob, cancel: threading.Event | None = None
    ) -> Conversion | Measurement:
        """Convert the case's model for its backend in a process of its own (a cache hit
        costs a fork). Returns the Conversion, or the case's failed Measurement."""
        t_start = time.monotonic()
        check = self._conversion_task(replace(job, task=TASK_CHECK_CONVERTED, fault=None), cancel)
        if isinstance(check, Measurement):
            return check
        if check.get("cached"):
            return Conversion(seconds=time.monotonic() - t_start, converted=False, path=check.get("path"))
        # The format the measuring interpreter reads (ONNX at opset 13 for OpenVINO
        # 2022.3), which the converter may not choose by itself on another interpreter.
        fmt = check.get("format")
        convert_job = replace(job, task=TASK_CONVERT, fault=None, convert_format=str(fmt) if fmt else None)
        done = self._conversion_task(convert_job, cancel)
        if isinstance(done, Measurement):
            return done
        return Conversion(
            seconds=time.monotonic() - t_start, converted=bool(done.get("converted")), path=done.get("path")
        )

    def _conversion_task(
        self, convert_job: WorkerJob, cancel: threading.Event | None
    ) -> dict[str, Any] | Measurement:
        """Run a check or conversion job; its result, or the case's failed Measurement."""
        job = convert_job
        outcome = _Outcome(phase=PHASE_CONVERT)
        failed = self._execute(convert_job, CaseObserver(), cancel, outcome, None)
        result = outcome.result
        status = outcome.exit_status
        clean_exit = status is not None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        if result is not None and outcome.error is None and outcome.killed_for is None and clean_exit:
            return result
        if failed.status is Status.CANCELLED:
            return failed
        return replace(
            failed,
            status=Status.FAILED,
            error=f"converting the model for {job.case.backend.value} failed: {failed.error}",
            peak_rss_mb=None,  # the converter's, not the model's
            stats=None,
        )

    def _spawn(self, job: WorkerJob) -> _Spawned | str:
        """Start the worker; a message for the case when it cannot start at all."""
        key = preload_key(job.case.backend, job.task == TASK_CONVERT)  # a check: the backend's own
        server = self._server(key)
        if server is not None:
            try:
                return self._fork(server, job)
            except ForkServerError as exc:
                self.fallbacks[key] = str(exc)
                log.warning("case %s: fork server failed (%s); exec'ing the worker", job.case.label(), exc)
        return self._exec(job)

    def _fork(self, server: ForkServer, job: WorkerJob) -> _Spawned:
        fifo, stderr_path = server.paths()
        read_fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        try:
            t_spawn = time.perf_counter_ns()
            pid = server.fork(job.to_dict(), fifo, stderr_path)
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            with contextlib.suppress(OSError):
                fifo.unlink()
        stderr = open(stderr_path, "rb")  # noqa: SIM115 - closed by run()
        return _Spawned(_ForkedChild(server, pid), read_fd, stderr, t_spawn, stderr_path)

    def _exec(self, job: WorkerJob) -> _Spawned | str:
        key = preload_key(job.case.backend, job.task == TASK_CONVERT)
        worker_command, env = self._command_for(key)
        read_fd, write_fd = os.pipe()
        stderr_file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by run()
        t_spawn = time.perf_counter_ns()
        try:
            proc = subprocess.Popen(
                [*worker_command, "--fd", str(write_fd), "--parent-pid", str(os.getpid())],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=stderr_file,
                pass_fds=(write_fd,),
                start_new_session=True,
                env=env,
                cwd=self._cwd_for(key),
            )
        except OSError as exc:
            os.close(read_fd)
            stderr_file.close()
            return f"could not start the worker {worker_command[0]!r}: {exc.strerror or exc}"
        finally:
            os.close(write_fd)
        try:
            if proc.stdin is not None:
                proc.stdin.write(json.dumps(job.to_dict()).encode())
                proc.stdin.close()
        except BrokenPipeError:
            pass  # the worker died at once; its exit status tells why
        return _Spawned(_ExecChild(proc), read_fd, stderr_file, t_spawn)

    # -- supervision -----------------------------------------------------------------

    def _own_pids(self, child: _Child) -> list[int]:
        return [child.pid, *self.server_pids()]

    def _supervise(
        self,
        spawned: _Spawned,
        job: WorkerJob,
        observer: CaseObserver,
        cancel: threading.Event | None,
        outcome: _Outcome,
        window: InterferenceWindow | None,
    ) -> tuple[int, Any]:
        child, read_fd = spawned.child, spawned.read_fd
        decoder = FrameDecoder()
        now = time.monotonic()
        last_beat = now
        phase_deadline = now + self.limits.for_phase(outcome.phase, job)
        phase_started = now
        slowest_ns = 0  # the slowest timed iteration so far
        next_rss = now
        reaped: tuple[int, Any] | None = None
        eof_deadline: float | None = None
        try:
            import psutil

            ps_proc: Any = psutil.Process(child.pid)
        except Exception:  # psutil missing or the worker already gone: no live RSS then
            ps_proc = None

        while True:
            ready, _, _ = select.select([read_fd], [], [], TICK_S)
            if ready:
                chunk = os.read(read_fd, 1 << 16)
                if not chunk:
                    break  # EOF: the worker exited (or closed its end)
                last_beat = time.monotonic()
                for kind, payload in decoder.feed(chunk):
                    if kind == KIND_SAMPLES:
                        outcome.samples.append(payload)
                        observer.on_samples(payload)
                        if len(payload) and self.limits.measure_s is None and job.case.mode is Mode.ACCURACY:
                            slowest_ns = max(slowest_ns, int(payload[:, 1].max()))
                            phase_deadline = time.monotonic() + self.limits.accuracy_allowance(slowest_ns)
                        elif len(payload) and self.limits.measure_s is None:
                            # A slow model is making progress: give it time for its
                            # minimum iterations at the pace it shows.
                            slowest_ns = max(slowest_ns, int(payload[:, 1].max()))
                            phase_deadline = max(
                                phase_deadline, phase_started + self.limits.progress_allowance(job, slowest_ns)
                            )
                    elif kind == KIND_PHASE:
                        outcome.phase = str(payload.get("phase", outcome.phase))
                        outcome.timeline.append((outcome.phase, int(payload.get("t_ns") or time.perf_counter_ns())))
                        for key in ("baseline_rss_mb", "mem_limit"):
                            if key in payload:
                                outcome.worker_info[key] = payload[key]
                        if outcome.phase == PHASE_WARMUP and window is not None:
                            window.open(self._own_pids(child))
                        elif outcome.phase == PHASE_PROFILE and window is not None and window.is_open:
                            # The window covers warm-up and the timed loop, not the profiler.
                            outcome.conditions.update(window.close(self._own_pids(child)))
                        phase_started = last_beat
                        phase_deadline = last_beat + self.limits.for_phase(outcome.phase, job)
                        observer.on_phase(outcome.phase)
                    elif kind == KIND_HEARTBEAT:
                        if payload.get("device_memory"):
                            outcome.device_memory = dict(payload["device_memory"])
                        progress = payload.get("progress")
                        if isinstance(progress, list) and len(progress) == 2:
                            observer.on_progress(int(progress[0]), int(progress[1]))
                    elif kind == KIND_RESULT:
                        if window is not None and window.is_open:
                            # The worker may be gone (reaped by its fork server) by the
                            # time this frame is read: its own CPU figure stands in then.
                            reported = payload.get("cpu_s")
                            own_ticks = {child.pid: round(float(reported) * CLOCK_TICKS)} if reported else {}
                            outcome.conditions.update(window.close(self._own_pids(child), own_ticks))
                        outcome.result = payload
                    elif kind == KIND_ERROR:
                        outcome.error = payload
            now = time.monotonic()
            if ps_proc is not None and now >= next_rss:
                next_rss = now + TICK_S
                try:
                    rss_mb = ps_proc.memory_info().rss / (1024 * 1024)
                except Exception:  # the worker is exiting
                    rss_mb = None
                observer.on_memory(rss_mb, outcome.device_memory)
            if reaped is None and outcome.killed_for is None:
                if cancel is not None and cancel.is_set():
                    outcome.cancelled = True
                    outcome.killed_for = (FailureKind.ERROR, "cancelled")
                elif now - last_beat > self.limits.heartbeat_s:
                    outcome.killed_for = (
                        FailureKind.TIMEOUT,
                        f"no heartbeat from the worker for {self.limits.heartbeat_s:g} s "
                        f"in the {outcome.phase} phase (hung)",
                    )
                elif now > phase_deadline:
                    limit = phase_deadline - phase_started
                    hint = (
                        " (raise it with --measure-timeout SECONDS)"
                        if outcome.phase in (PHASE_WARMUP, PHASE_MEASURE) else ""
                    )  # fmt: skip
                    outcome.killed_for = (
                        FailureKind.TIMEOUT,
                        f"the {outcome.phase} phase exceeded its limit of {round(limit, 1):g} s{hint}",
                    )
                if outcome.killed_for is not None:
                    log.warning("stopping worker %d: %s", child.pid, outcome.killed_for[1])
                    reaped = self._terminate(child)
                    eof_deadline = time.monotonic() + 1.0
            if reaped is None:
                reaped = child.poll()
                if reaped is not None and eof_deadline is None:
                    # A grandchild may still hold the pipe open: read what is left, briefly.
                    eof_deadline = time.monotonic() + 1.0
            if eof_deadline is not None and time.monotonic() > eof_deadline:
                break
        if reaped is None:
            # EOF: the worker exited, or closed the pipe and is still running; give it the
            # grace period.
            reaped = child.poll(wait_s=self.limits.term_grace_s)
            if reaped is None:
                reaped = self._terminate(child)
        if decoder.pending:
            log.warning("worker %d left %d bytes of a partial frame", child.pid, decoder.pending)
        return reaped

    @staticmethod
    def _kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
        # The group may be gone already: that is the goal, not an error.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)

    def _terminate(self, child: _Child) -> tuple[int, Any]:
        """SIGTERM to the worker's process group, SIGKILL after the grace period."""
        self._kill_group(child.pid, signal.SIGTERM)
        reaped = child.poll(wait_s=self.limits.term_grace_s)
        if reaped is not None:
            self._kill_group(child.pid)  # any grandchildren left in the group
            return reaped
        self._kill_group(child.pid)
        reaped = child.poll(wait_s=30.0)
        if reaped is None:  # the kernel did not deliver SIGKILL in 30 s: give up waiting
            return (signal.SIGKILL, None)
        return reaped

    @staticmethod
    def _stderr_tail(stderr_file: Any, limit: int = 4096) -> str:
        try:
            stderr_file.seek(0, os.SEEK_END)
            size = stderr_file.tell()
            stderr_file.seek(max(0, size - limit))
            return stderr_file.read().decode(errors="replace").strip()
        except OSError:
            return ""

    # -- classification ----------------------------------------------------------------

    def _classify(self, job: WorkerJob, outcome: _Outcome, *args: Any) -> Measurement:
        """How the worker ended, as a Measurement; an out-of-memory failure under
        ``--max-mem-mb`` says that the limit caused it."""
        m = self._classify_exit(job, outcome, *args)
        limit = str(m.conditions.get("mem_limit") or "")
        if m.failure is FailureKind.OOM and limit.startswith(("RLIMIT_AS", "cgroup")) and "above the framework's imports" not in (m.error or ""):
            m = replace(m, error=(
                f"{m.error}: the model needed more than --max-mem-mb {job.max_mem_mb} MB "
                "above the framework's imports"
            ))  # fmt: skip
        return m

    def _classify_exit(
        self,
        job: WorkerJob,
        outcome: _Outcome,
        status: int,
        rusage: Any,
        stderr_tail: str,
        oom_before: int | None,
        started_at: float,
        duration_s: float,
        t_spawn_ns: int,
    ) -> Measurement:
        # The worker's own VmHWM when it lived to report it; wait4's ru_maxrss otherwise
        # (a crash), which for an exec'd worker is at least its parent's size at the fork.
        reported = (outcome.result or outcome.error or {}).get("peak_rss_mb")
        if reported:
            peak_rss_mb: float | None = float(reported)
        else:
            peak_rss_mb = rusage.ru_maxrss / 1024.0 if rusage is not None and rusage.ru_maxrss else None
        conditions = dict(outcome.conditions)
        interference = conditions.pop("interference", None)
        if outcome.worker_info.get("mem_limit"):
            conditions["mem_limit"] = outcome.worker_info["mem_limit"]
        telemetry = (outcome.result or {}).get("telemetry")
        if isinstance(telemetry, dict):
            conditions["telemetry"] = telemetry
        baseline = outcome.worker_info.get("baseline_rss_mb")
        common: dict[str, Any] = {
            "peak_rss_mb": peak_rss_mb,
            "baseline_rss_mb": float(baseline) if baseline is not None else None,
            "started_at": started_at,
            "duration_s": duration_s,
            "weights": job.source.weights_label,
            "phase_s": phase_seconds(outcome.timeline, t_spawn_ns, outcome.result),
            "interference": interference,
            "disturbed": None if interference is None else bool(interference > self.disturbed_threshold),
            "conditions": conditions,
        }
        case = job.case
        if outcome.cancelled:
            return Measurement.failed(
                case, FailureKind.INTERRUPTED, "cancelled", status=Status.CANCELLED, **common
            )
        if outcome.killed_for is not None:
            kind, reason = outcome.killed_for
            return Measurement.failed(case, kind, reason, **common)
        if outcome.error is not None:
            try:
                kind = FailureKind(outcome.error.get("kind", "error"))
            except ValueError:
                kind = FailureKind.ERROR
            message = str(outcome.error.get("message") or "the worker reported an error")
            hint = outcome.error.get("hint")
            return Measurement.failed(case, kind, f"{message} {hint}" if hint else message, **common)

        if os.WIFSIGNALED(status):
            signum = os.WTERMSIG(status)
            oom_after = None if outcome.precise_oom else _oom_kills()  # the cgroup's count decides
            if signum == signal.SIGKILL and oom_before is not None and oom_after is not None and oom_after > oom_before:
                return Measurement.failed(
                    case, FailureKind.OOM, "killed by the kernel's OOM killer (out of memory)", **common
                )
            if signum == signal.SIGABRT and "bad_alloc" in stderr_tail:
                return Measurement.failed(case, FailureKind.OOM, "out of memory (std::bad_alloc)", **common)
            meaning = _SIGNAL_MEANING.get(signum, "")
            text = f"the worker was killed by {_signal_name(signum)}"
            if meaning:
                text = f"the worker crashed with {_signal_name(signum)} ({meaning})"
            elif signum == signal.SIGKILL:
                text += " (from outside backbench, or the kernel's OOM killer)"
            return Measurement.failed(case, FailureKind.CRASHED, text, **common)

        exit_code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
        result = outcome.result
        if result is None or exit_code != 0:
            last_line = stderr_tail.splitlines()[-1] if stderr_tail else ""
            text = f"the worker exited with status {exit_code} without a result"
            if last_line:
                text += f": {last_line[:300]}"
            return Measurement.failed(case, FailureKind.CRASHED, text, **common)

        if case.mode is Mode.ACCURACY:
            return accuracy_measurement(case, result, **common)
        pairs = np.concatenate(outcome.samples) if outcome.samples else np.empty((0, 2), dtype=np.int64)
        samples_ns = pairs[:, 1]
        if samples_ns.size != int(result.get("n", -1)) or samples_ns.size == 0:
            return Measurement.failed(
                case,
                FailureKind.ERROR,
                f"received {samples_ns.size} samples of {result.get('n')}: the telemetry pipe lost data",
                **common,
            )
        return ok_measurement(
            case,
            samples_ns,
            first_inference_ns=int(result["first_inference_ns"]),
            target_met=bool(result.get("target_met")),
            images=int(result["images"]),
            wall_ns=int(result["wall_ns"]),
            config=dict(result.get("config") or {}),
            device_memory={str(k): float(v) for k, v in (result.get("device_memory") or {}).items()},
            **common,
        )


def phase_seconds(
    timeline: list[tuple[str, int]], t_spawn_ns: int, result: dict[str, Any] | None
) -> dict[str, float]:
    """Seconds per phase from the worker's phase stamps (CLOCK_MONOTONIC, shared with
    this process): ``start`` runs from the spawn to the first phase, and the last phase
    ends at the result's stamp (a worker that died ends it nowhere: it is left out)."""
    phases: dict[str, float] = {}
    if not timeline:
        return phases
    phases["start"] = max(0.0, (timeline[0][1] - t_spawn_ns) / 1e9)
    ends = [t for _, t in timeline[1:]]
    if result is not None and result.get("t_ns"):
        ends.append(int(result["t_ns"]))
    for (phase, t_begin), t_end in zip(timeline, ends, strict=False):
        phases[phase] = phases.get(phase, 0.0) + max(0.0, (t_end - t_begin) / 1e9)
    return phases


def ok_measurement(
    case: Case,
    samples_ns: np.ndarray,
    *,
    first_inference_ns: int,
    target_met: bool,
    images: int,
    wall_ns: int,
    config: dict[str, Any],
    device_memory: dict[str, float],
    **common: Any,
) -> Measurement:
    config = dict(config)
    profile = config.pop("layer_profile", None)  # the worker carries it with the config
    return Measurement(
        case=case,
        status=Status.OK,
        layer_profile=LayerProfile.from_dict(profile) if isinstance(profile, dict) else None,
        stats=LatencyStats.from_samples(samples_ns),
        samples_ns=tuple(int(x) for x in samples_ns),
        throughput_ips=images / (wall_ns / 1e9) if wall_ns > 0 else None,
        first_inference_ms=first_inference_ns / 1e6,
        target_met=target_met,
        peak_device_mem_mb=peak_device_memory_mb(device_memory),
        device_memory=device_memory,
        backend_config=config,
        **common,
    )


def accuracy_measurement(case: Case, result: dict[str, Any], **common: Any) -> Measurement:
    """An accuracy case's result. Its batches were timed for the live view only: an
    accuracy row carries no latency statistics, so no latency analysis mixes it in."""
    try:
        accuracy = AccuracyResult.from_dict(dict(result["accuracy"]))
    except (KeyError, TypeError, ValueError) as exc:
        return Measurement.failed(case, FailureKind.ERROR, f"the worker sent a bad accuracy result ({exc})", **common)
    return Measurement(
        case=case, status=Status.OK, accuracy=accuracy,
        backend_config=dict(result.get("config") or {}), **common,
    )  # fmt: skip


def run_inline(job: WorkerJob, observer: CaseObserver | None = None) -> Measurement:
    """Measure in this process (``--no-isolate``): for debugging and quick tests. A crash
    here takes the caller down, and peak RSS is this process's lifetime peak."""
    import resource

    from core.backends import ensure_converted
    from core.measure.worker import PhaseClock, classify_exception, measure

    observer = observer or CaseObserver()
    started_at = time.time()
    t_start = time.monotonic()
    t_spawn = time.perf_counter_ns()
    job = replace(job, max_mem_mb=None)  # never an address-space limit on the caller
    common: dict[str, Any] = {
        "started_at": started_at,
        "weights": job.source.weights_label,
        "conditions": {"start": "inline"},
    }

    def sink(t_ns: int, latency_ns: int) -> None:
        observer.on_samples(np.array([[t_ns, latency_ns]], dtype=np.int64))

    clock = PhaseClock(None, job)
    if job.case.mode is Mode.ACCURACY:
        return _accuracy_inline(job, observer, clock, common, t_start, t_spawn)
    try:
        t_convert = time.monotonic()
        ensure_converted(job.case, job.source)
        convert_s = time.monotonic() - t_convert
        result, config, device_memory = measure(job, None, sink=sink, clock=clock)
    except Exception as exc:
        kind, message, hint = classify_exception(exc)
        return Measurement.failed(
            job.case, kind, f"{message} {hint}" if hint else message,
            duration_s=time.monotonic() - t_start, **common,
        )
    return ok_measurement(
        job.case,
        np.asarray(result.samples_ns, dtype=np.int64),
        first_inference_ns=result.first_inference_ns,
        target_met=result.target_met,
        images=result.images,
        wall_ns=result.wall_ns,
        config=config,
        device_memory=device_memory,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        baseline_rss_mb=clock.baseline_rss_mb,
        duration_s=time.monotonic() - t_start,
        phase_s={
            "convert": convert_s,
            **phase_seconds(clock.timeline, t_spawn, {"t_ns": time.perf_counter_ns()}),
        },
        **common,
    )


def peak_device_memory_mb(device_memory: dict[str, float]) -> float | None:
    """One figure for the table: what the framework reserved, else what NVML saw."""
    for key in ("torch_max_reserved_mb", "nvml_used_mb", "torch_max_allocated_mb"):
        if key in device_memory:
            return device_memory[key]
    return max(device_memory.values()) if device_memory else None


def _accuracy_inline(
    job: WorkerJob, observer: CaseObserver, clock: Any, common: dict[str, Any], t_start: float, t_spawn: int
) -> Measurement:
    import resource

    from core.backends import ensure_converted
    from core.measure.worker import classify_exception, measure_accuracy

    def on_batch(t_ns: int, latency_ns: int) -> None:
        observer.on_samples(np.array([[t_ns, latency_ns]], dtype=np.int64))

    try:
        ensure_converted(job.case, job.source)
        accuracy, config = measure_accuracy(
            job, None, clock=clock, on_batch=on_batch, on_progress=observer.on_progress
        )
    except Exception as exc:
        kind, message, hint = classify_exception(exc)
        return Measurement.failed(
            job.case, kind, f"{message} {hint}" if hint else message,
            duration_s=time.monotonic() - t_start, **common,
        )  # fmt: skip
    return Measurement(
        case=job.case, status=Status.OK, accuracy=accuracy, backend_config=config,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        baseline_rss_mb=clock.baseline_rss_mb, duration_s=time.monotonic() - t_start,
        phase_s=phase_seconds(clock.timeline, t_spawn, {"t_ns": time.perf_counter_ns()}),
        **common,
    )  # fmt: skip
