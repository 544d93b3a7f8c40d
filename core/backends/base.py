"""The small Protocol every backend implements.

A backend turns a Case plus a ModelSource into a PreparedModel: the model loaded,
compiled for the device and precision, with an input batch already in place. The harness
then only calls ``infer_ns`` (latency mode) or ``submit``/``drain`` (throughput mode), so
the timed loop holds no framework code of its own.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from core.results import Backend, Case, Precision

# Called by prepare() as it enters each phase, so the watchdog can apply per-phase limits
# (an NCS2 compile takes minutes; a CPU load takes seconds).
PhaseHook = Callable[[str], None]

PHASE_CONVERT = "convert"  # a conversion job, in its own process before the case
PHASE_LOAD = "load"
PHASE_COMPILE = "compile"
PHASE_WARMUP = "warmup"
PHASE_MEASURE = "measure"
PHASE_PROFILE = "profile"  # --profile-layers: the profiled pass after the timed loop


def no_phase(_phase: str) -> None:
    return None


# How frameworks say they ran out of memory: C++'s std::bad_alloc ("std::bad_alloc", or
# "bad allocation" from MSVC's runtime; OpenVINO, ORT), ENOMEM's strerror, torch's "CUDA
# out of memory", "Failed to allocate N bytes" (OpenVINO's CPU plugin, ORT), and OpenVINO
# GPU's "Exceeded max size of memory allocation" / "out of GPU resources".
_OUT_OF_MEMORY = re.compile(
    r"bad_alloc|bad allocation|out of memory|(?:can(?:no|')t|could not) allocate memory"
    r"|failed to allocate|exceeded max size of memory|out of (?:gpu|device) resources",
    re.IGNORECASE,
)
OUT_OF_MEMORY_HINT = (
    "Measure a smaller batch size, close other programs that hold memory, or raise "
    "--max-mem-mb if it is set."
)


def says_out_of_memory(text: str) -> bool:
    """Whether a framework's error text says that memory ran out."""
    return _OUT_OF_MEMORY.search(text) is not None


@dataclass(frozen=True, slots=True)
class ModelSource:
    """What to measure: a zoo model name, or a user model file (.onnx, .xml, .pt).

    ``weights_path`` is a local state-dict file for a zoo model; None means random init
    (weights=None), which is what tests and weightless machines use.
    """

    name: str
    weights_path: str | None = None
    # Build a zoo model with this many classes (a fine-tuned head); None: its default.
    num_classes: int | None = None

    @property
    def weights_label(self) -> str:
        return f"file:{self.weights_path}" if self.weights_path else "random"


class PreparedModel(Protocol):
    """A model ready to run one batch, repeatedly, on one device."""

    # The effective runtime configuration to record with the measurement: e.g. the
    # OpenVINO INFERENCE_PRECISION_HINT, PERFORMANCE_HINT, NUM_STREAMS, threads,
    # optimal number of infer requests; torch threads, dtype, cudnn.benchmark; the ORT
    # execution provider and its options.
    config: dict[str, Any]

    def infer_ns(self) -> int:
        """Run one synchronous inference of the batch and return its latency in ns,
        measured with the device's correct clock (CUDA events after a sync on CUDA)."""
        ...

    def max_in_flight(self) -> int:
        """How many requests throughput mode keeps in flight (1 when not asynchronous)."""
        ...

    def submit(self, on_done: Callable[[int], None]) -> None:
        """Throughput mode: start one asynchronous inference of the batch. Blocks while
        all requests are busy. ``on_done(latency_ns)`` is called when it completes, possibly
        from another thread."""
        ...

    def drain(self) -> None:
        """Throughput mode: wait until every submitted request has completed."""
        ...

    def reset_peak_device_memory(self) -> None:
        """Start a new peak-memory window (after warm-up). No-op on CPU."""
        ...

    def device_memory_mb(self) -> dict[str, float]:
        """Device memory figures, in MB: on CUDA ``torch_max_allocated_mb``,
        ``torch_max_reserved_mb`` and, where NVML is present, ``nvml_used_mb``. Empty on
        CPU."""
        ...

    def close(self) -> None: ...


class SynchronousRequests:
    """Throughput mode for frameworks without an asynchronous request queue (eager
    PyTorch, ONNX Runtime's session.run): one request in flight, run now, report now."""

    def infer_ns(self) -> int:
        raise NotImplementedError

    def max_in_flight(self) -> int:
        return 1

    def submit(self, on_done: Callable[[int], None]) -> None:
        on_done(self.infer_ns())

    def drain(self) -> None:
        return None


class BackendImpl(Protocol):
    backend: Backend

    def version(self) -> str: ...

    def devices(self) -> list[str]:
        """Devices that are really usable on this host (e.g. ['cpu', 'cuda:0'] or
        OpenVINO's available_devices)."""
        ...

    def precisions(self, device: str) -> list[Precision]: ...

    def prepare(
        self, case: Case, source: ModelSource, on_phase: PhaseHook = no_phase
    ) -> PreparedModel:
        """Load, convert and compile. Raises core.errors types (DeviceUnavailableError,
        PrecisionUnsupportedError, ModelFileError, ...) for expected problems."""
        ...
