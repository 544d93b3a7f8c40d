"""The kernel-level latency predictor: per-layer-type regressors fitted on profiled layers,
summed over a model's executed layers, plus a fitted per-model overhead.

nn-Meter's view: a model's latency is the sum of its kernels', where a kernel is what the
runtime executes after fusion. The profiles (``backbench run --profile-layers``) say what
each executed node of the compiled graph was and how long it took; a model never
measured is described by its own compiled graph (``core.predict.exec_graph``), which
the runtime fuses the same way, so fusion is learned from the runtime, not hand-coded.

Per platform (backend/device/precision):

- ``LayerTimeModel``: one ``TypeRegressor`` per layer type with enough records (from
  enough models), and one pooled regressor, with the type as a feature, for the rare
  types. Each predicts log(time) of one layer from ``core.predict.layers`` features: a
  roofline base in log space (a constant, FLOPs at a rate, bytes at a bandwidth) and
  gradient boosting on its residuals over the shape features (channels, spatial size,
  kernel, stride, groups, fused layers, primitive family).
- ``Overhead``: end-to-end = scale x (sum of layer times) + per-layer cost x layers +
  constant, fitted (non-negative, relative error) on the measured cases: what the
  runtime spends outside the layers' counters, and how the profiled pass's counters
  relate to the timed loop.

The fit leaves out disturbed and provably inflated cases (``core.predict.cases``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from core.errors import DataError, UsageError
from core.predict.cases import profiled_cases
from core.predict.layers import NUMERIC_FEATURES, PlannedLayer, layer_features, planned_table

log = logging.getLogger(__name__)

RANDOM_STATE = 0
MIN_TYPE_RECORDS = 60  # a type with fewer records (or from fewer models) is pooled
MIN_TYPE_MODELS = 3
MIN_TIME_MS = 1e-4  # counters below a tenth of a microsecond are rounding
MAX_FUSED_OPS = 16  # fused-kind count features kept (the most frequent in the training rows)
# Synthetic single-layer records (device profiling) weigh this much, all together, against
# the profiled models' records: they fill gaps in the shape space, and must not outvote
# real models, whose layers run amid the rest of a network (cold caches, other threads).
EXTRA_WEIGHT = 0.25
EXTRA_COLUMN = "_extra"
# Matrix products keep the roofline base alone: their time is their weight traffic and
# FLOPs at a rate, and backbones hold only a handful of classifier shapes (2 MB to 400 MB
# of weights), too few to boost between: boosting puts a step where a rate belongs.
BASE_ONLY_TYPES = frozenset({"FullyConnected", "MatMul", "InnerProduct", "Gemm"})


@dataclass(frozen=True, slots=True)
class GbmSettings:
    """Gradient boosting on the roofline's residuals (scikit-learn's histogram GBM)."""

    max_iter: int = 150
    learning_rate: float = 0.1
    max_leaf_nodes: int = 15
    min_samples_leaf: int = 8
    l2_regularization: float = 1.0
    # More work never takes less time: boosting may not decrease in these features.
    monotonic: tuple[str, ...] = ()


GBM = GbmSettings()


class TypeRegressor:
    """log(time_ms) of one kind of layer.

    Base: time = c_0 + FLOPs/P + bytes/B (a roofline's sum form; the terms without data,
    such as FLOPs for a pooling, are left out), fitted by least squares on log time.
    Then gradient boosting on the log residuals over every feature. The boosting never
    extrapolates beyond its training range; the base does, as a roofline should.
    """

    def __init__(
        self, columns: Sequence[str], categorical: Sequence[str], gbm: GbmSettings | None = GBM
    ) -> None:
        self._columns = list(columns)
        self._categorical = list(categorical)
        self._gbm_settings = gbm
        self._theta = np.zeros(0)
        self._terms: list[str] = []
        self._vocab: dict[str, dict[str, int]] = {}
        self._gbm: Any = None

    def _base_terms(self, x: pd.DataFrame) -> np.ndarray:
        columns = [np.zeros(len(x))] + [x[name].to_numpy(dtype=float) for name in self._terms]
        return np.column_stack(columns)

    def _matrix(self, x: pd.DataFrame) -> np.ndarray:
        numeric = x[self._columns].to_numpy(dtype=float)
        codes = [
            x[name].map(self._vocab[name]).to_numpy(dtype=float)  # unseen: NaN, "missing"
            for name in self._categorical
        ]
        return np.column_stack([numeric, *codes]) if codes else numeric

    def fit(
        self, x: pd.DataFrame, y: np.ndarray, weight: np.ndarray | None = None
    ) -> TypeRegressor:
        from scipy.optimize import least_squares
        from scipy.special import logsumexp, softmax
        from sklearn.ensemble import HistGradientBoostingRegressor

        self._terms = [t for t in ("log_flops", "log_bytes") if float(x[t].max()) > 0.0]
        terms = self._base_terms(x)
        w = np.ones(len(y)) if weight is None else weight / weight.mean()
        root = np.sqrt(w)

        def residuals(theta: np.ndarray) -> np.ndarray:
            return root * (logsumexp(terms + theta, axis=1) - y)

        def jacobian(theta: np.ndarray) -> np.ndarray:
            return root[:, None] * softmax(terms + theta, axis=1)

        start = np.array([float(np.median(y - terms[:, i])) for i in range(terms.shape[1])]) - 1.0
        self._theta = least_squares(residuals, start, jac=jacobian, x_scale=1.0).x
        base = logsumexp(terms + self._theta, axis=1)
        self._vocab = {
            name: {v: i for i, v in enumerate(sorted(set(x[name].astype(str))))}
            for name in self._categorical
        }
        matrix = self._matrix(x)
        n_num = len(self._columns)
        mask = [False] * n_num + [True] * len(self._categorical)
        settings = self._gbm_settings
        if settings is not None and len(y) >= 2 * settings.min_samples_leaf:
            monotonic = [1 if c in settings.monotonic else 0 for c in self._columns] + [0] * len(
                self._categorical
            )
            self._gbm = HistGradientBoostingRegressor(
                monotonic_cst=monotonic if any(monotonic) else None,
                max_iter=settings.max_iter, learning_rate=settings.learning_rate,
                max_leaf_nodes=settings.max_leaf_nodes, min_samples_leaf=settings.min_samples_leaf,
                l2_regularization=settings.l2_regularization, categorical_features=mask if any(mask) else None,
                random_state=RANDOM_STATE, early_stopping=False,
            )  # fmt: skip
            self._gbm.fit(matrix, y - base, sample_weight=w)
        return self

    def predict(self, x: pd.DataFrame) -> np.ndarray:
        from scipy.special import logsumexp

        out = logsumexp(self._base_terms(x) + self._theta, axis=1)
        if self._gbm is not None:
            out = out + self._gbm.predict(self._matrix(x))
        return np.asarray(out, dtype=np.float64)

    def rates(self) -> dict[str, float]:
        """The base's constant (ms), FLOPs per ms and bytes per ms; for inspection."""
        out = {"constant_ms": float(math.exp(self._theta[0]))}
        for name, theta in zip(self._terms, self._theta[1:], strict=True):
            out[name.replace("log_", "") + "_per_ms"] = float(math.exp(-theta))
        return out


