"""torchvision classification models: cards from the live metadata, and builders.

Everything here imports torch and torchvision; the registry stays importable without
them. Models are always built with ``weights=None`` (nothing is downloaded); real weights
come from a local state-dict file, read with ``torch.load(weights_only=True)`` so a file
can never run code.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torchvision.models as tvm
from torch import nn

from core.errors import (
    DeviceUnavailableError,
    ModelFileError,
    UnknownModelError,
    UsageError,
)
from core.zoo import files
from core.zoo.card import ModelCard
from core.zoo.registry import check_zoo_name

log = logging.getLogger(__name__)

DEFAULT_SIDE = 224

# Longest prefix first where one name starts another (wide_resnet before resnet).
_FAMILY_PREFIXES: tuple[tuple[str, str], ...] = (
    ("wide_resnet", "wide_resnet"),
    ("resnext", "resnext"),
    ("resnet", "resnet"),
    ("alexnet", "alexnet"),
    ("vgg", "vgg"),
    ("squeezenet", "squeezenet"),
    ("densenet", "densenet"),
    ("googlenet", "googlenet"),
    ("inception", "inception"),
    ("shufflenet", "shufflenet"),
    ("mobilenet", "mobilenet"),
    ("mnasnet", "mnasnet"),
    ("efficientnet", "efficientnet"),
    ("regnet", "regnet"),
    ("convnext", "convnext"),
    ("maxvit", "maxvit"),
    ("vit", "vit"),
    ("swin", "swin"),
)

# Auxiliary classifiers exist only for training; the inference build drops them, and
# their keys in a full checkpoint (torchvision's own files have them) are ignored.
AUX_HEAD_PREFIXES: dict[str, tuple[str, ...]] = {
    "googlenet": ("aux1.", "aux2."),
    "inception_v3": ("AuxLogits.",),
}

_NOTES: dict[str, str] = {
    "inception_v3": (
        "torchvision's published num_params include the auxiliary classifier (AuxLogits), "
        "which runs only in training; backbench builds the inference model "
        "(aux_logits=False), so its measured parameter count is lower by the aux head's. "
        "The published _ops already exclude it."
    ),
}


def torchvision_names() -> list[str]:
    """Every torchvision classification model (not detection, segmentation, video...)."""
    return sorted(tvm.list_models(module=tvm))


def family_of(name: str) -> str:
    for prefix, family in _FAMILY_PREFIXES:
        if name.startswith(prefix):
            return family
    return name.split("_")[0].rstrip("0123456789") or name


def _default_weights(name: str) -> Any:
    return tvm.get_model_weights(name).DEFAULT


def _input_side(weights: Any) -> tuple[int, int]:
    """(H, W) the DEFAULT weights were evaluated at: their eval crop, never below min_size."""
    min_h, min_w = weights.meta.get("min_size", (1, 1))
    crop = getattr(weights.transforms(), "crop_size", None) or [DEFAULT_SIDE]
    h, w = (int(crop[0]), int(crop[-1]))
    return max(h, int(min_h)), max(w, int(min_w))


def card_from_torchvision(name: str) -> ModelCard:
    """The card built from the installed torchvision's DEFAULT weight metadata."""
    weights = _default_weights(name)
    meta = weights.meta
    metrics = meta.get("_metrics", {}).get("ImageNet-1K", {})
    h, w = _input_side(weights)
    notes = f"Published figures are those of {type(weights).__name__}.{weights.name}."
    if name in _NOTES:
        notes = f"{notes} {_NOTES[name]}"
    return ModelCard(
        name=name,
        family=family_of(name),
        input_size=(3, h, w),
        params=meta.get("num_params"),
        acc1=metrics.get("acc@1"),
        acc5=metrics.get("acc@5"),
        gmacs=meta.get("_ops"),
        file_size_mb=meta.get("_file_size"),
        source="torchvision",
        notes=notes,
        preprocessing=eval_preprocessing(weights),
    )


