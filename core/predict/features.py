"""Model features for the latency predictor, and the seam that supplies them.

A feature provider maps a model name to a dict of per-image numbers (FLOPs, params,
memory traffic, depth, layer counts, input size), or None when it does not know the
model. The default provider asks the zoo (``core.zoo.model_complexity``, no torch
import); tests inject synthetic providers so they do not depend on the zoo's numbers.
Models the provider does not know (a user's ONNX file) fall back to the params and flops
columns of their own measurement rows.

Zoo models also carry a kernel census (``core.zoo.complexity.KERNEL_KINDS``): FLOPs, activation
traffic, weight traffic and the number of aten operators, per kind of kernel. Latency is
close to a sum over kernels whose efficiency differs by kind, so these are what the
kernel-sum latency model (``core.predict.models.KernelSum``) is built on.

``design_matrix`` turns features plus batch size into the regression inputs. It only uses
the keys every training model has, so a mix of zoo models and fallback models still
yields one consistent matrix.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from core.errors import DataError, UnknownModelError
from core.zoo.complexity import KERNEL_KINDS, NO_LAUNCH_KINDS  # standard library only

log = logging.getLogger(__name__)

FeatureProvider = Callable[[str], "dict[str, float] | None"]

# Keys a provider may return; design_matrix ignores others, except ``layers_<category>``.
FLOPS = "flops"  # per image, FLOPs = 2 x MACs
PARAMS = "params"
TRAFFIC_MB = "memory_traffic_mb"  # per image estimate
DEPTH = "depth"
INPUT_PIXELS = "input_pixels"  # H x W of the input image
LAYER_PREFIX = "layers_"
# The kernel census, one key per kind: kernel_flops_conv, kernels_view, ...
KERNEL_FLOPS_PREFIX = "kernel_flops_"
KERNEL_TRAFFIC_PREFIX = "kernel_traffic_mb_"  # activations read + written, MB at fp32
KERNEL_WEIGHT_PREFIX = "kernel_weight_mb_"  # parameters and buffers read, MB at fp32
KERNEL_COUNT_PREFIX = "kernels_"  # aten operators run

LAUNCH_KINDS = tuple(k for k in KERNEL_KINDS if k not in NO_LAUNCH_KINDS)
# Kinds that do FLOPs (the flop counter counts convolutions, matmuls and attention only).
FLOP_KINDS: tuple[str, ...] = ("conv", "depthwise_conv", "grouped_conv", "matmul")
KERNEL_KEYS: tuple[str, ...] = (
    *(KERNEL_FLOPS_PREFIX + k for k in KERNEL_KINDS),
    *(KERNEL_TRAFFIC_PREFIX + k for k in KERNEL_KINDS),
    *(KERNEL_WEIGHT_PREFIX + k for k in KERNEL_KINDS),
    *(KERNEL_COUNT_PREFIX + k for k in KERNEL_KINDS),
)


def complexity_to_features(complexity: Any) -> dict[str, float]:
    """A ``core.zoo.Complexity`` as a feature dict."""
    features: dict[str, float] = {
        FLOPS: float(complexity.flops),
        PARAMS: float(complexity.params),
        DEPTH: float(complexity.depth),
    }
    if complexity.memory_traffic_mb > 0:  # 0 means "not estimated", not "free"
        features[TRAFFIC_MB] = float(complexity.memory_traffic_mb)
    size = tuple(complexity.input_size)
    if len(size) >= 2:
        features[INPUT_PIXELS] = float(size[-1] * size[-2])
    for category, count in dict(complexity.layer_counts).items():
        features[LAYER_PREFIX + str(category)] = float(count)
    census = (
        (KERNEL_COUNT_PREFIX, getattr(complexity, "kernel_counts", None)),
        (KERNEL_FLOPS_PREFIX, getattr(complexity, "kernel_flops", None)),
        (KERNEL_TRAFFIC_PREFIX, getattr(complexity, "kernel_traffic_mb", None)),
        (KERNEL_WEIGHT_PREFIX, getattr(complexity, "kernel_weight_mb", None)),
    )
    if all(values for _, values in census):  # empty: a catalogue without the census
        for prefix, values in census:
            for kind in KERNEL_KINDS:
                features[prefix + kind] = float(dict(values).get(kind, 0))
    return features


def zoo_features(name: str) -> dict[str, float] | None:
    """The default provider: the zoo catalogue's complexity of ``name`` (no torch import).

    None for a name the catalogue does not hold (a model file, a typo); the caller decides
    whether that is an error. The zoo may also raise UnknownModelError.
    """
    from core.zoo import model_complexity  # lazily: the catalogue loads on first use

    complexity = model_complexity(name)
    return None if complexity is None else complexity_to_features(complexity)


def features_from_rows(model: str, params: Iterable[Any], flops: Iterable[Any]) -> dict[str, float]:
    """Fallback features from a model's own measurement rows (params and flops columns)."""
    features: dict[str, float] = {}
    for key, values in ((FLOPS, flops), (PARAMS, params)):
        for value in values:
            number = _positive(value)
            if number is not None:
                features[key] = number
                break
    if FLOPS not in features:
        raise DataError(
            f"No FLOPs known for model {model!r}: the zoo does not describe it and its rows "
            "have no flops value.",
            "Add a 'flops' column (per image, FLOPs = 2 x MACs) to its rows, or use a zoo model.",
        )
    return features


