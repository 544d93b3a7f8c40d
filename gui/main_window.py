"""The main window: agents and the run launcher docked on the left; Live, Queue, Results,
Analysis and Layers as tabs in the centre. Layout, agents and last choices persist in QSettings.

Finished jobs are fetched from their agent (``get_results``, paged) into the results
table and the analysis views (and their per-layer profiles into the Layers tab), so a run measured on the edge device and one on the cloud
GPU can be compared as soon as both are done.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence, QShowEvent
from PySide6.QtWidgets import (
    QDockWidget,
    QFrame,
    QLabel,
    QMainWindow,
    QScrollArea,
    QTabWidget,
    QWidget,
)

from core.errors import ProtocolError
from core.protocol.codes import MAX_RESULTS_PAGE
from core.protocol.events import JobEvent
from core.results import MEASUREMENT_COLUMNS, Measurement
from gui.agents import AgentConnection, AgentRegistry
from gui.agents_panel import AgentsPanel
from gui.launcher import LauncherPanel
from gui.live_view import LiveView
from gui.queue_view import QueueView
from gui.settings import (
    GEOMETRY_KEY,
    STATE_KEY,
    TAB_KEY,
    AgentSpec,
    default_local_socket,
    load_agents,
    load_bytes,
    load_int,
    open_settings,
)

logger = logging.getLogger(__name__)

TAB_LIVE, TAB_QUEUE, TAB_RESULTS, TAB_ANALYSIS, TAB_LAYERS = range(5)
TAB_NAMES = ("Live", "Queue", "Results", "Analysis", "Layers")
DEFAULT_SIZE = (1400, 900)


def _placeholder(text: str) -> QLabel:
    label = QLabel(text)
    label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    label.setWordWrap(True)
    return label


def _results_view() -> QWidget:
    try:
        from gui.results_view import ResultsView
    except ImportError as exc:
        logger.warning("The results view is not available: %s", exc)
        return _placeholder("The results table is not available in this build.")
    return ResultsView()


def _analysis_view() -> QWidget:
    try:
        from gui.analysis_view import AnalysisView
    except ImportError as exc:
        logger.warning("The analysis views are not available: %s", exc)
        return _placeholder("The analysis views are not available in this build.")
    return AnalysisView()


def _layers_view() -> QWidget:
    try:
        from gui.layers_view import LayersView
    except ImportError as exc:
        logger.warning("The layers view is not available: %s", exc)
        return _placeholder("The per-layer view is not available in this build.")
    return LayersView()


def parse_measurements(measurements: list[dict[str, Any]]) -> list[Measurement]:
    """Measurement dicts from get_results -> Measurements; a malformed one is skipped."""
    parsed = []
    for data in measurements:
        try:
            parsed.append(Measurement.from_dict(data))
        except (KeyError, TypeError, ValueError) as exc:
            logger.warning("Skipping a malformed measurement from an agent: %s", exc)
    return parsed


def measurements_frame(measurements: list[dict[str, Any]]) -> pd.DataFrame:
    """Measurement dicts from get_results -> the long schema, one row each."""
    rows = [m.to_row() for m in parse_measurements(measurements)]
    return pd.DataFrame.from_records(rows, columns=list(MEASUREMENT_COLUMNS))


class MainWindow(QMainWindow):
    def __init__(
        self,
        registry: AgentRegistry | None = None,
        *,
        restore: bool = True,
        local_socket: str | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("backbench")
        self.setObjectName("backbench-main")
        self.registry = registry or AgentRegistry(self)
        self._agent_runs: dict[str, dict[int, tuple[pd.DataFrame, dict[str, Any]]]] = {}

        self.agents_panel = AgentsPanel(self.registry)
        self.launcher = LauncherPanel(self.registry)
        self.live_view = LiveView(self.registry)
        self.queue_view = QueueView(self.registry)
        self.results_view = _results_view()
        self.analysis_view = _analysis_view()
        self.layers_view = _layers_view()

        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        for widget, name in zip(
            (self.live_view, self.queue_view, self.results_view, self.analysis_view, self.layers_view),
            TAB_NAMES,
            strict=True,
        ):
            self.tabs.addTab(widget, name)
        self.setCentralWidget(self.tabs)
        self.agents_dock = self._dock("Agents", "agents-dock", self.agents_panel)
        self.launcher_dock = self._dock("Run launcher", "launcher-dock", self.launcher)
        self.splitDockWidget(self.agents_dock, self.launcher_dock, Qt.Orientation.Vertical)
        self._layout_pending = True
        self._wire_views()
        self._build_actions()
        self.statusBar().showMessage("Ready.")
        self.resize(*DEFAULT_SIZE)
        if restore:
            self._restore()
        if registry is None:
            self._load_agents(local_socket)

    # -- construction ----------------------------------------------------------------------

    def _dock(self, title: str, name: str, widget: QWidget) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)  # saveState() needs names
        # Scrollable, so the panels never force a window taller than a laptop screen.
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(widget)
        scroll.setMinimumWidth(widget.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width())
        dock.setWidget(scroll)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QDockWidget.DockWidgetFeature.DockWidgetFloatable)  # fmt: skip
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dock)
        return dock

    def _wire_views(self) -> None:
        self.launcher.submitted.connect(self._on_submitted)
        self.queue_view.job_finished.connect(self._on_job_finished)
        results_signal = getattr(self.results_view, "model_selected", None)
        analysis_signal = getattr(self.analysis_view, "model_selected", None)
        if results_signal is not None and hasattr(self.analysis_view, "highlight_model"):
            results_signal.connect(self.analysis_view.highlight_model)
        if analysis_signal is not None and hasattr(self.results_view, "select_model"):
            analysis_signal.connect(self.results_view.select_model)
        selection = getattr(self.results_view, "selection_changed", None)
        if selection is not None and hasattr(self.analysis_view, "set_dataframe"):
            selection.connect(self.analysis_view.set_dataframe)
        profiles = getattr(self.results_view, "profiles_loaded", None)
        if profiles is not None and hasattr(self.layers_view, "set_profiles"):
            profiles.connect(self._on_profiles_loaded)
        if results_signal is not None and hasattr(self.layers_view, "show_model"):
            results_signal.connect(self.layers_view.show_model)
        changed = getattr(self.layers_view, "profiles_changed", None)
        if changed is not None and hasattr(self.analysis_view, "set_layer_profiles"):
            changed.connect(self.analysis_view.set_layer_profiles)
        for name in ("import_failed", "imported"):
            signal = getattr(self.results_view, name, None)
            if signal is not None:
                signal.connect(lambda text, n=name: self.statusBar().showMessage(
                    text if n == "import_failed" else f"Imported {text}.", 10_000))  # fmt: skip

    def _action(self, text: str, shortcut: str | QKeySequence, slot: Any, tip: str = "") -> QAction:
        action = QAction(text, self)
        action.setShortcut(QKeySequence(shortcut))
        action.setShortcutContext(Qt.ShortcutContext.ApplicationShortcut)
        if tip:
            action.setStatusTip(tip)
        action.triggered.connect(slot)
        self.addAction(action)
        return action

    def _build_actions(self) -> None:
        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        self.import_action = self._action("&Import results...", "Ctrl+O", self.import_results,
                                          "Open a results store, CSV or JSON file")  # fmt: skip
        self.export_action = self._action("&Export...", "Ctrl+E", self.export_current,
                                          "Export the table as CSV, or the current plot as PNG/SVG")  # fmt: skip
        file_menu.addAction(self.import_action)
        file_menu.addAction(self.export_action)
        file_menu.addSeparator()
        file_menu.addAction(self._action("&Quit", QKeySequence.StandardKey.Quit, self.close))
        run_menu = menu.addMenu("&Run")
        self.submit_action = self._action("&Submit run", "Ctrl+R", self.launcher.submit, "Queue the launcher's run")
        self.cancel_action = self._action("&Cancel job", "Ctrl+.", self.cancel_job,
                                          "Cancel the selected (or the running) job")  # fmt: skip
        self.refresh_action = self._action("&Refresh", "F5", self.refresh, "Ask the agents for jobs and devices")
        for action in (self.submit_action, self.cancel_action, self.refresh_action):
            run_menu.addAction(action)
        view_menu = menu.addMenu("&View")
        self.tab_actions = []
        for index, name in enumerate(TAB_NAMES):
            action = self._action(name, f"Ctrl+{index + 1}", lambda _c=False, i=index: self.tabs.setCurrentIndex(i))
            view_menu.addAction(action)
            self.tab_actions.append(action)
        view_menu.addSeparator()
        view_menu.addAction(self.agents_dock.toggleViewAction())
        view_menu.addAction(self.launcher_dock.toggleViewAction())
        view_menu.addAction(self._action("Reset &layout", "Ctrl+Shift+L", self.reset_layout))

    def _load_agents(self, local_socket: str | None) -> None:
        saved = load_agents(open_settings())
        for spec in saved:
            self.registry.add(spec)
        if local_socket:
            existing = next((c for c in self.registry.connections if c.spec.socket_path == local_socket), None)
            if existing is None:
                self.registry.add(AgentSpec(name=self.registry.unique_name("local"), socket_path=local_socket))
        elif not any(not c.spec.is_remote for c in self.registry.connections):
            self.registry.add(AgentSpec(name=self.registry.unique_name("local"), socket_path=default_local_socket()))

    # -- settings --------------------------------------------------------------------------

    def _restore(self) -> None:
        settings = open_settings()
        geometry = load_bytes(settings, GEOMETRY_KEY)
        if geometry is not None:
            self.restoreGeometry(geometry)
        state = load_bytes(settings, STATE_KEY)
        if state is not None and self.restoreState(state):
            self._layout_pending = False
        self.tabs.setCurrentIndex(min(max(0, load_int(settings, TAB_KEY)), self.tabs.count() - 1))

    def save_settings(self) -> None:
        settings = open_settings()
        settings.setValue(GEOMETRY_KEY, self.saveGeometry())
        settings.setValue(STATE_KEY, self.saveState())
        settings.setValue(TAB_KEY, self.tabs.currentIndex())
        settings.sync()

    def reset_layout(self) -> None:
        for dock in (self.agents_dock, self.launcher_dock):
            dock.setFloating(False)
            dock.show()
            self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dock)
        self.splitDockWidget(self.agents_dock, self.launcher_dock, Qt.Orientation.Vertical)
        self.resize(*DEFAULT_SIZE)
        self.resizeDocks([self.agents_dock, self.launcher_dock], [255, 560], Qt.Orientation.Vertical)
        self.resizeDocks([self.agents_dock], [380], Qt.Orientation.Horizontal)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self._layout_pending:  # dock sizes only take once the window has a size
            self._layout_pending = False
            self.resizeDocks([self.agents_dock, self.launcher_dock], [255, 560], Qt.Orientation.Vertical)
            self.resizeDocks([self.agents_dock], [380], Qt.Orientation.Horizontal)

    def closeEvent(self, event: QCloseEvent) -> None:
        self.save_settings()
        self.launcher.save_choices()
        self.registry.stop_all()  # ends SSH tunnels with the window
        super().closeEvent(event)

    # -- actions ---------------------------------------------------------------------------

    def import_results(self) -> None:
        chooser = getattr(self.results_view, "choose_file", None)
        if chooser is None:
            self.statusBar().showMessage("Importing needs the results view, which this build lacks.", 10_000)
            return
        self.tabs.setCurrentIndex(TAB_RESULTS)
        chooser()

    def export_current(self) -> None:
        current = self.tabs.currentWidget()
        for name in ("choose_export", "export_current", "export_dialog"):
            exporter = getattr(current, name, None)
            if callable(exporter):
                exporter()
                return
        self.statusBar().showMessage("Switch to the Results or Analysis tab to export a table or a plot.", 10_000)

    def cancel_job(self) -> None:
        if self.queue_view.selected_key() is None:
            running = [key for key, job in self.queue_view.jobs.items() if job.get("state") == "running"]
            if not running:
                self.statusBar().showMessage("No job is running; select one in the Queue tab to cancel it.", 10_000)
                return
            self.queue_view.select_job(*max(running, key=lambda k: k[1]))
        self.queue_view.cancel_selected()
        self.statusBar().showMessage(self.queue_view.status.text(), 10_000)

    def refresh(self) -> None:
        self.queue_view.refresh()
        for connection in self.registry.connections:
            if connection.is_connected:
                connection.refresh()
            elif connection.needs_start:  # not retrying by itself (a remote one that gave up)
                connection.start()
        self.statusBar().showMessage("Refreshing...", 3000)

    # -- jobs and results ------------------------------------------------------------------

    def _on_submitted(self, connection: AgentConnection, job: dict[str, Any]) -> None:
        job_id = job.get("job_id")
        if isinstance(job_id, int):
            self.queue_view.on_job_event(connection, JobEvent.QUEUED.value, {"job_id": job_id, "job": job})
        self.tabs.setCurrentIndex(TAB_LIVE)
        self.statusBar().showMessage(f"Job {job_id} queued on {connection.name}.", 10_000)

    def _on_job_finished(self, connection: AgentConnection, job_id: int, run_id: Any) -> None:
        if isinstance(run_id, int):
            self.fetch_run(connection, run_id)

    def fetch_run(self, connection: AgentConnection, run_id: int) -> None:
        """Page a run's measurements from its agent into the results and analysis views."""
        collected: list[dict[str, Any]] = []

        def page(result: Any, error: ProtocolError | None) -> None:
            if error is not None or not isinstance(result, dict):
                why = error.message if error is not None else "an unreadable reply"
                self.statusBar().showMessage(f"Could not fetch run {run_id} from {connection.name}: {why}", 10_000)
                return
            collected.extend(m for m in result.get("measurements") or [] if isinstance(m, dict))
            total = int(result.get("total") or 0)
            if len(collected) < total and result.get("measurements"):
                connection.client.request("get_results", {"run": run_id, "offset": len(collected),
                                                          "limit": MAX_RESULTS_PAGE}, page)  # fmt: skip
                return
            parsed = parse_measurements(collected)
            frame = pd.DataFrame.from_records([m.to_row() for m in parsed], columns=list(MEASUREMENT_COLUMNS))
            self._add_run(connection, run_id, frame, result.get("run") or {})
            adder = getattr(self.layers_view, "add_profiles", None)
            if callable(adder):
                adder(parsed, source=connection.name)

        connection.client.request("get_results", {"run": run_id, "limit": MAX_RESULTS_PAGE}, page)

    def _on_profiles_loaded(self, measurements: list[Measurement], source: str, append: bool) -> None:
        """A file's per-layer profiles: added to the Layers tab, or replacing what it held
        when the file replaced the table."""
        view = self.layers_view
        (view.add_profiles if append else view.set_profiles)(measurements, source)  # type: ignore[attr-defined]

    def _add_run(self, connection: AgentConnection, run_id: int, frame: pd.DataFrame, run: dict[str, Any]) -> None:
        info = {"id": run_id, "name": run.get("name"), "status": run.get("status"),
                "manifest": run.get("manifest") or {}, "spec": run.get("spec") or {}}  # fmt: skip
        self._agent_runs.setdefault(connection.name, {})[run_id] = (frame, info)
        self.statusBar().showMessage(f"Run {run_id} from {connection.name}: {len(frame)} measurement(s).", 10_000)
        self._show_agent_runs(connection.name, frame, info)

    def _show_agent_runs(self, agent: str, frame: pd.DataFrame, info: dict[str, Any]) -> None:
        """Add the run to the table; each agent is its own source, because run ids repeat
        across agents (a run's key is source#run_id)."""
        view = self.results_view
        adder = getattr(view, "add_dataframe", None)
        if callable(adder):
            adder(frame, source_label=agent, runs=[info])
        elif hasattr(view, "set_dataframe"):
            view.set_dataframe(frame, source_label=agent, runs=[info])
