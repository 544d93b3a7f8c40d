"""The local executor: each case in a worker process of its own, on this host, one after
another (``core.measure.supervisor.CaseRunner``), or inline with ``--no-isolate``.

Models that their backend reads converted (OpenVINO IR, ONNX) are converted first,
several at a time, each in a process of its own, while nothing is being measured. A
case disturbed by other processes is measured again up to ``spec.retry_disturbed``
times; every attempt is stored and the last one counts.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from core.backends import needs_conversion
from core.backends.base import PHASE_CONVERT
from core.errors import UsageError
from core.measure.accuracy_plan import accuracy_job
from core.measure.environment import manifest as host_manifest
from core.measure.executors.base import (
    RUN_CANCELLED,
    RUN_FINISHED,
    CaseExecutor,
    SweepContext,
    SweepObserver,
    source_of,
)
from core.measure.runtimes import WorkerRuntime, with_runtime
from core.measure.supervisor import CaseObserver, CaseRunner, run_inline
from core.measure.worker import WorkerJob
from core.results import Case, Measurement, Run, RunSpec, Status
from core.store import Store

log = logging.getLogger(__name__)


def check_runtime(spec: RunSpec, runtime: WorkerRuntime | None) -> None:
    """The spec's runtime name and the runtime the workers will use must agree, and a
    runtime needs worker processes (it is another interpreter)."""
    if spec.runtime is None and runtime is None:
        return
    if spec.runtime is None or runtime is None or runtime.name != spec.runtime:
        raise UsageError(
            f"The run asks for worker runtime {spec.runtime!r}, but its workers would run on "
            f"{runtime.name if runtime is not None else 'this interpreter'!r}."
        )
    if not spec.isolate:
        raise UsageError(
            f"--runtime {spec.runtime} runs workers on another interpreter; --no-isolate "
            "measures in this process.",
            "Leave out --no-isolate.",
        )


class LocalExecutor(CaseExecutor):
    """Cases on this host through ``runner`` (a CaseRunner: its fork servers live as long
    as it does; ``close`` stops them)."""

    name = "local"

    def __init__(self, runner: CaseRunner | None = None) -> None:
        self.runner = runner or CaseRunner()

    @property
    def runtime(self) -> WorkerRuntime | None:  # type: ignore[override]
        return self.runner.runtime

    def configure(self, spec: RunSpec) -> None:
        check_runtime(spec, self.runner.runtime)
        runner = self.runner
        runner.start = spec.worker_start
        runner.disturbed_threshold = spec.disturbed_threshold
        if spec.max_mem_mb:
            runner.max_mem_mb = spec.max_mem_mb
        if spec.measure_timeout_s:
            runner.limits = replace(runner.limits, measure_s=spec.measure_timeout_s)

    def prestart(self, spec: RunSpec) -> None:
        if spec.isolate:
            self.runner.prestart(spec.backend)  # its imports overlap with the validation

    def run_manifest(self, manifest: dict[str, Any] | None) -> dict[str, Any]:
        if manifest is not None:
            return manifest
        manifest = host_manifest()
        if self.runner.runtime is not None:
            # The worker interpreter's own Python and packages, not this one's.
            manifest = with_runtime(manifest, self.runner.runtime)
        return manifest

    def close(self) -> None:
        self.runner.close()

    def run_cases(self, sweep: SweepContext) -> str:
        spec, runner, observer, cancel = sweep.spec, self.runner, sweep.observer, sweep.cancel
        todo = sweep.todo
        total = len(todo)
        conversions: dict[str, Measurement | None] = {}  # model -> its conversion's failure
        convert_seconds: dict[str, float] = {}
        if todo:
            _record_worker_start(sweep.store, sweep.run, runner, spec)
            if spec.isolate:
                _convert_up_front(todo, spec, runner, observer, cancel, conversions, convert_seconds)
        for index, case in enumerate(todo):
            if sweep.cancelled:
                return RUN_CANCELLED
            sweep.check_lease()
            observer.on_case_start(index, total, case)
            job = WorkerJob(case, source_of(spec, case.model), spec.stopping, profile_layers=spec.profile_layers)
            if spec.accuracy is not None:
                job = replace(job, accuracy=accuracy_job(spec, case, job.source).to_dict())
            attempt = 0
            while True:
                started_at = time.time()
                try:
                    measurement = _measure_case(
                        job, spec, runner, observer, cancel, conversions, convert_seconds
                    )
                except KeyboardInterrupt:
                    # The attempt cut off is kept, so the resume that measures the case
                    # again is its next attempt.
                    sweep.commit_interrupted(case, started_at)
                    raise
                measurement = sweep.commit(measurement)
                retry = measurement.disturbed and attempt < spec.retry_disturbed and not sweep.cancelled
                if not retry:
                    break
                attempt += 1
                log.info("%s was disturbed (%.2f cores of other work); measuring again",
                         case.label(), measurement.interference or 0.0)
                observer.on_case_retry(index, total, measurement)
            observer.on_case_end(index, total, measurement)
            if measurement.status is Status.CANCELLED:
                return RUN_CANCELLED
        return RUN_FINISHED


def _record_worker_start(store: Store, run: Run, runner: CaseRunner, spec: RunSpec) -> None:
    """Start the fork server now (imports happen once, here) and record in the run's
    manifest how its workers start, and why not by fork where they cannot."""
    if not spec.isolate:
        how: dict[str, Any] = {"method": "inline"}
    else:
        method, why = runner.start_method(spec.backend)
        how = {"method": method, "requested": spec.worker_start}
        if why:
            how["fallback"] = why
        server = runner.server_info(spec.backend)
        if server:
            how["fork_server"] = server
    if run.manifest.get("worker_start") != how:
        store.set_run_manifest(run.id, {**run.manifest, "worker_start": how})


def conversion_workers(models: int) -> tuple[int, int]:
    """How many conversions run side by side, and torch threads for each: one per core
    (at most 4 at a time), no more than the memory allows (a conversion of a large model
    takes about 3 GB), and the cores shared out between them.

    A conversion is mostly single-threaded (tracing, OpenVINO's frontend) except for
    building the model, so on 2 vCPUs two conversions with one thread each did the work
    of eight models in 18.7 s against 29.7 s one at a time with two threads; two side by
    side with two threads each oversubscribed the cores and gained little
    (docs/PERFORMANCE.md)."""
    cores = os.cpu_count() or 1
    workers = min(models, cores, 4)
    try:
        import psutil

        workers = min(workers, max(1, int(psutil.virtual_memory().available // (3 << 30))))
    except Exception:  # psutil missing: the cores decide
        pass
    workers = max(1, workers)
    return workers, max(1, cores // workers)


def _convert_up_front(
    todo: list[Case],
    spec: RunSpec,
    runner: CaseRunner,
    observer: SweepObserver,
    cancel: threading.Event | None,
    conversions: dict[str, Measurement | None],
    convert_seconds: dict[str, float],
) -> None:
    """Convert every model of the sweep that its backend reads converted, before any case
    is measured, several at a time: nothing is being measured yet, so the cores are free.
    Each conversion still runs in a process of its own; a failure is kept for the
    model's cases, which report it."""
    firsts: dict[str, Case] = {}
    for case in todo:
        if case.model not in firsts and needs_conversion(case):
            firsts[case.model] = case
    if not firsts:
        return
    workers, threads = conversion_workers(len(firsts))
    log.info("converting %d models, %d at a time", len(firsts), workers)
    observer.on_phase(PHASE_CONVERT)
    done = 0
    observer.on_convert(done, len(firsts), "")

    def convert(case: Case) -> tuple[Case, Any]:
        if cancel is not None and cancel.is_set():
            return case, None
        source = source_of(spec, case.model)
        job = WorkerJob(case, source, spec.stopping, threads=threads if workers > 1 else None)
        return case, runner.convert(job, cancel)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="backbench-convert") as pool:
        for case, converted in pool.map(convert, firsts.values()):
            done += 1
            observer.on_convert(done, len(firsts), case.model)
            if converted is None:
                continue  # cancelled before it started: the case converts, or is skipped
            if isinstance(converted, Measurement):
                conversions[case.model] = converted
            else:
                conversions[case.model] = None
                if converted.converted:
                    convert_seconds[case.model] = converted.seconds


def _measure_case(
    job: WorkerJob,
    spec: RunSpec,
    runner: CaseRunner,
    observer: CaseObserver,
    cancel: threading.Event | None,
    conversions: dict[str, Measurement | None],
    convert_seconds: dict[str, float],
) -> Measurement:
    """One attempt at a case. Its model was converted up front (``_convert_up_front``;
    inline, ``run_inline`` converts in this process): a failed conversion is the case's
    result, and a conversion's seconds count in the model's first case."""
    case = job.case
    failure = conversions.get(case.model)
    if failure is not None:
        return replace(failure, case=case, started_at=time.time())
    measurement = runner.run(job, observer, cancel) if spec.isolate else run_inline(job, observer)
    convert_s = convert_seconds.pop(case.model, 0.0)
    if convert_s:
        phases = {**measurement.phase_s, "convert": convert_s}
        measurement = replace(
            measurement, phase_s=phases, duration_s=(measurement.duration_s or 0.0) + convert_s
        )
    return measurement
