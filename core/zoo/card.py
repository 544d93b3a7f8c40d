"""``ModelCard``: what the zoo knows of a model before anything is built.

Published figures (torchvision's weight metadata) for a zoo model; the input shape and
format for a model file, whose published figures are unknown (None).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

SOURCES = ("torchvision", "onnx", "openvino-ir", "torchscript")


@dataclass(frozen=True, slots=True)
class ModelCard:
    name: str
    family: str  # e.g. "resnet", "vgg", "mobilenet", "densenet"
    input_size: tuple[int, int, int]  # (C, H, W)
    params: int | None  # published num_params (torchvision meta)
    acc1: float | None  # ImageNet-1K acc@1 %, reference
    acc5: float | None
    gmacs: float | None  # published _ops: GMACs per image, rounded to 3 decimals
    file_size_mb: float | None  # published _file_size
    source: str  # "torchvision" | "onnx" | "openvino-ir" | "torchscript"
    path: str | None = None  # absolute path, for file models
    notes: str = ""
    # The eval transform of the weights the published accuracy belongs to: resize (shorter
    # side), crop, interpolation, mean, std. None: not known (model files).
    preprocessing: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def flops_published(self) -> int | None:
        """Published FLOPs per image (2 x MACs); carries the 3-decimal rounding of _ops."""
        return None if self.gmacs is None else round(2 * self.gmacs * 1e9)

    @property
    def is_file(self) -> bool:
        return self.path is not None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelCard:
        size = tuple(int(v) for v in d["input_size"])
        if len(size) != 3:
            raise ValueError(f"input_size {size!r} is not (C, H, W)")
        return cls(
            name=str(d["name"]),
            family=str(d["family"]),
            input_size=(size[0], size[1], size[2]),
            params=_opt(int, d.get("params")),
            acc1=_opt(float, d.get("acc1")),
            acc5=_opt(float, d.get("acc5")),
            gmacs=_opt(float, d.get("gmacs")),
            file_size_mb=_opt(float, d.get("file_size_mb")),
            source=str(d["source"]),
            path=_opt(str, d.get("path")),
            notes=str(d.get("notes", "")),
            preprocessing=dict(d["preprocessing"]) if isinstance(d.get("preprocessing"), Mapping) else None,
        )


def _opt(kind: type, value: Any) -> Any:
    return None if value is None else kind(value)
