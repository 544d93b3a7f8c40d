"""The supervisor's side of the fork server (core.measure.zygote).

``ForkServer`` starts a zygote for one preload set, waits until it has imported the
frameworks and proved it is safe to fork, and then asks it for one forked worker per
case. Frames still go straight from the worker to the supervisor, through a FIFO the
supervisor creates in a private folder (0700) and opens first; only the fork request,
the child's pid and its exit status (with its peak RSS from ``wait4``) pass through the
zygote.

A zygote that fails to start, says it is unsafe, or dies is not tried again for the
life of the ForkServer: the supervisor falls back to fork+exec and records why.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import select
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 300.0  # importing torch on a slow edge box takes a while
REPLY_TIMEOUT_S = 30.0


def zygote_command(worker_command: list[str]) -> list[str] | None:
    """The fork server's command for a worker command, or None where there is none (a
    custom worker, such as the tests' synthetic one, is always exec'd)."""
    if getattr(sys, "frozen", False) and worker_command[1:] == ["worker"]:
        return [worker_command[0], "zygote"]
    if len(worker_command) >= 3 and worker_command[-2:] == ["-m", "core.measure.worker"]:
        return [*worker_command[:-1], "core.measure.zygote"]
    return None


@dataclass
class ChildExit:
    """What the zygote's ``wait4`` said about a child: as from ``os.wait4``."""

    status: int
    ru_maxrss: int  # KB, like resource.struct_rusage.ru_maxrss


DIR_PREFIX = "backbench-fork-"  # then the supervisor's pid, a dash and mkdtemp's letters
_STALE_DIR = re.compile(re.escape(DIR_PREFIX) + r"(\d+)-")


def remove_stale_dirs(parent: Path) -> int:
    """Remove the private folders that supervisors killed mid-case (SIGKILL, a power cut)
    left in ``parent``: ours (this user's, not symlinks) whose pid is gone. A folder whose
    pid lives, or belongs to another user, is left alone. Returns how many went."""
    removed = 0
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return 0
    for entry in entries:
        found = _STALE_DIR.match(entry.name)
        if found is None:
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
            continue
        try:
            os.kill(int(found.group(1)), 0)
            continue  # alive (or another process with that pid): not ours to judge
        except ProcessLookupError:
            pass
        except (PermissionError, OverflowError, ValueError):
            continue
        _remove_tree(Path(entry.path))
        removed += not os.path.exists(entry.path)
    return removed


def _remove_tree(folder: Path) -> None:
    """Remove the private folder and the FIFOs and stderr files in it (no subfolders)."""
    with contextlib.suppress(OSError):
        for leftover in folder.iterdir():
            leftover.unlink()
        folder.rmdir()


class ForkServerError(Exception):
    """The fork server cannot serve: the caller falls back to fork+exec."""


