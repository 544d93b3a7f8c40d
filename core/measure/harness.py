"""The timed loop: warm-up, first inference apart, adaptive stopping, a telemetry hook.

The loop holds no framework code: it calls ``PreparedModel.infer_ns`` (latency mode) or
``submit``/``drain`` (throughput mode), appends the raw sample, hands it to the sink and
decides whether to stop. Everything else (statistics, memory, storage) happens after the
loop, so the loop itself stays as thin as the frameworks' own benchmark tools.

Stopping: at least ``min_iters`` timed iterations; then stop once the relative 95% CI
half-width of the median is at most ``target_ci``, or when ``max_time_s`` has passed. The
CI check sorts the samples, so it runs at geometrically spaced sample counts (every ~10%
more samples): its total cost stays O(n log n) and the loop is not perturbed.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from core.backends.base import PreparedModel
from core.results import Mode, StoppingRule, median_ci95

log = logging.getLogger(__name__)

# (timestamp_ns on CLOCK_MONOTONIC, latency_ns). Called once per sample: keep it cheap.
SampleSink = Callable[[int, int], None]
# Called once, as the timed loop starts (after warm-up).
MeasureHook = Callable[[], None]


def _no_hook() -> None:
    return None

_CHECK_GROWTH = 1.10


@dataclass(frozen=True, slots=True)
class HarnessResult:
    samples_ns: list[int]
    first_inference_ns: int
    warmup_iters: int
    target_met: bool
    images: int  # images completed in the timed loop
    wall_ns: int  # wall time of the timed loop (throughput = images / wall)

    @property
    def throughput_ips(self) -> float:
        return self.images / (self.wall_ns / 1e9) if self.wall_ns > 0 else math.nan


def ci_target_met(samples_ns: list[int], target_ci: float) -> bool:
    data = np.sort(np.asarray(samples_ns, dtype=np.float64))
    lo, hi = median_ci95(data)
    if math.isnan(lo):
        return False
    median = float(np.median(data))
    return median > 0 and (hi - lo) / 2.0 / median <= target_ci


class _StopRule:
    """Decides, cheaply, when the timed loop may stop."""

    def __init__(self, rule: StoppingRule, t0_ns: int) -> None:
        self.rule = rule
        self.deadline_ns = t0_ns + int(rule.max_time_s * 1e9)
        self.next_check = rule.min_iters
        self.target_met = False

    def done(self, samples: list[int], now_ns: int) -> bool:
        n = len(samples)
        if n >= self.rule.max_iters:
            return True
        if n >= self.next_check:
            self.next_check = max(n + 1, int(n * _CHECK_GROWTH))
            if ci_target_met(samples, self.rule.target_ci):
                self.target_met = True
                return True
        # The time cap applies only once the minimum is reached: a case that cannot reach
        # min_iters within max_time runs on until it does (the watchdog bounds that).
        return now_ns >= self.deadline_ns and n >= self.rule.min_iters


def _warmup_done(rule: StoppingRule, iters: int, t0_ns: int, now_ns: int) -> bool:
    elapsed_s = (now_ns - t0_ns) / 1e9
    if iters >= rule.warmup_iters and elapsed_s >= rule.warmup_time_s:
        return True
    # A slow model (seconds per inference) must not spend minutes warming up.
    warmup_cap_s = max(rule.warmup_time_s, 0.25 * rule.max_time_s)
    return iters >= 2 and elapsed_s >= warmup_cap_s


def run_latency(
    prepared: PreparedModel,
    batch_size: int,
    rule: StoppingRule,
    sink: SampleSink | None = None,
    on_measure: MeasureHook = _no_hook,
) -> HarnessResult:
    clock = time.perf_counter_ns
    t_warm = clock()
    first_ns = prepared.infer_ns()
    warm_iters = 1
    while not _warmup_done(rule, warm_iters, t_warm, clock()):
        prepared.infer_ns()
        warm_iters += 1
    prepared.reset_peak_device_memory()
    on_measure()

    samples: list[int] = []
    append = samples.append
    t0 = clock()
    stop = _StopRule(rule, t0)
    while True:
        latency = prepared.infer_ns()
        now = clock()
        append(latency)
        if sink is not None:
            sink(now, latency)
        if stop.done(samples, now):
            break
    wall = clock() - t0
    return HarnessResult(
        samples_ns=samples,
        first_inference_ns=first_ns,
        warmup_iters=warm_iters,
        target_met=stop.target_met,
        images=len(samples) * batch_size,
        wall_ns=wall,
    )


def run_throughput(
    prepared: PreparedModel,
    batch_size: int,
    rule: StoppingRule,
    sink: SampleSink | None = None,
    on_measure: MeasureHook = _no_hook,
) -> HarnessResult:
    """Keep ``max_in_flight`` requests busy; per-request latencies are the samples and the
    throughput is images completed over the wall time of the loop (drain included)."""
    clock = time.perf_counter_ns
    # The first inference is timed synchronously, on its own, as in latency mode.
    first_ns = prepared.infer_ns()
    in_flight = max(1, prepared.max_in_flight())

    warm_done: list[int] = []
    t_warm = clock()
    warm_submitted = 0
    while warm_submitted < in_flight or not _warmup_done(rule, len(warm_done), t_warm, clock()):
        prepared.submit(warm_done.append)
        warm_submitted += 1
    prepared.drain()
    prepared.reset_peak_device_memory()
    on_measure()

    # Completions arrive on the framework's threads: they only append (atomic in CPython)
    # and this thread slices what is new, so the sink is fed from one thread, lock-free.
    completed: list[tuple[int, int]] = []

    def on_done(latency_ns: int) -> None:
        completed.append((clock(), latency_ns))

    samples: list[int] = []
    fed = 0
    t0 = clock()
    stop = _StopRule(rule, t0)
    while True:
        prepared.submit(on_done)
        new = completed[fed:]
        fed += len(new)
        for stamp, latency in new:
            samples.append(latency)
            if sink is not None:
                sink(stamp, latency)
        if stop.done(samples, clock()):
            break
    prepared.drain()
    wall = clock() - t0
    for stamp, latency in completed[fed:]:
        samples.append(latency)
        if sink is not None:
            sink(stamp, latency)
    return HarnessResult(
        samples_ns=samples,
        first_inference_ns=first_ns,
        warmup_iters=warm_submitted,
        target_met=stop.target_met,
        images=len(samples) * batch_size,
        wall_ns=wall,
    )


def run_timed(
    prepared: PreparedModel,
    batch_size: int,
    mode: Mode,
    rule: StoppingRule,
    sink: SampleSink | None = None,
    on_measure: MeasureHook = _no_hook,
) -> HarnessResult:
    if mode is Mode.THROUGHPUT:
        return run_throughput(prepared, batch_size, rule, sink, on_measure)
    return run_latency(prepared, batch_size, rule, sink, on_measure)
