"""The profiled cases the kernel-level predictor learns from, and which of them to trust.

A case is one profiled measurement: (platform, model, batch size) with its end-to-end
median from the timed loop, the sum of its layers' profiled times and how many layers
ran. ``profiled_cases`` builds them from a layer table and, where given, the
measurements (long schema) they belong to, for the ``disturbed`` flag and the median.

``screen`` marks the cases the fit should not learn from, and says why:

- ``disturbed``: other processes used the CPU during the case (the measurement's flag);
- ``inflated``: provably inflated, slower per batch than a larger batch of the same
  model on the same platform (more images cannot take less time; the smaller batch was
  slowed by something outside the model).

Fitting leaves both out by default; the evaluation scores all cases and the clean ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from core.errors import DataError
from core.predict.layers import platform_of

CASE_COLUMNS: tuple[str, ...] = (
    "measurement_id", "platform", "model", "batch_size", "e2e_ms", "layer_sum_ms", "n_layers",
    "disturbed", "run_name", "inflated", "clean",
)  # fmt: skip


def flag(value: Any) -> bool:
    """A ``disturbed`` cell as a bool: True, 1, "true", "yes" are True; anything else
    (False, empty, unknown) is not."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return bool(value == value and value != 0)  # NaN is not a flag
    return str(value).strip().lower() in ("true", "1", "yes")


def profiled_cases(layers: pd.DataFrame, measurements: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per profiled measurement (``CASE_COLUMNS``), screened (see ``screen``).

    ``layers`` is a layer table (``core.predict.layers.layer_table``). With
    ``measurements`` (long schema, with ``measurement_id``), only their latency-mode ok
    rows count, and their median and ``disturbed`` flag are used; without, the layer
    rows' own ``e2e_median_ms`` and no flag."""
    grouped = layers.groupby("measurement_id", sort=True)
    cases = grouped.agg(
        platform=("platform", "first"),
        model=("model", "first"),
        batch_size=("batch_size", "first"),
        layer_sum_ms=("time_ms", "sum"),
        n_layers=("time_ms", "size"),
    ).reset_index()
    if "e2e_median_ms" in layers.columns:
        e2e = pd.to_numeric(grouped["e2e_median_ms"].first(), errors="coerce")
        cases["e2e_ms"] = cases["measurement_id"].map(e2e)
    else:
        cases["e2e_ms"] = np.nan
    cases["disturbed"] = False
    cases["run_name"] = (
        cases["measurement_id"].map(grouped["run_name"].first())
        if "run_name" in layers.columns
        else ""
    )
    if measurements is not None and "measurement_id" in measurements.columns:
        rows = measurements.copy()
        rows["measurement_id"] = pd.to_numeric(rows["measurement_id"], errors="coerce")
        rows = rows[rows["measurement_id"].notna()]
        if "status" in rows.columns:
            rows = rows[rows["status"].astype(str).str.lower() == "ok"]
        if "mode" in rows.columns:
            rows = rows[rows["mode"].astype(str).str.lower().isin(("latency", "", "nan"))]
        rows = rows.drop_duplicates("measurement_id").set_index(rows["measurement_id"].astype(int))
        cases = cases[cases["measurement_id"].isin(rows.index)].copy()
        if "latency_ms_median" in rows.columns:
            median = pd.to_numeric(rows["latency_ms_median"], errors="coerce")
            cases["e2e_ms"] = cases["measurement_id"].map(median).fillna(cases["e2e_ms"])
        if "disturbed" in rows.columns:
            cases["disturbed"] = (
                cases["measurement_id"].map(rows["disturbed"].map(flag)).fillna(False)
            )
        if "run_name" in rows.columns:
            cases["run_name"] = cases["measurement_id"].map(rows["run_name"])
        if "model" in rows.columns:
            # The measurements' names win: the CLI maps them to zoo names.
            cases["model"] = (
                cases["measurement_id"].map(rows["model"].astype(str)).fillna(cases["model"])
            )
    cases = cases[np.isfinite(cases["e2e_ms"].astype(float)) & (cases["e2e_ms"].astype(float) > 0)]
    if cases.empty:
        raise DataError(
            "No profiled case has an end-to-end latency.",
            "Give the layer rows with their measurements (backbench results --format csv), "
            "or the layers export's e2e_median_ms column.",
        )
    cases["disturbed"] = cases["disturbed"].astype(bool)
    cases["run_name"] = cases["run_name"].fillna("").astype(str)
    return screen(cases.reset_index(drop=True))


def screen(cases: pd.DataFrame) -> pd.DataFrame:
    """``cases`` with ``inflated`` (slower per batch than a larger batch of the same model
    on the same platform) and ``clean`` (neither disturbed nor inflated)."""
    cases = cases.copy()
    inflated = np.zeros(len(cases), dtype=bool)
    for _, rows in cases.groupby(["platform", "model"], sort=False):
        batch = rows["batch_size"].to_numpy()
        e2e = rows["e2e_ms"].to_numpy(dtype=float)
        for position, index in enumerate(rows.index):
            larger = batch > batch[position]
            inflated[cases.index.get_loc(index)] = bool(np.any(e2e[larger] < e2e[position]))
    cases["inflated"] = inflated
    cases["clean"] = ~(cases["disturbed"].astype(bool) | cases["inflated"])
    return cases[list(CASE_COLUMNS)]


def screening_text(cases: pd.DataFrame) -> str:
    """How many cases the fit leaves out, and why, in a sentence."""
    n = len(cases)
    disturbed = int(cases["disturbed"].sum())
    inflated = int((cases["inflated"] & ~cases["disturbed"]).sum())
    return (
        f"Fitting left out {disturbed + inflated} of {n} profiled cases: {disturbed} disturbed "
        f"(other processes' CPU during the case) and {inflated} provably inflated (slower per "
        "batch than a larger batch of the same model)."
    )


def with_platform(measurements: pd.DataFrame) -> pd.DataFrame:
    frame = measurements.copy()
    for part in ("backend", "device", "precision"):
        if part not in frame.columns:
            frame[part] = "unknown"
    frame["platform"] = platform_of(frame)
    return frame
