"""The metric catalogue: every metric names its unit and says what it is, so clients
build axes and legends from it (as glances does) instead of hard-coding them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Metric:
    """One self-describing metric; clients build axes and legends from the catalogue."""

    name: str
    unit: str
    description: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "unit": self.unit, "description": self.description}


METRICS: tuple[Metric, ...] = (
    Metric("latency_ns", "ns", "Latency of one timed iteration (one whole batch)."),
    Metric("per_image_ms", "ms", "Median iteration latency divided by the batch size."),
    Metric("throughput_ips", "images/s", "Images per second over the timed loop."),
    Metric("first_inference_ms", "ms", "Latency of the very first inference (cold)."),
    Metric("rss_mb", "MB", "Resident memory of the worker process."),
    Metric("peak_rss_mb", "MB", "Peak resident memory of the worker during the case."),
    Metric("device_mem_mb", "MB", "Accelerator memory in use by the worker."),
    Metric("peak_device_mem_mb", "MB", "Peak accelerator memory during the case."),
    Metric("params", "count", "Number of model parameters."),
    Metric("flops", "FLOP/image", "Floating-point operations per image (2 x MACs)."),
    Metric("ci95_rel", "fraction", "Relative half-width of the 95% CI of the median."),
)


def metric_catalogue() -> list[dict[str, str]]:
    return [m.to_dict() for m in METRICS]
