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
# file left by an earlier tunnel is replaced rather than making the bind fail.
# ControlMaster=no, ControlPath=none: a user's ~/.ssh/config with `ControlMaster auto`
# and ControlPersist would otherwise hand the forward to a background master that
# outlives the tunnel (the ssh we own exits at once), or ride on a master already there.
# ssh keeps the first value it reads for an option, and reads the command line before
# any config file, so these win over any given after them and over the config's.
SSH_FORWARD_OPTIONS = (
    "ExitOnForwardFailure=yes", "StreamLocalBindUnlink=yes", "BatchMode=yes",
    "ControlMaster=no", "ControlPath=none",
)  # fmt: skip
# Defaults that a user's own -o options replace (they come first): a link that died
# silently (a laptop that slept, a NAT that forgot the connection) ends ssh within about
# 45 s, so that the GUI notices and reconnects instead of waiting on a dead tunnel.
SSH_DEFAULT_OPTIONS = ("ServerAliveInterval=15", "ServerAliveCountMax=3")
# The only ssh options accepted as -o options from our command line or the GUI's
# settings (lower case; ssh's keywords are case-insensitive): how to reach and
# authenticate the host, nothing that runs a program, loads code, or makes the tunnel
# something other than one forward of the agent's socket in a process we own. A settings
# file can be copied or edited by others, and a command line is often pasted, so every
# other option (ProxyCommand, PKCS11Provider and its alias SmartcardDevice, LocalCommand,
# Match exec...) belongs only in an ssh config file the user owns (~/.ssh/config, or
# --ssh-config FILE). A deny-list would miss an alias or a keyword of a newer OpenSSH.
ALLOWED_SSH_OPTIONS = frozenset(
    k.lower()
    for k in (
        "Port", "User", "HostName", "HostKeyAlias", "ProxyJump",
        "IdentityFile", "IdentitiesOnly", "CertificateFile", "IdentityAgent", "AddKeysToAgent",
        "ServerAliveInterval", "ServerAliveCountMax", "ConnectTimeout", "ConnectionAttempts",
        "TCPKeepAlive", "StrictHostKeyChecking", "UserKnownHostsFile", "GlobalKnownHostsFile",
        "HostKeyAlgorithms", "UpdateHostKeys", "VerifyHostKeyDNS", "CheckHostIP",
        "HashKnownHosts", "Ciphers", "MACs", "KexAlgorithms", "PubkeyAcceptedAlgorithms",
        "AddressFamily", "BindAddress", "Compression", "LogLevel", "RekeyLimit", "IPQoS",
        "PreferredAuthentications", "PubkeyAuthentication", "PasswordAuthentication",
        "KbdInteractiveAuthentication", "HostbasedAuthentication", "GSSAPIAuthentication",
    )
)  # fmt: skip
# The tunnel's own options (SSH_FORWARD_OPTIONS): never changed by the user's.
_TUNNEL_OPTIONS = frozenset(o.split("=", 1)[0].lower() for o in SSH_FORWARD_OPTIONS)
# A host name or address, a [user@]host[:port] ProxyJump hop or --ssh destination: only
# characters that mean nothing to a shell (ssh runs ProxyJump as a shell command, and
# before OpenSSH 10.3 does not check the names it puts there), never a leading '-'.
_HOST = r"(?:\[[0-9A-Fa-f:.]+\]|(?!-)[A-Za-z0-9._-]+)"
_USER = r"(?!-)[A-Za-z0-9._-]+"
_HOST_NAME = re.compile(rf"{_HOST}|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*")  # a bare IPv6 too
_USER_NAME = re.compile(_USER)
_DESTINATION = re.compile(rf"(?:ssh://)?(?:{_USER}@)?{_HOST}(?::[0-9]{{1,5}})?")
# Characters of an ssh config file's name: ssh copies it unquoted into ProxyJump's
# shell command (`ssh -F FILE -W ...`), so nothing a shell or ssh's %-tokens would read.
_CONFIG_NAME = re.compile(r"[A-Za-z0-9._/+,:=@~-]+")
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


def ssh_host_problem(host: str) -> str | None:
    """Why ``host`` (the ``[user@]host`` of ``--ssh`` or of a remote agent) cannot be
    given to ssh, or None: it must be ``[ssh://][user@]host[:port]`` of letters, digits,
    '.', '_' and '-' (or a bracketed IPv6 address), and not begin with '-'."""
    if _DESTINATION.fullmatch(host) is None:
        return (
            f"{host!r} is not an SSH host: write [user@]host with letters, digits, '.', '_' "
            "and '-' only (an alias of your ssh config file is fine)"
        )
    return None


