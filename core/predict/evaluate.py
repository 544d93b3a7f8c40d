"""How well the latency predictor does on models it has not seen, and how that is said.

``evaluate`` cross-validates the predictor leave-one-model-out (all rows of a model held
out together) against a FLOPs-only baseline, per platform; ``held_out`` gives the
held-out predictions themselves and ``score_cases`` scores any such cases.
``EVALUATION_METRICS`` is the one list of the metrics, with their labels;
``evaluation_rows`` and ``evaluation_says`` are the table and the sentences that the CLI,
the HTML report and the GUI show.

The metrics and their wording import nothing heavy: the GUI builds its table from them at
start-up and the CLI's ``--help`` stays fast. The cross-validation imports the predictor
(scikit-learn, SciPy) when it runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from core.errors import DataError
from core.predict.features import (
    FLOPS,
    KERNEL_KEYS,
    FeatureProvider,
    has_kernel_census,
    zoo_features,
)
from core.text import percent, significant

if TYPE_CHECKING:
    from core.predict.predictor import TrainingData

NOTE_INTERVAL = 0.9  # the interval whose held-out coverage evaluate() reports
NN_METER_WITHIN_10PCT = 0.834  # nn-Meter, NCS2, batch 1 (Zhang et al., MobiSys 2021)


@dataclass(frozen=True, slots=True)
class EvaluationMetric:
    """One metric of ``evaluate``'s result: its key, its label, and whether it is a share
    (a fraction, shown as a percentage) rather than a plain number."""

    key: str
    label: str
    share: bool = True


EVALUATION_METRICS: tuple[EvaluationMetric, ...] = (
    EvaluationMetric("within_10pct", "within ±10%"),
    EvaluationMetric("within_5pct", "within ±5%"),
    EvaluationMetric("mape", "MAPE"),
    EvaluationMetric("spearman", "Spearman", share=False),
)


# -- wording ----------------------------------------------------------------------------


def evaluation_rows(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """evaluate()'s dict as rows: all platforms first, then each platform; each metric of
    the predictor next to the FLOPs-only baseline's (``baseline_<metric>``)."""
    rows = []
    scopes = [("all platforms", result), *(result.get("per_platform") or {}).items()]
    for scope, metrics in scopes:
        baseline = metrics.get("baseline") or {}
        row: dict[str, Any] = {"platform": scope, "n": metrics.get("n")}
        for metric in EVALUATION_METRICS:
            row[metric.key] = metrics.get(metric.key)
            row[f"baseline_{metric.key}"] = baseline.get(metric.key)
        rows.append(row)
    return rows


def evaluation_says(result: Mapping[str, Any]) -> str:
    """What evaluate()'s ``result`` says, in a few sentences, with nn-Meter for scale."""
    base = result.get("baseline") or {}
    text = (
        f"Holding out one model at a time, the predictor put {percent(result.get('within_10pct'))} "
        f"of {result.get('n')} latencies within ±10% of the measurement and "
        f"{percent(result.get('within_5pct'))} within ±5% (MAPE {percent(result.get('mape'))}, "
        f"Spearman {significant(result.get('spearman'))}); the FLOPs-only baseline reached "
        f"{percent(base.get('within_10pct'))} within ±10% (MAPE {percent(base.get('mape'))})."
    )
    per = result.get("per_platform") or {}
    if len(per) > 1:
        best = max(per, key=lambda p: per[p].get("within_10pct") or 0.0)
        worst = min(per, key=lambda p: per[p].get("within_10pct") or 0.0)
        text += (
            f" Best platform: {best} ({percent(per[best].get('within_10pct'))} within ±10%);"
            f" hardest: {worst} ({percent(per[worst].get('within_10pct'))})."
        )
    return text + (
        f" For scale, nn-Meter reports {percent(NN_METER_WITHIN_10PCT)} within ±10% on NCS2 "
        "at batch 1 only."
    )


# -- cross-validation -------------------------------------------------------------------


def evaluate(df: pd.DataFrame, features: FeatureProvider | None = None) -> dict[str, Any]:
    """Leave-one-model-out CV of the predictor and of a FLOPs-only baseline, per platform.

    Shares and MAPE are fractions (0.05 = 5%); spearman is over all held-out cases of a
    platform (all batch sizes). JSON-serialisable: NaN becomes None.
    """
    return _evaluate(df, features or zoo_features)


