"""The ONNX Runtime backend: the CPU execution provider, and the CUDA EP where present.

Zoo models and TorchScript files are exported to ONNX once (cached, dynamic batch axis)
and every batch size reuses that file. ``InferenceSession.run`` is synchronous; there is
no request queue, so throughput mode runs one request at a time (``"streams": 1``).

Timing: on CPU ``perf_counter_ns`` around ``session.run`` with a pre-made numpy batch. On
CUDA the batch lives on the device through an IOBinding, and the clock stops after the
outputs are synchronised, so host<->device copies are not billed to the model.

Precision: fp32 only. Converting a graph to fp16 reliably needs a float16 converter with
per-op block lists that is not part of ONNX Runtime, so fp16/bf16 are refused with a
pointer to the backends that do them.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as _ort_state

from core.backends import convert
from core.backends.base import (
    PHASE_COMPILE,
    PHASE_LOAD,
    ModelSource,
    PhaseHook,
    SynchronousRequests,
    no_phase,
)
from core.backends.convert import SourceKind
from core.backends.profiling import RawLayer, median_profile, run_profiled, shapes_of
from core.errors import (
    CaseFailure,
    DeviceUnavailableError,
    ModelFileError,
    PrecisionUnsupportedError,
)
from core.results import Backend, Case, FailureKind, LayerProfile, Precision, canonical_device

log = logging.getLogger(__name__)

CPU_EP = "CPUExecutionProvider"
CUDA_EP = "CUDAExecutionProvider"
# Every error type the ORT bindings raise; the set differs between releases.
_ORT_ERRORS: tuple[type[BaseException], ...] = tuple(
    v for v in vars(_ort_state).values() if isinstance(v, type) and issubclass(v, Exception)
)
_ORT_MAX_WARNING = 3  # log_severity_level: errors only; ORT warns about every unused initializer


def _cuda_device_count() -> int:
    try:
        import torch
    except ImportError:
        return 1  # the EP is there; without torch assume one device, cuda:0
    return max(torch.cuda.device_count(), 0)


def _nvml_used_mb(index: int) -> float | None:
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        return float(pynvml.nvmlDeviceGetMemoryInfo(handle).used) / (1024 * 1024)
    except pynvml.NVMLError as exc:
        log.debug("NVML memory figure unavailable: %s", exc)
        return None


class OrtPrepared(SynchronousRequests):
    """An InferenceSession with its input batch in place (host numpy, or device-bound)."""

    def __init__(
        self,
        session: Any,
        batch: np.ndarray,
        device_id: int | None,
        config: dict[str, Any],
        open_profiled: Callable[[str], Any] | None = None,
    ) -> None:
        self._open_profiled = open_profiled
        self._session = session
        self._input_name = session.get_inputs()[0].name
        self._output_names = [o.name for o in session.get_outputs()]
        self._feed = {self._input_name: batch}
        self._device_id = device_id
        self.config = config
        self._binding: Any = None
        if device_id is not None:
            self._binding = session.io_binding()
            device_batch = ort.OrtValue.ortvalue_from_numpy(batch, "cuda", device_id)
            self._binding.bind_ortvalue_input(self._input_name, device_batch)
            self._device_batch = device_batch
            for name in self._output_names:
                self._binding.bind_output(name, "cuda", device_id)

    def infer_ns(self) -> int:
        if self._binding is not None:
            self._binding.synchronize_inputs()
            t0 = time.perf_counter_ns()
            self._session.run_with_iobinding(self._binding)
            self._binding.synchronize_outputs()
            return time.perf_counter_ns() - t0
        t0 = time.perf_counter_ns()
        self._session.run(self._output_names, self._feed)
        return time.perf_counter_ns() - t0

    def outputs(self) -> np.ndarray:
        """One untimed inference; the first output as float32 numpy (to check conversions)."""
        if self._binding is not None:
            self._session.run_with_iobinding(self._binding)
            first = self._binding.copy_outputs_to_cpu()[0]
        else:
            first = self._session.run(self._output_names[:1], self._feed)[0]
        return np.asarray(first, dtype=np.float32)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits of ``batch`` (float32 NCHW, the prepared batch size), as float32 numpy."""
        dtype = self._feed[self._input_name].dtype if self._feed else np.dtype(np.float32)
        first = self._session.run(self._output_names[:1], {self._input_name: batch.astype(dtype, copy=False)})[0]
        return np.asarray(first, dtype=np.float32)

    def profile_layers(self) -> LayerProfile:
        """Per-node kernel times from ONNX Runtime's own profiler: a second session of
        the same model with profiling on (the timed one never had it), whose trace is
        split into its runs."""
        if self._open_profiled is None:
            raise CaseFailure(FailureKind.ERROR.value, "this ONNX Runtime model cannot be profiled")
        with tempfile.TemporaryDirectory(prefix="backbench-ort-") as folder:
            session = self._open_profiled(os.path.join(folder, "profile"))
            feed = dict(self._feed)
            totals_all: list[float] = []

            def iterate() -> tuple[float, list[RawLayer]]:
                t0 = time.perf_counter_ns()
                session.run(self._output_names, feed)
                totals_all.append((time.perf_counter_ns() - t0) / 1e6)
                return totals_all[-1], []

            _, totals = run_profiled(iterate)
            trace = session.end_profiling()
            with open(trace, encoding="utf-8") as fh:
                events = json.load(fh)
        runs = _ort_runs(events)[-len(totals):]  # the warm-up runs come first
        return median_profile(runs, totals, "onnxruntime profiling")

    def reset_peak_device_memory(self) -> None:
        return None

    def device_memory_mb(self) -> dict[str, float]:
        if self._device_id is None:
            return {}
        used = _nvml_used_mb(self._device_id)
        return {} if used is None else {"nvml_used_mb": used}

    def close(self) -> None:
        self._binding = None
        self._session = None
        self._feed = {}


