"""A memory cgroup per case: the kernel's bound on the model's memory (``--max-mem-mb``).

The supervisor makes a child of its own memory cgroup for each case, sets its limit to
N MB, and the worker moves itself into it as the model starts to load, after the
framework's imports. Memory charged from then on is the model's: the imports (and, for a
forked worker, the fork server's pages it shares) stay charged where they were, because
neither cgroup version moves existing charges by default. So the limit bounds
``model_rss_mb`` (plus the page cache the case reads), never the framework, and it works
on CUDA, where an address-space limit breaks the driver.

A forked worker shares the fork server's pages; a page it writes is copied and charged to
the case (the fork server freezes its objects out of the garbage collector's reach, so
reference counts and GC headers touch few of them).

Both cgroup versions:
- v1 (``N:memory:/path`` in /proc/self/cgroup): ``memory.limit_in_bytes`` (and
  ``memory.memsw.limit_in_bytes`` where swap is accounted, so the model cannot swap past
  the bound); the OOM kills are ``oom_kill`` in ``memory.oom_control`` (kernel 4.13+),
  else ``memory.failcnt`` says the limit was hit.
- v2 (``0::/path``): ``memory.max`` (and ``memory.swap.max`` = 0); the kills are
  ``oom_kill`` in ``memory.events``. A v2 parent must have the memory controller in its
  ``cgroup.subtree_control``, which the kernel refuses while the parent itself holds
  processes (the "no internal processes" rule). So on v2 this works only where the
  supervisor's cgroup can enable memory for children: not in a systemd service's own
  cgroup, where the supervisor itself lives (that would need it to move into a leaf of a
  delegated subtree first, which it does not do yet).

Where none can be made (no permission, no controller), ``create`` says why and the
worker falls back to RLIMIT_AS. Linux only; no third-party imports (the worker runs
this on Python 3.10 too).
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
MECHANISM_V1 = "cgroup v1 memory.limit_in_bytes"
MECHANISM_V2 = "cgroup v2 memory.max"


def own_memory_cgroup(proc_cgroup: str | None = None, root: Path = CGROUP_ROOT) -> tuple[int, Path] | None:
    """(version, folder) of this process's memory cgroup, or None if there is none."""
    if proc_cgroup is None:
        try:
            proc_cgroup = Path("/proc/self/cgroup").read_text()
        except OSError:
            return None
    v2_path: str | None = None
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _hid, controllers, path = parts
        if "memory" in controllers.split(","):
            folder = root / "memory" / path.lstrip("/")
            if folder.is_dir():
                return 1, folder
        if controllers == "":
            v2_path = path
    if v2_path is not None:
        # The unified hierarchy at the root (v2 only) or at /sys/fs/cgroup/unified (hybrid,
        # where it usually has no memory controller).
        for base in (root, root / "unified"):
            folder = base / v2_path.lstrip("/")
            if (base / "cgroup.controllers").is_file() and folder.is_dir():
                controllers = _read(base / "cgroup.controllers") or ""
                if "memory" in controllers.split():
                    return 2, folder
    return None


@dataclass
class MemoryCgroup:
    """One case's memory cgroup. ``remove`` it once the case's processes are gone."""

    version: int
    path: Path
    limit_mb: int

    @property
    def mechanism(self) -> str:
        name = MECHANISM_V1 if self.version == 1 else MECHANISM_V2
        return f"{name} = {self.limit_mb} MB above the baseline (charges after the imports)"

    @classmethod
    def create(cls, name: str, limit_mb: int, *, parent: tuple[int, Path] | None = None) -> MemoryCgroup | str:
        """A new cgroup ``name`` under this process's memory cgroup, limited to
        ``limit_mb``; or a line saying why none could be made."""
        found = parent or own_memory_cgroup()
        if found is None:
            return "no memory cgroup controller is available to this process"
        version, base = found
        path = base / name
        try:
            if version == 2:
                _enable_memory_controller(base)
            path.mkdir(mode=0o755)
        except OSError as exc:
            return f"cannot make a memory cgroup under {base}: {_why(exc)}"
        group = cls(version, path, int(limit_mb))
        limit = str(int(limit_mb) << 20)
        try:
            if version == 1:
                _write(path / "memory.limit_in_bytes", limit)
                memsw = path / "memory.memsw.limit_in_bytes"
                if memsw.exists():
                    _write(memsw, limit)
            else:
                _write(path / "memory.max", limit)
                swap = path / "memory.swap.max"
                if swap.exists():
                    _write(swap, "0")
        except OSError as exc:
            group.remove()
            return f"cannot set a memory limit in {path}: {_why(exc)}"
        return group

    def add_self(self) -> None:
        """Move the calling process into the cgroup; raises OSError."""
        _write(self.path / "cgroup.procs", str(os.getpid()))

    def oom_kills(self) -> int:
        """How many processes the kernel killed here for want of memory (0 on v1 kernels
        before 4.13, which lack the counter: ``memory.failcnt`` also counts page-cache
        reclaim, so it cannot tell an OOM kill from a full cache)."""
        if self.version == 1:
            return _field(self.path / "memory.oom_control", "oom_kill") or 0
        return _field(self.path / "memory.events", "oom_kill") or 0

    def remove(self, wait_s: float = 2.0) -> bool:
        """Remove the cgroup (its charges go to the parent). The kernel refuses while a
        process is still in it (EBUSY): retried for ``wait_s``, then moved to the parent
        and retried once more. True if it is gone."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                self.path.rmdir()
                return True
            except FileNotFoundError:
                return True
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    break
            time.sleep(0.02)
        for pid in (_read(self.path / "cgroup.procs") or "").split():
            with contextlib.suppress(OSError):
                _write(self.path.parent / "cgroup.procs", pid)
        try:
            self.path.rmdir()
            return True
        except OSError:
            return False


def _enable_memory_controller(base: Path) -> None:
    control = base / "cgroup.subtree_control"
    if "memory" in (_read(control) or "").split():
        return
    _write(control, "+memory")


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _write(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _field(path: Path, name: str) -> int | None:
    for line in (_read(path) or "").splitlines():
        key, _, value = line.partition(" ")
        if key == name:
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _why(exc: OSError) -> str:
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "permission denied (run as root, or give the service a delegated cgroup)"
    if exc.errno == errno.EBUSY:
        return "the parent cgroup holds processes, so cgroup v2 will not enable memory for children"
    return exc.strerror or str(exc)
