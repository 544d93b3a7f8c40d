"""The data model: Case, LatencyStats, Measurement, StoppingRule, RunSpec, Run.

Everything else (store, analysis, agent, GUI) speaks these types. This module imports
only the standard library and numpy so that workers on Python 3.10 and the torch-less
GUI can use it.

The long schema (``Measurement.to_row``) is the external contract: one row per
measurement, column names as in ``MEASUREMENT_COLUMNS``. A CSV with these columns is
accepted wherever a store is.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from typing import Any

import numpy as np

from core.errors import UsageError

NS_PER_MS = 1_000_000


class Backend(str, Enum):
    TORCH = "torch"
    OPENVINO = "openvino"
    ONNXRUNTIME = "onnxruntime"


class Mode(str, Enum):
    LATENCY = "latency"  # synchronous, one request in flight
    THROUGHPUT = "throughput"  # asynchronous, several streams/requests in flight
    ACCURACY = "accuracy"  # top-1/top-5 over a dataset; no latency statistics


class Precision(str, Enum):
    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"


class Status(str, Enum):
    OK = "ok"
    FAILED = "failed"
    CANCELLED = "cancelled"


class FailureKind(str, Enum):
    """Why a case failed. Recorded next to ``Status.FAILED``."""

    ERROR = "error"  # the worker reported an exception (bad model, unsupported op, ...)
    CRASHED = "crashed"  # killed by a signal it did not ask for (SIGSEGV, SIGABRT, ...)
    OOM = "oom"  # out of memory: MemoryError, RLIMIT_AS, or the kernel's OOM killer
    TIMEOUT = "timeout"  # the watchdog killed it: a phase limit or a missed heartbeat
    INTERRUPTED = "interrupted"  # the runner itself stopped mid-case (agent death)


def _enum(enum_type: type[Enum], value: Any, what: str) -> Any:
    if isinstance(value, enum_type):
        return value
    try:
        return enum_type(str(value).lower())
    except ValueError:
        allowed = ", ".join(m.value for m in enum_type)  # type: ignore[attr-defined]
        raise UsageError(f"Unknown {what} {value!r}.", f"Use one of: {allowed}.") from None


def parse_backend(value: Any) -> Backend:
    return _enum(Backend, value, "backend")


def parse_mode(value: Any) -> Mode:
    return _enum(Mode, value, "mode")


def parse_precision(value: Any) -> Precision:
    aliases = {"f32": "fp32", "f16": "fp16", "float32": "fp32", "float16": "fp16"}
    return _enum(Precision, aliases.get(str(value).lower(), value), "precision")


# The most cases one run may hold: 80 models at 64 batch sizes each fit, a request that
# would make a run of millions does not.
MAX_CASES = 10_000
# A worker runtime's name (core.measure.runtimes): chosen by name, never by path.
RUNTIME_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")  # fullmatch: no "\n" after it


def canonical_device(backend: Backend, device: str) -> str:
    """One spelling per device, so ``cpu``, ``Cpu`` and ``CPU`` are one platform.

    OpenVINO names devices in upper case (``CPU``, ``GPU.1``, ``AUTO:GPU,CPU``, spaces
    dropped from a device list); torch and ONNX Runtime in lower case, with ``cuda``
    meaning ``cuda:0``. Whether the device exists is the backend's to check.
    """
    name = str(device).strip()
    if backend is Backend.OPENVINO:
        return name.upper().replace(" ", "")
    name = name.lower()
    return "cuda:0" if name == "cuda" else name


def unique(items: Any) -> tuple[Any, ...]:
    """The items in their first order, each once."""
    return tuple(dict.fromkeys(items))


def parse_batch_sizes(text: str | int | list[int] | tuple[int, ...]) -> tuple[int, ...]:
    """``"1,2,4"`` -> (1, 2, 4). Every entry must be a positive integer."""
    if isinstance(text, int):
        items: list[Any] = [text]
    elif isinstance(text, (list, tuple)):
        items = list(text)
    else:
        items = [part.strip() for part in str(text).split(",")]
    sizes: list[int] = []
    for item in items:
        try:
            if isinstance(item, bool):
                raise ValueError
            value = int(item) if not isinstance(item, float) else None
            if value is None or str(item).strip() not in (str(value), f"+{value}"):
                raise ValueError
        except (TypeError, ValueError):
            raise UsageError(
                f"Batch size {item!r} is not a positive integer.",
                "Give batch sizes as a comma-separated list, e.g. --batch 1,2,4,8.",
            ) from None
        if value < 1:
            raise UsageError(
                f"Batch size {value} is not a positive integer.",
                "Give batch sizes of 1 or more, e.g. --batch 1,2,4,8.",
            )
        if value not in sizes:
            sizes.append(value)
    if not sizes:
        raise UsageError("No batch size given.", "Use e.g. --batch 1,8.")
    return tuple(sizes)


@dataclass(frozen=True, slots=True)
class Case:
    """One measurable point."""

    model: str
    backend: Backend
    device: str
    precision: Precision
    batch_size: int
    mode: Mode = Mode.LATENCY

    def __post_init__(self) -> None:
        object.__setattr__(self, "device", canonical_device(self.backend, self.device))

    def label(self) -> str:
        return (
            f"{self.model} {self.backend.value}/{self.device}/{self.precision.value} "
            f"b{self.batch_size} {self.mode.value}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "backend": self.backend.value,
            "device": self.device,
            "precision": self.precision.value,
            "batch_size": self.batch_size,
            "mode": self.mode.value,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Case:
        return cls(
            model=str(data["model"]),
            backend=parse_backend(data["backend"]),
            device=str(data["device"]),
            precision=parse_precision(data["precision"]),
            batch_size=parse_batch_sizes(data["batch_size"])[0],
            mode=parse_mode(data.get("mode", "latency")),
        )


@dataclass(frozen=True, slots=True)
class StoppingRule:
    """When the timed loop stops.

    It runs at least ``min_iters`` iterations, then stops as soon as the relative 95% CI
    half-width of the median is at most ``target_ci``, or when ``max_time_s`` has passed
    (``target_met`` records which). ``max_iters`` bounds memory for very fast models.
    """

    min_iters: int = 10
    target_ci: float = 0.01
    max_time_s: float = 10.0
    max_iters: int = 100_000
    warmup_iters: int = 3
    warmup_time_s: float = 0.5

    def __post_init__(self) -> None:
        if self.min_iters < 1:
            raise UsageError("--min-iters must be at least 1.")
        if not (0 < self.target_ci < 1):
            raise UsageError(
                f"--target-ci {self.target_ci} is out of range.",
                "Give a fraction between 0 and 1, e.g. 0.01 for ±1%.",
            )
        if not (self.max_time_s > 0):
            raise UsageError("--max-time must be a positive number of seconds.")
        if self.max_iters < self.min_iters:
            raise UsageError("max_iters must be at least min_iters.")
        if self.warmup_iters < 1:
            raise UsageError("warm-up needs at least one iteration (first inference).")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StoppingRule:
        known = {f for f in cls.__dataclass_fields__}  # type: ignore[attr-defined]
        return cls(**{k: v for k, v in data.items() if k in known})


def median_ci95(sorted_ns: np.ndarray) -> tuple[float, float]:
    """Distribution-free 95% confidence interval of the median, from order statistics.

    The ranks come from the normal approximation of Binomial(n, 1/2); no assumption is
    made about the latency distribution (which is skewed and often bimodal). Returns
    (lower, upper) in the samples' unit; (nan, nan) below 6 samples.
    """
    n = int(sorted_ns.size)
    if n < 6:
        return (math.nan, math.nan)
    half_width_ranks = 1.959963984540054 * math.sqrt(n) / 2.0
    lo = max(int(math.floor(n / 2.0 - half_width_ranks)), 0)
    hi = min(int(math.ceil(n / 2.0 + half_width_ranks)), n - 1)
    return (float(sorted_ns[lo]), float(sorted_ns[hi]))


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """Statistics over raw latency samples (ns). ``ci95_rel`` is the relative half-width
    of the 95% CI of the median (nan when too few samples)."""

    n: int
    mean_ns: float
    std_ns: float
    median_ns: float
    p90_ns: float
    p99_ns: float
    min_ns: float
    max_ns: float
    ci95_rel: float

    @classmethod
    def from_samples(cls, samples_ns: Any) -> LatencyStats:
        data = np.sort(np.asarray(samples_ns, dtype=np.float64))
        if data.size == 0:
            raise ValueError("no samples")
        median = float(np.median(data))
        lo, hi = median_ci95(data)
        ci_rel = (hi - lo) / 2.0 / median if median > 0 and not math.isnan(lo) else math.nan
        return cls(
            n=int(data.size),
            mean_ns=float(data.mean()),
            std_ns=float(data.std(ddof=1)) if data.size > 1 else 0.0,
            median_ns=median,
            p90_ns=float(np.percentile(data, 90)),
            p99_ns=float(np.percentile(data, 99)),
            min_ns=float(data[0]),
            max_ns=float(data[-1]),
            ci95_rel=ci_rel,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencyStats:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})  # type: ignore[attr-defined]


ACCURACY_LAYOUTS: tuple[str, ...] = ("imagefolder", "imagenet-val", "cifar10")
# The most skipped (unreadable) image names one accuracy result keeps, for the record.
MAX_SKIPPED_NAMES = 50


def _opt_positive(data: dict[str, Any], key: str, what: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    try:
        if isinstance(value, bool) or int(value) != float(value):
            raise ValueError
        number = int(value)
    except (TypeError, ValueError):
        raise UsageError(f"{what} {value!r} is not a whole number.") from None
    if number < 1:
        raise UsageError(f"{what} must be 1 or more, not {number}.")
    return number


def _opt_triple(data: dict[str, Any], key: str, what: str) -> tuple[float, float, float] | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",")]
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        numbers = ()
    if len(numbers) != 3 or not all(math.isfinite(n) for n in numbers):
        raise UsageError(
            f"{what} {value!r} is not three numbers.",
            f"Give one per channel, in RGB order, e.g. --{key} 0.485,0.456,0.406.",
        )
    return (numbers[0], numbers[1], numbers[2])


@dataclass(frozen=True, slots=True)
class AccuracySpec:
    """What an accuracy run evaluates and how its images are prepared.

    ``dataset`` is a folder (core.measure.datasets reads it, in ``layout`` or the one it
    detects); ``limit`` evaluates a fixed subset drawn with ``seed``. Preprocessing
    follows the weights' own transforms (the model card's) unless ``size``, ``resize``,
    ``mean``, ``std``, ``scale`` or ``bgr`` say otherwise; what was used is recorded with
    each result. ``num_classes`` builds a zoo model with that classifier head (a
    fine-tuned state dict)."""

    dataset: str
    layout: str | None = None
    limit: int | None = None
    seed: int = 0
    num_classes: int | None = None
    size: int | None = None  # the square crop fed to the model
    resize: int | None = None  # the shorter side before the crop
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    scale: float | None = None  # pixel values times this before mean/std (1/255 by default)
    bgr: bool = False
    split: str = "test"  # CIFAR-10: the test batch, or the five training batches

    def __post_init__(self) -> None:
        if not str(self.dataset).strip():
            raise UsageError("No dataset given.", "Use --dataset PATH.")
        if self.layout is not None and self.layout not in ACCURACY_LAYOUTS:
            raise UsageError(
                f"Unknown dataset layout {self.layout!r}.", f"Use one of: {', '.join(ACCURACY_LAYOUTS)}."
            )
        if self.split not in ("test", "train"):
            raise UsageError(f"Unknown split {self.split!r}.", "Use test or train.")
        for key in ("mean", "std"):
            value = getattr(self, key)
            if value is not None and key == "std" and not all(v > 0 for v in value):
                raise UsageError("--std must be positive for every channel.")
        if self.scale is not None and not (math.isfinite(self.scale) and self.scale > 0):
            raise UsageError("--scale must be a positive number.")

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset, "layout": self.layout, "limit": self.limit,
            "seed": self.seed, "num_classes": self.num_classes, "size": self.size,
            "resize": self.resize, "mean": None if self.mean is None else list(self.mean),
            "std": None if self.std is None else list(self.std), "scale": self.scale,
            "bgr": self.bgr, "split": self.split,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: Any) -> AccuracySpec:
        if not isinstance(data, dict):
            raise UsageError("'accuracy' must be an object naming at least the dataset.")
        unknown = set(data) - set(cls.__dataclass_fields__)  # type: ignore[attr-defined]
        if unknown:
            raise UsageError(f"Unknown accuracy option(s): {', '.join(sorted(map(str, unknown)))}.")
        seed = data.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise UsageError(f"--seed {seed!r} is not a whole number of 0 or more.")
        scale = data.get("scale")
        try:
            scale_value = None if scale is None else float(scale)
        except (TypeError, ValueError):
            raise UsageError(f"--scale {scale!r} is not a number.") from None
        layout = data.get("layout")
        return cls(
            dataset=str(data.get("dataset") or ""),
            layout=None if layout in (None, "", "auto") else str(layout),
            limit=_opt_positive(data, "limit", "--limit"),
            seed=seed,
            num_classes=_opt_positive(data, "num_classes", "--num-classes"),
            size=_opt_positive(data, "size", "--size"),
            resize=_opt_positive(data, "resize", "--resize"),
            mean=_opt_triple(data, "mean", "--mean"),
            std=_opt_triple(data, "std", "--std"),
            scale=scale_value,
            bgr=bool(data.get("bgr", False)),
            split=str(data.get("split") or "test"),
        )


def accuracy_reference(card_source: str) -> tuple[Backend, str, Precision]:
    """The platform a model's accuracy elsewhere is compared with, by its card's source:
    the model's own framework at fp32 on the CPU (ONNX Runtime for an .onnx file,
    OpenVINO for an IR, torch for a zoo model or TorchScript)."""
    if card_source == "onnx":
        return (Backend.ONNXRUNTIME, "cpu", Precision.FP32)
    if card_source == "openvino-ir":
        return (Backend.OPENVINO, "CPU", Precision.FP32)
    return (Backend.TORCH, "cpu", Precision.FP32)


def wilson_ci(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval (95 %) of a proportion, in percent. Plain arithmetic, so
    a worker interpreter without scipy/statsmodels computes the same figure."""
    if n <= 0:
        return (math.nan, math.nan)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half) * 100.0, min(1.0, centre + half) * 100.0)


