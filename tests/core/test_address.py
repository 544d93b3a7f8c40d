"""Where agents listen and the ssh forwarding argv: the one home (core.protocol.address)
that the agent, its terminal client and the GUI share."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

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
        "-o", "ServerAliveInterval=15",
        "-o", "ServerAliveCountMax=3",
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


def test_ssh_options_replace_the_defaults_never_the_standard_ones_and_a_config_comes_first() -> None:
    # ssh keeps the first value it reads: the user's options go before the defaults.
    args = ssh_forward_args("h", "/l", "/r", ["ServerAliveInterval=5"], config="/home/me/lab.conf")
    assert args[:3] == ["-N", "-F", "/home/me/lab.conf"]
    assert args.index("BatchMode=yes") < args.index("ServerAliveInterval=5") < args.index("ServerAliveInterval=15")


@pytest.mark.parametrize(
    "option",
    ["ProxyCommand=nc %h %p", "proxycommand nc %h %p", " LocalCommand = id", "PermitLocalCommand=yes",
     "KnownHostsCommand=/bin/true", "Match exec true", "Include /tmp/x", "PKCS11Provider=/x.so",
     "RemoteForward=2222 localhost:22", "ForwardAgent=yes", "ControlPersist=yes"],
)  # fmt: skip
def test_ssh_options_that_run_commands_or_change_the_tunnel_are_refused(option: str) -> None:
    from core.protocol.address import ssh_option_problem

    problem = ssh_option_problem(option)
    assert problem is not None and "is refused here" in problem and "ssh config file" in problem
    with pytest.raises(ValueError, match="is refused here"):
        ssh_forward_args("h", "/l", options=["Port=22", option])


@pytest.mark.parametrize("option", ["", "Port", "=22", '"ProxyCommand"=x', "Port=22\nProxyCommand=x", "Port=2\x00"])
def test_malformed_ssh_options_are_refused(option: str) -> None:
    from core.protocol.address import ssh_option_problem

    assert ssh_option_problem(option) is not None


def test_ordinary_ssh_options_pass() -> None:
    from core.protocol.address import check_ssh_options

    options = ["Port=2222", "IdentityFile ~/.ssh/lab key", "ProxyJump=me@bastion", "User=lab", "ConnectTimeout=5"]
    assert check_ssh_options(options) == tuple(options)


# -- who may own the socket's folder (issue 10, M2) -------------------------------------------


def test_a_private_folder_or_none_yet_is_trusted(tmp_path: Path) -> None:
    from core.protocol.address import socket_dir_problem

    assert socket_dir_problem(tmp_path / "not-yet") is None
    private = tmp_path / "backbench"
    private.mkdir(mode=0o700)
    assert socket_dir_problem(private) is None


def test_a_folder_anyone_may_write_is_refused(tmp_path: Path) -> None:
    from core.protocol.address import socket_dir_problem

    shared = tmp_path / "backbench-1000"
    shared.mkdir()
    shared.chmod(0o777)  # what another user left behind in /tmp
    assert "writable by every user" in (socket_dir_problem(shared) or "")
    shared.chmod(0o770)
    assert "writable by its group" in (socket_dir_problem(shared) or "")
    shared.chmod(0o750)  # the system agent's RuntimeDirectoryMode: its group may connect
    assert socket_dir_problem(shared) is None
    # A sticky folder such as /tmp itself: no one can replace another user's file.
    shared.chmod(0o1777)
    assert socket_dir_problem(shared) is None


def test_a_symlink_a_file_and_another_users_folder_are_refused(tmp_path: Path) -> None:
    from core.protocol.address import socket_dir_problem

    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    assert "symbolic link" in (socket_dir_problem(link) or "")
    plain = tmp_path / "file"
    plain.write_text("")
    assert "not a directory" in (socket_dir_problem(plain) or "")
    # In a /tmp-like folder (sticky, everyone writes), a folder owned by uid 1234 is not
    # trusted by user 1000; in a folder only root controls (as /run), it would be.
    tmp_like = tmp_path / "tmp"
    tmp_like.mkdir()
    theirs = tmp_like / "backbench-1000"
    theirs.mkdir(mode=0o700)
    if os.getuid() != 0:
        pytest.skip("needs root to give the folder to another user")
    os.chown(theirs, 1234, 1234)
    tmp_like.chmod(0o1777)
    assert "belongs to another user (uid 1234)" in (socket_dir_problem(theirs, uid=1000) or "")
    tmp_like.chmod(0o755)  # root's, written by no one else: root handed it over
    assert socket_dir_problem(theirs, uid=1000) is None

