"""The agent's per-client outbound queue: bounded, ordered, every dropped sample counted."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import numpy as np

from core.protocol.events import GAP, TELEMETRY, JobEvent
from core.protocol.framing import LineDecoder
from core.protocol.messages import (
    make_job_event,
    make_notification,
    parse_message,
)
from service.client_queue import ClientQueue


def drain(queue: ClientQueue, max_bytes: int = 1 << 20) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while frames := queue.pop_frames(max_bytes):
        out += [json.loads(f) for f in frames]
    return out


def test_telemetry_drops_the_oldest_and_reports_the_gap_first() -> None:
    queue = ClientQueue(max_telemetry_samples=10)
    queue.push_telemetry(1, [[i, i] for i in range(60)], case_index=2)
    queue.push_telemetry(
        1, np.array([[i, i] for i in range(60, 100)], dtype=np.int64), case_index=2
    )
    msgs = drain(queue)
    assert [m["method"] for m in msgs] == [GAP, TELEMETRY]
    assert msgs[0]["params"] == {"topic": "telemetry", "dropped": 90}
    assert msgs[1]["params"] == {
        "job_id": 1,
        "case_index": 2,
        "samples": [[i, i] for i in range(90, 100)],
    }
    assert (queue.produced, queue.delivered, queue.dropped) == (100, 10, 90)


def test_events_are_never_dropped_and_keep_their_place() -> None:
    queue = ClientQueue(max_telemetry_samples=5)
    for k in range(50):
        queue.push_telemetry(1, [[k * 10 + i, 0] for i in range(10)])
        assert queue.push_event(make_job_event(JobEvent.CASE_STARTED, 1, case_index=k))
    msgs = drain(queue, max_bytes=200)
    events = [m["params"]["case_index"] for m in msgs if m["method"] == JobEvent.CASE_STARTED]
    assert events == list(range(50))
    samples = [s[0] for m in msgs if m["method"] == TELEMETRY for s in m["params"]["samples"]]
    assert samples == list(range(495, 500))  # only the newest survive; all before the last event
    assert msgs[-1]["method"] == JobEvent.CASE_STARTED
    assert queue.delivered + queue.dropped == queue.produced == 500


def test_a_client_with_too_many_pending_events_overflows() -> None:
    queue = ClientQueue(max_telemetry_samples=10, max_events=5)
    accepted = [queue.push_event(make_job_event(JobEvent.QUEUED, i)) for i in range(8)]
    assert accepted == [True] * 5 + [False] * 3 and queue.overflowed
    assert queue.pending_events == 5
    by_bytes = ClientQueue(10, max_event_bytes=1000)
    while by_bytes.push_event(make_notification(JobEvent.FINISHED, {"pad": "x" * 100})):
        pass
    assert by_bytes.overflowed and by_bytes.stats()["event_bytes_pending"] <= 1000


def test_replies_are_held_back_long_before_the_queue_overflows() -> None:
    # The agent stops reading a client's requests while its queue is backlogged, so
    # pipelined replies stop at a quarter of the bounds and leave room for job events.
    queue = ClientQueue(10, max_events=8)
    backlog = []
    for i in range(8):
        backlog.append(queue.replies_backlogged())
        assert queue.push_reply({"jsonrpc": "2.0", "id": i, "result": {}})
    assert backlog == [False, False] + [True] * 6 and not queue.overflowed
    drain(queue)
    assert not queue.replies_backlogged()
    by_bytes = ClientQueue(10, max_event_bytes=1000)
    while not by_bytes.replies_backlogged():
        assert by_bytes.push_reply({"jsonrpc": "2.0", "id": 1, "result": "x" * 50})
    assert 250 <= by_bytes.stats()["event_bytes_pending"] < 1000 and not by_bytes.overflowed


def test_discarding_telemetry_counts_it_as_dropped() -> None:
    queue = ClientQueue(100)
    queue.push_telemetry(1, [[1, 1]] * 30)
    queue.push_memory(1, 5, 12.5, {"cuda:0": 100.0})
    assert queue.discard_telemetry() == 30
    assert drain(queue) == [] and queue.dropped == 30 and queue.stats()["memory_dropped"] == 1


def test_random_interleaving_accounts_for_every_sample() -> None:
    rng = random.Random(7)
    bound = 300
    queue = ClientQueue(max_telemetry_samples=bound, max_memory_readings=8, max_batch_samples=64)
    next_sample = 0
    next_reading = 0
    expected = 0  # the next sample index the client should see
    expected_reading = 0
    seen_events = pushed_events = 0
    event_floor = 0  # samples produced before the last event received
    gap_total = 0
    received = 0
    for _ in range(4000):
        op = rng.random()
        if op < 0.45:
            n = rng.randrange(0, 120)
            job = rng.randrange(3)
            queue.push_telemetry(job, [[next_sample + i, job] for i in range(n)], case_index=job)
            next_sample += n
        elif op < 0.55:
            queue.push_memory(1, next_reading, 10.0, {"gpu": math.nan})
            next_reading += 1
        elif op < 0.65:
            assert queue.push_event(make_job_event(JobEvent.STARTED, 1, seq=next_sample))
            pushed_events += 1
        else:
            max_bytes = rng.choice([1, 300, 2000, 50_000])
            frames = queue.pop_frames(max_bytes)
            if len(frames) > 1:
                assert sum(map(len, frames)) <= max_bytes
            for item in LineDecoder().feed(b"".join(frames)):
                msg = parse_message(item)
                if msg.method == GAP:
                    gap_total += msg.params["dropped"]
                    expected += msg.params["dropped"]
                    expected_reading += msg.params.get("dropped_memory", 0)
                elif msg.method == TELEMETRY:
                    for t_ns, job in msg.params.get("samples", []):
                        assert t_ns == expected and job == msg.params["job_id"]
                        assert t_ns >= event_floor  # nothing older arrives after an event
                        expected += 1
                        received += 1
                    for reading in msg.params.get("memory", []):
                        assert reading["t_ns"] == expected_reading
                        assert reading["device_memory"] == {"gpu": None}
                        expected_reading += 1
                else:
                    seen_events += 1
                    event_floor = msg.params["seq"]
        stats = queue.stats()
        assert stats["pending"] <= bound and stats["memory_pending"] <= 8
        assert queue.produced == next_sample
        assert queue.delivered + queue.dropped + stats["pending"] == queue.produced
    queue.push_telemetry(0, [[next_sample, 0]])  # so any unreported drop gets its gap
    next_sample += 1
    for msg in drain(queue):
        if msg["method"] == GAP:
            gap_total += msg["params"]["dropped"]
        elif msg["method"] == TELEMETRY:
            received += len(msg["params"].get("samples", []))
        else:
            seen_events += 1
    assert queue.dropped > 0 and queue.delivered > 0
    assert queue.delivered + queue.dropped == queue.produced == next_sample
    assert received == queue.delivered and gap_total == queue.dropped
    assert seen_events == pushed_events  # job events are never dropped
    assert queue.pending_events == 0
