"""The run launcher: what to measure, where, and when to stop.

Models come from the chosen agent's ``list_models`` (searchable, with the paper and quick
suites one click away); backends and devices are those the agent's ``list_devices``
reports, so a run is only offered where it can run. Submitting sends the spec with a
fresh ``client_request_id``; if the connection drops before the reply, pressing Submit
again with the same spec reuses that id, so the agent never queues the job twice.

Options left at their defaults are not sent (an agent fills them in), so an older agent
that lacks a newer option still takes a run that does not use it.

Mode accuracy swaps the timed loop's options for the accuracy section
(gui.launcher_accuracy): the dataset on the agent's host, one batch size, trained weights,
and the fp32 reference job, queued first unless unticked (gui.submission sends the jobs in
order). A field that blocks a submission is outlined and named in the status line.
"""

from __future__ import annotations

import fnmatch
import logging
from typing import Any

from PySide6.QtCore import QRegularExpression, QSize, Qt, Signal
from PySide6.QtGui import QRegularExpressionValidator
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from core.cli.run_options import default_device, option, run_defaults
from core.errors import ProtocolError
from core.results import RUNTIME_NAME, WORKER_STARTS, Mode, Precision
from gui.agents import AgentConnection, AgentRegistry
from gui.launcher_accuracy import AccuracyOptions, planned_specs
from gui.settings import load_choices, open_settings, save_choices
from gui.submission import SubmitSequence

logger = logging.getLogger(__name__)

BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)
SUITES = ("paper", "quick")
DEFAULTS = run_defaults()  # the defaults of `backbench run`, keyed by spec field
# Sent only when changed from the default (see the module docstring).
OPTIONAL_FIELDS: tuple[str, ...] = (
    "retry_disturbed", "disturbed_threshold", "max_mem_mb", "measure_timeout_s", "worker_start",
    "profile_layers",
)  # fmt: skip
THRESHOLD_MAX_CORES = 256.0  # within the option's bound; more is no machine's idle noise
FALLBACK_DEVICES = {DEFAULTS["backend"]: [default_device(DEFAULTS["backend"])]}


def _model_label(card: dict[str, Any]) -> str:
    parts = [card["name"]]
    params, flops = card.get("params"), card.get("flops")
    details = []
    if isinstance(params, (int, float)) and params > 0:
        details.append(f"{params / 1e6:.1f} M params")
    if isinstance(flops, (int, float)) and flops > 0:
        details.append(f"{flops / 1e9:.2f} GFLOP")
    if details:
        parts.append(f"({', '.join(details)})")
    return " ".join(parts)


def _row(*widgets: QWidget) -> QWidget:
    box = QWidget()
    layout = QHBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    for widget in widgets:
        layout.addWidget(widget, 1)
    return box


class _CompactList(QListWidget):
    """A list that asks for little height, and takes what the panel can spare."""

    def sizeHint(self) -> QSize:
        return QSize(240, 110)


