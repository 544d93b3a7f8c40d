"""A blocking client for the agent, and the SSH tunnel that reaches a remote one.

``AgentClient`` connects, says hello (checking the protocol's major version), sends
requests and returns their results, keeping the notifications that arrive meanwhile.
``SshTunnel`` forwards a remote agent's Unix socket to a local one with the system's
``ssh -N -L``, so no TCP port is ever opened; it closes the tunnel on exit.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import select
import shutil
import socket
import subprocess
import tempfile
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from core import __version__
from core.errors import AgentUnavailableError, UsageError
from core.protocol.address import (
    SOCKET_NAME,
    SYSTEM_SOCKET,
    check_ssh_options,
    socket_dir_hint,
    socket_dir_problem,
    ssh_config_problem,
    ssh_forward_args,
    ssh_host_problem,
)
from core.protocol.codes import PROTOCOL_VERSION
from core.protocol.framing import FrameError, LineDecoder, encode
from core.protocol.messages import Notification, Response, make_request, parse_message
from core.protocol.methods import check_version

log = logging.getLogger(__name__)

START_HINT = "start it with `backbench agent` or `systemctl start backbench-agent`"
DEFAULT_TIMEOUT_S = 120.0
SSH_WAIT_S = 30.0
SSH_STDERR_NAME = "ssh.stderr"


def unavailable(path: str | os.PathLike[str], exc: OSError | None = None) -> AgentUnavailableError:
    if exc is not None and exc.errno in (errno.EACCES, errno.EPERM):
        return AgentUnavailableError(
            f"Permission denied on the agent socket {path}.",
            "Join the group that owns it (usually backbench: `sudo usermod -aG backbench $USER`, "
            "then log in again).",
        )
    return AgentUnavailableError(
        f"No agent at {path}: {START_HINT}.",
        "Or point to it with --socket PATH (or --ssh HOST for a remote one).",
    )


class AgentClient:
    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        name: str = f"backbench {__version__}",
        hello: bool = True,
    ) -> None:
        self.path = str(path)
        self.timeout_s = timeout_s
        folder = os.path.dirname(os.path.abspath(self.path))
        problem = socket_dir_problem(folder)
        if problem is not None:
            # Another user could have put their own agent's socket there.
            raise AgentUnavailableError(
                f"Will not connect to {self.path}: {problem}.", socket_dir_hint(folder)
            )
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.connect(self.path)
        except (FileNotFoundError, ConnectionRefusedError, PermissionError) as exc:
            self.sock.close()
            raise unavailable(self.path, exc) from None
        except OSError as exc:
            self.sock.close()
            raise AgentUnavailableError(
                f"Cannot connect to the agent at {self.path}: {exc.strerror or exc}.",
                f"Check the path; {START_HINT}.",
            ) from None
        self._decoder = LineDecoder()
        self._lines: deque[bytes] = deque()
        self._ids = itertools.count(1)
        self.notifications: deque[dict[str, Any]] = deque()
        self.hello: dict[str, Any] = {}
        if hello:
            self.hello = self.call("hello", protocol_version=PROTOCOL_VERSION, client=name)
            check_version(str(self.hello.get("protocol_version")), peer_role="agent")

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def _closed(self) -> AgentUnavailableError:
        return AgentUnavailableError(
            f"The agent at {self.path} closed the connection.",
            "It may have stopped or restarted; check its log.",
        )

    def send(self, msg: dict[str, Any]) -> None:
        try:
            self.sock.sendall(encode(msg))
        except (BrokenPipeError, ConnectionResetError):
            raise self._closed() from None

    def _read_line(self, deadline: float | None) -> bytes | None:
        while not self._lines:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self.sock], [], [], wait)
            if not ready:
                return None
            try:
                data = self.sock.recv(1 << 16)
            except ConnectionResetError:  # what a forwarding ssh does when its channel fails
                data = b""
            if not data:
                raise self._closed()
            for item in self._decoder.feed(data):
                if isinstance(item, FrameError):
                    log.warning("Dropped an oversized message from the agent")
                else:
                    self._lines.append(item)
        return self._lines.popleft()

    def _read_message(self, deadline: float | None) -> Any:
        line = self._read_line(deadline)
        return None if line is None else parse_message(line)

    def call(self, method: str, **params: Any) -> Any:
        """Send a request and wait for its reply; raise its error as a ProtocolError."""
        request_id = next(self._ids)
        self.send(make_request(request_id, method, **params))
        deadline = time.monotonic() + self.timeout_s
        while True:
            msg = self._read_message(deadline)
            if msg is None:
                raise AgentUnavailableError(
                    f"The agent at {self.path} did not answer {method} "
                    f"within {self.timeout_s:.0f} s.",
                    "Check the agent's log.",
                )
            if isinstance(msg, Notification):
                self.notifications.append({"method": msg.method, "params": msg.params})
            elif isinstance(msg, Response) and msg.id == request_id:
                if msg.error is not None:
                    raise msg.error.to_exception()
                return msg.result

    def notification(self, timeout_s: float | None = None) -> dict[str, Any] | None:
        """The next notification, waiting up to ``timeout_s`` (None: forever)."""
        if self.notifications:
            return self.notifications.popleft()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            msg = self._read_message(deadline)
            if msg is None:
                return None
            if isinstance(msg, Notification):
                return {"method": msg.method, "params": msg.params}


class SshTunnel:
    """``ssh -N -L local.sock:remote.sock -- [user@]host`` for the life of the object.

    ``options`` are extra ``ssh -o`` options and ``config`` an ssh config file (``-F``);
    a refused option (``core.protocol.address.ssh_option_problem``), a host that is not a
    plain ``[user@]host`` (``ssh_host_problem``) or a config file that another user could
    have written (``ssh_config_problem``) is a UsageError.
    ssh's stderr goes to a file in the tunnel's private folder (never a pipe that could
    fill up and stall it), so its messages can be read at any time: ``ssh_message()``.
    """

    def __init__(
        self,
        host: str,
        remote_socket: str = SYSTEM_SOCKET,
        ssh: str = "ssh",
        wait_s: float = SSH_WAIT_S,
        *,
        options: Sequence[str] = (),
        config: str | None = None,
    ) -> None:
        self.host = host
        self.remote_socket = remote_socket
        self.ssh = ssh
        self.wait_s = wait_s
        problem = ssh_host_problem(host)
        if problem is not None:
            raise UsageError(f"{problem}.", "Give --ssh [user@]host, or an alias of your ssh config.")
        try:
            self.options = check_ssh_options(options)
        except ValueError as exc:
            raise UsageError(f"{exc}.") from None
        problem = None if config is None else ssh_config_problem(config)
        if problem is not None:
            raise UsageError(f"{problem}.")
        self.config = config
        self.folder: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._stderr_text = ""

    @property
    def local_socket(self) -> Path:
        if self.folder is None:
            raise RuntimeError("the tunnel is not open")
        return self.folder / SOCKET_NAME

    def ssh_message(self) -> str:
        """What ssh wrote to stderr so far (its last lines, stripped)."""
        if self.folder is not None:
            try:
                with open(self.folder / SSH_STDERR_NAME, "rb") as fh:
                    self._stderr_text = fh.read()[-8192:].decode(errors="replace").strip()
            except OSError:
                pass
        return self._stderr_text

    def open(self) -> Path:
        exe = shutil.which(self.ssh)
        if exe is None:
            raise AgentUnavailableError(
                "ssh is not installed here.", "Install an OpenSSH client, or use --socket."
            )
        self.folder = Path(tempfile.mkdtemp(prefix="backbench-ssh-"))  # mode 0700
        try:  # interrupted (Ctrl-C) or failed: no ssh and no private folder left behind
            return self._start_and_wait(exe)
        except BaseException:
            self.close()
            raise

    def _start_and_wait(self, exe: str) -> Path:
        try:  # the config file is checked again: it is read now, not when we were made
            args = ssh_forward_args(
                self.host, str(self.local_socket), self.remote_socket, self.options, self.config
            )
        except ValueError as exc:
            raise UsageError(f"{exc}.") from None
        command = [exe, *args]
        log.info("Opening the tunnel: %s", " ".join(command))
        try:
            with open(self.local_socket.parent / SSH_STDERR_NAME, "wb") as stderr:
                self.proc = subprocess.Popen(
                    command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr
                )
        except OSError as exc:
            raise AgentUnavailableError(
                f"Could not run {exe} to reach {self.host}: {exc.strerror or exc}.",
                "Check the OpenSSH client (`ssh -V`), or use --socket.",
            ) from None
        deadline = time.monotonic() + self.wait_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                message = _last_line(self.ssh_message())
                raise AgentUnavailableError(
                    f"ssh to {self.host} failed (exit status {self.proc.returncode}): "
                    f"{message or 'no message'}",
                    f"Check that `ssh {self.host}` works and that an agent listens on "
                    f"{self.remote_socket} there (--remote-socket PATH).",
                )
            if self.local_socket.exists():
                return self.local_socket
            time.sleep(0.05)
        message = _last_line(self.ssh_message())
        raise AgentUnavailableError(
            f"The SSH tunnel to {self.host} did not come up within {self.wait_s:.0f} s"
            + (f": {message}" if message else "."),
            f"Check that `ssh {self.host}` works without a password prompt.",
        )

    def explain(self, error: AgentUnavailableError) -> AgentUnavailableError:
        """``error`` (the agent client's, through the tunnel) with ssh's reason when ssh
        has one: the usual one is that no agent listens on the remote socket, which ssh
        reports only as a channel that failed to open."""
        deadline = time.monotonic() + 1.0
        while True:  # ssh writes its reason as it closes the forwarded connection
            message = self.ssh_message()
            lines = [line for line in message.splitlines() if "open failed" in line]
            if lines or self.proc is None or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if lines:
            return AgentUnavailableError(
                f"No agent at {self.remote_socket} on {self.host} (ssh: {lines[-1].strip()}).",
                "Start the agent there (`backbench agent`, or `systemctl start backbench-agent`), "
                "or give its socket with --remote-socket PATH (a per-user agent listens on "
                "/run/user/UID/backbench/agent.sock).",
            )
        if self.proc is not None and self.proc.poll() is not None:
            return AgentUnavailableError(
                f"ssh to {self.host} exited (status {self.proc.returncode}): "
                f"{_last_line(message) or 'no message'}",
                error.hint,
            )
        return error

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.folder is not None:
            self.ssh_message()  # keep ssh's last words for a caller that explains a failure
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def __enter__(self) -> Path:
        return self.open()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _last_line(text: str) -> str:
    """ssh's reason is its last line; earlier ones are warnings."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def connect(socket_path: str | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> AgentClient:
    from service.config import default_socket_path

    return AgentClient(socket_path or default_socket_path(), timeout_s=timeout_s)


def wait_until_listening(proc: subprocess.Popen[Any], path: str | Path, timeout_s: float) -> str | None:
    """Wait until the agent ``proc`` accepts connections on ``path``. None once it does,
    else why not (it exited, or the time ran out)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"the agent exited with {proc.returncode} at start"
        probe = socket.socket(socket.AF_UNIX)
        try:
            probe.connect(str(path))
            return None
        except OSError:
            time.sleep(0.05)
        finally:
            probe.close()
    return f"the agent did not listen within {timeout_s:.0f} s"
