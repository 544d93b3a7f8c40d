"""A real OpenSSH server on 127.0.0.1 for the tests of the SSH paths.

``SshServer`` runs ``/usr/sbin/sshd -D -e -f CONFIG`` on a free high port of 127.0.0.1
with a host key and a client key pair of its own (nothing of the user's ~/.ssh is read
or written), and gives the client side as ``-o`` options (``client_options``) or as an
ssh config file (``client_config``). It lets the current user in with the client key
only (``PermitRootLogin prohibit-password`` when that user is root), allows Unix-socket
forwarding, and on ``stop`` kills the daemon and its session processes.

``require_openssh()`` skips a test where sshd, ssh or ssh-keygen is missing (and fails
under CI=true, through ``tests.realenv.missing``).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import psutil

from tests.realenv import missing

SSHD = "/usr/sbin/sshd"
PRIVSEP_DIR = Path("/run/sshd")  # Debian's sshd refuses to start without it
START_TIMEOUT_S = 10.0


def require_openssh() -> tuple[str, str, str]:
    """(sshd, ssh, ssh-keygen), or skip (fail under CI=true) naming what is missing."""
    sshd = SSHD if os.access(SSHD, os.X_OK) else shutil.which("sshd")
    ssh, keygen = shutil.which("ssh"), shutil.which("ssh-keygen")
    if sshd is None:
        missing("no OpenSSH server (/usr/sbin/sshd): `apt install openssh-server`")
    if ssh is None or keygen is None:
        missing("no OpenSSH client (ssh, ssh-keygen): `apt install openssh-client`")
    return sshd, ssh, keygen


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _openssh_version(ssh: str) -> tuple[int, int]:
    done = subprocess.run([ssh, "-V"], capture_output=True, text=True, timeout=10)
    found = re.search(r"OpenSSH_(\d+)\.(\d+)", done.stderr + done.stdout)
    return (int(found.group(1)), int(found.group(2))) if found else (0, 0)


class SshServer:
    """One sshd on 127.0.0.1; its files live in ``folder`` (give it a short path)."""

    def __init__(self, folder: Path) -> None:
        self.sshd, self.ssh, keygen = require_openssh()
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        self.user = getpass.getuser()
        self.host = f"{self.user}@127.0.0.1"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = folder / "sshd.log"
        self.host_key = folder / "host_ed25519"
        self.client_key = folder / "id_ed25519"
        self.other_key = folder / "other_ed25519"  # a key the server does not accept
        for key in (self.host_key, self.client_key, self.other_key):
            if not key.exists():
                subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", key.name, "-f", str(key)],
                               check=True, capture_output=True, timeout=30)  # fmt: skip
        self.authorized_keys = folder / "authorized_keys"
        self.authorized_keys.write_bytes(self.client_key.with_suffix(".pub").read_bytes())
        self.known_hosts = folder / "known_hosts"
        self.config = folder / "sshd_config"
        self.version = _openssh_version(self.ssh)

    # -- the client side --------------------------------------------------------------------

    def client_options(self, key: Path | None = None) -> list[str]:
        """``-o`` values (without the ``-o``) that reach this server non-interactively."""
        return [
            f"Port={self.port}",
            f"IdentityFile={key or self.client_key}",
            "IdentitiesOnly=yes",
            f"UserKnownHostsFile={self.known_hosts}",
            "GlobalKnownHostsFile=/dev/null",
            "StrictHostKeyChecking=yes",
            "ConnectTimeout=5",
        ]  # BatchMode=yes too, but the tunnel sets it itself (a user's would be refused)

    def client_config(self, extra: tuple[str, ...] = (), name: str = "ssh_config") -> Path:
        """The same as an ssh config file, for ``ssh -F`` (mode 0600, as a user's own),
        with ``extra`` lines (``Key value``) after the others in its Host block."""
        path = self.folder / name
        lines = ["Host 127.0.0.1", "    BatchMode yes"]
        lines += [f"    {option.replace('=', ' ', 1)}" for option in self.client_options()]
        lines += [f"    {line}" for line in extra]
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o600)
        return path

    # -- the server -------------------------------------------------------------------------

    def _write_config(self) -> None:
        lines = [
            f"ListenAddress 127.0.0.1:{self.port}",
            f"HostKey {self.host_key}",
            f"PidFile {self.folder / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            f"AllowUsers {self.user}",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "AllowStreamLocalForwarding yes",
            "X11Forwarding no",
            "PrintMotd no",
            "LoginGraceTime 15",
            "MaxStartups 50",
            "LogLevel VERBOSE",
        ]
        if self.version >= (9, 8):  # a test's failed logins must not lock 127.0.0.1 out
            lines.append("PerSourcePenalties no")
        self.config.write_text("\n".join(lines) + "\n")

    def start(self) -> SshServer:
        """Start listening: on the port of an earlier start if there was one (a restarted
        server, where clients find it again), else on a free one."""
        if not PRIVSEP_DIR.is_dir():
            try:
                PRIVSEP_DIR.mkdir(mode=0o755, parents=True)
            except OSError as exc:
                missing(f"sshd needs {PRIVSEP_DIR}, which cannot be created here: {exc.strerror}")
        for attempt in range(3):  # another process may take the free port meanwhile
            self.port = self.port if self.port and attempt == 0 else _free_port()
            self._write_config()
            log = open(self.log_path, "ab")  # noqa: SIM115 - sshd keeps it open
            try:
                self.proc = subprocess.Popen([self.sshd, "-D", "-e", "-f", str(self.config)],
                                             stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                             start_new_session=True)  # fmt: skip
            finally:
                log.close()
            if self._wait_listening():
                self._write_known_hosts()
                return self
            self.stop()
        raise RuntimeError(f"sshd did not start: {self.log_tail()}")

    def _wait_listening(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as probe:
                    if probe.recv(64).startswith(b"SSH-"):
                        return True
            except OSError:
                time.sleep(0.02)
        return False

    def _write_known_hosts(self) -> None:
        public = self.host_key.with_suffix(".pub").read_text().split()
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {public[0]} {public[1]}\n")

    def session_pids(self) -> list[int]:
        """The daemon's per-connection processes (one or two per live ssh client)."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        try:
            return [p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def drop_sessions(self) -> int:
        """Kill every live connection on the server side, as a network drop would end
        them; the daemon goes on listening. Returns how many processes were killed."""
        pids = self.session_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(pids)

    def stop(self) -> None:
        """Kill the daemon and every session it forked (they leave its process group)."""
        if self.proc is None:
            return
        sessions = self.session_pids()  # before the daemon goes: then they lose their parent
        if self.proc.poll() is None:  # first no new connections, then none left
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in sessions:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc = None

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""

    def __enter__(self) -> SshServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
