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
        "-o", "ControlMaster=no",
        "-o", "ControlPath=none",
        "-o", "ServerAliveInterval=15",
        "-o", "ServerAliveCountMax=3",
        "-L", "/tmp/l.sock:/srv/agent.sock",
        "--", "me@gpu",
    ]  # fmt: skip


def test_ssh_forward_args_take_extra_options_and_default_to_the_system_socket() -> None:
    args = ssh_forward_args("gpu", "/tmp/l.sock", options=["ConnectTimeout=2"])
    assert args[args.index("-L") + 1] == f"/tmp/l.sock:{SYSTEM_SOCKET}"
    assert args[args.index("ConnectTimeout=2") - 1] == "-o"
    assert args.index("ControlPath=none") < args.index("ConnectTimeout=2") < args.index("-L")
    # The host comes after "--", so ssh never reads it as an option.
    assert args[-2:] == ["--", "gpu"]


@pytest.mark.parametrize(
    "host", ["-oProxyCommand=evil", "a;touch x", "me@$(id)", "h`id`", "me@-h", "-me@h", "a b", "", "h:port"]
)
def test_a_host_that_is_not_a_plain_user_at_host_is_refused(host: str) -> None:
    from core.protocol.address import ssh_host_problem

    assert "is not an SSH host" in (ssh_host_problem(host) or "")
    with pytest.raises(ValueError, match="is not an SSH host"):
        ssh_forward_args(host, "/tmp/l.sock")


@pytest.mark.parametrize(
    "host", ["gpu", "me@gpu-1.lab.example", "ssh://me@gpu:2222", "lab_user@10.0.0.7", "me@[::1]", "[fe80::1]:22"]
)
def test_plain_hosts_pass(host: str) -> None:
    from core.protocol.address import ssh_host_problem

    assert ssh_host_problem(host) is None


def test_ssh_options_replace_the_defaults_never_the_standard_ones_and_a_config_comes_first() -> None:
    # ssh keeps the first value it reads: the user's options go before the defaults.
    args = ssh_forward_args("h", "/l", "/r", ["ServerAliveInterval=5"], config="/home/me/lab.conf")
    assert args[:3] == ["-N", "-F", "/home/me/lab.conf"]
    assert args.index("BatchMode=yes") < args.index("ServerAliveInterval=5") < args.index("ServerAliveInterval=15")


@pytest.mark.parametrize(
    "option",
    ["ProxyCommand=nc %h %p", "proxycommand nc %h %p", " LocalCommand = id", "PermitLocalCommand=yes",
     "KnownHostsCommand=/bin/true", "Match exec true", "Include /tmp/x", "PKCS11Provider=/x.so",
     "SmartcardDevice=/tmp/evil.so", "smartcarddevice /tmp/evil.so", "SecurityKeyProvider=/x.so",
     "RemoteForward=2222 localhost:22", "ForwardAgent=yes", "ControlPersist=yes", "Host x",
     "SessionType=default", "RemoteCommand=id", "SetEnv=LD_PRELOAD=/x.so", "NoSuchKeyword=1"],
)  # fmt: skip
def test_ssh_options_outside_the_allowed_list_are_refused(option: str) -> None:
    from core.protocol.address import ssh_option_problem

    problem = ssh_option_problem(option)
    assert problem is not None and "is refused here" in problem and "not in the allowed list" in problem
    assert "ssh config file you own" in problem and "--ssh-config" in problem
    with pytest.raises(ValueError, match="is refused here"):
        ssh_forward_args("h", "/l", options=["Port=22", option])


@pytest.mark.parametrize(
    "option", ["BatchMode=no", "ExitOnForwardFailure no", "streamlocalbindunlink=no",
               "ControlMaster=auto", "ControlPath=/tmp/cm-%C"],
)  # fmt: skip
def test_the_tunnels_own_options_cannot_be_changed(option: str) -> None:
    from core.protocol.address import ssh_option_problem

    assert "the tunnel sets it itself" in (ssh_option_problem(option) or "")


@pytest.mark.parametrize(
    ("option", "words"),
    [("ProxyJump=me@bastion;touch /tmp/x", "ProxyJump hop"), ("ProxyJump=ok@b,$(id)", "ProxyJump hop"),
     ("ProxyJump=-oProxyCommand=id", "ProxyJump hop"), ("ProxyJump=a b", "ProxyJump hop"),
     ("User=$(id)", "ssh User"), ("User=-oProxyCommand", "ssh User"), ("User me;id", "ssh User"),
     ("HostName=a|b", "not a plain host"), ("HostKeyAlias=`id`", "not a plain host")],
)  # fmt: skip
def test_values_that_ssh_may_pass_to_a_shell_must_be_plain_names(option: str, words: str) -> None:
    from core.protocol.address import ssh_option_problem

    assert words in (ssh_option_problem(option) or "")


