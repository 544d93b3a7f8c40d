"""The worker: measures one case in its own process and streams to its parent.

Started by core.measure.supervisor with fork+exec as ``python -m core.measure.worker --fd N --parent-pid P``
(a frozen build runs ``backbench worker ...``), in a new session. The job arrives as one
JSON object on stdin. Frames (core.measure.pipe) go to the inherited pipe ``fd``: phases,
batched samples, heartbeats, then a result or an error.

This module, and everything it imports, stays compatible with Python 3.10 (a MYRIAD host
runs its workers on the Python that has OpenVINO 2022.3).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import logging
import os
import resource
import signal
import sys
import threading
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from core.backends.base import (
    PHASE_CONVERT,
    PHASE_LOAD,
    PHASE_MEASURE,
    PHASE_PROFILE,
    PHASE_WARMUP,
    ModelSource,
    PreparedModel,
)
from core.errors import BackbenchError, CaseFailure
from core.measure.harness import HarnessResult, SampleSink, run_timed
from core.measure.pipe import (
    HEADER,
    KIND_ERROR,
    KIND_HEARTBEAT,
    KIND_PHASE,
    KIND_RESULT,
    KIND_SAMPLES,
    SAMPLES_PER_FRAME,
    encode_json,
)
from core.results import Case, FailureKind, Mode, StoppingRule

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_CASE_FAILED = 3
FLUSH_INTERVAL_NS = 20_000_000  # telemetry leaves the worker within 20 ms (<= 50 writes/s)
HEARTBEAT_INTERVAL_S = 0.1
TASK_MEASURE = "measure"
TASK_CONVERT = "convert"
TASK_CHECK_CONVERTED = "check-converted"  # is the case's model in the cache already?


@dataclass(frozen=True, slots=True)
class WorkerJob:
    case: Case
    source: ModelSource
    rule: StoppingRule
    max_mem_mb: int | None = None  # the model's memory bound (see limit_memory), if set
    fault: str | None = None  # test hook: "segfault" | "hang" | "alloc" | "exit" at measure
    task: str = TASK_MEASURE  # or TASK_CONVERT: convert the model for the case's backend
    threads: int | None = None  # a conversion's torch threads (conversions side by side)
    # "VERSION:PATH" of the memory cgroup the supervisor made for this case (max_mem_mb),
    # which the worker joins as the model starts to load; None: RLIMIT_AS bounds it.
    mem_cgroup: str | None = None
    # A conversion's target when the measuring interpreter is another one (a worker
    # runtime): "ir" or "onnx:OPSET", as that interpreter's check-converted answered.
    convert_format: str | None = None
    # An accuracy case's dataset, preprocessing and reference (core.measure.accuracy.AccuracyJob).
    accuracy: dict[str, Any] | None = None
    profile_layers: bool = False  # a per-layer profile after the timed loop

    def to_dict(self) -> dict[str, Any]:
        return {
            "case": self.case.to_dict(),
            "source": {
                "name": self.source.name, "weights_path": self.source.weights_path,
                "num_classes": self.source.num_classes,
            },
            "rule": self.rule.to_dict(),
            "max_mem_mb": self.max_mem_mb,
            "fault": self.fault,
            "task": self.task,
            "threads": self.threads,
            "mem_cgroup": self.mem_cgroup,
            "convert_format": self.convert_format,
            "accuracy": self.accuracy,
            "profile_layers": self.profile_layers,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkerJob:
        src = data["source"]
        return cls(
            case=Case.from_dict(data["case"]),
            source=ModelSource(
                src["name"], src.get("weights_path"),
                int(src["num_classes"]) if src.get("num_classes") else None,
            ),
            rule=StoppingRule.from_dict(data["rule"]),
            max_mem_mb=data.get("max_mem_mb"),
            fault=data.get("fault"),
            task=str(data.get("task") or TASK_MEASURE),
            threads=int(data["threads"]) if data.get("threads") else None,
            mem_cgroup=str(data["mem_cgroup"]) if data.get("mem_cgroup") else None,
            convert_format=str(data["convert_format"]) if data.get("convert_format") else None,
            accuracy=dict(data["accuracy"]) if isinstance(data.get("accuracy"), dict) else None,
            profile_layers=bool(data.get("profile_layers", False)),
        )


class Channel:
    """Writes frames to the parent. Samples are packed into a preallocated buffer and
    flushed when it is full or 50 ms old, so a sample costs a few array stores."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._lock = threading.Lock()
        self._buf = array("q", bytes(16 * SAMPLES_PER_FRAME))
        self._used = 0
        self._last_flush_ns = time.perf_counter_ns()
        self.broken = False
        # What telemetry costs the measured process, reported with the result.
        self.write_ns = 0
        self.writes = 0
        self.last_write_ns = 0

    def _write(self, data: bytes) -> None:
        if self.broken:
            return
        with self._lock:
            t0 = time.perf_counter_ns()
            try:
                view = memoryview(data)
                while view:
                    written = os.write(self.fd, view)
                    view = view[written:]
            except BrokenPipeError:
                # The parent is gone; PDEATHSIG ends us shortly. Stop writing meanwhile.
                self.broken = True
            end = time.perf_counter_ns()
            self.write_ns += end - t0
            self.writes += 1
            self.last_write_ns = end

    def send(self, kind: bytes, obj: dict[str, Any]) -> None:
        self._write(encode_json(kind, obj))

    def phase(self, name: str) -> None:
        self.send(KIND_PHASE, {"phase": name, "t_ns": time.perf_counter_ns()})

    def sample(self, t_ns: int, latency_ns: int) -> None:
        buf = self._buf
        used = self._used
        buf[used] = t_ns
        buf[used + 1] = latency_ns
        used += 2
        self._used = used
        if used == 2 * SAMPLES_PER_FRAME or t_ns - self._last_flush_ns >= FLUSH_INTERVAL_NS:
            self.flush(t_ns)

    def flush(self, now_ns: int | None = None) -> None:
        if self._used:
            payload = self._buf[: self._used].tobytes()
            if sys.byteorder != "little":
                swapped = array("q", payload)
                swapped.byteswap()
                payload = swapped.tobytes()
            self._write(HEADER.pack(KIND_SAMPLES, len(payload)) + payload)
            self._used = 0
        self._last_flush_ns = now_ns if now_ns is not None else time.perf_counter_ns()


