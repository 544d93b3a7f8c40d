"""The timed loop, against a fake PreparedModel with a controlled latency distribution."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from core.measure.harness import ci_target_met, run_latency, run_throughput
from core.results import StoppingRule


class FakePrepared:
    """Latency drawn from a distribution; sleeps a little so wall time is real."""

    def __init__(self, jitter: float = 0.0, base_ns: int = 200_000, seed: int = 0, in_flight: int = 1) -> None:
        self.rng = np.random.default_rng(seed)
        self.jitter = jitter
        self.base_ns = base_ns
        self.calls = 0
        self.resets = 0
        self.in_flight = in_flight
        self.config: dict[str, Any] = {}
        self._pool = ThreadPoolExecutor(max_workers=in_flight)
        self._slots = threading.Semaphore(in_flight)
        self._pending: list[Any] = []

    def infer_ns(self) -> int:
        self.calls += 1
        return int(self.base_ns * (1 + self.jitter * self.rng.standard_normal()))

    def max_in_flight(self) -> int:
        return self.in_flight

    def submit(self, on_done: Callable[[int], None]) -> None:
        self._slots.acquire()
        latency = self.infer_ns()

        def work() -> None:
            time.sleep(latency / 1e9)
            on_done(latency)
            self._slots.release()

        self._pending.append(self._pool.submit(work))

    def drain(self) -> None:
        for fut in self._pending:
            fut.result()
        self._pending.clear()

    def reset_peak_device_memory(self) -> None:
        self.resets += 1

    def device_memory_mb(self) -> dict[str, float]:
        return {}

    def close(self) -> None:
        self._pool.shutdown()


def test_stable_latency_stops_at_min_iters_with_target_met() -> None:
    fake = FakePrepared(jitter=0.0)
    rule = StoppingRule(min_iters=20, target_ci=0.01, max_time_s=5, warmup_iters=3, warmup_time_s=0)
    seen: list[tuple[int, int]] = []
    result = run_latency(fake, 2, rule, sink=lambda t, lat: seen.append((t, lat)))
    assert len(result.samples_ns) == 20
    assert result.target_met
    assert result.warmup_iters == 3
    assert fake.calls == 23  # warm-up (first inference included) is not in the samples
    assert [lat for _, lat in seen] == result.samples_ns
    assert result.images == 40
    assert fake.resets == 1


def test_noisy_latency_runs_until_ci_target() -> None:
    fake = FakePrepared(jitter=0.2)
    rule = StoppingRule(min_iters=10, target_ci=0.01, max_time_s=30, warmup_iters=1, warmup_time_s=0)
    result = run_latency(fake, 1, rule)
    assert result.target_met
    assert ci_target_met(result.samples_ns, 0.01)
    # With 20% jitter, ±1% on the median needs hundreds of samples, not 10.
    assert len(result.samples_ns) > 300
    # The check stops soon after the target is reached: geometric checks overshoot <= ~10%.
    assert not ci_target_met(result.samples_ns[: int(len(result.samples_ns) / 1.25)], 0.01)


def test_time_cap_records_target_not_met() -> None:
    class Slow(FakePrepared):
        def infer_ns(self) -> int:
            time.sleep(0.002)
            return super().infer_ns()

    fake = Slow(jitter=0.5)
    rule = StoppingRule(min_iters=5, target_ci=0.0001, max_time_s=0.2, warmup_iters=1, warmup_time_s=0)
    result = run_latency(fake, 1, rule)
    assert not result.target_met
    assert 5 <= len(result.samples_ns) < 200
    assert result.wall_ns >= 0.2e9


def test_min_iters_beats_time_cap() -> None:
    class VerySlow(FakePrepared):
        def infer_ns(self) -> int:
            time.sleep(0.02)
            return super().infer_ns()

    rule = StoppingRule(min_iters=8, target_ci=0.01, max_time_s=0.01, warmup_iters=1, warmup_time_s=0)
    result = run_latency(VerySlow(), 1, rule)
    assert len(result.samples_ns) == 8


def test_throughput_mode_counts_every_completed_request() -> None:
    fake = FakePrepared(jitter=0.05, base_ns=2_000_000, in_flight=4)
    rule = StoppingRule(min_iters=40, target_ci=0.05, max_time_s=2, warmup_iters=2, warmup_time_s=0)
    seen: list[int] = []
    result = run_throughput(fake, 8, rule, sink=lambda t, lat: seen.append(lat))
    fake.close()
    assert len(result.samples_ns) >= 40
    assert seen == result.samples_ns
    assert result.images == 8 * len(result.samples_ns)
    # Four requests in flight at ~2 ms each deliver well above one request's rate.
    single_rate = 8 / 0.002
    assert result.throughput_ips > 1.2 * single_rate
