"""User model files: ONNX (.onnx), OpenVINO IR (.xml with its .bin) and TorchScript (.pt).

Cards for files are read without torch or openvino: an IR's input shape comes from its
XML, an ONNX file's from the ``onnx`` package when it is installed. Loading TorchScript
uses ``torch.jit.load``, which reads the archive's own restricted format; this module
never unpickles a file.
"""

from __future__ import annotations

import functools
import logging
import os
import tarfile
import warnings
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import ModelFileError
from core.zoo.card import ModelCard
from core.zoo.registry import find_zoo_card

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

MODEL_FILE_SOURCES: dict[str, str] = {
    ".onnx": "onnx",
    ".xml": "openvino-ir",
    ".pt": "torchscript",
}
WEIGHTS_SUFFIXES = (".pth", ".bin", ".ckpt", ".safetensors", ".pkl")
DEFAULT_INPUT_SIZE: tuple[int, int, int] = (3, 224, 224)
FILE_FAMILY = "custom"

_EXPORT_HINT = (
    "Export the model to ONNX (.onnx), OpenVINO IR (.xml + .bin) or TorchScript (.pt), "
    "or pass a state-dict file as the weights of the zoo model it belongs to."
)


def is_model_file(name: str) -> bool:
    """True for a name ending in .onnx, .xml or .pt (a model file, not a zoo name).

    A .pth is a weights file (a state dict), not a model, so it is not a model file.
    """
    return Path(name).suffix.lower() in MODEL_FILE_SOURCES


def not_a_model_file(path: str) -> ModelFileError:
    """The error for a path that cannot be a model file (wrong extension, or missing)."""
    suffix = Path(path).suffix.lower()
    if suffix in WEIGHTS_SUFFIXES:
        return ModelFileError(
            f"{path} looks like a weights file, not a model ({suffix}).",
            "Pass it as the weights of the zoo model it belongs to (--weights), or "
            "export the model to ONNX (.onnx), OpenVINO IR (.xml + .bin) or TorchScript (.pt).",
        )
    if suffix:
        return ModelFileError(f"Unsupported model file type {suffix!r}: {path}.", _EXPORT_HINT)
    return ModelFileError(
        f"{path} is neither a zoo model name nor a model file.",
        "Give a zoo name (`backbench models` lists them) or a .onnx, .xml or .pt file.",
    )


def existing_model_file(path: str | os.PathLike[str]) -> Path:
    """The absolute path of an existing model file; ModelFileError saying what is wrong."""
    p = Path(path).expanduser()
    suffix = p.suffix.lower()
    if suffix not in MODEL_FILE_SOURCES:
        raise not_a_model_file(str(path))
    if not p.exists():
        raise ModelFileError(f"Model file not found: {p}.", "Check the path and the file name.")
    if not p.is_file():
        raise ModelFileError(f"{p} is not a file.", "Give the path of the model file itself.")
    if suffix == ".xml":
        bin_path = p.with_suffix(".bin")
        if not bin_path.is_file():
            raise ModelFileError(
                f"The OpenVINO IR {p.name} has no weights file {bin_path.name} beside it.",
                f"Put {bin_path.name} in {p.parent}; ovc and openvino.save_model write both.",
            )
    return p.resolve()


