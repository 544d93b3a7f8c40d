"""Run details: a run's spec, where its time went, which cases other processes disturbed,
and the environment manifest it was measured in, as a tree."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from PySide6.QtGui import QBrush, QColor, QGuiApplication
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from core.text import significant
from gui.table_model import truth_values

log = logging.getLogger(__name__)

# Manifest keys shown first, in this order: what decides the numbers most.
MANIFEST_ORDER: tuple[str, ...] = (
    "host", "cpu_model", "cores_physical", "cores_logical", "cores_usable", "governor",
    "memory_total_mb", "gpus", "packages", "backend_config", "python", "os", "kernel",
)  # fmt: skip
SPEC_ORDER: tuple[str, ...] = (
    "backend", "device", "precision", "mode", "batch_sizes", "models", "stopping",
)  # fmt: skip
# A case's phases as the long schema has them, in order, with the words shown. Convert
# shows only when it took time (a cached model costs nothing there).
PHASE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("convert_s", "convert"), ("load_s", "load"), ("compile_s", "compile"),
    ("warmup_s", "warm-up"), ("measure_s", "measure"),
)  # fmt: skip
MEASURING_COLUMNS: tuple[str, ...] = ("warmup_s", "measure_s")
EXPANDED_CASES = 8  # more cases than this: the time branch opens on request
_DISTURBED_BRUSH = QBrush(QColor("#8a4b00"))


def seconds_text(value: float) -> str:
    """``12.4 s``, ``412 s``, ``3,725 s (1 h 02 min)``."""
    text = f"{significant(value, 3)} s"
    if value >= 3600:
        text += f" ({value // 3600:.0f} h {value % 3600 // 60:02.0f} min)"
    return text


@dataclass(frozen=True, slots=True)
class CaseTime:
    """Where one case's wall time went, in seconds (phases absent where not recorded)."""

    label: str
    phases: dict[str, float] = field(default_factory=dict)  # long-schema column -> seconds
    wall_s: float | None = None
    disturbed: bool | None = None  # None: not recorded (older results)
    interference: float | None = None  # cores of other processes' work

    def text(self) -> str:
        parts = [
            f"{name} {seconds_text(self.phases[column])}"
            for column, name in PHASE_COLUMNS
            if column in self.phases and (column != "convert_s" or self.phases[column] > 0)
        ]
        if self.wall_s is not None:
            parts.append(f"wall {seconds_text(self.wall_s)}")
        text = ", ".join(parts) or "not recorded"
        if self.disturbed:
            text += "  ⚠ disturbed" + (
                f": {significant(self.interference, 2)} cores of other work"
                if self.interference is not None
                else ""
            )
        return text


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _numeric(rows: pd.DataFrame, column: str) -> list[float | None]:
    if column not in rows.columns:
        return [None] * len(rows)
    return [_finite(v) for v in pd.to_numeric(rows[column], errors="coerce")]


def _case_label(row: Mapping[str, Any]) -> str:
    batch = _finite(row.get("batch_size"))
    label = f"{row.get('model', '?')} b{int(batch) if batch is not None else '?'}"
    if str(row.get("mode") or "").lower() == "throughput":
        label += " throughput"
    attempt = _finite(row.get("attempt"))
    if attempt is not None and attempt > 1:
        label += f" (attempt {int(attempt)})"
    return label


def case_times(rows: pd.DataFrame) -> list[CaseTime]:
    """One CaseTime per row (a case's current attempt), in the rows' order."""
    columns = [c for c, _name in PHASE_COLUMNS] + ["wall_s", "interference"]
    values = {c: _numeric(rows, c) for c in columns}
    if "disturbed" in rows.columns:
        disturbed = [None if pd.isna(v) else bool(v) for v in truth_values(rows["disturbed"])]
    else:
        disturbed = [None] * len(rows)
    cases = []
    for i, row in enumerate(rows.to_dict(orient="records")):
        phases = {
            column: seconds
            for column, _name in PHASE_COLUMNS
            if (seconds := values[column][i]) is not None
        }
        cases.append(
            CaseTime(
                _case_label(row), phases, values["wall_s"][i], disturbed[i],
                values["interference"][i],
            )  # fmt: skip
        )
    return cases


