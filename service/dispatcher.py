"""The job dispatcher: one thread that takes queued jobs in order and measures them.

It runs one job at a time on the host (so "one job per device" holds trivially, and two
jobs never perturb each other's timings), each case in its own worker through the same
runner as the CLI (``core.measure.runner.run_sweep`` with ``core.measure.supervisor.CaseRunner``).
A job whose executor is Ray (its spec's, or the agent's ``--executor ray``) runs through
the same runner on the nodes of the cluster instead (core.measure.executors), each case
reserving its device there; its events reach the clients the same way.
Every measurement is committed as soon as it exists. Events and telemetry leave through
the LoopBridge, never touching a socket from this thread.

Stopping the agent (SIGTERM) cancels the running case; the cases completed stay, the
cut-off case is recorded as cancelled, and the job and its run become interrupted, so
``resume`` measures the rest (the cut-off case again from scratch).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from typing import Any

import numpy as np

from core.backends.base import PHASE_MEASURE
from core.errors import BackbenchError, StoreError, UsageError
from core.measure.executors.base import CaseExecutor
from core.measure.runner import RUN_CANCELLED, RUN_INTERRUPTED, SweepObserver, run_sweep
from core.measure.runtimes import (
    VERSIONS_TIMEOUT_S,
    ProbeCancelled,
    RuntimeProbeError,
    WorkerRuntime,
    check_resume_runtime,
    with_runtime,
)
from core.measure.supervisor import CaseObserver, CaseRunner
from core.measure.worker import WorkerJob
from core.protocol.events import JobEvent
from core.protocol.messages import make_job_event
from core.results import EXECUTOR_RAY, Case, Measurement, Status
from core.store import Store
from service import systemd
from service.config import AgentConfig
from service.jobs import CANCELLED, FAILED, FINISHED, INTERRUPTED, Job, JobQueue
from service.telemetry import LoopBridge

log = logging.getLogger(__name__)

PROGRESS_EVENT_S = 0.5  # an accuracy case's progress events, at most twice a second

WORKER_FAULTS = ("segfault", "hang", "alloc", "exit", "spin")
TEST_FAULTS = (*WORKER_FAULTS, "diskfull")
IDLE_POLL_S = 1.0


class _FaultyCaseRunner(CaseRunner):
    """Test hook (BACKBENCH_ALLOW_FAULTS=1 only): inject a fault into chosen cases."""

    def __init__(
        self, faults: dict[int, str], cases: list[Case], store: Store, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.faults = faults
        self.cases = cases
        self.store = store

    def run(
        self,
        job: WorkerJob,
        observer: CaseObserver | None = None,
        cancel: threading.Event | None = None,
    ) -> Measurement:
        fault = self.faults.get(self.cases.index(job.case))
        if fault == "diskfull":
            # The store can grow no further from now on, as on a full disk.
            pages = int(self.store.query("PRAGMA page_count")[0][0])
            self.store.query(f"PRAGMA max_page_count = {pages}")
            log.warning("test fault: the store is capped at %d pages", pages)
        elif fault:
            job = replace(job, fault=fault)
        return super().run(job, observer, cancel)


class _JobObserver(SweepObserver):
    def __init__(self, dispatcher: JobDispatcher, job: Job) -> None:
        self.dispatcher = dispatcher
        self.bridge = dispatcher.bridge
        self.job = job
        self.cases = job.spec.cases()
        self.case_index: int | None = None
        self.ok = 0
        self.failed = 0
        self._last_progress = 0.0

    def on_case_start(self, index: int, total: int, case: Case) -> None:
        self.case_index = self.cases.index(case)
        self.dispatcher._set_progress(self.job, self.case_index, "starting")
        self.bridge.event(
            make_job_event(
                JobEvent.CASE_STARTED,
                self.job.id,
                case_index=self.case_index,
                cases_total=len(self.cases),
                case=case.to_dict(),
                label=case.label(),
            ),
            self.job.id,
        )

    def on_case_placed(self, index: int, total: int, case: Case, node: dict[str, Any]) -> None:
        # A case on a cluster node (the Ray executor): it measures there, with no phases
        # streamed back; the status shows it measuring until its result arrives.
        self.dispatcher._set_progress(self.job, self.cases.index(case), PHASE_MEASURE)

    def on_case_end(self, index: int, total: int, measurement: Measurement) -> None:
        case_index = self.cases.index(measurement.case)
        if measurement.status is Status.OK:
            self.ok += 1
            msg = make_job_event(
                JobEvent.CASE_FINISHED,
                self.job.id,
                case_index=case_index,
                measurement=measurement.to_dict(),
            )
        else:
            self.failed += 1
            failure = measurement.failure.value if measurement.failure else None
            msg = make_job_event(
                JobEvent.CASE_FAILED,
                self.job.id,
                case_index=case_index,
                status=measurement.status.value,
                failure=failure,
                reason=f"{failure}: {measurement.error}" if failure else measurement.error,
                measurement=measurement.to_dict(),
            )
        self.case_index = None
        self.bridge.event(msg, self.job.id)

    def on_phase(self, phase: str) -> None:
        if self.case_index is not None:
            self.dispatcher._set_progress(self.job, self.case_index, phase)

    def on_samples(self, samples: np.ndarray) -> None:
        if self.case_index is not None:
            self.bridge.samples(self.job.id, self.case_index, samples)

    def on_memory(self, rss_mb: float | None, device_memory: dict[str, float]) -> None:
        if self.case_index is not None:
            self.bridge.memory(self.job.id, self.case_index, rss_mb, device_memory)

    def on_progress(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self.case_index is None or (done < total and now - self._last_progress < PROGRESS_EVENT_S):
            return
        self._last_progress = now
        self.bridge.event(
            make_job_event(
                JobEvent.CASE_PROGRESS, self.job.id, case_index=self.case_index,
                images_done=int(done), images_total=int(total),
            ),
            self.job.id,
        )  # fmt: skip


class JobDispatcher(threading.Thread):
    def __init__(
        self,
        queue: JobQueue,
        store: Store,
        config: AgentConfig,
        bridge: LoopBridge,
        manifest: dict[str, Any],
    ) -> None:
        super().__init__(name="backbench-dispatcher", daemon=True)
        self.queue = queue
        self.store = store
        self.config = config
        self.bridge = bridge
        self.manifest = manifest
        self._wake = threading.Event()
        self._cancel = threading.Event()
        self._stopping = False
        self._running: Job | None = None
        self.progress: dict[str, Any] | None = None  # replaced whole, read from the loop

    # -- called from the loop --------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def cancel(self, job_id: int) -> bool:
        """Cancel the running job if it is ``job_id``; True when it was running."""
        running = self._running
        if running is not None and running.id == job_id:
            self._cancel.set()
            return True
        return False

    def stop(self) -> None:
        """Take no more jobs and cancel the running case."""
        self._stopping = True
        self._cancel.set()
        self._wake.set()

    @property
    def running_job_id(self) -> int | None:
        running = self._running
        return None if running is None else running.id

    # -- dispatcher thread -------------------------------------------------------------------

    def _set_progress(self, job: Job, case_index: int | None, phase: str) -> None:
        cases = job.spec.cases()
        self.progress = {
            "job_id": job.id,
            "case_index": case_index,
            "cases_total": len(cases),
            "phase": phase,
            "case": cases[case_index].label() if case_index is not None else None,
        }

    def run(self) -> None:
        # Logging is set up after the configuration is read: its notes (which file was
        # loaded, with which runtimes) are logged here, as the agent starts.
        self.config.log_startup(log)
        while not self._stopping:
            try:
                job = self.queue.next_queued()
            except StoreError as exc:
                log.error("Cannot read the job queue: %s", exc)
                job = None
            if job is None:
                self._wake.wait(IDLE_POLL_S)
                self._wake.clear()
                continue
            try:
                self._run_job(job)
            except Exception:  # a bug: keep the agent serving, and say where to look
                log.exception("Job %d failed inside the agent", job.id)
                self._finish(job, FAILED, "internal error in the agent; its log has the details")
            finally:
                self._running = None
                self.progress = None
                systemd.notify("STATUS=idle")

    def _case_runner(self, job: Job, runtime: WorkerRuntime | None = None) -> CaseRunner:
        kwargs: dict[str, Any] = {
            "worker_command": list(self.config.worker_command),
            "limits": self.config.limits,
            "max_mem_mb": self.config.max_mem_mb,
            "runtime": runtime,
        }
        faults = job.options.get("test_faults") or {}
        if self.config.allow_faults and faults and job.attempts == 1:
            parsed = {int(k): str(v) for k, v in faults.items()}
            return _FaultyCaseRunner(parsed, job.spec.cases(), self.store, **kwargs)
        return CaseRunner(**kwargs)

    def _cluster(self, job: Job) -> CaseExecutor | None:
        """The Ray executor of a job that runs on a cluster, connected and its nodes
        checked; or None, once a cluster that cannot run the job (unreachable, no node with
        its resource, nodes of another version) has ended it as failed, with the reason."""
        from core.measure.executors.ray_executor import RayExecutor

        faults = job.options.get("test_faults") or {}
        cluster = RayExecutor(
            self.config.ray_address,
            worker_command=self.config.custom_worker_command(),
            limits=self.config.limits,
            max_mem_mb=self.config.max_mem_mb,
            faults={int(k): str(v) for k, v in faults.items() if v in WORKER_FAULTS}
            if self.config.allow_faults and job.attempts == 1 else None,
        )  # fmt: skip
        try:
            cluster.configure(job.spec)
        except BackbenchError as exc:
            cluster.close()
            self._finish(job, FAILED, str(exc))
            return None
        except BaseException:
            cluster.close()
            raise
        return cluster

    def _run_job(self, job: Job) -> None:
        self._cancel = threading.Event()
        if self._stopping:
            return
        self._running = job  # before the state change, so a cancel from now on reaches it
        started = self.queue.mark_started(job.id)
        if started is None:  # cancelled between the queue read and now
            return
        job = started
        self._running = job
        # The dispatcher alone knows when a job runs, so it tells systemd (`systemctl status`).
        systemd.notify(f"STATUS=running job {job.id}")
        self._set_progress(job, None, "starting")
        observer = _JobObserver(self, job)
        runtime = None
        manifest = self.manifest
        cluster: CaseExecutor | None = None
        if self.config.executor_of(job.spec) == EXECUTOR_RAY:
            # The nodes name their runtimes in their own configuration: nothing to prepare here.
            cluster = self._cluster(job)
            if cluster is None:
                return
            manifest = cluster.run_manifest(self.manifest)
        elif job.spec.runtime is not None:
            prepared = self._prepare_runtime(job)
            if prepared is None:
                return
            runtime, manifest = prepared
        try:
            if job.run_id is None:
                run = self.store.create_run(
                    job.spec, manifest, name=job.spec.name or f"job-{job.id}"
                )
                self.queue.set_run(job.id, run.id)
            else:
                run = self.store.get_run(job.run_id)
            self.bridge.event(
                make_job_event(
                    JobEvent.STARTED,
                    job.id,
                    run_id=run.id,
                    run_name=run.name,
                    cases_total=job.cases_total,
                    attempt=job.attempts,
                ),
                job.id,
            )
            log.info("Job %d started (run %d, attempt %d)", job.id, run.id, job.attempts)
            if cluster is not None:
                final = run_sweep(
                    job.spec, self.store, observer=observer, cancel=self._cancel,
                    executor=cluster, resume=run,
                )  # fmt: skip
            else:
                # One runner a job: its fork servers live as long as the job.
                with self._case_runner(job, runtime) as case_runner:
                    final = run_sweep(
                        job.spec,
                        self.store,
                        observer=observer,
                        cancel=self._cancel,
                        case_runner=case_runner,
                        resume=run,
                    )
        except StoreError as exc:  # a full disk, a store gone bad: the store itself is intact
            reason = str(exc)
            if observer.case_index is not None:
                self.bridge.event(
                    make_job_event(
                        JobEvent.CASE_FAILED,
                        job.id,
                        case_index=observer.case_index,
                        status=Status.FAILED.value,
                        failure="error",
                        reason=reason,
                    ),
                    job.id,
                )
            self._finish(job, FAILED, reason)
            return
        finally:
            if cluster is not None:
                cluster.close()  # a Ray instance of its own stops with the job
        summary = {"run_id": final.id, "cases_ok": observer.ok, "cases_failed": observer.failed}
        if self._stopping:
            try:
                self.store.set_run_status(final.id, RUN_INTERRUPTED)
            except StoreError as exc:
                log.error("Could not mark run %d interrupted: %s", final.id, exc)
            self._finish(
                job, INTERRUPTED, "the agent was stopped; `resume` finishes the job", summary
            )
        elif final.status == RUN_CANCELLED:
            self._finish(job, CANCELLED, "cancelled by a client", summary)
        else:
            self._finish(job, FINISHED, None, summary)

    def _prepare_runtime(self, job: Job) -> tuple[WorkerRuntime, dict[str, Any]] | None:
        """The job's worker runtime, from this agent's own configuration (the name was
        checked at submit, but the configuration may have changed since), and the run's
        manifest: a new run's records the runtime's interpreter, a resumed run's must be
        the same runtime as it recorded. Asking the interpreter takes at most
        VERSIONS_TIMEOUT_S and gives way to a cancel or stop. None when the job ended."""
        assert job.spec.runtime is not None
        try:
            runtime = self.config.runtime(job.spec.runtime)
            versions = runtime.versions(VERSIONS_TIMEOUT_S, cancel=self._cancel)
            if job.run_id is None:
                # The worker interpreter's Python and packages, not the agent's.
                return runtime, with_runtime(self.manifest, runtime, versions)
            run = self.store.get_run(job.run_id)
            check_resume_runtime(run.manifest, runtime, str(run.id), versions)
            return runtime, self.manifest  # a resumed run keeps its own manifest
        except ProbeCancelled:
            if self._stopping:
                self._finish(job, INTERRUPTED, "the agent was stopped; `resume` finishes the job")
            else:
                self._finish(job, CANCELLED, "cancelled by a client")
        except RuntimeProbeError as exc:
            # Its stderr is for the log only; clients get what failed and where to look.
            log.error("Job %d: worker runtime %r: %s\n%s", job.id, job.spec.runtime, exc, exc.detail)
            self._finish(
                job, FAILED,
                f"worker runtime {job.spec.runtime!r} did not answer; the agent's log has the details",
            )  # fmt: skip
        except (UsageError, StoreError) as exc:  # gone from the configuration; changed; no run
            self._finish(job, FAILED, str(exc))
        except BackbenchError as exc:
            log.error("Job %d: worker runtime %r: %s", job.id, job.spec.runtime, exc)
            self._finish(job, FAILED, f"worker runtime {job.spec.runtime!r} cannot be used; the agent's log has the details")
        return None

    def _finish(
        self, job: Job, state: str, reason: str | None, summary: dict[str, Any] | None = None
    ) -> None:
        try:
            self.queue.finish(job.id, state, reason)
        except StoreError as exc:
            log.error("Could not record job %d as %s: %s", job.id, state, exc)
        # A failed job ends with job.finished too; its state says "failed".
        event = {INTERRUPTED: JobEvent.INTERRUPTED, CANCELLED: JobEvent.CANCELLED}.get(
            state, JobEvent.FINISHED
        )
        self.bridge.event(
            make_job_event(event, job.id, state=state, reason=reason, **(summary or {})), job.id
        )
        level = logging.INFO if state in (FINISHED, CANCELLED) else logging.WARNING
        log.log(level, "Job %d %s%s", job.id, state, f": {reason}" if reason else "")

    def wait_stopped(self, timeout_s: float) -> bool:
        """After ``stop``: wait for the running job to wind down; False on timeout."""
        self.join(timeout_s)
        return not self.is_alive()
