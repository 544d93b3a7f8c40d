"""Predict latency and peak memory of (model, batch size, platform) from measured data.

A platform is ``backend/device/precision``, with ``/throughput`` appended for throughput-mode
rows (a different quantity). Per platform, the predictor fits log(per-image latency). Where
every model carries the kernel census (zoo models do), the model is a sum over kernel kinds
(``core.predict.models.KernelSum``): per-kind FLOPs at per-kind rates, activation and weight
traffic at a bandwidth, and a host cost per operator per batch, with host and device
combined by a fitted p-norm. Otherwise (a user's model file, known by its FLOPs and params
only) it is a roofline in log space (``core.predict.models.Roofline``). Features come from
the model itself (see ``core.predict.features``), so a zoo model that was never measured can be
predicted. Rows whose flops column shows another input size than the zoo's (a model run at
224 x 224 where the zoo counts it at its own crop) get their features scaled to it.

Choice of method, by leave-one-model-out CV (share within ±10% / MAPE). Real data:
bench/data/h200_host_torch_zoo.csv, eager torch on an H200 GPU (fp32, fp16, batches 1-64)
and its host's 16-core CPU (fp32, batches 1-8), 33 torchvision models, 594 cases; "batch 1"
trains and tests on the batch-1 rows alone (nn-Meter's setting; 83.4% on NCS2). Synthetic:
tests/core/test_predict.py's roofline data (no census, so the roofline runs there).

======================  ==============  ====================  ==============
method                  real, all       real, batch 1 only    synthetic
======================  ==============  ====================  ==============
kernel sum (chosen)     0.51 / 0.146    0.39 / 0.21           0.98 / 0.031 (*)
roofline                0.29 / 0.24     0.35 / 0.21           0.96 / 0.042
roofline + boosting     0.31 / 0.24     0.33 / 0.24           0.95 / 0.043
ridge on log features   0.22 / 0.47     0.31 / 0.41           0.19 / 0.35
ridge + boosting        0.25 / 0.38     0.31 / 0.40           0.52 / 0.17
FLOPs-only baseline     0.13 / 0.77     0.16 / 0.79           0.27 / 0.32
======================  ==============  ====================  ==============

(*) on the tests' synthetic kernel-sum data (per-kind rates, host/device overlap on the
GPU), since the roofline data carry no census. Real data by platform (all batches): CPU
0.49, GPU fp16 0.59, GPU fp32 0.44. bench/predict_eval.py prints the full breakdown.

The real figures are bounded by the data. Eager PyTorch on that GPU is host-bound up to
batch 8-16, and the host ran at two speeds: the same architecture (shufflenet_v2_x0_5 and
x1_0, 184 operators each) took 32 and 21 µs per operator. Even a curve fitted to each
model's own batch sizes (not held out) leaves 25% of the cases more than 10% off.

Intervals are the quantiles of out-of-fold residuals in log space from grouped CV on the
training data (all rows of a model held out together), so they describe the error on a
model the predictor has not seen; per platform, equal-tailed (the 5% and 95% quantiles
for interval=0.9), widened by (n+1)/n as in split-conformal prediction.

latency_ms is time per batch, per_image_ms x batch_size: in latency mode exactly the
measured median; in throughput mode the batch time at the measured throughput.

The leave-one-model-out evaluation behind the table above is ``core.predict.evaluate``.
"""

from __future__ import annotations

import difflib
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from core.errors import DataError, UnknownModelError, UsageError
from core.predict.features import (
    FeatureProvider,
    common_keys,
    design_matrix,
    design_names,
    features_from_rows,
    has_kernel_census,
    lookup,
    rescale_to_measured,
    zoo_features,
)
from core.predict.models import Regressor, out_of_fold, residual_band

log = logging.getLogger(__name__)

MIN_MODELS = 3  # below this a held-out model is predicted from one or two others: noise
FIT_CV_FOLDS = 10  # grouped folds for the interval residuals in fit(); LOMO when fewer models
METHOD = "kernels"  # when every model has the kernel census; else FALLBACK_METHOD
FALLBACK_METHOD = "roofline"

_REQUIRED = ("model", "backend", "device", "precision", "batch_size")
_MEMORY_COLUMNS = ("peak_device_mem_mb", "peak_rss_mb")  # device memory first: GPUs report it