def file_card(path: str | os.PathLike[str]) -> ModelCard:
    """A card for a model file. Published figures are unknown (None)."""
    p = existing_model_file(path)
    stat = p.stat()
    return _file_card(str(p), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _file_card(path: str, _mtime_ns: int, _size: int) -> ModelCard:
    p = Path(path)
    source = MODEL_FILE_SOURCES[p.suffix.lower()]
    if source == "onnx":
        dims = _onnx_input_dims(p)
    elif source == "openvino-ir":
        dims = _ir_input_dims(p)
    else:
        check_torchscript_archive(p)
        dims = None  # TorchScript keeps no input shape
    input_size, notes = _input_size(dims)
    # "resnet50.onnx" is most likely torchvision's resnet50: borrow its family.
    zoo_card = find_zoo_card(p.stem)
    family = zoo_card.family if zoo_card is not None else FILE_FAMILY
    return ModelCard(
        name=p.name,
        family=family,
        input_size=input_size,
        params=None,
        acc1=None,
        acc5=None,
        gmacs=None,
        file_size_mb=None,
        source=source,
        path=str(p),
        notes=notes,
    )


def _input_size(dims: list[int | None] | None) -> tuple[tuple[int, int, int], str]:
    c, h, w = DEFAULT_INPUT_SIZE
    if dims is None or len(dims) != 4:
        return DEFAULT_INPUT_SIZE, f"Input size assumed {c}x{h}x{w}: the file does not state one."
    # NHWC exports (channels last) put the 1 or 3 channels at the end.
    if dims[3] in (1, 3) and dims[1] not in (1, 3):
        dims = [dims[0], dims[3], dims[1], dims[2]]
    size = (dims[1] or c, dims[2] or h, dims[3] or w)
    if None in dims[1:]:
        note = f"Input size {size[0]}x{size[1]}x{size[2]}: dynamic dimensions assumed."
        return size, note
    return size, ""


def _onnx_input_dims(path: Path) -> list[int | None] | None:
    try:
        import onnx
    except ImportError:
        log.debug("onnx is not installed; the input size of %s is assumed", path)
        return None
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf and onnx raise many types for a bad file
        raise ModelFileError(
            f"{path} is not a readable ONNX model: {exc}.",
            "Re-export it (torch.onnx.export) or check that the copy is complete.",
        ) from None
    initializers = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if not inputs:
        raise ModelFileError(
            f"{path} has no graph inputs: it is empty or not an ONNX model.",
            "Re-export it (torch.onnx.export) or check that the copy is complete.",
        )
    if len(inputs) > 1:
        log.info("%s has %d inputs; the card describes the first", path, len(inputs))
    shape = inputs[0].type.tensor_type.shape
    if any(d.HasField("dim_value") and d.dim_value == 0 for d in shape.dim):
        shown = [
            str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?") for d in shape.dim
        ]
        raise zero_sized_input(path, inputs[0].name, shown)
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in shape.dim]


def zero_sized_input(path: Path, input_name: str, shape: list[str]) -> ModelFileError:
    """The error for an input with a dimension of size 0: every batch fed to it
    would hold no data, so measuring it would time an empty computation."""
    return ModelFileError(
        f"{path.name}: input {input_name!r} has shape [{', '.join(shape)}], with a zero-sized "
        "dimension, so it takes no image data.",
        "Export the model with a real image input, e.g. (batch, 3, 224, 224).",
    )


def _ir_input_dims(path: Path) -> list[int | None] | None:
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise ModelFileError(
            f"{path} is not a readable OpenVINO IR: {exc}.",
            "Re-convert it (ovc, or openvino.save_model) or check that the copy is complete.",
        ) from None
    if root.tag != "net" or root.find("layers") is None:
        raise ModelFileError(
            f"{path} is an XML file but not an OpenVINO IR (no <net><layers>).",
            "Give the .xml that ovc or openvino.save_model wrote.",
        )
    for layer in root.iter("layer"):
        if layer.get("type") == "Parameter":
            data = layer.find("data")
            shape = data.get("shape") if data is not None else None
            if shape is None:
                return None
            texts = [d.strip() for d in shape.split(",")] if shape.strip() else []
            if any(t.lstrip("-").isdigit() and int(t) == 0 for t in texts):
                raise zero_sized_input(path, layer.get("name") or "?", texts)
            return [_ir_dim(d) for d in texts]
    raise ModelFileError(
        f"The OpenVINO IR {path} has no input (Parameter) layer.",
        "Re-convert the model; an IR needs at least one input.",
    )