# Beyond this the rows' FLOPs and the provider's disagree for a reason, not by rounding.
RESCALE_TOLERANCE = 0.02


def rescale_to_measured(
    features: Mapping[str, float], measured_flops: Iterable[Any]
) -> tuple[dict[str, float], float | None]:
    """The features of a model that was measured at another input size than the provider
    describes, judged by the FLOPs its rows carry (e.g. efficientnet_b2 run at 224 x 224
    where the zoo counts it at its 288 x 288 crop).

    The rows' flops are the count of what ran, so when they differ from the provider's by
    more than ``RESCALE_TOLERANCE``, every quantity that grows with the pixels (FLOPs,
    activation traffic, input pixels) is scaled by their ratio; weights, depth and kernel
    counts do not change with the input size. Returns the features and the ratio, or the
    features unchanged and None.
    """
    measured = next((n for n in map(_positive, measured_flops) if n is not None), None)
    flops = _positive(features.get(FLOPS))
    if measured is None or flops is None or abs(measured / flops - 1.0) <= RESCALE_TOLERANCE:
        return dict(features), None
    ratio = measured / flops
    if abs(ratio - 0.5) <= RESCALE_TOLERANCE / 2:
        # Half the count is a flops column holding MACs, not another input size.
        log.warning("the flops column looks like MACs (half the zoo's FLOPs); not rescaling")
        return dict(features), None
    scaled = dict(features)
    for key, value in features.items():
        if key in (FLOPS, INPUT_PIXELS) or key.startswith(
            (KERNEL_FLOPS_PREFIX, KERNEL_TRAFFIC_PREFIX)
        ):
            scaled[key] = value * ratio
    if TRAFFIC_MB in features:
        weights_mb = sum(features.get(KERNEL_WEIGHT_PREFIX + k, 0.0) for k in KERNEL_KINDS)
        if weights_mb <= 0:
            weights_mb = features.get(PARAMS, 0.0) * 4 / 1e6  # fp32 bytes
        weights_mb = min(weights_mb, features[TRAFFIC_MB])
        scaled[TRAFFIC_MB] = weights_mb + (features[TRAFFIC_MB] - weights_mb) * ratio
    scaled[FLOPS] = measured  # exact, not a rounded product
    return scaled, ratio


def lookup(
    provider: FeatureProvider, name: str, *, unknown_is_none: bool = True
) -> dict[str, float] | None:
    """Ask ``provider`` about ``name`` and validate the answer; None when it does not know
    the model. With ``unknown_is_none=False`` the provider's UnknownModelError (which
    carries the zoo's suggestions) propagates instead."""
    try:
        raw = provider(name)
    except UnknownModelError:
        if not unknown_is_none:
            raise
        return None
    if raw is None:
        return None
    features: dict[str, float] = {}
    for key, value in raw.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise DataError(
                f"Feature {key!r} of model {name!r} is not a number: {value!r}.",
                "Fix the feature provider so that it returns numbers.",
            ) from None
        if math.isfinite(number):
            features[str(key)] = number
    if _positive(features.get(FLOPS)) is None:
        raise DataError(
            f"The features of model {name!r} have no positive 'flops'.",
            "A feature provider must return FLOPs per image (2 x MACs).",
        )
    return features


