"""What the Ray executor costs, and how a sweep's wall time scales with its nodes.

Two measurements, in one session:

1. **Overhead.** The same sweep of tiny ONNX models (ONNX Runtime, CPU, batch 1, the
   tests' fast stopping rule) with the local executor and with the Ray executor on a
   one-node in-process cluster (one ``backbench_cpu``: one case at a time, as locally),
   interleaved round by round (local, Ray, Ray, local, ...). Printed: each wall time,
   the ratio Ray / local per round and its median, and the per-case overhead (wall
   minus the cases' own worker lifetimes, over the cases). The one-off cost of starting
   a private Ray instance (what ``--executor ray`` without ``--ray-address`` pays) is
   timed apart.
2. **Scaling.** Fixed-duration synthetic cases (tests/service/synthetic_worker.py: each
   case streams samples for exactly ``--case-s`` seconds, mostly asleep, so the
   simulated nodes do not compete for this machine's cores) on clusters of 1, 2 and 4
   nodes, each with one ``backbench_cpu``, after one untimed sweep that starts each
   node's Ray worker processes, and through the local executor as the baseline. Printed:
   wall time, speed-up over one node and over the local executor, and
   efficiency against the ideal ceil(cases / nodes) x case time (what remains is
   starting each case's worker: the synthetic worker is exec'd, a fresh interpreter).

The simulated nodes are raylets in this process's machine: they share its cores, so
the real-model cases of (1) read as disturbed, and (2) measures scheduling, not compute.

Not a test: nothing is asserted.

    python bench/scale.py [--rounds 3] [--cases 8] [--case-s 2] [--out scale.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# Read as Ray is imported: keep the driver's own signal handling (ray_executor does too).
os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")

import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from core.measure.environment import cpu_model  # noqa: E402
from core.measure.executors import make_executor  # noqa: E402
from core.measure.executors.local import LocalExecutor  # noqa: E402
from core.measure.executors.resources import CPU_RESOURCE  # noqa: E402
from core.measure.runner import run_sweep  # noqa: E402
from core.measure.supervisor import CaseRunner  # noqa: E402
from core.results import Backend, Measurement, RunSpec, Status, StoppingRule  # noqa: E402
from core.store import Store  # noqa: E402

QUICK = StoppingRule(target_ci=0.5, min_iters=5, max_time_s=0.3, warmup_iters=1, warmup_time_s=0)
SYNTHETIC = [sys.executable, "-m", "tests.service.synthetic_worker"]
SYNTHETIC_RATE = "200"  # samples a second: the synthetic case sleeps between them


def cluster_of(nodes: int) -> Cluster:
    """A head that measures nothing and ``nodes`` nodes with one backbench_cpu each."""
    made = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    for _ in range(nodes):
        made.add_node(num_cpus=1, resources={CPU_RESOURCE: 1})
    made.wait_for_nodes()
    made.connect()
    return made


def close(made: Cluster) -> None:
    ray.shutdown()
    made.shutdown()


def tiny_models(folder: Path, count: int) -> tuple[str, ...]:
    from service.selftest import make_onnx

    paths = []
    for i in range(count):
        sub = folder / f"model{i}"
        sub.mkdir(parents=True, exist_ok=True)
        paths.append(str(make_onnx(sub, channels=4 + 2 * i)))
    return tuple(paths)


def sweep(spec: RunSpec, db: Path, executor: Any = None) -> tuple[float, list[Measurement]]:
    with Store(db) as store:
        t0 = time.monotonic()
        run = run_sweep(spec, store, executor=executor)
        wall = time.monotonic() - t0
        return wall, store.measurements(run.id)


def case_overhead_s(wall: float, cases: list[Measurement]) -> float:
    """Wall time outside the cases' own worker lifetimes, per case (one at a time)."""
    return (wall - sum(m.duration_s or 0.0 for m in cases)) / max(1, len(cases))


