"""Model complexity: parameters, FLOPs, size, depth, layer mix, memory traffic, and the
kernels a forward pass runs, by kind.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode``, which counts 2 FLOPs per
multiply-accumulate, so ``flops == 2 * macs`` always. All figures are per image: the
module is run once on a batch of one.

The kernel census (``kernel_counts``, ``kernel_flops``, ``kernel_traffic_mb``,
``kernel_weight_mb``) comes from a ``TorchDispatchMode`` that sees every aten operator the
forward pass runs, functional ones (``torch.cat``, ``x + y`` in a residual, the multiply of
a squeeze-excitation block) included, which leaf-module hooks miss. Latency is close to a
sum over kernels, and kernels of different kinds run at very different efficiency (a
depthwise convolution does few FLOPs per byte; each launch costs host time on a GPU at
small batch), so the predictor needs the work split by kind, as nn-Meter does.

``Complexity`` itself imports only the standard library, so the zoo can hand out the
snapshot in core/resources/zoo_catalog.json where torch is not installed; ``measure_complexity``
imports torch when it is called.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.errors import DataError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

FP32_BYTES = 4
BYTES_PER_MB = 1e6

# Kinds of aten operator, in this order in the kernel_* dicts. conv is dense (groups == 1);
# depthwise has groups == input channels; grouped is any other groups. matmul holds mm,
# addmm (linear), bmm and attention; pool holds pooling and reductions (a global average
# pool runs as mean); other holds data movement (cat, copies, padding) and softmax.
# view and alloc ops launch no kernel: they cost host time only.
KERNEL_KINDS: tuple[str, ...] = (
    "conv",
    "depthwise_conv",
    "grouped_conv",
    "matmul",
    "norm",
    "pool",
    "elementwise",
    "other",
    "view",
    "alloc",
)
NO_LAUNCH_KINDS = frozenset({"view", "alloc"})

# Always present in ``layer_counts``, in this order, so tables and plots line up.
LAYER_CATEGORIES: tuple[str, ...] = (
    "conv",
    "linear",
    "batchnorm",
    "pool",
    "activation",
    "dropout",
    "other",
)


@dataclass(frozen=True, slots=True)
class Complexity:
    params: int
    flops: int  # per image; FLOPs = 2 x MACs
    macs: int
    size_mb: float  # bytes of parameters + buffers at fp32 / 1e6
    depth: int  # conv + linear layers
    layer_counts: dict[str, int] = field(default_factory=dict)
    memory_traffic_mb: float = 0.0  # per image, fp32: leaf inputs + outputs + weights
    input_size: tuple[int, int, int] = (3, 224, 224)
    # The kernel census, per image, by KERNEL_KINDS; empty when not measured (a catalogue
    # written before the census existed). Traffic is activations read + written at fp32;
    # weight traffic is the parameters and buffers each kernel reads, also fp32.
    kernel_counts: dict[str, int] = field(default_factory=dict)
    kernel_flops: dict[str, int] = field(default_factory=dict)
    kernel_traffic_mb: dict[str, float] = field(default_factory=dict)
    kernel_weight_mb: dict[str, float] = field(default_factory=dict)

    @property
    def launches(self) -> int:
        """Kernels launched per forward pass (aten operators other than views and allocs)."""
        return sum(n for kind, n in self.kernel_counts.items() if kind not in NO_LAUNCH_KINDS)

    def to_dict(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "flops": self.flops,
            "macs": self.macs,
            "size_mb": self.size_mb,
            "depth": self.depth,
            "layer_counts": {k: self.layer_counts.get(k, 0) for k in LAYER_CATEGORIES},
            "memory_traffic_mb": self.memory_traffic_mb,
            "input_size": list(self.input_size),
            "kernel_counts": _by_kind(self.kernel_counts),
            "kernel_flops": _by_kind(self.kernel_flops),
            "kernel_traffic_mb": _by_kind(self.kernel_traffic_mb),
            "kernel_weight_mb": _by_kind(self.kernel_weight_mb),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Complexity:
        try:
            counts = {str(k): int(v) for k, v in dict(d["layer_counts"]).items()}
            size = tuple(int(v) for v in d["input_size"])
            if len(size) != 3:
                raise ValueError(f"input_size has {len(size)} dimensions, expected 3 (C, H, W)")
            return cls(
                params=int(d["params"]),
                flops=int(d["flops"]),
                macs=int(d["macs"]),
                size_mb=float(d["size_mb"]),
                depth=int(d["depth"]),
                layer_counts={k: counts.get(k, 0) for k in LAYER_CATEGORIES},
                memory_traffic_mb=float(d["memory_traffic_mb"]),
                input_size=(size[0], size[1], size[2]),
                kernel_counts=_kinds_from(d, "kernel_counts", int),
                kernel_flops=_kinds_from(d, "kernel_flops", int),
                kernel_traffic_mb=_kinds_from(d, "kernel_traffic_mb", float),
                kernel_weight_mb=_kinds_from(d, "kernel_weight_mb", float),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(
                f"Invalid complexity record: {exc}.",
                "Regenerate it (python -m core.zoo.catalog --write for the zoo catalogue).",
            ) from None


def _by_kind(values: Mapping[str, Any]) -> dict[str, Any]:
    # An unmeasured census stays empty rather than becoming all zeros ("no kernels").
    return {k: values.get(k, 0) for k in KERNEL_KINDS} if values else {}


def _kinds_from(d: Mapping[str, Any], key: str, number: Callable[[Any], Any]) -> dict[str, Any]:
    raw = d.get(key)
    if not raw:
        return {}  # written before the census existed
    values = {str(k): number(v) for k, v in dict(raw).items()}
    unknown = sorted(set(values) - set(KERNEL_KINDS))
    if unknown:
        raise ValueError(f"{key} has unknown kinds {', '.join(unknown)}")
    return {k: values.get(k, number(0)) for k in KERNEL_KINDS}


def layer_category(module: Any) -> str:
    """The category of one leaf module, by class name.

    Names rather than isinstance so that TorchScript modules (whose type is
    RecursiveScriptModule but which keep ``original_name``) are classified the same way.
    """
    name = str(getattr(module, "original_name", "") or type(module).__name__)
    if name.startswith(("Conv", "LazyConv")):
        return "conv"
    if name in {"Linear", "LazyLinear", "Bilinear", "NonDynamicallyQuantizableLinear"}:
        return "linear"
    if "BatchNorm" in name:
        return "batchnorm"
    if "Pool" in name:
        return "pool"
    if "Dropout" in name or name == "StochasticDepth":
        return "dropout"
    if name in _ACTIVATIONS:
        return "activation"
    return "other"


_ACTIVATIONS = frozenset(
    {
        "ReLU", "ReLU6", "LeakyReLU", "PReLU", "RReLU", "ELU", "SELU", "CELU", "GELU",
        "SiLU", "Mish", "Hardswish", "Hardsigmoid", "Hardtanh", "Hardshrink", "Sigmoid",
        "LogSigmoid", "Tanh", "Tanhshrink", "Softplus", "Softshrink", "Softsign",
        "Softmax", "Softmax2d", "LogSoftmax", "Softmin", "Threshold", "GLU",
    }
)  # fmt: skip


# aten operator names (overload packets) by kind. Names, not objects, so that this module
# imports without torch; anything unlisted is classified by its tags or falls in "other".
_CONV_OPS = frozenset(
    {
        "convolution", "_convolution", "convolution_overrideable", "cudnn_convolution",
        "mkldnn_convolution", "_slow_conv2d_forward", "slow_conv3d_forward",
        "_conv_depthwise2d", "conv_depthwise3d", "_mps_convolution",
    }
)  # fmt: skip
_MATMUL_OPS = frozenset(
    {
        "mm", "addmm", "bmm", "baddbmm", "_scaled_mm", "_int_mm",
        "_flash_attention_forward", "_efficient_attention_forward",
    }
)  # fmt: skip
_NORM_OPS = frozenset(
    {
        "native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_no_training",
        "cudnn_batch_norm", "miopen_batch_norm", "native_layer_norm", "native_group_norm",
        "_fused_rms_norm", "_batch_norm_with_update", "_batch_norm_no_update",
    }
)  # fmt: skip
# Activations whose aten schema lacks the pointwise tag.
_POINTWISE_OPS = frozenset({"hardswish", "mish", "softplus", "elu", "leaky_relu", "prelu"})
_NO_KERNEL_VIEWS = frozenset({"_unsafe_view", "alias", "detach", "lift_fresh"})
_ALLOC_OPS = frozenset(
    {"empty", "empty_strided", "empty_like", "new_empty", "new_empty_strided"}
)  # fmt: skip


def kernel_kind(func: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
    """The KERNEL_KINDS entry of one aten operator call (an ``OpOverload`` and its args)."""
    import torch

    name = func._overloadpacket.__name__
    if func.is_view or name in _NO_KERNEL_VIEWS:
        return "view"
    if name in _ALLOC_OPS:
        return "alloc"
    if name in _CONV_OPS:
        if name.startswith(("_conv_depthwise", "conv_depthwise")):
            return "depthwise_conv"
        groups = args[8] if len(args) > 8 else kwargs.get("groups", 1)
        if int(groups) == 1:
            return "conv"
        weight = args[1] if len(args) > 1 else kwargs.get("weight")
        # One input channel per group: a depthwise conv (any channel multiplier).
        if isinstance(weight, torch.Tensor) and weight.dim() > 1 and weight.shape[1] == 1:
            return "depthwise_conv"
        return "grouped_conv"
    if name in _MATMUL_OPS or name.startswith("_scaled_dot_product"):
        return "matmul"
    if name in _NORM_OPS:
        return "norm"
    if "pool" in name or torch.Tag.reduction in func.tags:
        return "pool"
    if torch.Tag.pointwise in func.tags or _pointwise_name(name.rstrip("_")):
        return "elementwise"
    return "other"


@functools.lru_cache(maxsize=256)
def _pointwise_name(base: str) -> bool:
    """Whether the out-of-place op ``base`` (relu for relu_) is pointwise."""
    import torch

    if base in _POINTWISE_OPS:
        return True
    packet = getattr(torch.ops.aten, base, None)
    if packet is None:
        return False
    return any(torch.Tag.pointwise in getattr(packet, o).tags for o in packet.overloads())


def _census_mode(weights: list[Any]) -> Any:
    """A dispatch mode that records every aten call's kind, FLOPs and tensor traffic.

    ``weights`` are the module's parameters and buffers: elements read from them (or from
    a view of them, such as the transposed weight a Linear passes to addmm) count as
    weight traffic, read once per batch; everything else is activation traffic, which
    grows with the batch.
    """
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry

    class KernelCensus(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.counts = dict.fromkeys(KERNEL_KINDS, 0)
            self.flops = dict.fromkeys(KERNEL_KINDS, 0)
            self.activation_elements = dict.fromkeys(KERNEL_KINDS, 0)
            self.weight_elements = dict.fromkeys(KERNEL_KINDS, 0)
            # Kept alive so that an id is never reused by another tensor during the pass.
            self._weights = list(weights)
            self._weight_ids = {id(t) for t in self._weights}

        def __torch_dispatch__(
            self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
        ) -> Any:
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            # Metadata queries (prim.device, sizes) return no tensor and run no kernel.
            if not isinstance(func, torch._ops.OpOverload) or not _tensors(out):
                return out
            kind = kernel_kind(func, args, kwargs)
            self.counts[kind] += 1
            inputs = [*_tensors(args), *_tensors(kwargs)]
            if kind == "view":
                if any(id(t) in self._weight_ids for t in inputs):
                    self._weights.extend(_tensors(out))
                    self._weight_ids.update(id(t) for t in _tensors(out))
                return out
            packet = func._overloadpacket
            if packet in flop_registry:
                self.flops[kind] += int(flop_registry[packet](*args, **kwargs, out_val=out))
            if kind == "alloc":
                return out
            for tensor in inputs:
                if id(tensor) in self._weight_ids:
                    self.weight_elements[kind] += tensor.numel()
                else:
                    self.activation_elements[kind] += tensor.numel()
            # Of a tuple, only the result: the rest are by-products (batch-norm statistics,
            # pooling indices) whose size even differs between the CPU and meta kernels.
            primary = out[0] if isinstance(out, tuple) and out else out
            self.activation_elements[kind] += sum(t.numel() for t in _tensors(primary))
            return out

    return KernelCensus()


def _tensors(value: Any) -> list[Any]:
    """Every tensor inside ``value`` (a tensor, or nested tuples/lists/dicts)."""
    import torch

    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    return []


def _tensor_elements(value: Any) -> int:
    """Elements in every tensor inside ``value`` (a tensor, or nested tuples/lists/dicts)."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.numel()
    if isinstance(value, (list, tuple)):
        return sum(_tensor_elements(v) for v in value)
    if isinstance(value, dict):
        return sum(_tensor_elements(v) for v in value.values())
    return 0


