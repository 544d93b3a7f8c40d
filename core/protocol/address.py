"""Where an agent listens, and the ssh command that forwards a remote agent's socket.

The agent, its terminal client and the GUI all read these facts from here. Pure
functions: they read the environment they are given (``os.environ`` by default) and
never touch a socket or start a process; the callers do that.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

SOCKET_NAME = "agent.sock"
# Under systemd (RuntimeDirectory=backbench), the agent every user of the host shares.
SYSTEM_SOCKET = "/run/backbench/agent.sock"
# BatchMode: neither the GUI nor a scripted `remote` has a terminal for a password prompt,
# so keys (or an ssh-agent) must do. ExitOnForwardFailure: a forward that cannot bind
# fails loudly instead of leaving ssh running uselessly. StreamLocalBindUnlink: a socket
# file left by an earlier tunnel is replaced rather than making the bind fail.
SSH_FORWARD_OPTIONS = ("ExitOnForwardFailure=yes", "StreamLocalBindUnlink=yes", "BatchMode=yes")


def user_socket_path(environ: Mapping[str, str] | None = None) -> Path:
    """The socket of this user's own agent: ``$XDG_RUNTIME_DIR/backbench/agent.sock``.

    Without a per-user runtime dir (a container, su without a session) it is a private
    folder in the temp dir, named for the uid so that users never share one.
    """
    env = os.environ if environ is None else environ
    xdg = env.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "backbench" / SOCKET_NAME
    return Path(tempfile.gettempdir()) / f"backbench-{os.getuid()}" / SOCKET_NAME


def socket_dir_problem(folder: str | os.PathLike[str], uid: int | None = None) -> str | None:
    """Why a folder that holds (or will hold) an agent's socket cannot be trusted, or
    None. As ssh-agent and tmux do: it must be a real directory (not a symlink), owned by
    this user or root, or by a user that root gave it to (its parent is root's and
    writable by nobody else, as /run is for the system agent), and neither its group nor
    other users may write in it, unless it is a sticky folder like /tmp, where no one
    can replace another user's file. Otherwise another user could put their own socket in its place
    and read every request."""
    uid = os.getuid() if uid is None else uid
    path = Path(folder)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None  # nothing there yet: the agent creates it, 0700
    except OSError as exc:
        return f"cannot inspect {path}: {exc.strerror or exc}"
    if stat.S_ISLNK(info.st_mode):
        return f"{path} is a symbolic link"
    if not stat.S_ISDIR(info.st_mode):
        return f"{path} is not a directory"
    if info.st_uid not in (uid, 0) and not _root_controlled(path.parent):
        return f"{path} belongs to another user (uid {info.st_uid})"
    sticky = bool(info.st_mode & stat.S_ISVTX)
    if info.st_mode & stat.S_IWOTH and not sticky:
        return f"{path} is writable by every user (mode {stat.S_IMODE(info.st_mode):o})"
    if info.st_mode & stat.S_IWGRP and not sticky:
        # Members of the group may connect (the system agent's folder is 0750), but not
        # put a socket of their own in the agent's place.
        return f"{path} is writable by its group (mode {stat.S_IMODE(info.st_mode):o})"
    return None


def _root_controlled(folder: Path) -> bool:
    """Only root can create or hand over entries here: owned by root, writable by no one
    else."""
    try:
        info = os.stat(folder)
    except OSError:
        return False
    return info.st_uid == 0 and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def socket_dir_hint(folder: str | os.PathLike[str]) -> str:
    return (
        f"Remove {folder} if it is not yours (or `chmod 700` it if it is), or set "
        "XDG_RUNTIME_DIR to a folder only you can write, or give another --socket."
    )


def ssh_forward_args(
    host: str, local_socket: str, remote_socket: str = SYSTEM_SOCKET, options: Sequence[str] = ()
) -> list[str]:
    """The arguments after the ssh program that forward ``remote_socket`` on ``host`` to
    ``local_socket``: ``-N -o ... -L local:remote -- [user@]host``.

    ``options`` are extra ``-o`` options after the standard ones. The ``--`` ends ssh's
    options, so a host that begins with '-' can never be read as one.
    """
    args = ["-N"]
    for option in (*SSH_FORWARD_OPTIONS, *options):
        args += ["-o", option]
    return [*args, "-L", f"{local_socket}:{remote_socket}", "--", host]
