"""The regression models behind core.predict: a roofline in log space for latency, an
additive model for peak memory, and the grouped cross-validation both are judged by.

Inputs are design rows from ``core.features.design_matrix``; targets are logs (of per-image
latency, or of peak memory per batch), so least squares minimises relative error.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.optimize import least_squares
from scipy.special import logsumexp, softmax
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import Ridge
from sklearn.model_selection import GroupKFold, LeaveOneGroupOut
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

RANDOM_STATE = 0


class Roofline:
    """A roofline in log space, for log(per-image latency) on one platform.

    per-image time = smoothmax(c_F*FLOPs, c_T*traffic) + c_O*layers/batch, times exp(w.z).
    The first two are compute and memory time; the smooth max is a p-norm with p fitted
    (p = 1: they add up; large p: the slower one wins). The last is launch overhead, paid
    once per layer per batch, so per image it shrinks as the batch grows. z are the other
    design columns (standardised); w is ridge-penalised, so with little data the model stays
    a pure roofline, and z is clipped to the training range at prediction, so a model unlike
    the training ones falls back on the roofline rather than extrapolating a linear trend.
    Least squares on log latency (relative error), with an analytic Jacobian.
    """

    _PENALTY = 0.3  # ridge weight on w, per 100 rows
    _MAX_NFEV = 400  # real fits converge in 15-100 evaluations; degenerate data would take 1000s

    def __init__(self, names: Sequence[str]) -> None:
        self._col = {n: i for i, n in enumerate(names)}
        self._z_cols = [i for n, i in self._col.items() if n != "log_flops_batch"]
        self._overhead_col = next(
            (self._col[n] for n in ("log_layers", "log_depth") if n in self._col), None
        )
        self._theta: np.ndarray | None = None
        self._z_mean = np.zeros(0)
        self._z_scale = np.ones(0)
        self._z_low = np.zeros(0)
        self._z_high = np.zeros(0)

    def _parts(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        log_batch = x[:, self._col["log_batch"]]
        terms = [x[:, self._col["log_flops"]]]
        if "log_traffic_mb" in self._col:
            terms.append(x[:, self._col["log_traffic_mb"]])
        # Launch overhead is paid once per layer per batch: per image it shrinks with batch.
        overheads = [-log_batch]
        if self._overhead_col is not None:
            overheads = [x[:, self._overhead_col] - log_batch]
        z = (x[:, self._z_cols] - self._z_mean) / self._z_scale
        return np.column_stack(terms), np.column_stack(overheads), z

    def _core(
        self, theta: np.ndarray, terms: np.ndarray, over: np.ndarray, z: np.ndarray, jac: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        k, m = terms.shape[1], over.shape[1]
        p = 1.0 + math.exp(theta[k])
        u = terms + theta[:k]
        roof = logsumexp(p * u, axis=1) / p
        parts = np.column_stack([roof, over + theta[k + 1 : k + 1 + m]])
        out = logsumexp(parts, axis=1) + z @ theta[k + 1 + m :]
        if not jac:
            return out, None
        share = softmax(p * u, axis=1)  # d roof / d a_i
        d_s = (np.sum(share * u, axis=1) - roof) / p * (p - 1.0)
        outer = softmax(parts, axis=1)  # d out / d roof, d out / d a_overhead
        columns = share * outer[:, :1]
        return out, np.column_stack([columns, outer[:, 0] * d_s, outer[:, 1:], z])

    def fit(self, x: np.ndarray, y: np.ndarray) -> Roofline:
        raw_z = x[:, self._z_cols]
        self._z_mean = raw_z.mean(axis=0)
        std = raw_z.std(axis=0)
        self._z_scale = np.where(std > 1e-12, std, 1.0)
        self._z_low, self._z_high = raw_z.min(axis=0), raw_z.max(axis=0)
        terms, over, z = self._parts(x)
        k, m, n_w = terms.shape[1], over.shape[1], z.shape[1]
        n_core = k + 1 + m
        penalty = math.sqrt(self._PENALTY * len(y) / 100.0)
        ridge_jac = np.hstack([np.zeros((n_w, n_core)), penalty * np.eye(n_w)])

        def residuals(theta: np.ndarray) -> np.ndarray:
            pred, _ = self._core(theta, terms, over, z, False)
            return np.concatenate([pred - y, penalty * theta[n_core:]])

        def jacobian(theta: np.ndarray) -> np.ndarray:
            _, jac = self._core(theta, terms, over, z, True)
            return np.vstack([jac, ridge_jac])

        # Each term starts at the level that alone would explain the median case, less a
        # margin since the terms add up; a second start guards against a poor local minimum.
        levels = [float(np.median(y - terms[:, i])) for i in range(k)]
        over_levels = [float(np.median(y - over[:, j])) for j in range(m)]
        lower = np.full(n_core + n_w, -np.inf)
        upper = np.full(n_core + n_w, np.inf)
        lower[k], upper[k] = -4.0, 3.5  # p between 1.02 and 34
        best: Any = None
        for margin, s0 in ((0.5, 1.0), (1.5, 0.0)):
            theta0 = np.concatenate(
                [
                    np.array(levels) - margin,
                    [s0],
                    np.array(over_levels) - 2.0 * margin,
                    np.zeros(n_w),
                ]
            )
            result = least_squares(
                residuals, theta0, jac=jacobian, bounds=(lower, upper), max_nfev=self._MAX_NFEV
            )
            if best is None or result.cost < best.cost:
                best = result
        self._theta = best.x
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        if self._theta is None:
            raise RuntimeError("predict before fit")
        x = x.copy()
        x[:, self._z_cols] = np.clip(x[:, self._z_cols], self._z_low, self._z_high)
        terms, over, z = self._parts(x)
        return self._core(self._theta, terms, over, z, False)[0]


class MemorySum:
    """Peak memory (per batch) = base + c_W*params + c_A*activations*batch, fitted on log
    memory (relative error). The activation size is the memory traffic estimate, or FLOPs
    where the features have no traffic. Three positive terms: it cannot go negative or
    extrapolate wildly for a model larger than the training ones."""

    def __init__(self, names: Sequence[str]) -> None:
        self._col = {n: i for i, n in enumerate(names)}
        self._theta: np.ndarray | None = None

    def _terms(self, x: np.ndarray) -> np.ndarray:
        activations = "log_traffic_mb" if "log_traffic_mb" in self._col else "log_flops"
        columns = [np.zeros(len(x)), x[:, self._col[activations]] + x[:, self._col["log_batch"]]]
        if "log_params" in self._col:
            columns.append(x[:, self._col["log_params"]])
        return np.column_stack(columns)

    def fit(self, x: np.ndarray, y: np.ndarray) -> MemorySum:
        terms = self._terms(x)

        def residuals(theta: np.ndarray) -> np.ndarray:
            return logsumexp(terms + theta, axis=1) - y

        def jacobian(theta: np.ndarray) -> np.ndarray:
            return softmax(terms + theta, axis=1)

        start = np.array([float(np.median(y - terms[:, i])) for i in range(terms.shape[1])])
        self._theta = least_squares(residuals, start - 1.0, jac=jacobian).x
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        if self._theta is None:
            raise RuntimeError("predict before fit")
        return logsumexp(self._terms(x) + self._theta, axis=1)


KINDS = ("roofline", "roofline+gbm", "ridge", "ridge+gbm", "memory")


class Regressor:
    """A base model on the design rows, optionally plus gradient boosting on its residuals."""

    def __init__(self, kind: str, names: Sequence[str]) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown regressor kind {kind!r}")
        self.kind = kind
        self._names = list(names)
        self._base: Any = None
        self._gbm: GradientBoostingRegressor | None = None

    def fit(self, x: np.ndarray, y: np.ndarray) -> Regressor:
        if self.kind.startswith("ridge"):
            self._base = make_pipeline(StandardScaler(), Ridge(alpha=1.0))
        elif self.kind.startswith("roofline"):
            self._base = Roofline(self._names)
        else:
            self._base = MemorySum(self._names)
        self._base.fit(x, y)
        if self.kind.endswith("+gbm"):
            self._gbm = GradientBoostingRegressor(
                n_estimators=150,
                learning_rate=0.05,
                max_depth=3,
                min_samples_leaf=3,
                random_state=RANDOM_STATE,
            )
            self._gbm.fit(x, y - self._base.predict(x))
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        out = self._base.predict(x)
        if self._gbm is not None:
            out = out + self._gbm.predict(x)
        return np.asarray(out, dtype=np.float64)


def out_of_fold(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    kind: str,
    names: Sequence[str],
    max_folds: int | None,
) -> np.ndarray:
    """Predictions for each row from a regressor that never saw that row's model."""
    n_groups = len(np.unique(groups))
    if max_folds is None or n_groups <= max_folds:
        splitter: Any = LeaveOneGroupOut()
    else:
        splitter = GroupKFold(n_splits=max_folds)
    pred = np.empty(len(y))
    for train, test in splitter.split(x, y, groups):
        pred[test] = Regressor(kind, names).fit(x[train], y[train]).predict(x[test])
    return pred


def residual_band(residuals: np.ndarray, interval: float) -> tuple[float, float]:
    """Log-space offsets (low, high) holding ``interval`` of the out-of-fold residuals.

    The (n + 1) / n widening is the split-conformal finite-sample correction.
    """
    n = len(residuals)
    tail = (1.0 - interval) / 2.0
    hi_level = min(1.0, (1.0 - tail) * (n + 1) / n)
    lo_level = max(0.0, 1.0 - hi_level)
    return float(np.quantile(residuals, lo_level)), float(np.quantile(residuals, hi_level))