class Heartbeat(threading.Thread):
    """Proves liveness at 10 Hz and carries the device-memory reading with it. While
    sample frames flow they prove liveness already: with no device memory to report
    (CPU), the heartbeat then stays silent, so the parent is not woken for nothing."""

    def __init__(self, channel: Channel) -> None:
        super().__init__(name="backbench-heartbeat", daemon=True)
        self.channel = channel
        self.prepared: PreparedModel | None = None
        self._stop_event = threading.Event()
        self.cpu_s = 0.0  # this thread's CPU time, set as it ends
        self.wakeups = 0

    def run(self) -> None:
        interval_ns = int(HEARTBEAT_INTERVAL_S * 1e9)
        try:
            while not self._stop_event.wait(HEARTBEAT_INTERVAL_S):
                self.wakeups += 1
                now = time.perf_counter_ns()
                payload: dict[str, Any] = {"t_ns": now}
                prepared = self.prepared
                if prepared is not None:
                    try:
                        memory = prepared.device_memory_mb()
                    except Exception as exc:  # a reading must never kill the case
                        log.debug("device memory reading failed: %s", exc)
                        memory = {}
                    if memory:
                        payload["device_memory"] = memory
                if "device_memory" not in payload and now - self.channel.last_write_ns < interval_ns:
                    continue
                self.channel.send(KIND_HEARTBEAT, payload)
        finally:
            self.cpu_s = time.thread_time()

    def stop(self) -> None:
        self._stop_event.set()


def _cpu_seconds() -> float:
    """This process's CPU time so far, every thread, in seconds."""
    times = os.times()
    return times.user + times.system


def set_parent_death_signal(parent_pid: int) -> None:
    """Die with the parent: PR_SET_PDEATHSIG, then check the parent did not already go."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            pr_set_pdeathsig = 1
            libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
        except OSError as exc:
            log.warning("could not set PDEATHSIG: %s", exc)
    if parent_pid and os.getppid() != parent_pid:
        os._exit(EXIT_CASE_FAILED)


_set_parent_death_signal = set_parent_death_signal  # the name tests/service's worker uses


def set_process_name(name: str) -> None:
    """The name ps and top show (PR_SET_NAME, 15 characters), so a forked worker reads as
    one rather than as its fork server."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            pr_set_name = 15
            libc.prctl(pr_set_name, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)
        except OSError:
            pass


