"""Per-image time against batch size: cluster the models' curves, fit a curve, give a band.

Choices (each is also written into the JSON so a reader sees it):

- Clustering, per platform: k-means (k-means++, 10 starts, seed 0) on log10(per_image_ms)
  at the batch sizes every clustered model has, so distance is a ratio (twice as slow
  counts the same at 2 ms as at 200 ms). k in 2..min(6, n-1) by the highest mean
  silhouette; one cluster when that is below 0.25 (Kaufman & Rousseeuw: "no substantial
  structure") or with fewer than 3 models. Clusters are numbered from the fastest (0) up.
  Centroids are geometric means over the models (the mean of those log features).
- Regression of per_image_ms on batch size x over every (model, batch size) point
  (repeats reduced to their median), not the centroids, so the residuals keep the spread
  between models. Latency errors are multiplicative (models differ by orders of magnitude
  and the spread grows with the level), so each form f is fitted on the log scale:
  minimise sum (ln y - ln f(x))^2, log-normal errors with median f. The forms stay in ms:
  a + b/x, a + b*exp(-c*x), a*x^b, a + b*ln(x). The lowest AICc on that log-scale
  likelihood wins (K = parameters + 1; all forms are scored on the same ln y, so the
  Jacobian term cancels). A form is tried only with more distinct batch sizes than it
  has parameters. R² is on the log scale (the fitted one); the raw-ms R² and the R²
  against the centroids are given too.
- 95% prediction band for one more model's time at x, built on the log scale:
  f(x) * exp(+/- t(0.975, n-p) * sqrt(g'Cg + s^2)), g the gradient of ln f in the
  parameters, C their covariance, s^2 the log-scale residual variance (delta method;
  exact for a*x^b). Always positive, symmetric on a log axis.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.optimize import OptimizeWarning, curve_fit
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score

from core.analysis.data import AnalysisInput, cell_medians

log = logging.getLogger(__name__)

MAX_CLUSTERS = 6
MIN_SILHOUETTE = 0.25
R2_SCALE = "log"
FIT_CRITERION = (
    "lowest AICc (least squares on ln(per_image_ms): multiplicative, log-normal errors; "
    "K = parameters + 1)"
)
CLUSTER_CRITERION = (
    f"k-means on log10(per_image_ms) at the common batch sizes; k in 2..min({MAX_CLUSTERS}, n-1) "
    f"by highest mean silhouette; k = 1 if the best silhouette < {MIN_SILHOUETTE} or n < 3"
)
BAND_METHOD = (
    "95% prediction band on the log scale by the delta method: "
    "f(x)*exp(+/- t(0.975, n-p)*sqrt(g'Cg + s^2)), g the gradient of ln f, s^2 the "
    "log-scale residual variance; always positive, symmetric on a log axis"
)
FIT_DATA = "every (model, batch size) point, ln(per_image_ms) (repeats reduced to their median)"
CENTROID_METHOD = "geometric mean of per_image_ms over the models at each batch size"

Array = np.ndarray


@dataclass(frozen=True, slots=True)
class CurveForm:
    name: str
    formula: str
    params: tuple[str, ...]
    func: Callable[..., Array]
    jac: Callable[..., Array]
    init: Callable[[Array, Array], list[float]]
    lower: tuple[float, ...] = ()
    upper: tuple[float, ...] = ()


def _relative_lstsq(design: Array, y: Array) -> list[float]:
    """Least squares on relative errors, sum ((design @ coef - y) / y)^2: the first-order
    match of the log-scale objective, and linear, so it gives a start close to the fit."""
    coef, *_ = np.linalg.lstsq(design / y[:, None], np.ones_like(y), rcond=None)
    return [float(c) for c in coef]


def _init_exp(x: Array, y: Array) -> list[float]:
    best: tuple[float, list[float]] | None = None
    for c in 1.0 / np.array([0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0]) / max(float(np.median(x)), 1.0):
        design = np.column_stack([np.ones_like(x), np.exp(-c * x)])
        a, b = _relative_lstsq(design, y)
        fitted = design @ np.array([a, b])
        if np.any(fitted <= 0):
            continue
        rss = float(np.sum((np.log(fitted) - np.log(y)) ** 2))
        if best is None or rss < best[0]:
            best = (rss, [a, b, float(c)])
    return best[1] if best else [float(np.exp(np.mean(np.log(y)))), 0.0, 0.1]


def _init_power(x: Array, y: Array) -> list[float]:
    # Exact: ln f = ln a + b ln x is linear, so this is already the log-scale optimum.
    coef, *_ = np.linalg.lstsq(np.column_stack([np.ones_like(x), np.log(x)]), np.log(y), rcond=None)
    return [float(np.exp(coef[0])), float(coef[1])]


FORMS: tuple[CurveForm, ...] = (
    CurveForm(
        "inverse",
        "a + b/x",
        ("a", "b"),
        lambda x, a, b: a + b / x,
        lambda x, a, b: np.column_stack([np.ones_like(x), 1.0 / x]),
        lambda x, y: _relative_lstsq(np.column_stack([np.ones_like(x), 1.0 / x]), y),
    ),
    CurveForm(
        "exponential",
        "a + b*exp(-c*x)",
        ("a", "b", "c"),
        lambda x, a, b, c: a + b * np.exp(-c * x),
        lambda x, a, b, c: np.column_stack(
            [np.ones_like(x), np.exp(-c * x), -b * x * np.exp(-c * x)]
        ),
        _init_exp,
        (-np.inf, -np.inf, 1e-9),
        (np.inf, np.inf, np.inf),
    ),
    CurveForm(
        "power",
        "a*x^b",
        ("a", "b"),
        lambda x, a, b: a * np.power(x, b),
        lambda x, a, b: np.column_stack([np.power(x, b), a * np.power(x, b) * np.log(x)]),
        _init_power,
    ),
    CurveForm(
        "log",
        "a + b*ln(x)",
        ("a", "b"),
        lambda x, a, b: a + b * np.log(x),
        lambda x, a, b: np.column_stack([np.ones_like(x), np.log(x)]),
        lambda x, y: _relative_lstsq(np.column_stack([np.ones_like(x), np.log(x)]), y),
    ),
)
FORMS_BY_NAME = {form.name: form for form in FORMS}


@dataclass(frozen=True, slots=True)
class CurveFit:
    """One form fitted on the log scale. ``covariance`` is that of the parameters (in ms
    units) and ``log_residual_var`` the residual variance of ln(per_image_ms)."""

    form: str
    formula: str
    params: dict[str, float]
    param_se: dict[str, float]
    covariance: tuple[tuple[float, ...], ...]
    log_residual_var: float
    n: int
    r2: float
    r2_raw: float
    r2_centroids: float
    aicc: float

    @property
    def dof(self) -> int:
        return self.n - len(self.params)

    def predict(self, x: Any) -> Array:
        """The fitted curve: the median per-image time (ms) at batch sizes ``x``."""
        form = FORMS_BY_NAME[self.form]
        return form.func(np.asarray(x, dtype=float), *self.params.values())

    def band(self, x: Any, level: float = 0.95) -> tuple[Array, Array, Array]:
        """(fit, lower, upper) of the prediction band at batch sizes ``x``, in ms. NaN
        where the curve is not positive (only possible outside the fitted range)."""
        xs = np.atleast_1d(np.asarray(x, dtype=float))
        form = FORMS_BY_NAME[self.form]
        values = list(self.params.values())
        fitted = form.func(xs, *values)
        positive = fitted > 0
        safe = np.where(positive, fitted, 1.0)
        grad = form.jac(xs, *values) / safe[:, None]  # gradient of ln f
        cov = np.array(self.covariance)
        var = np.einsum("ij,jk,ik->i", grad, cov, grad) + self.log_residual_var
        half = stats.t.ppf(0.5 + level / 2.0, self.dof) * np.sqrt(np.maximum(var, 0.0))
        lower = np.where(positive, safe * np.exp(-half), np.nan)
        upper = np.where(positive, safe * np.exp(half), np.nan)
        return fitted, lower, upper

    def to_dict(self, grid: Any) -> dict[str, Any]:
        fitted, lower, upper = self.band(grid)
        return {
            "form": self.form,
            "formula": self.formula,
            "x": "batch size",
            "y": "per-image time (ms)",
            "error_model": "multiplicative: ln y = ln f(x) + e, e ~ N(0, s^2)",
            "params": dict(self.params),
            "param_se": dict(self.param_se),
            "r2": self.r2,
            "r2_scale": R2_SCALE,
            "r2_raw": self.r2_raw,
            "r2_centroids": self.r2_centroids,
            "log_residual_sd": math.sqrt(self.log_residual_var),
            "aicc": self.aicc,
            "n_points": self.n,
            "band": {
                "level": 0.95,
                "method": BAND_METHOD,
                "batch_size": [float(v) for v in np.asarray(grid, dtype=float)],
                "fit_ms": fitted.tolist(),
                "lower_ms": lower.tolist(),
                "upper_ms": upper.tolist(),
            },
        }


def _aicc(rss: float, n: int, n_params: int) -> float:
    k = n_params + 1
    if n - k - 1 <= 0:
        return math.inf
    rss = max(rss, 1e-20 * n)  # an exact fit would give log(0)
    return n * math.log(rss / n) + 2 * k + 2 * k * (k + 1) / (n - k - 1)


def _r2(observed: Array, fitted: Array) -> float:
    tss = float(np.sum((observed - observed.mean()) ** 2))
    return 1.0 - float(np.sum((observed - fitted) ** 2)) / tss if tss > 0 else 1.0


def _fit_form(form: CurveForm, x: Array, y: Array) -> CurveFit:
    log_y = np.log(y)
    # A step that takes f to <= 0 gets a huge residual instead of a NaN, so the
    # optimiser backs off; the fitted curve is positive at every data point.
    floor = 1e-12 * float(np.min(y))

    def log_f(xs: Array, *theta: float) -> Array:
        return np.log(np.maximum(form.func(xs, *theta), floor))

    def log_jac(xs: Array, *theta: float) -> Array:
        return form.jac(xs, *theta) / np.maximum(form.func(xs, *theta), floor)[:, None]

    p0 = form.init(x, y)
    kwargs: dict[str, Any] = {"p0": p0, "jac": log_jac, "maxfev": 20000}
    if form.lower:
        kwargs["bounds"] = (form.lower, form.upper)
        p0[-1] = max(p0[-1], 2e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        popt, pcov = curve_fit(log_f, x, log_y, **kwargs)
    if not np.all(np.isfinite(pcov)):
        raise RuntimeError("parameter covariance could not be estimated")
    fitted = form.func(x, *popt)
    if np.any(fitted <= 0):
        raise RuntimeError("the curve is not positive at every measured batch size")
    rss = float(np.sum((log_y - np.log(fitted)) ** 2))
    # On the log scale the pooled fit is a fit to the per-batch mean of ln y (the
    # geometric centroids): that R² says how well the form follows the trend, while r2
    # also counts the models' spread about it.
    centroid_log = pd.Series(log_y).groupby(x).mean()
    centroid_fit = np.log(form.func(centroid_log.index.to_numpy(dtype=float), *popt))
    n, p = len(y), len(popt)
    return CurveFit(
        form=form.name,
        formula=form.formula,
        params={name: float(v) for name, v in zip(form.params, popt, strict=True)},
        param_se={
            name: float(math.sqrt(max(pcov[i, i], 0.0))) for i, name in enumerate(form.params)
        },
        covariance=tuple(tuple(float(v) for v in row) for row in pcov),
        log_residual_var=rss / (n - p),
        n=n,
        r2=_r2(log_y, np.log(fitted)),
        r2_raw=_r2(y, fitted),
        r2_centroids=_r2(centroid_log.to_numpy(), centroid_fit),
        aicc=_aicc(rss, n, p),
    )


def fit_curve(
    batch_sizes: Any, per_image_ms: Any, forms: tuple[str, ...] | None = None
) -> tuple[CurveFit | None, list[dict[str, Any]], str | None]:
    """Fit each candidate form on the log scale, pick the lowest AICc.

    Returns (best fit or None, one summary per tried form, reason when none fitted).
    """
    x = np.asarray(batch_sizes, dtype=float)
    y = np.asarray(per_image_ms, dtype=float)
    if np.any(~np.isfinite(y) | (y <= 0)) or np.any(~np.isfinite(x) | (x <= 0)):
        return (
            None,
            [],
            "per-image times and batch sizes must be positive and finite to fit on the log scale",
        )
    distinct = len(np.unique(x))
    fits: list[CurveFit] = []
    candidates: list[dict[str, Any]] = []
    for form in FORMS if forms is None else tuple(FORMS_BY_NAME[f] for f in forms):
        entry: dict[str, Any] = {"form": form.name, "formula": form.formula}
        if distinct <= len(form.params) or len(y) - len(form.params) - 2 <= 0:
            entry["skipped"] = (
                f"needs more than {len(form.params)} distinct batch sizes and "
                f"{len(form.params) + 3} points (have {distinct} and {len(y)})"
            )
        else:
            try:
                fit = _fit_form(form, x, y)
            except (RuntimeError, ValueError, np.linalg.LinAlgError) as exc:
                entry["skipped"] = f"did not converge: {exc}"
                log.debug("%s fit failed: %s", form.formula, exc)
            else:
                fits.append(fit)
                entry.update(r2=fit.r2, r2_raw=fit.r2_raw, aicc=fit.aicc)
        candidates.append(entry)
    if not fits:
        return (
            None,
            candidates,
            (
                f"too few points to fit a curve ({len(y)} points at {distinct} batch size(s)); "
                "measure more batch sizes (e.g. --batch 1,2,4,8,16)"
            ),
        )
    best = min(fits, key=lambda f: f.aicc)
    for entry in candidates:
        if "aicc" in entry:
            entry["delta_aicc"] = entry["aicc"] - best.aicc
    return best, candidates, None


@dataclass(frozen=True, slots=True)
class Clustering:
    labels: dict[str, int]
    k: int
    batch_sizes: tuple[int, ...]
    silhouette: dict[int, float] = field(default_factory=dict)
    reason: str = ""
    excluded: dict[str, str] = field(default_factory=dict)


def _common_batch_sizes(curves: pd.DataFrame) -> tuple[list[int], list[str]]:
    """Batch sizes and models to cluster on: every batch size measured for every model,
    or failing two of those, the batch sizes at least half of the models have."""
    have = curves.notna()
    common = [int(b) for b in curves.columns if have[b].all()]
    if len(common) >= 2 or len(curves.columns) < 2:
        return common, list(curves.index)
    popular = [int(b) for b in curves.columns if have[b].mean() >= 0.5]
    models = [m for m in curves.index if have.loc[m, popular].all()]
    return popular, models


def cluster_curves(curves: pd.DataFrame, max_k: int = MAX_CLUSTERS) -> Clustering:
    """Cluster models (rows) by their per-image-ms curves over batch sizes (columns)."""
    batch_sizes, models = _common_batch_sizes(curves)
    excluded = {
        m: "not measured at every common batch size" for m in curves.index if m not in models
    }
    sizes = tuple(batch_sizes)
    if not batch_sizes or not models:
        why = "no clusters: the models share no batch sizes to compare their curves at"
        return Clustering({}, 0, sizes, reason=why, excluded=excluded)
    features = np.log10(curves.loc[models, batch_sizes].to_numpy(dtype=float))
    n_distinct = len(np.unique(features.round(12), axis=0))
    k_max = min(max_k, len(models) - 1, n_distinct - 1)
    scores: dict[int, float] = {}

    def one_cluster(why: str) -> Clustering:
        return Clustering({m: 0 for m in models}, 1, sizes, scores, f"one cluster: {why}", excluded)

    if len(models) < 3:
        return one_cluster(f"{len(models)} model(s) are too few to cluster (need 3)")
    if k_max < 2:
        return one_cluster("the curves are (nearly) identical")
    labelings: dict[int, Array] = {}
    for k in range(2, k_max + 1):
        labels = KMeans(n_clusters=k, n_init=10, random_state=0).fit_predict(features)
        if len(np.unique(labels)) < 2:
            continue
        scores[k] = float(silhouette_score(features, labels))
        labelings[k] = labels
    if not scores:
        return one_cluster("k-means found no split")
    best_k = max(scores, key=lambda k: (scores[k], -k))
    if scores[best_k] < MIN_SILHOUETTE:
        return one_cluster(
            f"the best silhouette ({scores[best_k]:.2f} at k={best_k}) is below {MIN_SILHOUETTE}"
        )
    raw = labelings[best_k]
    # Number clusters from the fastest: by the mean log time of their members.
    order = sorted(set(raw.tolist()), key=lambda c: float(features[raw == c].mean()))
    relabel = {old: new for new, old in enumerate(order)}
    labels = {m: relabel[int(c)] for m, c in zip(models, raw, strict=True)}
    why = f"k={best_k} has the highest mean silhouette ({scores[best_k]:.2f})"
    return Clustering(labels, best_k, sizes, scores, why, excluded)


def _grid(batch_sizes: list[int]) -> list[float]:
    low, high = min(batch_sizes), max(batch_sizes)
    grid = set(np.round(np.geomspace(low, high, 25), 4).tolist()) | {float(b) for b in batch_sizes}
    return sorted(grid)


def _centroids(points: pd.DataFrame) -> dict[str, float]:
    log_means = np.log(points["per_image_ms"]).groupby(points["batch_size"]).mean()
    return {str(int(b)): float(np.exp(v)) for b, v in log_means.items()}


def _fit_block(points: pd.DataFrame, grid: list[float]) -> tuple[dict[str, Any] | None, str | None]:
    best, candidates, reason = fit_curve(points["batch_size"], points["per_image_ms"])
    if best is None:
        return None, reason
    block = best.to_dict(grid)
    block["criterion"] = FIT_CRITERION
    block["fitted_on"] = FIT_DATA
    block["candidates"] = candidates
    return block, None


def analyse_platform(
    points: pd.DataFrame, platform: str
) -> tuple[dict[str, Any] | None, str | None]:
    """Latency-vs-batch analysis of one platform's cell medians (model, batch_size, per_image_ms)."""
    batch_sizes = sorted(int(b) for b in points["batch_size"].unique())
    if len(batch_sizes) < 2:
        return None, (
            f"only one batch size ({batch_sizes[0]}) on {platform}; "
            "measure several (e.g. --batch 1,2,4,8) to see how per-image time changes"
        )
    curves = points.pivot(index="model", columns="batch_size", values="per_image_ms")
    clustering = cluster_curves(curves)
    grid = _grid(batch_sizes)
    fit, fit_reason = _fit_block(points, grid)
    details = []
    for label in range(clustering.k):
        members = sorted(m for m, c in clustering.labels.items() if c == label)
        member_points = points[points["model"].isin(members)]
        cluster_fit, cluster_reason = _fit_block(member_points, grid)
        entry: dict[str, Any] = {
            "label": label,
            "models": members,
            "centroids": _centroids(member_points),
            "fit": cluster_fit,
        }
        if cluster_reason:
            entry["fit_skipped"] = cluster_reason
        details.append(entry)
    section: dict[str, Any] = {
        "platform": platform,
        "batch_sizes": batch_sizes,
        "centroids": _centroids(points),
        "centroid_method": CENTROID_METHOD,
        "fit": fit,
        "clusters": dict(sorted(clustering.labels.items())),
        "n_clusters": clustering.k,
        "cluster_details": details,
        "clustering": {
            "criterion": CLUSTER_CRITERION,
            "batch_sizes": list(clustering.batch_sizes),
            "silhouette": {str(k): v for k, v in clustering.silhouette.items()},
            "choice": clustering.reason,
            "not_clustered": clustering.excluded,
        },
        "curves": {
            str(model): {str(int(b)): float(v) for b, v in row.dropna().items()}
            for model, row in curves.iterrows()
        },
    }
    if fit_reason:
        section["fit_skipped"] = fit_reason
    section["says"] = _says(section)
    return section, None