class ForkServer:
    def __init__(
        self, command: list[str], key: str, env: dict[str, str] | None = None, cwd: str | None = None
    ) -> None:
        self.command = command
        self.key = key
        self.env = env
        self.cwd = cwd  # the zygote's working folder (None: this process's, as it starts)
        self.info: dict[str, Any] = {}
        self.failure: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._buffer = b""
        self._exits: dict[int, ChildExit] = {}
        # The private 0700 folder of the children's FIFOs, made as the zygote launches and
        # removed when it closes, or at the latest when this object goes or Python exits.
        self._dir: Path | None = None
        self._dir_finalizer: weakref.finalize | None = None
        self._seq = 0
        self.last_fork_threads = 0  # the zygote's thread count as it last forked
        self._launched_at = 0.0
        # Cases of one sweep run one at a time, but conversions run side by side: the
        # request/reply stream and the exit notes are shared, so one thread at a time.
        self._lock = threading.RLock()

    # -- lifecycle ---------------------------------------------------------------------

    def launch(self) -> None:
        """Start the zygote's process, without waiting for its imports; raises
        ForkServerError."""
        if self.failure is not None:
            raise ForkServerError(self.failure)
        if self.alive:
            return
        self.info = {}
        self._buffer = b""
        self._make_dir()
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self._launched_at = time.monotonic()
        try:
            self._proc = subprocess.Popen(
                [*self.command, "--preload", self.key, "--parent-pid", str(os.getpid())],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                start_new_session=True,
                env=self.env,
                cwd=self.cwd or os.getcwd(),
            )
        except OSError as exc:
            self._fail(f"could not start the fork server: {exc.strerror or exc}")

    def _start_unlocked(self) -> None:
        """Start the zygote (unless launched) and wait until it is ready; raises
        ForkServerError."""
        if self.failure is not None:
            raise ForkServerError(self.failure)
        if self.alive and self.info.get("ready"):
            return
        if not self.alive:
            self.launch()
        t0 = self._launched_at
        reply = self._reply(READY_TIMEOUT_S, lambda r: "ready" in r)
        if reply is None:
            self._fail(f"the fork server did not start: {self._stderr_tail() or 'no output'}")
        self.info = dict(reply or {})
        self.info["start_s"] = round(time.monotonic() - t0, 3)
        if not self.info.get("ready"):
            self._fail(f"forking is unsafe here: {self.info.get('unsafe')}")
        log.info(
            "fork server %s ready in %.1f s (pid %s, %.0f MB)",
            self.key, self.info["start_s"], self.info.get("pid"), self.info.get("rss_mb") or 0,
        )  # fmt: skip

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(OSError):
                if proc.stdin is not None:
                    proc.stdin.close()  # end of input: the zygote kills its children and exits
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        self._remove_dir()

    def _make_dir(self) -> None:
        if self._dir is not None and self._dir.is_dir():
            return
        self._dir = Path(tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{os.getpid()}-"))  # 0700
        self._dir_finalizer = weakref.finalize(self, _remove_tree, self._dir)
        remove_stale_dirs(self._dir.parent)

    def _remove_dir(self) -> None:
        finalizer, self._dir_finalizer, self._dir = self._dir_finalizer, None, None
        if finalizer is not None:
            finalizer()

    def _fail(self, reason: str) -> None:
        self.failure = reason
        log.warning("fork server %s: %s; starting workers with fork+exec", self.key, reason)
        self.close()
        raise ForkServerError(reason)

    # -- one case ----------------------------------------------------------------------

    def _paths_unlocked(self) -> tuple[Path, Path]:
        """A fresh FIFO and stderr file for one child, in the private folder."""
        if self._dir is None:
            raise ForkServerError("the fork server is not running")
        self._seq += 1
        fifo = self._dir / f"case-{self._seq}.fifo"
        stderr = self._dir / f"case-{self._seq}.stderr"
        os.mkfifo(fifo, 0o600)
        stderr.touch(0o600)
        return fifo, stderr

    def _fork_unlocked(self, job: dict[str, Any], fifo: Path, stderr: Path) -> int:
        """Ask for a forked worker; the FIFO's read end must be open already."""
        if not self.alive or self._proc is None or self._proc.stdin is None:
            raise ForkServerError("the fork server is not running")
        request = {"op": "fork", "job": job, "fifo": str(fifo), "stderr": str(stderr)}
        try:
            self._proc.stdin.write((json.dumps(request) + "\n").encode())
            self._proc.stdin.flush()
        except OSError as exc:
            self._fail(f"the fork server stopped answering ({exc})")
        reply = self._reply(REPLY_TIMEOUT_S, lambda r: "forked" in r or "error" in r)
        if reply is None:
            self._fail(f"the fork server died: {self._stderr_tail() or 'no output'}")
        if "error" in (reply or {}):
            self._fail(str(reply["error"]))  # type: ignore[index]
        self.last_fork_threads = int((reply or {}).get("threads") or 0)
        return int(reply["forked"])  # type: ignore[index]

    def _exit_of_unlocked(self, pid: int, wait_s: float = 0.0) -> ChildExit | None:
        """The child's exit, once the zygote reaped it; None while it runs."""
        if pid not in self._exits:
            self._reply(wait_s, lambda r: r.get("exited") == pid)
        if pid in self._exits:
            return self._exits.pop(pid)
        if self._proc is None or self._proc.poll() is not None:
            # The zygote is gone, and PDEATHSIG took its children: a wait status of SIGKILL.
            return ChildExit(status=int(signal.SIGKILL), ru_maxrss=0)
        return None

    def start(self) -> None:
        """Start the zygote (unless launched) and wait until it is ready; raises
        ForkServerError."""
        with self._lock:
            self._start_unlocked()

    def fork(self, job: dict[str, Any], fifo: Path, stderr: Path) -> int:
        """Ask for a forked worker; the FIFO's read end must be open already."""
        with self._lock:
            return self._fork_unlocked(job, fifo, stderr)

    def exit_of(self, pid: int, wait_s: float = 0.0) -> ChildExit | None:
        """The child's exit, once the zygote reaped it; None while it runs."""
        with self._lock:
            return self._exit_of_unlocked(pid, wait_s)

    def paths(self) -> tuple[Path, Path]:
        """A fresh FIFO and stderr file for one child, in the private folder."""
        with self._lock:
            return self._paths_unlocked()

    def fileno(self) -> int | None:
        return None if self._proc is None or self._proc.stdout is None else self._proc.stdout.fileno()

    # -- the reply stream ----------------------------------------------------------------

    def _reply(self, timeout_s: float, wanted: Any) -> dict[str, Any] | None:
        """Read reply lines until one satisfies ``wanted`` or the time is up. Exit notes
        for any child are kept for ``exit_of``."""
        deadline = time.monotonic() + timeout_s
        fd = self.fileno()
        while fd is not None:
            while b"\n" in self._buffer:
                line, self._buffer = self._buffer.split(b"\n", 1)
                try:
                    reply = json.loads(line)
                except ValueError:
                    log.warning("fork server %s wrote %r", self.key, line[:200])
                    continue
                if "exited" in reply:
                    self._exits[int(reply["exited"])] = ChildExit(
                        int(reply["status"]), int(reply.get("maxrss_kb") or 0)
                    )
                if wanted(reply):
                    return reply
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(0.0, remaining))
            if not ready:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return None  # the zygote exited
            self._buffer += chunk
        return None

    def _stderr_tail(self, limit: int = 2000) -> str:
        if self._stderr is None:
            return ""
        try:
            self._stderr.seek(0, os.SEEK_END)
            size = self._stderr.tell()
            self._stderr.seek(max(0, size - limit))
            return self._stderr.read().decode(errors="replace").strip()
        except OSError:
            return ""
