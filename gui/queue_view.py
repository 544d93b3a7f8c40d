"""The job queue of every agent, with cancel and resume.

Rows come from two sources: job events as they happen (instant), and a ``status`` poll
every few seconds (which also catches jobs submitted by other clients and anything an
event could not tell, e.g. after a reconnection). Redraws are coalesced, so a burst of
events costs one table update.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from core.errors import ProtocolError
from core.protocol.events import ENDING_STATE, JOB_ENDING_EVENTS, JobEvent
from gui.agent_client import images_progress, images_text
from gui.agents import AgentConnection, AgentRegistry

logger = logging.getLogger(__name__)

POLL_MS = 3000
REDRAW_MS = 100
COLUMNS = ("Agent", "Job", "State", "Progress", "Models", "Backend / device", "Batch sizes", "Submitted", "Note")
CANCELLABLE = {"queued", "running"}
RESUMABLE = {"interrupted", "cancelled", "failed"}


def _when(stamp: Any) -> str:
    if not isinstance(stamp, (int, float)) or stamp <= 0:
        return "-"
    return datetime.fromtimestamp(stamp).strftime("%m-%d %H:%M:%S")


class QueueView(QWidget):
    job_finished = Signal(object, int, object)  # (AgentConnection, job_id, run_id or None)

    def __init__(self, registry: AgentRegistry, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.registry = registry
        self.jobs: dict[tuple[str, int], dict[str, Any]] = {}
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.cancel_button = QPushButton("Cancel job")
        self.cancel_button.setToolTip("Cancel the selected job (Ctrl+.)")
        self.cancel_button.clicked.connect(self.cancel_selected)
        self.resume_button = QPushButton("Resume job")
        self.resume_button.setToolTip("Measure the rest of an interrupted, cancelled or failed job")
        self.resume_button.clicked.connect(self.resume_selected)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setToolTip("Ask every agent for its jobs now (F5)")
        self.refresh_button.clicked.connect(self.refresh)
        self.status = QLabel()
        self.status.setWordWrap(True)
        buttons = QHBoxLayout()
        for button in (self.cancel_button, self.resume_button, self.refresh_button):
            buttons.addWidget(button)
        buttons.addWidget(self.status, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        layout.addWidget(self.table, 1)
        self._redraw_timer = QTimer(self)
        self._redraw_timer.setSingleShot(True)
        self._redraw_timer.setInterval(REDRAW_MS)
        self._redraw_timer.timeout.connect(self._redraw)
        self._poll = QTimer(self)
        self._poll.setInterval(POLL_MS)
        self._poll.timeout.connect(self.refresh)
        self._poll.start()
        registry.added.connect(self._on_added)
        registry.removed.connect(self._on_removed)
        for connection in registry.connections:
            self._on_added(connection)
        self._update_buttons()

    # -- sources -----------------------------------------------------------------------------

    def _on_added(self, connection: AgentConnection) -> None:
        client = connection.client
        client.job_event.connect(lambda name, params, c=connection: self.on_job_event(c, name, params))
        client.connected.connect(lambda _hello, c=connection: self._poll_one(c))

    def _on_removed(self, connection: AgentConnection) -> None:
        for key in [k for k in self.jobs if k[0] == connection.name]:
            del self.jobs[key]
        self._schedule()

    def refresh(self) -> None:
        for connection in self.registry.connections:
            if connection.is_connected:
                self._poll_one(connection)

    def _poll_one(self, connection: AgentConnection) -> None:
        def done(result: Any, error: ProtocolError | None) -> None:
            if error is not None or not isinstance(result, dict):
                return
            running = result.get("running") if isinstance(result.get("running"), dict) else None
            for job in result.get("jobs") or []:
                if isinstance(job, dict) and isinstance(job.get("job_id"), int):
                    row = self._row(connection, job["job_id"])
                    done_cases = row.get("cases_done", 0)
                    row.update(job)
                    row["cases_done"] = done_cases
                    if running and running.get("job_id") == job["job_id"]:
                        row["case_index"] = running.get("case_index")
                        row["phase"] = running.get("phase")
            self._schedule()

        connection.client.request("status", {}, done)

    def _row(self, connection: AgentConnection, job_id: int) -> dict[str, Any]:
        return self.jobs.setdefault((connection.name, job_id), {"job_id": job_id, "state": "queued"})

    def on_job_event(self, connection: AgentConnection, name: str, params: dict[str, Any]) -> None:
        job_id = params.get("job_id")
        if not isinstance(job_id, int):
            return
        row = self._row(connection, job_id)
        if name == JobEvent.QUEUED and isinstance(params.get("job"), dict):
            row.update(params["job"])
            row["cases_done"] = 0 if not params.get("resumed") else row.get("cases_done", 0)
        elif name == JobEvent.STARTED:
            row.update(state="running", run_id=params.get("run_id"), cases_total=params.get("cases_total"),
                       started_at=time.time())  # fmt: skip
        elif name == JobEvent.CASE_STARTED:
            row.update(state="running", case_index=params.get("case_index"), case_label=params.get("label"),
                       images=None)  # fmt: skip
        elif name == JobEvent.CASE_PROGRESS:
            progress = images_progress(params)
            if progress is not None:
                row.update(state="running", images=progress)
        elif name in (JobEvent.CASE_FINISHED, JobEvent.CASE_FAILED):
            row["images"] = None
            row["cases_done"] = row.get("cases_done", 0) + 1
            if name == JobEvent.CASE_FAILED:
                row["failed_cases"] = row.get("failed_cases", 0) + 1
        elif name in JOB_ENDING_EVENTS:
            row.update(state=params.get("state") or ENDING_STATE[JobEvent(name)], reason=params.get("reason"))
            if isinstance(params.get("run_id"), int):
                row["run_id"] = params["run_id"]
            if isinstance(params.get("cases_ok"), int):
                row["cases_done"] = params["cases_ok"] + int(params.get("cases_failed") or 0)
            self.job_finished.emit(connection, job_id, row.get("run_id"))
        self._schedule()

    # -- table -------------------------------------------------------------------------------

    def _schedule(self) -> None:
        if not self._redraw_timer.isActive():
            self._redraw_timer.start()

    def _sorted_keys(self) -> list[tuple[str, int]]:
        return sorted(self.jobs, key=lambda k: (k[0], -k[1]))

    def selected_key(self) -> tuple[str, int] | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        item = self.table.item(rows[0].row(), 0)
        key = item.data(Qt.ItemDataRole.UserRole) if item is not None else None
        return (key[0], int(key[1])) if isinstance(key, (list, tuple)) else None

    def select_job(self, agent: str, job_id: int) -> None:
        self._redraw()
        for row in range(self.table.rowCount()):
            key = self.table.item(row, 0).data(Qt.ItemDataRole.UserRole)
            if tuple(key) == (agent, job_id):
                self.table.selectRow(row)

    def _cells(self, agent: str, job: dict[str, Any]) -> list[str]:
        spec = job.get("spec") if isinstance(job.get("spec"), dict) else {}
        total = job.get("cases_total") or "?"
        done = job.get("cases_done", 0)
        progress = f"{done}/{total}"
        images = job.get("images") if job.get("state") == "running" else None
        if job.get("state") == "running" and job.get("case_label"):
            progress += f"  ({job['case_label']}" + (f": {images_text(*images)})" if images else ")")
        elif images:
            progress += f"  ({images_text(*images)})"
        if job.get("failed_cases"):
            progress += f", {job['failed_cases']} failed"
        models = ", ".join(Path(str(m)).name for m in spec.get("models", []))
        where = f"{spec.get('backend', '?')} / {spec.get('device', '?')} / {spec.get('precision', '?')}"
        sizes = ",".join(str(b) for b in spec.get("batch_sizes", []))
        return [agent, str(job["job_id"]), str(job.get("state", "?")), progress, models[:80], where, sizes,
                _when(job.get("submitted_at")), str(job.get("reason") or "")]  # fmt: skip

    def _redraw(self) -> None:
        selected = self.selected_key()
        keys = self._sorted_keys()
        self.table.setRowCount(len(keys))
        for row, key in enumerate(keys):
            for column, text in enumerate(self._cells(key[0], self.jobs[key])):
                item = self.table.item(row, column)
                if item is None:
                    item = QTableWidgetItem()
                    self.table.setItem(row, column, item)
                if item.text() != text:
                    item.setText(text)
                if column == 0:
                    item.setData(Qt.ItemDataRole.UserRole, [key[0], key[1]])
        if selected in keys:
            self.table.selectRow(keys.index(selected))
        self._update_buttons()

    def _update_buttons(self) -> None:
        key = self.selected_key()
        state = self.jobs.get(key, {}).get("state") if key else None
        self.cancel_button.setEnabled(state in CANCELLABLE)
        self.resume_button.setEnabled(state in RESUMABLE)

    # -- actions -----------------------------------------------------------------------------

    def _act(self, method: str) -> None:
        key = self.selected_key()
        connection = self.registry.get(key[0]) if key else None
        if key is None or connection is None:
            self.status.setText("Select a job first.")
            return

        def done(result: Any, error: ProtocolError | None) -> None:
            if error is not None:
                self.status.setText(f"{method.capitalize()} job {key[1]} failed: {error.message}"
                                    + (f" {error.hint}" if error.hint else ""))  # fmt: skip
                return
            if method == "cancel":
                note = " (stopping its running case)" if (result or {}).get("cancelling") else ""
                self.status.setText(f"Job {key[1]}: cancel sent{note}.")
            else:
                self.status.setText(f"Job {key[1]} queued again; it resumes at its first unfinished case.")
            self._poll_one(connection)

        connection.client.request(method, {"job_id": key[1]}, done)

    def cancel_selected(self) -> None:
        self._act("cancel")

    def resume_selected(self) -> None:
        self._act("resume")
