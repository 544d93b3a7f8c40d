"""`backbench remote --ssh` and the terminal client's SshTunnel through a real sshd on
127.0.0.1 (tests/sshd.py), to a real agent: the success path, and the failures that must
read as one line (a key the server refuses, no agent on the remote socket)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

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
