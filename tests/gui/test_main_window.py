"""The main window against a real agent: the manifest shows, a run submitted from the
launcher streams into the live view, finishes and fills the results; cancel and resume
work from the queue. Also: the missing-agent and SSH-failure messages, settings that
persist, and the keyboard shortcuts."""

from __future__ import annotations

from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel

from gui.main_window import TAB_NAMES, MainWindow
from gui.settings import GEOMETRY_KEY, STATE_KEY, load_agents, load_bytes, open_settings
from tests.gui.conftest import FAST_STOPPING, TINY_MODEL

JOB_TIMEOUT_MS = 150_000


def _window(qtbot, **kwargs: Any) -> MainWindow:
    window = MainWindow(**kwargs)
    qtbot.addWidget(window)
    window.show()
    return window


def _fill_launcher(window: MainWindow, qtbot, stopping: dict[str, float], sizes: tuple[int, ...] = (1,)) -> None:
    """Drive the launcher's widgets as a user would."""
    launcher = window.launcher
    launcher.search.clear()
    qtbot.keyClicks(launcher.search, TINY_MODEL)
    items = [launcher.model_list.item(i) for i in range(launcher.model_list.count())]
    visible = [item for item in items if not item.isHidden()]
    assert [item.data(Qt.ItemDataRole.UserRole) for item in visible] == [TINY_MODEL]
    launcher.set_checked_models([])
    visible[0].setCheckState(Qt.CheckState.Checked)
    for size, box in launcher.batch_boxes.items():
        box.setChecked(size in sizes)
    launcher.target_ci.setValue(stopping["target_ci"] * 100)
    launcher.min_iters.setValue(int(stopping["min_iters"]))
    launcher.max_time.setValue(stopping["max_time_s"])


def _points(curve) -> int:
    x, _y = curve.getData()
    return 0 if x is None else len(x)


def _job(window: MainWindow, job_id: int) -> dict[str, Any]:
    return window.queue_view.jobs.get(("local", job_id), {})


@pytest.mark.slow
def test_run_from_the_launcher_to_the_results(qtbot, shared_agent) -> None:
    window = _window(qtbot, local_socket=str(shared_agent.socket_path))
    connection = window.registry.get("local")
    qtbot.waitUntil(lambda: bool(connection.is_connected and connection.devices and connection.models), timeout=60_000)

    # The agents panel shows the host manifest and the devices.
    details = window.agents_panel.details_text()
    host = connection.hello["host"]
    assert f"CPU: {host['cpu_model']}" in details
    assert f"torch {host['packages']['torch']}" in details
    assert "Devices: torch: cpu" in details
    assert window.launcher.backend_combo.findText("torch") >= 0

    # Submit a tiny run from the launcher's widgets (Ctrl+R is the same action).
    _fill_launcher(window, qtbot, FAST_STOPPING)
    assert window.launcher.spec_dict()["models"] == [TINY_MODEL]
    qtbot.mouseClick(window.launcher.submit_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "queued on local" in window.launcher.status.text(), timeout=60_000)
    job_id = int(window.launcher.status.text().split()[1])
    assert window.tabs.currentIndex() == TAB_NAMES.index("Live")

    # Live points arrive in the ring buffer and get drawn.
    panel = window.live_view.panels["local"]
    qtbot.waitUntil(lambda: panel.samples_received > 0 and panel.memory_received > 0, timeout=JOB_TIMEOUT_MS)
    qtbot.waitUntil(lambda: _points(panel.latency_curve) > 0, timeout=5000)
    assert panel.job_id == job_id and TINY_MODEL in panel.heading.text()

    # The job finishes; its measurement reaches the results table.
    qtbot.waitUntil(lambda: _job(window, job_id).get("state") == "finished", timeout=JOB_TIMEOUT_MS)
    assert _job(window, job_id)["cases_done"] == 1
    frame_of = getattr(window.results_view, "dataframe", None)
    if frame_of is not None:
        qtbot.waitUntil(lambda: len(frame_of()) == 1, timeout=15_000)
        row = frame_of().iloc[0]
        assert row["model"] == TINY_MODEL and row["status"] == "ok" and row["per_image_ms"] > 0

    # A long run: cancel it from the queue, resume it, cancel again with Ctrl+.
    long_rule = {"min_iters": 100_000, "target_ci": 0.001, "max_time_s": 120.0}
    _fill_launcher(window, qtbot, long_rule)
    window.submit_action.trigger()
    qtbot.waitUntil(lambda: f"Job {job_id + 1} queued" in window.launcher.status.text(), timeout=60_000)
    long_id = job_id + 1
    qtbot.waitUntil(lambda: panel.job_id == long_id and panel.case_index == 0, timeout=JOB_TIMEOUT_MS)
    window.tabs.setCurrentIndex(TAB_NAMES.index("Queue"))
    window.queue_view.select_job("local", long_id)
    assert window.queue_view.cancel_button.isEnabled()
    qtbot.mouseClick(window.queue_view.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: _job(window, long_id).get("state") == "cancelled", timeout=JOB_TIMEOUT_MS)
    window.queue_view.select_job("local", long_id)
    assert window.queue_view.resume_button.isEnabled()
    qtbot.mouseClick(window.queue_view.resume_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: _job(window, long_id).get("state") in ("queued", "running"), timeout=30_000)
    window.cancel_action.trigger()
    qtbot.waitUntil(lambda: _job(window, long_id).get("state") == "cancelled", timeout=JOB_TIMEOUT_MS)
    assert window.queue_view.table.rowCount() == 2


