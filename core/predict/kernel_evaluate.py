"""How well the kernel-level predictor does on models it has not seen, against today's
end-to-end predictor, a FLOPs-only baseline and the data's own ceiling.

``evaluate_kernels(layers, measurements)`` holds out one model at a time (all its cases
and all its layer records), fits the kernel-level predictor on the other models' clean
cases (not disturbed, not inflated: ``core.predict.cases``) and predicts the held-out
model's cases from its layers. The other two are held out the same way and trained on
the same cases:

- today's end-to-end predictor (``core.predict.predictor``: zoo features, kernel census),
- the FLOPs-only baseline: log(latency) = a + b log(FLOPs x batch).

The ceiling is each model fitted on its own cases (latency = a + b x batch, two numbers
per model, not held out): cases that even this misses by more than 10% are noise that
no predictor can follow.

Scores are over all cases and over the clean cases, per platform and per batch size. The
result has evaluate()'s shape (``core.predict.evaluate.evaluation_rows`` reads it), with
``model_used`` per platform.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from core.errors import DataError
from core.predict.cases import profiled_cases, screening_text
from core.predict.evaluate import _json_ready, relative_metrics
from core.predict.kernels import GBM, GbmSettings, KernelPredictor
from core.predict.layers import layer_features

log = logging.getLogger(__name__)

KERNEL_LEVEL = "kernel-level"
END_TO_END = "end-to-end"
MIN_MODELS = 3
MODEL_USED_TEXT = {
    KERNEL_LEVEL: "kernel-level: per-layer-type regressors on the profiled layers, summed, plus a fitted overhead",
    END_TO_END: "end-to-end: today's model on per-model features (no per-layer profiles)",
}


def kernel_held_out(
    layers: pd.DataFrame,
    cases: pd.DataFrame,
    *,
    exclude_untrusted: bool = True,
    features: pd.DataFrame | None = None,
    gbm: GbmSettings = GBM,
    extra_layers: pd.DataFrame | None = None,
    n_jobs: int | None = None,
) -> pd.DataFrame:
    """Each case's leave-one-model-out prediction by the kernel-level predictor: ``cases``
    with ``predicted_ms`` and ``predicted_layer_sum_ms``. Platforms with fewer than
    MIN_MODELS models are left out. The folds run in ``n_jobs`` processes (default: one
    per CPU), each single-threaded."""
    feats = layer_features(layers) if features is None else features
    frames = []
    for platform, rows in cases.groupby("platform", sort=True):
        models = sorted(rows["model"].unique())
        if len(models) < MIN_MODELS:
            log.warning("kernel-level LOMO skips %s: %d model(s)", platform, len(models))
            continue
        on = layers["measurement_id"].isin(rows["measurement_id"]).to_numpy()
        table, table_feats = layers.loc[on], feats.loc[on]
        extra = None if extra_layers is None else extra_layers[extra_layers["platform"] == platform]
        args = (table, table_feats, rows, exclude_untrusted, gbm, extra)
        jobs = _jobs(n_jobs, len(models))
        if jobs > 1:
            from joblib import Parallel, delayed

            results = Parallel(n_jobs=jobs)(delayed(_fold)(model, *args) for model in models)
        else:
            results = [_fold(model, *args) for model in models]
        out = rows.copy()
        for result in results:
            for column in ("predicted_ms", "predicted_layer_sum_ms"):
                out.loc[result.index, column] = result[column]
        frames.append(out)
    if not frames:
        raise DataError(
            f"The kernel-level evaluation needs at least {MIN_MODELS} profiled models on a platform.",
            "Profile more models: backbench run ... --profile-layers.",
        )
    return pd.concat(frames)


def _jobs(n_jobs: int | None, folds: int) -> int:
    import os

    wanted = n_jobs if n_jobs is not None else (os.cpu_count() or 1)
    return max(1, min(wanted, folds))


def _fold(
    model: str,
    layers: pd.DataFrame,
    feats: pd.DataFrame,
    rows: pd.DataFrame,
    exclude_untrusted: bool,
    gbm: GbmSettings,
    extra: pd.DataFrame | None,
) -> pd.DataFrame:
    """One leave-one-model-out fold: fit without ``model``, predict its cases."""
    from threadpoolctl import threadpool_limits

    held = (rows["model"] == model).to_numpy()
    chosen = layers["measurement_id"].isin(rows.loc[~held, "measurement_id"]).to_numpy()
    predicted = pd.DataFrame(
        index=rows.index[held], columns=["predicted_ms", "predicted_layer_sum_ms"], dtype=float
    )
    with threadpool_limits(1):  # the folds run side by side; one thread each
        predictor = KernelPredictor(exclude_untrusted=exclude_untrusted, gbm=gbm)
        predictor.fit(
            layers.loc[chosen],
            cases=rows.loc[~held],
            features=feats.loc[chosen],
            extra_layers=extra,
        )
        platform = str(rows["platform"].iloc[0])
        fit_model, overhead = predictor.layer_model(platform), predictor.overhead(platform)
        for index, case in rows.loc[held].iterrows():
            mine = (layers["measurement_id"] == case["measurement_id"]).to_numpy()
            times = fit_model.predict_ms(layers.loc[mine], feats.loc[mine])
            predicted.loc[index, "predicted_layer_sum_ms"] = float(times.sum())
            predicted.loc[index, "predicted_ms"] = float(
                overhead.apply(times.sum(), int(mine.sum()))
            )
    return predicted


def comparison_held_out(cases: pd.DataFrame, flops: dict[str, float] | None = None) -> pd.DataFrame:
    """Today's end-to-end predictor and the FLOPs-only baseline, each model held out,
    trained on the same cases as the kernel-level predictor (the clean ones): ``cases``
    with ``today_ms`` and ``baseline_ms``. ``flops`` (per image) by model, where known
    (else the zoo's)."""
    from core.predict.features import FLOPS, zoo_features
    from core.predict.models import Regressor
    from core.predict.predictor import method_for, training_data

    parts = cases["platform"].str.split("/", n=2, expand=True)
    frame = pd.DataFrame(
        {
            "model": cases["model"], "backend": parts[0], "device": parts[1], "precision": parts[2],
            "batch_size": cases["batch_size"], "latency_ms_median": cases["e2e_ms"],
            "per_image_ms": cases["e2e_ms"] / cases["batch_size"],
            "flops": cases["model"].map(flops or {}), "params": np.nan, "status": "ok",
        }
    )  # fmt: skip
    data = training_data(frame, zoo_features)
    kind = method_for(data)
    table = data.table
    keys = list(zip(cases["platform"], cases["model"], cases["batch_size"], strict=True))
    clean_by_key = (
        pd.Series(cases["clean"].to_numpy(), index=pd.MultiIndex.from_tuples(keys))
        .groupby(level=[0, 1, 2])
        .all()
    )
    clean = np.array(
        [
            bool(clean_by_key.get((r.platform, r.model, r.batch_size), False))
            for r in table.itertuples()
        ]
    )
    today = np.full(len(table), np.nan)
    baseline = np.full(len(table), np.nan)
    batch = table["batch_size"].to_numpy(dtype=float)
    y = np.log(table["per_image_ms"].to_numpy(dtype=float))
    work = np.log(np.array([data.features[m][FLOPS] for m in table["model"]]) * batch)
    x = data.design(table)
    for platform in table["platform"].unique():
        on = (table["platform"] == platform).to_numpy()
        for model in table.loc[on, "model"].unique():
            held = on & (table["model"] == model).to_numpy()
            train = on & ~held & clean
            today[held] = Regressor(kind, data.names).fit(x[train], y[train]).predict(x[held])
            slope, intercept = np.polyfit(work[train], y[train] + np.log(batch[train]), 1)
            baseline[held] = np.exp(intercept + slope * work[held])
    table = table.assign(today_ms=np.exp(today) * batch, baseline_ms=baseline)
    lookup = table.set_index(["platform", "model", "batch_size"])
    index = pd.MultiIndex.from_tuples(keys)
    out = cases.copy()
    out["today_ms"] = lookup["today_ms"].reindex(index).to_numpy()
    out["baseline_ms"] = lookup["baseline_ms"].reindex(index).to_numpy()
    return out


def own_curve_errors(cases: pd.DataFrame, clean_only: bool = False) -> pd.Series:
    """Each case's relative error under its own model's fit latency = a + b x batch
    (non-negative, relative least squares), fitted on that model's cases (or its clean
    cases); NaN where a model has fewer than 3 batch sizes (two points fit exactly)."""
    from scipy.optimize import nnls

    rows = cases[cases["clean"]] if clean_only else cases
    errors = pd.Series(np.nan, index=cases.index)
    for _, group in rows.groupby(["platform", "model"]):
        batch = group["batch_size"].to_numpy(dtype=float)
        if len(np.unique(batch)) < 3:
            continue
        latency = group["e2e_ms"].to_numpy(dtype=float)
        design = np.column_stack([np.ones_like(batch), batch])
        coef, _ = nnls(design / latency[:, None], np.ones_like(latency))
        errors.loc[group.index] = np.abs(design @ coef / latency - 1.0)
    return errors


def _share_within(errors: pd.Series, limit: float = 0.10) -> float:
    known = errors.dropna()
    return float(np.mean(known <= limit)) if len(known) else math.nan


def _scores(frame: pd.DataFrame) -> dict[str, Any]:
    actual = frame["e2e_ms"].to_numpy(dtype=float)
    result = relative_metrics(actual, frame["predicted_ms"].to_numpy(dtype=float))
    result["baseline"] = relative_metrics(actual, frame["baseline_ms"].to_numpy(dtype=float))
    if "today_ms" in frame.columns:
        result["today"] = relative_metrics(actual, frame["today_ms"].to_numpy(dtype=float))
    return result


def score_platform(frame: pd.DataFrame) -> dict[str, Any]:
    """Scores of one platform's held-out cases: all, clean, per batch size (all and
    clean), with the ceiling and the screening counts."""
    result = _scores(frame)
    clean = frame[frame["clean"]]
    result["clean"] = _scores(clean)
    result["per_batch"] = {
        str(int(b)): {"all": _scores(rows), "clean": _scores(rows[rows["clean"]])}
        for b, rows in frame.groupby("batch_size", sort=True)
    }
    result["ceiling"] = {
        "all": _share_within(own_curve_errors(frame)),
        "clean": _share_within(own_curve_errors(frame, clean_only=True)),
    }
    result["cases"] = int(len(frame))
    result["models"] = int(frame["model"].nunique())
    result["disturbed"] = int(frame["disturbed"].sum())
    result["inflated"] = int((frame["inflated"] & ~frame["disturbed"]).sum())
    result["disturbed_share"] = float(frame["disturbed"].mean()) if len(frame) else math.nan
    result["model_used"] = KERNEL_LEVEL
    return result


def evaluate_kernels(
    layers: pd.DataFrame,
    measurements: pd.DataFrame | None = None,
    *,
    models: Iterable[str] | None = None,
    exclude_untrusted: bool = True,
    compare: bool = True,
    gbm: GbmSettings = GBM,
    keep_cases: bool = False,
    extra_layers: pd.DataFrame | None = None,
    n_jobs: int | None = None,
) -> dict[str, Any]:
    """Leave-one-model-out evaluation of the kernel-level predictor (see the module's
    text). ``layers``: a layer table; ``measurements``: the long-schema rows they belong
    to (disturbed flags, medians, FLOPs); ``models``: evaluate on these models only (the
    others are not used at all). JSON-serialisable: NaN becomes None; with
    ``keep_cases`` the held-out cases themselves are under ``_cases`` (a DataFrame)."""
    cases = profiled_cases(layers, measurements)
    if models is not None:
        wanted = set(models)
        cases = cases[cases["model"].isin(wanted)]
        layers = layers[layers["measurement_id"].isin(cases["measurement_id"])]
    frame = kernel_held_out(
        layers,
        cases,
        exclude_untrusted=exclude_untrusted,
        gbm=gbm,
        extra_layers=extra_layers,
        n_jobs=n_jobs,
    )
    flops = None
    if measurements is not None and "flops" in measurements.columns:
        known = measurements.assign(
            flops=pd.to_numeric(measurements["flops"], errors="coerce")
        ).dropna(subset=["flops"])
        flops = known.groupby(known["model"].astype(str))["flops"].first().to_dict()
    frame = comparison_held_out(frame, flops) if compare else frame.assign(baseline_ms=np.nan)
    result = _scores(frame)
    result["clean"] = _scores(frame[frame["clean"]])
    result["per_platform"] = {
        str(p): score_platform(rows) for p, rows in frame.groupby("platform", sort=True)
    }
    result["model_used"] = {p: KERNEL_LEVEL for p in result["per_platform"]}
    result["method"] = method_text(exclude_untrusted)
    notes = [
        f"Each model was held out with all its cases and layer records and predicted from its "
        f"layers by a predictor trained on the other models: {len(frame)} predictions over "
        f"{len(result['per_platform'])} platform(s).",
        screening_text(cases)
        + (" They are still scored: the figures are given on all cases and on the clean ones."
           if exclude_untrusted else " They were kept (exclude_untrusted=False)."),
    ]  # fmt: skip
    for platform, scores in result["per_platform"].items():
        notes.append(
            f"{platform}: the ceiling (each model fitted on its own cases as a + b x batch, "
            f"not held out) puts {_percent(scores['ceiling']['all'])} of all cases and "
            f"{_percent(scores['ceiling']['clean'])} of the clean ones within ±10%."
        )
    result["notes"] = notes
    ready = dict(_json_ready(result))
    if keep_cases:
        ready["_cases"] = frame
    return ready


def method_text(exclude_untrusted: bool = True) -> str:
    return (
        "Kernel-level: per platform, one regressor per layer type (frequent types; a pooled one "
        "for the rest) predicts log(time) of each executed layer from its shapes: a roofline "
        "base (constant + FLOPs at a rate + bytes at a bandwidth), then gradient boosting on the "
        "residuals over batch, channels, spatial size, kernel, stride, groups/depthwise, SIMD "
        "channel padding, fused layers, the primitive family and the model's size around the "
        "layer (matrix products: the base alone); records weighted by their share of their case. "
        "A model's latency is the sum over its executed layers times a fitted scale, plus a "
        "per-layer term (it may be negative: the profiler's own cost per counter) and a constant, "
        "fitted on relative error. "
        + (
            "Fitted on clean cases only (not disturbed, not inflated). "
            if exclude_untrusted
            else ""
        )
        + "Leave-one-model-out: all cases and layer records of a model held out together. "
        "Today's model: core.predict's end-to-end predictor on zoo features, held out the same "
        "way on the same training cases. Baseline: log(latency) = a + b log(FLOPs x batch)."
    )


def _percent(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.1%}"


def profiled_platforms(layers: pd.DataFrame | None) -> set[str]:
    return set() if layers is None or layers.empty else set(layers["platform"].astype(str))


def evaluate_with_profiles(
    measurements: pd.DataFrame,
    layers: pd.DataFrame | None,
    *,
    exclude_untrusted: bool = True,
    end_to_end: bool = False,
) -> dict[str, Any]:
    """``predict --evaluate``: the kernel-level predictor on the platforms with per-layer
    profiles, today's end-to-end predictor (``core.predict.evaluate.evaluate``) on the
    others (or everywhere with ``end_to_end``). ``model_used`` says which, per platform;
    the overall figures are over every held-out case of both."""
    from core.predict.evaluate import evaluate, held_out, score_cases
    from core.predict.predictor import platform_label

    mode = (
        measurements["mode"]
        if "mode" in measurements.columns
        else pd.Series("latency", index=measurements.index)
    )
    labels = pd.Series(
        [platform_label(*p) for p in zip(measurements["backend"], measurements["device"], measurements["precision"], mode, strict=True)],
        index=measurements.index,
    )  # fmt: skip
    profiled = set() if end_to_end else profiled_platforms(layers) & set(labels)
    kernel: dict[str, Any] | None = None
    if profiled and layers is not None:
        try:
            kernel = evaluate_kernels(
                layers[layers["platform"].isin(profiled)],
                measurements[labels.isin(profiled)],
                exclude_untrusted=exclude_untrusted,
                keep_cases=True,
            )
        except DataError as exc:
            log.warning("no kernel-level evaluation (%s); using the end-to-end model", exc)
            profiled = set()
    rest = measurements[~labels.isin(profiled)]
    fallback: dict[str, Any] | None = None
    if not rest.empty and (kernel is None or rest["model"].nunique() >= MIN_MODELS):
        try:
            fallback = evaluate(rest)
        except DataError:
            if kernel is None:
                raise
            log.info("no end-to-end evaluation for the platforms without profiles")
    if fallback is not None:
        fallback["model_used"] = {p: END_TO_END for p in fallback.get("per_platform") or {}}
        for scores in (fallback.get("per_platform") or {}).values():
            scores["model_used"] = END_TO_END
    if kernel is None:
        if fallback is None:
            raise DataError(
                "No measurements to evaluate on.", "Give measured rows in the long schema."
            )
        return fallback
    if fallback is None:
        kernel.pop("_cases")
        return kernel
    # Both: the overall figures over every held-out case of either predictor.
    frame = kernel.pop("_cases")
    kernel_cases = pd.DataFrame(
        {
            "platform": frame["platform"], "model": frame["model"], "batch_size": frame["batch_size"],
            "latency_ms": frame["e2e_ms"], "predicted_ms": frame["predicted_ms"],
            "baseline_ms": frame["baseline_ms"],
        }
    )  # fmt: skip
    merged = dict(fallback)
    merged["per_platform"] = {**fallback["per_platform"], **kernel["per_platform"]}
    merged["model_used"] = {**fallback["model_used"], **kernel["model_used"]}
    merged["notes"] = [*kernel["notes"], *fallback.get("notes", [])]
    merged["method"] = f"{kernel['method']} Platforms without profiles: {fallback['method']}"
    overall = score_cases(pd.concat([held_out(rest), kernel_cases], ignore_index=True))
    for key in ("within_10pct", "within_5pct", "mape", "spearman", "n", "baseline"):
        merged[key] = overall[key]
    return dict(_json_ready(merged))
