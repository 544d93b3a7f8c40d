"""Job events: their wire names, and which of them end a job (core.protocol.events), the
one list the agent, its terminal client and the GUI share."""

from __future__ import annotations

import json

from core.protocol.events import ENDING_STATE, JOB_ENDING_EVENTS, JobEvent, job_event
from core.protocol.framing import encode
from core.protocol.messages import make_job_event


def test_job_events_are_their_wire_names() -> None:
    assert [e.value for e in JobEvent] == [
        "job.queued", "job.started", "job.case_started", "job.case_finished",
        "job.case_failed", "job.case_progress", "job.finished", "job.cancelled", "job.interrupted",
    ]  # fmt: skip
    note = make_job_event(JobEvent.FINISHED, 3, state="finished")
    assert type(note["method"]) is str and note["method"] == "job.finished"
    assert json.loads(encode(note))["method"] == "job.finished"
    assert make_job_event("job.cancelled", 3)["method"] == "job.cancelled"


def test_the_job_ending_events_and_the_state_each_implies() -> None:
    assert {e.value for e in JOB_ENDING_EVENTS} == {"job.finished", "job.cancelled", "job.interrupted"}
    # A plain str from the wire finds its event, as the clients look them up.
    assert "job.interrupted" in JOB_ENDING_EVENTS and "job.case_finished" not in JOB_ENDING_EVENTS
    assert ENDING_STATE[JobEvent("job.cancelled")] == "cancelled"
    assert job_event("job.case_started") is JobEvent.CASE_STARTED
    assert job_event("telemetry") is None and job_event("job.exploded") is None