@dataclass(frozen=True, slots=True)
class Prediction:
    model: str
    batch_size: int
    platform: str
    latency_ms: float  # per batch
    latency_ms_low: float
    latency_ms_high: float
    interval: float  # the central probability of [low, high], e.g. 0.9
    per_image_ms: float
    peak_mem_mb: float | None
    peak_mem_mb_low: float | None
    peak_mem_mb_high: float | None
    measured_latency_ms: float | None  # when this case was measured, for comparison

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def platform_label(backend: Any, device: Any, precision: Any, mode: Any = "latency") -> str:
    label = f"{_text(backend)}/{_text(device)}/{_text(precision)}"
    return label if _text(mode) in ("", "latency", "nan", "none") else f"{label}/{_text(mode)}"


def platforms(df: pd.DataFrame) -> list[str]:
    """The platforms that have usable rows (status ok, latency known), sorted."""
    return sorted(_prepare(df)["platform"].unique().tolist())


@dataclass(slots=True)
class _Target:
    regressor: Regressor
    band: tuple[float, float]  # log-space offsets of the interval's ends
    column: str


@dataclass(slots=True)
class _PlatformFit:
    latency: _Target
    memory: _Target | None
    models: tuple[str, ...]
    batch_range: tuple[int, int]


@dataclass(slots=True)
class TrainingData:
    """Measurements made ready to fit: the usable rows and each model's features."""

    table: pd.DataFrame  # one row per (platform, model, batch_size)
    features: dict[str, dict[str, float]]
    keys: tuple[str, ...]  # the feature keys every model has
    fallback_models: list[str] = field(default_factory=list)
    rescaled: dict[str, float] = field(default_factory=dict)  # model -> rows/provider FLOPs

    @property
    def names(self) -> list[str]:
        return design_names(self.keys)

    def design(self, rows: pd.DataFrame) -> np.ndarray:
        feats = [self.features[m] for m in rows["model"]]
        return design_matrix(feats, rows["batch_size"].tolist(), self.keys)


