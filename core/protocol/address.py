"""Where an agent listens, and the ssh command that forwards a remote agent's socket.

The agent, its terminal client and the GUI all read these facts from here. Pure
functions: they read the environment they are given (``os.environ`` by default) and
never touch a socket or start a process; the callers do that.
"""

from __future__ import annotations

import os
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
