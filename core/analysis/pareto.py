"""Accuracy against speed: top-1 vs images per second at batch 1, and the Pareto front
(the models no other model beats on both) per platform.

FPS is the measured throughput_ips where present, else 1000 / per_image_ms. Batch 1 is
the latency a single request sees; a platform without batch 1 uses its smallest batch
size, and says so. Accuracy is the platform's own measured top-1 where it has one, else
the model's value pooled over platforms (measured, or the zoo's reference, labelled).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from core.analysis.data import MEASURED, REFERENCE, AnalysisInput, cell_medians, model_table

log = logging.getLogger(__name__)

FRONT_RULE = (
    "a model is on the front when no other model has both top-1 >= and FPS >= its own "
    "with at least one strictly greater"
)


def pareto_front(accuracy: Any, fps: Any) -> list[bool]:
    """Mask of the non-dominated points, maximising both coordinates. Equal points are
    all kept: neither beats the other."""
    acc = np.asarray(accuracy, dtype=float)
    speed = np.asarray(fps, dtype=float)
    on_front = []
    for i in range(acc.size):
        dominated = np.any(
            (acc >= acc[i]) & (speed >= speed[i]) & ((acc > acc[i]) | (speed > speed[i]))
        )
        on_front.append(not bool(dominated))
    return on_front


def _platform_points(
    cells: pd.DataFrame, accuracy: pd.DataFrame, measured_here: pd.Series
) -> tuple[pd.DataFrame, int]:
    batch = int(cells["batch_size"].min()) if 1 not in set(cells["batch_size"]) else 1
    rows = cells[cells["batch_size"] == batch].copy()
    fps = 1000.0 / rows["per_image_ms"]
    rows["fps"] = rows["throughput_ips"].where(rows["throughput_ips"] > 0, fps)
    rows = rows.merge(accuracy, on="model", how="left")
    # A platform's own measured accuracy (fp16 or int8 can shift it) wins over the
    # model's value pooled over platforms.
    own = rows["model"].map(measured_here)
    rows["top1"] = own.where(own.notna(), rows["top1"])
    rows.loc[own.notna(), "accuracy_source"] = MEASURED
    return rows, batch


def pareto_section(inp: AnalysisInput) -> tuple[dict[str, Any] | None, str | None, list[str]]:
    """The ``pareto`` section: per platform, the points and the front. (section, reason, notes)."""
    accuracy = model_table(inp)[["model", "top1", "accuracy_source"]]
    if accuracy["top1"].isna().all():
        return (
            None,
            (
                "no accuracy: the data have no top1 column and none of the models is in the zoo; "
                "add top1 to the data"
            ),
            [],
        )
    cells = cell_medians(inp, ("per_image_ms", "throughput_ips"))
    platforms: dict[str, Any] = {}
    notes: list[str] = []
    measured = inp.frame[inp.frame["accuracy_source"] == MEASURED]
    for platform, group in cells.groupby("platform", sort=True):
        here = measured[measured["platform"] == platform].groupby("model")["top1"].median()
        rows, batch = _platform_points(group, accuracy, here)
        missing = sorted(rows.loc[rows["top1"].isna(), "model"].tolist())
        rows = rows[rows["top1"].notna()].sort_values("fps", ascending=False)
        if missing:
            notes.append(f"pareto on {platform}: no accuracy for {', '.join(missing)}; left out")
        if rows.empty:
            continue
        mask = pareto_front(rows["top1"], rows["fps"])
        points = [
            {
                "model": r.model,
                "top1": float(r.top1),
                "fps": float(r.fps),
                "per_image_ms": float(r.per_image_ms),
                "accuracy_source": r.accuracy_source,
                "on_front": on,
            }
            for r, on in zip(rows.itertuples(index=False), mask, strict=True)
        ]
        front = [p["model"] for p in points if p["on_front"]]
        platforms[str(platform)] = {
            "batch_size": batch,
            "points": points,
            "front": front,
            "says": _says(str(platform), batch, points, front),
        }
        if batch != 1:
            notes.append(f"pareto on {platform}: no batch 1 measured; used batch {batch}")
    if not platforms:
        return None, "no model has both an accuracy and a batch-1 time", notes
    sources = {p["accuracy_source"] for v in platforms.values() for p in v["points"]}
    section: dict[str, Any] = {
        "x": "images per second (FPS) at batch 1",
        "y": "top-1 accuracy (%)",
        "fps_source": "throughput_ips where measured, else 1000 / per_image_ms",
        "rule": FRONT_RULE,
        "accuracy_source": sources.pop() if len(sources) == 1 else "mixed",
        "platforms": platforms,
        "says": " ".join(v["says"] for v in platforms.values()),
    }
    return section, None, notes


def _says(platform: str, batch: int, points: list[dict[str, Any]], front: list[str]) -> str:
    fastest = max(points, key=lambda p: p["fps"])
    best = max(points, key=lambda p: p["top1"])
    text = (
        f"On {platform} (batch {batch}) {len(front)} of {len(points)} models are Pareto-optimal: "
        f"{', '.join(front)}. Fastest {fastest['model']} ({fastest['fps']:.3g} FPS, "
        f"{fastest['top1']:.1f} % top-1); most accurate {best['model']} ({best['top1']:.1f} %, "
        f"{best['fps']:.3g} FPS)."
    )
    references = sum(p["accuracy_source"] == REFERENCE for p in points)
    if references:
        share = "All" if references == len(points) else f"{references} of {len(points)}"
        text += f" {share} accuracies are {REFERENCE} figures, not measured."
    if len(points) == 1:
        text += " With one model the front is that model."
    return text
