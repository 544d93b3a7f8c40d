"""Per-image time against batch size: cluster the models' curves, fit a curve, give a band.

Choices (each is also written into the JSON so a reader sees it):

- Clustering, per platform. Feature of a model = log10(per_image_ms) at each batch size
  that every clustered model was measured at. Logs make the distance a ratio, so a model
  twice as slow counts the same at 2 ms as at 200 ms. k-means (k-means++, 10 starts,
  seed 0); k in 2..min(6, n-1) by the highest mean silhouette, and one cluster when the
  best silhouette is below 0.25 (Kaufman & Rousseeuw: "no substantial structure") or
  when there are fewer than 3 models. Clusters are numbered from the fastest (0) up.
- Regression of per_image_ms on batch size x, on every (model, batch size) point in raw
  ms (repeats are first reduced to their median), not on the centroids: least squares
  on all points equals a weighted fit to the per-batch means, so the curve runs through
  the centroids while the residuals keep the spread between models. Candidates
  a + b/x, a + b*exp(-c*x), a*x^b and a + b*ln(x), fitted with scipy's curve_fit; the
  one with the lowest AICc (Gaussian errors, K = parameters + 1 for the variance) wins.
  A form is only tried when the data have more distinct batch sizes than it has
  parameters. Centroids are arithmetic means over models.
- 95% prediction band (for one more model's per-image time at x):
  f(x) +/- t(0.975, n-p) * sqrt(g(x)' C g(x) + s^2), g the gradient of f in the
  parameters, C their covariance, s^2 the residual variance (delta method; exact for
  the forms linear in their parameters). Lower bound clipped at 0 ms.
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
FIT_CRITERION = "lowest AICc (least squares, Gaussian errors, K = parameters + 1)"
CLUSTER_CRITERION = (
    f"k-means on log10(per_image_ms) at the common batch sizes; k in 2..min({MAX_CLUSTERS}, n-1) "
    f"by highest mean silhouette; k = 1 if the best silhouette < {MIN_SILHOUETTE} or n < 3"
)
BAND_METHOD = (
    "95% prediction band by the delta method: f(x) +/- t(0.975, n-p)*sqrt(g'Cg + s^2); "
    "lower bound clipped at 0"
)
FIT_DATA = "every (model, batch size) point, raw per_image_ms (repeats reduced to their median)"

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


def _lstsq(design: Array, y: Array) -> list[float]:
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return [float(c) for c in coef]


def _init_exp(x: Array, y: Array) -> list[float]:
    best: tuple[float, list[float]] | None = None
    for c in 1.0 / np.array([0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0]) / max(float(np.median(x)), 1.0):
        design = np.column_stack([np.ones_like(x), np.exp(-c * x)])
        a, b = _lstsq(design, y)
        rss = float(np.sum((design @ np.array([a, b]) - y) ** 2))
        if best is None or rss < best[0]:
            best = (rss, [a, b, float(c)])
    return best[1] if best else [float(np.mean(y)), 0.0, 0.1]


def _init_power(x: Array, y: Array) -> list[float]:
    positive = y > 0
    log_x = np.log(x[positive])
    log_a, b = _lstsq(np.column_stack([np.ones_like(log_x), log_x]), np.log(y[positive]))
    return [float(np.exp(log_a)), float(b)]


FORMS: tuple[CurveForm, ...] = (
    CurveForm(
        "inverse",
        "a + b/x",
        ("a", "b"),
        lambda x, a, b: a + b / x,
        lambda x, a, b: np.column_stack([np.ones_like(x), 1.0 / x]),
        lambda x, y: _lstsq(np.column_stack([np.ones_like(x), 1.0 / x]), y),
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
        lambda x, y: _lstsq(np.column_stack([np.ones_like(x), np.log(x)]), y),
    ),
)
FORMS_BY_NAME = {form.name: form for form in FORMS}


@dataclass(frozen=True, slots=True)
class CurveFit:
    form: str
    formula: str
    params: dict[str, float]
    param_se: dict[str, float]
    covariance: tuple[tuple[float, ...], ...]
    residual_var: float
    n: int
    r2: float
    aicc: float

    @property
    def dof(self) -> int:
        return self.n - len(self.params)

    def predict(self, x: Any) -> Array:
        form = FORMS_BY_NAME[self.form]
        return form.func(np.asarray(x, dtype=float), *self.params.values())

    def band(self, x: Any, level: float = 0.95) -> tuple[Array, Array, Array]:
        """(fit, lower, upper) of the prediction band at batch sizes ``x``."""
        xs = np.asarray(x, dtype=float)
        form = FORMS_BY_NAME[self.form]
        values = list(self.params.values())
        fitted = form.func(xs, *values)
        grad = form.jac(xs, *values)
        cov = np.array(self.covariance)
        var = np.einsum("ij,jk,ik->i", grad, cov, grad) + self.residual_var
        half = stats.t.ppf(0.5 + level / 2.0, self.dof) * np.sqrt(np.maximum(var, 0.0))
        return fitted, np.maximum(fitted - half, 0.0), fitted + half

    def to_dict(self, grid: Any) -> dict[str, Any]:
        fitted, lower, upper = self.band(grid)
        return {
            "form": self.form,
            "formula": self.formula,
            "x": "batch size",
            "y": "per-image time (ms)",
            "params": dict(self.params),
            "param_se": dict(self.param_se),
            "r2": self.r2,
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


def _aicc(rss: float, n: int, n_params: int, scale: float) -> float:
    k = n_params + 1
    if n - k - 1 <= 0:
        return math.inf
    rss = max(rss, 1e-12 * scale)  # an exact fit would give log(0)
    return n * math.log(rss / n) + 2 * k + 2 * k * (k + 1) / (n - k - 1)


def _fit_form(form: CurveForm, x: Array, y: Array) -> CurveFit:
    p0 = form.init(x, y)
    kwargs: dict[str, Any] = {"p0": p0, "jac": form.jac, "maxfev": 20000}
    if form.lower:
        kwargs["bounds"] = (form.lower, form.upper)
        p0[-1] = max(p0[-1], 2e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        popt, pcov = curve_fit(form.func, x, y, **kwargs)
    if not np.all(np.isfinite(pcov)):
        raise RuntimeError("parameter covariance could not be estimated")
    residuals = y - form.func(x, *popt)
    rss = float(np.sum(residuals**2))
    tss = float(np.sum((y - y.mean()) ** 2))
    n, p = len(y), len(popt)
    return CurveFit(
        form=form.name,
        formula=form.formula,
        params={name: float(v) for name, v in zip(form.params, popt, strict=True)},
        param_se={
            name: float(math.sqrt(max(pcov[i, i], 0.0))) for i, name in enumerate(form.params)
        },
        covariance=tuple(tuple(float(v) for v in row) for row in pcov),
        residual_var=rss / (n - p),
        n=n,
        r2=1.0 - rss / tss if tss > 0 else 1.0,
        aicc=_aicc(rss, n, p, float(np.sum(y**2))),
    )


def fit_curve(
    batch_sizes: Any, per_image_ms: Any, forms: tuple[str, ...] | None = None
) -> tuple[CurveFit | None, list[dict[str, Any]], str | None]:
    """Fit each candidate form, pick the lowest AICc.

    Returns (best fit or None, one summary per tried form, reason when none fitted).
    """
    x = np.asarray(batch_sizes, dtype=float)
    y = np.asarray(per_image_ms, dtype=float)
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
                entry.update(r2=fit.r2, aicc=fit.aicc)
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
    if not batch_sizes or not models:
        return Clustering(
            {},
            0,
            tuple(batch_sizes),
            reason="no clusters: the models share no batch sizes to compare their curves at",
            excluded=excluded,
        )
    features = np.log10(curves.loc[models, batch_sizes].to_numpy(dtype=float))
    n_distinct = len(np.unique(features.round(12), axis=0))
    k_max = min(max_k, len(models) - 1, n_distinct - 1)
    if len(models) < 3 or k_max < 2:
        why = (
            f"one cluster: {len(models)} model(s) are too few to cluster (need 3)"
            if len(models) < 3
            else "one cluster: the curves are (nearly) identical"
        )
        return Clustering(
            {m: 0 for m in models}, 1, tuple(batch_sizes), reason=why, excluded=excluded
        )
    scores: dict[int, float] = {}
    labelings: dict[int, Array] = {}
    for k in range(2, k_max + 1):
        labels = KMeans(n_clusters=k, n_init=10, random_state=0).fit_predict(features)
        if len(np.unique(labels)) < 2:
            continue
        scores[k] = float(silhouette_score(features, labels))
        labelings[k] = labels
    if not scores:
        return Clustering(
            {m: 0 for m in models},
            1,
            tuple(batch_sizes),
            reason="one cluster: k-means found no split",
            excluded=excluded,
        )
    best_k = max(scores, key=lambda k: (scores[k], -k))
    if scores[best_k] < MIN_SILHOUETTE:
        return Clustering(
            {m: 0 for m in models},
            1,
            tuple(batch_sizes),
            scores,
            f"one cluster: the best silhouette ({scores[best_k]:.2f} at k={best_k}) is below {MIN_SILHOUETTE}",
            excluded,
        )
    raw = labelings[best_k]
    # Number clusters from the fastest: by the mean log time of their members.
    order = sorted(set(raw.tolist()), key=lambda c: float(features[raw == c].mean()))
    relabel = {old: new for new, old in enumerate(order)}
    labels = {m: relabel[int(c)] for m, c in zip(models, raw, strict=True)}
    return Clustering(
        labels,
        best_k,
        tuple(batch_sizes),
        scores,
        f"k={best_k} has the highest mean silhouette ({scores[best_k]:.2f})",
        excluded,
    )


def _grid(batch_sizes: list[int]) -> list[float]:
    low, high = min(batch_sizes), max(batch_sizes)
    grid = set(np.round(np.geomspace(low, high, 25), 4).tolist()) | {float(b) for b in batch_sizes}
    return sorted(grid)


def _centroids(points: pd.DataFrame) -> dict[str, float]:
    means = points.groupby("batch_size")["per_image_ms"].mean()
    return {str(int(b)): float(v) for b, v in means.items()}


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
        "centroid_method": "arithmetic mean of per_image_ms over the models at each batch size",
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
        f"On {platform} the mean per-image time goes from {centroids[sizes[0]]:.3g} ms at batch "
        f"{sizes[0]} to {centroids[sizes[-1]]:.3g} ms at batch {sizes[-1]}"
    )
    fit = section.get("fit")
    if fit:
        params = ", ".join(f"{k} = {v:.3g}" for k, v in fit["params"].items())
        others = [
            c["formula"] for c in fit["candidates"] if "aicc" in c and c["form"] != fit["form"]
        ]
        beaten = f" over {', '.join(others)}" if others else ""
        parts.append(
            f"the best curve by AICc{beaten} is {fit['formula']} ({params}; R² = {fit['r2']:.3f})"
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
