"""Torch -> ONNX / OpenVINO IR conversion, cached on disk.

A zoo model (or a TorchScript file) is converted once, with a dynamic batch axis, and
every batch size of a sweep then reads the same file and fixes its batch dimension. With
random weights (weights=None) this is what keeps the weights identical across batch
sizes, even though each case runs in its own worker process.

Cache layout, under ``$BACKBENCH_CACHE_DIR`` (default ``core.paths.cache_dir()``)::

    onnx/<model>-<weights>-op<opset>.onnx
    ir/<model>-<weights>.xml (+ .bin)

``<weights>`` is ``random`` or a hash of the weights file. Files are written under a
temporary name and renamed into place while holding a lock file, so concurrent workers
never read a half-written model.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import logging
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from core import paths
from core.backends.base import ModelSource
from core.errors import BackbenchError, ModelFileError

log = logging.getLogger(__name__)

CACHE_DIR_ENV = "BACKBENCH_CACHE_DIR"
DEFAULT_ONNX_OPSET = 17
# OpenVINO 2022.3's ONNX frontend is safest with an older opset.
LEGACY_ONNX_OPSET = 13
ONNX_INPUT_NAME = "input"
ONNX_OUTPUT_NAME = "output"
# Random weights are drawn from a fixed seed so that every process that builds the model
# (torch backend workers, converters) gets the same weights.
RANDOM_WEIGHTS_SEED = 0
# Tracing with batch 1 can bake a batch-of-one special case into the graph (squeeze,
# view(1, -1)); batch 2 keeps the batch axis honest.
_EXAMPLE_BATCH = 2


class SourceKind(str, Enum):
    ZOO = "zoo"
    ONNX = "onnx"
    OPENVINO_IR = "openvino-ir"
    TORCHSCRIPT = "torchscript"


_CARD_SOURCE_KINDS = {
    "torchvision": SourceKind.ZOO,
    "onnx": SourceKind.ONNX,
    "openvino-ir": SourceKind.OPENVINO_IR,
    "torchscript": SourceKind.TORCHSCRIPT,
}


@dataclass(frozen=True, slots=True)
class ConvertedModel:
    """A model file ready for a runtime. ``converted`` is False on a cache hit."""

    path: Path
    input_size: tuple[int, int, int]
    converted: bool


def random_batch(shape: tuple[int, ...] | list[int], dtype: Any = None) -> np.ndarray:
    """The input batch every backend feeds: seeded standard-normal float32 (then cast), so
    the same model gets the same input on torch, OpenVINO and ONNX Runtime."""
    data = np.random.default_rng(RANDOM_WEIGHTS_SEED).standard_normal(
        tuple(shape), dtype=np.float32
    )
    return np.ascontiguousarray(data if dtype is None else data.astype(dtype))


def source_kind(name: str) -> SourceKind:
    """What a ModelSource name denotes, from its zoo card. The card lookup also raises
    UnknownModelError / ModelFileError (missing file, IR without .bin, corrupt ONNX)."""
    from core.zoo import get_card

    source = get_card(name).source
    if source not in _CARD_SOURCE_KINDS:
        raise ModelFileError(f"Model {name!r} has an unknown source {source!r}.")
    return _CARD_SOURCE_KINDS[source]


def model_file(name: str) -> Path:
    """The resolved path of a model file source (the card checked that it exists)."""
    from core.zoo import get_card

    card = get_card(name)
    if card.path is None:
        raise ModelFileError(f"{name!r} is a zoo model, not a model file.")
    return Path(card.path)


def cache_root() -> Path:
    override = os.environ.get(CACHE_DIR_ENV)
    return Path(override).expanduser() if override else paths.cache_dir()


def file_digest(path: str | Path, length: int = 16) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:length]


def cache_stem(source: ModelSource) -> str:
    """``<model>-<weights>``: weights are ``random`` or the hash of the weights file."""
    kind = source_kind(source.name)
    if kind is SourceKind.TORCHSCRIPT:
        path = model_file(source.name)
        model, weights = path.stem, file_digest(path)
    elif kind is SourceKind.ZOO:
        from core.zoo import get_card

        model = get_card(source.name).name  # canonical, so "ResNet50" shares resnet50's cache
        weights = _weights_digest(source.weights_path) if source.weights_path else "random"
    else:
        raise ModelFileError(
            f"{source.name!r} is already a {kind.value} file; it needs no conversion."
        )
    classes = f"-c{int(source.num_classes)}" if source.num_classes else ""
    return f"{re.sub(r'[^A-Za-z0-9_.+-]', '_', model)}-{weights}{classes}"


def _weights_digest(weights_path: str) -> str:
    try:
        return file_digest(Path(weights_path).expanduser())
    except OSError as exc:
        raise ModelFileError(
            f"Cannot read the weights file {weights_path!r}: {exc.strerror or exc}.",
            "Check the path given with --weights.",
        ) from None


def onnx_cache_path(source: ModelSource, opset: int = DEFAULT_ONNX_OPSET) -> Path:
    return cache_root() / "onnx" / f"{cache_stem(source)}-op{opset}.onnx"


def ir_cache_path(source: ModelSource) -> Path:
    return cache_root() / "ir" / f"{cache_stem(source)}.xml"


def input_size_of(source: ModelSource) -> tuple[int, int, int]:
    """(C, H, W) of a zoo model or TorchScript file, from its model card."""
    from core.zoo import get_card

    size = tuple(int(d) for d in get_card(source.name).input_size)
    if len(size) != 3:
        raise ModelFileError(
            f"Model card of {source.name!r} has input size {size}; expected (C, H, W)."
        )
    return (size[0], size[1], size[2])


def load_torch_module(source: ModelSource, device: str | None = None) -> tuple[Any, str]:
    """Build the torch module of a zoo name or TorchScript file: (module in eval, weights label).

    Random weights come from a fixed seed (without disturbing the global RNG), so
    every process builds the same model.
    """
    import torch

    from core.zoo import build_torch_model, load_torchscript

    kind = source_kind(source.name)
    if kind is SourceKind.TORCHSCRIPT:
        path = model_file(source.name)
        module = load_torchscript(str(path))
        module = module.to(device) if device else module
        return module.eval(), f"torchscript:{path}"
    if kind is not SourceKind.ZOO:
        raise ModelFileError(
            f"{source.name!r} is an {kind.value} file, which torch cannot run.",
            "Measure it with --backend openvino or --backend onnxruntime.",
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_WEIGHTS_SEED)
        module, label = build_torch_model(
            source.name, source.weights_path, device=device, num_classes=source.num_classes
        )
    return module.eval(), label


@contextlib.contextmanager
def _cache_lock(target: Path) -> Iterator[None]:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: no flock; the atomic renames still keep files whole.
        yield
        return
    with open(target.with_name(target.name + ".lock"), "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _tmp_name(target: Path, suffix: str) -> Path:
    return target.with_name(f".{target.stem}.{os.getpid()}.tmp{suffix}")


def _remove_quietly(*files: Path) -> None:
    for f in files:
        with contextlib.suppress(FileNotFoundError):
            f.unlink()


def _example_input(input_size: tuple[int, int, int]) -> Any:
    import torch

    return torch.zeros((_EXAMPLE_BATCH, *input_size), dtype=torch.float32)


def export_onnx(module: Any, input_size: tuple[int, int, int], target: Path, opset: int) -> None:
    """torch.onnx.export with a dynamic batch axis, written atomically to ``target``.

    The TorchScript-based exporter (dynamo=False) is used on purpose: it works offline,
    needs no onnxscript, handles ScriptModules, and produces opsets old runtimes read.
    """
    import torch

    tmp = _tmp_name(target, ".onnx")
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            # The legacy exporter warns that it is deprecated; choosing it is deliberate.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (_example_input(input_size),),
                str(tmp),
                dynamo=False,
                opset_version=opset,
                input_names=[ONNX_INPUT_NAME],
                output_names=[ONNX_OUTPUT_NAME],
                dynamic_axes={ONNX_INPUT_NAME: {0: "batch"}, ONNX_OUTPUT_NAME: {0: "batch"}},
                do_constant_folding=True,
            )
        os.replace(tmp, target)
    except BackbenchError:
        raise
    except Exception as exc:  # the exporter raises many unrelated types
        raise ModelFileError(
            f"Could not export the model to ONNX: {framework_message(exc)}",
            "Try the torch backend, or export the model to .onnx yourself and pass the file.",
        ) from exc
    finally:
        _remove_quietly(tmp)


def _traced_for_openvino(module: Any, example: Any) -> Any:
    """What to give convert_model for ``module``: its own TorchScript decoder, tracing
    without ``check_trace``, where this OpenVINO's decoder takes trace arguments.

    convert_model traces with torch.jit.trace's defaults, and ``check_trace`` runs the
    model twice more to compare, only to warn (warnings we silence). Skipping it saves
    35-40% of a conversion (resnet18 1.6 -> 0.9 s, densenet121 4.0 -> 3.0 s) and gives the
    same IR, weights byte for byte. Anything else (a ScriptModule, an older decoder) is
    passed on as it is.
    """
    import torch

    if not isinstance(module, torch.nn.Module) or isinstance(module, torch.jit.ScriptModule):
        return module
    try:
        from openvino.frontend.pytorch.ts_decoder import TorchScriptPythonDecoder
    except ImportError:
        return module
    try:
        takes_trace_kwargs = "trace_kwargs" in inspect.signature(TorchScriptPythonDecoder).parameters
    except (TypeError, ValueError):
        return module
    if not takes_trace_kwargs:
        return module
    return TorchScriptPythonDecoder(module, example_input=(example,), trace_kwargs={"check_trace": False})


def export_ir(module: Any, input_size: tuple[int, int, int], target: Path) -> None:
    """openvino.convert_model with a dynamic batch axis, saved as f32 IR atomically."""
    import openvino as ov

    tmp_xml = _tmp_name(target, ".xml")
    tmp_bin = tmp_xml.with_suffix(".bin")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit.trace deprecation noise
            example = _example_input(input_size)
            model = ov.convert_model(
                _traced_for_openvino(module, example),
                example_input=example,
                input=[(-1, *input_size)],
            )
        # save_model compresses weights to f16 by default; that would change the model
        # measured at f32, so keep full precision.
        ov.save_model(model, str(tmp_xml), compress_to_fp16=False)
        os.replace(tmp_bin, target.with_suffix(".bin"))
        os.replace(tmp_xml, target)
    except BackbenchError:
        raise
    except Exception as exc:  # the converter raises many unrelated types
        raise ModelFileError(
            f"OpenVINO could not convert the model: {framework_message(exc)}",
            "Export it to .onnx and pass the file, or measure it with --backend torch.",
        ) from exc
    finally:
        _remove_quietly(tmp_xml, tmp_bin)


_forbidden = False


class ConversionMissing(ModelFileError):
    """A conversion was needed where none may run (``forbid_conversion``)."""


@contextlib.contextmanager
def forbid_conversion() -> Iterator[None]:
    """Inside, a conversion that would be needed fails instead: a measured process reads
    the cache, and the sweep converts each model before its cases, in a process of its
    own, so the converter's memory and time never count as the model's."""
    global _forbidden
    before = _forbidden
    _forbidden = True
    try:
        yield
    finally:
        _forbidden = before


def _ensure(target: Path, source: ModelSource, write: Any) -> ConvertedModel:
    input_size = input_size_of(source)
    with _cache_lock(target):
        if target.is_file():
            log.debug("using cached %s", target)
            return ConvertedModel(target, input_size, converted=False)
        if _forbidden:
            raise ConversionMissing(
                f"The converted model {target} is missing: it was removed after the sweep "
                "converted it, or the cache folder is not shared with this worker.",
                f"Run the case again; check that {CACHE_DIR_ENV} is the same for every process.",
            )
        log.info("converting %s to %s", source.name, target)
        module, _label = load_torch_module(source, device="cpu")
        write(module, input_size, target)
    return ConvertedModel(target, input_size, converted=True)


def ensure_onnx(source: ModelSource, opset: int = DEFAULT_ONNX_OPSET) -> ConvertedModel:
    """The cached ONNX file of a zoo model / TorchScript file, exporting it if needed."""
    target = onnx_cache_path(source, opset)
    return _ensure(target, source, lambda m, size, t: export_onnx(m, size, t, opset))


def ensure_ir(source: ModelSource) -> ConvertedModel:
    """The cached OpenVINO IR (.xml) of a zoo model / TorchScript file, converting if needed."""
    return _ensure(ir_cache_path(source), source, export_ir)


def ensure_format(source: ModelSource, fmt: str) -> ConvertedModel:
    """The cached file of ``fmt``: ``"ir"`` (OpenVINO IR) or ``"onnx:OPSET"``, for a
    reader on another interpreter (a worker runtime with an older OpenVINO)."""
    kind, _, opset = fmt.partition(":")
    if kind == "ir" and not opset:
        return ensure_ir(source)
    if kind == "onnx" and opset.isdigit():
        return ensure_onnx(source, int(opset))
    raise ModelFileError(f"Unknown conversion format {fmt!r}.", "Use 'ir' or 'onnx:OPSET'.")


def framework_message(exc: BaseException, max_chars: int = 300) -> str:
    """The informative part of a framework exception, on one line.

    OpenVINO prefixes its messages with nested "Exception from src/...cpp:NN:" and
    "Check '...' failed at" lines that tell a user nothing; drop them. A long message is
    shortened at a sentence or line boundary, never mid-sentence (``shorten_message``).
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [
        line
        for line in lines
        if not line.startswith("Exception from ") and not re.match(r"^Check '.*' failed at ", line)
    ]
    return shorten_message(useful or lines, max_chars) or type(exc).__name__


# A sentence ends at . ! or ? followed by white space; "v1.2.3" and "model.onnx" do not.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
# The first sentence is kept whole up to this long: it usually says what went wrong.
_FIRST_SENTENCE_MAX_CHARS = 1000


def shorten_message(lines: list[str], max_chars: int = 300) -> str:
    """Lines of a message joined on one line, keeping whole sentences while they fit in
    ``max_chars``. The first sentence is always kept whole (up to 1000 characters, then
    cut at a word); the message ends at a sentence or line boundary, never mid-sentence."""
    pieces = [
        piece for line in lines for piece in _SENTENCE_END.split(line.strip()) if piece.strip()
    ]
    if not pieces:
        return ""
    text = pieces[0]
    limit = max(max_chars, _FIRST_SENTENCE_MAX_CHARS)
    if len(text) > limit:
        return (text[: limit - 4].rsplit(" ", 1)[0] or text[: limit - 4]) + " ..."
    for piece in pieces[1:]:
        if len(text) + 1 + len(piece) > max_chars:
            break
        text = f"{text} {piece}"
    return text