class LayerTimeModel:
    """Per-layer time on one platform: a ``TypeRegressor`` per frequent layer type and a
    pooled one (type as a feature) for the rest."""

    POOLED = "(pooled)"

    def __init__(self, gbm: GbmSettings = GBM, weighting: str = "share") -> None:
        self._gbm = gbm
        self._weighting = weighting
        self._models: dict[str, TypeRegressor] = {}
        self._columns: list[str] = []
        self.executed_types: frozenset[str] = frozenset()
        self.boosted_types: frozenset[str] = frozenset()
        self.record_counts: dict[str, int] = {}

    @property
    def own_types(self) -> list[str]:
        return sorted(t for t in self._models if t != self.POOLED)

    def fit(self, table: pd.DataFrame, features: pd.DataFrame | None = None) -> LayerTimeModel:
        """Fit on a layer table (with ``time_ms``); ``features`` are its
        ``layer_features`` where the caller has them already."""
        if table.empty:
            raise DataError("No layer records to learn from.", "Measure with --profile-layers.")
        feats = layer_features(table) if features is None else features.loc[table.index]
        fused = [c for c in feats.columns if c.startswith("fused_")]
        common = feats[fused].astype(bool).sum().sort_values(ascending=False)
        self._columns = [*NUMERIC_FEATURES, *common.index[:MAX_FUSED_OPS]]
        time = np.maximum(table["time_ms"].to_numpy(dtype=float), MIN_TIME_MS)
        y = np.log(time)
        weight = layer_weights(table, time, self._weighting)
        if EXTRA_COLUMN in table.columns:
            extra = table[EXTRA_COLUMN].fillna(False).to_numpy(dtype=bool)
            if extra.any() and (~extra).any():
                weight[extra] *= EXTRA_WEIGHT * weight[~extra].sum() / weight[extra].sum()
        types = table["type"].astype(str)
        self.executed_types = frozenset(types)
        self.record_counts = types.value_counts().to_dict()
        models_per_type = table.groupby("type")["model"].nunique()
        own = [
            t for t, n in self.record_counts.items()
            if n >= MIN_TYPE_RECORDS and models_per_type.get(t, 0) >= MIN_TYPE_MODELS
        ]  # fmt: skip
        self._models = {}
        self.boosted_types = frozenset(t for t in own if t not in BASE_ONLY_TYPES)
        for kind in own:
            rows = (types == kind).to_numpy()
            boost = self._gbm if kind in self.boosted_types else None
            self._models[kind] = TypeRegressor(self._columns, ["exec_family"], boost).fit(
                feats.loc[rows], y[rows], weight[rows]
            )
        rest = ~types.isin(own).to_numpy()
        if rest.any():
            self._models[self.POOLED] = TypeRegressor(
                self._columns, ["exec_family", "type"], self._gbm
            ).fit(feats.loc[rest], y[rest], weight[rest])
        return self

    def predict_ms(self, table: pd.DataFrame, features: pd.DataFrame | None = None) -> np.ndarray:
        """Each layer's predicted time (ms)."""
        if not self._models:
            raise UsageError("The layer-time model is not trained.", "Call fit() first.")
        feats = layer_features(table) if features is None else features
        for column in self._columns:
            if column not in feats.columns:
                feats = feats.assign(**{column: 0.0})
        out = np.empty(len(feats))
        types = feats["type"].astype(str).to_numpy()
        pooled = self._models.get(self.POOLED) or next(iter(self._models.values()))
        for kind in np.unique(types):
            rows = types == kind
            model = self._models.get(str(kind), pooled)
            out[rows] = model.predict(feats.loc[rows])
        return np.exp(out)