class LauncherPanel(QWidget):
    submitted = Signal(object, dict)  # (AgentConnection, the job dict from the agent)

    def __init__(self, registry: AgentRegistry, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.registry = registry
        self._sequence = SubmitSequence()  # keeps request ids until the agent answers
        self._choices = load_choices(open_settings())
        self._devices: dict[str, list[str]] = dict(FALLBACK_DEVICES)
        self._sources: dict[str, str] = {}  # model name -> its card's source (torchvision, onnx...)

        self.agent_combo = QComboBox()
        self.agent_combo.currentIndexChanged.connect(lambda _i: self._agent_changed())
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search models, e.g. resnet* or mobile")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self._filter_models)
        self.model_list = _CompactList()
        self.model_list.setMinimumHeight(90)
        self.model_list.itemChanged.connect(lambda _item: self._update_summary())
        self.suite_buttons: dict[str, QPushButton] = {}
        suites = QHBoxLayout()
        for suite in SUITES:
            button = QPushButton(f"{suite.capitalize()} suite")
            button.setToolTip(f"Check the models of the {suite} suite")
            button.clicked.connect(lambda _checked=False, s=suite: self.select_suite(s))
            self.suite_buttons[suite] = button
            suites.addWidget(button)
        clear = QPushButton("Clear")
        clear.clicked.connect(lambda: self.set_checked_models([]))
        suites.addWidget(clear)

        self.backend_combo = QComboBox()
        self.backend_combo.currentIndexChanged.connect(lambda _i: self._fill_devices())
        self.device_combo = QComboBox()
        self.device_combo.currentIndexChanged.connect(lambda _i: self._platform_changed())
        self.precision_combo = QComboBox()
        self.precision_combo.addItems([p.value for p in Precision])
        self.precision_combo.setCurrentText(DEFAULTS["precision"])
        self.precision_combo.currentIndexChanged.connect(lambda _i: self._platform_changed())
        self.mode_combo = QComboBox()
        self.mode_combo.addItems([m.value for m in Mode])
        self.mode_combo.setCurrentText(DEFAULTS["mode"])
        self.mode_combo.setToolTip(
            "latency: one synchronous request; throughput: async streams; accuracy: top-1/top-5 "
            "over a dataset on the agent's host"
        )
        self.mode_combo.currentIndexChanged.connect(lambda _i: self._mode_changed())
        self.batch_boxes: dict[int, QCheckBox] = {}
        batch_grid = QGridLayout()
        batch_grid.setContentsMargins(0, 0, 0, 0)
        for i, size in enumerate(BATCH_SIZES):
            box = QCheckBox(str(size))
            box.setChecked(size in DEFAULTS["batch_sizes"])
            box.toggled.connect(lambda _on: self._update_summary())
            self.batch_boxes[size] = box
            batch_grid.addWidget(box, i // 4, i % 4)
        batch_widget = QWidget()
        batch_widget.setLayout(batch_grid)

        self.target_ci = QDoubleSpinBox()
        self.target_ci.setRange(0.1, 50.0)
        self.target_ci.setDecimals(1)
        self.target_ci.setSuffix(" %")
        self.target_ci.setValue(DEFAULTS["stopping.target_ci"] * 100.0)
        self.target_ci.setToolTip("Stop once the 95% CI half-width of the median is within this")
        self.min_iters = QSpinBox()
        self.min_iters.setRange(1, 100_000)
        self.min_iters.setValue(DEFAULTS["stopping.min_iters"])
        self.max_time = QDoubleSpinBox()
        self.max_time.setRange(0.1, 3600.0)
        self.max_time.setDecimals(1)
        self.max_time.setSuffix(" s")
        self.max_time.setValue(DEFAULTS["stopping.max_time_s"])
        self.max_time.setToolTip("At most this long in the timed loop, per case")
        self.run_name = QLineEdit()
        self.run_name.setPlaceholderText("optional")
        # A worker runtime configured on the agent's host (its agent.toml), by name only:
        # the validator takes nothing that could be a path.
        self.runtime = QLineEdit()
        self.runtime.setPlaceholderText("the agent's own interpreter")
        self.runtime.setValidator(QRegularExpressionValidator(QRegularExpression(RUNTIME_NAME.pattern)))
        self.runtime.setToolTip(option("runtime").help.replace("%(default)s", "none"))
        self._build_condition_options()
        self.profile_layers = QCheckBox("Profile layers")
        self.profile_layers.setToolTip(
            "After each case's timed loop, time it layer by layer with the framework's own "
            "profiler, in a pass of its own (the headline figures never carry it); the Layers "
            "tab shows the result"
        )
        self.profile_layers.toggled.connect(lambda _on: self._update_summary())
        self.accuracy = AccuracyOptions()
        self.accuracy.changed.connect(self._update_summary)

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Backend, device:", _row(self.backend_combo, self.device_combo))
        form.addRow("Precision, mode:", _row(self.precision_combo, self.mode_combo))
        form.addRow("Batch sizes:", batch_widget)
        form.addRow("Target CI:", self.target_ci)
        form.addRow("Min iterations:", self.min_iters)
        form.addRow("Max time, watchdog:", _row(self.max_time, self.measure_timeout))
        disturbed_row = _row(self.disturbed_threshold, self.retry_disturbed)
        form.addRow("Disturbed above:", disturbed_row)
        form.addRow("Worker, memory:", _row(self.worker_start, self.max_mem))
        form.addRow("Per layer:", self.profile_layers)
        # The timed loop's options, which an accuracy run does not use.
        self._timing_rows = (batch_widget, self.target_ci, self.min_iters, disturbed_row, self.profile_layers)
        self._form = form
        form.addRow("Worker runtime:", self.runtime)
        form.addRow("Run name:", self.run_name)

        models_box = QGroupBox("Models")
        models_layout = QVBoxLayout(models_box)
        models_layout.addWidget(self.search)
        models_layout.addLayout(suites)
        models_layout.addWidget(self.model_list, 1)

        self.summary = QLabel()
        self.summary.setWordWrap(True)  # an accuracy run's summary names its reference cases too
        self.submit_button = QPushButton("Submit run")
        self.submit_button.setToolTip("Queue this run on the chosen agent (Ctrl+R)")
        self.submit_button.clicked.connect(self.submit)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        agent_row = QHBoxLayout()
        agent_row.addWidget(QLabel("Agent:"))
        agent_row.addWidget(self.agent_combo, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(agent_row)
        layout.addWidget(models_box, 1)
        layout.addLayout(form)
        layout.addWidget(self.accuracy)
        layout.addWidget(self.summary)
        layout.addWidget(self.submit_button)
        layout.addWidget(self.status)

        self._restore_choices()
        registry.added.connect(self._on_agent_added)
        registry.removed.connect(self._on_agent_removed)
        for connection in registry.connections:
            self._on_agent_added(connection)
        self._mode_changed()

    def _build_condition_options(self) -> None:
        """Disturbed threshold and retries, worker start and memory bound, within the
        bounds the agent checks (core/cli/run_options.py)."""
        threshold = option("disturbed_threshold")
        self.disturbed_threshold = QDoubleSpinBox()
        self.disturbed_threshold.setDecimals(2)
        self.disturbed_threshold.setRange(0.01, min(THRESHOLD_MAX_CORES, float(threshold.maximum or THRESHOLD_MAX_CORES)))
        self.disturbed_threshold.setSingleStep(0.05)
        self.disturbed_threshold.setSuffix(" cores")
        self.disturbed_threshold.setValue(float(DEFAULTS["disturbed_threshold"]))
        self.disturbed_threshold.setToolTip(
            "A case is marked disturbed when other processes used more CPU than this, in "
            "cores, while it warmed up and was timed"
        )
        retry = option("retry_disturbed")
        self.retry_disturbed = QSpinBox()
        self.retry_disturbed.setRange(int(retry.minimum or 0), int(retry.maximum or 0))
        self.retry_disturbed.setPrefix("retry ")
        self.retry_disturbed.setSuffix("x")
        self.retry_disturbed.setSpecialValueText("no retry")
        self.retry_disturbed.setValue(int(DEFAULTS["retry_disturbed"]))
        self.retry_disturbed.setToolTip("Measure a disturbed case again, up to this many times")
        self.worker_start = QComboBox()
        self.worker_start.addItems(list(WORKER_STARTS))
        self.worker_start.setCurrentText(str(DEFAULTS["worker_start"]))
        self.worker_start.setToolTip(option("worker_start").help.replace("%(default)s", str(DEFAULTS["worker_start"])))
        memory = option("max_mem_mb")
        self.max_mem = QSpinBox()
        self.max_mem.setRange(0, min(int(memory.maximum or 0), 2**31 - 1))
        self.max_mem.setSingleStep(256)
        self.max_mem.setSuffix(" MB")
        self.max_mem.setSpecialValueText("no memory limit")
        self.max_mem.setValue(int(DEFAULTS["max_mem_mb"] or 0))
        self.max_mem.setToolTip(memory.help[:1].upper() + memory.help[1:])
        timeout = option("measure_timeout_s")
        self.measure_timeout = QDoubleSpinBox()
        self.measure_timeout.setRange(0.0, float(timeout.maximum or 0))
        self.measure_timeout.setDecimals(0)
        self.measure_timeout.setSingleStep(60.0)
        self.measure_timeout.setSuffix(" s")
        self.measure_timeout.setSpecialValueText("default watchdog")
        self.measure_timeout.setValue(float(DEFAULTS["measure_timeout_s"] or 0))
        self.measure_timeout.setToolTip(timeout.help[:1].upper() + timeout.help[1:])

    # -- agents ------------------------------------------------------------------------------

    def current_agent(self) -> AgentConnection | None:
        name = self.agent_combo.currentData()
        return self.registry.get(name) if isinstance(name, str) else None

    def _on_agent_added(self, connection: AgentConnection) -> None:
        self.agent_combo.addItem(connection.name, connection.name)
        connection.changed.connect(lambda c=connection: self._on_agent_changed(c))
        if connection.name == self._choices.get("agent"):
            self.agent_combo.setCurrentIndex(self.agent_combo.count() - 1)

    def _on_agent_removed(self, connection: AgentConnection) -> None:
        index = self.agent_combo.findData(connection.name)
        if index >= 0:
            self.agent_combo.removeItem(index)

    def _on_agent_changed(self, connection: AgentConnection) -> None:
        if connection is self.current_agent():
            self._agent_changed()

    def _agent_changed(self) -> None:
        connection = self.current_agent()
        self._fill_models(connection.models if connection else [])
        self._fill_backends(connection.devices if connection and connection.devices else FALLBACK_DEVICES)
        self.submit_button.setEnabled(connection is not None)

    # -- models ------------------------------------------------------------------------------

    def _fill_models(self, cards: list[dict[str, Any]]) -> None:
        names = [c["name"] for c in cards]
        self._sources = {c["name"]: str(c["source"]) for c in cards if isinstance(c.get("source"), str)}
        shown = [self.model_list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.model_list.count())]
        if names == shown:
            return
        checked = set(self.checked_models()) or set(self._choices.get("models") or [])
        self.model_list.blockSignals(True)
        self.model_list.clear()
        for card in cards:
            item = QListWidgetItem(_model_label(card))
            item.setData(Qt.ItemDataRole.UserRole, card["name"])
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if card["name"] in checked else Qt.CheckState.Unchecked)
            item.setToolTip(str(card.get("notes") or card.get("family") or card["name"]))
            self.model_list.addItem(item)
        self.model_list.blockSignals(False)
        self._filter_models(self.search.text())
        self._update_summary()

    def _filter_models(self, text: str) -> None:
        pattern = text.strip().lower()
        glob = any(ch in pattern for ch in "*?[")
        for i in range(self.model_list.count()):
            item = self.model_list.item(i)
            name = str(item.data(Qt.ItemDataRole.UserRole)).lower()
            match = not pattern or (fnmatch.fnmatch(name, pattern) if glob else pattern in name)
            item.setHidden(not match)

    def checked_models(self) -> list[str]:
        return [
            str(self.model_list.item(i).data(Qt.ItemDataRole.UserRole))
            for i in range(self.model_list.count())
            if self.model_list.item(i).checkState() == Qt.CheckState.Checked
        ]

    def set_checked_models(self, names: list[str]) -> None:
        wanted = set(names)
        self.model_list.blockSignals(True)
        for i in range(self.model_list.count()):
            item = self.model_list.item(i)
            on = item.data(Qt.ItemDataRole.UserRole) in wanted
            item.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)
        self.model_list.blockSignals(False)
        self._update_summary()

    def select_suite(self, suite: str) -> None:
        connection = self.current_agent()
        if connection is None or not connection.is_connected:
            self._say("Connect to an agent first: the suites come from its model list.", error=True)
            return

        def done(result: Any, error: ProtocolError | None) -> None:
            if error is not None:
                self._say(f"Could not load the {suite} suite: {error.message}", error=True)
                return
            names = [m.get("name") for m in (result or {}).get("models", []) if isinstance(m, dict)]
            self.set_checked_models([n for n in names if isinstance(n, str)])
            self._say(f"Selected the {suite} suite ({len(names)} models).")

        connection.client.request("list_models", {"suite": suite}, done)

    # -- backends and devices ----------------------------------------------------------------

    def _fill_backends(self, devices: dict[str, list[str]]) -> None:
        self._devices = devices
        current = self.backend_combo.currentText() or self._choices.get("backend", DEFAULTS["backend"])
        names = list(devices)
        if [self.backend_combo.itemText(i) for i in range(self.backend_combo.count())] != names:
            self.backend_combo.blockSignals(True)
            self.backend_combo.clear()
            self.backend_combo.addItems(names)
            self.backend_combo.blockSignals(False)
        index = self.backend_combo.findText(current)
        self.backend_combo.setCurrentIndex(max(0, index))
        self._fill_devices()

    def _fill_devices(self) -> None:
        devices = self._devices.get(self.backend_combo.currentText(), [])
        current = self.device_combo.currentText() or self._choices.get("device", "")
        self.device_combo.clear()
        self.device_combo.addItems(devices)
        index = self.device_combo.findText(current)
        self.device_combo.setCurrentIndex(max(0, index))

    # -- the spec ----------------------------------------------------------------------------

    def batch_sizes(self) -> list[int]:
        return [size for size, box in self.batch_boxes.items() if box.isChecked()]

    def is_accuracy(self) -> bool:
        return self.mode_combo.currentText() == Mode.ACCURACY.value

    def _platform(self) -> tuple[str, str, str]:
        backend = self.backend_combo.currentText() or DEFAULTS["backend"]
        return backend, self.device_combo.currentText() or default_device(backend), self.precision_combo.currentText()

    def _platform_changed(self) -> None:
        self.accuracy.set_platform(*self._platform())
        self._update_summary()

    def _mode_changed(self) -> None:
        accuracy = self.is_accuracy()
        for widget in self._timing_rows:
            self._form.setRowVisible(widget, not accuracy)
        self.max_time.setEnabled(not accuracy)  # the watchdog beside it still applies
        self.accuracy.setVisible(accuracy)
        self.submit_button.setText("Submit accuracy run" if accuracy else "Submit run")
        self._update_summary()

    def spec_dict(self) -> dict[str, Any]:
        """The run spec as the protocol's submit takes it (the asked job; an accuracy run
        may queue its reference first: ``planned_specs``)."""
        return self._spec(accuracy=self.is_accuracy())

    def _spec(self, *, accuracy: bool) -> dict[str, Any]:
        backend, device, precision = self._platform()
        spec: dict[str, Any] = {
            "models": self.checked_models(),
            "backend": backend,
            "device": device,
            "precision": precision,
            "batch_sizes": self.batch_sizes(),
            "mode": self.mode_combo.currentText(),
            "stopping": {
                "target_ci": round(self.target_ci.value() / 100.0, 6),
                "min_iters": self.min_iters.value(),
                "max_time_s": self.max_time.value(),
            },
        }
        chosen = {
            "retry_disturbed": self.retry_disturbed.value(),
            "disturbed_threshold": round(self.disturbed_threshold.value(), 6),
            "max_mem_mb": self.max_mem.value() or None,
            "measure_timeout_s": self.measure_timeout.value() or None,
            "worker_start": self.worker_start.currentText(),
            "profile_layers": self.profile_layers.isChecked(),
        }
        if accuracy:
            # No timed loop: its stopping rule and the disturbed checks are the agent's defaults.
            del spec["stopping"]
            chosen.pop("retry_disturbed")
            chosen.pop("disturbed_threshold")
            chosen.pop("profile_layers")  # no timed loop to profile after
            spec["batch_sizes"] = [self.accuracy.batch.value()]
            weights = self.accuracy.weights(spec["models"])
            if weights:
                spec["weights"] = weights
            spec["accuracy"] = self.accuracy.accuracy_dict()
        for field in OPTIONAL_FIELDS:
            if field in chosen and chosen[field] != DEFAULTS[field]:
                spec[field] = chosen[field]
        runtime = self.runtime.text().strip()
        if runtime:
            spec["runtime"] = runtime
        name = self.run_name.text().strip()
        if name:
            spec["name"] = name
        return spec

    def planned_specs(self) -> list[tuple[str, dict[str, Any]]]:
        """(label, spec) of each job a Submit queues, in order."""
        spec = self.spec_dict()
        if not self.is_accuracy():
            return [("run", spec)]
        return planned_specs(spec, self._sources, self.accuracy.reference_first.isChecked())

    def _update_summary(self) -> None:
        models = len(self.checked_models())
        if self.is_accuracy():
            self.accuracy.set_models(self.checked_models(), self._sources)
            plan = self.planned_specs()
            first = sum(len(s["models"]) for _label, s in plan[:-1])
            extra = f", after {first} reference case(s)" if first else ""
            self.summary.setText(f"{models} model(s) at batch {self.accuracy.batch.value()} = {models} "
                                 f"accuracy case(s){extra}")
            return
        sizes = len(self.batch_sizes())
        profiled = ", each profiled layer by layer" if self.profile_layers.isChecked() else ""
        self.summary.setText(f"{models} model(s) x {sizes} batch size(s) = {models * sizes} case(s){profiled}")

    def _problem(self, spec: dict[str, Any]) -> tuple[str, QWidget | None] | None:
        """Why ``spec`` cannot be submitted, and the field to mark; None when it can."""
        if not spec["models"]:
            return "Choose at least one model (or a suite).", self.model_list
        if not spec["batch_sizes"]:
            return "Choose at least one batch size.", None
        if not self.is_accuracy():
            return None
        connection = self.current_agent()
        return self.accuracy.problem(
            spec, self.planned_specs(), connection.name if connection else "The agent",
            connection.devices if connection is not None else {},
        )  # fmt: skip

    def submit(self) -> None:
        connection = self.current_agent()
        if connection is None or not connection.is_connected:
            self._say("No connected agent to run on. " + (connection.status_text if connection else ""), error=True)
            return
        plan = self.planned_specs()
        problem = self._problem(plan[-1][1])
        if problem is not None:
            text, widget = problem
            if widget is not None:
                self.accuracy.mark(widget)
            self._say(text, error=True)
            return
        self._save_choices(connection)
        self.submit_button.setEnabled(False)
        cases = sum(len(spec["models"]) * len(spec["batch_sizes"]) for _label, spec in plan)
        self._say(f"Submitting {cases} case(s) to {connection.name}...")

        def done(text: str, error: bool) -> None:
            self.submit_button.setEnabled(True)
            self._say(text, error=error)

        self._sequence.start(connection, plan, lambda job: self.submitted.emit(connection, job), done)

    def _say(self, text: str, error: bool = False) -> None:
        self.status.setStyleSheet("color: #b00020;" if error else "")
        self.status.setText(text)

    # -- remembered choices ------------------------------------------------------------------

    def _save_choices(self, connection: AgentConnection | None) -> None:
        # The timed options as the widgets hold them, whatever the mode, and the accuracy ones.
        spec = {**self._spec(accuracy=False), **self.accuracy.choices()}
        if not self.model_list.count():  # no agent listed models: keep the last choice
            spec["models"] = list(self._choices.get("models") or [])
        self._choices = {**spec, "agent": connection.name if connection else self._choices.get("agent")}
        self._choices.pop("name", None)  # a run name is for one run
        save_choices(open_settings(), self._choices)

    def save_choices(self) -> None:
        """Remember the current choices (the window calls this when it closes)."""
        self._save_choices(self.current_agent())

    def _restore_choices(self) -> None:
        c = self._choices
        sizes = c.get("batch_sizes")
        if isinstance(sizes, list) and sizes:
            for size, box in self.batch_boxes.items():
                box.setChecked(size in sizes)
        for combo, key in ((self.precision_combo, "precision"), (self.mode_combo, "mode")):
            index = combo.findText(str(c.get(key, "")))
            if index >= 0:
                combo.setCurrentIndex(index)
        stopping = c.get("stopping") if isinstance(c.get("stopping"), dict) else {}
        for box, key, scale in ((self.target_ci, "target_ci", 100.0), (self.min_iters, "min_iters", 1),
                                (self.max_time, "max_time_s", 1.0)):  # fmt: skip
            value = stopping.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                box.setValue(type(box.value())(value * scale))
        for box, key in ((self.retry_disturbed, "retry_disturbed"), (self.disturbed_threshold, "disturbed_threshold"),
                         (self.max_mem, "max_mem_mb"), (self.measure_timeout, "measure_timeout_s")):  # fmt: skip
            value = c.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                box.setValue(type(box.value())(value))
        if isinstance(c.get("profile_layers"), bool):
            self.profile_layers.setChecked(c["profile_layers"])
        if c.get("worker_start") in WORKER_STARTS:
            self.worker_start.setCurrentText(str(c["worker_start"]))
        runtime = c.get("runtime")
        if isinstance(runtime, str) and RUNTIME_NAME.fullmatch(runtime):
            self.runtime.setText(runtime)
        self.accuracy.restore(c)
