"""What the agent pushes: job events, telemetry, gaps, and the subscription topics.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

# Notification names pushed by the agent.
JOB_QUEUED = "job.queued"
JOB_STARTED = "job.started"
JOB_CASE_STARTED = "job.case_started"
JOB_CASE_FINISHED = "job.case_finished"  # carries the Measurement dict
JOB_CASE_FAILED = "job.case_failed"  # carries the reason
JOB_FINISHED = "job.finished"
JOB_CANCELLED = "job.cancelled"
JOB_INTERRUPTED = "job.interrupted"
JOB_EVENTS = (
    JOB_QUEUED, JOB_STARTED, JOB_CASE_STARTED, JOB_CASE_FINISHED,
    JOB_CASE_FAILED, JOB_FINISHED, JOB_CANCELLED, JOB_INTERRUPTED,
)  # fmt: skip
TELEMETRY = "telemetry"
GAP = "gap"
TOPIC_JOBS = "jobs"
TOPIC_TELEMETRY = "telemetry"
TOPICS = (TOPIC_JOBS, TOPIC_TELEMETRY)