def common_keys(all_features: Iterable[Mapping[str, float]]) -> tuple[str, ...]:
    """The feature keys every model has, in a fixed order."""
    sets = [set(f) for f in all_features]
    if not sets:
        return ()
    shared = set.intersection(*sets)
    return tuple(sorted(shared))


def design_names(keys: Sequence[str]) -> list[str]:
    """The column names ``design_matrix`` produces for these available keys."""
    names = ["log_flops", "log_batch", "log_flops_batch"]
    if PARAMS in keys:
        names.append("log_params")
    if TRAFFIC_MB in keys:
        names += ["log_traffic_mb", "log_intensity"]
    if DEPTH in keys:
        names += ["log_depth", "log_work_per_layer"]
    if INPUT_PIXELS in keys:
        names.append("log_input_pixels")
    if _layer_keys(keys):
        names.append("log_layers")
    names += [f"frac_{k[len(LAYER_PREFIX) :]}" for k in _layer_keys(keys)]
    if has_kernel_census(keys):
        names += [f"log_kflops_{k}" for k in FLOP_KINDS]
        names += [f"log_ktraffic_{k}" for k in LAUNCH_KINDS]
        names += [f"log_kcount_{k}" for k in KERNEL_KINDS]
        names.append("log_weight_mb")
    return names


def is_census_column(name: str) -> bool:
    """Whether a design column is one of the kernel census's (the KernelSum model's)."""
    return name.startswith(("log_kflops_", "log_ktraffic_", "log_kcount_", "log_weight_mb"))


def has_kernel_census(keys: Sequence[str]) -> bool:
    """Whether every model has the kernel census (zoo models do; fallback models do not)."""
    return set(KERNEL_KEYS) <= set(keys)


def design_matrix(
    features: Sequence[Mapping[str, float]], batch_sizes: Sequence[int], keys: Sequence[str]
) -> np.ndarray:
    """Regression inputs, one row per (features, batch size).

    Everything is in log space because latency scales multiplicatively: a power law in
    FLOPs, traffic and batch is a straight line there. ``log_work_per_layer`` (FLOPs x
    batch / depth) tells a launch-overhead-bound case from a compute-bound one;
    ``log_intensity`` (FLOPs / byte) tells compute-bound from memory-bound.
    """
    layer_keys = _layer_keys(keys)
    census = has_kernel_census(keys)
    rows: list[list[float]] = []
    for feats, batch in zip(features, batch_sizes, strict=True):
        missing = [k for k in keys if k not in feats]
        if missing:
            raise DataError(
                f"Features lack {', '.join(missing)}; the predictor was trained with them.",
                "Use the same feature provider for training and prediction.",
            )
        log_flops = _log(feats[FLOPS])
        log_batch = math.log(batch)
        row = [log_flops, log_batch, log_flops + log_batch]
        if PARAMS in keys:
            row.append(_log(feats[PARAMS]))
        if TRAFFIC_MB in keys:
            log_traffic = _log(feats[TRAFFIC_MB] * 1e6)
            row += [log_traffic, log_flops - log_traffic]
        if DEPTH in keys:
            log_depth = _log(feats[DEPTH])
            row += [log_depth, log_flops + log_batch - log_depth]
        if INPUT_PIXELS in keys:
            row.append(_log(feats[INPUT_PIXELS]))
        if layer_keys:
            total = sum(max(feats[k], 0.0) for k in layer_keys)
            row.append(_log(max(total, 1.0)))
            row += [max(feats[k], 0.0) / total if total > 0 else 0.0 for k in layer_keys]
        if census:
            row += [_log(feats[KERNEL_FLOPS_PREFIX + k]) for k in FLOP_KINDS]
            row += [_log(feats[KERNEL_TRAFFIC_PREFIX + k]) for k in LAUNCH_KINDS]
            row += [_log(feats[KERNEL_COUNT_PREFIX + k]) for k in KERNEL_KINDS]
            row.append(_log(sum(feats[KERNEL_WEIGHT_PREFIX + k] for k in KERNEL_KINDS)))
        rows.append(row)
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(design_names(keys)))


def _layer_keys(keys: Sequence[str]) -> list[str]:
    return sorted(k for k in keys if k.startswith(LAYER_PREFIX))


def _log(value: float) -> float:
    # A zero count (no params in a pooling-only toy) must not become -inf.
    return math.log(max(float(value), 1e-9))


def _positive(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None
