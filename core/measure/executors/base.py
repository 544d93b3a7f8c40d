"""The interface between the sweep runner and whatever runs its cases.

``core.measure.runner.run_sweep`` owns a run: it validates the spec, records the run and
its manifest, holds the run's lease and sets its final status. How the cases are then
measured is an executor's: the local one measures them one after another in worker
processes on this host; the Ray one sends each to a node of a cluster. Either way every
measurement comes back through ``SweepContext.commit``, which writes it to the store
(one row a case, committed as it arrives, under the run's lease), and the sweep's
observer sees the same hooks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.backends.base import ModelSource
from core.measure.supervisor import CaseObserver
from core.results import Case, Measurement, Run, RunSpec

if TYPE_CHECKING:
    from core.measure.runtimes import WorkerRuntime
    from core.store import Store

# How a sweep ended, as its run's status.
RUN_FINISHED = "finished"
RUN_CANCELLED = "cancelled"


class SweepObserver(CaseObserver):
    """Sweep-level hooks on top of the per-case ones; the defaults do nothing.

    The local executor measures one case at a time, so the per-case hooks (phases,
    samples, memory) belong to the case last started. The Ray executor runs several at
    once on other machines and calls the sweep-level hooks only: a case starts when a
    node takes it (``on_case_placed`` says which), and ends when its result is stored.
    """

    def on_case_start(self, index: int, total: int, case: Case) -> None:
        return None

    def on_case_placed(self, index: int, total: int, case: Case, node: dict[str, Any]) -> None:
        """A node of a cluster took the case (each attempt): ``node`` has its ``id``,
        ``ip`` and ``host``, and the ``resource`` the case holds there."""
        return None

    def on_case_retry(self, index: int, total: int, measurement: Measurement) -> None:
        """An attempt was stored and the case is measured again: it was disturbed, or
        its node was lost (the Ray executor re-queues it once)."""
        return None

    def on_case_end(self, index: int, total: int, measurement: Measurement) -> None:
        return None

    def on_convert(self, done: int, total: int, model: str) -> None:
        """Up-front conversions: ``done`` of ``total`` models converted (or found cached)."""
        return None


def source_of(spec: RunSpec, model: str) -> ModelSource:
    """What a case of ``spec`` loads: the model, its weights file and class count."""
    num_classes = spec.accuracy.num_classes if spec.accuracy is not None else None
    return ModelSource(model, spec.weights.get(model), num_classes)


@dataclass
class SweepContext:
    """What an executor gets from the runner for one sweep.

    ``todo`` are the cases to measure, in the spec's order. ``commit`` stores one
    attempt of a case (adding the model's params and FLOPs, renewing the run's lease in
    the same transaction) and returns it as stored, with its attempt number.
    ``commit_interrupted`` stores the attempt cut off by Ctrl-C, so that a resume
    measures the case again as its next attempt. ``check_lease`` raises once another
    process took the run over.
    """

    spec: RunSpec
    run: Run
    store: Store
    todo: list[Case]
    observer: SweepObserver
    cancel: threading.Event | None
    commit: Callable[[Measurement], Measurement]
    commit_interrupted: Callable[[Case, float], None]
    check_lease: Callable[[], None]

    @property
    def cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()


class CaseExecutor:
    """Runs a sweep's cases. Subclasses: ``LocalExecutor``, ``RayExecutor``.

    The runner calls, in order: ``configure(spec)`` (the spec's settings; refuse what
    this executor cannot run, before anything is recorded), ``prestart(spec)`` (start
    slow things early), ``run_manifest(manifest)`` for a new run, ``run_cases(sweep)``,
    and, if it made the executor, ``close()``.
    """

    name: str = ""
    # The worker interpreter the cases run on, when it is not this one (a runtime).
    runtime: WorkerRuntime | None = None
    # Whether a case's backend and device can be checked in this process before the
    # sweep (they can not when the cases run on other machines).
    checks_devices_here: bool = True

    def configure(self, spec: RunSpec) -> None:
        return None

    def prestart(self, spec: RunSpec) -> None:
        return None

    def run_manifest(self, manifest: dict[str, Any] | None) -> dict[str, Any]:
        """The manifest of a new run (``manifest`` when the caller gave one)."""
        raise NotImplementedError

    def run_cases(self, sweep: SweepContext) -> str:
        """Measure ``sweep.todo`` and commit each result; the run's final status
        (RUN_FINISHED or RUN_CANCELLED). KeyboardInterrupt propagates, after the case
        or cases cut off are recorded and their workers stopped."""
        raise NotImplementedError

    def close(self) -> None:
        return None

    def __enter__(self) -> CaseExecutor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
