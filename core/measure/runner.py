"""The sweep runner, shared by the CLI and the agent.

It validates a RunSpec up front (models, backend, device, precision), records the run
and its environment manifest (with how its workers start), converts each model that
needs it in a process of its own, then measures each case in its own worker (or
inline) and commits each measurement as soon as it exists: a case completed before a
crash or Ctrl-C is never lost. An interrupted run resumes at case granularity: completed
cases stand, a case cut off mid-measurement is measured again from scratch, as its next
attempt; a case that ended failed (an error, a crash, OOM, a timeout) has its result
and is not measured again. A disturbed case may be measured again
(``--retry-disturbed``).

A sweep holds its run's lease (core.store.lease) from before its first case to its end,
however it ends, so two processes (two CLIs, or a CLI and the agent) never measure one
run side by side: a second resume of a run being measured is refused.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

from core import zoo
from core.backends import needs_conversion
from core.backends.base import PHASE_CONVERT, ModelSource
from core.errors import BackbenchError, ModelFileError, UsageError
from core.measure.accuracy_plan import accuracy_job, validate_accuracy
from core.measure.environment import manifest as host_manifest
from core.measure.runtimes import WorkerRuntime, with_runtime
from core.measure.supervisor import CaseObserver, CaseRunner, run_inline
from core.measure.worker import WorkerJob
from core.results import Case, FailureKind, Measurement, Run, RunSpec, Status
from core.store import Store
from core.store import lease as run_lease
from core.store.lease import RunLease

log = logging.getLogger(__name__)

RUN_RUNNING = "running"
RUN_FINISHED = "finished"
RUN_INTERRUPTED = "interrupted"
RUN_CANCELLED = "cancelled"


class SweepObserver(CaseObserver):
    """Sweep-level hooks on top of the per-case ones; the defaults do nothing."""

    def on_case_start(self, index: int, total: int, case: Case) -> None:
        return None

    def on_case_retry(self, index: int, total: int, measurement: Measurement) -> None:
        """A disturbed attempt was stored and the case is measured again."""
        return None

    def on_case_end(self, index: int, total: int, measurement: Measurement) -> None:
        return None

    def on_convert(self, done: int, total: int, model: str) -> None:
        """Up-front conversions: ``done`` of ``total`` models converted (or found cached)."""
        return None


@dataclass(frozen=True, slots=True)
class TimeSummary:
    """Where a sweep's wall time went: warm-up plus timed loops against the whole."""

    wall_s: float
    measuring_s: float  # warm-up + timed loop, summed over the cases
    cases: int

    @property
    def measuring_share(self) -> float:
        return self.measuring_s / self.wall_s if self.wall_s > 0 else 0.0

    def line(self) -> str:
        return f"{self.wall_s:.0f} s wall, {self.measuring_share:.0%} measuring ({self.cases} cases)"

    def to_dict(self) -> dict[str, Any]:
        return {
            "wall_s": self.wall_s, "measuring_s": self.measuring_s,
            "measuring_share": self.measuring_share, "cases": self.cases,
        }  # fmt: skip


def time_summary(measurements: list[Measurement], wall_s: float) -> TimeSummary:
    measuring = sum(m.phase_s.get("warmup", 0.0) + m.phase_s.get("measure", 0.0) for m in measurements)
    return TimeSummary(wall_s=wall_s, measuring_s=measuring, cases=len(measurements))


def validate_spec(spec: RunSpec, runtime: WorkerRuntime | None = None) -> RunSpec:
    """Fail before anything runs: unknown models (with suggestions), model and weights
    files that are missing or of the wrong format, an unavailable backend or device, an
    unsupported precision. Returns the spec with model file paths made absolute (workers
    may run in another directory). With a worker ``runtime`` the backend, device and
    precision are checked on that runtime's interpreter, where the cases run."""
    from core.backends import check_case
    from core.zoo.files import check_weights_file

    models = []
    for name in spec.models:
        card = zoo.get_card(name)
        models.append(card.path if card.path else card.name)
    for model, path in spec.weights.items():
        if model not in spec.models:
            raise UsageError(f"Weights were given for {model!r}, which is not in this run.")
        if not path or not os.path.isfile(path):
            raise ModelFileError(
                f"Weights file {path!r} for {model} does not exist.",
                "Give the path of a local state-dict file (.pth), or leave it out for random weights.",
            )
        # Its format only (cheap); the state dict is read, safely, when the model is built.
        check_weights_file(path)
    # Absolute, like the model paths: a runtime's workers start in another folder.
    weights = {model: os.path.abspath(path) for model, path in spec.weights.items()}
    spec = replace(spec, models=tuple(models), weights=weights)
    spec.check_size()
    if spec.accuracy is not None:
        spec = validate_accuracy(spec)
    check_runtime(spec, runtime)
    if runtime is not None:
        runtime.check_case(spec.cases()[0])
    else:
        check_case(spec.cases()[0])
    return spec


