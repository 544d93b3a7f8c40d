"""The agent connection model: the agents this GUI session talks to, as every view sees them.

``AgentConnection`` owns one agent's client (and its SSH tunnel for a remote one) and
caches what the agent told us: hello (host manifest, metric catalogue), devices and
models. ``AgentRegistry`` is the list of connections that every view watches; it saves
the list to the settings. No widgets here: ``gui.agents_panel`` shows this model.
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

TUNNEL_RETRY_MS = 5000


class AgentConnection(QObject):
    """One agent: its client, its tunnel (remote only) and what it reported."""

    changed = Signal()  # status text, hello, devices or models changed

    def __init__(self, spec: AgentSpec, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.spec = spec
        self.devices: dict[str, list[str]] = {}
        self.models: list[dict[str, Any]] = []
        self.detail_error = ""
        self.client = AgentClient(spec.socket_path, parent=self)
        self.client.state_changed.connect(lambda _state: self.changed.emit())
        self.client.connected.connect(self._on_connected)
        self.tunnel: SshTunnel | None = None
        self._tunnel_retry = QTimer(self)
        self._tunnel_retry.setSingleShot(True)
        self._tunnel_retry.timeout.connect(self.start)
        if spec.is_remote:
            self.tunnel = SshTunnel(spec.ssh_host, spec.remote_socket, options=spec.ssh_options, parent=self)
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
    def status_text(self) -> str:
        if self.tunnel is not None and not self.tunnel.is_ready:
            if self.tunnel.last_error:
                return self.tunnel.last_error
            return f"Opening an SSH tunnel to {self.spec.ssh_host}..."
        return self.client.status_text

    def start(self) -> None:
        if self.tunnel is not None:
            self.client.close()
            self.tunnel.last_error = ""
            self.tunnel.start()
            self.changed.emit()
        else:
            self.client.start()

    def stop(self) -> None:
        self._tunnel_retry.stop()
        self.client.close()
        if self.tunnel is not None:
            self.tunnel.stop()

    def refresh(self) -> None:
        """Ask again for devices and models (F5)."""
        if self.is_connected:
            self._on_connected(self.hello)

    # -- remote --------------------------------------------------------------------------

    def _on_tunnel_ready(self, local_socket: str) -> None:
        self.client.socket_path = local_socket
        self.client.start()

    def _on_tunnel_failed(self, message: str) -> None:
        was_connected = self.client.connect_count > 0
        self.client.close()
        self.changed.emit()
        if was_connected:  # it worked before: the network dropped; try again
            self._tunnel_retry.start(TUNNEL_RETRY_MS)

    # -- details -------------------------------------------------------------------------

    def _on_connected(self, hello: dict[str, Any]) -> None:
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