def _status_kb(field_name: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def peak_rss_mb() -> float | None:
    """This process's own peak resident set (VmHWM), in MB. Unlike wait4's ru_maxrss it
    does not inherit the parent's peak across fork+exec, which made an exec'd worker of
    a large supervisor (one that had imported torch) report the supervisor's size."""
    kb = _status_kb("VmHWM")
    return None if kb is None else kb / 1024.0


def current_rss_mb() -> float | None:
    """This process's resident set now, in MB (2**20 bytes, like ru_maxrss / 1024)."""
    kb = _status_kb("VmRSS")
    return None if kb is None else kb / 1024.0


def limit_memory(max_mem_mb: int | None, device: str, mem_cgroup: str | None = None) -> str:
    """Bound the model's memory to ``max_mem_mb`` above what this process holds now (the
    framework's imports). Returns the mechanism, to record with the case.

    - A memory cgroup the supervisor made for the case (``mem_cgroup``, "VERSION:PATH"):
      this process joins it now, so only what is charged from here on, the model's
      memory, counts against the limit (core.measure.cgroup). Works on every device.
    - Otherwise RLIMIT_AS at the address space used now plus ``max_mem_mb``; never on
      CUDA or other accelerators, whose drivers map tens of GB of address space they do
      not use, so an address-space limit fails their initialisation rather than bounding
      the model.
    """
    if not max_mem_mb:
        return "none"
    note = ""
    if mem_cgroup:
        from core.measure.cgroup import MemoryCgroup

        version, _, path = mem_cgroup.partition(":")
        group = MemoryCgroup(int(version), Path(path), int(max_mem_mb))
        try:
            group.add_self()
            return group.mechanism
        except (OSError, ValueError) as exc:
            note = f" (could not join the memory cgroup: {getattr(exc, 'strerror', None) or exc})"
    if device.lower().startswith("cuda") or device.upper().startswith(("GPU", "NPU")):
        return f"none: RLIMIT_AS is not applied on {device} (device drivers map address space they do not use){note}"
    vm_kb = _status_kb("VmSize")
    base = (vm_kb or 0) * 1024
    limit = base + int(max_mem_mb) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return f"RLIMIT_AS = VmSize after imports ({base >> 20} MB) + {int(max_mem_mb)} MB{note}"


def _inject_fault(fault: str | None) -> None:
    """Test hook, so the supervisor's classification is tested against real failures."""
    if not fault:
        return
    if fault == "segfault":
        ctypes.string_at(0)
    elif fault == "hang":
        while True:
            time.sleep(3600)
    elif fault == "alloc":
        hog = []
        while True:
            hog.append(bytearray(64 * 1024 * 1024))
    elif fault == "exit":
        os._exit(7)
    elif fault == "spin":
        # Holds the GIL in C code, so even the heartbeat stops: the heartbeat watchdog fires.
        import re

        re.match(r"(a+)+$", "a" * 64 + "b")


def classify_exception(exc: BaseException) -> tuple[FailureKind, str, str | None]:
    """Map an exception raised while measuring to (kind, message, hint).

    Running out of memory is OOM whoever reports it: MemoryError, or a framework's text
    (OpenVINO's "std::bad_alloc", torch's "CUDA out of memory", ORT's "Failed to allocate
    memory"), also when a backend wrapped it in one of our errors; its hint is about
    memory. A framework's message is shortened at a sentence boundary, without
    OpenVINO's source-location lines.
    """
    # Imported here, not at the top: the rest of this module is not this function's to edit.
    from core.backends.base import OUT_OF_MEMORY_HINT, says_out_of_memory
    from core.backends.convert import framework_message

    # Under --max-mem-mb's RLIMIT_AS the supervisor says which limit the model exceeded
    # (only when the text does not name --max-mem-mb already): no generic hint then.
    limited = resource.getrlimit(resource.RLIMIT_AS)[0] != resource.RLIM_INFINITY
    memory_hint = None if limited else OUT_OF_MEMORY_HINT

    if isinstance(exc, CaseFailure):
        kind = FailureKind(exc.kind)
        return kind, exc.message, exc.hint or (memory_hint if kind is FailureKind.OOM else None)
    if isinstance(exc, BackbenchError):
        if says_out_of_memory(exc.message):
            return FailureKind.OOM, exc.message, exc.hint or memory_hint
        return FailureKind.ERROR, exc.message, exc.hint
    if isinstance(exc, MemoryError):
        return FailureKind.OOM, "out of memory while measuring (MemoryError)", memory_hint
    name = type(exc).__name__
    text = f"{name}: {framework_message(exc, max_chars=500)}" if str(exc).strip() else name
    if says_out_of_memory(text):
        return FailureKind.OOM, f"out of memory ({text})", memory_hint
    return FailureKind.ERROR, text, None


class PhaseClock:
    """Sends each phase to the parent, and takes the baseline RSS and sets the memory
    bound when the model starts to load (after the framework's imports)."""

    def __init__(self, channel: Channel | None, job: WorkerJob) -> None:
        self.channel = channel
        self.job = job
        self.baseline_rss_mb: float | None = None
        self.mem_limit = "none"
        self.timeline: list[tuple[str, int]] = []

    def __call__(self, phase: str) -> None:
        self.timeline.append((phase, time.perf_counter_ns()))
        extra: dict[str, Any] = {}
        if phase == PHASE_LOAD and self.baseline_rss_mb is None:
            self.baseline_rss_mb = current_rss_mb()
            self.mem_limit = limit_memory(self.job.max_mem_mb, self.job.case.device, self.job.mem_cgroup)
            extra = {"baseline_rss_mb": self.baseline_rss_mb, "mem_limit": self.mem_limit}
        if self.channel is not None:
            self.channel.send(KIND_PHASE, {"phase": phase, "t_ns": self.timeline[-1][1], **extra})


def measure(
    job: WorkerJob,
    channel: Channel | None,
    heartbeat: Heartbeat | None = None,
    sink: SampleSink | None = None,
    clock: PhaseClock | None = None,
) -> tuple[HarnessResult, dict[str, Any], dict[str, float]]:
    """Prepare and measure one case in this process. Returns the harness result, the
    backend's effective config and the device-memory peaks. Samples go to the channel,
    or to ``sink`` when there is none (inline runs). The model must already be converted
    (``convert_for``): a measured process never converts."""
    on_phase = clock or PhaseClock(channel, job)
    with prepared_model(job, on_phase, heartbeat) as prepared:
        on_phase(PHASE_WARMUP)
        if channel is not None:
            sink = channel.sample

        def on_measure() -> None:
            on_phase(PHASE_MEASURE)
            _inject_fault(job.fault)

        result = run_timed(
            prepared, job.case.batch_size, job.case.mode, job.rule, sink, on_measure=on_measure
        )
        if channel is not None:
            channel.flush()
        config, device_memory = dict(prepared.config), prepared.device_memory_mb()
        if job.profile_layers:
            # After the timed loop and its figures: the profiler never touches them.
            on_phase(PHASE_PROFILE)
            profile = getattr(prepared, "profile_layers", None)
            if profile is None:
                raise CaseFailure(FailureKind.ERROR.value, f"{job.case.backend.value} has no per-layer profiler")
            config["layer_profile"] = profile().to_dict()
        return result, config, device_memory


@contextlib.contextmanager
def prepared_model(job: WorkerJob, on_phase: Any, heartbeat: Heartbeat | None) -> Iterator[PreparedModel]:
    """The case's model, prepared by its backend (never converted here: a measured
    process never converts), lent to the heartbeat for device-memory readings, and
    closed at the end."""
    from core.backends import get_backend
    from core.backends.convert import forbid_conversion

    backend = get_backend(job.case.backend)
    with forbid_conversion():
        prepared = backend.prepare(job.case, job.source, on_phase=on_phase)
    try:
        if heartbeat is not None:
            heartbeat.prepared = prepared
        yield prepared
    finally:
        if heartbeat is not None:
            heartbeat.prepared = None
        prepared.close()


def measure_accuracy(
    job: WorkerJob,
    channel: Channel | None,
    heartbeat: Heartbeat | None = None,
    clock: PhaseClock | None = None,
    on_batch: Any = None,
    on_progress: Any = None,
) -> tuple[Any, dict[str, Any]]:
    """Evaluate an accuracy case in this process: (AccuracyResult, backend config). The
    dataset is opened (and its layout checked) before the model is loaded."""
    from core.measure.accuracy import AccuracyJob, evaluate
    from core.measure.datasets import open_dataset

    if job.accuracy is None:
        raise ValueError("an accuracy case needs its accuracy job")
    accuracy = AccuracyJob.from_dict(job.accuracy)
    spec = accuracy.spec
    dataset = open_dataset(spec.dataset, spec.layout, limit=spec.limit, seed=spec.seed, split=spec.split)
    on_phase = clock or PhaseClock(channel, job)
    with prepared_model(job, on_phase, heartbeat) as prepared:

        def batch_done(t_ns: int, latency_ns: int) -> None:
            if channel is not None:
                channel.sample(t_ns, latency_ns)
            if on_batch is not None:
                on_batch(t_ns, latency_ns)

        def progress(done: int, total: int) -> None:
            # Rate-limited by evaluate (four a second, and always the first and last).
            if channel is not None:
                channel.send(KIND_HEARTBEAT, {"t_ns": time.perf_counter_ns(), "progress": [done, total]})
            if on_progress is not None:
                on_progress(done, total)

        result = evaluate(
            prepared, accuracy, dataset, job.case.batch_size, prepared.config.get("input_shape"),
            on_phase=on_phase, on_batch=batch_done, on_progress=progress,
        )  # fmt: skip
        if channel is not None:
            channel.flush()
        return result, dict(prepared.config)


def check_converted(job: WorkerJob) -> dict[str, Any]:
    """Whether the case's model is converted already: the light question a backend's own
    fork server answers, so the converter (torch and OpenVINO, ~700 MB) starts only
    for a model that needs it."""
    from core.backends import ensure_converted
    from core.backends.convert import ConversionMissing, forbid_conversion

    try:
        with forbid_conversion():
            converted = ensure_converted(job.case, job.source)
    except ConversionMissing:
        return {
            "task": TASK_CHECK_CONVERTED, "cached": False, "format": _conversion_format(job),
            "t_ns": time.perf_counter_ns(),
        }  # fmt: skip
    return {
        "task": TASK_CHECK_CONVERTED, "cached": True,
        "path": str(converted.path) if converted else None, "t_ns": time.perf_counter_ns(),
    }  # fmt: skip


def _conversion_format(job: WorkerJob) -> str | None:
    """The file this interpreter's backend reads for the case's model ("ir",
    "onnx:OPSET"), for a converter on another interpreter; None: its own default."""
    from core.backends import get_backend

    which = getattr(get_backend(job.case.backend), "conversion_format", None)
    return which() if which is not None else None


def convert_for(job: WorkerJob) -> dict[str, Any]:
    """Convert the case's model for its backend (OpenVINO IR, ONNX), into the cache, or
    into ``job.convert_format`` (what a worker runtime's interpreter reads)."""
    from core.backends import ensure_converted, needs_conversion
    from core.backends.convert import ensure_format

    t0 = time.perf_counter_ns()
    if job.threads:
        import torch

        torch.set_num_threads(job.threads)
    if job.convert_format and needs_conversion(job.case):
        converted = ensure_format(job.source, job.convert_format)
    else:
        converted = ensure_converted(job.case, job.source)
    return {
        "task": TASK_CONVERT,
        "converted": bool(converted and converted.converted),
        "path": str(converted.path) if converted else None,
        "seconds": (time.perf_counter_ns() - t0) / 1e9,
        "t_ns": time.perf_counter_ns(),
    }


def _import_like_a_fork_server(job: WorkerJob) -> None:
    """Import what a fork server would have, so an exec'd worker's baseline RSS (taken
    as the model starts to load) covers the same imports. A module that fails to import
    is left to the backend, which reports it with its install hint."""
    import importlib

    from core.measure.preload import PRELOAD, preload_key

    for name in PRELOAD.get(preload_key(job.case.backend, job.task == TASK_CONVERT), ()):
        try:
            importlib.import_module(name)
        except (ImportError, OSError):
            continue


def serve(job_data: Any, fd: int, parent_pid: int = 0, start: str = "exec") -> int:
    """Run one job, streaming frames to ``fd``; returns the exit code. Shared by the
    exec'd worker (``main``) and the fork server's children."""
    channel = Channel(fd)
    try:
        job = WorkerJob.from_dict(job_data)
    except (ValueError, KeyError, TypeError, BackbenchError, OSError) as exc:
        channel.send(KIND_ERROR, {"kind": FailureKind.ERROR.value, "message": f"bad worker job: {exc}"})
        return EXIT_CASE_FAILED

    if start == "exec":
        _import_like_a_fork_server(job)
    heartbeat = Heartbeat(channel)
    heartbeat.start()
    clock = PhaseClock(channel, job)
    try:
        if job.task in (TASK_CONVERT, TASK_CHECK_CONVERTED):
            channel.send(KIND_PHASE, {"phase": PHASE_CONVERT, "t_ns": time.perf_counter_ns()})
            check = job.task == TASK_CHECK_CONVERTED
            channel.send(KIND_RESULT, check_converted(job) if check else convert_for(job))
            return EXIT_OK
        if job.case.mode is Mode.ACCURACY:
            accuracy, config = measure_accuracy(job, channel, heartbeat, clock=clock)
            heartbeat.stop()
            heartbeat.join(timeout=1.0)
            channel.send(KIND_RESULT, {
                "accuracy": accuracy.to_dict(), "config": config, "t_ns": time.perf_counter_ns(),
                "start": start, "peak_rss_mb": peak_rss_mb(),
            })  # fmt: skip
            return EXIT_OK
        result, config, device_memory = measure(job, channel, heartbeat, clock=clock)
    except BaseException as exc:  # every failure is reported to the parent, then we exit
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        kind, message, hint = classify_exception(exc)
        log.debug("case failed", exc_info=True)
        channel.send(KIND_ERROR, {
            "kind": kind.value, "message": message, "hint": hint, "peak_rss_mb": peak_rss_mb(),
        })  # fmt: skip
        return EXIT_CASE_FAILED
    finally:
        heartbeat.stop()
    heartbeat.join(timeout=1.0)
    channel.send(
        KIND_RESULT,
        {
            "n": len(result.samples_ns),
            "first_inference_ns": result.first_inference_ns,
            "warmup_iters": result.warmup_iters,
            "target_met": result.target_met,
            "images": result.images,
            "wall_ns": result.wall_ns,
            "config": config,
            "device_memory": device_memory,
            "t_ns": time.perf_counter_ns(),
            "start": start,
            "peak_rss_mb": peak_rss_mb(),
            "cpu_s": _cpu_seconds(),  # for the interference window if this process is gone
            # What telemetry cost this process over the whole case: the heartbeat
            # thread's CPU and the time spent writing frames (samples included).
            "telemetry": {
                "heartbeat_cpu_s": heartbeat.cpu_s,
                "heartbeat_wakeups": heartbeat.wakeups,
                "write_s": channel.write_ns / 1e9,
                "writes": channel.writes,
            },
        },
    )
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="backbench worker", description=argparse.SUPPRESS)
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--parent-pid", type=int, default=0)
    args = parser.parse_args(argv)

    set_parent_death_signal(args.parent_pid)
    logging.basicConfig(level=logging.WARNING, format="worker: %(levelname)s %(name)s: %(message)s")
    try:
        job_data = json.loads(sys.stdin.read())
    except ValueError as exc:
        Channel(args.fd).send(KIND_ERROR, {"kind": FailureKind.ERROR.value, "message": f"bad worker job: {exc}"})
        return EXIT_CASE_FAILED
    return serve(job_data, args.fd, parent_pid=args.parent_pid, start="exec")


def exit_now(code: int) -> NoReturn:
    """Exit without tearing the interpreter down: everything was sent, nothing is left to
    save, and unloading torch's modules takes about a second that the supervisor (or the
    sweep closing its fork server) would wait for."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
