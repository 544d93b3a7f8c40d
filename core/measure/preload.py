"""What a fork server imports before it forks, by preload set (one per backend, and one
for conversions). An exec'd worker imports the same before it measures, so both take
their baseline RSS after the same imports. Shared by core.measure.zygote and
core.measure.worker; Python 3.10 compatible like them.
"""

from __future__ import annotations

from typing import Any

# Preload sets, by key. The backend implementation modules are preloaded with their
# framework, so a child starts with nothing left to import but the model.
PRELOAD: dict[str, tuple[str, ...]] = {
    "torch": ("torch", "torchvision", "core.backends.torch_backend"),
    "openvino": ("openvino", "core.backends.openvino_backend"),
    # onnxruntime starts a thread at import: its children import it themselves.
    "onnxruntime": ("numpy", "core.backends.convert"),
    # Conversions: torch models to IR / ONNX.
    "convert": (
        "torch", "torchvision", "openvino", "core.backends.convert",
        "core.backends.openvino_backend",
    ),  # fmt: skip
    "none": (),  # imports backbench's worker only (tests)
}
ALWAYS = ("numpy", "core.measure.worker", "core.backends")


def preload_key(backend: Any, convert: bool = False) -> str:
    """The preload set a case of ``backend`` (a core.results.Backend or its value) uses,
    or its conversion's with ``convert``. No core.results import here: the zygote reads
    this module before it may import numpy."""
    return "convert" if convert else str(getattr(backend, "value", backend))
