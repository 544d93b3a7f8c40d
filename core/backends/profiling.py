"""Per-layer profiles: what the framework executed, layer by layer, and how long each
took, from its own profiler (OpenVINO's performance counters, torch.profiler, ONNX
Runtime's node profiling).

A profile is taken in a pass of its own after the timed loop, so the headline figures
never carry the profiler. Each backend's prepared model has ``profile_layers(budget)``;
this module holds what they share: the run loop, FLOPs and bytes derived from shapes,
and the median per layer. Python 3.10 compatible (a worker on the NCS2 host runs it).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from core.results import LayerProfile, LayerRecord

# How many profiled iterations, within how long: enough for a stable median per layer,
# never minutes on a slow device.
PROFILE_ITERATIONS = 20
PROFILE_MIN_ITERATIONS = 3
PROFILE_BUDGET_S = 5.0
PROFILE_WARMUP = 2

Shape = tuple[int, ...]

BYTES_PER_ELEMENT = {
    "f32": 4, "fp32": 4, "float": 4, "float32": 4, "i32": 4, "int32": 4,
    "bf16": 2, "f16": 2, "fp16": 2, "float16": 2, "bfloat16": 2,
    "i64": 8, "int64": 8, "f64": 8, "double": 8, "u8": 1, "i8": 1, "uint8": 1, "int8": 1,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class RawLayer:
    """One layer as the profiler saw it in one iteration, before the median."""

    name: str
    type: str
    exec_type: str
    time_ms: float
    input_shapes: tuple[Shape, ...] = ()
    output_shapes: tuple[Shape, ...] = ()
    flops: int | None = None
    fused: tuple[str, ...] = ()
    precision: str = ""


def run_profiled(
    iterate: Callable[[], tuple[float, list[RawLayer]]],
    *,
    iterations: int = PROFILE_ITERATIONS,
    budget_s: float = PROFILE_BUDGET_S,
) -> tuple[list[list[RawLayer]], list[float]]:
    """Call ``iterate`` (one profiled inference: its end-to-end ms and its layers) after
    ``PROFILE_WARMUP`` unrecorded calls, up to ``iterations`` times or until the budget
    is spent (never fewer than PROFILE_MIN_ITERATIONS)."""
    for _ in range(PROFILE_WARMUP):
        iterate()
    runs: list[list[RawLayer]] = []
    totals: list[float] = []
    start = time.monotonic()
    while len(runs) < iterations and (len(runs) < PROFILE_MIN_ITERATIONS or time.monotonic() - start < budget_s):
        total_ms, layers = iterate()
        runs.append(layers)
        totals.append(total_ms)
    return runs, totals


def median_profile(
    runs: Sequence[Sequence[RawLayer]], totals: Sequence[float], source: str, *, element_bytes: int = 4
) -> LayerProfile:
    """One record per layer, in execution order, with its median time over the runs.
    Layers are matched across runs by name and position (torch names repeat)."""
    if not runs:
        return LayerProfile(iterations=0, layers=(), profiled_median_ms=None, source=source)
    order: list[tuple[str, int]] = []
    times: dict[tuple[str, int], list[float]] = {}
    first: dict[tuple[str, int], RawLayer] = {}
    for layers in runs:
        seen: dict[str, int] = {}
        for layer in layers:
            k = seen.get(layer.name, 0)
            seen[layer.name] = k + 1
            key = (layer.name, k)
            if key not in times:
                order.append(key)
                times[key] = []
                first[key] = layer
            times[key].append(layer.time_ms)
    records = []
    for key in order:
        layer = first[key]
        size = BYTES_PER_ELEMENT.get(layer.precision.lower(), element_bytes) if layer.precision else element_bytes
        records.append(
            LayerRecord(
                name=layer.name, type=layer.type, exec_type=layer.exec_type,
                time_ms=float(statistics.median(times[key])),
                input_shapes=layer.input_shapes, output_shapes=layer.output_shapes,
                flops=layer.flops if layer.flops is not None else derive_flops(layer.type, layer.input_shapes, layer.output_shapes),
                bytes=traffic_bytes(layer.input_shapes, layer.output_shapes, size),
                fused=layer.fused, precision=layer.precision,
            )  # fmt: skip
        )
    return LayerProfile(
        iterations=len(runs), layers=tuple(records),
        profiled_median_ms=float(statistics.median(totals)) if totals else None, source=source,
    )  # fmt: skip


def _prod(shape: Iterable[int]) -> int:
    return int(math.prod(int(d) for d in shape)) if shape else 0


def traffic_bytes(inputs: Sequence[Shape], outputs: Sequence[Shape], element_bytes: int) -> int | None:
    """Bytes the layer reads and writes (its inputs, weights included, and outputs)."""
    if not inputs and not outputs:
        return None
    return (sum(_prod(s) for s in inputs) + sum(_prod(s) for s in outputs)) * element_bytes


_CONV = ("convolution", "conv", "aten::conv2d", "aten::convolution", "aten::_convolution",
         "groupconvolution", "fusedconv", "nhwcfusedconv")  # fmt: skip
_MATMUL = ("fullyconnected", "matmul", "gemm", "innerproduct", "aten::linear", "aten::addmm",
           "aten::mm", "aten::matmul", "fusedmatmul")  # fmt: skip


def derive_flops(kind: str, inputs: Sequence[Shape], outputs: Sequence[Shape]) -> int | None:
    """FLOPs (2 per multiply-add) of a convolution or a matrix product, from the shapes
    where they say it; None for other layers (their work is not a product count).

    The shapes are those of the kernel that ran: ONNX Runtime's NCHWc convolutions pad
    the channels to blocks of 8 or 16, and their FLOPs count the padding, which the
    kernel computes too."""
    name = kind.lower()
    if name in _CONV and len(inputs) >= 2 and outputs:
        weights = inputs[1]
        out = outputs[0]
        if len(weights) == 5:  # OpenVINO's grouped layout: [groups, out/g, in/g, kh, kw]
            per_output = _prod(weights[2:])
        elif len(weights) >= 3:
            per_output = _prod(weights[1:])
        else:
            return None
        return 2 * _prod(out) * per_output
    if name in _MATMUL and inputs and outputs and inputs[0]:
        # Each output element is a dot product over the first input's last axis (ORT
        # lists only the activations of a Gemm whose weights are initializers).
        return 2 * _prod(outputs[0]) * int(inputs[0][-1])
    return None


def shapes_of(values: Iterable[Any]) -> tuple[Shape, ...]:
    """Shapes as tuples of ints; a dynamic or unknown one is left out."""
    found = []
    for value in values:
        try:
            found.append(tuple(int(d) for d in value))
        except (TypeError, ValueError):
            continue
    return tuple(found)