@contextmanager
def _eval_mode(module: torch.nn.Module) -> Iterator[None]:
    """Inference mode for the count, then each submodule's own mode back."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def _input_for(module: torch.nn.Module, input_size: tuple[int, int, int]) -> torch.Tensor:
    import torch

    for tensor in (*module.parameters(), *module.buffers()):
        dtype = tensor.dtype if tensor.is_floating_point() else torch.float32
        return torch.zeros((1, *input_size), dtype=dtype, device=tensor.device)
    return torch.zeros((1, *input_size), dtype=torch.float32)


def measure_complexity(module: torch.nn.Module, input_size: tuple[int, int, int]) -> Complexity:
    """Count the complexity of ``module`` for one image of ``input_size`` (C, H, W).

    Works on a module whose tensors live on the meta device (no memory, no compute; the
    zoo builds its catalogue that way), on CPU or on an accelerator.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    if len(input_size) != 3 or any(int(v) <= 0 for v in input_size):
        raise DataError(
            f"Invalid input size {tuple(input_size)!r}.", "Give it as (channels, height, width)."
        )
    input_size = (int(input_size[0]), int(input_size[1]), int(input_size[2]))

    tensors = [*module.parameters(), *module.buffers()]
    params = sum(p.numel() for p in module.parameters())
    size_mb = sum(t.numel() for t in tensors) * FP32_BYTES / BYTES_PER_MB

    counts = dict.fromkeys(LAYER_CATEGORIES, 0)
    leaves = [m for _, m in module.named_modules() if next(m.children(), None) is None]
    for leaf in leaves:
        counts[layer_category(leaf)] += 1

    traffic_elements = 0

    def count_traffic(leaf: torch.nn.Module, inputs: Any, output: Any) -> None:
        nonlocal traffic_elements
        own = [*leaf.parameters(recurse=False), *leaf.buffers(recurse=False)]
        traffic_elements += (
            _tensor_elements(inputs) + _tensor_elements(output) + sum(t.numel() for t in own)
        )

    handles = []
    hooked = True
    try:
        for leaf in leaves:
            handles.append(leaf.register_forward_hook(count_traffic))
    except RuntimeError:
        hooked = False
        # ScriptModules refuse Python hooks; fall back to weights plus the model's own
        # input and output, which under-counts the activations in between.
        log.debug("forward hooks unsupported on %s; memory traffic is a lower bound", module)
        for handle in handles:
            handle.remove()
        handles = []

    x = _input_for(module, input_size)
    census = _census_mode(tensors)
    try:
        # The census is entered first, so it sits below the FLOP counter: it sees the
        # operators the counter has decomposed to, the ones the counter's total is made of.
        with _eval_mode(module), torch.no_grad(), census, FlopCounterMode(display=False) as counter:
            output = module(x)
    finally:
        for handle in handles:
            handle.remove()
    if not hooked:
        traffic_elements = x.numel() + _tensor_elements(output) + sum(t.numel() for t in tensors)

    flops = int(counter.get_total_flops())
    return Complexity(
        params=params,
        flops=flops,
        macs=flops // 2,
        size_mb=size_mb,
        depth=counts["conv"] + counts["linear"],
        layer_counts=counts,
        memory_traffic_mb=traffic_elements * FP32_BYTES / BYTES_PER_MB,
        input_size=input_size,
        kernel_counts=dict(census.counts),
        kernel_flops=dict(census.flops),
        kernel_traffic_mb=_megabytes(census.activation_elements),
        kernel_weight_mb=_megabytes(census.weight_elements),
    )


def _megabytes(elements: Mapping[str, int]) -> dict[str, float]:
    return {kind: n * FP32_BYTES / BYTES_PER_MB for kind, n in elements.items()}