class LatencyPredictor:
    """Per-platform latency and peak-memory predictor: ``fit(df)``, then ``predict``."""

    def __init__(self, features: FeatureProvider | None = None, interval: float = 0.9) -> None:
        if (
            isinstance(interval, bool)
            or not isinstance(interval, (int, float))
            or not (0.0 < float(interval) < 1.0)
        ):
            raise UsageError(
                f"Interval {interval!r} is out of range.",
                "Give the interval's probability as a fraction, e.g. 0.9 for a 90% interval.",
            )
        self.interval = float(interval)
        self._provider: FeatureProvider = features or zoo_features
        self._data: TrainingData | None = None
        self._fits: dict[str, _PlatformFit] = {}
        self._skipped: dict[str, str] = {}
        self._measured: dict[tuple[str, str, int], float] = {}

    @property
    def platforms(self) -> list[str]:
        return sorted(self._fits)

    @property
    def skipped_platforms(self) -> dict[str, str]:
        """Platforms in the data that got no model, with the reason."""
        return dict(self._skipped)

    def fit(self, df: pd.DataFrame) -> LatencyPredictor:
        data = training_data(df, self._provider)
        fits: dict[str, _PlatformFit] = {}
        skipped: dict[str, str] = {}
        for platform, rows in data.table.groupby("platform", sort=True):
            models = sorted(rows["model"].unique())
            if len(models) < MIN_MODELS:
                skipped[platform] = too_few_models(platform, models)
                log.warning("not fitting %s", skipped[platform])
                continue
            latency = _fit_target(data, rows, "per_image_ms", method_for(data), self.interval)
            mem_column = memory_column(rows)
            memory = None
            if mem_column is not None:
                memory = _fit_target(data, rows, mem_column, "memory", self.interval)
            batches = rows["batch_size"]
            fits[platform] = _PlatformFit(
                latency, memory, tuple(models), (int(batches.min()), int(batches.max()))
            )
        if not fits:
            raise DataError(
                "; ".join(skipped.values()) + ".",
                f"Measure at least {MIN_MODELS} different models on a platform.",
            )
        self._data, self._fits, self._skipped = data, fits, skipped
        self._measured = {
            (r.platform, r.model, int(r.batch_size)): float(r.per_image_ms * r.batch_size)
            for r in data.table.itertuples(index=False)
        }
        return self

    def predict(self, model: str, batch_size: int, platform: str | None = None) -> Prediction:
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
            raise UsageError(f"Batch size {batch_size!r} is not a positive integer.")
        if batch_size < 1:
            raise UsageError(f"Batch size {batch_size} is not a positive integer.")
        batch = int(batch_size)
        name = self._resolve_platform(platform)
        fit = self._fits[name]
        x = design_matrix([self._model_features(model)], [batch], self._trained().keys)
        if not fit.batch_range[0] <= batch <= fit.batch_range[1]:
            log.warning(
                "batch size %d is outside the measured range %d-%d on %s: extrapolating",
                batch,
                *fit.batch_range,
                name,
            )
        log_per_image = float(fit.latency.regressor.predict(x)[0])
        lat_low, lat_high = (math.exp(log_per_image + d) * batch for d in fit.latency.band)
        mem = mem_low = mem_high = None
        if fit.memory is not None:
            log_mem = float(fit.memory.regressor.predict(x)[0])
            mem = math.exp(log_mem)
            mem_low, mem_high = (math.exp(log_mem + d) for d in fit.memory.band)
        return Prediction(
            model=model,
            batch_size=batch,
            platform=name,
            latency_ms=math.exp(log_per_image) * batch,
            latency_ms_low=lat_low,
            latency_ms_high=lat_high,
            interval=self.interval,
            per_image_ms=math.exp(log_per_image),
            peak_mem_mb=mem,
            peak_mem_mb_low=mem_low,
            peak_mem_mb_high=mem_high,
            measured_latency_ms=self._measured.get((name, model, batch)),
        )

    def _trained(self) -> TrainingData:
        if self._data is None:
            raise UsageError("The predictor is not trained.", "Call fit(df) first.")
        return self._data

    def _resolve_platform(self, platform: str | None) -> str:
        self._trained()
        listing = ", ".join(self.platforms)
        if platform is None:
            if len(self._fits) == 1:
                return self.platforms[0]
            raise DataError(
                f"The data hold {len(self._fits)} platforms; say which one to predict for.",
                f"Use one of: {listing}.",
            )
        if platform in self._fits:
            return platform
        folded = [p for p in self._fits if p.lower() == platform.lower()]
        if len(folded) == 1:
            return folded[0]
        if platform in self._skipped:
            raise DataError(f"{self._skipped[platform]}.", f"Trained platforms: {listing}.")
        raise DataError(
            f"No measurements for platform {platform!r}.", f"Trained platforms: {listing}."
        )

    def _model_features(self, model: str) -> dict[str, float]:
        data = self._trained()
        if model in data.features:
            return data.features[model]
        feats = lookup(self._provider, model, unknown_is_none=False)
        if feats is None:
            raise UnknownModelError(model, difflib.get_close_matches(model, data.features, n=3))
        missing = [k for k in data.keys if k not in feats]
        if missing:
            raise DataError(
                f"Model {model!r} lacks the features {', '.join(missing)} the predictor uses.",
                "Use the same feature provider for training and prediction.",
            )
        data.features[model] = feats
        return feats


def method_for(data: TrainingData) -> str:
    """The kernel-sum model where every model has the kernel census, else the roofline."""
    return METHOD if has_kernel_census(data.keys) else FALLBACK_METHOD


def _fit_target(
    data: TrainingData, rows: pd.DataFrame, column: str, kind: str, interval: float
) -> _Target:
    """Fit log(column) where it is known, and its band from out-of-fold residuals."""
    rows = rows[rows[column] > 0]
    x = data.design(rows)
    y = np.log(rows[column].to_numpy())
    oof = out_of_fold(x, y, rows["model"].to_numpy(), kind, data.names, FIT_CV_FOLDS)
    band = residual_band(y - oof, interval)
    return _Target(Regressor(kind, data.names).fit(x, y), band, column)


def memory_column(rows: pd.DataFrame) -> str | None:
    """The memory column to fit on ``rows`` (device memory first), or None when too few
    models report one."""
    for column in _MEMORY_COLUMNS:
        known = rows[rows[column] > 0]
        if known["model"].nunique() >= MIN_MODELS and len(known) >= len(rows) / 2:
            return column
    return None


