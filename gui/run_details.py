"""Run details: a run's spec and the environment manifest it was measured in, as a tree."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

log = logging.getLogger(__name__)

# Manifest keys shown first, in this order: what decides the numbers most.
MANIFEST_ORDER: tuple[str, ...] = (
    "host", "cpu_model", "cores_physical", "cores_logical", "cores_usable", "governor",
    "memory_total_mb", "gpus", "packages", "backend_config", "python", "os", "kernel",
)  # fmt: skip
SPEC_ORDER: tuple[str, ...] = (
    "backend", "device", "precision", "mode", "batch_sizes", "models", "stopping",
)  # fmt: skip


def _as_dict(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        result = to_dict()
        if isinstance(result, Mapping):
            return dict(result)
    return {"value": value}


def _ordered(data: Mapping[str, Any], first: tuple[str, ...]) -> list[tuple[str, Any]]:
    keys = [k for k in first if k in data] + sorted(k for k in data if k not in first)
    return [(k, data[k]) for k in keys]


def _scalar_text(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


class RunDetails(QWidget):
    """Shows one run: name, spec and environment manifest. Nested values are tree branches;
    a list of plain values is one comma-separated line."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._payload: dict[str, Any] = {}
        self._long_lists: list[QTreeWidgetItem] = []
        self.title = QLabel("No run selected")
        self.title.setWordWrap(True)
        self.title.setStyleSheet("font-weight: bold;")
        self.copy_button = QPushButton("Copy as JSON")
        self.copy_button.setToolTip("Copy this run's spec and environment manifest")
        self.copy_button.clicked.connect(self.copy_json)
        self.copy_button.setEnabled(False)
        self.tree = QTreeWidget()
        self.tree.setColumnCount(2)
        self.tree.setHeaderLabels(["Field", "Value"])
        self.tree.setAlternatingRowColors(True)
        self.tree.setUniformRowHeights(True)
        self.tree.header().setStretchLastSection(True)
        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(self.copy_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.tree, 1)

    def set_run(self, manifest: Mapping[str, Any] | None, spec: Any, name: str) -> None:
        """Show run ``name`` with its ``spec`` (a RunSpec or its dict) and ``manifest``."""
        manifest_dict = _as_dict(manifest)
        spec_dict = _as_dict(spec)
        self._payload = {"name": name, "spec": spec_dict, "manifest": manifest_dict}
        self.title.setText(f"Run: {name}")
        self.tree.clear()
        spec_root = QTreeWidgetItem(self.tree, ["Spec", "" if spec_dict else "not recorded"])
        self._fill(spec_root, _ordered(spec_dict, SPEC_ORDER))
        env_text = "" if manifest_dict else "not recorded (this source has no manifest)"
        env_root = QTreeWidgetItem(self.tree, ["Environment", env_text])
        self._fill(env_root, _ordered(manifest_dict, MANIFEST_ORDER))
        self.tree.expandAll()
        for node in self._long_lists:
            node.setExpanded(False)  # e.g. a suite's 33 models: one line until asked for
        self._long_lists = []
        self.tree.resizeColumnToContents(0)
        self.copy_button.setEnabled(True)

    def clear(self, message: str = "No run selected") -> None:
        self._payload = {}
        self.title.setText(message)
        self.tree.clear()
        self.copy_button.setEnabled(False)

    def payload(self) -> dict[str, Any]:
        """What is shown, as plain data (name, spec, manifest)."""
        return dict(self._payload)

    def copy_json(self) -> None:
        text = json.dumps(self._payload, indent=2, default=str)
        QGuiApplication.clipboard().setText(text)

    def _fill(self, parent: QTreeWidgetItem, items: list[tuple[str, Any]]) -> None:
        for key, value in items:
            if isinstance(value, Mapping):
                node = QTreeWidgetItem(parent, [str(key), "" if value else "–"])
                self._fill(node, _ordered(dict(value), ()))
            elif isinstance(value, (list, tuple)):
                if all(not isinstance(v, (Mapping, list, tuple)) for v in value):
                    text = ", ".join(_scalar_text(v) for v in value) or "–"
                    if len(value) > 8:
                        node = QTreeWidgetItem(parent, [str(key), f"{len(value)}: {text}"])
                        for v in value:
                            QTreeWidgetItem(node, ["", _scalar_text(v)])
                        self._long_lists.append(node)
                    else:
                        node = QTreeWidgetItem(parent, [str(key), text])
                    node.setToolTip(1, text)
                else:
                    node = QTreeWidgetItem(parent, [str(key), f"{len(value)} items"])
                    self._fill(node, [(f"[{i}]", v) for i, v in enumerate(value)])
            else:
                node = QTreeWidgetItem(parent, [str(key), _scalar_text(value)])
                node.setToolTip(1, _scalar_text(value))