def held_out(df: pd.DataFrame, features: FeatureProvider | None = None) -> pd.DataFrame:
    """Each case's leave-one-model-out prediction, as ``evaluate`` scores it: one row per
    (platform, model, batch_size) with the measured ``latency_ms`` (per batch), the
    predictor's ``predicted_ms`` and the FLOPs-only baseline's ``baseline_ms``. Platforms
    with too few models are left out. For slicing the figures (e.g. batch 1 only)."""
    from core.predict.predictor import MIN_MODELS, method_for, training_data

    data = training_data(df, features or zoo_features)
    frame, skipped = _cross_validate(data, method_for(data))
    if frame.empty:
        raise DataError(
            "; ".join(skipped) + ".", f"Measure at least {MIN_MODELS} different models."
        )
    return frame


def score_cases(cases: pd.DataFrame) -> dict[str, Any]:
    """The metrics of held-out ``cases`` (rows as ``held_out`` gives them), for the
    predictor and under ``baseline`` for the FLOPs-only baseline, over all cases and under
    ``per_platform`` for each platform. NaN where a metric is undefined."""
    result = _score(cases)
    result["per_platform"] = {
        str(platform): _score(rows) for platform, rows in cases.groupby("platform", sort=True)
    }
    return result


def _score(cases: pd.DataFrame) -> dict[str, Any]:
    actual = cases["latency_ms"].to_numpy()
    result = _metrics(actual, cases["predicted_ms"].to_numpy())
    result["baseline"] = _metrics(actual, cases["baseline_ms"].to_numpy())
    return result


def _cross_validate(data: TrainingData, kind: str) -> tuple[pd.DataFrame, list[str]]:
    """Held-out predictions on every platform with enough models, and the skip reasons."""
    from core.predict.models import out_of_fold
    from core.predict.predictor import MIN_MODELS, too_few_models

    frames: list[pd.DataFrame] = []
    skipped: list[str] = []
    for platform, rows in data.table.groupby("platform", sort=True):
        models = sorted(rows["model"].unique())
        if len(models) < MIN_MODELS:
            skipped.append(too_few_models(platform, models))
            continue
        batch = rows["batch_size"].to_numpy(dtype=np.float64)
        groups = rows["model"].to_numpy()
        y = np.log(rows["per_image_ms"].to_numpy())
        oof = out_of_fold(data.design(rows), y, groups, kind, data.names, None)
        flops = np.array([data.features[m][FLOPS] for m in groups])
        actual = np.exp(y) * batch
        baseline = _baseline_out_of_fold(np.log(flops * batch), np.log(actual), groups)
        frames.append(
            pd.DataFrame(
                {
                    "platform": platform,
                    "model": groups,
                    "batch_size": rows["batch_size"].to_numpy(),
                    "latency_ms": actual,
                    "predicted_ms": np.exp(oof) * batch,
                    "baseline_ms": np.exp(baseline),
                }
            )
        )
    columns = ["platform", "model", "batch_size", "latency_ms", "predicted_ms", "baseline_ms"]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    return frame, skipped


def _evaluate(
    df: pd.DataFrame, provider: FeatureProvider, kind: str | None = None
) -> dict[str, Any]:
    """``evaluate`` with the regressor ``kind`` chosen (None: as fit() chooses)."""
    from core.predict.predictor import MIN_MODELS, method_for, training_data

    data = training_data(df, provider)
    kind = kind or method_for(data)
    frame, skipped = _cross_validate(data, kind)
    if frame.empty:
        raise DataError(
            "; ".join(skipped) + ".",
            f"Measure at least {MIN_MODELS} different models on a platform.",
        )
    result = score_cases(frame)
    notes: list[str] = []
    covered = 0
    for platform, cases in frame.groupby("platform", sort=True):
        residuals = np.log(cases["latency_ms"].to_numpy() / cases["predicted_ms"].to_numpy())
        covered += _jackknife_coverage(residuals, cases["model"].to_numpy(), NOTE_INTERVAL)
        notes.extend(
            _memory_note(data, str(platform), data.table[data.table["platform"] == platform])
        )
    result["method"] = _method_text(kind, data.keys)
    notes[:0] = [
        f"Each model was held out with all its rows and predicted by a predictor trained on "
        f"the other models: {len(frame)} predictions over {len(result['per_platform'])} "
        "platform(s).",
        f"{NOTE_INTERVAL:.0%} intervals built from the other models' held-out residuals (as "
        f"predict() builds them) covered {covered / len(frame):.1%} of the held-out cases.",
    ]
    if data.fallback_models:
        notes.append(
            "No zoo features for " + ", ".join(data.fallback_models) + "; their params/flops "
            "columns were used, so every model was described by FLOPs and params only."
        )
    if data.rescaled:
        notes.append(
            "Measured at another input size than the zoo describes (their flops column "
            "differs), so their pixel-dependent features were scaled to it: "
            + ", ".join(f"{m} (x{r:.3f})" for m, r in sorted(data.rescaled.items()))
            + "."
        )
    notes.extend(f"Skipped: {text}." for text in skipped)
    return cast(dict[str, Any], _json_ready(result | {"notes": notes}))