def eval_preprocessing(weights: Any) -> dict[str, Any]:
    """The weights' own eval transform (torchvision's ImageClassification preset), as plain
    data a worker without torchvision can apply (core.measure.preprocess)."""
    transform = weights.transforms()
    interpolation = getattr(transform, "interpolation", None)
    return {
        "resize": int(transform.resize_size[0]),
        "crop": int(transform.crop_size[0]),
        "interpolation": str(getattr(interpolation, "value", interpolation or "bilinear")),
        "mean": [float(v) for v in transform.mean],
        "std": [float(v) for v in transform.std],
    }


def builder_kwargs(name: str, *, random_init: bool = True) -> dict[str, Any]:
    """The keyword arguments torchvision's builder sets itself when it loads the DEFAULT
    weights, so that a ``weights=None`` build has the same architecture and input size."""
    kwargs: dict[str, Any] = {}
    if name in AUX_HEAD_PREFIXES:
        # Explicit init_weights: leaving it None raises a FutureWarning in torchvision.
        kwargs.update(aux_logits=False, transform_input=True, init_weights=random_init)
    family = family_of(name)
    if family == "vit":
        kwargs["image_size"] = int(_default_weights(name).meta["min_size"][0])
    elif family == "maxvit":
        kwargs["input_size"] = tuple(int(v) for v in _default_weights(name).meta["min_size"])
    return kwargs


@contextmanager
def _tensors_on_meta() -> Iterator[None]:
    """Move every parameter and buffer to the meta device as modules register them.

    ``with torch.device("meta")`` would be simpler but breaks builders that compute with
    tensors while constructing (regnet calls .tolist()). Construction still runs on the
    CPU, but the initialisers then touch meta tensors only: no memory, no time.
    Not thread-safe: it patches nn.Module for the duration.
    """
    register_parameter = nn.Module.register_parameter
    register_buffer = nn.Module.register_buffer

    def parameter_on_meta(self: nn.Module, name: str, param: nn.Parameter | None) -> None:
        if param is not None and param.device.type != "meta":
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register_parameter(self, name, param)

    def buffer_on_meta(
        self: nn.Module, name: str, tensor: torch.Tensor | None, persistent: bool = True
    ) -> None:
        if tensor is not None:
            tensor = tensor.to("meta")
        register_buffer(self, name, tensor, persistent)

    nn.Module.register_parameter = parameter_on_meta  # type: ignore[method-assign]
    nn.Module.register_buffer = buffer_on_meta  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter = register_parameter  # type: ignore[method-assign]
        nn.Module.register_buffer = register_buffer  # type: ignore[method-assign]


def build_on_meta(name: str) -> nn.Module:
    """The inference model with every tensor on the meta device, for counting."""
    with _tensors_on_meta():
        model = tvm.get_model(name, weights=None, **builder_kwargs(name))
    return model.eval()


def _canonical_name(name: str) -> str:
    if files.is_model_file(name):
        raise UsageError(
            f"{name} is a model file, not a zoo model.",
            "Load TorchScript with load_torchscript(); run .onnx/.xml files with their backend.",
        )
    try:
        return check_zoo_name(name)
    except UnknownModelError:
        if name in tvm.list_models(module=tvm):
            log.warning("%s is not in the zoo catalogue; regenerate it", name)
            return name
        raise


def _target_device(device: str | None) -> torch.device:
    try:
        target = torch.device(device or "cpu")
    except (RuntimeError, TypeError) as exc:
        raise UsageError(f"Invalid device {device!r}: {exc}.", "Use cpu, cuda or cuda:N.") from None
    if target.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceUnavailableError(
                "torch sees no CUDA GPU here.",
                "Use device cpu, or install a CUDA build of torch and check the driver (nvidia-smi).",
            )
        if target.index is not None and target.index >= count:
            raise DeviceUnavailableError(
                f"There is no {target}: torch sees {count} CUDA device(s).",
                f"Use cuda:0 to cuda:{count - 1}.",
            )
    return target


