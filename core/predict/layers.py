"""Per-layer records as the kernel-level predictor reads them, and their features.

The input is the long form of ``backbench layers --format csv`` (``core.cli.layers``'s
``LAYER_COLUMNS``: one row per executed layer of each profiled measurement, with its
type, exec type, shapes, fused layers and median time), from a store or a CSV file
(gzip allowed). ``layer_table`` validates it at the boundary and parses the shapes.

``layer_features`` describes each layer by what its shapes say, so that a layer of a
model never measured (its compiled execution graph, ``core.predict.exec_graph``) is
described the same way as a profiled one:

- work and traffic: FLOPs (convolutions and matrix products, 2 per multiply-add), bytes of
  activations in and out and of weights, arithmetic intensity;
- geometry: batch, channels in and out, spatial size in and out, kernel size, stride,
  groups (OpenVINO's grouped weights are 5-D [groups, out/g, in/g, kh, kw]), depthwise;
- what fusion put into the node: how many original layers, which kinds (Relu, Add,
  Multiply, ...: the last part of their names), whether a residual sum rides along;
- how it ran: the exec type's primitive family (brgconv_avx512, jit_avx512, gemm_mlas,
  ...; the precision suffix dropped).

Imports pandas and NumPy only: the GUI may import it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.errors import DataError

Shape = tuple[int, ...]

LAYER_REQUIRED: tuple[str, ...] = (
    "model", "batch_size", "type", "exec_type", "time_ms", "input_shapes", "output_shapes",
)  # fmt: skip
PLATFORM_PARTS = ("backend", "device", "precision")

# Layer types whose second input is a weight tensor.
WEIGHTED_TYPES = frozenset(
    {"convolution", "groupconvolution", "deconvolution", "fullyconnected", "matmul",
     "innerproduct", "gemm", "conv", "fusedconv", "aten::conv2d", "aten::convolution",
     "aten::_convolution", "aten::linear", "aten::addmm", "aten::mm", "aten::matmul"}
)  # fmt: skip
MATMUL_TYPES = frozenset(
    {"fullyconnected", "matmul", "innerproduct", "gemm", "aten::linear", "aten::addmm",
     "aten::mm", "aten::matmul"}
)  # fmt: skip

BYTES_PER_ELEMENT = {"f32": 4, "fp32": 4, "bf16": 2, "f16": 2, "fp16": 2, "i8": 1, "u8": 1,
                     "int8": 1, "i32": 4, "i64": 8}  # fmt: skip
_PRECISION_SUFFIX = re.compile(r"_(f32|fp32|bf16|f16|fp16|i8|u8|i32|i64|int8)$", re.I)

# The numeric features, in a fixed order (fused_<op> counts follow, per fitted vocabulary).
NUMERIC_FEATURES: tuple[str, ...] = (
    "log_flops", "log_in_bytes", "log_out_bytes", "log_weight_bytes", "log_bytes",
    "log_intensity", "log_batch", "log_cin", "log_cout", "log_hin", "log_win", "log_hout",
    "log_wout", "log_kernel", "stride", "log_groups", "depthwise", "log_cin_per_group",
    "log_cout_per_group", "n_inputs", "n_outputs", "has_sum", "n_fused", "rank",
    "log_in_elems", "log_out_elems", "log_flops_per_image", "log_bytes_per_image",
    # SIMD blocking: AVX-512 kernels work on channel blocks of 16 (f32); a 24-channel
    # layer computes 32. The padded FLOPs are what the kernel really does.
    "log_padded_flops", "channel_pad_ratio",
    # The model around the layer: what else streams through the caches each inference.
    "log_model_weight_bytes", "log_model_out_bytes", "log_model_layers",
)  # fmt: skip
CONTEXT_FEATURES: tuple[str, ...] = (
    "log_model_weight_bytes",
    "log_model_out_bytes",
    "log_model_layers",
)


@dataclass(frozen=True, slots=True)
class PlannedLayer:
    """A layer a model will execute, as its compiled graph says (no time): what the
    kernel-level predictor predicts a time for."""

    name: str
    type: str
    exec_type: str
    input_shapes: tuple[Shape, ...]
    output_shapes: tuple[Shape, ...]
    fused: tuple[str, ...] = ()
    precision: str = ""


def read_layers_csv(path: str | Path) -> pd.DataFrame:
    """A ``backbench layers --format csv`` export (``.csv`` or ``.csv.gz``) as a validated
    layer table (see ``layer_table``)."""
    try:
        frame = pd.read_csv(path, low_memory=False)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(
            f"Cannot read the layers CSV {path}: {exc}",
            "Give the output of `backbench layers --db DB --format csv` (gzip allowed).",
        ) from exc
    return layer_table(frame)


def layer_table(rows: pd.DataFrame | Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Layer rows made ready for the predictor: shapes and fused names parsed (from JSON
    text or sequences) into tuples, ``time_ms`` numeric and not negative, a ``platform``
    column (backend/device/precision), rows without a model or batch size refused."""
    frame = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame.from_records(list(rows))
    missing = [c for c in LAYER_REQUIRED if c not in frame.columns]
    if missing:
        raise DataError(
            f"The layer rows lack the column(s) {', '.join(missing)}.",
            "Give the output of `backbench layers --db DB --format csv`.",
        )
    if frame.empty:
        raise DataError(
            "The layer rows are empty.", "Measure with `backbench run ... --profile-layers`."
        )
    frame["batch_size"] = pd.to_numeric(frame["batch_size"], errors="coerce")
    frame["time_ms"] = pd.to_numeric(frame["time_ms"], errors="coerce")
    bad = frame["batch_size"].isna() | (frame["batch_size"] < 1) | frame["time_ms"].isna()
    bad |= frame["time_ms"] < 0
    if bool(bad.all()):
        raise DataError(
            "No layer row has a batch size and a non-negative time.",
            "Give the output of `backbench layers --db DB --format csv`.",
        )
    frame = frame.loc[~bad].reset_index(drop=True)
    frame["batch_size"] = frame["batch_size"].astype(int)
    frame["model"] = frame["model"].astype(str)
    frame["type"] = frame["type"].fillna("").astype(str)
    frame["exec_type"] = frame["exec_type"].fillna("").astype(str)
    frame["input_shapes"] = [parse_shapes(v) for v in frame["input_shapes"]]
    frame["output_shapes"] = [parse_shapes(v) for v in frame["output_shapes"]]
    frame["fused"] = [parse_names(v) for v in frame.get("fused", pd.Series([()] * len(frame)))]
    precision = (
        frame["layer_precision"] if "layer_precision" in frame.columns else frame.get("precision")
    )
    frame["layer_precision"] = "" if precision is None else precision.fillna("").astype(str)
    for part in PLATFORM_PARTS:
        if part not in frame.columns:
            frame[part] = "unknown"
    frame["platform"] = platform_of(frame)
    if "measurement_id" not in frame.columns:
        # Without ids, one case is one (platform, model, batch size).
        keys = frame[["platform", "model", "batch_size"]].astype(str).agg("|".join, axis=1)
        frame["measurement_id"] = pd.factorize(keys)[0]
    frame["measurement_id"] = (
        pd.to_numeric(frame["measurement_id"], errors="coerce").fillna(-1).astype(int)
    )
    if "name" not in frame.columns:
        frame["name"] = ""
    return frame


