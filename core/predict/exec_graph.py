"""A model's executed layers without running it: OpenVINO's compiled execution graph.

``compiled_layers`` prepares the model exactly as a measurement does (the zoo model's IR
from the conversion cache, or a model file; the batch fixed; compiled for the device
with the latency hint and the precision asked for; ``core.backends``), then reads the
compiled model's execution graph: per node, its layer type after fusion, the original
layers fused into it, its primitive (exec type), runtime precision and static shapes.
That is the graph OpenVINO's performance counters report on, so a never-measured model
is described as the profiled ones are, and the runtime's own fusion decides what a
layer is. Nothing is inferred.

The graph also holds nodes that never run per inference. Constant subgraphs (weight
reorders) and reorders between layouts that hold the same bytes are left out here (the
runtime computes the first once and does the second in place); of the rest, the
predictor keeps the layer types its training profiles saw executed (no Parameter,
Result, Constant or in-place Reshape).
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
        compiled = prepared.compiled_model()  # type: ignore[attr-defined]  # an OpenVINO prepared model
        graph = _execution_graph(compiled)
        facts = _node_facts(compiled)
    finally:
        prepared.close()
    planned = []
    for name, node in graph.items():
        primitive, folded = facts.get(name, ("", False))
        if folded:
            continue
        planned.append(
            PlannedLayer(
                name=name,
                type=node.layer_type,
                exec_type=primitive,
                input_shapes=node.inputs,
                output_shapes=node.outputs,
                fused=node.fused,
                precision=node.precision,
            )  # fmt: skip
        )
    return planned


def _node_facts(compiled: Any) -> dict[str, tuple[str, bool]]:
    """Per node: its primitive (``primitiveType``: brgconv_avx512_f32, ...; the exec type
    its performance counter reports), and whether the runtime never runs it per
    inference: every input is a constant (constant subgraphs, such as weight reorders,
    are computed once, at the first inference), or it is a reorder between two plain
    layouts that hold the tensor's bytes in the same order (a 1x1 feature map in NCHW and
    NHWC: the runtime does it in place)."""
    from core.backends.openvino_backend import _rt

    found: dict[str, tuple[str, bool]] = {}
    try:
        ops = compiled.get_runtime_model().get_ordered_ops()
    except (AttributeError, RuntimeError) as exc:
        log.debug("no execution graph: %s", exc)
        return found
    for op in ops:
        info = op.get_rt_info()
        producers = [op.input_value(i) for i in range(op.get_input_size())]
        constant = bool(producers) and all(
            _rt(p.get_node().get_rt_info(), "layerType") == "Const" for p in producers
        )
        in_place = False
        if _rt(info, "layerType") == "Reorder" and len(producers) == 1:
            source = producers[0]
            layouts = _rt(source.get_node().get_rt_info(), "outputLayouts").split(",")
            index = source.get_index()
            src = layouts[index] if index < len(layouts) else ""
            dst = _rt(info, "outputLayouts").split(",")[0]
            shape = source.get_partial_shape()
            dims = [d.get_length() for d in shape] if shape.is_static else []
            in_place = same_memory_order(dims, src, dst)
        found[op.get_friendly_name()] = (_rt(info, "primitiveType"), constant or in_place)
    return found


def same_memory_order(dims: list[int], source: str, target: str) -> bool:
    """Whether a tensor of ``dims`` has its bytes in the same order in two plain layouts
    (letters a, b, c, ... naming the logical axes, outermost first: NCHW is abcd, NHWC
    acdb): the axes longer than 1 come in the same order. Blocked layouts (aBcd16b)
    reorder bytes and are never the same."""
    if not dims or not source or not target or len(source) != len(dims) or len(target) != len(dims):
        return False
    if not (source.isalpha() and source.islower() and target.isalpha() and target.islower()):
        return False
    axes = "abcdefghijklmnop"[: len(dims)]
    if sorted(source) != list(axes) or sorted(target) != list(axes):
        return False

    def order(layout: str) -> list[str]:
        return [axis for axis in layout if dims[axes.index(axis)] != 1]

    return order(source) == order(target)
