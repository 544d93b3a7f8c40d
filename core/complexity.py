"""Model complexity: parameters, FLOPs, size, depth, layer mix and memory traffic.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode``, which counts 2 FLOPs per
multiply-accumulate, so ``flops == 2 * macs`` always. All figures are per image: the
module is run once on a batch of one.

``Complexity`` itself imports only the standard library, so the zoo can hand out the
snapshot in resources/zoo_catalog.json where torch is not installed; ``measure_complexity``
imports torch when it is called.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.errors import DataError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

FP32_BYTES = 4
BYTES_PER_MB = 1e6

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
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(
                f"Invalid complexity record: {exc}.",
                "Regenerate it (python -m core.zoo.catalog --write for the zoo catalogue).",
            ) from None


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
    try:
        with _eval_mode(module), torch.no_grad(), FlopCounterMode(display=False) as counter:
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
    )
