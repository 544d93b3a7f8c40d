"""``backbench-agent``: the headless daemon that runs benchmark jobs and streams telemetry.

One process: an asyncio loop serves clients on a Unix socket, and one dispatcher thread
measures queued jobs, each case in its own worker process. Startup refuses to steal a
socket another agent holds, removes a stale one, opens (and if need be quarantines) the
store, marks jobs a dead agent left running as interrupted, then tells systemd READY=1.
SIGTERM (or Ctrl-C) stops taking jobs, cancels the running case, keeps what completed,
marks the job interrupted and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import grp
import logging
import os
import signal
import socket
import stat
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from core import __version__
from core.errors import BackbenchError, UsageError
from core.measure.environment import manifest as host_manifest
from core.protocol.address import socket_dir_hint, socket_dir_problem
from core.store import Store
from service import systemd
from service.config import AgentConfig, parse_config
from service.connections import Connections
from service.dispatcher import JobDispatcher
from service.handlers import Api
from service.jobs import JobQueue
from service.probe import Prober
from service.server import AgentServer
from service.telemetry import LoopBridge
from service.uploads import ModelAccess, UploadManager

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_ERROR = 1
MAX_UNIX_PATH_BYTES = 107
DISPATCHER_STOP_EXTRA_S = 30.0


class AgentAlreadyRunningError(BackbenchError):
    pass


LOCK_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def _lock_refused(path: Path, why: str, remove: str = "Remove it") -> UsageError:
    return UsageError(
        f"Will not use {path} as the agent's lock file: {why}.",
        f"{remove}: the agent makes its own lock file there. Or give it another --socket.",
    )


def _check_lock_file(path: Path, fd: int) -> None:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise _lock_refused(path, "it is not a regular file")
    if info.st_uid != os.geteuid():
        raise _lock_refused(path, f"it belongs to another user (uid {info.st_uid})")
    if stat.S_IMODE(info.st_mode) != 0o600:
        os.fchmod(fd, 0o600)  # one left by an older agent may be wider


def _owned_lock(path: Path) -> IO[bytes]:
    """An exclusive lock beside the socket, held for the agent's life: the reliable way
    to tell a live agent from a stale socket file.

    It lives in the socket's folder, which ``_prepare_socket_dir`` checked; still, a
    symlink or something else planted at its name is never followed or used
    (O_NOFOLLOW, a regular file of ours only), so the agent creates nothing elsewhere.
    """
    try:
        fd = os.open(path, LOCK_FLAGS, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _lock_refused(path, "it is a symbolic link") from None
        if exc.errno == errno.EISDIR:
            raise _lock_refused(path, "it is a folder", "Remove that folder") from None
        raise _lock_refused(
            path, f"it cannot be opened ({exc.strerror or exc})", "Remove it if it is not yours"
        ) from None
    try:
        _check_lock_file(path, fd)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            raise AgentAlreadyRunningError(
                f"Another backbench agent is already running on {path.with_suffix('')}.",
                "Stop it first (`systemctl stop backbench-agent`, or end that process), or "
                "give this one another --socket.",
            ) from None
        raise _lock_refused(path, f"it cannot be locked ({exc.strerror or exc})") from None
    except BackbenchError:
        os.close(fd)
        raise
    return os.fdopen(fd, "r+b", buffering=0)


def _clear_stale_socket(path: Path) -> None:
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_socket():
        raise UsageError(
            f"{path} exists and is not a socket.", "Remove it, or choose another --socket."
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        log.info("Removing the stale socket %s", path)
        path.unlink(missing_ok=True)
        return
    except OSError as exc:
        raise UsageError(
            f"Cannot check the socket {path}: {exc.strerror or exc}.",
            "Remove it by hand, or choose another --socket.",
        ) from None
    finally:
        probe.close()
    raise AgentAlreadyRunningError(
        f"Another agent answers on {path}.",
        "Stop it first (`systemctl stop backbench-agent`), or give this one another --socket.",
    )


def _listen(config: AgentConfig) -> socket.socket:
    path = config.socket_path
    if len(os.fsencode(path)) > MAX_UNIX_PATH_BYTES:
        raise UsageError(
            f"The socket path {path} is too long for a Unix socket.", "Choose a shorter --socket."
        )
    gid = -1
    if config.group:
        try:
            gid = grp.getgrnam(config.group).gr_gid
        except KeyError:
            raise UsageError(
                f"There is no group {config.group!r}.",
                f"Create it (groupadd {config.group}) or leave out --group.",
            ) from None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o117)  # the socket file is born 0660, never briefly wider
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        raise UsageError(
            f"Cannot listen on {path}: {exc.strerror or exc}.", "Choose another --socket."
        ) from None
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o660)
    if gid >= 0:
        os.chown(path, -1, gid)
    sock.listen(64)
    sock.setblocking(False)
    return sock


def _prepare_socket_dir(config: AgentConfig) -> None:
    folder = config.socket_path.parent
    try:
        folder.mkdir(parents=True, mode=0o750 if config.group else 0o700)
        created = True
    except FileExistsError:
        created = False
    # Created by someone else before us (or between a check and the mkdir): trust it
    # only as ssh-agent would.
    problem = socket_dir_problem(folder)
    if problem is not None:
        raise UsageError(f"Will not listen in {folder}: {problem}.", socket_dir_hint(folder))
    if not created:
        return
    if config.group:
        with contextlib.suppress(KeyError, OSError):
            os.chown(folder, -1, grp.getgrnam(config.group).gr_gid)


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.boot_id = uuid.uuid4().hex
        self._stop = asyncio.Event()

    def request_stop(self, signum: int) -> None:
        if self._stop.is_set():
            log.info("Already stopping (%s again)", signal.Signals(signum).name)
            return
        log.info(
            "%s: stopping: no new jobs; the running case is cancelled", signal.Signals(signum).name
        )
        self._stop.set()

    async def serve(self) -> int:
        config = self.config
        _prepare_socket_dir(config)
        lock = _owned_lock(config.socket_path.with_name(config.socket_path.name + ".lock"))
        try:
            _clear_stale_socket(config.socket_path)
            return await self._serve_locked()
        finally:
            lock.close()

    async def _serve_locked(self) -> int:
        config = self.config
        loop = asyncio.get_running_loop()
        store = Store(config.db_path, on_corrupt="quarantine")
        if store.quarantined is not None:
            log.error(
                "The store %s was corrupt: it was moved to %s and a new one started",
                config.db_path,
                store.quarantined,
            )
        queue = JobQueue(store, config.max_queued_jobs)
        queue.recover()
        manifest = await asyncio.to_thread(host_manifest)
        # Built in one direction: the clients' fan-out first, then the dispatcher that
        # publishes to it, the handlers that publish to it, and the server over both.
        connections = Connections()
        bridge = LoopBridge(loop, connections)
        dispatcher = JobDispatcher(queue, store, config, bridge, manifest)
        api = Api(
            config=config,
            store=store,
            queue=queue,
            uploads=UploadManager(config.uploads_dir, config.max_upload_bytes),
            access=ModelAccess(config.allowed_dirs),
            prober=Prober(config.worker_command),
            manifest=manifest,
            boot_id=self.boot_id,
            publish=connections.publish_event,
            describe_clients=connections.describe,
            dispatcher=dispatcher,
        )
        server = AgentServer(api, connections, config.client_queue_samples)
        sock = _listen(config)
        try:
            await server.start(sock)
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, self.request_stop, signum)
            dispatcher.start()
            log.info(
                "backbench agent %s listening on %s (store %s, pid %d)",
                __version__,
                config.socket_path,
                config.db_path,
                os.getpid(),
            )
            systemd.notify("READY=1\nSTATUS=idle")
            watchdog = asyncio.create_task(self._watchdog())
            await self._stop.wait()
            systemd.notify("STOPPING=1")
            watchdog.cancel()
            server.stop_listening()
            config.socket_path.unlink(missing_ok=True)  # new clients get "no agent" at once
            dispatcher.stop()
            grace = config.limits.term_grace_s + DISPATCHER_STOP_EXTRA_S
            if not await asyncio.to_thread(dispatcher.wait_stopped, grace):
                log.error("The running job did not stop within %.0f s; exiting anyway", grace)
            bridge.drain()
            await server.close()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
            sock.close()
            with contextlib.suppress(OSError):
                if config.socket_path.is_socket():
                    config.socket_path.unlink()
            store.close()
        log.info("backbench agent stopped")
        return EXIT_OK

    async def _watchdog(self) -> None:
        interval = systemd.watchdog_interval_s()
        if interval is None:
            return
        log.info("systemd watchdog: pinging every %.1f s", interval)
        while True:
            systemd.notify("WATCHDOG=1")
            await asyncio.sleep(interval)


def run_agent(config: AgentConfig) -> int:
    """Run until SIGTERM/SIGINT; returns the exit status. Errors print one line."""
    try:
        return asyncio.run(Agent(config).serve())
    except BackbenchError as exc:
        log.error("%s", exc)
        return EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--self-test" in args:  # before the agent's options: it starts an agent of its own
        from service.selftest import main as self_test

        return self_test([a for a in args if a != "--self-test"])
    try:
        config = parse_config(args)
    except BackbenchError as exc:
        sys.stderr.write(f"backbench-agent: error: {exc}\n")
        return EXIT_ERROR
    systemd.setup_logging(config.verbose)
    if config.allow_faults:
        log.warning("BACKBENCH_ALLOW_FAULTS=1: clients may inject worker faults (tests only)")
    return run_agent(config)


if __name__ == "__main__":
    sys.exit(main())