def platform_of(frame: pd.DataFrame) -> pd.Series:
    """backend/device/precision, as core.predict.predictor.platform_label spells it for
    latency-mode rows."""
    parts = [frame[p].astype(str).str.strip() for p in PLATFORM_PARTS]
    return (parts[0] + "/" + parts[1] + "/" + parts[2]).astype(str)


def parse_shapes(value: Any) -> tuple[Shape, ...]:
    """Shapes from JSON text ("[[1,3,224,224],[64,3,7,7]]") or a sequence of sequences."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return ()
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            raise DataError(
                f"A layer's shapes {text[:60]!r} are not JSON.",
                "Export with `backbench layers --format csv`.",
            ) from None
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ()
    try:
        return tuple(tuple(int(d) for d in shape) for shape in value)
    except (TypeError, ValueError):
        raise DataError(f"A layer's shapes {value!r} are not lists of integers.") from None


def parse_names(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return ()
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return tuple(n for n in text.split(",") if n)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ()
    return tuple(str(n) for n in value)


def exec_family(exec_type: str) -> str:
    """The primitive family of an exec type: brgconv_avx512_f32 -> brgconv_avx512."""
    return _PRECISION_SUFFIX.sub("", exec_type.strip()).lower()


def fused_op(name: str) -> str:
    """The kind of an original layer from its name: the part after the last '/'
    (".../aten::relu_/Relu" -> "Relu"); digits and suffixes after '_' dropped."""
    tail = name.rsplit("/", 1)[-1]
    return re.sub(r"[_.:\d]+.*$", "", tail) or tail


def _prod(shape: Sequence[int]) -> int:
    return int(math.prod(shape)) if shape else 0


SIMD_BLOCK = 16  # f32 lanes of an AVX-512 register


def _padded(channels: float) -> float:
    channels = max(float(channels), 1.0)
    return math.ceil(channels / SIMD_BLOCK) * SIMD_BLOCK if channels > SIMD_BLOCK / 2 else channels


def _log(value: float) -> float:
    return math.log(max(float(value), 1.0))


def layer_flops(kind: str, inputs: Sequence[Shape], outputs: Sequence[Shape]) -> int:
    """FLOPs (2 per multiply-add) of a convolution or a matrix product from its shapes;
    0 for other layers. The same rule as the profiler's (core.backends.profiling)."""
    name = kind.lower()
    if name in MATMUL_TYPES:
        if inputs and outputs and inputs[0]:
            return 2 * _prod(outputs[0]) * int(inputs[0][-1])
        return 0
    if name in WEIGHTED_TYPES and len(inputs) >= 2 and outputs:
        weights = inputs[1]
        if len(weights) == 5:
            return 2 * _prod(outputs[0]) * _prod(weights[2:])
        if len(weights) >= 3:
            return 2 * _prod(outputs[0]) * _prod(weights[1:])
    return 0


