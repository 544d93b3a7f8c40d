"""The GUI's SSH tunnel through a real sshd on 127.0.0.1 (tests/sshd.py) to a real agent:
the tunnel comes up and the agent client says hello through it; a tunnel that drops
while the window is connected (ssh killed here, or its session killed on the server) is
reopened and the connection works again; retries are bounded when the host stays away,
and nothing (ssh process, private folder) is left behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

import gui.agents
from gui.agent_client import AgentClient
from gui.main_window import MainWindow
from gui.settings import load_agents, open_settings
from gui.ssh_tunnel import SshTunnel
from tests.gui.conftest import AgentProcess
from tests.sshd import SshServer, require_openssh

CONNECT_MS = 20_000


@pytest.fixture(scope="module")
def sshd() -> Iterator[SshServer]:
    require_openssh()
    folder = Path(tempfile.mkdtemp(prefix="bbsshd-"))
    server = SshServer(folder / "sshd")
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def fast_reconnect(monkeypatch: pytest.MonkeyPatch) -> None:
    """Short delays (the shipped ones start at 1 s and grow to 30 s), few tries."""
    monkeypatch.setattr(gui.agents, "RECONNECT_FIRST_MS", 100)
    monkeypatch.setattr(gui.agents, "RECONNECT_MAX_MS", 400)
    monkeypatch.setattr(gui.agents, "RECONNECT_ATTEMPTS", 3)


def _tunnel_folders() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("backbench-ssh-*"))


def _ssh_children() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if p.name() == "ssh"]


def _window(qtbot, tmp_path: Path) -> MainWindow:
    window = MainWindow(local_socket=str(tmp_path / "none.sock"))  # no local agent
    qtbot.addWidget(window)
    window.show()
    return window


def test_the_tunnel_reaches_the_agent_and_the_client_says_hello(
    qtbot, shared_agent: AgentProcess, sshd: SshServer
) -> None:
    before = _tunnel_folders()
    tunnel = SshTunnel(sshd.host, str(shared_agent.socket_path), options=sshd.client_options())
    with qtbot.waitSignal(tunnel.ready, timeout=CONNECT_MS) as ready:
        tunnel.start()
    local = ready.args[0]
    assert Path(local).parent == tunnel.folder and oct(tunnel.folder.stat().st_mode)[-3:] == "700"
    client = AgentClient(local, topics=[], auto_reconnect=False)
    with qtbot.waitSignal(client.connected, timeout=CONNECT_MS) as hello:
        client.start()
    assert hello.args[0]["protocol_version"].startswith("1.")
    replies: list[Any] = []
    client.request("status", {}, lambda result, error: replies.append((result, error)))
    qtbot.waitUntil(lambda: bool(replies), timeout=CONNECT_MS)
    assert replies[0][1] is None and "jobs" in replies[0][0]
    client.close()
    pid = tunnel.pid
    with qtbot.waitSignal(tunnel.closed, timeout=5000):
        tunnel.stop()
    assert not tunnel.running and tunnel.folder is None and not psutil.pid_exists(pid or -1)
    assert _tunnel_folders() <= before


def test_a_dropped_tunnel_reconnects(
    qtbot, tmp_path: Path, shared_agent: AgentProcess, sshd: SshServer, fast_reconnect: None
) -> None:
    before = _tunnel_folders()
    window = _window(qtbot, tmp_path)
    connection = window.agents_panel.add_remote(
        sshd.host,
        str(shared_agent.socket_path),
        name="lab",
        ssh_options=tuple(sshd.client_options()),
    )
    window.agents_panel.select("lab")
    tunnel = connection.tunnel
    assert tunnel is not None
    qtbot.waitUntil(
        lambda: connection.is_connected and bool(connection.devices), timeout=CONNECT_MS
    )
    assert "(ssh, connected)" in window.agents_panel.list.currentItem().text()
    saved = {a.name: a for a in load_agents(open_settings())}["lab"]
    assert saved.ssh_options == tuple(sshd.client_options())  # kept for the next session

    seen: list[str] = []
    connection.changed.connect(lambda: seen.append(window.agents_panel.list.currentItem().text()))
    for how in ("kill ssh", "kill the session on the server"):
        count, old_pid, old_folder = connection.client.connect_count, tunnel.pid, tunnel.folder
        assert old_pid is not None and old_folder is not None and old_folder.exists()
        seen.clear()
        if how == "kill ssh":
            os.kill(old_pid, signal.SIGKILL)
        else:
            assert sshd.drop_sessions() > 0
        qtbot.waitUntil(lambda c=count: connection.client.connect_count == c + 1 and connection.is_connected,
                        timeout=CONNECT_MS)  # fmt: skip
        assert any("(ssh, reconnecting)" in text for text in seen), (how, seen)
        assert tunnel.pid != old_pid and not psutil.pid_exists(old_pid)
        assert not old_folder.exists() and tunnel.folder != old_folder
        assert connection.reconnect_attempts == 0 and connection.reconnect_text == ""
        replies: list[Any] = []
        connection.client.request(
            "status", {}, lambda result, error, out=replies: out.append((result, error))
        )
        qtbot.waitUntil(lambda r=replies: bool(r), timeout=CONNECT_MS)
        assert replies[0][1] is None and "jobs" in replies[0][0], how
    assert len(_ssh_children()) == 1  # the one live tunnel, no stray ssh
    assert "Status: Connected to the agent" in window.agents_panel.details_text()
    window.registry.remove("lab")
    assert not tunnel.running and _tunnel_folders() <= before


def test_retries_are_bounded_then_reconnect_starts_over(
    qtbot, tmp_path: Path, shared_agent: AgentProcess, fast_reconnect: None
) -> None:
    folder = Path(tempfile.mkdtemp(prefix="bbsshd-"))
    server = SshServer(folder / "sshd").start()
    try:
        before = _tunnel_folders()
        window = _window(qtbot, tmp_path)
        connection = window.agents_panel.add_remote(
            server.host,
            str(shared_agent.socket_path),
            name="flaky",
            ssh_options=tuple(server.client_options()),
        )
        window.agents_panel.select("flaky")
        tunnel = connection.tunnel
        assert tunnel is not None
        qtbot.waitUntil(lambda: connection.is_connected, timeout=CONNECT_MS)
        failures: list[str] = []
        tunnel.failed.connect(failures.append)

        server.stop()  # the host goes away: every reopening is refused
        qtbot.waitUntil(lambda: "could not reopen it" in connection.status_text, timeout=CONNECT_MS)
        assert len(failures) == 1 + gui.agents.RECONNECT_ATTEMPTS  # the drop, then each try
        assert (
            "Connection refused" in connection.status_text
            and "Press Reconnect" in connection.status_text
        )
        assert "(ssh, ssh failed)" in window.agents_panel.list.currentItem().text()
        assert not connection.reconnecting and not tunnel.running and tunnel.folder is None
        assert _ssh_children() == [] and _tunnel_folders() <= before
        qtbot.wait(500)  # nothing more is tried once it gave up
        assert len(failures) == 1 + gui.agents.RECONNECT_ATTEMPTS

        server.start()  # back on the same port; F5 (refresh) starts over
        assert connection.needs_start
        window.refresh()
        qtbot.waitUntil(lambda: connection.is_connected, timeout=CONNECT_MS)
        assert connection.reconnect_text == ""
        window.registry.remove("flaky")
        assert _ssh_children() == [] and _tunnel_folders() <= before
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def test_ssh_options_that_run_commands_are_refused_and_not_loaded(
    qtbot, tmp_path: Path, caplog
) -> None:
    window = _window(qtbot, tmp_path)
    with pytest.raises(ValueError, match="ProxyCommand is refused"):
        window.agents_panel.add_remote("me@gpu", ssh_options=("ProxyCommand=nc %h %p",))
    assert window.registry.get("me@gpu") is None
    tunnel = SshTunnel("me@gpu", options=["LocalCommand=touch /tmp/x", "PermitLocalCommand=yes"])
    with qtbot.waitSignal(tunnel.failed, timeout=5000) as failed:
        tunnel.start()
    assert (
        "LocalCommand is refused" in failed.args[0] and not tunnel.running and tunnel.folder is None
    )

    # A settings file edited to carry one: that entry is skipped, with the reason logged.
    settings = open_settings()
    entry = {
        "name": "evil",
        "kind": "ssh",
        "ssh_host": "me@gpu",
        "ssh_options": ["ProxyCommand=sh -c x"],
    }
    good = {"name": "ok", "kind": "ssh", "ssh_host": "me@gpu", "ssh_options": ["Port=2222"],
            "ssh_config": "/home/me/lab.conf"}  # fmt: skip
    settings.setValue("agents/list", json.dumps([entry, good]))
    loaded = load_agents(settings)
    assert [(a.name, a.ssh_options, a.ssh_config) for a in loaded] == [
        ("ok", ("Port=2222",), "/home/me/lab.conf")
    ]
    assert "ProxyCommand is refused" in caplog.text


def test_no_agent_on_the_remote_socket_is_named(qtbot, tmp_path: Path, sshd: SshServer) -> None:
    window = _window(qtbot, tmp_path)
    missing_socket = str(tmp_path / "none.sock")
    connection = window.agents_panel.add_remote(
        sshd.host, missing_socket, name="empty", ssh_options=tuple(sshd.client_options())
    )
    qtbot.waitUntil(lambda: connection.status_text.startswith(f"No agent at {missing_socket} on {sshd.host} (ssh: "),
                    timeout=CONNECT_MS)  # fmt: skip
    assert (
        "open failed" in connection.status_text
        and connection.tunnel is not None
        and connection.tunnel.running
    )
    window.registry.remove("empty")
    assert not connection.tunnel.running


# -- the security review of the SSH code --------------------------------------------------


def test_loaders_bad_hosts_and_others_config_files_are_refused_on_add_and_load(
    qtbot, tmp_path: Path, caplog
) -> None:
    window = _window(qtbot, tmp_path)
    panel = window.agents_panel
    for options in (("SmartcardDevice=/tmp/evil.so",), ("ProxyJump=a;touch /tmp/x",), ("User=$(id)",),
                    ("ControlMaster=auto",)):  # fmt: skip
        with pytest.raises(ValueError, match="is refused here|ProxyJump hop|ssh User|tunnel sets it"):
            panel.add_remote("me@gpu", ssh_options=options)
    for host in ("-oProxyCommand=id", "me@gpu;id", "$(id)"):
        with pytest.raises(ValueError, match="is not an SSH host"):
            panel.add_remote(host)
    shared = tmp_path / "shared.conf"
    shared.write_text("Host *\n    ProxyCommand id\n")
    shared.chmod(0o664)
    with pytest.raises(ValueError, match="writable by others"):
        panel.add_remote("me@gpu", ssh_config=str(shared))
    assert window.registry.connections == [] or all(c.spec.is_remote is False for c in window.registry.connections)

    # A settings file edited to carry any of them: those entries are skipped, with the reason.
    mine = tmp_path / "mine.conf"
    mine.write_text("Host gpu\n")
    mine.chmod(0o600)
    entries = [
        {"name": "lib", "kind": "ssh", "ssh_host": "me@gpu", "ssh_options": ["SmartcardDevice=/x.so"]},
        {"name": "jump", "kind": "ssh", "ssh_host": "me@gpu", "ssh_options": ["ProxyJump=x`id`"]},
        {"name": "host", "kind": "ssh", "ssh_host": "gpu;id"},
        {"name": "conf", "kind": "ssh", "ssh_host": "me@gpu", "ssh_config": str(shared)},
        {"name": "ok", "kind": "ssh", "ssh_host": "me@gpu", "ssh_options": ["ProxyJump=me@bastion:2222"],
         "ssh_config": str(mine)},
    ]  # fmt: skip
    settings = open_settings()
    settings.setValue("agents/list", json.dumps(entries))
    assert [a.name for a in load_agents(settings)] == ["ok"]
    for words in ("SmartcardDevice is refused", "ProxyJump hop", "is not an SSH host", "writable by others"):
        assert words in caplog.text


def test_a_permanent_failure_is_not_retried(
    qtbot, tmp_path: Path, shared_agent: AgentProcess, sshd: SshServer, fast_reconnect: None
) -> None:
    """A tunnel that dropped is reopened, but not when the reason cannot go away by
    trying again: here its config file became writable by others meanwhile."""
    window = _window(qtbot, tmp_path)
    config = sshd.client_config(name="ssh_config_gui")
    connection = window.agents_panel.add_remote(sshd.host, str(shared_agent.socket_path), name="perm",
                                                ssh_config=str(config))  # fmt: skip
    tunnel = connection.tunnel
    assert tunnel is not None
    qtbot.waitUntil(lambda: connection.is_connected, timeout=CONNECT_MS)
    failures: list[str] = []
    tunnel.failed.connect(failures.append)
    config.chmod(0o666)
    try:
        assert sshd.drop_sessions() > 0
        qtbot.waitUntil(lambda: "will not retry" in connection.status_text, timeout=CONNECT_MS)
        assert "writable by others" in connection.status_text and "then press Reconnect" in connection.status_text
        qtbot.wait(800)  # longer than every retry delay of fast_reconnect
        assert len(failures) == 2  # the drop, then the one reopening that was refused
        assert not connection.reconnecting and connection.needs_start and not tunnel.running
        assert _ssh_children() == []
    finally:
        config.chmod(0o600)
    window.refresh()  # fixed: Reconnect (F5) works again
    qtbot.waitUntil(lambda: connection.is_connected, timeout=CONNECT_MS)
    window.registry.remove("perm")
    assert _ssh_children() == []


def test_the_gui_tunnel_with_a_controlmaster_config_works_and_leaves_no_ssh(
    qtbot, shared_agent: AgentProcess, sshd: SshServer
) -> None:
    control = sshd.folder / "cmg"
    control.mkdir(mode=0o700, exist_ok=True)
    config = sshd.client_config(("ControlMaster auto", f"ControlPath {control}/%C",
                                 "ControlPersist 60"), name="ssh_config_cmg")  # fmt: skip
    before = _tunnel_folders()
    tunnel = SshTunnel(sshd.host, str(shared_agent.socket_path), config=str(config))
    with qtbot.waitSignal(tunnel.ready, timeout=CONNECT_MS) as ready:
        tunnel.start()
    client = AgentClient(ready.args[0], topics=[], auto_reconnect=False)
    with qtbot.waitSignal(client.connected, timeout=CONNECT_MS):
        client.start()
    client.close()
    assert tunnel.running
    with qtbot.waitSignal(tunnel.closed, timeout=5000):
        tunnel.stop()
    assert list(control.iterdir()) == [] and _ssh_children() == []
    assert _tunnel_folders() <= before