# ------------------------------------------------------------------------ data loading


def training_data(df: pd.DataFrame, provider: FeatureProvider) -> TrainingData:
    """The usable rows of ``df`` (see ``_prepare``) and each model's features from
    ``provider``, or from its params/flops columns where the provider has none."""
    table = _prepare(df)
    features: dict[str, dict[str, float]] = {}
    fallback: list[str] = []
    rescaled: dict[str, float] = {}
    for model, rows in table.groupby("model", sort=True):
        feats = lookup(provider, str(model))
        if feats is None:
            feats = features_from_rows(str(model), rows["params"], rows["flops"])
            fallback.append(str(model))
        else:
            feats, ratio = rescale_to_measured(feats, rows["flops"])
            if ratio is not None:
                rescaled[str(model)] = ratio
        features[str(model)] = feats
    if fallback:
        log.info("no provider features for %s; using their params/flops columns", fallback)
    if rescaled:
        log.info("rows measured at another input size than the provider's: %s", rescaled)
    return TrainingData(table, features, common_keys(features.values()), fallback, rescaled)


def _prepare(df: pd.DataFrame) -> pd.DataFrame:
    """Usable rows, one per (platform, model, batch_size): the median of repeats."""
    if not isinstance(df, pd.DataFrame):
        raise DataError("The predictor needs a DataFrame in the long schema.")
    missing = [c for c in _REQUIRED if c not in df.columns]
    if missing:
        raise DataError(
            f"The data lack the column(s) {', '.join(missing)}.",
            "Give the long schema (a backbench results export; see MEASUREMENT_COLUMNS).",
        )
    rows = df
    if "status" in df.columns:
        rows = df[df["status"].astype(str).str.lower() == "ok"]
    batch = pd.to_numeric(rows["batch_size"], errors="coerce")
    mode = rows["mode"] if "mode" in rows.columns else pd.Series("latency", index=rows.index)
    throughput_mode = mode.astype(str).str.lower() == "throughput"
    # per_image_ms is the contract; derive it, as Measurement does, where a CSV lacks it.
    derived = (_numeric(rows, "latency_ms_median") / batch).where(
        ~throughput_mode, 1000.0 / _numeric(rows, "throughput_ips")
    )
    per_image = _numeric(rows, "per_image_ms")
    per_image = per_image.where(per_image > 0, derived)
    labels = [
        platform_label(*values)
        for values in zip(rows["backend"], rows["device"], rows["precision"], mode, strict=True)
    ]
    table = pd.DataFrame(
        {
            "platform": pd.Series(labels, index=rows.index, dtype=object),
            "model": rows["model"].astype(str),
            "batch_size": batch,
            "per_image_ms": per_image,
            **{column: _numeric(rows, column) for column in (*_MEMORY_COLUMNS, "params", "flops")},
        }
    )
    usable = np.isfinite(table["per_image_ms"]) & (table["per_image_ms"] > 0)
    usable &= np.isfinite(table["batch_size"]) & (table["batch_size"] >= 1)
    table = table[usable]
    if table.empty:
        raise DataError(
            "No usable latency in the data: no row has status 'ok' and a positive "
            "per_image_ms or latency_ms_median.",
            "Give measured rows with per_image_ms (or latency_ms_median and batch_size).",
        )
    table = table.astype({"batch_size": int})
    grouped = table.groupby(["platform", "model", "batch_size"], sort=True, as_index=False)
    return grouped.agg(
        per_image_ms=("per_image_ms", "median"),
        **{column: (column, "median") for column in _MEMORY_COLUMNS},
        params=("params", "first"),
        flops=("flops", "first"),
    )


def _numeric(rows: pd.DataFrame, column: str) -> pd.Series:
    if column not in rows.columns:
        return pd.Series(np.nan, index=rows.index, dtype=np.float64)
    return pd.to_numeric(rows[column], errors="coerce").astype(np.float64)


def too_few_models(platform: str, models: Sequence[str]) -> str:
    """Why ``platform`` gets no model: fewer than MIN_MODELS models measured on it."""
    return (
        f"leave-one-model-out needs at least {MIN_MODELS} models measured on the platform "
        f"{platform}; got {len(models)}: {', '.join(models)}"
    )


def _text(value: Any) -> str:
    return str(getattr(value, "value", value)).strip()
