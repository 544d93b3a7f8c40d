"""Measured accuracy next to the published reference, per model and platform, from
long-schema rows; and a measured figure's 95% interval as a table shows it (no Qt: the
accuracy view, the results table and their tests read these).

A measured figure comes from an accuracy run: a row with ``n_eval_images`` (or mode
accuracy) and a top-1. The reference is the zoo card's published ImageNet top-1/top-5 of
the torchvision weights (``core.zoo.get_card(name).acc1/acc5``), labelled
``REFERENCE`` wherever it is shown. A model with no measured accuracy in the rows gets
one row with its reference alone.

analyze() joins measured accuracy to each model's timing rows (one figure per model, and
none at all for a table of accuracy runs alone); this table keeps every platform's own
result, so it is built from the rows themselves.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pandas as pd

from core.analysis.data import MEASURED, REFERENCE
from core.errors import BackbenchError
from core.text import EN_DASH, fixed
from core.zoo import get_card, is_model_file

log = logging.getLogger(__name__)

PLATFORM_PARTS: tuple[str, ...] = ("backend", "device", "precision")
# Carried from a measured row as they are (the CI bounds are core's Wilson interval).
MEASURED_COLUMNS: tuple[str, ...] = (
    "top1", "top1_ci_low", "top1_ci_high", "top5", "top5_ci_low", "top5_ci_high",
    "top1_agreement", "max_logit_diff", "accuracy_reference", "n_eval_images", "skipped_images",
    "dataset_id",
)  # fmt: skip
# The table's columns, in order: each measured figure beside its published reference.
COLUMNS: tuple[str, ...] = (
    "model", "platform", "top1", "reference_top1", "top5", "reference_top5", "top1_agreement",
    "accuracy_reference", "max_logit_diff", "n_eval_images", "skipped_images", "accuracy_source",
    "dataset_id", "top1_ci_low", "top1_ci_high", "top5_ci_low", "top5_ci_high",
)  # fmt: skip
REFERENCE_ONLY = "reference only"  # the platform cell of a model nobody measured
# An interval column the model adds -> (its figure, lower bound, upper bound) columns.
INTERVAL_COLUMNS: dict[str, tuple[str, str, str]] = {
    "top1_ci95": ("top1", "top1_ci_low", "top1_ci_high"),
    "top5_ci95": ("top5", "top5_ci_low", "top5_ci_high"),
}


def interval_text(low: Any, high: Any, decimals: int = 2) -> str:
    """A 95% interval (of a percentage) as a cell reads it: "74.90–77.31", both bounds to
    the same decimals; '' when a bound is missing."""
    if as_number(low) is None or as_number(high) is None:
        return ""
    return f"{fixed(float(low), decimals)}{EN_DASH}{fixed(float(high), decimals)}"


def as_number(value: Any) -> float | None:
    """A finite float, or None (missing, NaN, text, a bool)."""
    if value is None or isinstance(value, (bool, np.bool_)) or value is pd.NA:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def with_intervals(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """``frame`` with an interval column after each figure whose bounds it holds (valued
    by the lower bound, so it sorts by it), and each interval column's upper bounds."""
    highs: dict[str, np.ndarray] = {}
    for name, (figure, low, high) in INTERVAL_COLUMNS.items():
        if name in frame.columns or low not in frame.columns or high not in frame.columns:
            continue
        lows = pd.to_numeric(frame[low], errors="coerce").astype(float)
        if lows.isna().all():
            continue  # no row has an interval: no empty column
        anchor = figure if figure in frame.columns else low
        frame.insert(frame.columns.get_loc(anchor) + 1, name, lows)
        highs[name] = pd.to_numeric(frame[high], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return frame, highs


def published_accuracy(model: str) -> tuple[float | None, float | None]:
    """The zoo card's published (top-1, top-5) in percent; (None, None) for a model file
    or a name the zoo does not know. A path is never opened: it names a file on some
    agent's host, not here."""
    if not model or "/" in model or "\\" in model or is_model_file(model):
        return None, None
    try:
        card = get_card(model)
    except BackbenchError as exc:
        log.debug("no published accuracy for %s: %s", model, exc)
        return None, None
    return as_number(card.acc1), as_number(card.acc5)


def _platforms(frame: pd.DataFrame) -> pd.Series:
    parts = [
        frame[c].astype("string").fillna("?") if c in frame.columns else pd.Series("?", index=frame.index)
        for c in PLATFORM_PARTS
    ]
    return (parts[0] + "/" + parts[1] + "/" + parts[2]).astype(str)


def measured_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The ok rows of accuracy runs that hold a top-1, with a ``platform`` column; the
    latest per model, platform and dataset (a run measured again replaces the figure)."""
    if frame.empty or "model" not in frame.columns or "top1" not in frame.columns:
        return pd.DataFrame(columns=["model", "platform", *MEASURED_COLUMNS])
    rows = frame.copy()
    for column in MEASURED_COLUMNS:
        if column not in rows.columns:
            rows[column] = np.nan
    for column in MEASURED_COLUMNS:
        if column not in ("accuracy_reference", "dataset_id"):
            rows[column] = pd.to_numeric(rows[column], errors="coerce")
    accuracy_run = rows["n_eval_images"].notna()
    if "mode" in rows.columns:
        accuracy_run |= (rows["mode"].astype("string").str.lower() == "accuracy").fillna(False)
    keep = accuracy_run & rows["top1"].notna() & rows["model"].notna()
    if "status" in rows.columns:
        status = rows["status"].astype("string").str.lower()
        keep &= (status == "ok").fillna(True)
    rows = rows.loc[keep]
    rows["platform"] = _platforms(rows)
    rows["model"] = rows["model"].astype(str)
    if "started_at" in rows.columns:
        rows = rows.sort_values("started_at", kind="stable", na_position="first")
    group = ["model", "platform", rows["dataset_id"].astype("string").fillna("")]
    latest = rows.groupby(group, sort=False, dropna=False).tail(1)
    return latest[["model", "platform", *MEASURED_COLUMNS]].reset_index(drop=True)


def accuracy_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per model and platform: the measured figures with the published reference beside
    them; a model with no measurement, its reference alone (when the zoo has one).
    Sorted by model, then platform."""
    measured = measured_rows(frame)
    models = sorted({str(m) for m in frame["model"].dropna()}) if "model" in frame.columns else []
    published = {m: published_accuracy(m) for m in models}
    records: list[dict[str, Any]] = []
    for row in measured.to_dict(orient="records"):
        top1, top5 = published.get(row["model"]) or published_accuracy(row["model"])
        records.append({**row, "accuracy_source": MEASURED, "reference_top1": top1, "reference_top5": top5})
    measured_models = set(measured["model"])
    for model in models:
        top1, top5 = published[model]
        if model in measured_models or top1 is None:
            continue
        records.append({"model": model, "platform": REFERENCE_ONLY, "accuracy_source": REFERENCE,
                        "reference_top1": top1, "reference_top5": top5})  # fmt: skip
    table = pd.DataFrame.from_records(records, columns=list(COLUMNS))
    if table.empty:
        return table
    for column in COLUMNS:
        if column not in ("model", "platform", "accuracy_source", "accuracy_reference", "dataset_id"):
            table[column] = pd.to_numeric(table[column], errors="coerce").astype(float)
    order = table.assign(_reference_only=table["platform"] == REFERENCE_ONLY)
    order = order.sort_values(["model", "_reference_only", "platform"], kind="stable")
    return order.drop(columns="_reference_only").reset_index(drop=True)
