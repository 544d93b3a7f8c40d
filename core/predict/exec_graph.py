"""A model's executed layers without running it: OpenVINO's compiled execution graph.

``compiled_layers`` prepares the model exactly as a measurement does (the zoo model's IR
from the conversion cache, or a model file; the batch fixed; compiled for the device
with the latency hint and the precision asked for; ``core.backends``), then reads the
compiled model's execution graph: per node, its layer type after fusion, the original
layers fused into it, its primitive (exec type), runtime precision and static shapes.
That is the graph OpenVINO's performance counters report on, so a never-measured model
is described as the profiled ones are, and the runtime's own fusion decides what a
layer is. Nothing is inferred.

The graph also holds nodes that never run (Parameter, Result, Constant, in-place
reshapes): the predictor keeps the layer types its training profiles saw executed.
OpenVINO is imported when a model is compiled, never at import.
"""

from __future__ import annotations

import logging
from typing import Any

from core.predict.layers import PlannedLayer

log = logging.getLogger(__name__)


def compiled_layers(
    model: str, batch_size: int, device: str = "CPU", precision: str = "fp32"
) -> list[PlannedLayer]:
    """The nodes of ``model``'s compiled execution graph at ``batch_size``, in execution
    order, as planned layers (type, exec type, shapes, fused names, precision).

    ``model`` is a zoo name (its IR comes from the conversion cache, converted first if
    needed) or a model file (.onnx, .xml). Raises the backends' errors (OpenVINO
    missing, a precision the device lacks, a model file it cannot read)."""
    from core.backends import get_backend
    from core.backends.base import ModelSource
    from core.backends.openvino_backend import _execution_graph
    from core.results import Backend, Case, parse_precision

    case = Case(model, Backend.OPENVINO, device, parse_precision(precision), int(batch_size))
    prepared = get_backend(Backend.OPENVINO).prepare(case, ModelSource(model))
    try:
        # The prepared model's own compiled model: the very compile the timed loop uses
        # (the profiled pass compiles the same model again, adding only PERF_COUNT).
        compiled = prepared._compiled  # type: ignore[attr-defined]  # noqa: SLF001
        graph = _execution_graph(compiled)
        primitives = _primitive_types(compiled)
    finally:
        prepared.close()
    return [
        PlannedLayer(
            name=name, type=node.layer_type, exec_type=primitives.get(name, ""),
            input_shapes=node.inputs, output_shapes=node.outputs, fused=node.fused,
            precision=node.precision,
        )  # fmt: skip
        for name, node in graph.items()
    ]


def _primitive_types(compiled: Any) -> dict[str, str]:
    """Each node's primitive (``primitiveType``: brgconv_avx512_f32, jit_avx512_f32, ...),
    the exec type its performance counter reports."""
    from core.backends.openvino_backend import _rt

    found: dict[str, str] = {}
    try:
        ops = compiled.get_runtime_model().get_ordered_ops()
    except (AttributeError, RuntimeError) as exc:
        log.debug("no execution graph: %s", exc)
        return found
    for op in ops:
        found[op.get_friendly_name()] = _rt(op.get_rt_info(), "primitiveType")
    return found