def features_of(
    kind: str,
    inputs: Sequence[Shape],
    outputs: Sequence[Shape],
    fused: Sequence[str],
    precision: str,
) -> dict[str, float]:
    """The numeric features (``NUMERIC_FEATURES``) of one layer, and ``fused_<op>``
    counts for each fused original layer's kind."""
    size = BYTES_PER_ELEMENT.get(precision.strip().lower(), 4)
    lower = kind.lower()
    act = inputs[0] if inputs else ()
    out = outputs[0] if outputs else ()
    batch = out[0] if out else (act[0] if act else 1)
    weighted = lower in WEIGHTED_TYPES and len(inputs) >= 2
    weights = inputs[1] if weighted else ()
    # Inputs other than the activation and the weights: a bias, or a residual sum that
    # fusion moved into the node (same shape as the output).
    rest = inputs[2:] if weighted else inputs[1:]
    has_sum = float(any(s == out for s in rest)) if out else 0.0
    in_elems = sum(_prod(s) for s in ([act] if weighted else inputs)) + sum(
        _prod(s) for s in rest if weighted
    )
    out_elems = sum(_prod(s) for s in outputs)
    weight_elems = _prod(weights)
    flops = layer_flops(kind, inputs, outputs)
    cin = cout = hin = win = hout = wout = kernel = groups = 1.0
    stride = 1.0
    if len(act) == 4:
        cin, hin, win = act[1], act[2], act[3]
    elif len(act) >= 2:
        cin = act[-1]
    if len(out) == 4:
        cout, hout, wout = out[1], out[2], out[3]
    elif len(out) >= 2:
        cout = out[-1]
    if weighted and len(weights) == 5:
        groups = float(weights[0])
        kernel = float(weights[3] * weights[4])
    elif weighted and len(weights) == 4:
        groups = float(max(cin // max(weights[1], 1), 1))
        kernel = float(weights[2] * weights[3])
    if hout > 0 and hin > 0 and len(act) == 4 and len(out) == 4:
        stride = float(hin) / float(hout)
    depthwise = float(groups > 1 and groups == cin and groups == cout)
    pad = 1.0
    if weighted:
        if depthwise:
            pad = _padded(cin) / cin
        else:
            pad = (_padded(cin / groups) / (cin / groups)) * (
                _padded(cout / groups) / (cout / groups)
            )
    in_bytes, out_bytes, weight_bytes = in_elems * size, out_elems * size, weight_elems * size
    total = in_bytes + out_bytes + weight_bytes
    feats = {
        "log_flops": _log(flops), "log_in_bytes": _log(in_bytes), "log_out_bytes": _log(out_bytes),
        "log_weight_bytes": _log(weight_bytes), "log_bytes": _log(total),
        "log_intensity": math.log((flops + 1.0) / (total + 1.0)), "log_batch": _log(batch),
        "log_cin": _log(cin), "log_cout": _log(cout), "log_hin": _log(hin), "log_win": _log(win),
        "log_hout": _log(hout), "log_wout": _log(wout), "log_kernel": _log(kernel), "stride": stride,
        "log_groups": _log(groups), "depthwise": depthwise,
        "log_cin_per_group": _log(cin / groups), "log_cout_per_group": _log(cout / groups),
        "n_inputs": float(len(inputs)), "n_outputs": float(len(outputs)), "has_sum": has_sum,
        "n_fused": float(len(fused)), "rank": float(len(out)),
        "log_in_elems": _log(in_elems), "log_out_elems": _log(out_elems),
        "log_flops_per_image": _log(flops / max(batch, 1)),
        "log_padded_flops": _log(flops * pad), "channel_pad_ratio": pad,
        "log_bytes_per_image": _log((in_bytes + out_bytes) / max(batch, 1)),
    }  # fmt: skip
    for name in fused:
        key = "fused_" + fused_op(name)
        feats[key] = feats.get(key, 0.0) + 1.0
    return feats


def layer_features(table: pd.DataFrame) -> pd.DataFrame:
    """``features_of`` for every row of a layer table (``layer_table`` or planned layers),
    as a frame with the numeric features, the ``fused_<op>`` counts (0 where absent),
    ``type`` and ``exec_family``."""
    precision = (
        table["layer_precision"]
        if "layer_precision" in table.columns
        else pd.Series("", index=table.index)
    )
    fused = (
        table["fused"]
        if "fused" in table.columns
        else pd.Series([()] * len(table), index=table.index)
    )
    records = [
        features_of(k, i, o, f, p)
        for k, i, o, f, p in zip(
            table["type"],
            table["input_shapes"],
            table["output_shapes"],
            fused,
            precision,
            strict=True,
        )
    ]
    frame = pd.DataFrame.from_records(records, index=table.index)
    frame = frame.fillna(0.0)
    # Context: the whole case's weights, outputs and layer count. The same layer runs
    # faster in a small model whose weights stay in the caches between inferences.
    if "measurement_id" in table.columns:
        case = table["measurement_id"].astype(str).to_numpy()
    else:
        case = (table["model"].astype(str) + "|" + table["batch_size"].astype(str)).to_numpy()
    weight = pd.Series(
        np.exp(frame["log_weight_bytes"].to_numpy()) * (frame["log_weight_bytes"].to_numpy() > 0)
    )
    out = pd.Series(np.exp(frame["log_out_bytes"].to_numpy()))
    frame["log_model_weight_bytes"] = np.log1p(weight.groupby(case).transform("sum").to_numpy())
    frame["log_model_out_bytes"] = np.log1p(out.groupby(case).transform("sum").to_numpy())
    frame["log_model_layers"] = np.log(
        pd.Series(1.0, index=range(len(case))).groupby(case).transform("size").to_numpy()
    )
    for column in NUMERIC_FEATURES:
        if column not in frame.columns:
            frame[column] = 0.0
    frame["type"] = table["type"].astype(str).to_numpy()
    frame["exec_family"] = [exec_family(e) for e in table["exec_type"]]
    return frame


def planned_table(layers: Sequence[PlannedLayer], model: str, batch_size: int) -> pd.DataFrame:
    """Planned layers as a layer table without times (for ``layer_features``)."""
    return pd.DataFrame(
        {
            "model": model,
            "batch_size": batch_size,
            "name": [x.name for x in layers],
            "type": [x.type for x in layers],
            "exec_type": [x.exec_type for x in layers],
            "input_shapes": [x.input_shapes for x in layers],
            "output_shapes": [x.output_shapes for x in layers],
            "fused": [x.fused for x in layers],
            "layer_precision": [x.precision for x in layers],
        }
    )


def planned_from_table(rows: pd.DataFrame) -> list[PlannedLayer]:
    """The layers of profiled rows, as planned layers (their times dropped): what a
    model's own profile says it executes."""
    precision = rows["layer_precision"] if "layer_precision" in rows.columns else [""] * len(rows)
    return [
        PlannedLayer(str(n), str(t), str(e), i, o, tuple(f), str(p))
        for n, t, e, i, o, f, p in zip(
            rows["name"], rows["type"], rows["exec_type"], rows["input_shapes"],
            rows["output_shapes"], rows["fused"], precision, strict=True,
        )
    ]  # fmt: skip


def finite(values: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(values), values, 0.0)
