"""The parent side of a worker: spawn, stream, watch, classify.

One worker process per case, started by fork+exec (subprocess, never multiprocessing's
fork) in a new session; it sets PDEATHSIG itself, so the parent's death takes it along.
Frames arrive on an inherited pipe (core.measure.pipe). A watchdog enforces a heartbeat and a
time limit per phase (load, compile and measure are timed apart: an NCS2 compile is slow)
and ends a stuck worker with SIGTERM, then SIGKILL, to its whole process group. The exit
is classified as ok, failed (error, crashed with its signal, OOM, timeout) or cancelled.
Peak RSS comes from ``os.wait4``'s ``ru_maxrss``.

The CLI's runner and the agent both use ``CaseRunner``.
"""

from __future__ import annotations

import contextlib
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.backends.base import PHASE_COMPILE, PHASE_LOAD, PHASE_MEASURE
from core.measure.pipe import (
    KIND_ERROR,
    KIND_HEARTBEAT,
    KIND_PHASE,
    KIND_RESULT,
    KIND_SAMPLES,
    FrameDecoder,
)
from core.measure.worker import WorkerJob
from core.results import Case, FailureKind, LatencyStats, Measurement, Status

log = logging.getLogger(__name__)

TICK_S = 0.1  # watchdog resolution and RSS sampling period (10 Hz)


@dataclass(frozen=True, slots=True)
class PhaseLimits:
    """Watchdog limits in seconds. ``measure_s=None`` derives it from the stopping rule."""

    load_s: float = 300.0
    compile_s: float = 900.0
    measure_s: float | None = None
    heartbeat_s: float = 30.0
    term_grace_s: float = 5.0

    def for_phase(self, phase: str, job: WorkerJob) -> float:
        if phase == PHASE_COMPILE:
            return self.compile_s
        if phase == PHASE_MEASURE:
            if self.measure_s is not None:
                return self.measure_s
            # Warm-up (capped at a quarter of max_time), the timed loop, and slack for a
            # slow model that needs longer than max_time to reach min_iters.
            return 3.0 * job.rule.max_time_s + 120.0
        return self.load_s


class CaseObserver:
    """Live hooks for one case; the defaults do nothing. Called on the supervising thread."""

    def on_phase(self, phase: str) -> None:
        return None

    def on_samples(self, samples: np.ndarray) -> None:
        """``samples`` is an (k, 2) int64 array of (timestamp_ns, latency_ns)."""
        return None

    def on_memory(self, rss_mb: float | None, device_memory: dict[str, float]) -> None:
        return None


