"""Speed-up between platforms, per model and batch size.

speedup = per_image_ms on the baseline / per_image_ms on the platform, so above 1 means
faster than the baseline. The baseline is the one the user names, else the slowest
platform: the highest mean of log(its per-image time / the geometric mean over the
platforms that measured that same model and batch size). That compares platforms on the
cells they share even when they measured different models.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pandas as pd

from core.analysis.data import AnalysisInput, cell_medians
from core.errors import DataError

log = logging.getLogger(__name__)

SLOWEST_RULE = (
    "the slowest platform: highest mean log(per_image_ms / geometric mean over the platforms) "
    "on the (model, batch size) cells measured on two or more platforms"
)


def _slowest(table: pd.DataFrame) -> str:
    logs = np.log(table)
    relative = logs.sub(logs.mean(axis=1), axis=0)
    scores = relative.mean(axis=0, skipna=True)
    return str(max(scores.index, key=lambda p: (float(scores[p]), p)))


def speedup_table(
    inp: AnalysisInput, baseline: str | None = None
) -> tuple[pd.DataFrame | None, str, str]:
    """(table, baseline, rule) where table has columns model, batch_size, platform,
    per_image_ms, baseline_per_image_ms, speedup. (None, reason, "") when not possible."""
    platforms = inp.platforms
    if len(platforms) < 2:
        return None, f"only one platform ({platforms[0]}) in the data", ""
    if baseline is not None and baseline not in platforms:
        raise DataError(
            f"Baseline platform {baseline!r} is not in the data.",
            f"Use one of: {', '.join(platforms)} (backend/device/precision).",
        )
    cells = cell_medians(inp, ("per_image_ms",))
    wide = cells.pivot_table(
        index=["model", "batch_size"], columns="platform", values="per_image_ms", aggfunc="median"
    )
    shared = wide[wide.notna().sum(axis=1) >= 2]
    if shared.empty:
        return None, "no model was measured at the same batch size on two platforms", ""
    rule = "given by the user" if baseline else SLOWEST_RULE
    base = baseline or _slowest(shared)
    rows = []
    for (model, batch), values in shared.iterrows():
        base_ms = values.get(base)
        if base_ms is None or not math.isfinite(base_ms):
            continue
        for platform, ms in values.items():
            if platform == base or not math.isfinite(ms):
                continue
            rows.append(
                {
                    "model": str(model),
                    "batch_size": int(batch),
                    "platform": str(platform),
                    "per_image_ms": float(ms),
                    "baseline_per_image_ms": float(base_ms),
                    "speedup": float(base_ms / ms),
                }
            )
    if not rows:
        return (
            None,
            f"no model measured on the baseline {base} and another platform at the same batch size",
            "",
        )
    return pd.DataFrame(rows), base, rule


def speedup_section(
    inp: AnalysisInput, baseline: str | None = None
) -> tuple[dict[str, Any] | None, str | None, list[str]]:
    """The ``speedup`` section. Returns (section, reason, notes)."""
    table, base_or_reason, rule = speedup_table(inp, baseline)
    if table is None:
        return None, base_or_reason, []
    base = base_or_reason
    geomean: dict[str, dict[str, Any]] = {}
    for (platform, batch), group in table.groupby(["platform", "batch_size"], sort=True):
        geomean.setdefault(str(platform), {})[str(int(batch))] = {
            "speedup": float(np.exp(np.log(group["speedup"]).mean())),
            "n_models": int(len(group)),
        }
    measured = set(zip(table["model"], table["batch_size"], strict=True))
    notes = []
    cells = cell_medians(inp, ("per_image_ms",))
    only_one = cells.groupby(["model", "batch_size"])["platform"].nunique()
    single = sorted(
        {m for (m, b), count in only_one.items() if count < 2 and (m, b) not in measured}
    )
    if single:
        notes.append(
            f"speedup: {len(single)} model(s) measured on one platform only at some batch sizes ({', '.join(single[:8])}{' ...' if len(single) > 8 else ''})"
        )
    section = {
        "baseline": base,
        "baseline_rule": rule,
        "definition": "speedup = baseline per_image_ms / platform per_image_ms (> 1: faster than the baseline)",
        "table": table.sort_values(["platform", "batch_size", "model"]).to_dict(orient="records"),
        "geomean": geomean,
        "says": _says(table, base, geomean),
    }
    return section, None, notes


def _says(table: pd.DataFrame, base: str, geomean: dict[str, dict[str, Any]]) -> str:
    texts = []
    for platform, by_batch in geomean.items():
        batches = sorted(by_batch, key=int)
        first, last = batches[0], batches[-1]
        rows = table[table["platform"] == platform]
        top = rows.loc[rows["speedup"].idxmax()]
        text = (
            f"{platform} vs {base}: {by_batch[first]['speedup']:.2f}x at batch {first} "
            f"(geometric mean over {by_batch[first]['n_models']} models)"
        )
        if last != first:
            text += f", {by_batch[last]['speedup']:.2f}x at batch {last}"
        text += (
            f"; largest {top['speedup']:.2f}x for {top['model']} at batch {int(top['batch_size'])}."
        )
        texts.append(text)
    return " ".join(texts)
