"""The environment manifest recorded with every run.

It reads the host without importing any framework (package versions come from
``importlib.metadata``), so it is cheap and works on a torch-less edge host. Each
backend's effective runtime config is recorded per measurement (``backend_config``) and
gathered into the manifest's ``backend_config`` once the first case has run.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PACKAGES = ("torch", "torchvision", "openvino", "onnxruntime", "onnxruntime-gpu", "onnx", "numpy", "backbench")
THREAD_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "TORCH_NUM_THREADS",
    "OPENBLAS_CORETYPE",
    "CUDA_VISIBLE_DEVICES",
)


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def cpu_model() -> str:
    text = _read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The ISA features that decide which kernels frameworks pick (AVX-512, AMX, ...)."""
    text = _read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8", "amx_tile", "fma")
            return [f for f in wanted if f in flags]
    return []


def gpus() -> list[dict[str, str]]:
    """NVIDIA GPUs and their driver, from nvidia-smi when present."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        log.info("nvidia-smi failed: %s", exc)
        return []
    found = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 3:
            found.append({"name": parts[0], "driver": parts[1], "memory_total": parts[2]})
    return found


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def manifest() -> dict[str, Any]:
    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
        memory_total_mb = round(psutil.virtual_memory().total / 1e6)
    except Exception:  # psutil is optional on a minimal edge host
        physical, memory_total_mb = None, None
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    return {
        "host": platform.node(),
        "os": platform.platform(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cores_logical": os.cpu_count(),
        "cores_physical": physical,
        "cores_usable": affinity,
        "governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "memory_total_mb": memory_total_mb,
        "gpus": gpus(),
        "python": sys.version.split()[0],
        "packages": package_versions(),
        "threads": {var: os.environ.get(var) for var in THREAD_VARS if os.environ.get(var)},
    }

