"""backbench's torch CUDA path against a bare CUDA-event loop, interleaved in one session.

For each (model, batch) it alternates: a bare loop in this process (CUDA events around
each forward, synchronise, 200 timed iterations after 30 warm-ups), then backbench's own
worker process (the same path `backbench run --backend torch --device cuda` takes).
Printed: both medians and their ratio. Not a test: timings are never asserted.

    python bench/cuda_fidelity.py [--device cuda] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.backends.base import ModelSource  # noqa: E402
from core.measure.supervisor import CaseRunner  # noqa: E402
from core.measure.worker import WorkerJob  # noqa: E402
from core.results import Backend, Case, Mode, Precision, Status, StoppingRule  # noqa: E402

MODELS = ("resnet18", "mobilenet_v3_small", "resnet50", "vgg16")
BATCHES = (1, 16)


def bare_loop_ms(model_name: str, batch: int, device: str, iters: int = 200, warmup: int = 30) -> float:
    import torch

    from core.zoo import build_torch_model, get_card

    module, _ = build_torch_model(model_name)
    module = module.to(device).eval()
    x = torch.randn(batch, *get_card(model_name).input_size, device=device)
    times: list[float] = []
    with torch.inference_mode():
        for _ in range(warmup):
            module(x)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            for _ in range(iters):
                start.record()
                module(x)
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end))
        else:
            for _ in range(iters):
                t0 = time.perf_counter_ns()
                module(x)
                times.append((time.perf_counter_ns() - t0) / 1e6)
    del module, x
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return statistics.median(times)


def backbench_ms(model_name: str, batch: int, device: str, precision: Precision) -> tuple[float, dict]:
    case = Case(model_name, Backend.TORCH, device, precision, batch, Mode.LATENCY)
    rule = StoppingRule(min_iters=100, target_ci=0.005, max_time_s=3.0)
    m = CaseRunner().run(WorkerJob(case, ModelSource(model_name), rule))
    if m.status is not Status.OK or m.stats is None:
        raise RuntimeError(f"{case.label()}: {m.error}")
    return m.stats.median_ns / 1e6, {
        "n": m.stats.n,
        "ci95_rel": m.stats.ci95_rel,
        "peak_device_mem_mb": m.peak_device_mem_mb,
        "device_memory": m.device_memory,
        "peak_rss_mb": m.peak_rss_mb,
        "first_inference_ms": m.first_inference_ms,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--batches", default=",".join(str(b) for b in BATCHES))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out")
    args = parser.parse_args()

    import torch

    rows = []
    gpu = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu"
    print(f"device: {gpu}, torch {torch.__version__}")
    print(f"{'model':<20}{'batch':>6}{'backbench ms':>14}{'bare ms':>10}{'ratio':>8}{'dev MB':>9}")
    for model in args.models.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            ours, bare, extra = [], [], {}
            for _ in range(args.rounds):
                bare.append(bare_loop_ms(model, batch, args.device))
                median, extra = backbench_ms(model, batch, args.device, Precision.FP32)
                ours.append(median)
            row = {
                "model": model,
                "batch": batch,
                "backbench_ms": statistics.median(ours),
                "bare_ms": statistics.median(bare),
                "rounds": {"backbench": ours, "bare": bare},
                **extra,
            }
            row["ratio"] = row["backbench_ms"] / row["bare_ms"]
            rows.append(row)
            print(
                f"{model:<20}{batch:>6}{row['backbench_ms']:>14.3f}{row['bare_ms']:>10.3f}"
                f"{row['ratio']:>8.3f}{(row['peak_device_mem_mb'] or 0):>9.0f}",
                flush=True,
            )
    if args.out:
        Path(args.out).write_text(json.dumps({"device": gpu, "torch": torch.__version__, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
