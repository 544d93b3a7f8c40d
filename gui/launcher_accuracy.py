"""The launcher's accuracy section: the dataset on the agent's host, how its images are
read, the batch size, trained weights per model, and the fp32 reference job.

An accuracy run's agreement figures (top-1 agreement, max |Δ logit|) compare its logits
with those of the model's reference platform on the same images; the agent has them only
if that platform's accuracy job on the same dataset and options ran there before. So,
unless told not to, the launcher queues the reference job first (the agent's queue runs
jobs in order): ``planned_specs`` turns the asked spec into that list.

The dataset and weights are paths on the agent's host, not here: plain text fields, no
file dialog. The agent reads datasets only inside its ``--data-dir`` and weights only
from its uploads or ``--model-dir``, and says so when a path is elsewhere.
"""

from __future__ import annotations

import logging
from pathlib import PurePosixPath
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from core.cli.run_options import option
from core.results import ACCURACY_LAYOUTS, accuracy_reference

logger = logging.getLogger(__name__)

AUTO_LAYOUT = "auto"
LAYOUT_TIPS = {
    AUTO_LAYOUT: "the agent detects the layout from the folder",
    "imagefolder": "one sub-folder of images per class",
    "imagenet-val": "the ILSVRC2012 validation images in class folders named by wnid (n01440764, ...)",
    "cifar10": "the CIFAR-10 python batches (data_batch_*, test_batch)",
}
DEFAULT_BATCH = 8
MAX_LIMIT = 10_000_000
MAX_CLASSES = 100_000
MAX_SIZE_PX = 4096
MAX_SEED = 2**31 - 1
ERROR_BORDER = "border: 1px solid #b00020;"
DATASET_PLACEHOLDER = "/srv/data/imagenet-val (inside the agent's --data-dir)"
WEIGHTS_PLACEHOLDER = "/srv/models/{model}.pth (the agent's --model-dir or uploads)"
# A model card's source -> whether the model file carries its own weights.
OWN_WEIGHTS_SOURCES = frozenset({"onnx", "openvino-ir", "torchscript"})
_SUFFIX_SOURCES = {".onnx": "onnx", ".xml": "openvino-ir", ".pt": "torchscript"}

Platform = tuple[str, str, str]  # backend, device, precision


def model_source(model: str, card_source: str | None = None) -> str:
    """A model's source as its card names it (torchvision, onnx, openvino-ir,
    torchscript); without a card, guessed from a file name's suffix."""
    if card_source:
        return card_source
    return _SUFFIX_SOURCES.get(PurePosixPath(model).suffix.lower(), "torchvision")


def needs_weights(model: str, card_source: str | None = None) -> bool:
    """A zoo model is scored with the weights it is given; a model file has its own."""
    return model_source(model, card_source) not in OWN_WEIGHTS_SOURCES


def reference_platform(model: str, card_source: str | None = None) -> Platform:
    """The platform a model's accuracy elsewhere is compared with: its own framework at
    fp32 on the CPU (core.results.accuracy_reference, as the agent decides)."""
    backend, device, precision = accuracy_reference(model_source(model, card_source))
    return (backend.value, device, precision.value)


def platform_text(platform: Platform) -> str:
    return "/".join(platform)


