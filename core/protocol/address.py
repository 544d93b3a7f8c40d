"""Where an agent listens, and the ssh command that forwards a remote agent's socket.

The agent, its terminal client and the GUI all read these facts from here. Pure
functions: they read the environment they are given (``os.environ`` by default) and
never touch a socket or start a process; the callers do that.
"""

from __future__ import annotations

import os
import re
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
# file left by an earlier tunnel is replaced rather than making the bind fail. ssh keeps
# the first value it reads for an option, so these win over any given after them.
SSH_FORWARD_OPTIONS = ("ExitOnForwardFailure=yes", "StreamLocalBindUnlink=yes", "BatchMode=yes")
# Defaults that a user's own -o options replace (they come first): a link that died
# silently (a laptop that slept, a NAT that forgot the connection) ends ssh within about
# 45 s, so that the GUI notices and reconnects instead of waiting on a dead tunnel.
SSH_DEFAULT_OPTIONS = ("ServerAliveInterval=15", "ServerAliveCountMax=3")
# ssh options never accepted as -o options from our command line or the GUI's settings:
# those that run a program or load code, and those that make the tunnel something other
# than one forward of the agent's socket in a process we own. A settings file can be
# copied or edited by others, and a command line is often pasted, so these belong only in
# an ssh config file the user reads and chooses (~/.ssh/config, or -F FILE).
REFUSED_SSH_OPTIONS = {
    **dict.fromkeys(
        ("proxycommand", "localcommand", "permitlocalcommand", "knownhostscommand",
         "pkcs11provider", "securitykeyprovider", "xauthlocation", "match", "include"),
        "runs a program or loads code",
    ),
    **dict.fromkeys(
        ("localforward", "remoteforward", "dynamicforward", "clearallforwardings", "tunnel",
         "tunneldevice", "forwardagent", "forwardx11", "forwardx11trusted", "remotecommand",
         "sessiontype", "forkafterauthentication", "controlpersist"),
        "changes what the tunnel forwards or who owns it",
    ),
}  # fmt: skip
_SSH_OPTION = re.compile(r"\s*([A-Za-z][A-Za-z0-9]*)\s*(?:=|\s)\s*(\S.*)$", re.DOTALL)


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


def ssh_option_problem(option: str) -> str | None:
    """Why ``option`` (the text after ``ssh -o``, ``Key=value`` or ``Key value``) is
    refused, or None. Only the form and the REFUSED_SSH_OPTIONS are checked; ssh itself
    reports an option it does not know, or a bad value."""
    if any(ord(c) < 32 or ord(c) == 127 for c in option):
        return f"the ssh option {option!r} holds a control character"
    found = _SSH_OPTION.match(option)
    if found is None:
        return f"{option!r} is not an ssh option (write Key=value, e.g. Port=2222)"
    why = REFUSED_SSH_OPTIONS.get(found.group(1).lower())
    if why is not None:
        return (
            f"the ssh option {found.group(1)} is refused here: it {why}. "
            "If you need it, put it in an ssh config file (~/.ssh/config, or one given with -F)"
        )
    return None


def check_ssh_options(options: Sequence[str]) -> tuple[str, ...]:
    """``options`` as a tuple; ValueError with the first problem (``ssh_option_problem``)."""
    for option in options:
        problem = ssh_option_problem(option)
        if problem is not None:
            raise ValueError(problem)
    return tuple(options)


def ssh_config_problem(path: str) -> str | None:
    """Why ``path`` cannot be given to ``ssh -F``, or None (a missing file is ssh's to
    report, as it does in one line)."""
    if not path.strip():
        return "the ssh config file is empty text"
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        return f"the ssh config file name {path!r} holds a control character"
    return None


def ssh_forward_args(
    host: str,
    local_socket: str,
    remote_socket: str = SYSTEM_SOCKET,
    options: Sequence[str] = (),
    config: str | None = None,
) -> list[str]:
    """The arguments after the ssh program that forward ``remote_socket`` on ``host`` to
    ``local_socket``: ``-N [-F config] -o ... -L local:remote -- [user@]host``.

    ``options`` are extra ``-o`` options: after the standard ones, which they cannot
    change, and before the default ones, which they replace. ``config`` is an ssh config
    file read instead of ~/.ssh/config (``-F``). Raises ValueError for a refused option
    (``ssh_option_problem``). The ``--`` ends ssh's options, so a host that begins with
    '-' can never be read as one.
    """
    args = ["-N"]
    if config:
        problem = ssh_config_problem(config)
        if problem is not None:
            raise ValueError(problem)
        args += ["-F", config]
    for option in (*SSH_FORWARD_OPTIONS, *check_ssh_options(options), *SSH_DEFAULT_OPTIONS):
        args += ["-o", option]
    return [*args, "-L", f"{local_socket}:{remote_socket}", "--", host]