def source_of(spec: RunSpec, model: str) -> ModelSource:
    """What a case of ``spec`` loads: the model, its weights file and class count."""
    num_classes = spec.accuracy.num_classes if spec.accuracy is not None else None
    return ModelSource(model, spec.weights.get(model), num_classes)


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


def _complexity_fields(model: str) -> dict[str, Any]:
    """Params and FLOPs of the inference model, from the zoo's catalogue (no torch)."""
    try:
        complexity = zoo.model_complexity(model)
    except BackbenchError:
        complexity = None
    if complexity is not None:
        return {"params": complexity.params, "flops": complexity.flops}
    return {}


def run_sweep(
    spec: RunSpec,
    store: Store,
    *,
    observer: SweepObserver | None = None,
    cancel: threading.Event | None = None,
    case_runner: CaseRunner | None = None,
    resume: Run | None = None,
    manifest: dict[str, Any] | None = None,
    validate: bool = True,
    lease: RunLease | None = None,
) -> Run:
    """Run every case of ``spec`` (or the unfinished ones of ``resume``) and store them.

    Each model that its backend reads converted (OpenVINO IR, ONNX) is converted first,
    in a process of its own. A case disturbed by other processes is measured again up
    to ``spec.retry_disturbed`` times; every attempt is stored and the last one counts.
    KeyboardInterrupt stores the case cut off as an interrupted attempt, marks the run
    interrupted and propagates, after the worker is stopped; what was completed stays in
    the store. ``validate=False`` is for callers that already ran ``validate_spec`` (the
    CLI does, before it draws a progress bar). ``run.summary`` is not stored; use
    ``time_summary`` on the measurements for where the time went.

    The run is claimed for this process (``Store.acquire_run_lease``) before anything is
    measured and released when the sweep ends, however it ends; a resume of a run that
    another live process measures raises RunBusyError. ``lease`` is a claim the caller
    already holds on ``resume``'s run (the CLI claims before it draws its progress bar);
    the sweep takes it over and releases it too.
    """
    if lease is not None and (resume is None or lease.run_id != resume.id):
        raise ValueError("a lease passed to run_sweep must be the resumed run's")
    observer = observer or SweepObserver()
    t_sweep = time.monotonic()
    if resume is not None:
        spec = resume.spec
    owned = case_runner is None
    runner = case_runner or CaseRunner()
    try:
        check_runtime(spec, runner.runtime)
    except BaseException:
        if owned:
            runner.close()
        raise
    runner.start = spec.worker_start
    runner.disturbed_threshold = spec.disturbed_threshold
    if spec.max_mem_mb:
        runner.max_mem_mb = spec.max_mem_mb
    if spec.measure_timeout_s:
        runner.limits = replace(runner.limits, measure_s=spec.measure_timeout_s)
    if spec.isolate:
        runner.prestart(spec.backend)  # its imports overlap with the validation below
    try:
        if resume is not None:
            run = resume
            if lease is None:
                lease = store.acquire_run_lease(run.id)
                took_over = lease.takeover_line(run.name)
                if took_over:
                    log.warning("%s", took_over)
            # A case with a result, ok or failed, stands; one cut off is measured again.
            done = store.measured_cases(run.id)
            store.set_run_status(run.id, RUN_RUNNING)
        else:
            if validate:
                spec = validate_spec(spec, runner.runtime)
            if manifest is None:
                manifest = host_manifest()
                if runner.runtime is not None:
                    # The worker interpreter's own Python and packages, not this one's.
                    manifest = with_runtime(manifest, runner.runtime)
            with store.transaction():  # nobody can claim the new run before this sweep
                run = store.create_run(spec, manifest, name=spec.name)
                lease = store.acquire_run_lease(run.id)
            done = set()
    except BaseException:
        if lease is not None:
            _release(store, lease)
        if owned:
            runner.close()
        raise
    keeper = _LeaseKeeper(store, lease, run.name)
    cases = spec.cases()
    todo = [c for c in cases if c not in done]
    total = len(todo)
    final_status = RUN_FINISHED
    conversions: dict[str, Measurement | None] = {}  # model -> its conversion's failure
    convert_seconds: dict[str, float] = {}
    try:
        keeper.start()
        if todo:
            _record_worker_start(store, run, runner, spec)
            if spec.isolate:
                _convert_up_front(todo, spec, runner, observer, cancel, conversions, convert_seconds)
        for index, case in enumerate(todo):
            if cancel is not None and cancel.is_set():
                final_status = RUN_CANCELLED
                break
            keeper.check()
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
                    # again is its next attempt (unless the run is no longer this sweep's).
                    # The claim is checked with the row, as below: a run taken over while
                    # this process was stopped gets no row from it.
                    with contextlib.suppress(run_lease.RunLeaseLostError), store.transaction():
                        keeper.renew()
                        store.add_measurement(run.id, Measurement.failed(
                            case, FailureKind.INTERRUPTED,
                            "interrupted while measuring; a resume measures it again",
                            status=Status.CANCELLED, started_at=started_at,
                            duration_s=time.time() - started_at,
                        ))  # fmt: skip
                    raise
                measurement = replace(measurement, **_complexity_fields(case.model))
                # The claim is checked and renewed with the row it covers: a run taken over
                # meanwhile gets no row from this sweep.
                with store.transaction():
                    keeper.renew()
                    measurement = store.add_measurement(run.id, measurement)
                retry = (
                    measurement.disturbed
                    and attempt < spec.retry_disturbed
                    and not (cancel is not None and cancel.is_set())
                )
                if not retry:
                    break
                attempt += 1
                log.info("%s was disturbed (%.2f cores of other work); measuring again",
                         case.label(), measurement.interference or 0.0)
                observer.on_case_retry(index, total, measurement)
            observer.on_case_end(index, total, measurement)
            if measurement.status is Status.CANCELLED:
                final_status = RUN_CANCELLED
                break
        store.set_run_status(run.id, final_status)
    except BaseException:
        # A run taken over is the other process's to mark, even if this one has not
        # noticed yet: the claim is checked with the status.
        with contextlib.suppress(run_lease.RunLeaseLostError, BackbenchError), store.transaction():
            keeper.renew()
            store.set_run_status(run.id, RUN_INTERRUPTED)
        raise
    finally:
        keeper.close()
        if owned:
            runner.close()
    log.info("run %d: %s", run.id, time_summary(store.measurements(run.id), time.monotonic() - t_sweep).line())
    return store.get_run(run.id)