def overhead(work: Path, rounds: int, models: int) -> dict[str, Any]:
    spec = RunSpec(models=tiny_models(work / "models", models), backend=Backend.ONNXRUNTIME,
                   device="cpu", stopping=QUICK)  # fmt: skip
    # The one-off: a private Ray instance, as --executor ray without --ray-address starts it.
    t0 = time.monotonic()
    with make_executor("ray") as private:
        private.configure(spec)
        started_s = time.monotonic() - t0
        t1 = time.monotonic()
    stopped_s = time.monotonic() - t1
    print(f"a private Ray instance: {started_s:.1f} s to start and probe, {stopped_s:.1f} s to stop", flush=True)

    made = cluster_of(1)
    rows = []
    try:
        # Once each before timing: the node's worker processes and the file cache warm up,
        # as they are after a sweep's first cases.
        sweep(spec, work / "warm.db")
        with make_executor("ray") as executor:
            sweep(spec, work / "warm.db", executor)
        for r in range(rounds):
            row: dict[str, Any] = {}
            for name in ("local", "ray") if r % 2 == 0 else ("ray", "local"):
                if name == "ray":
                    with make_executor("ray") as executor:
                        wall, cases = sweep(spec, work / f"r{r}.db", executor)
                else:
                    wall, cases = sweep(spec, work / f"r{r}.db")
                row[name] = {
                    "wall_s": wall, "overhead_per_case_s": case_overhead_s(wall, cases),
                    "failed": sum(m.status is not Status.OK for m in cases),
                    "disturbed": sum(bool(m.disturbed) for m in cases),
                    # Other processes' CPU during the cases: Ray's own daemons count here.
                    "interference_median": statistics.median(m.interference or 0.0 for m in cases),
                }  # fmt: skip
            row["ratio"] = row["ray"]["wall_s"] / row["local"]["wall_s"]
            rows.append(row)
            print(f"round {r + 1}: local {row['local']['wall_s']:.2f} s, ray {row['ray']['wall_s']:.2f} s, "
                  f"ratio {row['ratio']:.2f}; overhead per case local "
                  f"{row['local']['overhead_per_case_s']:.3f} s, ray {row['ray']['overhead_per_case_s']:.3f} s; "
                  f"other CPU {row['local']['interference_median']:.2f}/{row['ray']['interference_median']:.2f} cores; "
                  f"failed {row['local']['failed']}/{row['ray']['failed']}", flush=True)
    finally:
        close(made)
    return {
        "cases": models,
        "private_instance_start_s": started_s,
        "private_instance_stop_s": stopped_s,
        "rounds": rows,
        "ratio_median": statistics.median(r["ratio"] for r in rows),
        "local_overhead_per_case_s": statistics.median(r["local"]["overhead_per_case_s"] for r in rows),
        "ray_overhead_per_case_s": statistics.median(r["ray"]["overhead_per_case_s"] for r in rows),
        "local_interference_median": statistics.median(r["local"]["interference_median"] for r in rows),
        "ray_interference_median": statistics.median(r["ray"]["interference_median"] for r in rows),
    }