def latency_section(inp: AnalysisInput) -> tuple[dict[str, Any] | None, str | None, list[str]]:
    """The ``latency_vs_batch`` section: the main platform's analysis at the top level and,
    with several platforms, each one under ``per_platform``. Returns (section, reason, notes)."""
    cells = cell_medians(inp, ("per_image_ms",))
    results: dict[str, dict[str, Any] | None] = {}
    reasons: dict[str, str] = {}
    for platform, points in cells.groupby("platform", sort=True):
        section, reason = analyse_platform(points.reset_index(drop=True), str(platform))
        results[str(platform)] = section
        if reason:
            reasons[str(platform)] = reason
    done = {p: s for p, s in results.items() if s is not None}
    notes = [f"latency_vs_batch skipped for {p}: {r}" for p, r in reasons.items()] if done else []
    if not done:
        return None, "; ".join(reasons.values()), []
    counts = cells.groupby("platform").size()
    main = max(sorted(done), key=lambda p: int(counts[p]))  # ties: alphabetically first
    section = dict(done[main])
    if len(results) > 1:
        section["per_platform"] = results
        section["main_platform_rule"] = "the platform with the most (model, batch size) points"
    return section, None, notes


def _says(section: dict[str, Any]) -> str:
    parts = []
    platform = section["platform"]
    centroids = section["centroids"]
    sizes = list(centroids)
    parts.append(
        f"On {platform} the geometric-mean per-image time goes from {centroids[sizes[0]]:.3g} ms at batch "
        f"{sizes[0]} to {centroids[sizes[-1]]:.3g} ms at batch {sizes[-1]}"
    )
    fit = section.get("fit")
    if fit:
        params = ", ".join(f"{k} = {v:.3g}" for k, v in fit["params"].items())
        others = [
            c["formula"] for c in fit["candidates"] if "aicc" in c and c["form"] != fit["form"]
        ]
        beaten = f" over {', '.join(others)}" if others else ""
        spread = (
            "; the curve follows the trend and the band's width is the spread between models"
            if fit["r2_centroids"] >= 0.9 and fit["r2"] < fit["r2_centroids"] - 0.2
            else ""
        )
        parts.append(
            f"the best curve by AICc{beaten} is {fit['formula']} ({params}; R² on the log scale "
            f"{fit['r2']:.2f} over every model's points, {fit['r2_centroids']:.2f} against the "
            f"centroids{spread})"
        )
    else:
        parts.append(f"no curve fitted ({section.get('fit_skipped')})")
    details = section["cluster_details"]
    if section["n_clusters"] > 1:
        groups = "; ".join(
            f"cluster {d['label']}: {', '.join(d['models'][:6])}{' ...' if len(d['models']) > 6 else ''}"
            + (f" ({d['fit']['formula']}, R² {d['fit']['r2']:.3f})" if d["fit"] else "")
            for d in details
        )
        parts.append(
            f"the models fall into {section['n_clusters']} clusters, numbered from the fastest "
            f"({section['clustering']['choice']}): {groups}"
        )
    else:
        parts.append(section["clustering"]["choice"])
    return "; ".join(parts) + "."
