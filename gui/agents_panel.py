"""The agents the GUI talks to: the local one and remote ones over SSH.

``AgentConnection`` owns one agent's client (and its SSH tunnel for a remote one) and
caches what the agent told us: hello (host manifest, metric catalogue), devices and
models. ``AgentRegistry`` is the list of connections that every view watches, and
``AgentsPanel`` shows it: status, host manifest and devices for each, with buttons to
add a remote agent, remove one or reconnect.
"""

from __future__ import annotations

import html
import logging
from dataclasses import replace
from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from core.errors import ProtocolError
from gui.agent_client import AgentClient, ClientState
from gui.settings import (
    LOCAL_KIND,
    SSH_KIND,
    SYSTEM_SOCKET,
    AgentSpec,
    default_local_socket,
    open_settings,
    save_agents,
)
from gui.ssh_tunnel import SshTunnel

logger = logging.getLogger(__name__)

TUNNEL_RETRY_MS = 5000
STATE_MARKS = {
    ClientState.CONNECTED: "\u25cf",  # filled circle
    ClientState.REFUSED: "\u2716",
}


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


class AddAgentDialog(QDialog):
    """Add a remote agent (SSH host + its socket) or another local socket."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Add an agent")
        self.host = QLineEdit()
        self.host.setPlaceholderText("user@gpu-host (leave empty for a local socket)")
        self.socket_path = QLineEdit(SYSTEM_SOCKET)
        self.name = QLineEdit()
        self.name.setPlaceholderText("defaults to the host name")
        form = QFormLayout(self)
        form.addRow("SSH host:", self.host)
        form.addRow("Agent socket:", self.socket_path)
        form.addRow("Name:", self.name)
        form.addRow(QLabel("The GUI runs `ssh -N -L` itself; the host must accept your SSH key."))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def spec(self) -> AgentSpec | None:
        host, path = self.host.text().strip(), self.socket_path.text().strip()
        if not path or host.startswith("-"):
            return None
        name = self.name.text().strip() or host or path
        if host:
            return AgentSpec(name=name, kind=SSH_KIND, ssh_host=host, remote_socket=path)
        return AgentSpec(name=name, kind=LOCAL_KIND, socket_path=path)


class AgentsPanel(QWidget):
    """The list of agents and the details of the selected one."""

    def __init__(self, registry: AgentRegistry, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.registry = registry
        self.list = QListWidget()
        self.list.setMaximumHeight(72)
        self.list.currentRowChanged.connect(lambda _row: self._show_details())
        self.details = QLabel()
        self.details.setTextFormat(Qt.TextFormat.RichText)
        self.details.setWordWrap(True)
        self.details.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.details)
        self.add_button = QPushButton("Add remote...")
        self.add_button.setToolTip("Add an agent on another host, reached over SSH")
        self.add_button.clicked.connect(self._ask_add)
        self.remove_button = QPushButton("Remove")
        self.remove_button.clicked.connect(self._remove_current)
        self.reconnect_button = QPushButton("Reconnect")
        self.reconnect_button.clicked.connect(self._reconnect_current)
        buttons = QHBoxLayout()
        for button in (self.add_button, self.remove_button, self.reconnect_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.list)
        layout.addLayout(buttons)
        layout.addWidget(scroll, 1)
        registry.added.connect(self._on_added)
        registry.removed.connect(self._on_removed)
        for connection in registry.connections:
            self._on_added(connection)

    # -- public ----------------------------------------------------------------------------

    def add_remote(self, host: str, remote_socket: str = SYSTEM_SOCKET, name: str | None = None,
                   ssh_options: tuple[str, ...] = ()) -> AgentConnection:  # fmt: skip
        """Add an agent reached over SSH; ``ssh_options`` are extra ``-o`` options."""
        if not host or host.startswith("-"):
            raise ValueError(f"not an SSH host: {host!r}")
        spec = AgentSpec(name=self.registry.unique_name(name or host), kind=SSH_KIND,
                         ssh_host=host, remote_socket=remote_socket, ssh_options=ssh_options)  # fmt: skip
        return self.registry.add(spec)

    def add_local(self, socket_path: str | None = None, name: str = "local") -> AgentConnection:
        spec = AgentSpec(name=self.registry.unique_name(name), socket_path=socket_path or default_local_socket())
        return self.registry.add(spec)

    def current(self) -> AgentConnection | None:
        item = self.list.currentItem()
        return self.registry.get(item.data(Qt.ItemDataRole.UserRole)) if item is not None else None

    def select(self, name: str) -> None:
        for row in range(self.list.count()):
            if self.list.item(row).data(Qt.ItemDataRole.UserRole) == name:
                self.list.setCurrentRow(row)

    def details_text(self) -> str:
        connection = self.current()
        return "\n".join(f"{k}: {v}" for k, v in connection.describe()) if connection else ""

    # -- list ------------------------------------------------------------------------------

    def _item_for(self, connection: AgentConnection) -> QListWidgetItem | None:
        for row in range(self.list.count()):
            item = self.list.item(row)
            if item.data(Qt.ItemDataRole.UserRole) == connection.name:
                return item
        return None

    def _on_added(self, connection: AgentConnection) -> None:
        item = QListWidgetItem()
        item.setData(Qt.ItemDataRole.UserRole, connection.name)
        self.list.addItem(item)
        connection.changed.connect(lambda c=connection: self._update(c))
        self._update(connection)
        if self.list.currentItem() is None:
            self.list.setCurrentItem(item)

    def _on_removed(self, connection: AgentConnection) -> None:
        item = self._item_for(connection)
        if item is not None:
            self.list.takeItem(self.list.row(item))
        self._show_details()

    def _update(self, connection: AgentConnection) -> None:
        item = self._item_for(connection)
        if item is None:
            return
        state = connection.client.state
        mark = STATE_MARKS.get(state, "\u25cb")
        where = "ssh" if connection.spec.is_remote else "local"
        label = "connected" if state is ClientState.CONNECTED else state.value
        item.setText(f"{mark} {connection.name}  ({where}, {label})")
        item.setToolTip(connection.status_text)
        if connection is self.current():
            self._show_details()

    def _show_details(self) -> None:
        connection = self.current()
        if connection is None:
            self.details.setText("<i>No agent. Add one, or start a local agent with "
                                 "<code>backbench agent</code>.</i>")  # fmt: skip
            return
        rows = "".join(
            f"<tr><td valign='top' style='padding-right:8px'><b>{html.escape(k)}</b></td>"
            f"<td>{html.escape(v)}</td></tr>"
            for k, v in connection.describe()
        )
        self.details.setText(f"<table>{rows}</table>")

    # -- buttons ---------------------------------------------------------------------------

    def _ask_add(self) -> None:
        dialog = AddAgentDialog(self)
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return
        spec = dialog.spec()
        if spec is None:
            QMessageBox.warning(self, "Add an agent", "Give the agent's socket path (and a host name "
                                "that does not start with '-').")  # fmt: skip
            return
        self.registry.add(replace(spec, name=self.registry.unique_name(spec.name)))
        self.select(self.registry.connections[-1].name)

    def _remove_current(self) -> None:
        connection = self.current()
        if connection is not None:
            self.registry.remove(connection.name)

    def _reconnect_current(self) -> None:
        connection = self.current()
        if connection is not None:
            connection.stop()
            connection.start()