def default_worker_command() -> list[str]:
    """A frozen build re-execs itself with the ``worker`` subcommand."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "worker"]
    return [sys.executable, "-m", "core.measure.worker"]


def _oom_kills() -> int | None:
    """The cgroup's OOM-kill counter, to tell the kernel's OOM killer from a plain SIGKILL."""
    try:
        text = Path("/sys/fs/cgroup/memory.events").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        name, _, value = line.partition(" ")
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


class CaseRunner:
    """Runs cases in worker processes, one at a time per instance."""

    def __init__(
        self,
        worker_command: list[str] | None = None,
        limits: PhaseLimits | None = None,
        max_mem_mb: int | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.worker_command = list(worker_command or default_worker_command())
        self.limits = limits or PhaseLimits()
        self.max_mem_mb = max_mem_mb
        self.env = env

    def run(
        self,
        job: WorkerJob,
        observer: CaseObserver | None = None,
        cancel: threading.Event | None = None,
    ) -> Measurement:
        observer = observer or CaseObserver()
        if self.max_mem_mb and not job.max_mem_mb:
            job = WorkerJob(job.case, job.source, job.rule, self.max_mem_mb, job.fault)
        started_at = time.time()
        t_start = time.monotonic()
        oom_before = _oom_kills()
        read_fd, write_fd = os.pipe()
        stderr_file = tempfile.TemporaryFile()  # noqa: SIM115 - closed in the finally below
        try:
            try:
                proc = subprocess.Popen(
                    [*self.worker_command, "--fd", str(write_fd), "--parent-pid", str(os.getpid())],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr_file,
                    pass_fds=(write_fd,),
                    start_new_session=True,
                    env=self.env,
                    cwd=os.getcwd(),
                )
            except OSError as exc:
                return Measurement.failed(
                    job.case,
                    FailureKind.ERROR,
                    f"could not start the worker {self.worker_command[0]!r}: {exc.strerror or exc}",
                    started_at=started_at,
                )
            finally:
                os.close(write_fd)
            outcome = _Outcome()
            try:
                try:
                    if proc.stdin is not None:
                        proc.stdin.write(json.dumps(job.to_dict()).encode())
                        proc.stdin.close()
                except BrokenPipeError:
                    pass  # the worker died at once; its exit status tells why
                status, rusage = self._supervise(proc, read_fd, job, observer, cancel, outcome)
            except BaseException:
                # KeyboardInterrupt or a bug here: never leave an orphaned worker behind.
                self._kill_group(proc.pid)
                self._reap(proc, wait=True)
                raise
            stderr_tail = self._stderr_tail(stderr_file)
        finally:
            os.close(read_fd)
            stderr_file.close()
        return self._classify(job, outcome, status, rusage, stderr_tail, oom_before, started_at, time.monotonic() - t_start)

    # -- supervision -----------------------------------------------------------------

    def _supervise(
        self,
        proc: subprocess.Popen[bytes],
        read_fd: int,
        job: WorkerJob,
        observer: CaseObserver,
        cancel: threading.Event | None,
        outcome: _Outcome,
    ) -> tuple[int, Any]:
        decoder = FrameDecoder()
        now = time.monotonic()
        last_beat = now
        phase_deadline = now + self.limits.for_phase(PHASE_LOAD, job)
        next_rss = now
        reaped: tuple[int, Any] | None = None
        eof_deadline: float | None = None
        try:
            import psutil

            ps_proc: Any = psutil.Process(proc.pid)
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
                    elif kind == KIND_PHASE:
                        outcome.phase = str(payload.get("phase", outcome.phase))
                        phase_deadline = last_beat + self.limits.for_phase(outcome.phase, job)
                        observer.on_phase(outcome.phase)
                    elif kind == KIND_HEARTBEAT:
                        if payload.get("device_memory"):
                            outcome.device_memory = dict(payload["device_memory"])
                    elif kind == KIND_RESULT:
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
                    limit = self.limits.for_phase(outcome.phase, job)
                    outcome.killed_for = (
                        FailureKind.TIMEOUT,
                        f"the {outcome.phase} phase exceeded its limit of {limit:g} s",
                    )
                if outcome.killed_for is not None:
                    log.warning("stopping worker %d: %s", proc.pid, outcome.killed_for[1])
                    reaped = self._terminate(proc)
                    eof_deadline = time.monotonic() + 1.0
            if reaped is None:
                reaped = self._reap(proc, wait=False)
                if reaped is not None and eof_deadline is None:
                    # A grandchild may still hold the pipe open: read what is left, briefly.
                    eof_deadline = time.monotonic() + 1.0
            if eof_deadline is not None and time.monotonic() > eof_deadline:
                break
        if reaped is None:
            reaped = self._reap(proc, wait=False)
            if reaped is None:
                # EOF but still running (it closed the pipe): give it the grace period.
                deadline = time.monotonic() + self.limits.term_grace_s
                while reaped is None and time.monotonic() < deadline:
                    time.sleep(0.02)
                    reaped = self._reap(proc, wait=False)
                if reaped is None:
                    reaped = self._terminate(proc)
        if decoder.pending:
            log.warning("worker %d left %d bytes of a partial frame", proc.pid, decoder.pending)
        return reaped

    @staticmethod
    def _reap(proc: subprocess.Popen[bytes], wait: bool) -> tuple[int, Any] | None:
        try:
            pid, status, rusage = os.wait4(proc.pid, 0 if wait else os.WNOHANG)
        except ChildProcessError:
            return None
        if pid == 0:
            return None
        # Tell Popen the child is reaped, so it never waits on a recycled pid.
        proc.returncode = os.waitstatus_to_exitcode(status)
        return status, rusage

    @staticmethod
    def _kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
        # The group may be gone already: that is the goal, not an error.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)

    def _terminate(self, proc: subprocess.Popen[bytes]) -> tuple[int, Any]:
        """SIGTERM to the worker's process group, SIGKILL after the grace period."""
        self._kill_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.limits.term_grace_s
        while time.monotonic() < deadline:
            reaped = self._reap(proc, wait=False)
            if reaped is not None:
                self._kill_group(proc.pid)  # any grandchildren left in the group
                return reaped
            time.sleep(0.02)
        self._kill_group(proc.pid)
        reaped = self._reap(proc, wait=True)
        if reaped is None:  # someone else reaped it: no rusage to give
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

    def _classify(
        self,
        job: WorkerJob,
        outcome: _Outcome,
        status: int,
        rusage: Any,
        stderr_tail: str,
        oom_before: int | None,
        started_at: float,
        duration_s: float,
    ) -> Measurement:
        peak_rss_mb = rusage.ru_maxrss / 1024.0 if rusage is not None else None
        common: dict[str, Any] = {
            "peak_rss_mb": peak_rss_mb,
            "started_at": started_at,
            "duration_s": duration_s,
            "weights": job.source.weights_label,
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
            oom_after = _oom_kills()
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
    return Measurement(
        case=case,
        status=Status.OK,
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


def run_inline(job: WorkerJob, observer: CaseObserver | None = None) -> Measurement:
    """Measure in this process (``--no-isolate``): for debugging and quick tests. A crash
    here takes the caller down, and peak RSS is this process's lifetime peak."""
    import resource

    from core.measure.worker import classify_exception, measure

    observer = observer or CaseObserver()
    started_at = time.time()
    t_start = time.monotonic()
    common: dict[str, Any] = {"started_at": started_at, "weights": job.source.weights_label}

    def sink(t_ns: int, latency_ns: int) -> None:
        observer.on_samples(np.array([[t_ns, latency_ns]], dtype=np.int64))

    try:
        result, config, device_memory = measure(job, None, sink=sink)
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
        duration_s=time.monotonic() - t_start,
        **common,
    )


def peak_device_memory_mb(device_memory: dict[str, float]) -> float | None:
    """One figure for the table: what the framework reserved, else what NVML saw."""
    for key in ("torch_max_reserved_mb", "nvml_used_mb", "torch_max_allocated_mb"):
        if key in device_memory:
            return device_memory[key]
    return max(device_memory.values()) if device_memory else None
