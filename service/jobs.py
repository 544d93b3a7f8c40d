"""The persistent job queue: one table (``agent_jobs``) in the results store.

A job is a run spec waiting to be measured. It is FIFO by id, survives restarts (the
store is WAL with synchronous=FULL), and is idempotent by the client's request id: a
client that resubmits after a lost reply gets the same job back, never a second one.

States: queued -> running -> finished | failed | cancelled | interrupted. A job left
"running" by an agent that died is marked interrupted at the next start; ``resume``
puts an interrupted (or cancelled, or failed) job back in the queue, and it continues in
the same run from its first unfinished case.

The agent measures a job's run under the same run lease as ``backbench run`` does
(core.store.lease, taken by the runner), so an agent and a CLI never measure one run
side by side: ``resume`` refuses a job whose run another live process is measuring, and
``recover`` leaves such a run's status to that process.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from core.errors import ProtocolError
from core.protocol.codes import BUSY, NOT_FOUND, REQUEST_FAILED
from core.results import RunSpec
from core.store import Store

log = logging.getLogger(__name__)

QUEUED = "queued"
RUNNING = "running"
FINISHED = "finished"
FAILED = "failed"
CANCELLED = "cancelled"
INTERRUPTED = "interrupted"
JOB_STATES = (QUEUED, RUNNING, FINISHED, FAILED, CANCELLED, INTERRUPTED)
TERMINAL_STATES = frozenset({FINISHED, FAILED, CANCELLED, INTERRUPTED})
RESUMABLE_STATES = frozenset({INTERRUPTED, CANCELLED, FAILED})

_COLUMNS = (
    "id, client_request_id, state, spec_json, options_json, run_id, reason, attempts, "
    "submitted_at, started_at, finished_at, peer_uid"
)


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    client_request_id: str
    state: str
    spec: RunSpec
    options: dict[str, Any] = field(default_factory=dict)
    run_id: int | None = None
    reason: str | None = None
    attempts: int = 0
    submitted_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    peer_uid: int | None = None

    @property
    def cases_total(self) -> int:
        return len(self.spec.cases())

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.id,
            "client_request_id": self.client_request_id,
            "state": self.state,
            "spec": self.spec.to_dict(),
            "run_id": self.run_id,
            "reason": self.reason,
            "attempts": self.attempts,
            "cases_total": self.cases_total,
            "submitted_at": self.submitted_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }

    @classmethod
    def from_row(cls, row: Any) -> Job:
        return cls(
            id=int(row["id"]),
            client_request_id=str(row["client_request_id"]),
            state=str(row["state"]),
            spec=RunSpec.from_dict(json.loads(row["spec_json"])),
            options=dict(json.loads(row["options_json"] or "{}")),
            run_id=None if row["run_id"] is None else int(row["run_id"]),
            reason=row["reason"],
            attempts=int(row["attempts"]),
            submitted_at=float(row["submitted_at"]),
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            peer_uid=row["peer_uid"],
        )


def job_not_found(job_id: int) -> ProtocolError:
    return ProtocolError(
        NOT_FOUND, f"No job {job_id} on this agent.", "List the jobs with `backbench remote jobs`."
    )


class JobQueue:
    """Job rows in ``store``; every method is one short transaction, safe from any thread."""

    def __init__(self, store: Store, max_queued: int = 1000) -> None:
        self.store = store
        self.max_queued = max_queued

    def _one(self, where: str, params: tuple[Any, ...]) -> Job | None:
        rows = self.store.query(f"SELECT {_COLUMNS} FROM agent_jobs WHERE {where}", params)
        return Job.from_row(rows[0]) if rows else None

    def get(self, job_id: int) -> Job:
        job = self._one("id = ?", (int(job_id),))
        if job is None:
            raise job_not_found(job_id)
        return job

    def submit(
        self, spec: RunSpec, client_request_id: str, options: dict[str, Any], peer_uid: int | None
    ) -> tuple[Job, bool]:
        """(job, created). A known client_request_id returns its job unchanged."""
        with self.store.transaction() as conn:
            existing = self._one("client_request_id = ?", (client_request_id,))
            if existing is not None:
                return existing, False
            queued = conn.execute(
                "SELECT COUNT(*) FROM agent_jobs WHERE state = ?", (QUEUED,)
            ).fetchone()[0]
            if queued >= self.max_queued:
                raise ProtocolError(
                    BUSY,
                    f"The agent's queue is full ({queued} jobs waiting).",
                    "Wait for some to finish, or cancel some.",
                )
            cursor = conn.execute(
                "INSERT INTO agent_jobs (client_request_id, state, spec_json, options_json, "
                "submitted_at, peer_uid) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    client_request_id,
                    QUEUED,
                    json.dumps(spec.to_dict()),
                    json.dumps(options),
                    time.time(),
                    peer_uid,
                ),
            )
            job_id = int(cursor.lastrowid or 0)
        log.info(
            "Job %d queued (request %s): %d cases", job_id, client_request_id, len(spec.cases())
        )
        return self.get(job_id), True

    def next_queued(self) -> Job | None:
        return self._one("state = ? ORDER BY id LIMIT 1", (QUEUED,))

    def list(self, limit: int = 50) -> list[Job]:
        rows = self.store.query(
            f"SELECT {_COLUMNS} FROM agent_jobs ORDER BY id DESC LIMIT ?", (int(limit),)
        )
        return [Job.from_row(row) for row in rows]

    def counts(self) -> dict[str, int]:
        rows = self.store.query("SELECT state, COUNT(*) FROM agent_jobs GROUP BY state")
        return {str(row[0]): int(row[1]) for row in rows}

    def position(self, job_id: int) -> int | None:
        """1-based place among the queued jobs, or None when it is not queued."""
        rows = self.store.query(
            "SELECT COUNT(*) FROM agent_jobs WHERE state = ? AND id <= ? "
            "AND EXISTS (SELECT 1 FROM agent_jobs WHERE id = ? AND state = ?)",
            (QUEUED, int(job_id), int(job_id), QUEUED),
        )
        count = int(rows[0][0]) if rows else 0
        return count or None

    def mark_started(self, job_id: int) -> Job | None:
        """queued -> running; None when the job is no longer queued (cancelled meanwhile)."""
        with self.store.transaction() as conn:
            cursor = conn.execute(
                "UPDATE agent_jobs SET state = ?, attempts = attempts + 1, started_at = ?, "
                "finished_at = NULL, reason = NULL WHERE id = ? AND state = ?",
                (RUNNING, time.time(), int(job_id), QUEUED),
            )
            if cursor.rowcount == 0:
                return None
        return self.get(job_id)

    def set_run(self, job_id: int, run_id: int) -> None:
        with self.store.transaction() as conn:
            conn.execute(
                "UPDATE agent_jobs SET run_id = ? WHERE id = ?", (int(run_id), int(job_id))
            )

    def finish(self, job_id: int, state: str, reason: str | None = None) -> None:
        if state not in TERMINAL_STATES:
            raise ValueError(f"{state!r} is not a terminal job state")
        with self.store.transaction() as conn:
            conn.execute(
                "UPDATE agent_jobs SET state = ?, reason = ?, finished_at = ? WHERE id = ?",
                (state, reason, time.time(), int(job_id)),
            )

    def cancel_queued(self, job_id: int) -> bool:
        """Cancel a job that has not started (or was interrupted); False otherwise."""
        with self.store.transaction() as conn:
            cursor = conn.execute(
                "UPDATE agent_jobs SET state = ?, reason = ?, finished_at = ? "
                "WHERE id = ? AND state IN (?, ?)",
                (CANCELLED, "cancelled by a client", time.time(), int(job_id), QUEUED, INTERRUPTED),
            )
            return cursor.rowcount > 0

    def requeue(self, job_id: int) -> Job:
        """``resume``: put a stopped job back in the queue, keeping its run."""
        job = self.get(job_id)
        if job.state not in RESUMABLE_STATES:
            hint = (
                "Submit its spec again to measure it anew."
                if job.state == FINISHED
                else "Only interrupted, cancelled or failed jobs can be resumed."
            )
            raise ProtocolError(
                REQUEST_FAILED, f"Job {job_id} is {job.state}; there is nothing to resume.", hint
            )
        if job.run_id is not None:
            busy = self.store.live_run_lease(job.run_id)
            if busy is not None:
                holder = busy.holder
                raise ProtocolError(
                    REQUEST_FAILED,
                    f"Job {job_id}'s run (id {job.run_id}) is being measured by another "
                    f"process: {holder.describe()}.",
                    f"Wait for it to finish, or stop that process (pid {holder.pid}), then "
                    "resume the job.",
                )
        with self.store.transaction() as conn:
            conn.execute(
                "UPDATE agent_jobs SET state = ?, reason = NULL, finished_at = NULL WHERE id = ?",
                (QUEUED, int(job_id)),
            )
        log.info("Job %d re-queued to resume run %s", job_id, job.run_id)
        return self.get(job_id)

    def recover(self) -> list[int]:
        """At startup: jobs left running by an agent that died become interrupted, and
        so do their runs; the dead agent's claims on those runs are dropped. A run that
        another live process has claimed since (a `backbench run --resume`) is left to
        it. Returns the jobs' ids."""
        reason = "the agent stopped while the job ran; `resume` finishes it"
        with self.store.transaction() as conn:
            rows = conn.execute(
                "SELECT id, run_id FROM agent_jobs WHERE state = ?", (RUNNING,)
            ).fetchall()
            for row in rows:
                conn.execute(
                    "UPDATE agent_jobs SET state = ?, reason = ?, finished_at = ? WHERE id = ?",
                    (INTERRUPTED, reason, time.time(), int(row["id"])),
                )
                if row["run_id"] is not None:
                    run_id = int(row["run_id"])
                    self.store.drop_dead_run_lease(run_id)
                    busy = self.store.live_run_lease(run_id)
                    if busy is not None:
                        log.warning(
                            "Run %d of job %d is being measured by %s; its status is left to it",
                            run_id, int(row["id"]), busy.holder.describe(),
                        )  # fmt: skip
                        continue
                    conn.execute(
                        "UPDATE runs SET status = ?, finished_at = ? WHERE id = ? AND status = ?",
                        (INTERRUPTED, time.time(), int(row["run_id"]), RUNNING),
                    )
        ids = [int(row["id"]) for row in rows]
        if ids:
            log.warning("Jobs %s were running when the agent stopped; marked interrupted", ids)
        return ids
