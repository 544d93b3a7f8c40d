"""What the agent pushes: job events, telemetry, gaps, and the subscription topics.

``JobEvent`` is the one list of job notification names, and ``JOB_ENDING_EVENTS`` the
one answer to "is this job over?", for the agent, its terminal client and the GUI alike.
"""

from __future__ import annotations

from enum import Enum


class JobEvent(str, Enum):
    """A job notification's method name. A str, so it compares, hashes and JSON-encodes
    as its wire value; still, use ``.value`` where a plain str is meant, since ``str()``
    and f-strings give the member's name on Python 3.11+."""

    QUEUED = "job.queued"
    STARTED = "job.started"
    CASE_STARTED = "job.case_started"
    CASE_FINISHED = "job.case_finished"  # carries the Measurement dict
    CASE_FAILED = "job.case_failed"  # carries the reason
    # An accuracy case's images: images_done of images_total (at most twice a second).
    CASE_PROGRESS = "job.case_progress"
    FINISHED = "job.finished"  # also a failed job: its params say state="failed"
    CANCELLED = "job.cancelled"
    INTERRUPTED = "job.interrupted"


# The events after which a job sends nothing more, with the job state each implies when
# the event carries none (a job.finished of a failed job says state="failed" itself).
ENDING_STATE: dict[JobEvent, str] = {
    JobEvent.FINISHED: "finished",
    JobEvent.CANCELLED: "cancelled",
    JobEvent.INTERRUPTED: "interrupted",
}
JOB_ENDING_EVENTS: frozenset[JobEvent] = frozenset(ENDING_STATE)


def job_event(method: str) -> JobEvent | None:
    """The JobEvent a notification's method names, or None for any other notification."""
    try:
        return JobEvent(method)
    except ValueError:
        return None


TELEMETRY = "telemetry"
GAP = "gap"
TOPIC_JOBS = "jobs"
TOPIC_TELEMETRY = "telemetry"
TOPICS = (TOPIC_JOBS, TOPIC_TELEMETRY)
