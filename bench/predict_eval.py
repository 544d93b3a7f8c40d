"""How well does the latency predictor do on real measurements? Leave-one-model-out.

For each CSV (default: bench/data/h200_host_torch_zoo.csv, eager torch on an H200 GPU and
its host's 16-core CPU, 33 torchvision models), prints the share of held-out predictions
within ±10% and ±5%, MAPE and Spearman, per platform and overall, for the predictor and
the FLOPs-only baseline, next to nn-Meter's 83.4% (NCS2, batch 1), on:

- all batch sizes (``core.predict.evaluate.evaluate``);
- batch 1 only, trained and tested on the batch-1 rows (nn-Meter's setting);
- the batch-1 rows of the all-batch predictions (``core.predict.evaluate.held_out``).

It also prints a ceiling the data set allows: each model's per-batch time fitted to its own
batch sizes as a + b*batch (two numbers per model, not held out). Cases that even this
misses by more than 10% are noise no held-out predictor can follow. Not a test: nothing is
asserted.

    python bench/predict_eval.py [--csv FILE ...] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import nnls

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.predict.evaluate import (  # noqa: E402
    NN_METER_WITHIN_10PCT,
    evaluate,
    held_out,
    score_cases,
)
from core.text import fixed  # noqa: E402

DEFAULT_CSV = Path(__file__).resolve().parent / "data" / "h200_host_torch_zoo.csv"


def own_curve_ceiling(df: pd.DataFrame) -> float | None:
    """Share within ±10% when each (platform, model) gets its own a + b*batch fit."""
    df = df[df.get("status", "ok").astype(str).str.lower() == "ok"] if "status" in df else df
    platform = df[["backend", "device", "precision"]].astype(str).agg("/".join, axis=1)
    errors: list[np.ndarray] = []
    for _, rows in df.assign(platform=platform).groupby(["platform", "model"]):
        batch = rows["batch_size"].to_numpy(dtype=float)
        if len(np.unique(batch)) < 3:
            continue
        latency = rows["per_image_ms"].to_numpy(dtype=float) * batch
        design = np.column_stack([np.ones_like(batch), batch])
        coef, _ = nnls(design / latency[:, None], np.ones_like(latency))  # relative error
        errors.append(np.abs(design @ coef / latency - 1.0))
    return float(np.mean(np.concatenate(errors) <= 0.10)) if errors else None


def print_block(title: str, result: dict[str, Any]) -> None:
    print(f"\n{title}")
    print(
        f"  {'':<26}{'n':>5}  {'±10% pred':>9} {'base':>6}  {'±5% pred':>8} {'base':>6}"
        f"  {'MAPE pred':>9} {'base':>6}  {'Spearman':>8} {'base':>6}"
    )
    rows = [("overall", result), *sorted(result["per_platform"].items())]
    for name, m in rows:
        b = m["baseline"]
        print(
            f"  {name:<26}{m['n']:>5}  {m['within_10pct']:>9.1%} {b['within_10pct']:>6.1%}"
            f"  {m['within_5pct']:>8.1%} {b['within_5pct']:>6.1%}"
            f"  {m['mape']:>9.1%} {b['mape']:>6.1%}"
            f"  {_num(m['spearman']):>8} {_num(b['spearman']):>6}"
        )


def _num(value: float | None) -> str:
    return fixed(value, 3, missing="n/a")


def run(path: Path) -> dict[str, Any]:
    df = pd.read_csv(path)
    models = df["model"].nunique()
    print(
        f"=== {path} ({len(df)} rows, {models} models); nn-Meter: "
        f"{NN_METER_WITHIN_10PCT:.1%} within ±10% (NCS2, batch 1)"
    )
    started = time.perf_counter_ns()
    everything = evaluate(df)
    seconds = (time.perf_counter_ns() - started) / 1e9
    print_block(f"All batch sizes (evaluate(): {seconds:.1f} s on this machine)", everything)
    out: dict[str, Any] = {"all": everything, "evaluate_seconds": seconds}
    batch1 = df[pd.to_numeric(df["batch_size"], errors="coerce") == 1]
    if batch1["model"].nunique() >= 3:
        out["batch1_only"] = evaluate(batch1)
        print_block(
            "Batch 1 only: trained and tested on batch-1 rows (nn-Meter's setting)",
            out["batch1_only"],
        )
        cases = held_out(df)
        out["batch1_of_all"] = score_cases(cases[cases["batch_size"] == 1])
        print_block("Batch-1 rows of the all-batch predictions", out["batch1_of_all"])
    ceiling = own_curve_ceiling(df)
    out["own_curve_ceiling_within_10pct"] = ceiling
    if ceiling is not None:
        print(
            f"\nCeiling: each model's own a + b*batch curve (not held out) is within ±10% "
            f"on {ceiling:.1%} of the cases."
        )
    print(
        f"Predictor vs nn-Meter (within ±10%): all batches "
        f"{everything['within_10pct'] / NN_METER_WITHIN_10PCT:.2f}x"
        + (
            f", batch 1 only {out['batch1_only']['within_10pct'] / NN_METER_WITHIN_10PCT:.2f}x"
            if "batch1_only" in out
            else ""
        )
    )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--csv",
        action="append",
        type=Path,
        help=f"a results CSV in the long schema (repeatable; default {DEFAULT_CSV})",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()
    results = {str(path): run(path) for path in (args.csv or [DEFAULT_CSV])}
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=_num) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
