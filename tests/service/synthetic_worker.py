"""A stand-in worker that measures nothing and streams samples at a chosen rate.

It speaks the real worker pipe protocol (core.measure.pipe, through core.measure.worker's Channel and
Heartbeat), so an agent started with
``--worker-command "python -m tests.service.synthetic_worker"`` exercises its whole telemetry
path (pipe, supervisor, fan-out, client queues, sockets) at a known load. Used by
bench/telemetry.py and the agent's stalled-client test; not for measurements.

``BACKBENCH_SYNTHETIC_RATE`` sets samples per second (default 1000; 0 means as fast as
possible). A case lasts the stopping rule's ``max_time_s``, capped at ``max_iters``
samples. Each sample's latency is ``BACKBENCH_SYNTHETIC_LATENCY_NS`` (default 1 ms).
``BACKBENCH_SYNTHETIC_MIN_ITERS`` (set) streams at least ``min_iters`` samples, as a slow
model would. ``BACKBENCH_SYNTHETIC_FLUSH_MS`` replaces the real worker's flush interval (20 ms), to
see what another value would give.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import core.measure.worker as core_worker
from core.backends.base import PHASE_LOAD, PHASE_MEASURE, PHASE_WARMUP
from core.measure.pipe import KIND_RESULT
from core.measure.worker import Channel, Heartbeat, WorkerJob, _set_parent_death_signal

RATE_ENV = "BACKBENCH_SYNTHETIC_RATE"
LATENCY_ENV = "BACKBENCH_SYNTHETIC_LATENCY_NS"
FLUSH_ENV = "BACKBENCH_SYNTHETIC_FLUSH_MS"  # what-if: another worker flush interval
MIN_ITERS_ENV = "BACKBENCH_SYNTHETIC_MIN_ITERS"  # set: stream at least min_iters samples


def stream(
    channel: Channel, rate: float, duration_s: float, max_samples: int, latency_ns: int
) -> int:
    """Send samples stamped with CLOCK_MONOTONIC, paced at ``rate`` per second."""
    period_ns = int(1e9 / rate) if rate > 0 else 0
    start = time.perf_counter_ns()
    end = start + int(duration_s * 1e9)
    due = start
    sent = 0
    while sent < max_samples:
        now = time.perf_counter_ns()
        if now >= end:
            break
        if period_ns:
            due += period_ns
            if due > now:
                time.sleep((due - now) / 1e9)
                now = time.perf_counter_ns()
        channel.sample(now, latency_ns)
        sent += 1
    channel.flush()
    return sent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="synthetic worker", description=argparse.SUPPRESS)
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--parent-pid", type=int, default=0)
    args = parser.parse_args(argv)
    _set_parent_death_signal(args.parent_pid)
    if os.environ.get(FLUSH_ENV):
        core_worker.FLUSH_INTERVAL_NS = int(float(os.environ[FLUSH_ENV]) * 1e6)
    channel = Channel(args.fd)
    job = WorkerJob.from_dict(json.loads(sys.stdin.read()))
    heartbeat = Heartbeat(channel)
    heartbeat.start()
    channel.phase(PHASE_LOAD)
    channel.phase(PHASE_WARMUP)
    channel.phase(PHASE_MEASURE)
    rate = float(os.environ.get(RATE_ENV, "1000"))
    latency_ns = int(os.environ.get(LATENCY_ENV, "1000000"))
    t0 = time.perf_counter_ns()
    duration_s = job.rule.max_time_s
    if os.environ.get(MIN_ITERS_ENV):  # like a real slow model: min_iters before it may stop
        duration_s = max(duration_s, job.rule.min_iters / rate if rate > 0 else 0.0)
    sent = stream(channel, rate, duration_s, job.rule.max_iters, latency_ns)
    wall_ns = time.perf_counter_ns() - t0
    heartbeat.stop()
    channel.send(
        KIND_RESULT,
        {
            "n": sent,
            "first_inference_ns": latency_ns,
            "warmup_iters": 0,
            "target_met": False,
            "images": sent * job.case.batch_size,
            "wall_ns": wall_ns,
            "config": {"synthetic": True, "rate": rate},
            "device_memory": {},
            "t_ns": time.perf_counter_ns(),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
