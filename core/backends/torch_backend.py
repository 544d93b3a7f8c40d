"""The PyTorch backend: eager models on CPU and CUDA.

Timing: on CPU ``perf_counter_ns`` around the forward; on CUDA a pair of CUDA events
recorded on the model's stream, after a device sync, so that queued work from earlier
iterations is not billed to this one.

Throughput mode: eager PyTorch has no asynchronous request queue, so ``submit`` runs the
forward synchronously and calls ``on_done`` before returning (one stream, one request in
flight). Throughput figures from this backend therefore equal batch / latency; that is
recorded as ``"streams": 1`` in the config rather than pretending otherwise.
"""

from __future__ import annotations

import logging
import platform
import time
from typing import Any

import numpy as np
import torch

from core.backends.base import (
    PHASE_COMPILE,
    PHASE_LOAD,
    ModelSource,
    PhaseHook,
    SynchronousRequests,
    no_phase,
)
from core.backends.convert import (
    SourceKind,
    input_size_of,
    load_torch_module,
    random_batch,
    source_kind,
)
from core.backends.profiling import RawLayer, median_profile, run_profiled, shapes_of
from core.errors import DeviceUnavailableError, PrecisionUnsupportedError, UsageError
from core.results import Backend, Case, LayerProfile, Precision, canonical_device

log = logging.getLogger(__name__)

_DTYPES = {
    Precision.FP32: torch.float32,
    Precision.FP16: torch.float16,
    Precision.BF16: torch.bfloat16,
}
_BYTES_PER_MB = 1024 * 1024
_cpu_fp16_ok: bool | None = None


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        log.debug("no /proc/cpuinfo; falling back to platform.processor()")
    return platform.processor() or platform.machine()


def _cpu_supports_fp16() -> bool:
    """Whether this torch build runs a small fp16 CNN on CPU (older builds lack kernels)."""
    global _cpu_fp16_ok
    if _cpu_fp16_ok is None:
        probe = torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 3),
            torch.nn.BatchNorm2d(4),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
            torch.nn.Linear(4, 2),
        ).eval()
        try:
            with torch.inference_mode():
                probe.half()(torch.zeros(1, 3, 8, 8, dtype=torch.float16))
            _cpu_fp16_ok = True
        except (RuntimeError, NotImplementedError) as exc:
            log.debug("CPU fp16 probe failed: %s", exc)
            _cpu_fp16_ok = False
    return _cpu_fp16_ok


