"""Accuracy against cost: top-1/top-5 vs GFLOPs (bubble area by params) and accuracy
density (top-1 % per million parameters) with Wilson 95% error bars.

One value per model: the median of its measured top-1 over platforms and batch sizes, or
the zoo's ImageNet reference where nothing was measured (labelled as such).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from statsmodels.stats.proportion import proportion_confint

from core.analysis.data import MEASURED, REFERENCE, AnalysisInput, model_table

log = logging.getLogger(__name__)

CI_METHOD = "Wilson score interval, 95%, on top-1 as a binomial proportion over n_eval_images"


@dataclass(frozen=True, slots=True)
class Interval:
    low: float
    high: float


def wilson_interval(accuracy_pct: float, n: int | float, alpha: float = 0.05) -> Interval:
    """Wilson score interval of an accuracy given in percent over ``n`` images, in percent."""
    if not (n > 0) or not (0.0 <= accuracy_pct <= 100.0):
        raise ValueError("wilson_interval needs n > 0 and an accuracy between 0 and 100 %")
    successes = accuracy_pct / 100.0 * n
    low, high = proportion_confint(successes, n, alpha=alpha, method="wilson")
    return Interval(float(low) * 100.0, float(high) * 100.0)


@dataclass(frozen=True, slots=True)
class ModelAccuracy:
    model: str
    params_m: float | None
    gflops: float | None
    top1: float | None
    top5: float | None
    source: str | None
    n_eval_images: int | None
    density: float | None  # top-1 % per million params
    density_low: float | None
    density_high: float | None
    top1_low: float | None
    top1_high: float | None
    # The published ImageNet figures (torchvision's), beside a measured top-1/top-5.
    reference_top1: float | None = None
    reference_top5: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "params_m": self.params_m,
            "gflops": self.gflops,
            "top1": self.top1,
            "top5": self.top5,
            "accuracy_source": self.source,
            "n_eval_images": self.n_eval_images,
            "density": self.density,
            "density_ci95": None
            if self.density_low is None
            else [self.density_low, self.density_high],
            "top1_ci95": None if self.top1_low is None else [self.top1_low, self.top1_high],
            "reference_top1": self.reference_top1,
            "reference_top5": self.reference_top5,
        }


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def model_accuracies(inp: AnalysisInput) -> list[ModelAccuracy]:
    """Per model accuracy, size and density, sorted by density (highest first)."""
    result = []
    for row in model_table(inp).itertuples(index=False):
        params = _finite(row.params)
        params_m = params / 1e6 if params and params > 0 else None
        flops = _finite(row.flops)
        top1 = _finite(row.top1)
        n_eval = _finite(row.n_eval_images)
        n_eval_int = int(n_eval) if n_eval and n_eval > 0 else None
        density = top1 / params_m if top1 is not None and params_m else None
        low = high = d_low = d_high = None
        if top1 is not None and n_eval_int and row.accuracy_source == MEASURED:
            interval = wilson_interval(top1, n_eval_int)
            low, high = interval.low, interval.high
            if params_m:
                d_low, d_high = low / params_m, high / params_m
        result.append(
            ModelAccuracy(
                model=str(row.model),
                params_m=params_m,
                gflops=flops / 1e9 if flops is not None else None,
                top1=top1,
                top5=_finite(row.top5),
                source=row.accuracy_source,
                n_eval_images=n_eval_int,
                density=density,
                density_low=d_low,
                density_high=d_high,
                top1_low=low,
                top1_high=high,
                reference_top1=_finite(getattr(row, "reference_top1", None)),
                reference_top5=_finite(getattr(row, "reference_top5", None)),
            )
        )
    result.sort(key=lambda m: (-(m.density if m.density is not None else -math.inf), m.model))
    return result


def accuracy_section(inp: AnalysisInput) -> tuple[dict[str, Any] | None, str | None]:
    """The ``accuracy_density`` section of analyze(), or (None, reason)."""
    models = model_accuracies(inp)
    with_acc = [m for m in models if m.top1 is not None]
    if not with_acc:
        return None, (
            "no accuracy: the data have no top1 column and none of the models is in the zoo; "
            "add top1 (and n_eval_images) to the data"
        )
    with_density = [m for m in with_acc if m.density is not None]
    no_params = sorted(m.model for m in with_acc if m.params_m is None)
    sources = sorted({m.source for m in with_acc if m.source})
    has_ci = [m for m in with_density if m.density_low is not None]
    if has_ci:
        error_bars = CI_METHOD
    elif any(m.source == MEASURED for m in with_acc):
        error_bars = "none: n_eval_images (images the accuracy was measured on) is not in the data"
    else:
        error_bars = f"none: the accuracies are {REFERENCE} figures, with no sample size"
    section: dict[str, Any] = {
        "unit": "top-1 % per million parameters",
        "accuracy_source": sources[0] if len(sources) == 1 else "mixed",
        "error_bars": error_bars,
        "flops_note": "GFLOPs per image, FLOPs = 2 x MACs",
        "models": [m.to_dict() for m in models],
        "says": _says(with_acc, with_density, no_params),
    }
    if no_params:
        section["missing_params"] = no_params
    return section, None


def _says(
    with_acc: list[ModelAccuracy], with_density: list[ModelAccuracy], no_params: list[str]
) -> str:
    parts: list[str] = []
    if with_density:
        best = with_density[0]
        worst = with_density[-1]
        parts.append(
            f"Most accuracy per parameter: {best.model} "
            f"({best.density:.3g} top-1 % per M params at {best.params_m:.3g} M params)"
        )
        if len(with_density) > 1:
            parts.append(f"least: {worst.model} ({worst.density:.3g})")
    top = max(with_acc, key=lambda m: m.top1 or -math.inf)
    parts.append(f"most accurate: {top.model} ({top.top1:.2f} % top-1)")
    if any(m.source == REFERENCE for m in with_acc):
        parts.append("accuracies marked reference are torchvision's ImageNet figures, not measured")
    if no_params:
        parts.append(f"no parameter count for {', '.join(no_params)}")
    return "; ".join(parts) + "."
