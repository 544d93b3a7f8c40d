"""Does backbench report what the frameworks' own benchmark tools report?

Interleaved in one session, on this machine's CPU:
- torch: backbench's median latency vs ``torch.utils.benchmark.Timer`` (blocked_autorange);
- openvino latency: backbench's median vs ``benchmark_app -hint latency -infer_precision f32``;
- openvino throughput: backbench's FPS in throughput mode vs ``benchmark_app -hint throughput``.

Models resnet18 and mobilenet_v3_small at batch 1 and 8. Each round runs the reference
and backbench back to back, alternating which goes first; the printed figure is the median
over rounds of each, and the median of the per-round ratios backbench / reference. Not a
test: nothing is asserted.

    python bench/fidelity.py [--rounds 3] [--seconds 5] [--out fidelity.json]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.backends.base import ModelSource  # noqa: E402
from core.measure.supervisor import CaseRunner  # noqa: E402
from core.measure.worker import WorkerJob  # noqa: E402
from core.results import Backend, Case, Mode, Precision, Status, StoppingRule  # noqa: E402

MODELS = ("resnet18", "mobilenet_v3_small")
BATCHES = (1, 8)


def torch_timer_ms(model: str, batch: int, seconds: float) -> float:
    """torch's own Timer, in a fresh process that has loaded nothing but torch (the bench
    process has OpenVINO's thread pool in it, which competes with torch's)."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import fidelity; "
        "print(fidelity.torch_timer_in_process(sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).parent), model, str(batch), str(seconds)],
        capture_output=True, text=True, check=True,
    ).stdout
    return float(out.strip().splitlines()[-1])


def torch_timer_in_process(model: str, batch: int, seconds: float) -> float:
    import torch
    from torch.utils.benchmark import Timer

    from core.backends.convert import load_torch_module, random_batch
    from core.zoo import get_card

    module, _ = load_torch_module(ModelSource(model))
    module.eval()
    x = torch.from_numpy(random_batch((batch, *get_card(model).input_size)))
    with torch.inference_mode():
        for _ in range(3):
            module(x)
        timer = Timer(stmt="module(x)", globals={"module": module, "x": x}, num_threads=torch.get_num_threads())
        return timer.blocked_autorange(min_run_time=seconds).median * 1e3


def benchmark_app(model: str, batch: int, hint: str, seconds: float) -> dict[str, float]:
    from core.backends.convert import ensure_ir
    from core.zoo import get_card

    exe = shutil.which("benchmark_app") or str(Path(sys.executable).parent / "benchmark_app")
    ir = ensure_ir(ModelSource(model)).path
    c, h, w = get_card(model).input_size
    out = subprocess.run(
        [exe, "-m", str(ir), "-d", "CPU", "-hint", hint, "-infer_precision", "f32",
         "-shape", f"[{batch},{c},{h},{w}]", "-t", str(int(seconds)), "-api", "sync" if hint == "latency" else "async"],
        capture_output=True, text=True, check=True,
    ).stdout
    median = re.search(r"Median:\s+([\d.]+)\s*(ms|us)", out)
    fps = re.search(r"Throughput:\s+([\d.]+)\s*FPS", out)
    if not median or not fps:
        raise RuntimeError(f"could not parse benchmark_app output:\n{out[-2000:]}")
    median_ms = float(median.group(1)) / (1000.0 if median.group(2) == "us" else 1.0)
    return {"median_ms": median_ms, "fps": float(fps.group(1))}


def backbench_case(model: str, backend: Backend, batch: int, mode: Mode, seconds: float) -> dict[str, float]:
    device = "CPU" if backend is Backend.OPENVINO else "cpu"
    case = Case(model, backend, device, Precision.FP32, batch, mode)
    rule = StoppingRule(min_iters=50, target_ci=0.002, max_time_s=seconds, warmup_time_s=1.0)
    with CaseRunner() as runner:
        m = runner.run(WorkerJob(case, ModelSource(model), rule))
    if m.status is not Status.OK or m.stats is None:
        raise RuntimeError(f"{case.label()}: {m.error}")
    return {"median_ms": m.stats.median_ns / 1e6, "fps": float(m.throughput_ips or 0), "n": m.stats.n}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--batches", default=",".join(str(b) for b in BATCHES))
    parser.add_argument("--only", help="run only the comparisons whose name contains this, e.g. throughput")
    parser.add_argument("--out")
    args = parser.parse_args()

    comparisons: list[tuple[str, Any, Any, str]] = []
    for model in args.models.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            comparisons.append(
                ("torch latency", lambda m=model, b=batch: torch_timer_ms(m, b, args.seconds),
                 lambda m=model, b=batch: backbench_case(m, Backend.TORCH, b, Mode.LATENCY, args.seconds)["median_ms"],
                 f"{model} b{batch}")
            )
            comparisons.append(
                ("openvino latency", lambda m=model, b=batch: benchmark_app(m, b, "latency", args.seconds)["median_ms"],
                 lambda m=model, b=batch: backbench_case(m, Backend.OPENVINO, b, Mode.LATENCY, args.seconds)["median_ms"],
                 f"{model} b{batch}")
            )
            comparisons.append(
                ("openvino throughput FPS", lambda m=model, b=batch: benchmark_app(m, b, "throughput", args.seconds)["fps"],
                 lambda m=model, b=batch: backbench_case(m, Backend.OPENVINO, b, Mode.THROUGHPUT, args.seconds)["fps"],
                 f"{model} b{batch}")
            )
    if args.only:
        comparisons = [c for c in comparisons if args.only in c[0]]
    results = []
    print(f"{'what':<26}{'case':<26}{'reference':>11}{'backbench':>11}{'ratio':>8}   per-round ratios", flush=True)
    for what, reference, ours, label in comparisons:
        ref_values, our_values = [], []
        for r in range(args.rounds):
            # Alternate the order so drift (thermal, other load) does not favour one side.
            if r % 2 == 0:
                ref_values.append(reference())
                our_values.append(ours())
            else:
                our_values.append(ours())
                ref_values.append(reference())
        ref, our = statistics.median(ref_values), statistics.median(our_values)
        # The headline is the median of the paired (same-round) ratios: on a noisy machine
        # pairing cancels the drift that both sides of a round share.
        paired = statistics.median(o / r for o, r in zip(our_values, ref_values, strict=True))
        # The reference's own round-to-round spread: how far apart two runs of the same
        # tool land on this machine, against which a ratio's distance from 1 is read.
        spread = (max(ref_values) - min(ref_values)) / ref if ref else 0.0
        results.append({"what": what, "case": label, "reference": ref, "backbench": our, "ratio": paired,
                        "reference_spread": spread,
                        "rounds": {"reference": ref_values, "backbench": our_values}})
        rounds = " ".join(f"{o / r:.3f}" for o, r in zip(our_values, ref_values, strict=True))
        print(f"{what:<26}{label:<26}{ref:>11.3f}{our:>11.3f}{paired:>8.3f}   rounds: {rounds}   "
              f"reference spread {spread:.1%}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