class TorchPrepared(SynchronousRequests):
    """A torch module on its device with its input batch in place."""

    def __init__(
        self, module: Any, batch: Any, device: torch.device, config: dict[str, Any]
    ) -> None:
        self._module = module
        self._input = batch
        self._device = device
        self._cuda = device.type == "cuda"
        self.config = config
        if self._cuda:
            self._stream = torch.cuda.current_stream(device)
            self._start = torch.cuda.Event(enable_timing=True)
            self._end = torch.cuda.Event(enable_timing=True)

    def infer_ns(self) -> int:
        with torch.inference_mode():
            if self._cuda:
                torch.cuda.synchronize(self._device)
                self._start.record(self._stream)
                self._module(self._input)
                self._end.record(self._stream)
                self._end.synchronize()
                return int(self._start.elapsed_time(self._end) * 1e6)
            t0 = time.perf_counter_ns()
            self._module(self._input)
            return time.perf_counter_ns() - t0

    def outputs(self) -> Any:
        """One untimed forward; the first output as float32 numpy (to check conversions)."""
        with torch.inference_mode():
            out = self._module(self._input)
        out = out[0] if isinstance(out, (tuple, list)) else out
        return out.float().cpu().numpy()

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits of ``batch`` (float32 NCHW, any batch size), as float32 numpy."""
        dtype = self._input.dtype
        with torch.inference_mode():
            out = self._module(torch.from_numpy(batch).to(device=self._device, dtype=dtype))
        out = out[0] if isinstance(out, (tuple, list)) else out
        return out.float().cpu().numpy()

    def profile_layers(self) -> LayerProfile:
        """Per-op times from torch.profiler (CPU time, or the device time of the op's
        CUDA kernels), with input shapes and the profiler's FLOPs: the ops the module
        calls directly, in order. Eager torch fuses nothing, so an op is a layer."""
        from torch.profiler import ProfilerActivity, profile, record_function

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self._cuda else [])
        root = "backbench_iteration"

        def iterate() -> tuple[float, list[RawLayer]]:
            with torch.inference_mode(), profile(activities=activities, record_shapes=True, with_flops=True) as prof:
                t0 = time.perf_counter_ns()
                with record_function(root):
                    self._module(self._input)
                if self._cuda:
                    torch.cuda.synchronize(self._device)
                total_ms = (time.perf_counter_ns() - t0) / 1e6
            layers = []
            for event in prof.events():
                parent = event.cpu_parent
                if parent is None or parent.name != root:
                    continue
                us = event.device_time_total if self._cuda else event.cpu_time_total
                layers.append(RawLayer(
                    name=event.name, type=event.name, exec_type=self._device.type, time_ms=us / 1e3,
                    input_shapes=shapes_of(s for s in event.input_shapes if s),
                    flops=int(event.flops) if getattr(event, "flops", 0) else None,
                    precision=str(self._input.dtype).replace("torch.", ""),
                ))  # fmt: skip
            return total_ms, layers

        runs, totals = run_profiled(iterate)
        size = self._input.element_size()
        return median_profile(runs, totals, "torch.profiler", element_bytes=size)

    def reset_peak_device_memory(self) -> None:
        if self._cuda:
            torch.cuda.reset_peak_memory_stats(self._device)

    def device_memory_mb(self) -> dict[str, float]:
        if not self._cuda:
            return {}
        figures = {
            "torch_max_allocated_mb": torch.cuda.max_memory_allocated(self._device) / _BYTES_PER_MB,
            "torch_max_reserved_mb": torch.cuda.max_memory_reserved(self._device) / _BYTES_PER_MB,
        }
        try:
            # Needs pynvml (or amdsmi); not a dependency, so it is used only when present.
            figures["nvml_used_mb"] = torch.cuda.device_memory_used(self._device) / _BYTES_PER_MB
        except (ImportError, ModuleNotFoundError, RuntimeError, AttributeError) as exc:
            log.debug("NVML memory figure unavailable: %s", exc)
        return figures

    def close(self) -> None:
        self._module = None
        self._input = None
        if self._cuda:
            torch.cuda.empty_cache()


class TorchBackend:
    backend = Backend.TORCH

    def version(self) -> str:
        return str(torch.__version__)

    def devices(self) -> list[str]:
        found = ["cpu"]
        if torch.cuda.is_available():
            found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        return found

    def resolve_device(self, device: str) -> str:
        """Canonical device string ("cuda" -> "cuda:0"); DeviceUnavailableError if absent."""
        name = canonical_device(Backend.TORCH, device)
        available = self.devices()
        if name in available:
            return name
        if name.startswith("cuda") and not torch.cuda.is_available():
            hint = (
                "This torch build has no CUDA support; install a CUDA build of torch."
                if torch.version.cuda is None
                else "No CUDA GPU is visible (check the driver and CUDA_VISIBLE_DEVICES)."
            )
            raise DeviceUnavailableError(
                f"Device {device!r} is not available to torch.",
                f"{hint} Available devices: {', '.join(available)}.",
            )
        raise DeviceUnavailableError(
            f"Device {device!r} is not available to torch.",
            f"Available devices: {', '.join(available)}.",
        )

    def precisions(self, device: str) -> list[Precision]:
        name = self.resolve_device(device)
        if name == "cpu":
            found = [Precision.FP32, Precision.BF16]
            if _cpu_supports_fp16():
                found.append(Precision.FP16)
            return found
        found = [Precision.FP32, Precision.FP16]
        with torch.cuda.device(torch.device(name)):
            try:
                # Emulated bf16 (pre-Ampere) is slow enough to mislead a benchmark.
                native_bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
            except TypeError:  # torch < 2.3 has no including_emulation
                native_bf16 = torch.cuda.is_bf16_supported()
            if native_bf16:
                found.append(Precision.BF16)
        return found

    def prepare(
        self, case: Case, source: ModelSource, on_phase: PhaseHook = no_phase
    ) -> TorchPrepared:
        on_phase(PHASE_LOAD)
        device_name = self.resolve_device(case.device)
        supported = self.precisions(device_name)
        if case.precision not in supported:
            raise PrecisionUnsupportedError(
                f"torch on {device_name} does not support {case.precision.value}.",
                f"Use one of: {', '.join(p.value for p in supported)}.",
            )
        kind = source_kind(source.name)
        if kind in (SourceKind.ONNX, SourceKind.OPENVINO_IR):
            raise UsageError(
                f"{source.name!r} is an {kind.value} file; the torch backend runs zoo models "
                "and TorchScript files only.",
                "Measure it with --backend openvino or --backend onnxruntime.",
            )
        device = torch.device(device_name)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dtype = _DTYPES[case.precision]
        input_size = input_size_of(source)
        module, weights_label = load_torch_module(source, device=device_name)

        on_phase(PHASE_COMPILE)
        module = module.to(device=device, dtype=dtype)
        batch = torch.from_numpy(random_batch((case.batch_size, *input_size))).to(
            device=device, dtype=dtype
        )
        config = self._config(device, dtype, kind, weights_label, (case.batch_size, *input_size))
        if device.type == "cpu" and dtype is torch.float16:
            # CPU fp16 kernels are incomplete in some builds: one batch-1 forward proves the
            # model runs before the sweep relies on it (so its first inference is not cold).
            self._check_cpu_fp16(module, batch[:1], source.name)
            config["precheck_forward"] = True
        return TorchPrepared(module, batch, device, config)

    @staticmethod
    def _check_cpu_fp16(module: Any, sample: Any, name: str) -> None:
        try:
            with torch.inference_mode():
                module(sample)
        except (RuntimeError, NotImplementedError) as exc:
            raise PrecisionUnsupportedError(
                f"{name} cannot run in fp16 on CPU with torch {torch.__version__}: {exc}",
                "Use --precision fp32 or bf16 on CPU, or fp16 on a CUDA device.",
            ) from exc

    def _config(
        self,
        device: torch.device,
        dtype: torch.dtype,
        kind: SourceKind,
        weights_label: str,
        input_shape: tuple[int, ...],
    ) -> dict[str, Any]:
        config: dict[str, Any] = {
            "torch_version": str(torch.__version__),
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else _cpu_name(),
            "dtype": str(dtype).replace("torch.", ""),
            "num_threads": torch.get_num_threads(),
            "num_interop_threads": torch.get_num_interop_threads(),
            "mkldnn_enabled": bool(
                torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
            ),
            "cudnn_enabled": bool(torch.backends.cudnn.enabled),
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
            "inference_mode": True,
            "streams": 1,
            "async": False,
            "source": kind.value,
            "weights": weights_label,
            "input_shape": list(input_shape),
        }
        if device.type == "cuda":
            config["cuda_version"] = torch.version.cuda
            config["cudnn_version"] = torch.backends.cudnn.version()
            # TF32 changes what "fp32" means on Ampere and later; record it.
            config["float32_matmul_precision"] = torch.get_float32_matmul_precision()
            try:
                config["cudnn_allow_tf32"] = bool(torch.backends.cudnn.allow_tf32)
            except RuntimeError as exc:  # torch refuses to mix the old and new TF32 APIs
                log.debug("cudnn.allow_tf32 unreadable: %s", exc)
            config["timer"] = "cuda_events"
        else:
            config["timer"] = "perf_counter_ns"
        return config


BACKEND = TorchBackend()