def planned_specs(
    spec: dict[str, Any], sources: dict[str, str], reference_first: bool
) -> list[tuple[str, dict[str, Any]]]:
    """The jobs to queue for an accuracy ``spec``, in order, each with a label: one
    reference job per reference platform that differs from the asked one (same models,
    weights, dataset and options; that platform's backend, device and precision), then
    the asked job. The reference runs on the agent's own interpreter: a named worker
    runtime (an NCS2's OpenVINO 2022.3) would lack the reference framework."""
    asked: Platform = (spec["backend"], spec["device"], spec["precision"])
    groups: dict[Platform, list[str]] = {}
    for model in spec["models"]:
        groups.setdefault(reference_platform(model, sources.get(model)), []).append(model)
    plan: list[tuple[str, dict[str, Any]]] = []
    if reference_first:
        for platform, models in groups.items():
            if platform == asked:
                continue
            reference = {k: v for k, v in spec.items() if k not in ("runtime", "name")}
            reference.update(models=models, backend=platform[0], device=platform[1], precision=platform[2])
            weights = {m: p for m, p in (spec.get("weights") or {}).items() if m in models}
            if weights:
                reference["weights"] = weights
            else:
                reference.pop("weights", None)
            if spec.get("name"):
                reference["name"] = f"{spec['name']} (reference {platform_text(platform)})"
            plan.append((f"reference {platform_text(platform)}", reference))
    plan.append(("accuracy", spec))
    return plan


def _spin(low: int, high: int, value: int, special: str = "", suffix: str = "") -> QSpinBox:
    box = QSpinBox()
    box.setRange(low, high)
    box.setValue(value)
    if special:
        box.setSpecialValueText(special)
    if suffix:
        box.setSuffix(suffix)
    return box


