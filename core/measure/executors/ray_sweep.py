"""The driver's side of a Ray sweep: submit each case as a task, follow the tasks as they
report, commit each result as it arrives, and handle what goes wrong (core.measure.
executors.ray_executor connects to the cluster and checks it first).

Each task is a generator (core.measure.executors.node): its ``started`` event says which
node took the case, its ``result`` carries the measurement and the node's manifest.
``ray.wait`` on the tasks' generators returns whichever has news, so results stream back
in the order they finish. A Ray system error in a task's place (its node or worker died)
is a lost node: a failed attempt, and the case re-queued once. Cancelling, or Ctrl-C,
cancels every outstanding task and keeps what arrives within the grace period.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from core import __version__, zoo
from core.measure.executors.base import RUN_CANCELLED, RUN_FINISHED, SweepContext, source_of
from core.measure.executors.node import (
    EVENT_REFUSED,
    EVENT_RESULT,
    EVENT_STARTED,
    measure_on_node,
    sha256_of,
)
from core.measure.executors.resources import (
    lost_resource_hint,
    node_has,
    resource_of,
    task_options,
)
from core.measure.supervisor import PhaseLimits
from core.measure.worker import WorkerJob
from core.results import Case, FailureKind, Measurement, Status

log = logging.getLogger(__name__)

POLL_S = 0.2  # how often the driver looks at cancel, the lease and lost resources
STARVE_CHECK_S = 2.0


@dataclass(frozen=True)
class DriverOptions:
    """What a sweep passes to its nodes' CaseRunners, and its own fault settings (see
    RayExecutor)."""

    worker_command: list[str] | None = None
    worker_env: dict[str, str] | None = None
    limits: PhaseLimits = field(default_factory=PhaseLimits)
    max_mem_mb: int | None = None
    faults: dict[int, str] = field(default_factory=dict)
    starve_s: float = 60.0
    cancel_grace_s: float = 10.0


@dataclass
class Flight:
    """One attempt of a case, submitted as a task."""

    index: int
    case: Case
    requeued: bool = False  # this attempt is the case's re-queue after a lost node
    disturbed_retries: int = 0
    node: dict[str, Any] | None = None
    started_at: float | None = None  # unix time, from the node, once it started


class RaySweep:
    """One sweep's tasks on the cluster, driven from the caller's thread (``ray`` is the
    connected ray module)."""

    def __init__(self, ray: Any, sweep: SweepContext, options: DriverOptions) -> None:
        self.options = options
        self.ray = ray
        self.sweep = sweep
        self.spec = sweep.spec
        self.total = len(sweep.todo)
        self.flights: dict[Any, Flight] = {}  # ObjectRefGenerator -> its attempt
        self.announced: set[int] = set()  # cases whose on_case_start was called
        self.starved_since: dict[str, float] = {}
        self.bundles: dict[str, dict[str, Any]] = {}
        self.remote = self.ray.remote(max_retries=0)(measure_on_node)
        self.settings = self._runner_settings()

    def _runner_settings(self) -> dict[str, Any]:
        spec, ex = self.spec, self.options
        limits = ex.limits
        if spec.measure_timeout_s:
            limits = replace(limits, measure_s=spec.measure_timeout_s)
        return {
            "worker_start": spec.worker_start,
            "disturbed_threshold": spec.disturbed_threshold,
            "max_mem_mb": spec.max_mem_mb or ex.max_mem_mb,
            "limits": asdict(limits),
            "worker_command": ex.worker_command,
            "env": ex.worker_env,
        }

    # -- files ---------------------------------------------------------------------------------

    def _ship(self, path: str) -> dict[str, Any]:
        """A file named on the driver, into the object store once, with its sha256 (an
        OpenVINO IR travels with its .bin)."""
        found = self.bundles.get(path)
        if found is not None:
            return found
        first = Path(path)
        paths = [first]
        if first.suffix.lower() == ".xml" and first.with_suffix(".bin").is_file():
            paths.append(first.with_suffix(".bin"))
        files = []
        for item in paths:
            data = item.read_bytes()
            files.append({
                "name": item.name, "sha256": sha256_of(item), "size": len(data),
                "ref": [self.ray.put(data)],  # nested: the node fetches it only on a cache miss
            })  # fmt: skip
        bundle = {"source": str(first), "files": files}
        self.bundles[path] = bundle
        return bundle

    def _payload(self, flight: Flight) -> dict[str, Any]:
        spec, case = self.spec, flight.case
        job = WorkerJob(case, source_of(spec, case.model), spec.stopping, profile_layers=spec.profile_layers)
        fault = self.options.faults.get(flight.index)
        if fault:
            job = replace(job, fault=fault)
        card = zoo.get_card(case.model)
        weights = spec.weights.get(case.model)
        return {
            "backbench": __version__,
            "resource": resource_of(case),
            "case": case.to_dict(),
            "job": job.to_dict(),
            "model_file": self._ship(card.path) if card.path else None,
            "weights_file": self._ship(weights) if weights else None,
            "runner": self.settings,
            "runtime": spec.runtime,
        }

    def submit(self, flight: Flight) -> None:
        gen = self.remote.options(**task_options(flight.case)).remote(self._payload(flight))
        self.flights[gen] = flight

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> str:
        for index, case in enumerate(self.sweep.todo):
            self.submit(Flight(index, case))
        next_starve_check = time.monotonic() + STARVE_CHECK_S
        try:
            while self.flights:
                if self.sweep.cancelled:
                    self.stop(interrupted=False)
                    return RUN_CANCELLED
                self.sweep.check_lease()
                ready, _ = self.ray.wait(list(self.flights), num_returns=1, timeout=POLL_S)
                for gen in ready:
                    self.advance(gen)
                if time.monotonic() >= next_starve_check:
                    self.check_starved()
                    next_starve_check = time.monotonic() + STARVE_CHECK_S
        except KeyboardInterrupt:
            self.stop(interrupted=True)
            raise
        return RUN_FINISHED

    def _next_event(self, gen: Any) -> dict[str, Any] | BaseException | None:
        """The task's next event, the Ray error in its place, or None at its end."""
        try:
            ref = next(gen)
        except StopIteration:
            return None
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            return exc

    def advance(self, gen: Any) -> None:
        flight = self.flights[gen]
        event = self._next_event(gen)
        if event is None:
            del self.flights[gen]
            self.end(flight, self._failed(flight, FailureKind.ERROR, "the task ended without a result"))
        elif isinstance(event, BaseException):
            del self.flights[gen]
            self.task_failed(flight, event)
        elif event.get("event") == EVENT_STARTED:
            self.started(flight, dict(event.get("node") or {}), float(event.get("t") or time.time()))
        elif event.get("event") == EVENT_RESULT:
            del self.flights[gen]
            self.result(flight, event)
        elif event.get("event") == EVENT_REFUSED:
            del self.flights[gen]
            node = dict(event.get("node") or {})
            flight.node = node
            self.lost(flight, f"{_where(node)} refused the case: {event.get('reason')}")
        else:
            log.warning("unknown event from a case task: %r", event.get("event"))

    def started(self, flight: Flight, node: dict[str, Any], t: float) -> None:
        flight.node, flight.started_at = node, t
        observer = self.sweep.observer
        if flight.index not in self.announced:
            self.announced.add(flight.index)
            observer.on_case_start(flight.index, self.total, flight.case)
        observer.on_case_placed(flight.index, self.total, flight.case, node)

    def result(self, flight: Flight, event: dict[str, Any]) -> None:
        measurement = Measurement.from_dict(event["measurement"])
        manifest = event.get("manifest")
        if isinstance(manifest, dict):
            measurement = replace(measurement, environment_id=self.sweep.store.add_environment(manifest))
        if flight.index not in self.announced:  # its start event came in the same batch
            self.started(flight, dict(measurement.conditions.get("node") or {}), measurement.started_at or time.time())
        stored = self.sweep.commit(measurement)
        retry = (
            stored.disturbed
            and flight.disturbed_retries < self.spec.retry_disturbed
            and not self.sweep.cancelled
        )
        if retry:
            log.info("%s was disturbed (%.2f cores of other work); measuring again",
                     flight.case.label(), stored.interference or 0.0)
            self.sweep.observer.on_case_retry(flight.index, self.total, stored)
            self.submit(Flight(flight.index, flight.case, flight.requeued, flight.disturbed_retries + 1))
            return
        self.sweep.observer.on_case_end(flight.index, self.total, stored)

    def task_failed(self, flight: Flight, exc: BaseException) -> None:
        errors = self.ray.exceptions
        first_line = (str(exc).strip().splitlines() or [""])[0][:300]
        if isinstance(exc, errors.TaskCancelledError):
            self.cut_off(flight, interrupted=False)
        elif isinstance(exc, errors.OutOfMemoryError):
            # Ray's memory monitor stopped the task: the case needed more than the node has.
            self.end(flight, self._failed(
                flight, FailureKind.OOM, f"Ray stopped the task on {_where(flight.node)} for lack of memory"
            ))  # fmt: skip
        elif isinstance(exc, errors.RayTaskError):
            # backbench's own code raised on the node: a bug, the same on any node.
            log.error("case %s failed on %s:\n%s", flight.case.label(), _where(flight.node), exc)
            self.end(flight, self._failed(
                flight, FailureKind.ERROR, f"the task failed on {_where(flight.node)}: {first_line}"
            ))  # fmt: skip
        else:
            self.lost(flight, f"{_where(flight.node)} was lost ({type(exc).__name__}: {first_line})")

    def lost(self, flight: Flight, reason: str) -> None:
        """A node lost, or refusing: a failed attempt, and the case re-queued once."""
        requeue = not flight.requeued and not self.sweep.cancelled
        text = reason + ("; re-queued on another node with the same resource" if requeue else "")
        failed = self._failed(flight, FailureKind.INTERRUPTED, text)
        if not requeue:
            self.end(flight, failed)
            return
        log.warning("%s: %s", flight.case.label(), text)
        stored = self.sweep.commit(failed)
        self.sweep.observer.on_case_retry(flight.index, self.total, stored)
        self.submit(Flight(flight.index, flight.case, requeued=True, disturbed_retries=flight.disturbed_retries))

    def _failed(self, flight: Flight, kind: FailureKind, text: str, status: Status = Status.FAILED) -> Measurement:
        started = flight.started_at or time.time()
        conditions = {"node": flight.node} if flight.node else {}
        return Measurement.failed(
            flight.case, kind, text, status=status, started_at=started,
            duration_s=max(0.0, time.time() - started), conditions=conditions,
        )  # fmt: skip

    def end(self, flight: Flight, measurement: Measurement) -> None:
        stored = self.sweep.commit(measurement)
        if flight.index not in self.announced:
            self.announced.add(flight.index)
            self.sweep.observer.on_case_start(flight.index, self.total, flight.case)
        self.sweep.observer.on_case_end(flight.index, self.total, stored)

    def cut_off(self, flight: Flight, *, interrupted: bool) -> None:
        """A case stopped by Ctrl-C (``interrupted``) or a cancel: recorded as cut off
        when it had started (a resume measures it again); nothing when it had not."""
        if flight.started_at is None:
            return
        if interrupted:
            self.sweep.commit_interrupted(flight.case, flight.started_at)
        else:
            self.end(flight, self._failed(flight, FailureKind.INTERRUPTED, "cancelled", status=Status.CANCELLED))

    def stop(self, *, interrupted: bool) -> None:
        """Cancel every outstanding task; keep what arrives within the grace period."""
        ray = self.ray
        for gen in list(self.flights):
            ray.cancel(gen, force=False)  # a running task stops its worker; a queued one never runs
        deadline = time.monotonic() + self.options.cancel_grace_s
        while self.flights and time.monotonic() < deadline:
            ready, _ = ray.wait(list(self.flights), num_returns=1, timeout=POLL_S)
            for gen in ready:
                flight = self.flights[gen]
                event = self._next_event(gen)
                if isinstance(event, dict) and event.get("event") == EVENT_STARTED:
                    flight.node = dict(event.get("node") or {})
                    flight.started_at = float(event.get("t") or time.time())
                    continue
                del self.flights[gen]
                if isinstance(event, dict) and event.get("event") == EVENT_RESULT:
                    self.result(replace(flight, disturbed_retries=self.spec.retry_disturbed), event)
                else:
                    self.cut_off(flight, interrupted=interrupted)
        for gen, flight in list(self.flights.items()):
            ray.cancel(gen, force=True)
            self.cut_off(flight, interrupted=interrupted)
        self.flights.clear()

    def check_starved(self) -> None:
        """Fail the waiting cases whose resource no alive node declares any more (their
        last node was lost) once that has lasted ``starve_s``."""
        waiting: dict[str, list[Any]] = {}
        for gen, flight in self.flights.items():
            if flight.started_at is None:
                waiting.setdefault(resource_of(flight.case), []).append(gen)
        if not waiting:
            self.starved_since.clear()
            return
        alive = [n for n in self.ray.nodes() if n.get("Alive")]
        now = time.monotonic()
        for resource, gens in waiting.items():
            if any(node_has(n.get("Resources") or {}, resource) for n in alive):
                self.starved_since.pop(resource, None)
                continue
            since = self.starved_since.setdefault(resource, now)
            if now - since < self.options.starve_s:
                continue
            for gen in gens:
                self.ray.cancel(gen, force=False)
                flight = self.flights.pop(gen)
                self.end(flight, self._failed(
                    flight, FailureKind.ERROR,
                    f"no alive node of the cluster declares {resource!r} any more. {lost_resource_hint(resource)}",
                ))  # fmt: skip


def _where(node: dict[str, Any] | None) -> str:
    if not node:
        return "its node"
    ident = str(node.get("id") or "")[:12]
    return f"node {node.get('ip') or node.get('host')} ({ident})" if ident else f"node {node.get('ip')}"
