"""`backbench remote --ssh` and the terminal client's SshTunnel through a real sshd on
127.0.0.1 (tests/sshd.py), to a real agent: the success path, and the failures that must
read as one line (a key the server refuses, no agent on the remote socket)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from core.errors import AgentUnavailableError, UsageError
from service.client import AgentClient, SshTunnel
from tests.service.agentlib import REPO, Agent
from tests.sshd import SshServer, require_openssh


@pytest.fixture(scope="module")
def sshd() -> Iterator[SshServer]:
    require_openssh()
    folder = Path(tempfile.mkdtemp(prefix="bbsshd-"))  # short: it holds forwarded sockets
    server = SshServer(folder / "sshd")
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def _tunnel_folders() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("backbench-ssh-*"))


def remote(
    sshd: SshServer, *args: str, options: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``backbench remote --ssh USER@127.0.0.1 [--ssh-option ...] ARGS``."""
    ssh_args: list[str] = []
    for option in sshd.client_options() if options is None else options:
        ssh_args += ["--ssh-option", option]
    return subprocess.run(
        [sys.executable, "-m", "core.cli", "remote", "--ssh", sshd.host, *ssh_args, *args],
        capture_output=True, text=True, timeout=60, cwd=REPO, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip


def test_remote_devices_and_jobs_through_a_real_sshd(agent: Agent, sshd: SshServer) -> None:
    before = _tunnel_folders()
    devices = remote(sshd, "--remote-socket", str(agent.socket), "devices", "--format", "json")
    assert devices.returncode == 0, devices.stderr + sshd.log_tail()
    assert "onnxruntime" in json.loads(devices.stdout)

    # The same host through an ssh config file (-F) instead of -o options.
    jobs = remote(sshd, "--ssh-config", str(sshd.client_config()), "--remote-socket",
                  str(agent.socket), "jobs", options=[])  # fmt: skip
    assert jobs.returncode == 0, jobs.stderr + sshd.log_tail()
    assert "Jobs on" in jobs.stdout
    assert _tunnel_folders() <= before  # each tunnel's private folder went with it
    assert _sessions_end(sshd)  # and so did ssh, with its session on the server


def _sessions_end(sshd: SshServer) -> bool:
    deadline = time.monotonic() + 5
    while sshd.session_pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    return not sshd.session_pids()


def test_a_refused_key_is_sshs_one_line(agent: Agent, sshd: SshServer) -> None:
    before = _tunnel_folders()
    options = sshd.client_options(key=sshd.other_key)
    done = remote(sshd, "--remote-socket", str(agent.socket), "jobs", options=options)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    first = done.stderr.strip().splitlines()[0]
    assert first.startswith(f"error: ssh to {sshd.host} failed (exit status 255): "), done.stderr
    assert "Permission denied (publickey)" in first
    assert _tunnel_folders() <= before


def test_no_agent_on_the_remote_socket_is_one_line(sshd: SshServer, tmp_path: Path) -> None:
    missing_socket = str(tmp_path / "none.sock")
    done = remote(sshd, "--remote-socket", missing_socket, "devices")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    first = done.stderr.strip().splitlines()[0]
    assert first.startswith(f"error: No agent at {missing_socket} on {sshd.host} (ssh: "), (
        done.stderr
    )
    assert "open failed" in first  # ssh's words for a forward that found no socket
    assert "--remote-socket" in first


def test_options_that_run_commands_are_refused_before_ssh_runs(sshd: SshServer) -> None:
    marker = Path(tempfile.gettempdir()) / f"bb-proxy-{os.getpid()}"
    done = remote(sshd, "jobs", options=[f"ProxyCommand=touch {marker}"])
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "ProxyCommand is refused" in done.stderr and "ssh config file" in done.stderr
    assert not marker.exists()
    with pytest.raises(UsageError, match="localcommand is refused"):
        SshTunnel(sshd.host, options=["localcommand echo hi"])
    with pytest.raises(UsageError, match="apply to --ssh only"):
        from argparse import Namespace

        from service.remote import _connected

        with _connected(Namespace(ssh=None, socket="x", ssh_option=["Port=2"], ssh_config=None)):
            pass


def test_the_tunnel_object_reaches_the_agent_and_cleans_up(agent: Agent, sshd: SshServer) -> None:
    tunnel = SshTunnel(sshd.host, str(agent.socket), options=sshd.client_options())
    with tunnel as local, AgentClient(local, timeout_s=30) as client:
        assert client.hello["protocol_version"].startswith("1.")
        assert "onnxruntime" in client.call("list_devices")["backends"]
        folder, proc = local.parent, tunnel.proc
    assert proc is not None and proc.returncode is not None
    assert not folder.exists()
    # Once ssh is gone, a client through it is told ssh's reason, not a temp socket path.
    tunnel = SshTunnel(sshd.host, str(agent.socket), options=sshd.client_options())
    with tunnel as local, AgentClient(local, timeout_s=30) as client:
        assert sshd.drop_sessions() > 0
        with pytest.raises(AgentUnavailableError) as err:
            client.call("status")
        explained = tunnel.explain(err.value)
    assert str(explained).startswith(f"ssh to {sshd.host} exited (status 255): ")
    assert "backbench-ssh-" not in str(explained)  # not the private socket's path


# -- the security review of the SSH code --------------------------------------------------


def _ssh_processes_reading(path: Path) -> list[psutil.Process]:
    """Live ssh processes whose command line names ``path`` (a config file)."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            if proc.info["name"] == "ssh" and str(path) in " ".join(proc.info["cmdline"] or []):
                found.append(proc)
    return found


def test_a_config_with_controlmaster_and_controlpersist_does_not_take_the_tunnel(
    agent: Agent, sshd: SshServer
) -> None:
    """A user's config with `ControlMaster auto` + ControlPersist would make ssh fork a
    master that keeps the forward and is never ended: the tunnel's ControlMaster=no and
    ControlPath=none win (ssh reads -o first), so it works, closes, and leaves nothing."""
    control = sshd.folder / "cm"
    control.mkdir(mode=0o700, exist_ok=True)
    config = sshd.client_config(("ControlMaster auto", f"ControlPath {control}/%C",
                                 "ControlPersist 60"), name="ssh_config_cm")  # fmt: skip
    before = _tunnel_folders()
    try:
        jobs = remote(sshd, "--ssh-config", str(config), "--remote-socket", str(agent.socket),
                      "jobs", options=[])  # fmt: skip
        assert jobs.returncode == 0, jobs.stderr + sshd.log_tail()
        assert "Jobs on" in jobs.stdout
        tunnel = SshTunnel(sshd.host, str(agent.socket), config=str(config))
        with tunnel as local, AgentClient(local, timeout_s=30) as client:
            assert "jobs" in client.call("status")
            assert tunnel.proc is not None and tunnel.proc.poll() is None  # ssh stays ours
        assert tunnel.proc.returncode is not None
        assert list(control.iterdir()) == []  # no master socket was ever made
        assert _sessions_end(sshd)
        assert _ssh_processes_reading(config) == []  # no background master left
        assert _tunnel_folders() <= before
    finally:
        for proc in _ssh_processes_reading(config):
            proc.kill()


def test_a_config_file_another_user_could_write_is_refused(sshd: SshServer, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    config = tmp_path / "shared.conf"
    config.write_text(f"Host *\n    ProxyCommand touch {marker}\n")
    config.chmod(0o666)
    done = remote(sshd, "--ssh-config", str(config), "jobs", options=[])
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "is writable by others" in done.stderr and not marker.exists()
    config.chmod(0o600)
    if os.getuid() == 0:  # a file of another user (root may hand it over)
        os.chown(config, 1234, 1234)
        done = remote(sshd, "--ssh-config", str(config), "jobs", options=[])
        assert done.returncode == 2 and "belongs to another user (uid 1234)" in done.stderr
        assert not marker.exists()
        os.chown(config, 0, 0)
    config.chmod(0o620)
    with pytest.raises(UsageError, match="writable by others"):
        SshTunnel(sshd.host, config=str(config))


@pytest.mark.parametrize(
    "args",
    [["--ssh-option", "SmartcardDevice={lib}"], ["--ssh-option", "ProxyJump=x;touch {marker}"],
     ["--ssh-option", "User=$(touch {marker})"], ["--ssh-option", "ControlMaster=auto"]],
)  # fmt: skip
def test_loaders_and_shell_words_are_refused_before_ssh_runs(
    sshd: SshServer, tmp_path: Path, args: list[str]
) -> None:
    marker = tmp_path / "ran"
    filled = [a.format(lib=tmp_path / "evil.so", marker=marker) for a in args]
    before = _tunnel_folders()
    done = subprocess.run(
        [sys.executable, "-m", "core.cli", "remote", "--ssh", sshd.host, *filled, "jobs"],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "is refused here" in done.stderr or "ProxyJump hop" in done.stderr or "ssh User" in done.stderr
    assert not marker.exists() and _tunnel_folders() <= before


@pytest.mark.parametrize("host", ["-oProxyCommand=touch{marker}", "me@h;touch {marker}", "$(touch {marker})"])
def test_a_host_that_is_not_plain_is_refused(tmp_path: Path, host: str) -> None:
    marker = tmp_path / "ran"
    done = subprocess.run(
        [sys.executable, "-m", "core.cli", "remote", "--ssh=" + host.format(marker=marker), "jobs"],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "is not an SSH host" in done.stderr and not marker.exists()


def test_an_ssh_that_cannot_run_is_one_line_and_leaves_no_folder(tmp_path: Path) -> None:
    fake = tmp_path / "ssh"
    fake.write_bytes(b"\x7fELF not really\n")  # executable bit, but not a program
    fake.chmod(0o755)
    before = _tunnel_folders()
    with pytest.raises(AgentUnavailableError, match=r"Could not run .*ssh to reach gpu: Exec format error"):
        SshTunnel("gpu", ssh=str(fake)).open()
    assert _tunnel_folders() <= before


def test_an_interrupted_open_ends_ssh_and_leaves_no_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "ssh"
    fake.write_text("#!/bin/sh\nexec sleep 30\n")  # an ssh that never brings the socket up
    fake.chmod(0o755)
    before = _tunnel_folders()
    tunnel = SshTunnel("gpu", ssh=str(fake), wait_s=20)
    real_sleep = time.sleep
    waits: list[float] = []

    def ctrl_c(seconds: float) -> None:
        # Ctrl-C while waiting for the tunnel: raised where Python raises KeyboardInterrupt,
        # between two polls. (A real SIGALRM here crashed the whole pytest process when a
        # QApplication from the GUI tests was alive, so the test raises it directly.)
        waits.append(seconds)
        if len(waits) == 3:  # once: the clean-up that follows may sleep too
            raise KeyboardInterrupt
        real_sleep(seconds)

    monkeypatch.setattr("service.client.time.sleep", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        tunnel.open()
    monkeypatch.undo()
    assert tunnel.proc is not None and tunnel.proc.returncode is not None  # ssh was ended
    assert tunnel.folder is None and _tunnel_folders() <= before