def _value_problem(key: str, value: str) -> str | None:
    """Why the value of an allowed option that ssh may put in a shell command (through
    ProxyJump, or a ProxyCommand's %h and %r) is refused, or None."""
    lower = key.lower()
    if lower == "proxyjump":
        if value.lower() == "none":
            return None
        bad = [hop for hop in value.split(",") if _DESTINATION.fullmatch(hop) is None]
        if bad:
            return (
                f"the ProxyJump hop {bad[0]!r} is not [user@]host[:port] of letters, digits, "
                "'.', '_' and '-' (ssh runs ProxyJump through a shell)"
            )
    elif lower == "user" and _USER_NAME.fullmatch(value) is None:
        return f"the ssh User {value!r} holds characters other than letters, digits, '.', '_' and '-'"
    elif lower in ("hostname", "hostkeyalias") and _HOST_NAME.fullmatch(value) is None:
        return f"the ssh option {key} {value!r} is not a plain host name or address"
    return None


def ssh_option_problem(option: str) -> str | None:
    """Why ``option`` (the text after ``ssh -o``, ``Key=value`` or ``Key value``) is
    refused, or None. The key must be one of ALLOWED_SSH_OPTIONS, and the values that
    name hosts or users (ProxyJump, User, HostName, HostKeyAlias) plain names; ssh itself
    reports a bad value of the others."""
    if any(ord(c) < 32 or ord(c) == 127 for c in option):
        return f"the ssh option {option!r} holds a control character"
    found = _SSH_OPTION.match(option)
    if found is None:
        return f"{option!r} is not an ssh option (write Key=value, e.g. Port=2222)"
    key, value = found.group(1), found.group(2).strip()
    if key.lower() in _TUNNEL_OPTIONS:
        return f"the ssh option {key} is refused here: the tunnel sets it itself"
    if key.lower() not in ALLOWED_SSH_OPTIONS:
        return (
            f"the ssh option {key} is refused here: it is not in the allowed list (Port, User, "
            "IdentityFile, ProxyJump, ConnectTimeout... see docs/AGENT.md). Options such as this "
            "belong in an ssh config file you own (~/.ssh/config, or --ssh-config FILE)"
        )
    return _value_problem(key, value)


def check_ssh_options(options: Sequence[str]) -> tuple[str, ...]:
    """``options`` as a tuple; ValueError with the first problem (``ssh_option_problem``)."""
    for option in options:
        problem = ssh_option_problem(option)
        if problem is not None:
            raise ValueError(problem)
    return tuple(options)


def ssh_config_problem(path: str, uid: int | None = None) -> str | None:
    """Why ``path`` cannot be given to ``ssh -F``, or None. ``ssh -F`` skips the check
    ssh makes of ~/.ssh/config, and the file can run programs (ProxyCommand), so the same
    rule applies here: it must belong to this user or root and be writable by no one
    else, and its folder must not be writable by every user (unless sticky, as /tmp).
    Its name may hold no character a shell reads (ssh copies it into ProxyJump's shell
    command). A missing file is ssh's to report, as it does in one line; ``~`` is the
    home folder."""
    if not path.strip():
        return "the ssh config file is empty text"
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        return f"the ssh config file name {path!r} holds a control character"
    full = os.path.expanduser(path)
    if _CONFIG_NAME.fullmatch(full) is None:
        return (
            f"the ssh config file name {full!r} holds characters other than letters, digits "
            "and ._/+,:=@- (ssh passes it through a shell): move the file or link to it"
        )
    uid = os.getuid() if uid is None else uid
    try:
        info = os.stat(full)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot inspect the ssh config file {full}: {exc.strerror or exc}"
    if info.st_uid not in (uid, 0):
        return f"the ssh config file {full} belongs to another user (uid {info.st_uid})"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return (
            f"the ssh config file {full} is writable by others (mode "
            f"{stat.S_IMODE(info.st_mode):o}): `chmod go-w` it"
        )
    try:
        folder = os.stat(os.path.dirname(os.path.abspath(full)))
    except OSError:
        return None
    if folder.st_mode & stat.S_IWOTH and not folder.st_mode & stat.S_ISVTX:
        return f"the ssh config file {full} is in a folder every user may write"
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
    (``ssh_option_problem``), a config file that is not trusted (``ssh_config_problem``)
    or a host that is not a plain ``[user@]host`` (``ssh_host_problem``). The ``--`` ends
    ssh's options as well, so a host could never be read as one.
    """
    problem = ssh_host_problem(host)
    if problem is not None:
        raise ValueError(problem)
    args = ["-N"]
    if config:
        problem = ssh_config_problem(config)
        if problem is not None:
            raise ValueError(problem)
        args += ["-F", config]
    for option in (*SSH_FORWARD_OPTIONS, *check_ssh_options(options), *SSH_DEFAULT_OPTIONS):
        args += ["-o", option]
    return [*args, "-L", f"{local_socket}:{remote_socket}", "--", host]
