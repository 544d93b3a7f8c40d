"""The OpenVINO backend: any device that ``Core().available_devices`` reports.

Precision is explicit: INFERENCE_PRECISION_HINT is always set (the CPU plugin defaults to
bf16 on CPUs that have it, which would make an "f32" comparison with torch silently
wrong) and the value the compiled model reports back is recorded; a device that ignores
the hint is an error, never a silent substitution.

Latency mode compiles with PERFORMANCE_HINT=LATENCY and times ``InferRequest.infer()`` on
one request whose input tensor was set in prepare. Throughput mode compiles with
PERFORMANCE_HINT=THROUGHPUT and keeps OPTIMAL_NUMBER_OF_INFER_REQUESTS requests busy in
an AsyncInferQueue; each completion reports the request's own latency.

Two API generations run behind one adapter (``OvApi``): the current ``import openvino``
API (2023+), which converts torch models to IR with ``openvino.convert_model``, and the
2022.3 LTS ``openvino.runtime`` API that Intel NCS2 (MYRIAD) users are pinned to, which
reads an ONNX export instead.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.backends import convert
from core.backends.base import (
    PHASE_COMPILE,
    PHASE_LOAD,
    ModelSource,
    PhaseHook,
    no_phase,
    says_out_of_memory,
)
from core.backends.convert import ConvertedModel, SourceKind
from core.backends.profiling import RawLayer, median_profile, run_profiled
from core.errors import (
    BackbenchError,
    CaseFailure,
    DeviceUnavailableError,
    ModelFileError,
    PrecisionUnsupportedError,
)
from core.results import Backend, Case, FailureKind, LayerProfile, Mode, Precision, canonical_device

log = logging.getLogger(__name__)

API_ENV = "BACKBENCH_OV_API"
MODERN = "modern"
LEGACY = "legacy"
# The first release with the 2023 API (openvino.Core, properties, convert_model soon after).
_FIRST_MODERN_YEAR = 2023
VIRTUAL_DEVICES = ("AUTO", "MULTI", "HETERO", "BATCH")

_HINT_NAMES = {Precision.FP32: "f32", Precision.FP16: "f16", Precision.BF16: "bf16"}
_CAPABILITIES = {"FP32": Precision.FP32, "FP16": Precision.FP16, "BF16": Precision.BF16}
_TYPE_ALIASES = {"float32": "f32", "float16": "f16", "bfloat16": "bf16"}


def select_api(version: str) -> str:
    """``"legacy"`` for OpenVINO before 2023 (the ``openvino.runtime`` era), else ``"modern"``."""
    match = re.match(r"\s*(\d{4})\.", version)
    if match is None:
        log.warning("cannot parse the OpenVINO version %r; assuming the current API", version)
        return MODERN
    return LEGACY if int(match.group(1)) < _FIRST_MODERN_YEAR else MODERN


def installed_version() -> str:
    """The installed OpenVINO's full version string, e.g. ``2026.4.1-22982-...``."""
    for module_name in ("openvino", "openvino.runtime"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        get_version = getattr(module, "get_version", None)
        if get_version is not None:
            return str(get_version())
    return importlib.metadata.version("openvino")


@dataclass(frozen=True, slots=True)
class OvApi:
    """One OpenVINO API generation: where Core lives, and how torch models get in."""

    name: str  # MODERN | LEGACY
    version: str
    module: Any  # the ``openvino`` or ``openvino.runtime`` module
    onnx_route: bool  # convert torch models through ONNX instead of convert_model

    def core(self) -> Any:
        return self.module.Core()

    def partial_shape(self, dims: list[int]) -> Any:
        return self.module.PartialShape(dims)

    def tensor(self, array: np.ndarray) -> Any:
        return self.module.Tensor(array)

    def async_queue(self, compiled: Any, jobs: int) -> Any:
        return self.module.AsyncInferQueue(compiled, jobs)

    def conversion_format(self) -> str:
        """What this API reads for a torch model: ``"ir"``, or ``"onnx:OPSET"`` on the
        2022.3 route (never an IR, which a newer OpenVINO would have made)."""
        if self.onnx_route:
            opset = convert.LEGACY_ONNX_OPSET if self.name == LEGACY else convert.DEFAULT_ONNX_OPSET
            return f"onnx:{opset}"
        return "ir"

    def convert(self, source: ModelSource) -> ConvertedModel:
        """The cached model file (IR, or ONNX on the 2022.3 route) of a torch model."""
        return convert.ensure_format(source, self.conversion_format())

    def sync_infer(self, request: Any) -> None:
        if self.name == MODERN:
            # Sharing outputs skips a copy of the logits that would be billed to the model.
            request.infer(share_outputs=True)
        else:
            request.infer()


def load_api(choice: str | None = None) -> OvApi:
    """The API adapter for the installed OpenVINO; ``BACKBENCH_OV_API`` overrides the
    version-based choice (``legacy`` exercises the 2022.3 route on a newer release)."""
    version = installed_version()
    name = (choice or os.environ.get(API_ENV) or select_api(version)).strip().lower()
    if name not in (MODERN, LEGACY):
        raise BackbenchError(
            f"{API_ENV}={name!r} is not an OpenVINO API choice.", f"Use {MODERN!r} or {LEGACY!r}."
        )
    if name == MODERN:
        module = importlib.import_module("openvino")
        return OvApi(MODERN, version, module, onnx_route=not hasattr(module, "convert_model"))
    try:
        module = importlib.import_module("openvino.runtime")
    except ImportError:
        # openvino.runtime was removed in 2025; its Core is the same object as openvino.Core.
        log.info("openvino.runtime is absent in OpenVINO %s; legacy route uses openvino", version)
        module = importlib.import_module("openvino")
    return OvApi(LEGACY, version, module, onnx_route=True)


# Which OpenVINO wrote an IR: its <rt_info> names the runtime (2023+: <info name="OpenVINO
# Runtime" value=...>; before: <Runtime_version value=...>) or the Model Optimizer.
_IR_PRODUCER = (
    re.compile(r'<info\s+name="OpenVINO Runtime"\s+value="([^"]+)"'),
    re.compile(r'<Runtime_version\s+value="([^"]+)"'),
    re.compile(r'<MO_version\s+value="([^"]+)"'),
    re.compile(r'<info\s+name="MO_version"\s+value="([^"]+)"'),
)
_IR_TAIL_BYTES = 1 << 20  # rt_info closes the file


def ir_producer(path: Path) -> str | None:
    """The OpenVINO version that wrote the IR ``path`` (from its rt_info), or None."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - _IR_TAIL_BYTES))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    for pattern in _IR_PRODUCER:
        found = pattern.search(text)
        if found:
            return found.group(1)
    return None


def release_of(version: str) -> tuple[int, int] | None:
    """(year, minor) of an OpenVINO version string, e.g. 2022.3.2-9279-... -> (2022, 3)."""
    found = re.match(r"\s*(\d{4})\.(\d+)", version)
    return (int(found.group(1)), int(found.group(2))) if found else None


def short_version(version: str) -> str:
    """``2026.4.1-22982-e213a...`` -> ``2026.4.1``."""
    return version.split("-", 1)[0].strip()


def newer_ir_error(path: Path, installed: str, text: str) -> ModelFileError | None:
    """The error for an IR that a newer OpenVINO wrote than the one reading it, which
    says what made it and how to convert the model for this host; None otherwise."""
    if path.suffix.lower() != ".xml":
        return None
    producer = ir_producer(path)
    made, here = release_of(producer or ""), release_of(installed)
    if producer is None or made is None or here is None or made <= here:
        return None
    mine = short_version(installed)
    return ModelFileError(
        f"OpenVINO {mine} cannot read {path}: it was written by OpenVINO "
        f"{short_version(producer)}, which is newer than this host's ({text})",
        f"Give this host the model as ONNX instead (the original .onnx, or `backbench export "
        f"-m MODEL --to onnx --opset 13` on a machine with torch): OpenVINO {mine} reads it "
        f"and converts it itself. Or convert the model with OpenVINO {mine} (this host's own "
        "mo / ovc) and give that IR.",
    )


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if hasattr(value, "get_type_name"):
        return str(value.get_type_name())
    if hasattr(value, "name") and isinstance(value.name, str):  # enums such as PerformanceMode
        return value.name
    return str(value)


def precision_name(value: Any) -> str:
    """``Type.f32`` / ``"<Type: 'float32'>"`` / ``"f32"`` -> ``"f32"``."""
    text = str(_jsonable(value)).lower()
    quoted = re.search(r"'([a-z0-9]+)'", text)
    text = quoted.group(1) if quoted else text
    return _TYPE_ALIASES.get(text, text)


def _message(exc: BaseException) -> str:
    return convert.framework_message(exc)


def _raise_if_out_of_memory(exc: BaseException, doing: str) -> None:
    """OpenVINO reports running out of memory as a RuntimeError reading "std::bad_alloc";
    that is an out-of-memory failure of the case, not a fault of the model. (The worker's
    classify_exception adds the hint about memory, or the supervisor names the limit.)"""
    text = _message(exc)
    if says_out_of_memory(text):
        raise CaseFailure(
            FailureKind.OOM.value, f"out of memory while OpenVINO {doing}: {text}"
        ) from exc


class OpenVinoPrepared:
    """A compiled model with its input tensor set on every request."""

    def __init__(
        self,
        api: OvApi,
        compiled: Any,
        tensor: Any,
        mode: Mode,
        config: dict[str, Any],
        compile_profiled: Callable[[], Any] | None = None,
    ) -> None:
        self._api = api
        self._compiled = compiled
        self._tensor = tensor
        self.config = config
        self._compile_profiled = compile_profiled
        self._request = compiled.create_infer_request()
        self._request.set_input_tensor(tensor)
        self._queue: Any = None
        # Throughput mode keeps no Python completion callback: a callback needs the GIL on
        # OpenVINO's threads and delays the request's release (17% of the FPS of a 0.6 ms
        # model here). As benchmark_app does, the next submit collects the latency of the
        # request it reuses, and drain() collects the rest.
        self._pending: dict[int, Callable[[int], None]] = {}
        if mode is Mode.THROUGHPUT:
            self._queue = api.async_queue(compiled, int(config["nireq"]))
            for index in range(len(self._queue)):
                self._queue[index].set_input_tensor(tensor)

    def infer_ns(self) -> int:
        t0 = time.perf_counter_ns()
        self._api.sync_infer(self._request)
        return time.perf_counter_ns() - t0

    def outputs(self) -> np.ndarray:
        """One untimed inference; the first output as float32 numpy (to check conversions)."""
        self._request.infer()
        return np.array(self._request.get_output_tensor(0).data, dtype=np.float32)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits of ``batch`` (float32 NCHW, the compiled batch size), as float32 numpy.
        The request's own input tensor is kept; the batch is copied into it."""
        data = self._tensor.data
        data[...] = batch.astype(data.dtype, copy=False)
        self._request.infer()
        return np.array(self._request.get_output_tensor(0).data, dtype=np.float32)

    def max_in_flight(self) -> int:
        return len(self._queue) if self._queue is not None else 1

    def compiled_model(self) -> Any:
        """The compiled model (its execution graph says what will run, without running)."""
        return self._compiled

    def profile_layers(self) -> LayerProfile:
        """Per-layer times of the compiled (fused) graph: the model compiled again with
        PERF_COUNT, so the timed one never carried the counters, and its execution graph
        for each node's layer type, fused layers, precision and shapes."""
        if self._compile_profiled is None:
            raise CaseFailure(FailureKind.ERROR.value, "this OpenVINO model cannot be profiled")
        compiled = self._compile_profiled()
        request = compiled.create_infer_request()
        request.set_input_tensor(self._tensor)
        graph = _execution_graph(compiled)

        def iterate() -> tuple[float, list[RawLayer]]:
            t0 = time.perf_counter_ns()
            request.infer()
            total_ms = (time.perf_counter_ns() - t0) / 1e6
            layers = []
            for info in request.get_profiling_info():
                if "EXECUTED" not in str(info.status) or "NOT_RUN" in str(info.status):
                    continue
                node = graph.get(info.node_name)
                layers.append(RawLayer(
                    name=info.node_name, type=node.layer_type if node else str(info.node_type),
                    exec_type=str(info.exec_type), time_ms=info.real_time.total_seconds() * 1e3,
                    input_shapes=node.inputs if node else (), output_shapes=node.outputs if node else (),
                    fused=node.fused if node else (), precision=node.precision if node else "",
                ))  # fmt: skip
            return total_ms, layers

        runs, totals = run_profiled(iterate)
        return median_profile(runs, totals, "openvino perf counters")

    def _latency_ns(self, request_id: int) -> int:
        return int(self._queue[request_id].latency * 1_000_000)  # request.latency is in ms

    def submit(self, on_done: Callable[[int], None]) -> None:
        if self._queue is None:
            on_done(self.infer_ns())
            return
        # Blocks until a request is idle; start_async then takes that same request.
        idle = self._queue.get_idle_request_id()
        finished = self._pending.pop(idle, None)
        if finished is not None:
            finished(self._latency_ns(idle))
        self._pending[idle] = on_done
        self._queue.start_async()

    def drain(self) -> None:
        if self._queue is None:
            return
        self._queue.wait_all()
        pending, self._pending = self._pending, {}
        for request_id, finished in sorted(pending.items()):
            finished(self._latency_ns(request_id))

    def reset_peak_device_memory(self) -> None:
        return None

    def device_memory_mb(self) -> dict[str, float]:
        return {}

    def close(self) -> None:
        if self._queue is not None:
            self._queue.wait_all()
        self._queue = None
        self._request = None
        self._compiled = None
        self._tensor = None


class OpenVinoBackend:
    backend = Backend.OPENVINO

    def __init__(self, api: OvApi | None = None) -> None:
        self._api = api
        self._core: Any = None
        self._devices: list[str] | None = None

    @property
    def api(self) -> OvApi:
        if self._api is None:
            self._api = load_api()
        return self._api

    @property
    def core(self) -> Any:
        if self._core is None:
            self._core = self.api.core()
        return self._core

    def version(self) -> str:
        return self.api.version

    def devices(self) -> list[str]:
        # Enumerating loads every plugin (and probes its hardware): do it once per process.
        if self._devices is None:
            self._devices = [str(d) for d in self.core.available_devices]
        return list(self._devices)

    # -- devices and precisions ------------------------------------------------------

    def resolve_device(self, device: str) -> str:
        """Canonical (upper-case) device name; DeviceUnavailableError when absent."""
        name = canonical_device(Backend.OPENVINO, device)
        prefix, _, rest = name.partition(":")
        if prefix in VIRTUAL_DEVICES:
            if not rest:
                if prefix != "AUTO":
                    raise DeviceUnavailableError(
                        f"{prefix} needs a device list, e.g. {prefix}:GPU,CPU.",
                        self._device_hint(),
                    )
                if not self.devices():
                    raise DeviceUnavailableError(
                        "AUTO found no OpenVINO device.", self._device_hint()
                    )
                return "AUTO"
            bases = [
                re.sub(r"\(\d+\)$", "", part.strip()) for part in rest.split(",") if part.strip()
            ]
            for base in bases:
                self._resolve_base(base, device)
            return name
        return self._resolve_base(name, device)

    def _resolve_base(self, name: str, asked: str) -> str:
        available = self.devices()
        # "GPU" addresses the first GPU when the plugin lists "GPU.0", "GPU.1".
        if name in available or (
            "." not in name and any(a.split(".")[0] == name for a in available)
        ):
            return name
        hint = self._device_hint()
        if name.startswith("MYRIAD") and select_api(self.api.version) == MODERN:
            hint = (
                "MYRIAD (Intel NCS2) is supported only up to OpenVINO 2022.3 LTS: measure on a "
                "worker runtime with openvino==2022.3 (--runtime NAME; `make edge-runtime` "
                f"builds one, docs/AGENT.md). {hint}"
            )
        raise DeviceUnavailableError(f"OpenVINO device {asked!r} is not available here.", hint)

    def _device_hint(self) -> str:
        available = ", ".join(self.devices()) or "none"
        return f"Available OpenVINO devices: {available} (also AUTO, MULTI:a,b and HETERO:a,b over them)."

    def _base_devices(self, resolved: str) -> list[str]:
        prefix, _, rest = resolved.partition(":")
        if prefix in VIRTUAL_DEVICES:
            if not rest:
                return self.devices()
            return [re.sub(r"\(\d+\)$", "", part) for part in rest.split(",") if part]
        return [resolved]

    def _device_property(self, device: str, name: str) -> Any:
        try:
            return self.core.get_property(device, name)
        except RuntimeError as exc:
            log.debug("%s does not report %s: %s", device, name, _message(exc))
            return None

    def _hint_settable(self, base: str) -> bool:
        supported = self._device_property(base, "SUPPORTED_PROPERTIES")
        return supported is not None and "INFERENCE_PRECISION_HINT" in supported

    def precisions(self, device: str) -> list[Precision]:
        resolved = self.resolve_device(device)
        common: set[Precision] | None = None
        for base in self._base_devices(resolved):
            caps = self._device_property(base, "OPTIMIZATION_CAPABILITIES") or []
            found = {_CAPABILITIES[c] for c in (str(c).upper() for c in caps) if c in _CAPABILITIES}
            common = found if common is None else common & found
        return [p for p in Precision if p in (common or set())]

    # -- prepare ------------------------------------------------------------------------

    def prepare(
        self, case: Case, source: ModelSource, on_phase: PhaseHook = no_phase
    ) -> OpenVinoPrepared:
        on_phase(PHASE_LOAD)
        device = self.resolve_device(case.device)
        supported = self.precisions(device)
        if case.precision not in supported:
            raise PrecisionUnsupportedError(
                f"OpenVINO {device} does not support {case.precision.value}.",
                f"Use one of: {', '.join(p.value for p in supported) or 'none'}.",
            )
        model, model_path, input_size = self._read(source)
        self._reshape(model, model_path, case.batch_size, input_size)

        on_phase(PHASE_COMPILE)
        bases = self._base_devices(device)
        hint_set = all(self._hint_settable(b) for b in bases)
        properties: dict[str, Any] = {
            "PERFORMANCE_HINT": "THROUGHPUT" if case.mode is Mode.THROUGHPUT else "LATENCY"
        }
        if hint_set:
            properties["INFERENCE_PRECISION_HINT"] = _HINT_NAMES[case.precision]
        compiled = self._compile(model, device, properties, case.precision)

        config = self._config(compiled, device, bases, properties, model_path, case)
        effective = config["inference_precision"]
        if effective is not None and effective != _HINT_NAMES[case.precision]:
            raise PrecisionUnsupportedError(
                f"OpenVINO {device} compiled the model in {effective}, not "
                f"{_HINT_NAMES[case.precision]} as asked.",
                f"Use --precision {self._precision_of(effective)} on this device.",
            )
        if effective is not None:
            config["inference_precision_source"] = "reported"
        else:
            # AUTO/MULTI do not report it; a device without the hint (MYRIAD) runs its one
            # native precision, which precisions() checked above.
            config["inference_precision"] = _HINT_NAMES[case.precision]
            config["inference_precision_source"] = "requested" if hint_set else "device-native"
        tensor = self._input_tensor(compiled)
        config["input_shape"] = [int(d) for d in tensor.get_shape()]

        def compile_profiled() -> Any:
            return self._compile(model, device, {**properties, "PERF_COUNT": "YES"}, case.precision)

        return OpenVinoPrepared(self.api, compiled, tensor, case.mode, config, compile_profiled)

    @staticmethod
    def _precision_of(hint: str) -> str:
        for precision, name in _HINT_NAMES.items():
            if name == hint:
                return precision.value
        return hint

    def conversion_format(self) -> str:
        """The file this OpenVINO reads for a torch model (``OvApi.conversion_format``),
        so a converter on another interpreter makes that one."""
        return self.api.conversion_format()

    def convert(self, source: ModelSource) -> ConvertedModel:
        """The cached model file this API reads for a torch model, converting it if
        needed (the sweep calls this in a process of its own, before the cases)."""
        return self.api.convert(source)

    def _read(self, source: ModelSource) -> tuple[Any, Path, tuple[int, int, int] | None]:
        kind = convert.source_kind(source.name)
        input_size: tuple[int, int, int] | None = None
        if kind in (SourceKind.ZOO, SourceKind.TORCHSCRIPT):
            converted = self.api.convert(source)
            path, input_size = converted.path, converted.input_size
        else:
            path = convert.model_file(source.name)
            if source.weights_path:
                log.warning(
                    "weights %s ignored: %s carries its own weights", source.weights_path, path
                )
        try:
            model = self.core.read_model(str(path))
        except RuntimeError as exc:
            _raise_if_out_of_memory(exc, f"read {path.name}")
            newer = newer_ir_error(path, self.api.version, _message(exc))
            if newer is not None:
                raise newer from exc
            raise ModelFileError(
                f"OpenVINO cannot read {path}: {_message(exc)}",
                "Check that the file is complete; for a cached conversion, delete it to convert again.",
            ) from exc
        return model, path, input_size

    def _reshape(
        self, model: Any, path: Path, batch: int, input_size: tuple[int, int, int] | None
    ) -> None:
        """Fix the batch (and any dynamic image) dimension: compiling a static shape is
        what a deployment does, and what lets one converted model serve every batch."""
        inputs = list(model.inputs)
        if len(inputs) != 1:
            raise ModelFileError(
                f"{path.name} has {len(inputs)} inputs; backbench feeds one image batch.",
                "Export the classifier with a single NCHW image input.",
            )
        shape = inputs[0].get_partial_shape()
        if shape.rank.is_dynamic or shape.rank.get_length() != 4:
            raise ModelFileError(
                f"{path.name} has input shape {shape}; backbench expects a 4-D image batch.",
                "Export the model with an input of shape (batch, channels, height, width).",
            )
        if any(shape[i].is_static and shape[i].get_length() == 0 for i in range(4)):
            from core.zoo.files import zero_sized_input

            dims_shown = [
                str(shape[i].get_length()) if shape[i].is_static else "?" for i in range(4)
            ]
            names = inputs[0].get_names()  # a set; empty for an unnamed input
            raise zero_sized_input(path, min(names) if names else "?", dims_shown)
        from core.zoo import get_card

        fill = input_size or get_card(str(path)).input_size
        dims = [batch] + [
            shape[i].get_length() if shape[i].is_static else int(fill[i - 1]) for i in range(1, 4)
        ]
        try:
            model.reshape(self.api.partial_shape(dims))
        except RuntimeError as exc:
            _raise_if_out_of_memory(exc, f"reshaped {path.name} to {dims}")
            raise ModelFileError(
                f"{path.name} cannot be reshaped to {dims}: {_message(exc)}",
                "Export it with a dynamic batch axis (torch.onnx.export dynamic_axes={'input': {0: 'batch'}}).",
            ) from exc

    def _compile(
        self, model: Any, device: str, properties: dict[str, Any], precision: Precision
    ) -> Any:
        try:
            return self.core.compile_model(model, device, properties)
        except RuntimeError as exc:
            _raise_if_out_of_memory(exc, f"compiled the model for {device}")
            text = _message(exc)
            if "INFERENCE_PRECISION_HINT" in text or "inference_precision" in text.lower():
                raise PrecisionUnsupportedError(
                    f"OpenVINO {device} rejected precision {precision.value}: {text}",
                    f"Use one of: {', '.join(p.value for p in self.precisions(device))}.",
                ) from exc
            if re.search(
                r"Cannot load library|not registered|Failed to create plugin|device is not",
                text,
                re.I,
            ):
                raise DeviceUnavailableError(
                    f"OpenVINO cannot use {device}: {text}", self._device_hint()
                ) from exc
            raise ModelFileError(
                f"OpenVINO could not compile the model for {device}: {text}",
                "The device may lack an operation the model uses; try another device or backend.",
            ) from exc

    def _config(
        self,
        compiled: Any,
        device: str,
        bases: list[str],
        properties: dict[str, Any],
        model_path: Path,
        case: Case,
    ) -> dict[str, Any]:
        def read(name: str) -> Any:
            try:
                return _jsonable(compiled.get_property(name))
            except RuntimeError as exc:
                log.debug("compiled model does not report %s: %s", name, _message(exc))
                return None

        precision = read("INFERENCE_PRECISION_HINT")
        nireq = read("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
        names = [_jsonable(self._device_property(b, "FULL_DEVICE_NAME")) for b in bases]
        return {
            "openvino_version": self.api.version,
            "api": self.api.name,
            "device": device,
            "device_name": ", ".join(str(n) for n in names if n),
            "execution_devices": read("EXECUTION_DEVICES"),
            "requested": dict(properties),
            "performance_hint": read("PERFORMANCE_HINT"),
            "inference_precision": precision_name(precision) if precision is not None else None,
            "num_streams": read("NUM_STREAMS"),
            "inference_num_threads": read("INFERENCE_NUM_THREADS"),
            "optimal_number_of_infer_requests": nireq,
            "nireq": int(nireq) if case.mode is Mode.THROUGHPUT and nireq else 1,
            "streams": read("NUM_STREAMS") if case.mode is Mode.THROUGHPUT else 1,
            "async": case.mode is Mode.THROUGHPUT,
            "model_path": str(model_path),
            "model_format": "onnx" if model_path.suffix.lower() == ".onnx" else "ir",
        }

    def _input_tensor(self, compiled: Any) -> Any:
        port = compiled.inputs[0]
        shape = [int(d) for d in port.get_shape()]
        try:
            dtype = np.dtype(port.get_element_type().to_dtype())
        except (AttributeError, TypeError, RuntimeError):  # 2022.3 has no Type.to_dtype
            dtype = np.dtype(np.float32)
        if np.issubdtype(dtype, np.integer):
            data = (
                np.random.default_rng(convert.RANDOM_WEIGHTS_SEED)
                .integers(0, 255, size=shape)
                .astype(dtype)
            )
        else:
            data = convert.random_batch(shape, dtype)
        # Tensor(array) may share the array's memory; the Prepared object keeps the tensor.
        return self.api.tensor(np.ascontiguousarray(data))


@dataclass(frozen=True, slots=True)
class _ExecNode:
    layer_type: str
    fused: tuple[str, ...]
    precision: str
    inputs: tuple[tuple[int, ...], ...]
    outputs: tuple[tuple[int, ...], ...]


def _rt(info: Any, key: str) -> str:
    """A runtime-info entry as text, on the 2023+ API and 2022.3's alike."""
    try:
        value = info[key]
    except (KeyError, IndexError, RuntimeError, TypeError):
        return ""
    for read in (lambda v: v.astype(str), lambda v: v.value, str):
        try:
            text = read(value)
        except (AttributeError, RuntimeError, TypeError):
            continue
        if isinstance(text, str):
            return text
    return ""


def _static(shape: Any) -> tuple[int, ...] | None:
    try:
        return tuple(int(d) for d in shape.to_shape()) if shape.is_static else None
    except (AttributeError, RuntimeError, TypeError):
        return None


def _execution_graph(compiled: Any) -> dict[str, _ExecNode]:
    """The compiled model's execution graph by node name: what each executed node is
    (its layer type after fusion, the original layers it holds), its runtime precision
    and its static input and output shapes."""
    nodes: dict[str, _ExecNode] = {}
    try:
        ops = compiled.get_runtime_model().get_ordered_ops()
    except (AttributeError, RuntimeError) as exc:
        log.debug("no execution graph: %s", exc)
        return nodes
    for op in ops:
        info = op.get_rt_info()
        inputs = tuple(s for s in (_static(op.input_value(i).get_partial_shape()) for i in range(op.get_input_size())) if s is not None)
        outputs = tuple(s for s in (_static(op.get_output_partial_shape(i)) for i in range(op.get_output_size())) if s is not None)
        fused = tuple(n for n in _rt(info, "originalLayersNames").split(",") if n)
        nodes[op.get_friendly_name()] = _ExecNode(
            layer_type=_rt(info, "layerType") or op.get_type_name(), fused=fused,
            precision=_rt(info, "runtimePrecision") or _rt(info, "outputPrecisions").split(",")[0],
            inputs=inputs, outputs=outputs,
        )  # fmt: skip
    return nodes


BACKEND = OpenVinoBackend()
