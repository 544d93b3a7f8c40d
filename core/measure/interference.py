"""How much other work the machine did while a case measured.

Two snapshots, at the start of warm-up and at the end of the timed loop, of:

- the CPU time the whole machine spent busy (/proc/stat: user, nice, system, irq,
  softirq) and stolen by the hypervisor (steal);
- the CPU time of backbench's own processes: the worker (all its threads), the
  supervisor (this process, all threads) and the fork servers.

Interference is the difference, busy minus backbench's own plus steal, in cores: 1.0
means another process kept one core busy for the whole window. A case above the run's
threshold (0.1 of a core by default) is marked disturbed. Where readable, the mean CPU
frequency and, on CUDA, other processes on the GPU are recorded with it.

Linux only (/proc); elsewhere nothing is measured and the fields stay empty.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

try:
    _HZ = os.sysconf("SC_CLK_TCK")
except (ValueError, OSError, AttributeError):  # not POSIX
    _HZ = 100


@dataclass(frozen=True, slots=True)
class CpuSnapshot:
    t: float  # time.monotonic()
    busy: int  # machine-wide busy ticks
    steal: int
    own: int  # ticks of backbench's own processes
    supervisor_s: float  # this process's CPU seconds (all threads)


def _machine_ticks() -> tuple[int, int] | None:
    try:
        with open("/proc/stat") as fh:
            first = fh.readline().split()
    except OSError:
        return None
    if not first or first[0] != "cpu":
        return None
    values = [int(v) for v in first[1:]]
    values += [0] * (8 - len(values))
    user, nice, system, _idle, _iowait, irq, softirq, steal = values[:8]
    return user + nice + system + irq + softirq, steal


def process_ticks(pid: int) -> int:
    """utime + stime of a process (every thread), in clock ticks; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            text = fh.read()
    except OSError:
        return 0
    fields = text[text.rfind(")") + 2 :].split()
    try:
        return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)
    except (IndexError, ValueError):
        return 0


CLOCK_TICKS = _HZ


def snapshot(own_pids: Iterable[int], reported: dict[int, int] | None = None) -> CpuSnapshot | None:
    """Machine ticks and backbench's ticks now; None where /proc/stat is unreadable.
    ``reported`` holds ticks a process said it had used, for one that may be gone."""
    machine = _machine_ticks()
    if machine is None:
        return None
    reported = reported or {}
    own = sum(max(process_ticks(pid), reported.get(pid, 0)) for pid in set(own_pids))
    mine = os.times()  # this process, all threads
    own += round((mine.user + mine.system) * _HZ)
    return CpuSnapshot(time.monotonic(), machine[0], machine[1], own, mine.user + mine.system)


def cores_of_other_work(start: CpuSnapshot, end: CpuSnapshot) -> dict[str, float]:
    """``interference`` (other processes' busy time plus steal) and ``steal``, in cores."""
    seconds = end.t - start.t
    if seconds <= 0:
        return {}
    other = max(0, (end.busy - start.busy) - (end.own - start.own))
    steal = max(0, end.steal - start.steal)
    per_second = _HZ * seconds
    return {
        "interference": (other + steal) / per_second,
        "steal": steal / per_second,
        # The supervisor's own share (telemetry, watchdog, the caller's UI), in cores.
        "supervisor_cores": max(0.0, end.supervisor_s - start.supervisor_s) / seconds,
    }


def cpu_mhz() -> float | None:
    """The mean current frequency of the CPUs, where the kernel exposes it."""
    readings: list[float] = []
    base = "/sys/devices/system/cpu"
    try:
        cpus = [d for d in os.listdir(base) if d.startswith("cpu") and d[3:].isdigit()]
    except OSError:
        cpus = []
    for cpu in cpus:
        try:
            with open(f"{base}/{cpu}/cpufreq/scaling_cur_freq") as fh:
                readings.append(int(fh.read()) / 1000.0)
        except (OSError, ValueError):
            continue
    if not readings:
        try:
            with open("/proc/cpuinfo") as fh:
                readings = [float(line.split(":")[1]) for line in fh if line.startswith("cpu MHz")]
        except (OSError, ValueError, IndexError):
            return None
    return sum(readings) / len(readings) if readings else None


def gpu_other_processes(device: str, own_pids: Iterable[int]) -> int | None:
    """How many processes other than backbench's use the case's CUDA device (NVML)."""
    if not device.lower().startswith("cuda"):
        return None
    try:
        import pynvml  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        try:
            index = int(device.split(":", 1)[1]) if ":" in device else 0
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            procs = pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
            mine = set(own_pids) | {os.getpid()}
            return sum(1 for p in procs if p.pid not in mine)
        finally:
            pynvml.nvmlShutdown()
    except Exception as exc:  # NVML missing, no permission, a driver mismatch
        log.debug("NVML could not list GPU processes: %s", exc)
        return None


class InterferenceWindow:
    """Opened as warm-up starts, closed when the result arrives."""

    def __init__(self, device: str) -> None:
        self.device = device
        self._start: CpuSnapshot | None = None
        self._mhz: list[float] = []
        self.result: dict[str, Any] = {}

    def open(self, own_pids: Iterable[int]) -> None:
        self._start = snapshot(own_pids)
        mhz = cpu_mhz()
        if mhz is not None:
            self._mhz.append(mhz)

    @property
    def is_open(self) -> bool:
        return self._start is not None and not self.result

    def close(self, own_pids: Iterable[int], reported: dict[int, int] | None = None) -> dict[str, Any]:
        pids = list(own_pids)
        if self._start is None:
            return {}
        end = snapshot(pids, reported)
        if end is None:
            return {}
        result: dict[str, Any] = dict(cores_of_other_work(self._start, end))
        mhz = cpu_mhz()
        if mhz is not None:
            self._mhz.append(mhz)
        if self._mhz:
            result["cpu_mhz"] = sum(self._mhz) / len(self._mhz)
        gpu = gpu_other_processes(self.device, pids)
        if gpu is not None:
            result["gpu_other_processes"] = gpu
        self.result = result
        return result