def _is_tensor_mapping(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def load_state_dict_file(path: str | os.PathLike[str]) -> tuple[Path, dict[str, torch.Tensor]]:
    """Read a state dict safely: ``torch.load(weights_only=True)``, on the CPU.

    Accepts a bare state dict, a checkpoint holding one under "state_dict",
    "model_state_dict" or "model", and DataParallel's "module." prefixes.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise ModelFileError(
            f"Weights file not found: {p}.",
            "Check the path, or leave the weights out to measure with random weights.",
        )
    if not p.is_file():
        raise ModelFileError(f"{p} is not a file.", "Give the path of the weights file itself.")
    p = p.resolve()
    try:
        obj = torch.load(p, weights_only=True, map_location="cpu")
    except Exception as exc:  # torch.load raises many types for a bad file
        text = str(exc)
        if "TorchScript" in text:
            raise ModelFileError(
                f"{p} is a TorchScript model, not a weights file.",
                "Give it as the model to measure (a .pt model file), not as weights.",
            ) from None
        if isinstance(exc, pickle.UnpicklingError) and (
            "Weights only load failed" in text or "GLOBAL" in text
        ):
            raise _not_a_plain_state_dict(p, text) from None
        raise _corrupt(p, exc) from None
    return p, _unwrap_state_dict(p, obj)


# torch's advice on a file its safe loader refused (load it with weights_only=False, or
# allowlist its classes) makes the load run the file's code: never passed on to a user.
_UNSAFE_ADVICE = re.compile(r"weights_only|safe_globals|allowlist|trust", re.IGNORECASE)
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def _not_a_plain_state_dict(p: Path, torch_text: str) -> ModelFileError:
    """A pickle that holds Python objects besides tensors (a whole pickled model, or a
    checkpoint with objects in it): refused, with how to save a plain state dict."""
    found = re.search(r"GLOBAL (\S+)", torch_text) or re.search(
        r"got <class '([^']+)'>", torch_text
    )
    held = "Python objects besides tensors"
    if found is not None:
        name = found.group(1).rstrip(".,")
        held = (
            f"a whole pickled model ({name})"
            if name.startswith("torch.nn.modules.")
            else f"Python objects besides tensors ({name})"
        )
    return ModelFileError(
        f"{p} is not a plain state dict: it holds {held}, and backbench refuses to unpickle "
        "it because loading such a file can run arbitrary code.",
        "Re-save just the weights where the file was made: torch.save(model.state_dict(), path).",
    )


def _safe_reason(exc: BaseException) -> str:
    """The first sentence of torch's message that is not advice to load unsafely."""
    text = _ANSI_ESCAPE.sub("", str(exc))
    for line in text.splitlines():
        for sentence in re.split(r"(?<=[.!?])\s+", line.strip()):
            if (
                sentence
                and not _UNSAFE_ADVICE.search(sentence)
                and sentence != "Weights only load failed."
            ):
                return sentence.rstrip(".")
    return type(exc).__name__


def _corrupt(p: Path, exc: BaseException) -> ModelFileError:
    return ModelFileError(
        f"{p} is not a readable PyTorch weights file ({_safe_reason(exc)}).",
        "Check that the copy is complete, or re-save it with torch.save(model.state_dict(), path).",
    )


def _unwrap_state_dict(p: Path, obj: Any) -> dict[str, torch.Tensor]:
    if not _is_tensor_mapping(obj) and isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            if _is_tensor_mapping(obj.get(key)):
                obj = obj[key]
                break
    if not _is_tensor_mapping(obj):
        if not isinstance(obj, Mapping):
            held = f"a {type(obj).__name__}"
        elif not obj:
            held = "an empty mapping"
        else:
            held = "a mapping whose values are not all tensors"
        raise ModelFileError(
            f"{p} does not hold a state dict (parameter names mapped to tensors); it holds {held}.",
            "Save the weights with torch.save(model.state_dict(), path).",
        )
    metadata = getattr(obj, "_metadata", None)
    state: OrderedDict[str, torch.Tensor] = OrderedDict(obj.items())
    prefix = "module."  # nn.DataParallel's wrapper
    if all(k.startswith(prefix) for k in state):
        state = OrderedDict((k.removeprefix(prefix), v) for k, v in state.items())
        if metadata is not None:
            metadata = {k.removeprefix(prefix): v for k, v in metadata.items()}
    if metadata is not None:
        state._metadata = metadata  # type: ignore[attr-defined]
    return state


def _listing(keys: list[str], what: str) -> str:
    shown = ", ".join(keys[:5]) + (", ..." if len(keys) > 5 else "")
    return f"{len(keys)} {what} ({shown})"


def _head_classes(
    expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor], mismatched: list[str]
) -> tuple[int, int] | None:
    """(classes in the file, classes built) when the only mismatch is the classifier's
    output size: the model's last weight and bias, differing in their first dimension."""
    last = list(expected)[-2:]
    if not mismatched or not set(mismatched) <= set(last):
        return None
    for key in mismatched:
        if tuple(state[key].shape[1:]) != tuple(expected[key].shape[1:]):
            return None
    key = mismatched[0]
    return int(state[key].shape[0]), int(expected[key].shape[0])


