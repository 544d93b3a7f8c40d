"""Builds ``fixture.db``, the small store that the golden-output tests read.

Run once (``python tests/golden/build_fixture.py``) and commit the file: the golden
outputs were recorded from it, so it must not change unless they are re-recorded with
``python tests/golden/record.py``. Everything in it is deterministic except the wall-clock
stamps the store writes itself (run created_at), which the tests mask.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODELS = ("squeezenet1_1", "mobilenet_v3_small", "resnet18", "resnet50", "vgg11")
BATCHES = (1, 2, 4)


def per_image_ms(flops: int, model: str, batch: int, factor: float) -> float:
    wobble = 1.0 + 0.02 * ((len(model) * 7 + batch) % 5 - 2)  # deterministic "noise"
    return factor * (flops / 4e8 * (0.6 + 0.4 / batch) + 3.0 / batch) * wobble


def build(path: Path) -> None:
    sys.path.insert(0, str(HERE.parents[1]))
    from core.results import (
        Backend,
        Case,
        FailureKind,
        LatencyStats,
        Measurement,
        Mode,
        Precision,
        RunSpec,
        Status,
    )
    from core.store import Store
    from core.zoo import model_complexity

    path.unlink(missing_ok=True)
    platforms = (("laptop-torch", Backend.TORCH, "cpu", 1.0), ("laptop-ov", Backend.OPENVINO, "CPU", 0.5))
    with Store(path) as store:
        for name, backend, device, factor in platforms:
            spec = RunSpec(models=MODELS, backend=backend, device=device, batch_sizes=BATCHES, name=name)
            manifest = {"host": f"host-{name}", "cpu_model": "Test CPU", "packages": {"torch": "2.x"}}
            run = store.create_run(spec, manifest, name=name)
            for model in MODELS:
                facts = model_complexity(model)
                assert facts is not None
                for batch in BATCHES:
                    case = Case(model, backend, device, Precision.FP32, batch, Mode.LATENCY)
                    if model == "vgg11" and batch == 4 and backend is Backend.OPENVINO:
                        store.add_measurement(run.id, Measurement.failed(
                            case, FailureKind.OOM, "worker exceeded its memory limit"))
                        continue
                    batch_ns = int(per_image_ms(facts.flops, model, batch, factor) * batch * 1e6)
                    samples = tuple(batch_ns + 1000 * (i % 3) for i in range(9))
                    store.add_measurement(
                        run.id,
                        Measurement(
                            case=case, status=Status.OK, stats=LatencyStats.from_samples(samples),
                            samples_ns=samples, peak_rss_mb=300.0 + facts.params / 1e6 * 4,
                            first_inference_ms=batch_ns / 1e6 * 3, target_met=True,
                            params=facts.params, flops=facts.flops, started_at=1.7e9,
                            duration_s=1.0,
                        ),
                    )  # fmt: skip
            store.set_run_status(run.id, "finished")


if __name__ == "__main__":
    build(HERE / "fixture.db")
    print(f"wrote {HERE / 'fixture.db'}")