class AccuracyOptions(QGroupBox):
    """The accuracy section of the launcher (shown in accuracy mode)."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Accuracy", parent)
        self._weights: dict[str, str] = {}  # every path typed, kept when a model is unchecked
        self._sources: dict[str, str] = {}
        self._models: list[str] = []
        self._platform: Platform = ("", "", "")

        self.dataset = QLineEdit()
        self.dataset.setPlaceholderText(DATASET_PLACEHOLDER)
        self.dataset.setToolTip(
            "A dataset folder on the agent's host, absolute or relative to its --data-dir: "
            "the agent reads datasets only from there"
        )
        self.dataset.textChanged.connect(lambda _t: self._clear_mark(self.dataset))
        self.layout_combo = QComboBox()
        for name in (AUTO_LAYOUT, *ACCURACY_LAYOUTS):
            self.layout_combo.addItem(name)
            self.layout_combo.setItemData(self.layout_combo.count() - 1, LAYOUT_TIPS.get(name, name),
                                          Qt.ItemDataRole.ToolTipRole)  # fmt: skip
        self.layout_combo.setToolTip("How the dataset folder is laid out")
        self.limit = _spin(0, MAX_LIMIT, 0, "all images", " images")
        self.limit.setSingleStep(1000)
        self.limit.setToolTip("Evaluate this many images, a fixed subset drawn with the seed; 0: all")
        self.seed = _spin(0, MAX_SEED, 0)
        self.seed.setToolTip("Draws the subset when the images are limited (the same seed, the same images)")
        self.num_classes = _spin(0, MAX_CLASSES, 0, "the model's")
        self.num_classes.setToolTip("Build the model with this many classes (a fine-tuned state dict)")
        self.size = _spin(0, MAX_SIZE_PX, 0, "the weights' own", " px")
        self.size.setToolTip("The square crop fed to the model; by default the weights' own transform")
        batch_max = int(option("batch_sizes").maximum or 65_536)
        self.batch = _spin(1, batch_max, DEFAULT_BATCH)
        self.batch.setToolTip("An accuracy run feeds its images in one batch size")
        for box in (self.limit, self.seed, self.num_classes, self.size, self.batch):
            box.valueChanged.connect(lambda _v: self.changed.emit())

        self.weights_table = QTableWidget(0, 2)
        self.weights_table.setHorizontalHeaderLabels(["Model", "Trained weights on the agent's host"])
        self.weights_table.verticalHeader().setVisible(False)
        self.weights_table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        header = self.weights_table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.weights_table.setToolTip(
            "A zoo model is scored with trained weights (a torchvision state dict) at a path the "
            "agent may read: its uploads or --model-dir. Model files carry their own."
        )
        self.weights_table.setMinimumHeight(70)
        self.weights_table.setMaximumHeight(130)
        self.weights_table.itemChanged.connect(self._on_weights_edited)

        self.reference_first = QCheckBox("Evaluate the fp32 reference first")
        self.reference_first.setChecked(True)
        self.reference_first.setToolTip(
            "Agreement with the reference platform (torch/cpu/fp32 for a zoo model, "
            "onnxruntime/cpu/fp32 for .onnx, openvino/CPU/fp32 for .xml) needs that "
            "platform's accuracy on the same images: queue its job first"
        )
        self.reference_first.toggled.connect(lambda _on: (self._update_note(), self.changed.emit()))
        self.reference_note = QLabel()
        self.reference_note.setWordWrap(True)
        self.reference_note.setStyleSheet("color: #555;")

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Dataset:", self.dataset)
        form.addRow("Layout:", self.layout_combo)
        form.addRow("Images, seed:", self._pair(self.limit, self.seed))
        form.addRow("Classes, crop:", self._pair(self.num_classes, self.size))
        form.addRow("Batch size:", self.batch)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(form)
        layout.addWidget(QLabel("Weights:"))
        layout.addWidget(self.weights_table)
        layout.addWidget(self.reference_first)
        layout.addWidget(self.reference_note)

    @staticmethod
    def _pair(first: QWidget, second: QWidget) -> QWidget:
        box = QWidget()
        layout = QHBoxLayout(box)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(first, 1)
        layout.addWidget(second, 1)
        return box

    # -- state from the launcher -------------------------------------------------------------

    def set_models(self, models: list[str], sources: dict[str, str]) -> None:
        """The checked models (and their cards' sources): the weights table follows them."""
        self._sources = dict(sources)
        self._models = list(models)
        wanted = [m for m in models if needs_weights(m, sources.get(m))]
        shown = [self.weights_table.item(r, 0).text() for r in range(self.weights_table.rowCount())]
        if wanted == shown:
            self._update_note()
            return
        self.weights_table.blockSignals(True)
        self.weights_table.setRowCount(len(wanted))
        for row, model in enumerate(wanted):
            name = QTableWidgetItem(model)
            name.setFlags(Qt.ItemFlag.ItemIsEnabled)
            self.weights_table.setItem(row, 0, name)
            path = QTableWidgetItem(self._weights.get(model, ""))
            path.setData(Qt.ItemDataRole.UserRole, model)
            path.setToolTip(WEIGHTS_PLACEHOLDER.format(model=model))
            self.weights_table.setItem(row, 1, path)
        self.weights_table.blockSignals(False)
        self._update_note()

    def set_platform(self, backend: str, device: str, precision: str) -> None:
        self._platform = (backend, device, precision)
        self._update_note()

    def _update_note(self) -> None:
        references = sorted({reference_platform(m, self._sources.get(m)) for m in self._models})
        others = [p for p in references if p != self._platform]
        if not references:
            text = "The reference is each model's own framework at fp32 on the CPU."
        elif not others:
            text = f"{platform_text(self._platform)} is the reference platform: nothing to queue first."
        elif self.reference_first.isChecked():
            text = f"Queued first: the reference job on {', '.join(platform_text(p) for p in others)}."
        else:
            text = ("No agreement figures unless the reference "
                    f"({', '.join(platform_text(p) for p in others)}) ran on these images before.")  # fmt: skip
        self.reference_note.setText(text)

    def _on_weights_edited(self, item: QTableWidgetItem) -> None:
        model = item.data(Qt.ItemDataRole.UserRole)
        if isinstance(model, str):
            self._weights[model] = item.text().strip()
            self._clear_mark(self.weights_table)

    # -- what is sent ------------------------------------------------------------------------

    def set_weights_path(self, model: str, path: str) -> None:
        """Type ``path`` into ``model``'s row (what a user does by editing the cell)."""
        self._weights[model] = path.strip()
        for row in range(self.weights_table.rowCount()):
            item = self.weights_table.item(row, 1)
            if item is not None and item.data(Qt.ItemDataRole.UserRole) == model:
                item.setText(path)

    def weights(self, models: list[str]) -> dict[str, str]:
        """Trained weights of ``models``, the ones given."""
        return {m: self._weights[m] for m in models if self._weights.get(m)}

    def missing_weights(self, models: list[str]) -> list[str]:
        return [m for m in models if needs_weights(m, self._sources.get(m)) and not self._weights.get(m)]

    def accuracy_dict(self) -> dict[str, Any]:
        """The spec's ``accuracy`` object: the dataset and seed always, the rest where set."""
        acc: dict[str, Any] = {"dataset": self.dataset.text().strip()}
        layout = self.layout_combo.currentText()
        if layout != AUTO_LAYOUT:
            acc["layout"] = layout
        for key, box in (("limit", self.limit), ("num_classes", self.num_classes), ("size", self.size)):
            if box.value():
                acc[key] = box.value()
        acc["seed"] = self.seed.value()
        return acc

    def problem(self, spec: dict[str, Any], plan: list[tuple[str, dict[str, Any]]], agent: str,
                devices: dict[str, list[str]]) -> tuple[str, QWidget] | None:  # fmt: skip
        """Why the accuracy ``spec`` (queued as ``plan``) cannot be submitted to ``agent``,
        which offers ``devices`` (empty: not known), and the field to mark; None if it can."""
        if not spec["accuracy"]["dataset"]:
            return ("Give the dataset: a folder on the agent's host, inside its --data-dir "
                    "(e.g. /srv/data/imagenet-val).", self.dataset)  # fmt: skip
        missing = self.missing_weights(spec["models"])
        if missing:
            return (f"{', '.join(missing)} would be scored with random weights: give trained weights "
                    "(a path on the agent's host, in its uploads or --model-dir) in the Weights table.",
                    self.weights_table)  # fmt: skip
        for label, planned in plan[:-1]:
            if devices and planned["device"] not in devices.get(planned["backend"], []):
                return (f"{agent} offers no {planned['backend']} {planned['device']}, so it cannot run "
                        f"the {label}: untick '{self.reference_first.text()}' to measure without "
                        "agreement figures.", self.reference_first)  # fmt: skip
        return None

    def mark(self, widget: QWidget) -> None:
        """Outline a field the launcher refused (cleared when it is edited)."""
        widget.setStyleSheet(ERROR_BORDER)

    @staticmethod
    def _clear_mark(widget: QWidget) -> None:
        if widget.styleSheet():
            widget.setStyleSheet("")

    # -- remembered choices ------------------------------------------------------------------

    def choices(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy_dict(), "accuracy_batch": self.batch.value(),
            "reference_first": self.reference_first.isChecked(), "weights": dict(self._weights),
        }  # fmt: skip

    def restore(self, choices: dict[str, Any]) -> None:
        acc = choices.get("accuracy") if isinstance(choices.get("accuracy"), dict) else {}
        if isinstance(acc.get("dataset"), str):
            self.dataset.setText(acc["dataset"])
        index = self.layout_combo.findText(str(acc.get("layout") or AUTO_LAYOUT))
        self.layout_combo.setCurrentIndex(max(0, index))
        for key, box in (("limit", self.limit), ("seed", self.seed), ("num_classes", self.num_classes),
                         ("size", self.size)):  # fmt: skip
            value = acc.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                box.setValue(value)
        batch = choices.get("accuracy_batch")
        if isinstance(batch, int) and not isinstance(batch, bool):
            self.batch.setValue(batch)
        if isinstance(choices.get("reference_first"), bool):
            self.reference_first.setChecked(choices["reference_first"])
        weights = choices.get("weights")
        if isinstance(weights, dict):
            self._weights.update({str(k): v for k, v in weights.items() if isinstance(v, str)})
