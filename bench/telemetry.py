"""Telemetry benchmark of the agent (issue 4, "What it must show" 2).

1. End to end at a fixed rate: an agent whose worker is the synthetic worker (the real
   pipe protocol, 1000 samples/s for 10 s); one client subscribed to telemetry. Reports
   the achieved rate, loss, the delivery latency of each sample (sample timestamp to
   receipt by the client; both CLOCK_MONOTONIC) and of the newest sample of each message
   (the agent's own hop, without the worker's 20 ms batching), and the agent's CPU%.
2. The cost of streaming: a real ONNX Runtime case measured with 0, 1 and 5 telemetry
   subscribers, interleaved over rounds; reports the median latency per setting and its
   ratio to the 0-subscriber baseline of the same session.

Run: ``.venv/bin/python bench/telemetry.py [--rate 1000] [--seconds 10] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from core.measure.worker import FLUSH_INTERVAL_NS
from core.protocol.events import JOB_ENDING_EVENTS, JobEvent
from service.client import AgentClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.service.agentlib import Agent, make_tiny_onnx  # noqa: E402  (as the tests start them)


def start_agent(root: Path, models: Path, *args: str, env: dict[str, str] | None = None) -> Agent:
    """A real agent, as the service tests start it, with its own store."""
    db = root / f"{uuid.uuid4().hex}.db"
    return Agent(root, "--model-dir", str(models), *args, env=env, faults=False, db=db).start()


def spec(stopping: dict[str, Any], model: str = "bench.onnx") -> dict[str, Any]:
    return {
        "models": [model],
        "backend": "onnxruntime",
        "device": "cpu",
        "batch_sizes": [1],
        "stopping": stopping,
    }


def run_job(client: AgentClient, job_spec: dict[str, Any], on_note: Any = None) -> dict[str, Any]:
    job_id = client.call("submit", spec=job_spec, client_request_id=uuid.uuid4().hex)["job"][
        "job_id"
    ]
    measurement: dict[str, Any] = {}
    while True:
        note = client.notification(timeout_s=300)
        if note is None:
            raise RuntimeError("the job did not finish")
        if on_note is not None:
            on_note(note)
        params = note["params"]
        if note["method"] == JobEvent.CASE_FINISHED and params["job_id"] == job_id:
            measurement = params["measurement"]
        if note["method"] in JOB_ENDING_EVENTS and params.get("job_id") == job_id:
            return measurement


def end_to_end(
    root: Path, models: Path, rate: int, seconds: float, flush_ms: float | None = None
) -> dict[str, Any]:
    env = {"BACKBENCH_SYNTHETIC_RATE": str(rate)}
    if flush_ms is not None:
        env["BACKBENCH_SYNTHETIC_FLUSH_MS"] = str(flush_ms)
    agent = start_agent(
        root, models, "--worker-command", f"{sys.executable} -m tests.service.synthetic_worker", env=env
    )
    try:
        ps = psutil.Process(agent.proc.pid)
        with AgentClient(agent.socket) as client:
            client.call("subscribe", topics=["jobs", "telemetry"])
            quick = {
                "min_iters": 1,
                "max_time_s": 0.2,
                "target_ci": 0.5,
                "warmup_iters": 1,
                "warmup_time_s": 0,
            }
            run_job(client, spec(quick))  # warm-up: the framework probe and a first worker
            per_sample: list[int] = []
            newest: list[int] = []
            stamps: list[int] = []
            messages = dropped = 0

            def on_note(note: dict[str, Any]) -> None:
                nonlocal messages, dropped
                now = time.perf_counter_ns()
                if note["method"] == "gap":
                    dropped += note["params"]["dropped"]
                samples = note["params"].get("samples") if note["method"] == "telemetry" else None
                if samples:
                    messages += 1
                    per_sample.extend(now - s[0] for s in samples)
                    newest.append(now - samples[-1][0])
                    stamps.extend(s[0] for s in samples)

            cpu0 = ps.cpu_times()
            t0 = time.monotonic()
            stopping = {
                "min_iters": 1,
                "max_time_s": seconds,
                "target_ci": 0.5,
                "warmup_iters": 1,
                "warmup_time_s": 0,
                "max_iters": 10_000_000,
            }
            measurement = run_job(client, spec(stopping), on_note)
            wall = time.monotonic() - t0
            cpu1 = ps.cpu_times()
    finally:
        agent.stop()
    span_s = (stamps[-1] - stamps[0]) / 1e9 if len(stamps) > 1 else float("nan")
    ms = np.array(per_sample) / 1e6
    hop = np.array(newest) / 1e6
    return {
        "target_rate": rate,
        "seconds": seconds,
        "worker_flush_ms": flush_ms or FLUSH_INTERVAL_NS / 1e6,
        "produced": measurement["stats"]["n"],
        "received": len(per_sample),
        "dropped": dropped,
        "achieved_rate": len(per_sample) / span_s,
        "messages_per_s": messages / span_s,
        "latency_ms_p50": float(np.percentile(ms, 50)),
        "latency_ms_p99": float(np.percentile(ms, 99)),
        "agent_hop_ms_p50": float(np.percentile(hop, 50)),
        "agent_hop_ms_p99": float(np.percentile(hop, 99)),
        "agent_cpu_percent": 100 * ((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)) / wall,
    }


def _subscriber(
    path: Path, ready: threading.Event, stop: threading.Event, counts: list[int]
) -> None:
    with AgentClient(path) as client:
        client.call("subscribe", topics=["telemetry"])
        ready.set()
        while not stop.is_set():
            note = client.notification(timeout_s=0.2)
            if note is not None and note["method"] == "telemetry":
                counts[0] += len(note["params"].get("samples") or [])


def streaming_cost(root: Path, models: Path, rounds: int, seconds: float) -> dict[str, Any]:
    agent = start_agent(root, models)
    medians: dict[int, list[float]] = {0: [], 1: [], 5: []}
    iterations: dict[int, list[int]] = {0: [], 1: [], 5: []}
    try:
        with AgentClient(agent.socket) as control:
            control.call("subscribe", topics=["jobs"])
            stopping = {
                "min_iters": 10,
                "max_time_s": seconds,
                "target_ci": 1e-4,
                "warmup_iters": 20,
                "warmup_time_s": 0.3,
            }
            run_job(control, spec({**stopping, "max_time_s": 0.5}))  # warm-up
            for r in range(rounds):
                order = [0, 1, 5][r % 3 :] + [0, 1, 5][: r % 3]
                for subscribers in order:
                    stop = threading.Event()
                    threads = []
                    counts = [[0] for _ in range(subscribers)]
                    for i in range(subscribers):
                        ready = threading.Event()
                        thread = threading.Thread(
                            target=_subscriber, args=(agent.socket, ready, stop, counts[i])
                        )
                        thread.start()
                        ready.wait(30)
                        threads.append(thread)
                    m = run_job(control, spec(stopping))
                    time.sleep(0.3)  # let the subscribers drain
                    stop.set()
                    for thread in threads:
                        thread.join()
                    medians[subscribers].append(m["stats"]["median_ns"] / 1e6)
                    iterations[subscribers].append(m["stats"]["n"])
    finally:
        agent.stop()
    base = statistics.median(medians[0])
    return {
        str(k): {
            "median_ms": statistics.median(v),
            "ratio_to_0": statistics.median(v) / base,
            "per_round_ms": v,
            "iterations": iterations[k],
        }
        for k, v in medians.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--case-seconds", type=float, default=2.0)
    parser.add_argument(
        "--what-if-flush-ms",
        type=float,
        default=0.0,
        help="also run part 1 with this worker flush interval (0: skip)",
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bb-telemetry-"))
    models = root / "models"
    models.mkdir()
    make_tiny_onnx(models / "bench.onnx", channels=16, size=112)
    machine = {
        "cpu": psutil.cpu_count(),
        "load_avg_1m_at_start": os.getloadavg()[0],
        "python": sys.version.split()[0],
    }
    runs = [end_to_end(root, models, args.rate, args.seconds)]
    if args.what_if_flush_ms:
        runs.append(end_to_end(root, models, args.rate, args.seconds, args.what_if_flush_ms))
    cost = streaming_cost(root, models, args.rounds, args.case_seconds)
    machine["load_avg_1m_at_end"] = os.getloadavg()[0]
    report = {"machine": machine, "end_to_end": runs, "streaming_cost": cost}
    print(json.dumps(report, indent=2))
    for e2e in runs:
        print(
            f"\nEnd to end at {e2e['target_rate']}/s for {e2e['seconds']:g} s, worker flush "
            f"{e2e['worker_flush_ms']:g} ms: achieved {e2e['achieved_rate']:.0f}/s, {e2e['received']} of "
            f"{e2e['produced']} samples delivered ({e2e['dropped']} dropped), {e2e['messages_per_s']:.0f} "
            f"messages/s; delivery latency p50 {e2e['latency_ms_p50']:.1f} ms, p99 "
            f"{e2e['latency_ms_p99']:.1f} ms (agent hop p50 {e2e['agent_hop_ms_p50']:.1f} ms, p99 "
            f"{e2e['agent_hop_ms_p99']:.1f} ms); agent CPU {e2e['agent_cpu_percent']:.1f}%"
        )
    print()
    for k, v in cost.items():
        print(
            f"{k} subscribers: median {v['median_ms']:.4f} ms, ratio {v['ratio_to_0']:.4f} "
            f"(rounds {', '.join(f'{x:.4f}' for x in v['per_round_ms'])})"
        )
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