def measuring_share(cases: list[CaseTime]) -> tuple[float, float] | None:
    """(total wall seconds, the share of it spent warming up and in the timed loop) over
    the cases with a wall time; None when no case has one."""
    timed = [c for c in cases if c.wall_s is not None]
    wall = sum(c.wall_s for c in timed if c.wall_s is not None)
    if not timed or wall <= 0:
        return None
    measuring = sum(c.phases.get(column, 0.0) for c in timed for column in MEASURING_COLUMNS)
    return wall, measuring / wall


def time_summary(cases: list[CaseTime]) -> str:
    """The run's line: ``412 s wall, 81% measuring``."""
    share = measuring_share(cases)
    if share is None:
        return "not recorded (these results predate phase times)"
    wall, measuring = share
    counted = sum(1 for c in cases if c.wall_s is not None)
    text = f"{seconds_text(wall)} wall, {measuring:.0%} measuring"
    if counted < len(cases):
        text += f" ({counted} of {len(cases)} cases timed)"
    return text


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
        self.time_item: QTreeWidgetItem | None = None
        self.disturbed_item: QTreeWidgetItem | None = None
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

    def set_run(
        self, manifest: Mapping[str, Any] | None, spec: Any, name: str,
        rows: pd.DataFrame | None = None,
    ) -> None:  # fmt: skip
        """Show run ``name`` with its ``spec`` (a RunSpec or its dict) and ``manifest``;
        ``rows`` (its measurements, long schema) add where the time went per case and
        which cases other processes disturbed."""
        manifest_dict = _as_dict(manifest)
        spec_dict = _as_dict(spec)
        self._payload = {"name": name, "spec": spec_dict, "manifest": manifest_dict}
        self.title.setText(f"Run: {name}")
        self.tree.clear()
        self.time_item = self.disturbed_item = None
        # Where the time went and what disturbed it first: the run at a glance.
        if rows is not None and not rows.empty:
            self._fill_cases(case_times(rows), spec_dict)
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

    def _fill_cases(self, cases: list[CaseTime], spec: Mapping[str, Any]) -> None:
        summary = time_summary(cases)
        self.time_item = QTreeWidgetItem(self.tree, ["Time", summary])
        self.time_item.setToolTip(
            1, "Wall time of the cases; measuring = warm-up + timed loop, the rest is starting "
            "the worker, converting, loading and compiling",
        )  # fmt: skip
        for case in cases:
            node = QTreeWidgetItem(self.time_item, [case.label, case.text()])
            node.setToolTip(1, case.text())
            if case.disturbed:
                for column in (0, 1):
                    node.setForeground(column, _DISTURBED_BRUSH)
        if len(cases) > EXPANDED_CASES:
            self._long_lists.append(self.time_item)
        share = measuring_share(cases)
        self._payload["time"] = {
            "summary": summary,
            "wall_s": share[0] if share else None,
            "measuring_share": share[1] if share else None,
            "cases": [
                {"case": c.label, **c.phases, "wall_s": c.wall_s, "disturbed": c.disturbed,
                 "interference": c.interference}
                for c in cases
            ],
        }  # fmt: skip
        disturbed = [c for c in cases if c.disturbed]
        known = sum(1 for c in cases if c.disturbed is not None)
        threshold = _finite(spec.get("disturbed_threshold"))
        limit = f" (other processes above {significant(threshold, 2)} cores)" if threshold else ""
        if known and not disturbed:
            QTreeWidgetItem(self.tree, ["Disturbed", f"none of {known} cases{limit}"])
        if disturbed:
            self.disturbed_item = QTreeWidgetItem(
                self.tree, ["Disturbed", f"⚠ {len(disturbed)} of {len(cases)} cases{limit}"]
            )
            self.disturbed_item.setForeground(1, _DISTURBED_BRUSH)
            for case in disturbed:
                cores = (
                    f"{significant(case.interference, 2)} cores of other work"
                    if case.interference is not None
                    else "other work above the threshold"
                )
                QTreeWidgetItem(self.disturbed_item, [case.label, cores])

    def clear(self, message: str = "No run selected") -> None:
        self._payload = {}
        self.time_item = self.disturbed_item = None
        self.title.setText(message)
        self.tree.clear()
        self.copy_button.setEnabled(False)

    def section(self, name: str) -> QTreeWidgetItem | None:
        """The top-level branch called ``name`` (Spec, Time, Disturbed, Environment)."""
        for i in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(i)
            if item.text(0) == name:
                return item
        return None

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