def _apply_state_dict(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    name: str,
    path: Path,
    num_classes: int | None = None,
) -> None:
    aux = AUX_HEAD_PREFIXES.get(name)
    if aux:
        kept = OrderedDict((k, v) for k, v in state.items() if not k.startswith(aux))
        if hasattr(state, "_metadata"):
            kept._metadata = state._metadata  # type: ignore[attr-defined]
        state = kept
    expected = model.state_dict()
    # Checkpoints from before BatchNorm tracked batches lack these; torch fills them in.
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    head_keys = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    classes = None if missing or unexpected else _head_classes(expected, state, head_keys)
    if classes is not None:
        in_file, built = classes
        raise ModelFileError(
            f"{path} has a classifier head of {in_file} classes, but {name} was built for "
            f"{built}{'' if num_classes else ' (its default)'}.",
            f"Give --num-classes {in_file} to build {name} with the weights' head.",
        )
    problems = [
        _listing(keys, what)
        for keys, what in (
            (missing, "missing keys"),
            (unexpected, "unexpected keys"),
            (mismatched, "shape mismatches"),
        )
        if keys
    ]
    hint = (
        f"Give a state dict saved from torchvision's {name} "
        f"(the architecture of {type(_default_weights(name)).__name__}.DEFAULT), "
        "or leave the weights out to measure with random weights."
    )
    if problems:
        raise ModelFileError(f"{path} does not match {name}: {'; '.join(problems)}.", hint)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        reason = str(exc).splitlines()[0]
        raise ModelFileError(f"{path} does not load into {name}: {reason}.", hint) from None


def build_torch_model(
    name: str,
    weights_path: str | None = None,
    device: str | None = None,
    num_classes: int | None = None,
) -> tuple[nn.Module, str]:
    """Build zoo model ``name`` for inference (eval mode) on ``device`` (default cpu).

    Returns (module, weights_label): "random" for random init (weights=None), or
    "file:<absolute path>" when ``weights_path`` was loaded.
    """
    canonical = _canonical_name(name)
    target = _target_device(device)
    state: dict[str, torch.Tensor] | None = None
    path: Path | None = None
    label = "random"
    if weights_path:
        # Read the file before building, so a bad file fails before a slow random init.
        path, state = load_state_dict_file(weights_path)
        label = f"file:{path}"
    kwargs = builder_kwargs(canonical, random_init=state is None)
    if num_classes:
        kwargs["num_classes"] = int(num_classes)
    model = tvm.get_model(canonical, weights=None, **kwargs)
    if state is not None and path is not None:
        _apply_state_dict(model, state, canonical, path, num_classes)
    model.eval()
    try:
        model = model.to(target)
    except RuntimeError as exc:
        raise DeviceUnavailableError(
            f"Cannot move {canonical} to {target}: {str(exc).splitlines()[0]}.",
            "Use another device, or a smaller model if the device is out of memory.",
        ) from None
    log.debug("built %s on %s with %s weights", canonical, target, label)
    return model, label
