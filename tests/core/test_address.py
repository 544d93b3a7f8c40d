"""Where agents listen and the ssh forwarding argv: the one home (core.protocol.address)
that the agent, its terminal client and the GUI share."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from core.protocol.address import SYSTEM_SOCKET, ssh_forward_args, user_socket_path


def test_the_system_socket_is_the_systemd_runtime_directory() -> None:
    assert SYSTEM_SOCKET == "/run/backbench/agent.sock"


def test_the_user_socket_lives_in_the_xdg_runtime_dir() -> None:
    env = {"XDG_RUNTIME_DIR": "/run/user/1000"}
    assert user_socket_path(env) == Path("/run/user/1000/backbench/agent.sock")


def test_without_a_runtime_dir_the_user_socket_is_private_to_the_uid() -> None:
    private = Path(tempfile.gettempdir()) / f"backbench-{os.getuid()}" / "agent.sock"
    assert user_socket_path({}) == private
    # A relative XDG_RUNTIME_DIR is unsafe (it depends on the working directory): ignored.
    assert user_socket_path({"XDG_RUNTIME_DIR": "run/user"}) == private


def test_the_user_socket_reads_the_process_environment_by_default(monkeypatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/4242")
    assert user_socket_path() == Path("/run/user/4242/backbench/agent.sock")


def test_ssh_forward_args_forward_one_socket_and_keep_the_host_out_of_the_options() -> None:
    args = ssh_forward_args("me@gpu", "/tmp/l.sock", "/srv/agent.sock")
    assert args == [
        "-N",
        "-o", "ExitOnForwardFailure=yes",
        "-o", "StreamLocalBindUnlink=yes",
        "-o", "BatchMode=yes",
        "-L", "/tmp/l.sock:/srv/agent.sock",
        "--", "me@gpu",
    ]  # fmt: skip


def test_ssh_forward_args_take_extra_options_and_default_to_the_system_socket() -> None:
    args = ssh_forward_args("-oProxyCommand=evil", "/tmp/l.sock", options=["ConnectTimeout=2"])
    assert args[args.index("-L") + 1] == f"/tmp/l.sock:{SYSTEM_SOCKET}"
    assert args[args.index("ConnectTimeout=2") - 1] == "-o"
    assert args.index("BatchMode=yes") < args.index("ConnectTimeout=2") < args.index("-L")
    # Whatever the host looks like, it comes after "--", so ssh never reads it as an option.
    assert args[-2:] == ["--", "-oProxyCommand=evil"]
