"""What the GUI remembers between sessions, through QSettings (an INI file per user).

Stored: the agents added (local sockets and SSH hosts), the launcher's last choices, the
window geometry and dock state. The file is user-editable, so everything read back is
checked and anything malformed is skipped with a log line, never a crash.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QSettings

from core.protocol.address import (
    SYSTEM_SOCKET,
    ssh_config_problem,
    ssh_host_problem,
    ssh_option_problem,
    user_socket_path,
)

logger = logging.getLogger(__name__)

ORGANIZATION = "backbench"
APPLICATION = "backbench-gui"
AGENTS_KEY = "agents/list"
CHOICES_KEY = "launcher/choices"
GEOMETRY_KEY = "window/geometry"
STATE_KEY = "window/state"
TAB_KEY = "window/tab"
LOCAL_KIND = "local"
SSH_KIND = "ssh"


def default_local_socket() -> str:
    """Where a local agent listens: the user's agent if one is there, else the system one.

    Both locations come from ``core.protocol.address``, where the agent finds its own.
    """
    user = user_socket_path()
    if user.exists() or not Path(SYSTEM_SOCKET).exists():
        return str(user)
    return SYSTEM_SOCKET


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """How to reach one agent: a local socket, or a remote socket over SSH."""

    name: str
    kind: str = LOCAL_KIND
    socket_path: str = ""  # local kind
    ssh_host: str = ""  # ssh kind: [user@]host
    remote_socket: str = SYSTEM_SOCKET
    ssh_options: tuple[str, ...] = ()  # ssh kind: extra `ssh -o` options (Key=value)
    ssh_config: str = ""  # ssh kind: an ssh config file read instead of ~/.ssh/config (-F)

    @property
    def is_remote(self) -> bool:
        return self.kind == SSH_KIND

    @property
    def address(self) -> str:
        return f"{self.ssh_host}:{self.remote_socket}" if self.is_remote else self.socket_path

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "socket_path": self.socket_path,
            "ssh_host": self.ssh_host, "remote_socket": self.remote_socket,
            "ssh_options": list(self.ssh_options), "ssh_config": self.ssh_config,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: Any) -> AgentSpec | None:
        """None when ``data`` is not a usable agent entry. An entry with an ssh option
        outside the allowed list (``ssh_option_problem``), a host that is not a plain
        ``[user@]host`` (``ssh_host_problem``) or an ssh config file that another user
        could have written (``ssh_config_problem``) is not usable either: a settings file
        may have been copied or edited by someone else, and options that run commands
        belong in an ssh config file the user owns."""
        if not isinstance(data, dict):
            return None
        keys = ("name", "kind", "socket_path", "ssh_host", "remote_socket", "ssh_config")
        text = {k: data.get(k, "") for k in keys}
        options = data.get("ssh_options", [])
        if not all(isinstance(v, str) for v in text.values()) or not isinstance(options, list):
            return None
        if not all(isinstance(o, str) for o in options):
            return None
        problems = [ssh_option_problem(o) for o in options]
        if text["ssh_config"]:
            problems.append(ssh_config_problem(text["ssh_config"]))
        if text["kind"] == SSH_KIND and text["ssh_host"]:
            problems.append(ssh_host_problem(text["ssh_host"]))
        refused = next((p for p in problems if p is not None), None)
        if refused is not None:
            logger.warning("Ignoring the agent %r of the settings: %s", text["name"], refused)
            return None
        if text["kind"] == SSH_KIND:
            ok = bool(text["ssh_host"]) and not text["ssh_host"].startswith("-")
        else:
            ok = text["kind"] == LOCAL_KIND and bool(text["socket_path"])
        if not ok or not text["name"]:
            return None
        return cls(
            name=text["name"], kind=text["kind"], socket_path=text["socket_path"],
            ssh_host=text["ssh_host"], remote_socket=text["remote_socket"] or SYSTEM_SOCKET,
            ssh_options=tuple(options), ssh_config=text["ssh_config"],
        )  # fmt: skip


def open_settings() -> QSettings:
    """The user's settings file (INI everywhere, so tests can redirect it with setPath)."""
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, ORGANIZATION, APPLICATION)


def _read_json(settings: QSettings, key: str) -> Any:
    raw = settings.value(key)
    if raw is None:
        return None
    try:
        return json.loads(str(raw))
    except ValueError:
        logger.warning("Ignoring the unreadable setting %s in %s", key, settings.fileName())
        return None


def load_agents(settings: QSettings) -> list[AgentSpec]:
    data = _read_json(settings, AGENTS_KEY)
    if not isinstance(data, list):
        return []
    agents: list[AgentSpec] = []
    for entry in data:
        spec = AgentSpec.from_dict(entry)
        if spec is None:
            logger.warning("Ignoring a malformed agent entry in %s", settings.fileName())
        elif spec.name not in {a.name for a in agents}:
            agents.append(spec)
    return agents


def save_agents(settings: QSettings, agents: list[AgentSpec]) -> None:
    settings.setValue(AGENTS_KEY, json.dumps([a.to_dict() for a in agents]))


def load_choices(settings: QSettings) -> dict[str, Any]:
    data = _read_json(settings, CHOICES_KEY)
    return data if isinstance(data, dict) else {}


def save_choices(settings: QSettings, choices: dict[str, Any]) -> None:
    settings.setValue(CHOICES_KEY, json.dumps(choices))


def load_bytes(settings: QSettings, key: str) -> QByteArray | None:
    value = settings.value(key)
    return value if isinstance(value, QByteArray) and not value.isEmpty() else None


def load_int(settings: QSettings, key: str, default: int = 0) -> int:
    value = settings.value(key, default)
    try:
        return int(value)
    except (TypeError, ValueError):
        return default
