"""The sweep runner, shared by the CLI and the agent.

It validates a RunSpec up front (models, backend, device, precision), records the run
and its environment manifest (with how its workers start), then hands the cases to an
executor (core.measure.executors): the local one converts each model that needs it in a
process of its own, then measures each case in its own worker (or inline); the Ray one
runs each case as a task on a node of a cluster. Either way each measurement is
committed as soon as it exists: a case completed before a crash or Ctrl-C is never
lost. An interrupted run resumes at case granularity: completed cases stand, a case cut
off mid-measurement is measured again from scratch, as its next attempt; a case that
ended failed (an error, a crash, OOM, a timeout) has its result and is not measured
again. A disturbed case may be measured again (``--retry-disturbed``).

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
from core.errors import BackbenchError, ModelFileError, UsageError
from core.measure.accuracy_plan import validate_accuracy

# Also the names callers import from here: the statuses, source_of, conversion_workers.
from core.measure.executors.base import RUN_CANCELLED as RUN_CANCELLED
from core.measure.executors.base import RUN_FINISHED as RUN_FINISHED
from core.measure.executors.base import CaseExecutor, SweepContext
from core.measure.executors.base import SweepObserver as SweepObserver
from core.measure.executors.base import source_of as source_of
from core.measure.executors.local import LocalExecutor, check_runtime
from core.measure.executors.local import conversion_workers as conversion_workers
from core.measure.runtimes import WorkerRuntime
from core.measure.supervisor import CaseRunner
from core.results import Case, FailureKind, Measurement, Run, RunSpec, Status
from core.store import Store
from core.store import lease as run_lease
from core.store.lease import RunLease

log = logging.getLogger(__name__)

RUN_RUNNING = "running"
RUN_INTERRUPTED = "interrupted"


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


def validate_spec(
    spec: RunSpec, runtime: WorkerRuntime | None = None, *, check_device: bool = True
) -> RunSpec:
    """Fail before anything runs: unknown models (with suggestions), model and weights
    files that are missing or of the wrong format, an unavailable backend or device, an
    unsupported precision. Returns the spec with model file paths made absolute (workers
    may run in another directory). With a worker ``runtime`` the backend, device and
    precision are checked on that runtime's interpreter, where the cases run; with
    ``check_device=False`` (cases that run on other machines: the Ray executor) they are
    not checked here, and each node checks its own case."""
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
    if not check_device:
        return spec
    check_runtime(spec, runtime)
    if runtime is not None:
        runtime.check_case(spec.cases()[0])
    else:
        check_case(spec.cases()[0])
    return spec


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
    executor: CaseExecutor | None = None,
) -> Run:
    """Run every case of ``spec`` (or the unfinished ones of ``resume``) and store them.

    The cases run on ``executor`` (core.measure.executors): by default the local one,
    through ``case_runner`` (a CaseRunner made here when None): each model that its
    backend reads converted (OpenVINO IR, ONNX) is converted first, in a process of its
    own, then each case is measured in a worker of its own. A case disturbed by other
    processes is measured again up to ``spec.retry_disturbed`` times; every attempt is
    stored and the last one counts. With a ``RayExecutor`` the cases run as Ray tasks on
    the nodes of a cluster, and come back into this store as they finish.
    KeyboardInterrupt stores the case (or cases) cut off as interrupted attempts, marks
    the run interrupted and propagates, after the workers are stopped; what was
    completed stays in the store. ``validate=False`` is for callers that already ran
    ``validate_spec`` (the CLI does, before it draws a progress bar). ``run.summary`` is
    not stored; use ``time_summary`` on the measurements for where the time went.

    The run is claimed for this process (``Store.acquire_run_lease``) before anything is
    measured and released when the sweep ends, however it ends; a resume of a run that
    another live process measures raises RunBusyError. ``lease`` is a claim the caller
    already holds on ``resume``'s run (the CLI claims before it draws its progress bar);
    the sweep takes it over and releases it too. An executor or case runner passed in
    is the caller's to close; one made here is closed here.
    """
    if lease is not None and (resume is None or lease.run_id != resume.id):
        raise ValueError("a lease passed to run_sweep must be the resumed run's")
    if executor is not None and case_runner is not None:
        raise ValueError("pass run_sweep a case_runner or an executor, not both")
    observer = observer or SweepObserver()
    t_sweep = time.monotonic()
    if resume is not None:
        spec = resume.spec
    owned = executor is None and case_runner is None
    if executor is None:
        executor = LocalExecutor(case_runner)
    try:
        executor.configure(spec)
    except BaseException:
        if owned:
            executor.close()
        raise
    executor.prestart(spec)
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
                spec = validate_spec(spec, executor.runtime, check_device=executor.checks_devices_here)
            manifest = executor.run_manifest(manifest)
            with store.transaction():  # nobody can claim the new run before this sweep
                run = store.create_run(spec, manifest, name=spec.name)
                lease = store.acquire_run_lease(run.id)
            done = set()
    except BaseException:
        if lease is not None:
            _release(store, lease)
        if owned:
            executor.close()
        raise
    keeper = _LeaseKeeper(store, lease, run.name)

    def commit(measurement: Measurement) -> Measurement:
        measurement = replace(measurement, **_complexity_fields(measurement.case.model))
        # The claim is checked and renewed with the row it covers: a run taken over
        # meanwhile gets no row from this sweep.
        with store.transaction():
            keeper.renew()
            return store.add_measurement(run.id, measurement)

    def commit_interrupted(case: Case, started_at: float) -> None:
        # The claim is checked with the row, as above: a run taken over while this
        # process was stopped gets no row from it.
        with contextlib.suppress(run_lease.RunLeaseLostError), store.transaction():
            keeper.renew()
            store.add_measurement(run.id, Measurement.failed(
                case, FailureKind.INTERRUPTED,
                "interrupted while measuring; a resume measures it again",
                status=Status.CANCELLED, started_at=started_at,
                duration_s=time.time() - started_at,
            ))  # fmt: skip

    cases = spec.cases()
    sweep = SweepContext(
        spec=spec, run=run, store=store, todo=[c for c in cases if c not in done],
        observer=observer, cancel=cancel, commit=commit,
        commit_interrupted=commit_interrupted, check_lease=keeper.check,
    )  # fmt: skip
    try:
        keeper.start()
        final_status = executor.run_cases(sweep)
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
            executor.close()
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
