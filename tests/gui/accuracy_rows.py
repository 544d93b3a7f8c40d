"""Long-schema rows as accuracy runs produce them (Measurement.to_row of core's own
results), for the accuracy views' tests and the screenshot: resnet18 and resnet50 measured
on several platforms, mobilenet_v3_small timed but never evaluated (reference only)."""

from __future__ import annotations

import pandas as pd

from core.results import (
    AccuracyResult,
    Backend,
    Case,
    LatencyStats,
    Measurement,
    Mode,
    Precision,
    Status,
)

DATASET_ID = "3f2a9c0d1e4b5a6f"
N_IMAGES = 5000
REFERENCE_PLATFORM = "torch/cpu/fp32"
# (model, backend, device, precision, top-1 correct, top-5 correct, agreement %, max |Δ logit|)
MEASURED = (
    ("resnet18", "torch", "cpu", "fp32", 3490, 4443, None, None),
    ("resnet18", "openvino", "CPU", "bf16", 3481, 4440, 98.72, 0.412),
    ("resnet18", "onnxruntime", "cpu", "fp32", 3490, 4443, 100.0, 2.1e-05),
    ("resnet50", "torch", "cpu", "fp32", 4031, 4771, None, None),
    ("resnet50", "openvino", "CPU", "bf16", 4018, 4766, 98.1, 0.538),
)


def accuracy_measurement(model: str, backend: str, device: str, precision: str, top1: int, top5: int,
                         agreement: float | None, logit_diff: float | None, *, skipped: int = 0,
                         started_at: float = 1.7e9) -> Measurement:  # fmt: skip
    case = Case(model, Backend(backend), device, Precision(precision), 8, Mode.ACCURACY)
    result = AccuracyResult(
        top1_correct=top1, top5_correct=top5, n_images=N_IMAGES, skipped=skipped, num_classes=1000,
        dataset_id=DATASET_ID, dataset={"layout": "imagenet-val", "limit": N_IMAGES, "seed": 0},
        reference=REFERENCE_PLATFORM, agreement_top1=agreement, max_logit_diff=logit_diff,
    )  # fmt: skip
    return Measurement(case=case, status=Status.OK, accuracy=result, weights=f"file:/srv/models/{model}.pth",
                       started_at=started_at, run_id=1, run_name="accuracy")  # fmt: skip


def latency_measurement(model: str, per_image_ms: float) -> Measurement:
    case = Case(model, Backend.TORCH, "cpu", Precision.FP32, 1, Mode.LATENCY)
    ns = int(per_image_ms * 1e6)
    stats = LatencyStats.from_samples([ns, ns, ns + 1000])
    return Measurement(case=case, status=Status.OK, stats=stats, run_id=2, run_name="latency")


def accuracy_frame(*, with_latency: bool = True) -> pd.DataFrame:
    rows = [accuracy_measurement(*spec, skipped=3 if spec[1] == "openvino" else 0).to_row() for spec in MEASURED]
    if with_latency:
        rows += [latency_measurement("mobilenet_v3_small", 2.5).to_row(), latency_measurement("resnet18", 9.0).to_row()]
    return pd.DataFrame(rows)
