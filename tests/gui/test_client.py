"""The Qt agent client: a real agent (hello, subscribe, requests, reconnection after a
restart), fake agents for the version checks and pushed notifications, the missing-agent
message, the SSH tunnel's failure text, and the import seam."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QObject
from PySide6.QtNetwork import QLocalServer, QLocalSocket

from core.errors import ProtocolError
from core.protocol.address import ssh_forward_args
from core.protocol.codes import PROTOCOL_VERSION, VERSION_MISMATCH
from core.protocol.framing import encode
from core.protocol.messages import make_error, make_gap, make_job_event, make_result, make_telemetry
from gui.agent_client import AgentClient, ClientState
from gui.ssh_tunnel import SshTunnel

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN = ("torch", "torchvision", "openvino", "onnxruntime", "service")


class FakeAgent(QObject):
    """A QLocalServer that answers hello with ``hello_reply(id)`` then sends ``pushed``."""

    def __init__(self, path: str, hello_reply: Any, pushed: list[dict[str, Any]] = ()) -> None:
        super().__init__()
        self.hello_reply = hello_reply
        self.pushed = list(pushed)
        self.requests: list[dict[str, Any]] = []
        self.peers: list[QLocalSocket] = []
        self.server = QLocalServer(self)
        if not self.server.listen(path):
            raise RuntimeError(self.server.errorString())
        self.server.newConnection.connect(self._accept)

    def _accept(self) -> None:
        peer = self.server.nextPendingConnection()
        self.peers.append(peer)
        peer.readyRead.connect(lambda p=peer: self._read(p))

    def _read(self, peer: QLocalSocket) -> None:
        while peer.canReadLine():
            request = json.loads(bytes(peer.readLine().data()))
            self.requests.append(request)
            if request["method"] == "hello":
                peer.write(encode(self.hello_reply(request["id"])))
                for msg in self.pushed:
                    peer.write(encode(msg))
            else:
                peer.write(encode(make_result(request["id"], {"echo": request["method"]})))

    def close(self) -> None:
        self.server.close()


def _hello(protocol_version: str = PROTOCOL_VERSION) -> Any:
    return lambda rid: make_result(rid, {"protocol_version": protocol_version, "agent_version": "9.9",
                                         "host": {"host": "fake"}, "metrics": []})  # fmt: skip


@pytest.fixture
def make_client(qtbot):
    clients: list[AgentClient] = []

    def make(path: str | Path, **kwargs: Any) -> AgentClient:
        client = AgentClient(str(path), **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


# -- no agent, wrong agent ------------------------------------------------------------------


def test_missing_agent_says_how_to_start_one(qtbot, tmp_path, make_client) -> None:
    path = tmp_path / "nobody.sock"
    client = make_client(path)
    client.start()
    qtbot.waitUntil(lambda: client.state is ClientState.DISCONNECTED, timeout=5000)
    assert client.status_text == (
        f"No agent at {path}. Start one with `backbench agent` or `systemctl start backbench-agent`."
    )
    assert client.retry_pending  # it keeps looking, so a later agent is found by itself


def test_an_agent_with_a_newer_major_version_is_refused(qtbot, tmp_path, make_client) -> None:
    path = str(tmp_path / "fake.sock")
    fake = FakeAgent(path, _hello("9.0"))
    client = make_client(path)
    with qtbot.waitSignal(client.error, timeout=5000) as blocker:
        client.start()
    message = blocker.args[0]
    assert "protocol 9.x" in message and "upgrade the client (backbench on this machine)" in message
    assert client.state is ClientState.REFUSED and client.status_text == message
    assert not client.retry_pending and client.connect_count == 0
    fake.close()


def test_the_agents_own_refusal_message_is_shown(qtbot, tmp_path, make_client) -> None:
    path = str(tmp_path / "fake.sock")
    text = "The agent speaks protocol 2.x and this client 1.x: upgrade the client (backbench on this machine)."
    fake = FakeAgent(path, lambda rid: make_error(rid, VERSION_MISMATCH, text, hint="Minor versions mix freely."))
    client = make_client(path)
    client.start()
    qtbot.waitUntil(lambda: client.state is ClientState.REFUSED, timeout=5000)
    assert client.status_text == f"{text} Minor versions mix freely."
    fake.close()


def test_pushed_notifications_become_typed_signals(qtbot, tmp_path, make_client) -> None:
    path = str(tmp_path / "fake.sock")
    pushed = [
        make_job_event("job.case_started", 3, case_index=0, label="resnet18 b1"),
        make_telemetry(3, 0, samples=[[1, 1000], [2, 2000]],
                       memory=[{"t_ns": 5, "rss_mb": 99.0, "device_memory": {"cuda:0": 7.0}}]),  # fmt: skip
        make_gap(17),
        {"jsonrpc": "2.0", "method": "telemetry", "params": {"job_id": "bad", "samples": [[1, 2]]}},
    ]
    fake = FakeAgent(path, _hello("1.7"), pushed)  # another minor version is fine
    client = make_client(path)
    events, telemetry, gaps = [], [], []
    client.job_event.connect(lambda name, params: events.append((name, params)))
    client.telemetry.connect(lambda job, samples, memory: telemetry.append((job, samples, memory)))
    client.gap.connect(gaps.append)
    client.start()
    qtbot.waitUntil(lambda: bool(gaps), timeout=5000)
    assert client.is_connected and client.hello["host"]["host"] == "fake"
    assert events == [("job.case_started", {"job_id": 3, "case_index": 0, "label": "resnet18 b1"})]
    assert len(telemetry) == 1  # the malformed one was dropped, not raised
    job, samples, memory = telemetry[0]
    assert job == 3 and samples.dtype.kind == "i" and samples.tolist() == [[1, 1000], [2, 2000]]
    assert memory.tolist() == [[5.0, 99.0, 7.0]]
    assert gaps == [17]
    assert fake.requests[1]["method"] == "subscribe"
    assert fake.requests[1]["params"] == {"topics": ["jobs", "telemetry"]}
    fake.close()


# -- a real agent -----------------------------------------------------------------------------


def test_hello_subscribe_and_requests_against_a_real_agent(qtbot, shared_agent, make_client) -> None:
    client = make_client(shared_agent.socket_path)
    with qtbot.waitSignals([client.connected, client.subscribed], timeout=15_000):
        client.start()
    hello = client.hello
    assert hello["protocol_version"].split(".")[0] == PROTOCOL_VERSION.split(".")[0]
    assert hello["host"]["cpu_model"] and {m["name"] for m in hello["metrics"]} >= {"latency_ns", "rss_mb"}
    replies: list[tuple[Any, ProtocolError | None]] = []
    client.request("status", {}, lambda result, error: replies.append((result, error)))
    client.request("cancel", {"job_id": 424242}, lambda result, error: replies.append((result, error)))
    qtbot.waitUntil(lambda: len(replies) == 2, timeout=15_000)
    status, error = replies[0]
    assert error is None and status["socket"] == str(shared_agent.socket_path)
    _result, error = replies[1]
    assert error is not None and "No job 424242" in error.message


def test_reconnects_by_itself_after_the_agent_restarts(qtbot, fresh_agent, make_client) -> None:
    client = make_client(fresh_agent.socket_path)
    subscribed: list[dict[str, Any]] = []
    client.subscribed.connect(subscribed.append)
    client.start()
    qtbot.waitUntil(lambda: client.is_connected and len(subscribed) == 1, timeout=15_000)
    first_boot = client.hello["boot_id"]
    # A clean stop, then a crash: both times the client comes back without being asked.
    for how in (signal.SIGTERM, signal.SIGKILL):
        before, subscriptions = client.connect_count, len(subscribed)
        with qtbot.waitSignal(client.disconnected, timeout=30_000):
            fresh_agent.stop(how)
        assert client.state is ClientState.DISCONNECTED and client.retry_pending
        refused: list[Any] = []
        client.request("status", {}, lambda _result, error, out=refused: out.append(error))
        assert refused and refused[0] is not None  # not connected: an error at once, never a hang
        fresh_agent.start()
        qtbot.waitUntil(lambda b=before: client.connect_count == b + 1 and client.is_connected, timeout=30_000)
        # Re-subscribed each time. Wait for it before the next stop, or that stop can lose the
        # subscribe in flight.
        qtbot.waitUntil(lambda n=subscriptions: len(subscribed) == n + 1, timeout=15_000)
    assert len(subscribed) == 3
    assert client.hello["boot_id"] != first_boot


# -- SSH --------------------------------------------------------------------------------------


def test_ssh_command_keeps_the_host_out_of_the_options() -> None:
    args = ssh_forward_args("me@gpu", "/tmp/l.sock", "/run/backbench/agent.sock", ["ConnectTimeout=2"])
    assert args[0] == "-N" and args[-2:] == ["--", "me@gpu"]
    assert "ExitOnForwardFailure=yes" in args and "ConnectTimeout=2" in args
    assert args[args.index("-L") + 1] == "/tmp/l.sock:/run/backbench/agent.sock"


@pytest.mark.skipif(shutil.which("ssh") is None, reason="no OpenSSH client installed")
def test_ssh_failure_reports_sshs_own_message(qtbot) -> None:
    tunnel = SshTunnel("nonexistent.invalid", "/run/backbench/agent.sock", options=["ConnectTimeout=2"])
    with qtbot.waitSignal(tunnel.failed, timeout=20_000) as blocker:
        tunnel.start()
    message = blocker.args[0]
    assert message.startswith("ssh to nonexistent.invalid exited (status 255): ")
    assert "nonexistent.invalid" in message.split(": ", 1)[1]  # ssh's stderr, e.g. "Could not resolve hostname"
    assert tunnel.folder is None and not tunnel.running  # nothing left behind
    tunnel.stop()


def test_a_missing_ssh_binary_is_reported(qtbot) -> None:
    tunnel = SshTunnel("host", ssh="no-such-ssh-binary")
    with qtbot.waitSignal(tunnel.failed, timeout=5000) as blocker:
        tunnel.start()
    assert "ssh is not installed here" in blocker.args[0]


# -- the import seam --------------------------------------------------------------------------


def test_the_gui_never_imports_frameworks_or_the_service() -> None:
    modules = sorted(f"gui.{p.stem}" for p in (REPO / "gui").glob("*.py") if p.stem != "__main__")
    code = (
        "import sys\n"
        f"for name in {modules!r}:\n"
        "    __import__(name)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