class OnnxRuntimeBackend:
    backend = Backend.ONNXRUNTIME

    def version(self) -> str:
        return str(ort.__version__)

    def devices(self) -> list[str]:
        providers = ort.get_available_providers()
        found = ["cpu"] if CPU_EP in providers else []
        if CUDA_EP in providers:
            found += [f"cuda:{i}" for i in range(_cuda_device_count())]
        return found

    def resolve_device(self, device: str) -> str:
        name = canonical_device(Backend.ONNXRUNTIME, device)
        available = self.devices()
        if name in available:
            return name
        hint = f"Available devices: {', '.join(available) or 'none'}."
        if name.startswith("cuda") and CUDA_EP not in ort.get_available_providers():
            hint = (
                f"This onnxruntime has no CUDA execution provider (install onnxruntime-gpu). {hint}"
            )
        raise DeviceUnavailableError(f"Device {device!r} is not available to onnxruntime.", hint)

    def precisions(self, device: str) -> list[Precision]:
        self.resolve_device(device)
        return [Precision.FP32]

    def prepare(
        self, case: Case, source: ModelSource, on_phase: PhaseHook = no_phase
    ) -> OrtPrepared:
        on_phase(PHASE_LOAD)
        device = self.resolve_device(case.device)
        if case.precision is not Precision.FP32:
            raise PrecisionUnsupportedError(
                f"The onnxruntime backend measures fp32 only, not {case.precision.value}.",
                "Use --precision fp32, or --backend openvino / torch for fp16 and bf16.",
            )
        path, input_size = self._model_file(source)

        on_phase(PHASE_COMPILE)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = _ORT_MAX_WARNING
        device_id = int(device.split(":")[1]) if device.startswith("cuda") else None
        providers: list[Any] = (
            [CPU_EP] if device_id is None else [(CUDA_EP, {"device_id": device_id}), CPU_EP]
        )
        try:
            session = ort.InferenceSession(str(path), options, providers=providers)
        except _ORT_ERRORS as exc:
            raise ModelFileError(
                f"onnxruntime cannot load {path}: {convert.framework_message(exc)}",
                "Check that the file is a complete ONNX model; for a cached export, delete it to export again.",
            ) from exc
        if device_id is not None and CUDA_EP not in session.get_providers():
            raise DeviceUnavailableError(
                f"onnxruntime could not start the CUDA execution provider on {device}.",
                "Check the CUDA and cuDNN libraries that onnxruntime-gpu needs (see its log).",
            )
        batch = self._batch(session, path, case.batch_size, input_size)
        config = self._config(session, options, device, path, batch.shape)

        def open_profiled(prefix: str) -> Any:
            profiled = ort.SessionOptions()
            profiled.graph_optimization_level = options.graph_optimization_level
            profiled.log_severity_level = _ORT_MAX_WARNING
            profiled.enable_profiling = True
            profiled.profile_file_prefix = prefix
            return ort.InferenceSession(str(path), profiled, providers=providers)

        try:
            return OrtPrepared(session, batch, device_id, config, open_profiled)
        except _ORT_ERRORS as exc:
            raise DeviceUnavailableError(
                f"onnxruntime could not place the input on {device}: {convert.framework_message(exc)}"
            ) from exc

    def convert(self, source: ModelSource) -> convert.ConvertedModel:
        """The cached ONNX export of a torch model, exporting it if needed (the sweep
        calls this in a process of its own, before the cases)."""
        return convert.ensure_onnx(source)

    def _model_file(self, source: ModelSource) -> tuple[Path, tuple[int, int, int] | None]:
        kind = convert.source_kind(source.name)
        if kind is SourceKind.OPENVINO_IR:
            raise ModelFileError(
                f"{source.name!r} is an OpenVINO IR, which onnxruntime cannot read.",
                "Measure it with --backend openvino, or give the .onnx file.",
            )
        if kind is SourceKind.ONNX:
            if source.weights_path:
                log.warning(
                    "weights %s ignored: %s carries its own weights",
                    source.weights_path,
                    source.name,
                )
            return convert.model_file(source.name), None
        converted = convert.ensure_onnx(source)
        return converted.path, converted.input_size

    @staticmethod
    def _batch(
        session: Any, path: Path, batch_size: int, input_size: tuple[int, int, int] | None
    ) -> np.ndarray:
        inputs = session.get_inputs()
        if len(inputs) != 1:
            raise ModelFileError(
                f"{path.name} has {len(inputs)} inputs; backbench feeds one image batch.",
                "Export the classifier with a single NCHW image input.",
            )
        shape = list(inputs[0].shape)
        if any(isinstance(d, int) and d == 0 for d in shape):
            from core.zoo.files import zero_sized_input

            raise zero_sized_input(
                path, inputs[0].name, [str(d) if d is not None else "?" for d in shape]
            )
        if len(shape) != 4:
            raise ModelFileError(
                f"{path.name} has input shape {shape}; backbench expects a 4-D image batch.",
                "Export the model with an input of shape (batch, channels, height, width).",
            )
        if isinstance(shape[0], int) and shape[0] != batch_size:
            raise ModelFileError(
                f"{path.name} has a fixed batch size of {shape[0]}; batch {batch_size} was asked for.",
                "Export it with a dynamic batch axis (torch.onnx.export dynamic_axes={'input': {0: 'batch'}}).",
            )
        if input_size is None:
            from core.zoo import get_card

            input_size = get_card(str(path)).input_size
        dims = [batch_size] + [
            d if isinstance(d, int) and d > 0 else int(input_size[i - 1])
            for i, d in enumerate(shape)
            if i > 0
        ]
        element = inputs[0].type  # e.g. "tensor(float)"
        dtype = np.float16 if element == "tensor(float16)" else np.float32
        return convert.random_batch(dims, dtype)

    @staticmethod
    def _config(
        session: Any, options: Any, device: str, path: Path, input_shape: tuple[int, ...]
    ) -> dict[str, Any]:
        return {
            "onnxruntime_version": str(ort.__version__),
            "device": device,
            "providers": list(session.get_providers()),
            "provider_options": {k: dict(v) for k, v in session.get_provider_options().items()},
            # 0 means ONNX Runtime's default: one intra-op thread per physical core.
            "intra_op_num_threads": int(options.intra_op_num_threads),
            "inter_op_num_threads": int(options.inter_op_num_threads),
            "cpu_count": os.cpu_count(),
            "graph_optimization_level": str(options.graph_optimization_level).split(".")[-1],
            "execution_mode": str(options.execution_mode).split(".")[-1],
            "io_binding": device.startswith("cuda"),
            "streams": 1,
            "async": False,
            "model_path": str(path),
            "input_shape": [int(d) for d in input_shape],
        }