@dataclass(frozen=True, slots=True)
class AccuracyResult:
    """Top-1/top-5 of one model on one platform over one dataset.

    ``agreement_top1`` is the share (%) of images whose top-1 equals the reference
    platform's (torch fp32 for a zoo model), ``max_logit_diff`` the largest absolute
    difference of any logit against it; both None without a reference. ``dataset`` is the
    dataset's identity (path, file-list hash, limit, seed, checksums verified) and
    ``preprocessing`` what the images went through: figures compare only when both match.
    """

    top1_correct: int
    top5_correct: int | None  # None: the model has fewer than 5 classes
    n_images: int
    skipped: int
    num_classes: int
    dataset_id: str
    dataset: dict[str, Any] = field(default_factory=dict)
    preprocessing: dict[str, Any] = field(default_factory=dict)
    skipped_files: tuple[str, ...] = ()
    reference: str | None = None  # "torch/cpu/fp32", the platform agreed with
    agreement_top1: float | None = None
    max_logit_diff: float | None = None
    note: str = ""  # e.g. why there is no agreement figure

    @property
    def top1(self) -> float | None:
        return 100.0 * self.top1_correct / self.n_images if self.n_images else None

    @property
    def top5(self) -> float | None:
        if self.top5_correct is None or not self.n_images:
            return None
        return 100.0 * self.top5_correct / self.n_images

    @property
    def top1_ci(self) -> tuple[float, float] | None:
        return wilson_ci(self.top1_correct, self.n_images) if self.n_images else None

    @property
    def top5_ci(self) -> tuple[float, float] | None:
        if self.top5_correct is None or not self.n_images:
            return None
        return wilson_ci(self.top5_correct, self.n_images)

    def row(self) -> dict[str, Any]:
        """The long-schema accuracy columns."""
        ci1, ci5 = self.top1_ci, self.top5_ci
        return {
            "top1": self.top1, "top5": self.top5, "n_eval_images": self.n_images,
            "skipped_images": self.skipped,
            "top1_ci_low": ci1[0] if ci1 else None, "top1_ci_high": ci1[1] if ci1 else None,
            "top5_ci_low": ci5[0] if ci5 else None, "top5_ci_high": ci5[1] if ci5 else None,
            "top1_agreement": self.agreement_top1, "max_logit_diff": self.max_logit_diff,
            "accuracy_reference": self.reference, "dataset_id": self.dataset_id,
        }  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {
            "top1_correct": self.top1_correct, "top5_correct": self.top5_correct,
            "n_images": self.n_images, "skipped": self.skipped, "num_classes": self.num_classes,
            "dataset_id": self.dataset_id, "dataset": dict(self.dataset),
            "preprocessing": dict(self.preprocessing), "skipped_files": list(self.skipped_files),
            "reference": self.reference, "agreement_top1": self.agreement_top1,
            "max_logit_diff": self.max_logit_diff, "note": self.note,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AccuracyResult:
        def opt_float(key: str) -> float | None:
            value = data.get(key)
            return None if value is None else float(value)

        top5 = data.get("top5_correct")
        return cls(
            top1_correct=int(data["top1_correct"]),
            top5_correct=None if top5 is None else int(top5),
            n_images=int(data["n_images"]),
            skipped=int(data.get("skipped") or 0),
            num_classes=int(data.get("num_classes") or 0),
            dataset_id=str(data.get("dataset_id") or ""),
            dataset=dict(data.get("dataset") or {}),
            preprocessing=dict(data.get("preprocessing") or {}),
            skipped_files=tuple(str(x) for x in data.get("skipped_files") or ())[:MAX_SKIPPED_NAMES],
            reference=data.get("reference"),
            agreement_top1=opt_float("agreement_top1"),
            max_logit_diff=opt_float("max_logit_diff"),
            note=str(data.get("note") or ""),
        )


@dataclass(frozen=True, slots=True)
class LayerRecord:
    """One executed layer or kernel of a per-layer profile (``--profile-layers``).

    ``type`` is the framework's layer type (OpenVINO's layerType after fusion, a torch
    aten op, an ONNX Runtime op type), ``exec_type`` how it ran (OpenVINO's primitive,
    e.g. jit_avx512_FP32; the torch device; the ORT execution provider), ``fused`` the
    original layers OpenVINO fused into it. ``time_ms`` is the median over the profiled
    iterations; FLOPs (2 per multiply-add) and bytes (inputs, weights and outputs) are
    derived from the shapes where they say it, else None."""

    name: str
    type: str
    exec_type: str
    time_ms: float
    input_shapes: tuple[tuple[int, ...], ...] = ()
    output_shapes: tuple[tuple[int, ...], ...] = ()
    flops: int | None = None
    bytes: int | None = None
    fused: tuple[str, ...] = ()
    precision: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "type": self.type, "exec_type": self.exec_type, "time_ms": self.time_ms,
            "input_shapes": [list(s) for s in self.input_shapes],
            "output_shapes": [list(s) for s in self.output_shapes], "flops": self.flops,
            "bytes": self.bytes, "fused": list(self.fused), "precision": self.precision,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayerRecord:
        def shapes(key: str) -> tuple[tuple[int, ...], ...]:
            return tuple(tuple(int(d) for d in s) for s in data.get(key) or ())

        return cls(
            name=str(data["name"]), type=str(data.get("type") or ""),
            exec_type=str(data.get("exec_type") or ""), time_ms=float(data["time_ms"]),
            input_shapes=shapes("input_shapes"), output_shapes=shapes("output_shapes"),
            flops=None if data.get("flops") is None else int(data["flops"]),
            bytes=None if data.get("bytes") is None else int(data["bytes"]),
            fused=tuple(str(x) for x in data.get("fused") or ()), precision=str(data.get("precision") or ""),
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class LayerProfile:
    """A case's per-layer profile, from a pass of its own after the timed loop.
    ``profiled_median_ms`` is the end-to-end median under the profiler (which perturbs
    it); the headline latency stays the timed loop's."""

    iterations: int
    layers: tuple[LayerRecord, ...]
    profiled_median_ms: float | None
    source: str  # "openvino perf counters", "torch.profiler", "onnxruntime profiling"

    @property
    def sum_ms(self) -> float:
        return float(sum(layer.time_ms for layer in self.layers))

    def to_dict(self, include_layers: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "iterations": self.iterations, "profiled_median_ms": self.profiled_median_ms,
            "source": self.source, "sum_ms": self.sum_ms, "n_layers": len(self.layers),
        }  # fmt: skip
        if include_layers:
            data["layers"] = [layer.to_dict() for layer in self.layers]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayerProfile:
        median = data.get("profiled_median_ms")
        return cls(
            iterations=int(data.get("iterations") or 0),
            layers=tuple(LayerRecord.from_dict(x) for x in data.get("layers") or ()),
            profiled_median_ms=None if median is None else float(median),
            source=str(data.get("source") or ""),
        )


ACCURACY_COLUMNS: tuple[str, ...] = (
    "top1", "top5", "n_eval_images", "skipped_images", "top1_ci_low", "top1_ci_high",
    "top5_ci_low", "top5_ci_high", "top1_agreement", "max_logit_diff", "accuracy_reference",
    "dataset_id",
)  # fmt: skip


# The long schema, in order. The first block is the contract named in DESIGN.md / issue 2.
MEASUREMENT_COLUMNS: tuple[str, ...] = (
    "model",
    "backend",
    "device",
    "precision",
    "batch_size",
    "mode",
    "latency_ms_median",
    "latency_ms_mean",
    "latency_ms_p90",
    "latency_ms_p99",
    "latency_ms_std",
    "ci95_rel",
    "iterations",
    "per_image_ms",
    "throughput_ips",
    "first_inference_ms",
    "peak_rss_mb",
    "peak_device_mem_mb",
    "params",
    "flops",
    "status",
    "error",
    # Extra columns, after the contract.
    "latency_ms_min",
    "latency_ms_max",
    "macs",
    "target_met",
    "failure",
    "weights",
    "run_id",
    "run_name",
    "measurement_id",
    "environment_id",
    "started_at",
    # Issue 9: memory split, where the time went, interference, attempts.
    "baseline_rss_mb",
    "model_rss_mb",
    "interference",
    "disturbed",
    "attempt",
    "convert_s",
    "load_s",
    "compile_s",
    "warmup_s",
    "measure_s",
    "wall_s",
    # Issue 12: measured accuracy (accuracy-mode rows).
    *ACCURACY_COLUMNS,
)

# The phases a case's wall time is split into (Measurement.phase_s keys), in order:
# converting the model (only the case that converted it; a cache hit is 0), starting the
# worker, loading, compiling, warm-up (first inference included) and the timed loop.
PHASES: tuple[str, ...] = ("convert", "start", "load", "compile", "warmup", "measure")
# How a case's worker process starts: forked from a pre-warmed server, or a fresh exec.
WORKER_START_FORK = "fork-server"
WORKER_START_EXEC = "exec"
WORKER_STARTS: tuple[str, ...] = (WORKER_START_FORK, WORKER_START_EXEC)
# Where a sweep's cases run (core.measure.executors): worker processes on this host, or
# Ray tasks on the nodes of a cluster, each reserving its device.
EXECUTOR_LOCAL = "local"
EXECUTOR_RAY = "ray"
EXECUTORS: tuple[str, ...] = (EXECUTOR_LOCAL, EXECUTOR_RAY)
# Other processes' CPU use above this, in cores, marks a case disturbed.
DEFAULT_DISTURBED_THRESHOLD = 0.1


@dataclass(frozen=True, slots=True)
class Measurement:
    """The result of one case.

    ``samples_ns`` holds every timed iteration's latency (one synchronous request in
    latency mode, one request's completion latency in throughput mode). ``throughput_ips``
    is measured (images / wall time of the timed loop), not derived from the median, so
    that throughput mode reports what the streams really delivered.
    """

    case: Case
    status: Status
    stats: LatencyStats | None = None
    samples_ns: tuple[int, ...] = ()
    throughput_ips: float | None = None
    first_inference_ms: float | None = None
    target_met: bool | None = None
    peak_rss_mb: float | None = None
    peak_device_mem_mb: float | None = None
    device_memory: dict[str, float] = field(default_factory=dict)
    params: int | None = None
    flops: int | None = None  # per image; FLOPs = 2 x MACs
    failure: FailureKind | None = None
    error: str | None = None
    weights: str = "random"  # "random" (weights=None) or "file:<path>" / "pretrained"
    backend_config: dict[str, Any] = field(default_factory=dict)
    environment_id: str | None = None
    started_at: float | None = None  # unix time
    duration_s: float | None = None
    run_id: int | None = None
    run_name: str | None = None
    measurement_id: int | None = None
    # RSS after the framework's imports, before the model is loaded: peak minus this is
    # what the model itself (weights, activations, compiled graph) cost.
    baseline_rss_mb: float | None = None
    phase_s: dict[str, float] = field(default_factory=dict)  # keys from PHASES
    # CPU time other processes used while this case warmed up and measured, in cores
    # (steal time included); above the run's threshold the case is ``disturbed``.
    interference: float | None = None
    disturbed: bool | None = None
    # How the case ran and under what conditions: worker start method, memory-limit
    # mechanism, steal, CPU frequency, other processes on the GPU.
    conditions: dict[str, Any] = field(default_factory=dict)
    attempt: int = 1  # a retry, resume or re-queue of a case adds an attempt
    current: bool = True  # the attempt that counts; older attempts stay for the record
    accuracy: AccuracyResult | None = None  # accuracy-mode cases only
    layer_profile: LayerProfile | None = None  # with --profile-layers

    @property
    def model_rss_mb(self) -> float | None:
        """Peak RSS minus the baseline: the model's own memory, not the framework's."""
        if self.peak_rss_mb is None or self.baseline_rss_mb is None:
            return None
        return max(0.0, self.peak_rss_mb - self.baseline_rss_mb)

    @property
    def macs(self) -> int | None:
        return None if self.flops is None else self.flops // 2

    @property
    def latency_ms_median(self) -> float | None:
        return None if self.stats is None else self.stats.median_ns / NS_PER_MS

    @property
    def per_image_ms(self) -> float | None:
        if self.stats is None:
            return None
        if self.case.mode is Mode.THROUGHPUT and self.throughput_ips:
            return 1000.0 / self.throughput_ips
        return self.stats.median_ns / NS_PER_MS / self.case.batch_size

    def with_ids(self, **ids: Any) -> Measurement:
        return replace(self, **ids)

    def to_row(self) -> dict[str, Any]:
        """The long-schema row. Latencies in ms, raw values, never rounded."""
        s = self.stats

        def ms(value: float | None) -> float | None:
            return None if value is None else value / NS_PER_MS

        row: dict[str, Any] = {
            **self.case.to_dict(),
            "latency_ms_median": ms(s.median_ns) if s else None,
            "latency_ms_mean": ms(s.mean_ns) if s else None,
            "latency_ms_p90": ms(s.p90_ns) if s else None,
            "latency_ms_p99": ms(s.p99_ns) if s else None,
            "latency_ms_std": ms(s.std_ns) if s else None,
            "ci95_rel": s.ci95_rel if s else None,
            "iterations": s.n if s else 0,
            "per_image_ms": self.per_image_ms,
            "throughput_ips": self.throughput_ips,
            "first_inference_ms": self.first_inference_ms,
            "peak_rss_mb": self.peak_rss_mb,
            "peak_device_mem_mb": self.peak_device_mem_mb,
            "params": self.params,
            "flops": self.flops,
            "status": self.status.value,
            "error": self.error,
            "latency_ms_min": ms(s.min_ns) if s else None,
            "latency_ms_max": ms(s.max_ns) if s else None,
            "macs": self.macs,
            "target_met": self.target_met,
            "failure": self.failure.value if self.failure else None,
            "weights": self.weights,
            "run_id": self.run_id,
            "run_name": self.run_name,
            "measurement_id": self.measurement_id,
            "environment_id": self.environment_id,
            "started_at": self.started_at,
            "baseline_rss_mb": self.baseline_rss_mb,
            "model_rss_mb": self.model_rss_mb,
            "interference": self.interference,
            "disturbed": self.disturbed,
            "attempt": self.attempt,
            **{f"{phase}_s": self.phase_s.get(phase) for phase in PHASES if phase != "start"},
            "wall_s": self.duration_s,
            **(self.accuracy.row() if self.accuracy is not None else dict.fromkeys(ACCURACY_COLUMNS)),
        }
        return row

    def to_dict(self, include_samples: bool = False) -> dict[str, Any]:
        """A JSON-ready dict that round-trips through ``from_dict``."""
        data: dict[str, Any] = {
            "case": self.case.to_dict(),
            "status": self.status.value,
            "stats": self.stats.to_dict() if self.stats else None,
            "throughput_ips": self.throughput_ips,
            "first_inference_ms": self.first_inference_ms,
            "target_met": self.target_met,
            "peak_rss_mb": self.peak_rss_mb,
            "peak_device_mem_mb": self.peak_device_mem_mb,
            "device_memory": dict(self.device_memory),
            "params": self.params,
            "flops": self.flops,
            "failure": self.failure.value if self.failure else None,
            "error": self.error,
            "weights": self.weights,
            "backend_config": dict(self.backend_config),
            "environment_id": self.environment_id,
            "started_at": self.started_at,
            "duration_s": self.duration_s,
            "run_id": self.run_id,
            "run_name": self.run_name,
            "measurement_id": self.measurement_id,
            "baseline_rss_mb": self.baseline_rss_mb,
            "phase_s": dict(self.phase_s),
            "interference": self.interference,
            "disturbed": self.disturbed,
            "conditions": dict(self.conditions),
            "attempt": self.attempt,
            "current": self.current,
            "accuracy": None if self.accuracy is None else self.accuracy.to_dict(),
            "layer_profile": None if self.layer_profile is None else self.layer_profile.to_dict(),
        }
        if include_samples:
            data["samples_ns"] = list(self.samples_ns)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        return cls(
            case=Case.from_dict(data["case"]),
            status=Status(data["status"]),
            stats=LatencyStats.from_dict(data["stats"]) if data.get("stats") else None,
            samples_ns=tuple(int(x) for x in data.get("samples_ns") or ()),
            throughput_ips=data.get("throughput_ips"),
            first_inference_ms=data.get("first_inference_ms"),
            target_met=data.get("target_met"),
            peak_rss_mb=data.get("peak_rss_mb"),
            peak_device_mem_mb=data.get("peak_device_mem_mb"),
            device_memory=dict(data.get("device_memory") or {}),
            params=data.get("params"),
            flops=data.get("flops"),
            failure=FailureKind(data["failure"]) if data.get("failure") else None,
            error=data.get("error"),
            weights=data.get("weights") or "random",
            backend_config=dict(data.get("backend_config") or {}),
            environment_id=data.get("environment_id"),
            started_at=data.get("started_at"),
            duration_s=data.get("duration_s"),
            run_id=data.get("run_id"),
            run_name=data.get("run_name"),
            measurement_id=data.get("measurement_id"),
            baseline_rss_mb=data.get("baseline_rss_mb"),
            phase_s={str(k): float(v) for k, v in (data.get("phase_s") or {}).items()},
            interference=data.get("interference"),
            disturbed=data.get("disturbed"),
            conditions=dict(data.get("conditions") or {}),
            attempt=int(data.get("attempt") or 1),
            current=bool(data.get("current", True)),
            accuracy=AccuracyResult.from_dict(data["accuracy"]) if data.get("accuracy") else None,
            layer_profile=LayerProfile.from_dict(data["layer_profile"]) if data.get("layer_profile") else None,
        )

    @classmethod
    def failed(
        cls,
        case: Case,
        kind: FailureKind,
        error: str,
        *,
        status: Status = Status.FAILED,
        **extra: Any,
    ) -> Measurement:
        return cls(case=case, status=status, failure=kind, error=error, **extra)


@dataclass(frozen=True, slots=True)
class RunSpec:
    """A named sweep: models x batch sizes on one (backend, device, precision, mode).

    ``weights`` maps a model name to a local weights file; models not in it use random
    init (weights=None), and the choice is recorded per measurement.
    """

    models: tuple[str, ...]
    backend: Backend = Backend.TORCH
    device: str = "cpu"
    precision: Precision = Precision.FP32
    batch_sizes: tuple[int, ...] = (1,)
    mode: Mode = Mode.LATENCY
    stopping: StoppingRule = field(default_factory=StoppingRule)
    name: str | None = None
    weights: dict[str, str] = field(default_factory=dict)
    isolate: bool = True  # one worker process per case
    # Measure a disturbed case again, up to this many times (each try is an attempt).
    retry_disturbed: int = 0
    disturbed_threshold: float = DEFAULT_DISTURBED_THRESHOLD  # cores of other processes' work
    # Bound the model's memory (not the framework's imports) to this many MB; None: no bound.
    max_mem_mb: int | None = None
    # Seconds a case's warm-up or timed loop may take before it is stopped as hung;
    # None: 3 x max_time + 120 s, extended at the pace a slow model shows.
    measure_timeout_s: float | None = None
    # "fork-server": fork each case from a process that imported the frameworks once,
    # falling back to "exec" where that is unsafe; "exec": a fresh interpreter per case.
    worker_start: str = "fork-server"
    # The named worker runtime (an interpreter configured on the measuring host, e.g.
    # OpenVINO 2022.3 on Python 3.10 for an NCS2); None: the supervisor's own interpreter.
    runtime: str | None = None
    # Accuracy runs (mode accuracy): the dataset and its preprocessing.
    accuracy: AccuracySpec | None = None
    # A per-layer profile of each case, in a pass of its own after the timed loop.
    profile_layers: bool = False
    # Where the cases run: "local" (worker processes here) or "ray" (a cluster's nodes);
    # None: the measuring host's default (the CLI's is local, the agent's its --executor).
    executor: str | None = None

    def __post_init__(self) -> None:
        if not self.models:
            raise UsageError("No model given.", "Use -m MODEL or --suite NAME.")
        # A model or batch size named twice is measured once; the device has one spelling.
        object.__setattr__(self, "models", unique(self.models))
        object.__setattr__(self, "batch_sizes", unique(self.batch_sizes))
        object.__setattr__(self, "device", canonical_device(self.backend, self.device))
        if self.worker_start not in WORKER_STARTS:
            raise UsageError(
                f"Unknown worker start {self.worker_start!r}.",
                f"Use one of: {', '.join(WORKER_STARTS)}.",
            )
        if self.executor is not None and self.executor not in EXECUTORS:
            raise UsageError(
                f"Unknown executor {self.executor[:60]!r}.", f"Use one of: {', '.join(EXECUTORS)}."
            )
        if self.runtime is not None and not RUNTIME_NAME.fullmatch(self.runtime):
            raise UsageError(
                f"--runtime {self.runtime[:60]!r} is not a runtime name: it names a worker "
                "runtime configured on the measuring host, never an interpreter or a path.",
                "Give a name such as openvino-2022.3 (`backbench runtimes` lists them).",
            )
        if self.retry_disturbed < 0:
            raise UsageError("--retry-disturbed must be 0 or more.")
        if not self.disturbed_threshold > 0:
            raise UsageError("--disturbed-threshold must be a positive number of cores.")
        if self.max_mem_mb is not None and self.max_mem_mb < 1:
            raise UsageError("--max-mem-mb must be a positive number of MB.")
        if self.measure_timeout_s is not None and not self.measure_timeout_s > 0:
            raise UsageError("--measure-timeout must be a positive number of seconds.")
        if (self.mode is Mode.ACCURACY) != (self.accuracy is not None):
            raise UsageError(
                "An accuracy run needs a dataset, and only an accuracy run takes one.",
                "Use `backbench accuracy ... --dataset PATH` for accuracy.",
            )
        if self.mode is Mode.ACCURACY and self.profile_layers:
            raise UsageError(
                "--profile-layers profiles timed cases; an accuracy run times nothing.",
                "Profile with `backbench run ... --profile-layers`.",
            )
        if self.mode is Mode.ACCURACY and len(self.batch_sizes) != 1:
            raise UsageError(
                "An accuracy run feeds its images in one batch size.", "Give one --batch N."
            )

    def check_size(self) -> None:
        """Refuse a new sweep of more than MAX_CASES cases (a spec already stored, read
        back, is never refused)."""
        n_cases = len(self.models) * len(self.batch_sizes)
        if n_cases > MAX_CASES:
            raise UsageError(
                f"{n_cases} cases ({len(self.models)} models x {len(self.batch_sizes)} batch sizes) "
                f"are more than one run may hold ({MAX_CASES}).",
                "Split the sweep into several runs.",
            )

    def cases(self) -> list[Case]:
        """Model-major order: a model's batch sizes run back to back."""
        return [
            Case(m, self.backend, self.device, self.precision, b, self.mode)
            for m in self.models
            for b in self.batch_sizes
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "models": list(self.models),
            "backend": self.backend.value,
            "device": self.device,
            "precision": self.precision.value,
            "batch_sizes": list(self.batch_sizes),
            "mode": self.mode.value,
            "stopping": self.stopping.to_dict(),
            "name": self.name,
            "weights": dict(self.weights),
            "isolate": self.isolate,
            "retry_disturbed": self.retry_disturbed,
            "disturbed_threshold": self.disturbed_threshold,
            "max_mem_mb": self.max_mem_mb,
            "measure_timeout_s": self.measure_timeout_s,
            "worker_start": self.worker_start,
            # Only when set, so a spec without one reads as before (and older agents,
            # which refuse unknown fields, still take it).
            **({"runtime": self.runtime} if self.runtime else {}),
            **({"accuracy": self.accuracy.to_dict()} if self.accuracy is not None else {}),
            **({"profile_layers": True} if self.profile_layers else {}),
            **({"executor": self.executor} if self.executor else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSpec:
        models = data.get("models")
        if not isinstance(models, (list, tuple)) or not all(isinstance(m, str) for m in models):
            raise UsageError("'models' must be a list of model names.")
        weights = data.get("weights") or {}
        if not isinstance(weights, dict):
            raise UsageError("'weights' must map model names to file paths.")
        return cls(
            models=tuple(models),
            backend=parse_backend(data.get("backend", "torch")),
            device=str(data.get("device", "cpu")),
            precision=parse_precision(data.get("precision", "fp32")),
            batch_sizes=parse_batch_sizes(data.get("batch_sizes", [1])),
            mode=parse_mode(data.get("mode", "latency")),
            stopping=StoppingRule.from_dict(dict(data.get("stopping") or {})),
            name=data.get("name"),
            weights={str(k): str(v) for k, v in weights.items()},
            isolate=bool(data.get("isolate", True)),
            retry_disturbed=int(data.get("retry_disturbed") or 0),
            disturbed_threshold=float(
                data.get("disturbed_threshold", DEFAULT_DISTURBED_THRESHOLD)
                if data.get("disturbed_threshold") is not None
                else DEFAULT_DISTURBED_THRESHOLD
            ),
            max_mem_mb=None if data.get("max_mem_mb") is None else int(data["max_mem_mb"]),
            measure_timeout_s=(
                None if data.get("measure_timeout_s") is None else float(data["measure_timeout_s"])
            ),
            worker_start=str(data.get("worker_start") or "fork-server"),
            runtime=str(data["runtime"]) if data.get("runtime") else None,
            accuracy=AccuracySpec.from_dict(data["accuracy"]) if data.get("accuracy") is not None else None,
            profile_layers=bool(data.get("profile_layers", False)),
            executor=str(data["executor"]) if data.get("executor") else None,
        )


@dataclass(frozen=True, slots=True)
class Run:
    """A stored run: its spec, manifest and state."""

    id: int
    name: str
    spec: RunSpec
    manifest: dict[str, Any]
    created_at: float
    status: str  # queued | running | finished | interrupted | cancelled | failed
    finished_at: float | None = None
