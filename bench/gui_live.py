"""Live view under load: redraw rate and event-loop lag while telemetry streams in.

A stand-in agent in a subprocess speaks the real protocol on a Unix socket and, once
asked, streams telemetry at a fixed rate (default 20 batches/s of 50 samples = 1000
samples/s, plus a memory reading every 100 ms) for ``--seconds``. The GUI side is the
real path: AgentClient (QLocalSocket, LineDecoder, parse_message, numpy) -> telemetry
signal -> LivePanel ring buffers -> the LiveView's ~30 Hz redraw timer, in a
1400x900 offscreen window.

Measured, in the same process and session: an idle baseline (connected, nothing
streaming), then the stream. Event-loop lag is how late a 5 ms probe QTimer fires;
redraws/s counts redraws (by default only ticks with new data draw; --every-tick draws
at every tick, the view's capacity), and ticks/s the redraw timer's ticks.
Not a test: nothing is asserted.

    python bench/gui_live.py [--seconds 10] [--batches-per-s 20] [--samples-per-batch 50]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from PySide6.QtCore import QElapsedTimer, QEventLoop, Qt, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

PROBE_MS = 5

# The stand-in agent: hello, subscribe, then on "status" stream telemetry for a while.
STREAMER = textwrap.dedent(
    """
    import json, socket, sys, time
    import numpy as np
    from core.protocol.events import JobEvent
    from core.protocol.framing import encode
    from core.protocol.methods import make_hello_result
    from core.protocol.messages import make_job_event, make_result, make_telemetry
    path, seconds, rate, per_batch = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    conn, _ = server.accept()
    reader = conn.makefile("rb")
    rng = np.random.default_rng(0)
    hello = make_hello_result(agent_version="bench", boot_id="b", host={"host": "bench"})
    answers = {"hello": hello, "subscribe": {"topics": ["jobs", "telemetry"], "running": None},
               "list_devices": {"backends": {"torch": ["cpu"]}}, "list_models": {"models": []}}
    while True:  # answer everything until "status", the signal to start streaming
        request = json.loads(reader.readline())
        conn.sendall(encode(make_result(request["id"], answers.get(request["method"], {}))))
        if request["method"] == "status":
            break
    conn.sendall(encode(make_job_event(JobEvent.STARTED, 1, cases_total=1, run_id=1)))
    conn.sendall(encode(make_job_event(JobEvent.CASE_STARTED, 1, case_index=0, cases_total=1, label="bench b1")))
    start = time.perf_counter()
    sent = 0
    for i in range(int(seconds * rate)):
        due = start + i / rate
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        now = time.perf_counter_ns()
        latency = rng.lognormal(np.log(5e6), 0.2, per_batch).astype(np.int64)
        t = now - np.cumsum(latency[::-1])[::-1]
        samples = np.column_stack([t, latency]).tolist()
        memory = [{"t_ns": now, "rss_mb": 500.0 + i * 0.01, "device_memory": {"cuda:0": 120.0}}] if i % max(1, int(rate / 10)) == 0 else None
        conn.sendall(encode(make_telemetry(1, 0, samples=samples, memory=memory)))
        sent += per_batch
    conn.sendall(encode(make_job_event(JobEvent.FINISHED, 1, state="finished")))
    print(json.dumps({"samples_sent": sent, "stream_s": time.perf_counter() - start}), flush=True)
    reader.readline()
    """
)


class Probe:
    """A 5 ms PreciseTimer; lag = how much later than 5 ms after the last fire it fires."""

    def __init__(self) -> None:
        self.clock = QElapsedTimer()
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(PROBE_MS)
        self.timer.timeout.connect(self._fire)
        self.stamps: list[int] = []

    def start(self) -> None:
        self.stamps.clear()
        self.clock.start()
        self.timer.start()

    def _fire(self) -> None:
        self.stamps.append(self.clock.nsecsElapsed())

    def stop(self) -> np.ndarray:
        self.timer.stop()
        gaps_ms = np.diff(np.asarray(self.stamps, dtype=np.float64)) / 1e6
        return np.clip(gaps_ms - PROBE_MS, 0.0, None)


def run_phase(app: QApplication, probe: Probe, seconds: float, panel, live_view, until=None) -> dict[str, float]:
    redraws0 = panel.redraw_count
    ticks = [0]

    def counter() -> None:
        ticks[0] += 1

    live_view.timer.timeout.connect(counter)
    samples0 = panel.samples_received
    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    watch = QTimer()
    watch.timeout.connect(lambda: loop.quit() if until and until() else None)
    watch.start(50)
    probe.start()
    start = time.perf_counter()
    loop.exec()  # the real event loop, as the application runs it
    elapsed = time.perf_counter() - start
    watch.stop()
    lag = probe.stop()
    live_view.timer.timeout.disconnect(counter)
    return {
        "seconds": elapsed,
        "redraws_per_s": (panel.redraw_count - redraws0) / elapsed,
        "ticks_per_s": ticks[0] / elapsed,
        "samples_per_s": (panel.samples_received - samples0) / elapsed,
        "lag_p50_ms": float(np.percentile(lag, 50)) if len(lag) else float("nan"),
        "lag_p99_ms": float(np.percentile(lag, 99)) if len(lag) else float("nan"),
        "lag_max_ms": float(lag.max()) if len(lag) else float("nan"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--baseline-seconds", type=float, default=5.0)
    parser.add_argument("--batches-per-s", type=float, default=20.0)
    parser.add_argument("--samples-per-batch", type=int, default=50)
    parser.add_argument("--every-tick", action="store_true",
                        help="redraw at every timer tick, new data or not (the view's capacity)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()

    app = QApplication([sys.argv[0]])
    from gui.agents import AgentRegistry
    from gui.live_view import LiveView
    from gui.settings import AgentSpec

    folder = Path(tempfile.mkdtemp(prefix="bb-live-"))
    sock = folder / "s.sock"
    streamer = subprocess.Popen(
        [sys.executable, "-c", STREAMER, str(sock), str(args.seconds), str(args.batches_per_s), str(args.samples_per_batch)],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not sock.exists():
        if time.monotonic() > deadline or streamer.poll() is not None:
            raise SystemExit("the stand-in agent did not start")
        time.sleep(0.02)
    registry = AgentRegistry(persist=False)
    live_view = LiveView(registry)
    live_view.resize(1400, 900)
    live_view.show()
    connection = registry.add(AgentSpec(name="bench", socket_path=str(sock)))
    while not connection.is_connected:
        app.processEvents()
        time.sleep(0.005)
    panel = live_view.panels["bench"]
    if args.every_tick:
        live_view.timer.timeout.connect(panel.invalidate)  # after tick(): the next tick draws
    probe = Probe()
    baseline = run_phase(app, probe, args.baseline_seconds, panel, live_view)
    connection.client.request("status", {}, lambda _r, _e: None)  # the stand-in starts streaming
    stream = run_phase(app, probe, args.seconds, panel, live_view,
                       until=lambda: panel.job_state == "finished")  # fmt: skip
    deadline = time.monotonic() + 60  # a loaded machine may lag: read until the stream ends
    while panel.job_state != "finished" and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.005)
    connection.stop()
    report = json.loads(streamer.communicate(timeout=30)[0].strip().splitlines()[-1])

    rate = args.batches_per_s * args.samples_per_batch
    print(f"Live view, {rate:.0f} samples/s as {args.batches_per_s:g} batches/s x {args.samples_per_batch}, "
          f"{stream['seconds']:.1f} s, 1400x900 offscreen, one panel")  # fmt: skip
    print(f"  samples received: {panel.samples_received} of {report['samples_sent']} sent")
    print(f"  {'':26}{'idle baseline':>16}{'streaming':>12}")
    for key, label in (("redraws_per_s", "redraws /s"), ("ticks_per_s", "redraw timer ticks /s"),
                       ("lag_p50_ms", "loop lag p50 (ms)"), ("lag_p99_ms", "loop lag p99 (ms)"),
                       ("lag_max_ms", "loop lag max (ms)")):  # fmt: skip
        print(f"  {label:26}{baseline[key]:>16.2f}{stream[key]:>12.2f}")
    ratio = stream["lag_p99_ms"] / baseline["lag_p99_ms"] if baseline["lag_p99_ms"] > 0 else float("inf")
    print(f"  p99 lag, streaming / idle: {ratio:.2f}x")
    bound = "every tick (--every-tick)" if args.every_tick else (
        f"bounded by {args.batches_per_s:g} batches/s: unchanged data is not redrawn")
    print(f"  goal: >= 30 redraws/s and p99 lag < 50 ms -> redraws {stream['redraws_per_s']:.1f}/s "
          f"({bound}), p99 lag {stream['lag_p99_ms']:.1f} ms")  # fmt: skip
    if args.json:
        print(json.dumps({"baseline": baseline, "stream": stream, "sent": report}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
