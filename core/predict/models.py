"""The regression models behind core.predict: a sum over kernel kinds (when the features
carry the kernel census) or a roofline in log space for latency, an additive model for peak
memory, and the grouped cross-validation they are judged by.

Inputs are design rows from ``core.predict.features.design_matrix``; targets are logs (of per-image
latency, or of peak memory per batch), so least squares minimises relative error.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.optimize import least_squares
from scipy.special import expit, logsumexp, softmax
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import Ridge
from sklearn.model_selection import GroupKFold, LeaveOneGroupOut
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from core.errors import DataError
from core.predict.features import FLOP_KINDS, LAUNCH_KINDS, is_census_column

log = logging.getLogger(__name__)

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
        # The kernel census is KernelSum's; leaving it out keeps this model as it was.
        self._z_cols = [
            i for n, i in self._col.items() if n != "log_flops_batch" and not is_census_column(n)
        ]
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


class KernelSum:
    """Per-image latency as a sum over kinds of kernel, for one platform (nn-Meter's view:
    a model's latency is the sum of its kernels', and kernels differ in efficiency).

    device = sum_k c_k*FLOPs_k + sum_k b_k*traffic_k + c_W*weights/batch
    host   = (sum_k h_k*launches_k + h_V*(views + allocs) + h_0) / batch
    time   = smoothmax_p(device, host) * exp(w.z)

    FLOPs_k, traffic_k (activations read and written) and launches_k are per image and per
    kind (dense, depthwise and grouped conv, matmul, norm, pool, elementwise, other);
    weights are read once per batch. The host term is the per-operator cost of eager
    execution (Python, dispatch, kernel launch), paid once per batch. On a GPU the host
    runs ahead of the device, so the slower of the two sets the pace; on a CPU they add
    up: the p-norm's p is fitted (p = 1: a sum; large p: a max). All coefficients are
    positive (fitted as logs), so no kind of work can make a model faster.

    Each kind's coefficient is a shared level times exp(delta_k), with delta_k ridge-
    penalised: a kind the training models barely use (grouped convs held out with the one
    model that has them) gets the shared rate instead of an unidentified one. z are the
    summary design columns (standardised, clipped to the training range at prediction)
    with ridge-penalised weights w, for what the sum misses.

    The fit is a Cauchy M-estimate on log latency (ridge terms kept quadratic):
    real measurements have outliers (a host that ran at half speed for one model's
    sweep), and a squared loss would bend every other model's fit towards them.
    """

    # Prior sd of a kind's log-rate about the shared level: e^0.5 = 1.6x either way is
    # unremarkable, 10x (a depthwise conv on a GPU) takes clear evidence.
    _DELTA_PRIOR_SD = 0.5
    _Z_PENALTY = 3.0  # ridge weight on w, per 100 rows
    _ROBUST_SCALE = 0.1  # Cauchy scale in log latency: beyond ~10% a residual counts less
    # Levels whose kinds get their own rates. Per-kind bandwidths and per-kind host costs
    # were tried too: they did not improve leave-one-model-out accuracy on real data.
    _PER_KIND = ("flops",)
    # Unpenalised z columns. The batch elasticity: per-image efficiency changes with the
    # batch beyond what the sum says (GPU occupancy grows; CPU activations outgrow caches).
    _FREE_Z: tuple[str, ...] = ("log_batch",)
    _MAX_NFEV = 300
    # (margin below the start levels, logit of (p - 1) / _P_SPAN): near a sum (p = 2.5)
    # and near a max (p = 25)
    _STARTS: tuple[tuple[float, float], ...] = ((1.0, -3.0), (1.0, 1.0))

    def __init__(self, names: Sequence[str]) -> None:
        col = {n: i for i, n in enumerate(names)}
        self._col = col
        # (group, column indices whose log-sum-exp is the term, batch exponent, level)
        # group 0 is the device, 1 the host; the batch exponent turns per-batch into
        # per-image; a term with no columns is a constant.
        self._terms: list[tuple[int, list[int], float, str]] = []
        for kind in FLOP_KINDS:
            self._terms.append((0, [col[f"log_kflops_{kind}"]], 0.0, "flops"))
        for kind in LAUNCH_KINDS:
            self._terms.append((0, [col[f"log_ktraffic_{kind}"]], 0.0, "traffic"))
        self._terms.append((0, [col["log_weight_mb"]], -1.0, "weights"))
        for kind in LAUNCH_KINDS:
            self._terms.append((1, [col[f"log_kcount_{kind}"]], -1.0, "launches"))
        views = [col["log_kcount_view"], col["log_kcount_alloc"]]
        self._terms.append((1, views, -1.0, "no-launch ops"))
        self._terms.append((1, [], -1.0, "constant"))
        levels = sorted({t[3] for t in self._terms}, key=[t[3] for t in self._terms].index)
        shared_of = {level: i for i, level in enumerate(levels)}
        counts = {level: sum(t[3] == level for t in self._terms) for level in levels}
        # theta_term = A @ phi, phi = [shared levels..., deltas of levels with several terms]
        deltas = [
            i for i, t in enumerate(self._terms) if counts[t[3]] > 1 and t[3] in self._PER_KIND
        ]
        self._n_shared = len(levels)
        self._A = np.zeros((len(self._terms), len(levels) + len(deltas)))
        for i, term in enumerate(self._terms):
            self._A[i, shared_of[term[3]]] = 1.0
        for j, i in enumerate(deltas):
            self._A[i, len(levels) + j] = 1.0
        group = np.array([t[0] for t in self._terms])
        self._members = [np.nonzero(group == g)[0] for g in (0, 1)]
        self._levels = levels
        self._z_cols = [
            i for n, i in col.items() if n != "log_flops_batch" and not is_census_column(n)
        ]
        self._theta: np.ndarray | None = None
        self._z_mean = np.zeros(0)
        self._z_scale = np.ones(0)
        self._z_low = np.zeros(0)
        self._z_high = np.zeros(0)

    def _parts(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        log_batch = x[:, self._col["log_batch"]]
        columns = []
        for _, cols, batch_power, _ in self._terms:
            value = _softmax_lse(x[:, cols])[1] if cols else np.zeros(len(x))
            columns.append(value + batch_power * log_batch)
        z = (x[:, self._z_cols] - self._z_mean) / self._z_scale
        return np.column_stack(columns), z

    def _core(
        self, theta: np.ndarray, terms: np.ndarray, z: np.ndarray, jac: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        n_phi = self._A.shape[1]
        sigma = float(expit(theta[n_phi]))
        p = 1.0 + _P_SPAN * sigma  # between 1 (a sum) and 1 + _P_SPAN (nearly a max)
        u = terms + self._A @ theta[:n_phi]
        inner = [_softmax_lse(u[:, members]) for members in self._members]
        groups = np.column_stack([lse for _, lse in inner])
        share, roof = _softmax_lse(p * groups)  # d roof / d group
        roof = roof / p
        out = roof + z @ theta[n_phi + 1 :]
        if not jac:
            return out, None
        d_terms = np.empty_like(u)
        for g, members in enumerate(self._members):
            d_terms[:, members] = inner[g][0] * share[:, g : g + 1]
        d_s = (np.sum(share * groups, axis=1) - roof) / p * _P_SPAN * sigma * (1.0 - sigma)
        return out, np.column_stack([d_terms @ self._A, d_s, z])

    def fit(self, x: np.ndarray, y: np.ndarray) -> KernelSum:
        raw_z = x[:, self._z_cols]
        self._z_mean = raw_z.mean(axis=0)
        std = raw_z.std(axis=0)
        self._z_scale = np.where(std > 1e-12, std, 1.0)
        self._z_low, self._z_high = raw_z.min(axis=0), raw_z.max(axis=0)
        terms, z = self._parts(x)
        n_phi, n_w = self._A.shape[1], z.shape[1]
        n_delta = n_phi - self._n_shared
        scale = math.sqrt(len(y) / 100.0)
        penalty = np.concatenate(
            [
                np.zeros(self._n_shared),
                # A prior on each kind's log-deviation with sd _DELTA_PRIOR_SD, against
                # residuals of about _ROBUST_SCALE: its weight does not grow with the rows.
                np.full(n_delta, self._ROBUST_SCALE / self._DELTA_PRIOR_SD),
                [0.0],
                np.full(n_w, math.sqrt(self._Z_PENALTY) * scale),
            ]
        )
        names = list(self._col)
        for j, i in enumerate(self._z_cols):
            if names[i] in self._FREE_Z and std[j] > 1e-12:  # a constant column stays tied
                penalty[n_phi + 1 + j] = 0.0
        penalised = penalty > 0
        penalty_jac = np.diag(penalty)[penalised]
        n_rows = len(y)
        scale2 = self._ROBUST_SCALE**2

        def residuals(theta: np.ndarray) -> np.ndarray:
            pred, _ = self._core(theta, terms, z, False)
            return np.concatenate([pred - y, penalty[penalised] * theta[penalised]])

        def jacobian(theta: np.ndarray) -> np.ndarray:
            _, jac = self._core(theta, terms, z, True)
            return np.vstack([jac, penalty_jac])

        def cauchy_on_data(squares: np.ndarray) -> np.ndarray:
            # Cauchy on the data rows only: the ridge rows stay quadratic, so that the
            # penalty means the same however far off a model lies.
            rho = np.empty((3, len(squares)))
            rho[0], rho[1], rho[2] = squares, 1.0, 0.0
            q = 1.0 + squares[:n_rows] / scale2
            rho[0, :n_rows] = scale2 * np.log(q)
            rho[1, :n_rows] = 1.0 / q
            rho[2, :n_rows] = -1.0 / (scale2 * q * q)
            return rho

        def solve(theta0: np.ndarray, loss: Any) -> Any:
            # x_scale=1: scaling by the Jacobian's columns blows up on a term no training
            # model uses (its column is ~0) and LAPACK's SVD then fails to converge.
            return least_squares(
                residuals, theta0, jac=jacobian, loss=loss, x_scale=1.0, max_nfev=self._MAX_NFEV
            )

        # The Cauchy objective has local minima (a sum or a max of host and device can
        # both explain a platform), so each start goes through a least-squares fit to the
        # robust one, and the lowest robust objective wins.
        best: Any = None
        for margin, s0 in self._STARTS:
            theta0 = np.concatenate([self._start(terms, y, margin), [s0], np.zeros(n_w)])
            try:
                result = solve(solve(theta0, "linear").x, cauchy_on_data)
            except np.linalg.LinAlgError:
                log.warning("kernel-sum fit: a start failed to converge; trying the others")
                continue
            if best is None or result.cost < best.cost:
                best = result
        if best is None:
            raise DataError(
                "The kernel-sum latency model could not be fitted to these measurements.",
                "Check the data for extreme values, or measure more models or batch sizes.",
            )
        self._theta = best.x
        return self

    def _start(self, terms: np.ndarray, y: np.ndarray, margin: float) -> np.ndarray:
        """Each shared level at what would explain the median case if its terms shared
        the time equally, less a margin since all the terms add up."""
        phi = np.zeros(self._A.shape[1])
        for level in range(self._n_shared):
            members = np.nonzero(self._A[:, level])[0]
            used = [i for i in members if np.median(terms[:, i]) > _ABSENT]
            if used:
                spread = [float(np.median(y - terms[:, i])) for i in used]
                phi[level] = float(np.median(spread)) - math.log(len(used))
            else:
                phi[level] = float(np.median(y)) - 10.0  # nothing uses it: keep it small
            phi[level] -= margin
        return phi

    def predict(self, x: np.ndarray) -> np.ndarray:
        if self._theta is None:
            raise RuntimeError("predict before fit")
        x = x.copy()
        x[:, self._z_cols] = np.clip(x[:, self._z_cols], self._z_low, self._z_high)
        terms, z = self._parts(x)
        return self._core(self._theta, terms, z, False)[0]

    def coefficients(self) -> dict[str, float]:
        """Fitted log-coefficients by term, and p; for inspection and tests."""
        if self._theta is None:
            raise RuntimeError("coefficients before fit")
        n_phi = self._A.shape[1]
        names = _term_names(self._terms, self._levels)
        values = self._A @ self._theta[:n_phi]
        out = {name: float(v) for name, v in zip(names, values, strict=True)}
        out["p"] = 1.0 + _P_SPAN * float(expit(self._theta[n_phi]))
        return out


def _softmax_lse(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise softmax and log-sum-exp of a 2-D array, in one pass (scipy's are slower
    for the small arrays a fit evaluates thousands of times)."""
    top = a.max(axis=1, keepdims=True)
    e = np.exp(a - top)
    total = e.sum(axis=1, keepdims=True)
    return e / total, np.log(total[:, 0]) + top[:, 0]


_P_SPAN = 33.0  # KernelSum's p-norm exponent lies in (1, 1 + _P_SPAN)

# A zero count or FLOPs enters the design as log(1e-9); terms below this are absent.
_ABSENT = -15.0


def _term_names(terms: Sequence[tuple[int, list[int], float, str]], levels: Any) -> list[str]:
    kinds = {"flops": FLOP_KINDS, "traffic": LAUNCH_KINDS, "launches": LAUNCH_KINDS}
    seen: dict[str, int] = {}
    names = []
    for _, _, _, level in terms:
        index = seen.get(level, 0)
        seen[level] = index + 1
        names.append(f"{level}:{kinds[level][index]}" if level in kinds else level)
    return names


KINDS = ("kernels", "roofline", "roofline+gbm", "ridge", "ridge+gbm", "memory")


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
        if self.kind == "kernels":
            self._base = KernelSum(self._names)
        elif self.kind.startswith("ridge"):
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
