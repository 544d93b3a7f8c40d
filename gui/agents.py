"""The agent connection model: the agents this GUI session talks to, as every view sees them.

``AgentConnection`` owns one agent's client (and its SSH tunnel for a remote one) and
caches what the agent told us: hello (host manifest, metric catalogue), devices and
models. A remote agent's tunnel that drops after it had worked (ssh exited: network
gone, host rebooted, sshd restarted) is reopened with a growing delay (1 s, 2 s, 4 s, ...
up to 30 s) at most RECONNECT_ATTEMPTS times, saying "reconnecting" meanwhile; then it
gives up and says so until the user presses Reconnect (or F5). A tunnel that never came
up is not retried: that is a set-up problem (host name, key, options) that ssh named;
nor is a failure that no retry can mend (ssh missing, a refused option or config file).
While the tunnel is up, the agent client reconnects by itself (an agent that restarts).
``AgentRegistry`` is the list of connections that every view watches; it saves the list
to the settings. No widgets here: ``gui.agents_panel`` shows this model.
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from core.errors import ProtocolError
from gui.agent_client import AgentClient
from gui.settings import AgentSpec, open_settings, save_agents
from gui.ssh_tunnel import SshTunnel

logger = logging.getLogger(__name__)

# Reopening a dropped tunnel: the first delay, the longest, and how many tries in a row.
RECONNECT_FIRST_MS = 1000
RECONNECT_MAX_MS = 30_000
RECONNECT_ATTEMPTS = 8


class AgentConnection(QObject):
    """One agent: its client, its tunnel (remote only) and what it reported."""

    changed = Signal()  # status text, hello, devices or models changed

    def __init__(self, spec: AgentSpec, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.spec = spec
        self.devices: dict[str, list[str]] = {}
        self.models: list[dict[str, Any]] = []
        self.detail_error = ""
        self.reconnect_attempts = 0  # tunnel reopenings since it last worked
        self.reconnect_text = ""  # "reconnecting in ..." or "gave up ..."; "" when neither
        self._recovering = False  # the tunnel dropped after it had worked
        self._handshake_in_tunnel = False  # the client said hello through the current tunnel
        self.client = AgentClient(spec.socket_path, parent=self)
        self.client.state_changed.connect(lambda _state: self.changed.emit())
        self.client.connected.connect(self._on_connected)
        self.tunnel: SshTunnel | None = None
        self._tunnel_retry = QTimer(self)
        self._tunnel_retry.setSingleShot(True)
        self._tunnel_retry.timeout.connect(self._reopen_tunnel)
        if spec.is_remote:
            self.tunnel = SshTunnel(spec.ssh_host, spec.remote_socket, options=spec.ssh_options,
                                    config=spec.ssh_config or None, parent=self)  # fmt: skip
            self.tunnel.ready.connect(self._on_tunnel_ready)
            self.tunnel.failed.connect(self._on_tunnel_failed)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def hello(self) -> dict[str, Any]:
        return self.client.hello

    @property
    def is_connected(self) -> bool:
        return self.client.is_connected

    @property
    def reconnecting(self) -> bool:
        """A dropped tunnel is being reopened (waiting for the next try, or trying)."""
        return self._recovering and not self.client.is_connected

    @property
    def state_label(self) -> str:
        """One word or two for the agents list: connected, reconnecting, connecting..."""
        if self.client.is_connected:
            return "connected"
        if self.reconnecting:
            return "reconnecting"
        if self.tunnel is not None and not self.tunnel.is_ready:
            return "ssh failed" if self.tunnel.last_error else "opening ssh"
        return self.client.state.value

    @property
    def status_text(self) -> str:
        if self.tunnel is not None and not self.client.is_connected:
            if self.tunnel.is_ready and self.tunnel.channel_error:  # ssh is up; no agent answers there
                return (f"No agent at {self.spec.remote_socket} on {self.spec.ssh_host} (ssh: "
                        f"{self.tunnel.channel_error}); retrying. Start it there, or fix the socket path.")  # fmt: skip
            if self.reconnect_text and (self.reconnecting or not self.tunnel.running):
                return self.reconnect_text
            if not self.tunnel.is_ready:
                if self.tunnel.last_error:
                    return self.tunnel.last_error
                return f"Opening an SSH tunnel to {self.spec.ssh_host}..."
        return self.client.status_text

    @property
    def needs_start(self) -> bool:
        """Nothing is running or scheduled to bring this agent back: F5 starts it."""
        if self.client.is_connected or self.client.retry_pending or self._tunnel_retry.isActive():
            return False
        return self.tunnel is None or not self.tunnel.running

    def start(self) -> None:
        """Connect now (the user's Reconnect): a remote agent's retries start over."""
        self._tunnel_retry.stop()
        self._recovering = False
        self.reconnect_attempts = 0
        self.reconnect_text = ""
        if self.tunnel is not None:
            self._open_tunnel()
        else:
            self.client.start()

    def stop(self) -> None:
        self._tunnel_retry.stop()
        self._recovering = False
        self.client.close()
        if self.tunnel is not None:
            self.tunnel.stop()

    def refresh(self) -> None:
        """Ask again for devices and models (F5)."""
        if self.is_connected:
            self._on_connected(self.hello)

    # -- remote --------------------------------------------------------------------------

    def _open_tunnel(self) -> None:
        assert self.tunnel is not None
        self._handshake_in_tunnel = False
        self.client.close()
        self.tunnel.last_error = ""
        self.tunnel.start()  # ends any earlier ssh and removes its folder first
        self.changed.emit()

    def _reopen_tunnel(self) -> None:
        if self.tunnel is None or not self._recovering:
            return
        logger.info("Reopening the SSH tunnel to %s (attempt %d of %d)", self.spec.ssh_host,
                    self.reconnect_attempts, RECONNECT_ATTEMPTS)  # fmt: skip
        self.reconnect_text = (f"Reconnecting to {self.spec.ssh_host} (attempt {self.reconnect_attempts} "
                               f"of {RECONNECT_ATTEMPTS})...")  # fmt: skip
        self._open_tunnel()

    def _on_tunnel_ready(self, local_socket: str) -> None:
        self.client.socket_path = local_socket
        self.client.start()

    def _on_tunnel_failed(self, message: str) -> None:
        # The text first: closing the client makes the views read status_text again.
        if self._handshake_in_tunnel:  # it worked through this tunnel: the link dropped
            self._handshake_in_tunnel = False
            self._recovering = True
            self.reconnect_attempts = 0
        if self._recovering and self.tunnel is not None and self.tunnel.permanent_error:
            self._recovering = False  # ssh missing, a refused option...: trying again cannot help
            self._tunnel_retry.stop()
            self.reconnect_text = (f"Lost the SSH tunnel to {self.spec.ssh_host} and will not retry: "
                                   f"{message} Fix that, then press Reconnect.")  # fmt: skip
            logger.warning("%s", self.reconnect_text)
        elif self._recovering:
            self._schedule_reopen(message)
        self.client.close()
        self.changed.emit()

    def _schedule_reopen(self, message: str) -> None:
        reason = message.splitlines()[-1] if message else "ssh exited"
        if self.reconnect_attempts >= RECONNECT_ATTEMPTS:
            self._recovering = False
            self.reconnect_text = (f"Lost the SSH tunnel to {self.spec.ssh_host} and could not reopen it "
                                   f"({RECONNECT_ATTEMPTS} tries): {reason}. Press Reconnect to try again.")  # fmt: skip
            logger.warning("%s", self.reconnect_text)
            return
        delay_ms = min(RECONNECT_MAX_MS, RECONNECT_FIRST_MS * 2**self.reconnect_attempts)
        self.reconnect_attempts += 1
        self.reconnect_text = (f"Lost the SSH tunnel to {self.spec.ssh_host} ({reason}); reconnecting in "
                               f"{delay_ms / 1000:.0f} s (attempt {self.reconnect_attempts} of {RECONNECT_ATTEMPTS})...")  # fmt: skip
        self._tunnel_retry.start(delay_ms)

    # -- details -------------------------------------------------------------------------

    def _on_connected(self, hello: dict[str, Any]) -> None:
        if self.tunnel is not None:
            self._handshake_in_tunnel = True
            self._recovering = False
            self.reconnect_attempts = 0
            self.reconnect_text = ""
            self.tunnel.channel_error = ""
        self.client.request("list_devices", {}, self._on_devices)
        self.client.request("list_models", {}, self._on_models)

    def _on_devices(self, result: Any, error: ProtocolError | None) -> None:
        if error is not None:
            self.detail_error = f"Could not list devices: {error.message}"
        elif isinstance(result, dict) and isinstance(result.get("backends"), dict):
            self.devices = {str(k): [str(d) for d in v] for k, v in result["backends"].items() if isinstance(v, list)}
        self.changed.emit()

    def _on_models(self, result: Any, error: ProtocolError | None) -> None:
        if error is not None:
            self.detail_error = f"Could not list models: {error.message}"
        elif isinstance(result, dict) and isinstance(result.get("models"), list):
            self.models = [m for m in result["models"] if isinstance(m, dict) and isinstance(m.get("name"), str)]
        self.changed.emit()

    def metric_units(self) -> dict[str, str]:
        """Metric name -> unit, from the agent's catalogue."""
        units: dict[str, str] = {}
        for metric in self.hello.get("metrics") or []:
            if isinstance(metric, dict) and isinstance(metric.get("name"), str):
                units[metric["name"]] = str(metric.get("unit") or "")
        return units

    def describe(self) -> list[tuple[str, str]]:
        """(label, value) rows for the details pane: address, status, manifest, devices."""
        rows = [("Address", self.spec.address), ("Status", self.status_text)]
        hello = self.hello
        host = hello.get("host") if isinstance(hello.get("host"), dict) else {}
        if hello:
            rows.append(("Host", str(host.get("host", "?"))))
            cores = host.get("cores_usable") or host.get("cores_logical")
            rows.append(("CPU", f"{host.get('cpu_model', '?')} ({cores} cores)"))
            if host.get("memory_total_mb"):
                rows.append(("Memory", f"{host['memory_total_mb'] / 1000:.1f} GB"))
            gpus = host.get("gpus") or []
            gpu_text = "; ".join(f"{g.get('name', '?')} (driver {g.get('driver', '?')}, {g.get('memory_total', '?')})"
                                 for g in gpus if isinstance(g, dict))  # fmt: skip
            rows.append(("GPU", gpu_text or "none"))
            rows.append(("OS", str(host.get("os", "?"))))
            packages = host.get("packages") if isinstance(host.get("packages"), dict) else {}
            versions = [f"python {host.get('python', '?')}"]
            versions += [f"{k} {v}" for k, v in packages.items() if v and k in ("torch", "openvino", "onnxruntime")]
            rows.append(("Versions", ", ".join(versions)))
            rows.append(("Agent", f"backbench {hello.get('agent_version', '?')}, protocol {hello.get('protocol_version', '?')}"))
            store = hello.get("store") if isinstance(hello.get("store"), dict) else {}
            if store.get("path"):
                rows.append(("Store", str(store["path"])))
        if self.devices:
            rows.append(("Devices", "; ".join(f"{b}: {', '.join(d) or 'none usable'}" for b, d in self.devices.items())))
        elif self.is_connected:
            rows.append(("Devices", "asking the agent..."))
        if self.detail_error:
            rows.append(("Note", self.detail_error))
        return rows


class AgentRegistry(QObject):
    """The agents of this session; persisted in the settings."""

    added = Signal(object)  # AgentConnection
    removed = Signal(object)

    def __init__(self, parent: QObject | None = None, *, persist: bool = True) -> None:
        super().__init__(parent)
        self.connections: list[AgentConnection] = []
        self.persist = persist

    def get(self, name: str) -> AgentConnection | None:
        return next((c for c in self.connections if c.name == name), None)

    def add(self, spec: AgentSpec, start: bool = True) -> AgentConnection:
        if self.get(spec.name) is not None:
            raise ValueError(f"an agent named {spec.name!r} exists already")
        connection = AgentConnection(spec, self)
        self.connections.append(connection)
        self.added.emit(connection)
        if start:
            connection.start()
        self._save()
        return connection

    def remove(self, name: str) -> None:
        connection = self.get(name)
        if connection is None:
            return
        connection.stop()
        self.connections.remove(connection)
        self.removed.emit(connection)
        connection.deleteLater()
        self._save()

    def unique_name(self, base: str) -> str:
        name, n = base, 2
        while self.get(name) is not None:
            name, n = f"{base} ({n})", n + 1
        return name

    def stop_all(self) -> None:
        for connection in self.connections:
            connection.stop()

    def _save(self) -> None:
        if self.persist:
            save_agents(open_settings(), [c.spec for c in self.connections])
