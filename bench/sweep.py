"""Where a sweep's time goes: fork server against fork+exec, interleaved in one session.

For each backend (torch CPU, OpenVINO CPU) and each round, the quick suite at batch 1 and
2 with ``--max-time 1`` and the default warm-up and stopping rule runs once with
``--worker-start exec`` (a fresh interpreter per case, the old way) and once with
``--worker-start fork-server``, alternating which goes first. The IR cache is warm for
both (conversion is a one-off per model and is reported apart, from a cold-cache run
before the rounds).

Printed per backend and method, as the median over rounds:

- efficiency = (warm-up + timed loop) / wall, over the sweep;
- the median per-case overhead outside model build and compile: wall minus load,
  compile, warm-up and timed loop (and conversion), i.e. starting the worker, the
  supervisor's bookkeeping and tearing down;
- the median per-case wall time;
- the ratio fork-server / exec of the sweep's wall time, per round, and its median.

Not a test: nothing is asserted.

    python bench/sweep.py [--rounds 3] [--max-time 1] [--out sweep.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.measure.runner import run_sweep  # noqa: E402
from core.results import Backend, Measurement, RunSpec, Status, StoppingRule  # noqa: E402
from core.store import Store  # noqa: E402
from core.zoo import suite_models  # noqa: E402

BACKENDS = ((Backend.TORCH, "cpu"), (Backend.OPENVINO, "CPU"))
METHODS = ("exec", "fork-server")


def sweep(backend: Backend, device: str, method: str, max_time: float, db: Path) -> dict[str, Any]:
    spec = RunSpec(
        models=suite_models("quick"), backend=backend, device=device, batch_sizes=(1, 2),
        stopping=StoppingRule(max_time_s=max_time), worker_start=method,
    )  # fmt: skip
    with Store(db) as store:
        t0 = time.monotonic()
        run = run_sweep(spec, store)
        wall = time.monotonic() - t0
        cases = store.measurements(run.id)
    return summarise(cases, wall)


def overhead_s(m: Measurement) -> float:
    inside = sum(m.phase_s.get(p, 0.0) for p in ("convert", "load", "compile", "warmup", "measure"))
    return (m.duration_s or 0.0) - inside


def summarise(cases: list[Measurement], wall: float) -> dict[str, Any]:
    measuring = sum(m.phase_s.get("warmup", 0.0) + m.phase_s.get("measure", 0.0) for m in cases)
    return {
        "wall_s": wall,
        "efficiency": measuring / wall if wall else 0.0,
        "overhead_median_s": statistics.median(overhead_s(m) for m in cases),
        "case_wall_median_s": statistics.median(m.duration_s or 0.0 for m in cases),
        "start_median_s": statistics.median(m.phase_s.get("start", 0.0) for m in cases),
        "load_median_s": statistics.median(m.phase_s.get("load", 0.0) for m in cases),
        "model_rss_median_mb": statistics.median(m.model_rss_mb or 0.0 for m in cases),
        "failed": sum(m.status is not Status.OK for m in cases),
        "disturbed": sum(bool(m.disturbed) for m in cases),
        "convert_s": sum(m.phase_s.get("convert", 0.0) for m in cases),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-time", type=float, default=1.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    os.environ["BACKBENCH_CACHE_DIR"] = str(work / "cache")
    results: dict[str, Any] = {"rounds": [], "max_time_s": args.max_time}
    # A cold-cache OpenVINO sweep first: it converts every model once (and warms the cache).
    cold = sweep(Backend.OPENVINO, "CPU", "fork-server", args.max_time, work / "cold.db")
    results["cold_cache_openvino"] = cold
    print(f"cold cache, openvino fork-server: {cold['wall_s']:.1f} s wall, "
          f"{cold['convert_s']:.1f} s converting, efficiency {cold['efficiency']:.2f}", flush=True)
    for r in range(args.rounds):
        row: dict[str, Any] = {}
        for backend, device in BACKENDS:
            order = METHODS if r % 2 == 0 else METHODS[::-1]
            for method in order:
                s = sweep(backend, device, method, args.max_time, work / f"r{r}.db")
                row[f"{backend.value}/{method}"] = s
                print(f"round {r + 1} {backend.value:8s} {method:11s} wall {s['wall_s']:6.1f} s  "
                      f"efficiency {s['efficiency']:.2f}  overhead/case {s['overhead_median_s']:.3f} s  "
                      f"failed {s['failed']} disturbed {s['disturbed']}", flush=True)
        results["rounds"].append(row)

    print("\nmedian over rounds")
    summary: dict[str, Any] = {}
    for backend, _ in BACKENDS:
        for method in METHODS:
            key = f"{backend.value}/{method}"
            rows = [row[key] for row in results["rounds"]]
            summary[key] = {
                name: statistics.median(x[name] for x in rows)
                for name in ("wall_s", "efficiency", "overhead_median_s", "case_wall_median_s",
                             "start_median_s", "load_median_s", "model_rss_median_mb")
            }  # fmt: skip
            v = summary[key]
            print(f"{key:22s} wall {v['wall_s']:6.1f} s  efficiency {v['efficiency']:.2f}  "
                  f"overhead/case {v['overhead_median_s']:.3f} s  case {v['case_wall_median_s']:.2f} s  "
                  f"start {v['start_median_s']:.3f} s  load {v['load_median_s']:.3f} s  "
                  f"model RSS {v['model_rss_median_mb']:.0f} MB")
        ratios = [row[f"{backend.value}/fork-server"]["wall_s"] / row[f"{backend.value}/exec"]["wall_s"]
                  for row in results["rounds"]]  # fmt: skip
        summary[f"{backend.value}/wall_ratio"] = statistics.median(ratios)
        print(f"{backend.value}: fork-server / exec wall time, per round {[round(x, 2) for x in ratios]}, "
              f"median {statistics.median(ratios):.2f}")
    results["summary"] = summary
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