def scaling(work: Path, node_counts: list[int], cases: int, case_s: float, rounds: int) -> dict[str, Any]:
    spec = RunSpec(
        models=("squeezenet1_1",), backend=Backend.TORCH, device="cpu",
        batch_sizes=tuple(range(1, cases + 1)),  # the synthetic worker ignores the model
        stopping=StoppingRule(min_iters=1, max_time_s=case_s, warmup_iters=1, warmup_time_s=0),
    )  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "BACKBENCH_SYNTHETIC_RATE": SYNTHETIC_RATE}
    out: dict[str, Any] = {"cases": cases, "case_s": case_s, "nodes": {}}
    # The baseline: the same synthetic cases through the local executor, one at a time.
    local_walls = []
    for r in range(rounds):
        with CaseRunner(worker_command=SYNTHETIC, env=env) as runner:
            wall, _ = sweep(spec, work / f"local-{r}.db", LocalExecutor(runner))
        local_walls.append(wall)
        print(f"local executor, round {r + 1}: {wall:.2f} s", flush=True)
    out["local_wall_s"] = statistics.median(local_walls)
    for nodes in node_counts:
        t0 = time.monotonic()
        made = cluster_of(nodes)
        up_s = time.monotonic() - t0
        walls = []
        try:
            # Untimed, once: each node starts its Ray worker processes (an interpreter that
            # imports Ray, a second or two here), as a long sweep's first cases do.
            warm = RunSpec(models=spec.models, backend=spec.backend, device=spec.device,
                           batch_sizes=spec.batch_sizes[:nodes], stopping=spec.stopping)  # fmt: skip
            with make_executor("ray", worker_command=SYNTHETIC, worker_env=env) as executor:
                sweep(warm, work / f"warm{nodes}.db", executor)
            for r in range(rounds):
                with make_executor("ray", worker_command=SYNTHETIC, worker_env=env) as executor:
                    wall, measured = sweep(spec, work / f"scale{nodes}-{r}.db", executor)
                failed = sum(m.status is not Status.OK for m in measured)
                spread = len({m.conditions["node"]["id"] for m in measured if "node" in m.conditions})
                walls.append(wall)
                print(f"{nodes} node(s), round {r + 1}: {wall:.2f} s ({failed} failed, cases on {spread} nodes)",
                      flush=True)
        finally:
            close(made)
        ideal = math.ceil(cases / nodes) * case_s
        out["nodes"][str(nodes)] = {"wall_s": statistics.median(walls), "walls_s": walls,
                                    "ideal_s": ideal, "cluster_up_s": up_s}  # fmt: skip
    one = out["nodes"][str(node_counts[0])]["wall_s"]
    for nodes in node_counts:
        row = out["nodes"][str(nodes)]
        row["speedup"] = one / row["wall_s"]
        row["speedup_over_local"] = out["local_wall_s"] / row["wall_s"]
        row["efficiency"] = row["ideal_s"] / row["wall_s"]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--models", type=int, default=6, help="tiny models in the overhead sweep")
    parser.add_argument("--cases", type=int, default=8, help="synthetic cases in the scaling sweep")
    parser.add_argument("--case-s", type=float, default=2.0, help="seconds each synthetic case lasts")
    parser.add_argument("--nodes", default="1,2,4")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    os.environ["BACKBENCH_CACHE_DIR"] = str(work / "cache")
    os.chdir(REPO)  # the nodes' workers start here: tests.service.synthetic_worker resolves
    results: dict[str, Any] = {
        "machine": {"cpu_model": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "ray": ray.__version__},
    }  # fmt: skip
    print(f"{results['machine']}", flush=True)
    results["overhead"] = overhead(work, args.rounds, args.models)
    o = results["overhead"]
    print(f"\nRay / local wall time, median over {args.rounds} rounds: {o['ratio_median']:.2f} "
          f"(overhead per case: local {o['local_overhead_per_case_s']:.3f} s, ray {o['ray_overhead_per_case_s']:.3f} s; "
          f"other CPU in a case: local {o['local_interference_median']:.2f}, ray {o['ray_interference_median']:.2f} cores)\n",
          flush=True)  # fmt: skip
    counts = [int(n) for n in args.nodes.split(",")]
    results["scaling"] = scaling(work, counts, args.cases, args.case_s, max(1, args.rounds - 1))
    print(f"\n{args.cases} synthetic cases of {args.case_s:g} s; local executor {results['scaling']['local_wall_s']:.2f} s")
    for nodes in counts:
        row = results["scaling"]["nodes"][str(nodes)]
        print(f"{nodes} node(s): wall {row['wall_s']:.2f} s (ideal {row['ideal_s']:.1f} s), "
              f"speed-up {row['speedup']:.2f} over one node, {row['speedup_over_local']:.2f} over local, "
              f"efficiency {row['efficiency']:.2f}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