def layer_weights(table: pd.DataFrame, time: np.ndarray, weighting: str) -> np.ndarray:
    """Each layer record's weight in the log-space fit.

    "share": its share of its case's layer sum, half of it, and an equal share of the
    case, the other half. A model's latency is a sum, so its error is the layers' log
    errors weighted by their shares; and every case (a 1 ms model as much as a 1 s one)
    counts once. "sqrt": the square root of its time; "none": 1."""
    if weighting == "none":
        return np.ones(len(time))
    if weighting == "sqrt":
        return np.sqrt(time)
    case = table["measurement_id"].to_numpy()
    total = pd.Series(time).groupby(case).transform("sum").to_numpy()
    count = pd.Series(time).groupby(case).transform("size").to_numpy()
    return 0.5 * time / total + 0.5 / count


@dataclass(frozen=True, slots=True)
class Overhead:
    """End-to-end (ms) = scale x layer sum + per_layer_ms x layers + constant_ms."""

    scale: float
    per_layer_ms: float
    constant_ms: float

    def apply(self, layer_sum_ms: Any, n_layers: Any) -> Any:
        return self.scale * layer_sum_ms + self.per_layer_ms * n_layers + self.constant_ms


def fit_overhead(layer_sum_ms: np.ndarray, n_layers: np.ndarray, e2e_ms: np.ndarray) -> Overhead:
    """Least squares on relative error (each case's row divided by its end-to-end time),
    so a 2 ms model counts as much as a 2 s one. The scale and the constant are not
    negative; the per-layer term may be: each profiled node's counter carries a little
    of the profiler's own cost, which the timed loop does not pay."""
    from scipy.optimize import lsq_linear

    design = np.column_stack([layer_sum_ms, n_layers, np.ones(len(e2e_ms))]) / e2e_ms[:, None]
    bounds = (np.array([0.0, -np.inf, 0.0]), np.array([np.inf, np.inf, np.inf]))
    coef = lsq_linear(design, np.ones(len(e2e_ms)), bounds=bounds).x
    if coef[0] <= 1e-3:  # the layers explain none of the end-to-end time
        raise DataError(
            "The end-to-end times do not grow with the layers' times; the overhead cannot be fitted.",
            "Check the profiles: the layer sum should be close to the end-to-end median.",
        )
    return Overhead(float(coef[0]), float(coef[1]), float(coef[2]))


