"""Reach a remote agent: the GUI runs and owns ``ssh -N -L local.sock:remote.sock -- host``.

The system's OpenSSH does the crypto and the authentication (keys, agent, config); the
GUI only starts it through QProcess, waits for the forwarded local socket to appear,
reports ssh's own error text if it exits, and ends it when the agent is removed or the
application quits. Nothing here blocks the event loop. Reopening after a drop is the
caller's (``gui.agents.AgentConnection``): ``start()`` again, which first ends the old
ssh and removes its folder.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QObject, QProcess, QTimer, Signal

from core.protocol.address import SOCKET_NAME, SYSTEM_SOCKET, ssh_forward_args

logger = logging.getLogger(__name__)

POLL_MS = 50
DEFAULT_WAIT_MS = 30_000
STOP_GRACE_MS = 2000


class SshTunnel(QObject):
    """One forwarding. ``ready(local_socket)`` once usable, ``failed(message)`` if not."""

    ready = Signal(str)
    failed = Signal(str)
    closed = Signal()

    def __init__(
        self,
        host: str,
        remote_socket: str = SYSTEM_SOCKET,
        *,
        options: Sequence[str] = (),
        config: str | None = None,
        ssh: str = "ssh",
        wait_ms: int = DEFAULT_WAIT_MS,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.host = host
        self.remote_socket = remote_socket
        self.options = tuple(options)
        self.config = os.path.expanduser(config) if config else None
        self.ssh = ssh
        self.wait_ms = wait_ms
        self.folder: Path | None = None
        self.is_ready = False
        self.last_error = ""
        # The last failure cannot go away by trying again (ssh missing or not runnable, a
        # refused option, host or config file): the caller should not retry it.
        self.permanent_error = False
        # ssh's last "channel N: open failed" line while the forward is up: a client that
        # connected to the local socket found no agent on the remote one.
        self.channel_error = ""
        self._stderr = bytearray()
        self._process: QProcess | None = None
        self._poll = QTimer(self)
        self._poll.setInterval(POLL_MS)
        self._poll.timeout.connect(self._check_socket)
        self._deadline = QTimer(self)
        self._deadline.setSingleShot(True)
        self._deadline.timeout.connect(self._timed_out)

    @property
    def local_socket(self) -> str:
        if self.folder is None:
            return ""
        return str(self.folder / SOCKET_NAME)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.state() != QProcess.ProcessState.NotRunning

    @property
    def pid(self) -> int | None:
        """The ssh process's id while it runs (for tests and logs)."""
        if self._process is None or not self.running:
            return None
        return int(self._process.processId()) or None

    def start(self) -> None:
        self.stop()
        self.permanent_error = False
        exe = shutil.which(self.ssh)
        if exe is None:
            self._fail(f"ssh is not installed here, so {self.host} cannot be reached. "
                       "Install an OpenSSH client (e.g. `apt install openssh-client`).", permanent=True)  # fmt: skip
            return
        try:  # a refused option, host or config file never reaches ssh (checked now: the
            # config file is read now, and may have changed since the agent was added)
            ssh_forward_args(self.host, "", self.remote_socket, self.options, self.config)
        except ValueError as exc:
            self._fail(f"Will not run ssh for {self.host}: {exc}.", permanent=True)
            return
        # A private 0700 folder: only this user can reach the forwarded socket.
        self.folder = Path(tempfile.mkdtemp(prefix="backbench-ssh-"))
        self._stderr.clear()
        self.channel_error = ""
        self.is_ready = False
        process = QProcess(self)
        process.setProcessChannelMode(QProcess.ProcessChannelMode.SeparateChannels)
        process.setStandardInputFile(QProcess.nullDevice())
        process.setStandardOutputFile(QProcess.nullDevice())
        process.readyReadStandardError.connect(self._read_stderr)
        process.finished.connect(self._on_finished)
        process.errorOccurred.connect(self._on_process_error)
        self._process = process
        args = ssh_forward_args(self.host, self.local_socket, self.remote_socket, self.options, self.config)
        logger.info("Starting the tunnel: %s %s", exe, " ".join(args))
        process.start(exe, args)
        self._poll.start()
        self._deadline.start(self.wait_ms)

    def stop(self) -> None:
        """End ssh (SIGTERM, then SIGKILL after a grace period) and remove the folder."""
        self._poll.stop()
        self._deadline.stop()
        process, self._process = self._process, None
        if process is not None:
            process.finished.disconnect(self._on_finished)
            process.errorOccurred.disconnect(self._on_process_error)
            if process.state() != QProcess.ProcessState.NotRunning:
                process.terminate()
                if not process.waitForFinished(STOP_GRACE_MS):
                    process.kill()
                    process.waitForFinished(STOP_GRACE_MS)
            process.deleteLater()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
        if self.is_ready:
            self.is_ready = False
            self.closed.emit()

    def _read_stderr(self) -> None:
        if self._process is not None:
            data = bytes(self._process.readAllStandardError().data())
            self._stderr += data
            del self._stderr[:-8192]  # keep the tail; ssh's reason comes last
            failed = [line.strip() for line in data.decode(errors="replace").splitlines() if "open failed" in line]
            if failed:
                self.channel_error = failed[-1]

    def _stderr_text(self) -> str:
        text = self._stderr.decode(errors="replace").strip()
        return text or "ssh gave no message"

    def _check_socket(self) -> None:
        if self.folder is not None and Path(self.local_socket).exists():
            self._poll.stop()
            self._deadline.stop()
            self.is_ready = True
            self.ready.emit(self.local_socket)

    def _on_finished(self, exit_code: int, status: QProcess.ExitStatus) -> None:
        self._read_stderr()
        was_ready = self.is_ready
        message = (
            f"ssh to {self.host} exited (status {exit_code}): {self._stderr_text()}"
            if status == QProcess.ExitStatus.NormalExit
            else f"ssh to {self.host} crashed: {self._stderr_text()}"
        )
        self._cleanup_after_exit()
        if was_ready:
            self.closed.emit()
        self._fail(message)

    def _on_process_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self._cleanup_after_exit()
            self._fail(f"Could not start ssh to reach {self.host}: {self._process_error_text()}",
                       permanent=True)  # fmt: skip

    def _process_error_text(self) -> str:
        return self._process.errorString() if self._process is not None else "unknown error"

    def _timed_out(self) -> None:
        self._read_stderr()
        detail = self._stderr_text()
        self.stop()
        self._fail(
            f"The SSH tunnel to {self.host} did not come up within {self.wait_ms / 1000:.0f} s "
            f"({detail}). Check that `ssh {self.host}` works without a password prompt."
        )

    def _cleanup_after_exit(self) -> None:
        self._poll.stop()
        self._deadline.stop()
        self.is_ready = False
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def _fail(self, message: str, *, permanent: bool = False) -> None:
        self.last_error = message
        self.permanent_error = permanent
        logger.warning("%s", message)
        self.failed.emit(message)