def _ir_dim(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


# -- cheap format checks: the central directory of a zip, or a file's first bytes -----------

_TORCHSCRIPT_HINT = (
    "Save the model with torch.jit.script(model).save(path) or torch.jit.trace, and check "
    "that the copy is complete; a state dict saved with torch.save belongs in --weights of "
    "its zoo model."
)
_ZIP_LOCAL_HEADER = b"PK\x03\x04"
_PICKLE_PROTO = b"\x80"  # pickle protocol 2+, which torch.save's legacy format writes


def _head(path: Path, n: int = 4) -> bytes:
    try:
        with path.open("rb") as fh:
            return fh.read(n)
    except OSError as exc:
        raise ModelFileError(
            f"{path} cannot be read: {exc.strerror or exc}.", "Check the file's permissions."
        ) from None


def _zip_members(path: Path) -> list[str] | None:
    """The member names of a zip archive (its central directory only: cheap at any size),
    or None for a file that is not a readable zip archive."""
    try:
        if not zipfile.is_zipfile(path):
            return None
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return None


def _archive_records(members: list[str]) -> set[str]:
    """Record names below each archive's top folder: "model/data.pkl" -> "data.pkl"."""
    return {name.split("/", 1)[1] for name in members if "/" in name}


def _is_torchscript(records: set[str]) -> bool:
    # torch.jit.save writes data.pkl, constants.pkl and code/; torch.save writes data.pkl
    # and data/ only. (model.json: TorchScript's format before torch 1.4.)
    return "model.json" in records or (
        "constants.pkl" in records and any(r.startswith("code/") for r in records)
    )


def check_torchscript_archive(path: Path) -> None:
    """Refuse, in one line, a .pt file that is not a TorchScript archive: reads the zip's
    central directory only, never the model, so a multi-GB file is not loaded twice."""
    members = _zip_members(path)
    if members is None:
        head = _head(path)
        if head.startswith(_ZIP_LOCAL_HEADER):
            what = "a zip archive that is cut short or damaged"
        elif head.startswith(_PICKLE_PROTO):
            what = "a Python pickle (torch.save's legacy format, or pickle.dump), not a TorchScript archive"
        else:
            what = "not a TorchScript archive (the zip file torch.jit.save writes)"
        raise ModelFileError(
            f"{path} is not a loadable TorchScript model: it is {what}.", _TORCHSCRIPT_HINT
        )
    records = _archive_records(members)
    if _is_torchscript(records):
        return
    if "data.pkl" in records:
        what = "a torch.save file (a state dict or a pickled module), not a TorchScript archive"
    else:
        what = "a zip archive without TorchScript's data.pkl, constants.pkl and code/"
    raise ModelFileError(
        f"{path} is not a loadable TorchScript model: it is {what}.", _TORCHSCRIPT_HINT
    )


def check_weights_file(path: str | os.PathLike[str]) -> None:
    """Refuse, in one line, a --weights file that torch.save cannot have written: cheap
    checks of its first bytes and of a zip's central directory; the state dict itself is
    read (safely) when the case builds the model."""
    p = Path(path)
    members = _zip_members(p)
    if members is not None:
        records = _archive_records(members)
        if _is_torchscript(records):
            raise ModelFileError(
                f"{p} is a TorchScript model, not a weights file.",
                "Give it as the model to measure (a .pt model file), not as weights.",
            )
        if "data.pkl" not in records:
            raise ModelFileError(
                f"{p} is not a readable PyTorch weights file: it is a zip archive without "
                "the data.pkl that torch.save writes.",
                "Save the weights with torch.save(model.state_dict(), path).",
            )
        return
    head = _head(p)
    if head.startswith(_PICKLE_PROTO) or tarfile.is_tarfile(p):
        return  # torch.save's legacy formats; torch.load(weights_only=True) judges the rest
    what = (
        "a zip archive that is cut short or damaged"
        if head.startswith(_ZIP_LOCAL_HEADER)
        else "neither the zip archive nor the legacy pickle that torch.save writes"
    )
    raise ModelFileError(
        f"{p} is not a readable PyTorch weights file: it is {what}.",
        "Check that the copy is complete, or re-save it with torch.save(model.state_dict(), path).",
    )


def load_torchscript(path: str | os.PathLike[str]) -> torch.nn.Module:
    """Load a TorchScript archive (.pt) on the CPU, in eval() mode."""
    p = existing_model_file(path)
    if p.suffix.lower() != ".pt":
        raise ModelFileError(
            f"{p} is not a TorchScript file (.pt).",
            "Load .onnx files with ONNX Runtime and .xml files with OpenVINO.",
        )
    check_torchscript_archive(p)
    import torch

    try:
        with warnings.catch_warnings():
            # TorchScript is deprecated upstream, but it is the only safe way to ship a
            # whole torch model in one file; the user chose that format.
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
            module = torch.jit.load(str(p), map_location="cpu")
    except (RuntimeError, ValueError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelFileError(
            f"{p} is not a loadable TorchScript model ({reason}).",
            "Save it with torch.jit.script(model).save(path) or torch.jit.trace; a state dict "
            "saved with torch.save belongs in --weights of its zoo model.",
        ) from None
    module.eval()
    return module
