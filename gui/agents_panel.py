"""The agents panel: the local agent and remote ones over SSH, as a list with details.

``AgentsPanel`` shows the ``AgentRegistry`` of ``gui.agents``: status, host manifest and
devices for each agent, with buttons to add a remote agent, remove one or reconnect.
"""

from __future__ import annotations

import html
import logging
import shlex
from dataclasses import replace

from PySide6.QtCore import Qt
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

from core.protocol.address import (
    SYSTEM_SOCKET,
    check_ssh_options,
    ssh_config_problem,
    ssh_host_problem,
)
from gui.agent_client import ClientState
from gui.agents import AgentConnection, AgentRegistry
from gui.settings import LOCAL_KIND, SSH_KIND, AgentSpec, default_local_socket

logger = logging.getLogger(__name__)

STATE_MARKS = {
    ClientState.CONNECTED: "\u25cf",  # filled circle
    ClientState.REFUSED: "\u2716",
}


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
        self.options = QLineEdit()
        self.options.setPlaceholderText("e.g. Port=2222 IdentityFile=~/.ssh/lab (optional)")
        self.options.setToolTip("`ssh -o` options, separated by spaces (quote one that holds a space): only "
                                "those that say how to reach and log in (Port, User, IdentityFile, ProxyJump...). "
                                "Others (ProxyCommand...) belong in an ssh config file you own.")  # fmt: skip
        self.config = QLineEdit()
        self.config.setPlaceholderText("read instead of ~/.ssh/config (optional)")
        form = QFormLayout(self)
        form.addRow("SSH host:", self.host)
        form.addRow("Agent socket:", self.socket_path)
        form.addRow("Name:", self.name)
        form.addRow("SSH options:", self.options)
        form.addRow("SSH config file:", self.config)
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
            problem = ssh_host_problem(host)
            if problem is not None:
                raise ValueError(problem)
            return AgentSpec(name=name, kind=SSH_KIND, ssh_host=host, remote_socket=path,
                             ssh_options=self.ssh_options(), ssh_config=self.config.text().strip())  # fmt: skip
        return AgentSpec(name=name, kind=LOCAL_KIND, socket_path=path)

    def ssh_options(self) -> tuple[str, ...]:
        """The options typed, split as a shell would; ValueError names a refused one."""
        options = tuple(shlex.split(self.options.text()))
        check_ssh_options(options)
        config = self.config.text().strip()
        problem = ssh_config_problem(config) if config else None
        if problem is not None:
            raise ValueError(problem)
        return options


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
                   ssh_options: tuple[str, ...] = (), ssh_config: str = "") -> AgentConnection:  # fmt: skip
        """Add an agent reached over SSH; ``ssh_options`` are extra ``-o`` options and
        ``ssh_config`` an ssh config file (``-F``). ValueError for a refused option, host
        or config file (``core.protocol.address``)."""
        problem = ssh_host_problem(host)
        if problem is not None:
            raise ValueError(problem)
        check_ssh_options(ssh_options)
        problem = ssh_config_problem(ssh_config) if ssh_config else None
        if problem is not None:
            raise ValueError(problem)
        spec = AgentSpec(name=self.registry.unique_name(name or host), kind=SSH_KIND, ssh_host=host,
                         remote_socket=remote_socket, ssh_options=tuple(ssh_options), ssh_config=ssh_config)  # fmt: skip
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
        mark = STATE_MARKS.get(connection.client.state, "\u25cb")
        where = "ssh" if connection.spec.is_remote else "local"
        label = connection.state_label  # connected, reconnecting, ssh failed...
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
        try:
            spec = dialog.spec()
        except ValueError as exc:
            QMessageBox.warning(self, "Add an agent", f"{str(exc)[:1].upper()}{str(exc)[1:]}.")
            return
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