BACKEND = OnnxRuntimeBackend()


def _ort_shapes(entries: Any) -> tuple[tuple[int, ...], ...]:
    """ORT's ``input_type_shape``: a list of {element type: shape}."""
    found = []
    for entry in entries or ():
        if isinstance(entry, dict):
            found.extend(entry.values())
    return shapes_of(found)


def _ort_runs(events: list[dict[str, Any]]) -> list[list[RawLayer]]:
    """The node events of an ORT trace, one list per model run (each run's nodes lie
    inside its ``model_run`` span), with each node's kernel time."""
    spans = sorted(
        (int(e["ts"]), int(e["ts"]) + int(e.get("dur", 0)))
        for e in events
        if e.get("cat") == "Session" and e.get("name") == "model_run"
    )
    runs: list[list[RawLayer]] = [[] for _ in spans]
    for event in sorted((e for e in events if e.get("cat") == "Node"), key=lambda e: int(e["ts"])):
        name = str(event.get("name", ""))
        if not name.endswith("_kernel_time"):
            continue
        ts = int(event["ts"])
        index = next((i for i, (start, end) in enumerate(spans) if start <= ts <= end), None)
        if index is None:
            continue
        args = event.get("args") or {}
        runs[index].append(RawLayer(
            name=name[: -len("_kernel_time")], type=str(args.get("op_name", "")),
            exec_type=str(args.get("provider", "")), time_ms=int(event.get("dur", 0)) / 1e3,
            input_shapes=_ort_shapes(args.get("input_type_shape")),
            output_shapes=_ort_shapes(args.get("output_type_shape")),
            precision="f32",
        ))  # fmt: skip
    return runs