def _memory_note(data: TrainingData, platform: str, rows: pd.DataFrame) -> list[str]:
    from core.predict.models import out_of_fold
    from core.predict.predictor import memory_column

    column = memory_column(rows)
    if column is None:
        return []
    rows = rows[rows[column] > 0]
    y = np.log(rows[column].to_numpy())
    oof = out_of_fold(data.design(rows), y, rows["model"].to_numpy(), "memory", data.names, None)
    m = _metrics(np.exp(y), np.exp(oof))
    return [
        f"Peak memory ({column}) on {platform}, leave-one-model-out: within ±10% "
        f"{m['within_10pct']:.1%}, MAPE {m['mape']:.1%} over {m['n']} cases."
    ]


def _baseline_out_of_fold(
    log_work: np.ndarray, log_latency: np.ndarray, groups: np.ndarray
) -> np.ndarray:
    """log(latency_ms) = a + b*log(FLOPs x batch) by least squares, each model held out."""
    pred = np.empty(len(log_latency))
    for model in np.unique(groups):
        held = groups == model
        slope, intercept = np.polyfit(log_work[~held], log_latency[~held], 1)
        pred[held] = intercept + slope * log_work[held]
    return pred


def _jackknife_coverage(residuals: np.ndarray, groups: np.ndarray, interval: float) -> int:
    """How many of a model's held-out residuals fall in the band of the other models'."""
    from core.predict.models import residual_band

    hits = 0
    for model in np.unique(groups):
        held = groups == model
        low, high = residual_band(residuals[~held], interval)
        hits += int(np.sum((residuals[held] >= low) & (residuals[held] <= high)))
    return hits


def relative_metrics(actual: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    """The values of EVALUATION_METRICS for ``predicted`` against ``actual``, and ``n``
    (NaN where undefined: Spearman of fewer than two cases)."""
    return _metrics(np.asarray(actual, dtype=float), np.asarray(predicted, dtype=float))


def _metrics(actual: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    """The values of EVALUATION_METRICS for ``predicted`` against ``actual``, and ``n``."""
    from scipy.stats import spearmanr

    if len(actual) == 0:
        return {"within_10pct": math.nan, "within_5pct": math.nan, "mape": math.nan, "spearman": math.nan, "n": 0}
    rel = np.abs(predicted - actual) / actual
    rho = math.nan
    if len(actual) >= 2 and np.ptp(actual) > 0 and np.ptp(predicted) > 0:
        rho = float(spearmanr(actual, predicted)[0])
    return {
        "within_10pct": float(np.mean(rel <= 0.10)),
        "within_5pct": float(np.mean(rel <= 0.05)),
        "mape": float(np.mean(rel)),
        "spearman": rho,
        "n": int(len(actual)),
    }


_KIND_TEXT = {
    "kernels": "a sum over kernel kinds (per-kind FLOPs at per-kind rates, activation and "
    "weight traffic at a bandwidth, a host cost per operator per batch; host and device "
    "combined by a fitted p-norm), a robust (Cauchy) fit with ridge-penalised corrections "
    "from the other features",
    "roofline": "a roofline fitted in log space (smooth max of c_F*FLOPs and c_T*memory "
    "traffic, plus c_O*layers/batch launch overhead, times ridge-penalised corrections "
    "from the other features)",
    "roofline+gbm": "a roofline in log space plus gradient boosting on its residuals",
    "ridge": "ridge regression on log features",
    "ridge+gbm": "ridge regression on log features plus gradient boosting on its residuals",
}


def _method_text(kind: str, keys: Sequence[str]) -> str:
    used = ", ".join(k for k in keys if k not in KERNEL_KEYS) or "flops"
    if has_kernel_census(keys):
        used += ", and the kernel census (FLOPs, traffic, weights and operators per kind)"
    return (
        f"Per platform, log(per-image latency) by {_KIND_TEXT.get(kind, kind)}; model "
        f"features: {used}, with batch size. Evaluated by leave-one-model-out cross-"
        "validation (all rows of a model held out together). Baseline: per platform, "
        "log(latency_ms) = a + b*log(FLOPs x batch) by least squares, same folds. "
        "within_10pct/within_5pct: share of cases with relative error <= 10%/5%; mape: mean "
        "absolute relative error as a fraction; spearman: rank correlation of predicted and "
        "measured latency_ms over all held-out cases (all batch sizes)."
    )


def _json_ready(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return number if math.isfinite(number) else None
    return value
