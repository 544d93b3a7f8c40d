"""Memory against model size: linear fits, and one or two lines when the data hold two.

Per platform, at batch 1 (else the smallest batch size measured there), one point per
model: peak device memory where at least 3 models have it (a GPU's own memory is what
limits it), else the RSS figure asked for. ``memory="model"`` (the default) is the
model's own share, peak minus the RSS after the framework's imports (``model_rss_mb``):
the process figure carries the framework's few hundred MB in every point, which hides
what the model costs. Data from before the baseline RSS was recorded have no model share;
there, and with ``memory="process"``, the process's peak RSS (``peak_rss_mb``) is used,
and a fallback says so (``memory_fallback`` and a note). x = params, given both in
millions and in MB of fp32 weights (4 bytes each, MB = 2**20 bytes like peak_rss_mb), so
the slope reads as MB of memory per MB of weights, the study's unit.

Number of lines: a one-line least-squares fit against a two-component Gaussian mixture
of linear regressions with a common residual variance (EM from several k-lines starts).
Two lines are kept when their BIC = -2 log L + p ln n (p = 3 for one line, 6 for two) is
lower and each line holds at least 3 models. Each line is then refitted by least squares
on the models assigned to it (highest posterior).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from core.analysis.data import BYTES_PER_MB, FP32_BYTES, AnalysisInput, cell_medians
from core.errors import UsageError

log = logging.getLogger(__name__)

MEMORY_CHOICES = ("model", "process")  # the RSS figure asked for: the model's share, or all
DEVICE_COLUMN = "peak_device_mem_mb"
MODEL_COLUMN = "model_rss_mb"
PROCESS_COLUMN = "peak_rss_mb"
# Each memory column in words: (axis label with its unit, name for a sentence).
MEMORY_LABELS: dict[str, tuple[str, str]] = {
    MODEL_COLUMN: ("model memory: peak − baseline RSS (MB)", "model memory (peak − baseline RSS)"),
    PROCESS_COLUMN: ("process memory: peak RSS (MB)", "process peak RSS"),
    DEVICE_COLUMN: ("peak device memory (MB)", "peak device memory"),
}

MIN_POINTS_PER_LINE = 3
PARAM_MB_PER_MPARAM = 1e6 * FP32_BYTES / BYTES_PER_MB
SELECTION = (
    "1 vs 2 lines by BIC: Gaussian mixture of 2 linear regressions with a common variance "
    "(EM, k-lines starts) against one least-squares line; 2 lines need >= 3 models each"
)

Array = np.ndarray


@dataclass(frozen=True, slots=True)
class LineFit:
    slope: float  # y units per x unit
    intercept: float
    r2: float
    slope_se: float
    n: int
    members: tuple[int, ...]  # indices into the fitted points


def _ols(x: Array, y: Array, members: Array) -> LineFit:
    xs, ys = x[members], y[members]
    if np.ptp(xs) == 0:
        raise ValueError("all models have the same parameter count")
    res = stats.linregress(xs, ys)
    r2 = float(res.rvalue**2) if np.ptp(ys) > 0 else 1.0
    se = float(res.stderr) if xs.size > 2 else math.nan
    return LineFit(
        float(res.slope), float(res.intercept), r2, se, int(xs.size), tuple(int(i) for i in members)
    )


def _loglik_one(y: Array, fitted: Array) -> float:
    n = y.size
    var = max(float(np.mean((y - fitted) ** 2)), 1e-12 * (float(np.var(y)) + 1.0))
    return -0.5 * n * (math.log(2 * math.pi * var) + 1.0)


def _em_two_lines(x: Array, y: Array, labels: Array, var_floor: float) -> tuple[float, Array]:
    """EM for a 2-component mixture of regressions, common variance. (log L, posteriors)."""
    design = np.column_stack([np.ones_like(x), x])
    resp = np.column_stack([labels == 0, labels == 1]).astype(float)
    loglik = -math.inf
    for _ in range(500):
        coefs = []
        for k in range(2):
            w = resp[:, k]
            if w.sum() < 2.0:
                return -math.inf, resp
            sw = np.sqrt(w)
            coef, *_ = np.linalg.lstsq(design * sw[:, None], y * sw, rcond=None)
            coefs.append(coef)
        residuals = np.column_stack([y - design @ c for c in coefs])
        var = max(float(np.sum(resp * residuals**2) / x.size), var_floor)
        weights = resp.mean(axis=0)
        log_dens = np.log(np.maximum(weights, 1e-300)) - 0.5 * (
            np.log(2 * math.pi * var) + residuals**2 / var
        )
        top = log_dens.max(axis=1, keepdims=True)
        total = top[:, 0] + np.log(np.exp(log_dens - top).sum(axis=1))
        resp = np.exp(log_dens - total[:, None])
        new = float(total.sum())
        if abs(new - loglik) < 1e-9 * (1.0 + abs(new)):
            loglik = new
            break
        loglik = new
    return loglik, resp


def _line(x: Array, y: Array) -> Array:
    """(intercept, slope) by least squares; lstsq, unlike polyfit, does not warn when a
    random start puts points of equal x together."""
    coef, *_ = np.linalg.lstsq(np.column_stack([np.ones_like(x), x]), y, rcond=None)
    return coef


def _k_lines_starts(x: Array, y: Array, rng: np.random.Generator) -> list[Array]:
    one = _line(x, y)
    starts = [
        (y > one[0] + one[1] * x).astype(int),
        (y / np.maximum(x, 1e-12) > np.median(y / np.maximum(x, 1e-12))).astype(int),
    ]
    starts += [rng.integers(0, 2, x.size) for _ in range(10)]
    refined = []
    for labels in starts:
        for _ in range(50):  # k-lines: fit each line, move each point to the nearer one
            if min((labels == 0).sum(), (labels == 1).sum()) < 2:
                break
            lines = [_line(x[labels == k], y[labels == k]) for k in range(2)]
            new = np.argmin(np.column_stack([np.abs(y - c[0] - c[1] * x) for c in lines]), axis=1)
            if np.array_equal(new, labels):
                break
            labels = new
        refined.append(labels)
    return refined


def fit_lines(x: Any, y: Any, max_lines: int = 2) -> tuple[list[LineFit], dict[str, float], str]:
    """Fit memory (y) against size (x) with 1 or 2 lines chosen by BIC.

    Returns (lines ordered by slope, steepest first; BIC per number of lines; why)."""
    xs = np.asarray(x, dtype=float)
    ys = np.asarray(y, dtype=float)
    n = xs.size
    single = _ols(xs, ys, np.arange(n))
    bic = {"1": -2 * _loglik_one(ys, single.intercept + single.slope * xs) + 3 * math.log(n)}
    if max_lines < 2 or n < 2 * MIN_POINTS_PER_LINE:
        return (
            [single],
            bic,
            f"one line: {n} models are too few to look for two (need {2 * MIN_POINTS_PER_LINE})",
        )
    rng = np.random.default_rng(0)
    var_floor = (1e-4 * float(np.std(ys)) + 1e-9) ** 2
    best_ll, best_resp = -math.inf, None
    for labels in _k_lines_starts(xs, ys, rng):
        loglik, resp = _em_two_lines(xs, ys, labels, var_floor)
        if loglik > best_ll:
            best_ll, best_resp = loglik, resp
    if best_resp is None:
        return [single], bic, "one line: a two-line mixture collapses onto one line"
    bic["2"] = -2 * best_ll + 6 * math.log(n)
    assign = np.argmax(best_resp, axis=1)
    sizes = [int((assign == k).sum()) for k in range(2)]
    if bic["2"] >= bic["1"]:
        return [single], bic, f"one line: BIC {bic['1']:.1f} (1 line) <= {bic['2']:.1f} (2 lines)"
    if min(sizes) < MIN_POINTS_PER_LINE:
        return [single], bic, f"one line: a second line would hold only {min(sizes)} model(s)"
    try:
        lines = [_ols(xs, ys, np.flatnonzero(assign == k)) for k in range(2)]
    except ValueError:
        return [single], bic, "one line: one of the two groups has a single parameter count"
    lines.sort(key=lambda line: -line.slope)
    return lines, bic, f"two lines: BIC {bic['2']:.1f} (2 lines) < {bic['1']:.1f} (1 line)"


def check_memory(memory: str) -> str:
    """``memory`` when it is one of MEMORY_CHOICES; UsageError otherwise."""
    if memory not in MEMORY_CHOICES:
        raise UsageError(
            f"Unknown memory figure {memory!r}.",
            f"Use one of: {', '.join(MEMORY_CHOICES)} (model: peak − baseline RSS, the "
            "model's own share; process: the whole process's peak RSS).",
        )
    return memory


def memory_label(column: str) -> str:
    """The axis label of a memory column, with its unit."""
    return MEMORY_LABELS.get(column, (f"{column} (MB)", column))[0]


def _memory_column(rows: Any, memory: str) -> tuple[str, str | None]:
    """The column to fit on ``rows`` and, when the model's share was asked for but the
    process figure is used, why."""
    if rows[DEVICE_COLUMN].notna().sum() >= MIN_POINTS_PER_LINE:
        return DEVICE_COLUMN, None
    if memory == "process":
        return PROCESS_COLUMN, None
    known = int(rows[MODEL_COLUMN].notna().sum())
    if known >= MIN_POINTS_PER_LINE:
        return MODEL_COLUMN, None
    have = "no model" if known == 0 else f"only {known} model(s)"
    return PROCESS_COLUMN, (
        f"{have} with a baseline RSS (data measured before backbench recorded it have "
        f"none), so the process's peak RSS ({PROCESS_COLUMN}, the framework included) is "
        f"used instead of the model's share ({MODEL_COLUMN})"
    )


def memory_section(
    inp: AnalysisInput, memory: str = "model"
) -> tuple[dict[str, Any] | None, str | None, list[str]]:
    """The ``memory_vs_params`` section for the ``memory`` figure ("model" or "process",
    see the module's docstring). Returns (section, reason, notes)."""
    check_memory(memory)
    cells = cell_medians(inp, ("params", PROCESS_COLUMN, MODEL_COLUMN, DEVICE_COLUMN))
    platforms: dict[str, Any] = {}
    fits: list[dict[str, Any]] = []
    reasons: dict[str, str] = {}
    fallbacks: dict[str, str] = {}
    for platform, group in cells.groupby("platform", sort=True):
        batch = 1 if (group["batch_size"] == 1).any() else int(group["batch_size"].min())
        rows = group[group["batch_size"] == batch]
        column, fallback = _memory_column(rows, memory)
        usable = rows[rows[column].notna() & rows["params"].notna() & (rows["params"] > 0)]
        if rows[column].isna().all():
            reasons[str(platform)] = (
                f"no memory figures ({PROCESS_COLUMN}, {MODEL_COLUMN}, {DEVICE_COLUMN}) on "
                f"{platform}"
            )
            continue
        if len(usable) < MIN_POINTS_PER_LINE:
            reasons[str(platform)] = (
                f"{len(usable)} model(s) with both memory and params on {platform} at batch "
                f"{batch}; a line needs at least {MIN_POINTS_PER_LINE}"
            )
            continue
        if usable["params"].nunique() < 2:
            reasons[str(platform)] = f"all models on {platform} have the same parameter count"
            continue
        params_mb = usable["params"].to_numpy() * FP32_BYTES / BYTES_PER_MB
        memory_mb = usable[column].to_numpy(dtype=float)
        models = usable["model"].tolist()
        lines, bic, why = fit_lines(params_mb, memory_mb)
        line_of = {i: k for k, line in enumerate(lines) for i in line.members}
        platform_fits = []
        for k, line in enumerate(lines):
            entry = {
                "platform": str(platform),
                "line": k,
                "memory_column": column,
                "batch_size": batch,
                "slope": line.slope,
                "slope_unit": "MB of memory per MB of fp32 parameters",
                "slope_mb_per_mparam": line.slope * PARAM_MB_PER_MPARAM,
                "slope_se": line.slope_se if math.isfinite(line.slope_se) else None,
                "intercept": line.intercept,
                "intercept_unit": "MB",
                "r2": line.r2,
                "n": line.n,
                "models": sorted(models[i] for i in line.members),
            }
            platform_fits.append(entry)
        fits.extend(platform_fits)
        if fallback is not None:
            fallbacks[str(platform)] = fallback
        platforms[str(platform)] = {
            "memory_column": column,
            "memory_label": memory_label(column),
            "memory_fallback": fallback,
            "batch_size": batch,
            "n_lines": len(lines),
            "bic": bic,
            "choice": why,
            "points": [
                {
                    "model": models[i],
                    "params_m": float(usable["params"].iloc[i]) / 1e6,
                    "params_mb": float(params_mb[i]),
                    "memory_mb": float(memory_mb[i]),
                    "line": line_of[i],
                }
                for i in range(len(models))
            ],
        }
    if not fits:
        return None, "; ".join(reasons.values()) or "no memory figures in the data", []
    notes = [f"memory_vs_params skipped for {p}: {r}" for p, r in reasons.items()]
    by_reason: dict[str, list[str]] = {}
    for platform_name, why in fallbacks.items():
        by_reason.setdefault(why, []).append(platform_name)
    notes += [f"memory_vs_params on {', '.join(ps)}: {why}." for why, ps in by_reason.items()]
    labels = list(dict.fromkeys(info["memory_label"] for info in platforms.values()))
    section = {
        "x": "parameters: MB of fp32 weights (4 bytes each, MB = 2**20 bytes); also in millions",
        "y": "; ".join(labels),
        "memory": memory,
        "memory_fallback": bool(fallbacks),
        "selection": SELECTION,
        "fits": fits,
        "per_platform": platforms,
        "says": _says(fits, platforms),
    }
    return section, None, notes


def _says(fits: list[dict[str, Any]], platforms: dict[str, Any]) -> str:
    texts = []
    for platform, info in platforms.items():
        lines = [f for f in fits if f["platform"] == platform]
        described = "; ".join(
            f"{f['slope']:.2f} MB per MB of weights ({f['slope_mb_per_mparam']:.2f} MB per M params), "
            f"intercept {f['intercept']:.0f} MB, R² {f['r2']:.3f}, {f['n']} models"
            for f in lines
        )
        label = MEMORY_LABELS.get(info["memory_column"], ("", info["memory_column"]))[1]
        if info.get("memory_fallback"):
            label += " (no baseline RSS in these data)"
        if len(lines) == 2:
            texts.append(f"On {platform} {label} falls on two lines: {described}.")
        else:
            texts.append(f"On {platform} {label} grows along one line: {described}.")
    return " ".join(texts)