class _LeaseKeeper:
    """Keeps a sweep's claim on its run alive: renewed every ``LEASE_HEARTBEAT_S`` from a
    thread (one case may take minutes) and after every stored case, and released at the
    end. ``lost`` turns true when another process took the run over (this one was silent
    for longer than the staleness bound: stopped, suspended, or its store unwritable)."""

    def __init__(self, store: Store, lease: RunLease, run_name: str) -> None:
        self.store = store
        self.lease = lease
        self.run_name = run_name
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name=f"backbench-lease-{lease.run_id}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(run_lease.LEASE_HEARTBEAT_S):
            try:
                self.renew()
            except BackbenchError as exc:  # a busy or full store: the next beat tries again
                if self.lost:
                    log.error("%s", exc)
                    return
                log.warning("Could not renew the claim on run %d: %s", self.lease.run_id, exc)
            except Exception as exc:  # the store closed under us (an agent stopping): done
                log.warning("Stopped renewing the claim on run %d: %s", self.lease.run_id, exc)
                return

    def renew(self) -> None:
        """Stamp the heartbeat now; raises RunLeaseLostError once the run is another's."""
        if not self.lost and not self.store.renew_run_lease(self.lease):
            self.lost = True
        self.check()

    def check(self) -> None:
        if self.lost:
            raise run_lease.lost_error(self.lease.run_id, self.run_name, self.store.run_lease(self.lease.run_id))

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if not self.lost:
            _release(self.store, self.lease)


def _release(store: Store, lease: RunLease) -> None:
    try:
        store.release_run_lease(lease)
    except BackbenchError as exc:  # its holder is gone once this process exits: others take over
        log.error("Could not release the claim on run %d: %s", lease.run_id, exc)


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
    from concurrent.futures import ThreadPoolExecutor

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
    observer: SweepObserver,
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