def test_missing_agent_message_in_the_window(qtbot, tmp_path) -> None:
    path = tmp_path / "none.sock"
    window = _window(qtbot, local_socket=str(path))
    connection = window.registry.get("local")
    qtbot.waitUntil(lambda: "No agent at" in connection.status_text, timeout=5000)
    expected = f"No agent at {path}. Start one with `backbench agent` or `systemctl start backbench-agent`."
    assert f"Status: {expected}" in window.agents_panel.details_text()
    assert expected in window.live_view.panels["local"].heading.text()
    window.launcher.submit()
    assert window.launcher.status.text().startswith("No connected agent to run on. No agent at")


@pytest.mark.skipif(__import__("shutil").which("ssh") is None, reason="no OpenSSH client installed")
def test_remote_agent_ssh_failure_shows_sshs_text(qtbot, tmp_path) -> None:
    window = _window(qtbot, local_socket=str(tmp_path / "none.sock"))
    connection = window.agents_panel.add_remote("nonexistent.invalid", ssh_options=("ConnectTimeout=2",))
    window.agents_panel.select(connection.name)
    qtbot.waitUntil(lambda: "exited (status 255)" in connection.status_text, timeout=20_000)
    details = window.agents_panel.details_text()
    assert "ssh to nonexistent.invalid exited (status 255): " in details
    assert "Address: nonexistent.invalid:/run/backbench/agent.sock" in details
    window.registry.remove(connection.name)
    assert connection.tunnel is not None and not connection.tunnel.running


def test_settings_persist_between_sessions(qtbot, tmp_path) -> None:
    path = str(tmp_path / "agent.sock")
    first = _window(qtbot, local_socket=path)
    first.agents_panel.add_remote("me@gpu-box", "/srv/agent.sock", name="cloud")
    first.registry.get("cloud").stop()  # no real ssh for this host; only the entry matters
    for size, box in first.launcher.batch_boxes.items():
        box.setChecked(size in (1, 8, 64))
    first.launcher.mode_combo.setCurrentText("throughput")
    first.launcher.max_time.setValue(42.0)
    first.tabs.setCurrentIndex(TAB_NAMES.index("Queue"))
    first.close()

    saved = load_agents(open_settings())
    assert [(a.name, a.kind, a.address) for a in saved] == [
        ("local", "local", path), ("cloud", "ssh", "me@gpu-box:/srv/agent.sock")
    ]  # fmt: skip
    second = _window(qtbot)
    assert [c.name for c in second.registry.connections] == ["local", "cloud"]
    assert second.launcher.batch_sizes() == [1, 8, 64]
    assert second.launcher.mode_combo.currentText() == "throughput"
    assert second.launcher.max_time.value() == 42.0
    assert second.tabs.currentIndex() == TAB_NAMES.index("Queue")
    # The offscreen screen is 800x800 and clamps a restored size, so check the saved state
    # itself: geometry and dock layout were written and are accepted back.
    settings = open_settings()
    assert second.restoreGeometry(load_bytes(settings, GEOMETRY_KEY))
    assert second.restoreState(load_bytes(settings, STATE_KEY))
    second.registry.remove("cloud")


def test_default_layout_and_shortcuts(qtbot, tmp_path) -> None:
    window = _window(qtbot, local_socket=str(tmp_path / "none.sock"))
    assert [window.tabs.tabText(i) for i in range(window.tabs.count())] == list(TAB_NAMES)
    assert window.dockWidgetArea(window.agents_dock) == Qt.DockWidgetArea.LeftDockWidgetArea
    assert window.dockWidgetArea(window.launcher_dock) == Qt.DockWidgetArea.LeftDockWidgetArea
    shortcuts = {a.shortcut().toString() for a in window.actions()}
    assert {"Ctrl+R", "Ctrl+.", "Ctrl+O", "Ctrl+E", "F5", "Ctrl+1", "Ctrl+2", "Ctrl+3", "Ctrl+4"} <= shortcuts
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5000)
    qtbot.keyClick(window, Qt.Key.Key_2, Qt.KeyboardModifier.ControlModifier)
    assert window.tabs.currentIndex() == TAB_NAMES.index("Queue")
    window.tab_actions[3].trigger()
    assert window.tabs.currentIndex() == TAB_NAMES.index("Analysis")
    # Export with nothing exportable in view says where to go, and never raises.
    window.tabs.setCurrentIndex(TAB_NAMES.index("Live"))
    window.export_current()
    assert "Results or Analysis" in window.statusBar().currentMessage()
    assert not isinstance(window.results_view, QLabel)  # the results table is embedded