@dataclass(frozen=True, slots=True)
class KernelPrediction:
    """A model's predicted latency at one batch size from its layers."""

    model: str
    batch_size: int
    platform: str
    latency_ms: float  # per batch, end to end
    per_image_ms: float
    layer_sum_ms: float  # the predicted layers' times
    overhead_ms: float  # latency_ms - layer_sum_ms
    n_layers: int  # executed layers predicted
    n_skipped: int  # nodes of the compiled graph that the profiles never saw executed
    by_type: tuple[tuple[str, float, int], ...]  # (layer type, predicted ms, count), slowest first
    top_layers: tuple[tuple[str, str, float], ...]  # (name, type, predicted ms), slowest first
    measured_latency_ms: float | None = None
    method: str = "kernel-level"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class _PlatformModel:
    layers: LayerTimeModel
    overhead: Overhead
    models: tuple[str, ...]
    n_cases: int


class KernelPredictor:
    """The kernel-level predictor: ``fit(layers, measurements)`` on profiled layers, then
    ``predict_layers`` (a model's planned layers) or ``predict`` (compiles the model with
    the runtime for its layers; OpenVINO only)."""

    def __init__(
        self, *, exclude_untrusted: bool = True, gbm: GbmSettings = GBM, weighting: str = "share"
    ) -> None:
        self.exclude_untrusted = exclude_untrusted
        self._gbm = gbm
        self._weighting = weighting
        self._fits: dict[str, _PlatformModel] = {}
        self.cases: pd.DataFrame | None = None
        self._measured: dict[tuple[str, str, int], float] = {}

    @property
    def platforms(self) -> list[str]:
        return sorted(self._fits)

    def fit(
        self,
        layers: pd.DataFrame,
        measurements: pd.DataFrame | None = None,
        *,
        cases: pd.DataFrame | None = None,
        features: pd.DataFrame | None = None,
        extra_layers: pd.DataFrame | None = None,
    ) -> KernelPredictor:
        """``layers``: a layer table (``core.predict.layers.layer_table``); measurements:
        the long-schema rows they belong to (for the disturbed flag and the median), or
        ``cases`` already built by ``core.predict.cases.profiled_cases``.
        ``extra_layers``: more layer records (synthetic single-layer blocks timed on the
        device, ``bench/device_profile.py``) for the per-layer regressors only."""
        cases = profiled_cases(layers, measurements) if cases is None else cases
        self.cases = cases
        train = cases[cases["clean"]] if self.exclude_untrusted else cases
        if train.empty:
            raise DataError(
                f"All {len(cases)} profiled cases are disturbed or inflated; none is left to learn from.",
                "Measure again on a quieter machine, or fit with exclude_untrusted=False.",
            )
        feats = layer_features(layers) if features is None else features
        self._fits = {}
        for platform, rows in train.groupby("platform", sort=True):
            chosen = layers["measurement_id"].isin(rows["measurement_id"]).to_numpy()
            table, table_feats = layers.loc[chosen], feats.loc[chosen]
            if extra_layers is not None:
                extra = extra_layers[extra_layers["platform"] == platform].assign(
                    **{EXTRA_COLUMN: True}
                )
                table = pd.concat([table.assign(**{EXTRA_COLUMN: False}), extra], ignore_index=True)
                # A fused kind only one side has is absent (0), not unknown, on the other.
                table_feats = pd.concat(
                    [table_feats, layer_features(extra)], ignore_index=True
                ).fillna(0.0)
            model = LayerTimeModel(self._gbm, self._weighting).fit(table, table_feats)
            overhead = fit_overhead(
                rows["layer_sum_ms"].to_numpy(dtype=float),
                rows["n_layers"].to_numpy(dtype=float),
                rows["e2e_ms"].to_numpy(dtype=float),
            )
            self._fits[str(platform)] = _PlatformModel(
                model, overhead, tuple(sorted(rows["model"].unique())), len(rows)
            )
        self._measured = {
            (r.platform, r.model, int(r.batch_size)): float(r.e2e_ms)
            for r in cases.itertuples(index=False)
        }
        return self

    def platform_model(self, platform: str | None) -> tuple[str, _PlatformModel]:
        if not self._fits:
            raise UsageError("The kernel-level predictor is not trained.", "Call fit() first.")
        if platform is None:
            if len(self._fits) == 1:
                platform = next(iter(self._fits))
            else:
                raise DataError(
                    f"The profiles hold {len(self._fits)} platforms; say which one.",
                    f"One of: {', '.join(self.platforms)}.",
                )
        matches = [p for p in self._fits if p.lower() == platform.lower()]
        if not matches:
            raise DataError(
                f"No per-layer profiles on platform {platform!r}.",
                f"Profiled: {', '.join(self.platforms)}.",
            )
        return matches[0], self._fits[matches[0]]

    def overhead(self, platform: str | None = None) -> Overhead:
        return self.platform_model(platform)[1].overhead

    def layer_model(self, platform: str | None = None) -> LayerTimeModel:
        return self.platform_model(platform)[1].layers

    def predict_layers(
        self,
        layers: Sequence[PlannedLayer] | pd.DataFrame,
        model: str,
        batch_size: int,
        platform: str | None = None,
    ) -> KernelPrediction:
        """The latency of a model that executes ``layers`` (planned layers, or layer
        rows), at ``batch_size``. Nodes of a type the profiles never saw executed
        (Parameter, Result, Constant, ...) are left out."""
        name, fit = self.platform_model(platform)
        table = (
            planned_table(layers, model, batch_size)
            if not isinstance(layers, pd.DataFrame)
            else layers
        )
        executed = table["type"].astype(str).isin(fit.layers.executed_types).to_numpy()
        table = table.loc[executed]
        if table.empty:
            raise DataError(
                f"None of {model}'s {len(executed)} layers is of a type the profiles saw executed.",
                "Profile models built from the same kinds of layers.",
            )
        times = fit.layers.predict_ms(table)
        layer_sum = float(times.sum())
        latency = float(fit.overhead.apply(layer_sum, len(table)))
        types = table["type"].astype(str).to_numpy()
        by_type = sorted(
            (
                (str(t), float(times[types == t].sum()), int(np.sum(types == t)))
                for t in np.unique(types)
            ),
            key=lambda item: -item[1],
        )
        names = (
            table["name"].astype(str).to_numpy()
            if "name" in table.columns
            else np.array([""] * len(table))
        )
        order = np.argsort(-times)[:10]
        return KernelPrediction(
            model=model, batch_size=int(batch_size), platform=name, latency_ms=latency,
            per_image_ms=latency / batch_size, layer_sum_ms=layer_sum, overhead_ms=latency - layer_sum,
            n_layers=int(len(table)), n_skipped=int((~executed).sum()), by_type=tuple(by_type),
            top_layers=tuple((str(names[i]), str(types[i]), float(times[i])) for i in order),
            measured_latency_ms=self._measured.get((name, model, int(batch_size))),
        )  # fmt: skip

    def predict(
        self, model: str, batch_size: int, platform: str | None = None, *, device: str | None = None
    ) -> KernelPrediction:
        """Compile ``model`` (a zoo name or a model file) with the platform's runtime and
        predict from its execution graph; nothing is run. OpenVINO platforms only."""
        from core.predict.exec_graph import compiled_layers

        name, _ = self.platform_model(platform)
        backend, dev, precision = (name.split("/") + ["", "", ""])[:3]
        if backend != "openvino":
            raise UsageError(
                f"The kernel-level predictor reads a model's layers from OpenVINO's compiled graph; "
                f"{name} is not an OpenVINO platform.",
                "Use the end-to-end predictor (LatencyPredictor) there.",
            )
        planned = compiled_layers(model, batch_size, device or dev, precision)
        return self.predict_layers(planned, model, batch_size, name)
