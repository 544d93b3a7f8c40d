"""Hands job events and telemetry from the dispatcher thread to the event loop, in order.

The dispatcher's observer hooks run on the dispatcher thread (inside the supervisor's read
loop), many times a second. Each hook only appends to a deque under a lock; the loop is
woken with ``call_soon_threadsafe`` at most once per pending wake-up: at once for a job
event or a memory reading (10 Hz), and at most every ``min_interval_s`` for samples. So
clients get at most 50 sample messages a second (20 at the worker's 50 ms flush), each
with many samples, whatever the sample rate, and telemetry produced before an event
always reaches a client before that event.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from typing import Any, Protocol

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_MIN_INTERVAL_S = 0.02


class TelemetrySink(Protocol):
    """Implemented by ``service.connections.Connections``; called on the loop thread."""

    def publish_event(self, msg: dict[str, Any], job_id: int) -> None: ...

    def publish_samples(self, job_id: int, case_index: int, samples: list[list[int]]) -> None: ...

    def publish_memory(self, job_id: int, case_index: int, reading: dict[str, Any]) -> None: ...


class LoopBridge:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sink: TelemetrySink,
        min_interval_s: float = DEFAULT_MIN_INTERVAL_S,
    ) -> None:
        self.loop = loop
        self.sink = sink
        self.min_interval_s = min_interval_s
        self._lock = threading.Lock()
        self._items: deque[tuple[Any, ...]] = deque()
        self._timer_pending = False
        self._urgent_pending = False
        self._last_drain = 0.0
        self.samples_in = 0  # for the benchmark: what the dispatcher handed over

    # -- dispatcher thread -----------------------------------------------------------------

    def samples(self, job_id: int, case_index: int, pairs: np.ndarray) -> None:
        self.samples_in += len(pairs)
        self._push(("samples", job_id, case_index, pairs), urgent=False)

    def memory(
        self, job_id: int, case_index: int, rss_mb: float | None, device_memory: dict[str, float]
    ) -> None:
        # 10 Hz already: sent at once, so that it never delays samples behind the throttle.
        reading = {
            "t_ns": time.perf_counter_ns(),
            "rss_mb": rss_mb,
            "device_memory": dict(device_memory),
        }
        self._push(("memory", job_id, case_index, reading), urgent=True)

    def event(self, msg: dict[str, Any], job_id: int) -> None:
        self._push(("event", job_id, msg), urgent=True)

    def _push(self, item: tuple[Any, ...], urgent: bool) -> None:
        with self._lock:
            self._items.append(item)
            if urgent:
                wake, self._urgent_pending = not self._urgent_pending, True
            else:
                wake, self._timer_pending = not self._timer_pending, True
        if wake:
            try:
                self.loop.call_soon_threadsafe(self._drain_now if urgent else self._arm)
            except RuntimeError:  # the loop is closed: the agent is exiting
                log.debug("dropping telemetry: the event loop is closed")

    # -- loop thread ---------------------------------------------------------------------

    def _arm(self) -> None:
        delay = max(0.0, self._last_drain + self.min_interval_s - time.monotonic())
        self.loop.call_later(delay, self._drain_timer)

    def _drain_timer(self) -> None:
        with self._lock:
            self._timer_pending = False
        self.drain()

    def _drain_now(self) -> None:
        with self._lock:
            self._urgent_pending = False
        self.drain()

    def drain(self) -> None:
        """Publish everything pending, in order; consecutive sample chunks of one case
        are merged into one list."""
        with self._lock:
            items = list(self._items)
            self._items.clear()
        if any(item[0] == "samples" for item in items):
            self._last_drain = time.monotonic()  # the throttle paces sample messages only
        run: list[np.ndarray] = []
        run_key: tuple[int, int] | None = None

        def flush_run() -> None:
            if run and run_key is not None:
                merged = run[0] if len(run) == 1 else np.concatenate(run)
                self.sink.publish_samples(run_key[0], run_key[1], merged.tolist())
            run.clear()

        for item in items:
            kind = item[0]
            if kind == "samples":
                key = (item[1], item[2])
                if key != run_key:
                    flush_run()
                    run_key = key
                run.append(item[3])
                continue
            flush_run()
            run_key = None
            try:
                if kind == "memory":
                    self.sink.publish_memory(item[1], item[2], item[3])
                else:
                    self.sink.publish_event(item[2], item[1])
            except Exception:  # one bad publish must not lose the rest of the batch
                log.exception("publishing %s failed", kind)
        flush_run()