@pytest.mark.parametrize("option", ["", "Port", "=22", '"ProxyCommand"=x', "Port=22\nProxyCommand=x", "Port=2\x00"])
def test_malformed_ssh_options_are_refused(option: str) -> None:
    from core.protocol.address import ssh_option_problem

    assert ssh_option_problem(option) is not None


def test_ordinary_ssh_options_pass() -> None:
    from core.protocol.address import check_ssh_options

    options = ["Port=2222", "IdentityFile ~/.ssh/lab key", "ProxyJump=me@bastion", "User=lab", "ConnectTimeout=5",
               "proxyjump ssh://a@b:2222,[::1]:22,c", "ProxyJump=none", "HostName=::1", "HostKeyAlias=gpu.lab",
               "IdentitiesOnly=yes", "StrictHostKeyChecking accept-new", "UserKnownHostsFile=/dev/null",
               "ServerAliveInterval=5", "LogLevel=ERROR", "IdentityAgent=none"]  # fmt: skip
    assert check_ssh_options(options) == tuple(options)


def test_the_tunnels_options_win_over_an_ssh_config_with_controlmaster(tmp_path: Path) -> None:
    """ssh keeps the first value it reads and reads -o before any config file: `ssh -G`
    (what ssh would use) shows no ControlMaster, ControlPath or forwarding of the config."""
    import shutil
    import subprocess

    ssh = shutil.which("ssh")
    if ssh is None:
        pytest.skip("no OpenSSH client")
    config = tmp_path / "config"
    config.write_text("Host *\n  ControlMaster auto\n  ControlPath /tmp/cm-%C\n  ControlPersist 60\n"
                      "  BatchMode no\n  ExitOnForwardFailure no\n")  # fmt: skip
    config.chmod(0o600)
    args = ssh_forward_args("gpu", "/tmp/l.sock", config=str(config))
    done = subprocess.run([ssh, "-G", *args[1:]], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    seen = dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)
    assert seen["controlmaster"] == "false" and "controlpath" not in seen
    assert seen["batchmode"] == "yes" and seen["exitonforwardfailure"] == "yes"


# -- the ssh config file: another user's would give them ProxyCommand -------------------------


def test_a_config_file_of_ones_own_passes_and_a_missing_one_is_sshs_to_report(tmp_path: Path) -> None:
    from core.protocol.address import ssh_config_problem

    config = tmp_path / "lab.conf"
    assert ssh_config_problem(str(config)) is None
    config.write_text("Host lab\n")
    config.chmod(0o644)
    assert ssh_config_problem(str(config)) is None


def test_a_config_file_others_may_write_is_refused(tmp_path: Path) -> None:
    from core.protocol.address import ssh_config_problem

    config = tmp_path / "lab.conf"
    config.write_text("Host lab\n")
    for mode in (0o664, 0o646):
        config.chmod(mode)
        assert "is writable by others" in (ssh_config_problem(str(config)) or "")
        with pytest.raises(ValueError, match="writable by others"):
            ssh_forward_args("lab", "/l", config=str(config))
    config.chmod(0o600)
    tmp_path.chmod(0o777)  # a folder where anyone could swap the file
    try:
        assert "folder every user may write" in (ssh_config_problem(str(config)) or "")
    finally:
        tmp_path.chmod(0o700)


def test_another_users_config_file_is_refused(tmp_path: Path) -> None:
    from core.protocol.address import ssh_config_problem

    config = tmp_path / "lab.conf"
    config.write_text("Host lab\n")
    config.chmod(0o600)
    if os.getuid() != 0:
        pytest.skip("needs root to give the file to another user")
    os.chown(config, 1234, 1234)
    assert "belongs to another user (uid 1234)" in (ssh_config_problem(str(config)) or "")
    assert "belongs to another user (uid 1234)" in (ssh_config_problem(str(config), uid=1234 + 1) or "")
    assert ssh_config_problem(str(config), uid=1234) is None


@pytest.mark.parametrize("name", ["/tmp/a b.conf", "/tmp/x;touch y", "/tmp/$(id)", "/tmp/%h.conf", "/tmp/a'b"])
def test_a_config_file_name_a_shell_would_read_is_refused(name: str) -> None:
    from core.protocol.address import ssh_config_problem

    # ssh copies it unquoted into ProxyJump's shell command (`ssh -F FILE -W ...`).
    assert "passes it through a shell" in (ssh_config_problem(name) or "")


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

