"""The sweep runner, shared by the CLI and the agent.

It validates a RunSpec up front (models, backend, device, precision), records the run
and its environment manifest, then measures each case in its own worker (or inline) and
commits each measurement as soon as it exists: a case completed before a crash or
Ctrl-C is never lost. An interrupted run resumes at case granularity: completed cases
stand, a case cut off mid-measurement is measured again from scratch.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import replace
from typing import Any

from core import zoo
from core.backends.base import ModelSource
from core.errors import BackbenchError, ModelFileError, UsageError
from core.measure.environment import manifest as host_manifest
from core.measure.supervisor import CaseObserver, CaseRunner, run_inline
from core.measure.worker import WorkerJob
from core.results import Case, Measurement, Run, RunSpec, Status
from core.store import Store

log = logging.getLogger(__name__)

RUN_RUNNING = "running"
RUN_FINISHED = "finished"
RUN_INTERRUPTED = "interrupted"
RUN_CANCELLED = "cancelled"


class SweepObserver(CaseObserver):
    """Sweep-level hooks on top of the per-case ones; the defaults do nothing."""

    def on_case_start(self, index: int, total: int, case: Case) -> None:
        return None

    def on_case_end(self, index: int, total: int, measurement: Measurement) -> None:
        return None


def validate_spec(spec: RunSpec) -> RunSpec:
    """Fail before anything runs: unknown models (with suggestions), bad weights paths, an
    unavailable backend or device, an unsupported precision. Returns the spec with model
    file paths made absolute (workers may run in another directory)."""
    from core.backends import check_case

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
    spec = replace(spec, models=tuple(models))
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
) -> Run:
    """Run every case of ``spec`` (or the unfinished ones of ``resume``) and store them.

    KeyboardInterrupt marks the run interrupted and propagates, after the worker is
    stopped; what was completed stays in the store. ``validate=False`` is for callers
    that already ran ``validate_spec`` (the CLI does, before it draws a progress bar).
    """
    observer = observer or SweepObserver()
    if resume is not None:
        run = resume
        spec = run.spec
        done = store.completed_cases(run.id)
        store.set_run_status(run.id, RUN_RUNNING)
    else:
        if validate:
            spec = validate_spec(spec)
        run = store.create_run(spec, manifest if manifest is not None else host_manifest(), name=spec.name)
        done = set()
    runner = case_runner or CaseRunner()
    cases = spec.cases()
    todo = [c for c in cases if c not in done]
    total = len(todo)
    final_status = RUN_FINISHED
    try:
        for index, case in enumerate(todo):
            if cancel is not None and cancel.is_set():
                final_status = RUN_CANCELLED
                break
            observer.on_case_start(index, total, case)
            job = WorkerJob(case, ModelSource(case.model, spec.weights.get(case.model)), spec.stopping)
            if spec.isolate:
                measurement = runner.run(job, observer, cancel)
            else:
                measurement = run_inline(job, observer)
            measurement = replace(measurement, **_complexity_fields(case.model))
            measurement = store.add_measurement(run.id, measurement)
            observer.on_case_end(index, total, measurement)
            if measurement.status is Status.CANCELLED:
                final_status = RUN_CANCELLED
                break
    except BaseException:
        store.set_run_status(run.id, RUN_INTERRUPTED)
        raise
    store.set_run_status(run.id, final_status)
    return store.get_run(run.id)
