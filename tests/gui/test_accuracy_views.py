"""Measured accuracy beside the published reference (issue 12): the per model and platform
table, the results table's accuracy columns, the measured-accuracy view and the
accuracy-vs-FLOPs plot's marks. What the models and items expose, not pixels."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pandas as pd
import pytest
from PySide6.QtCore import Qt

from core.analysis.data import MEASURED, REFERENCE
from core.zoo import get_card
from gui.accuracy_data import REFERENCE_ONLY, accuracy_table, published_accuracy
from gui.analysis_view import AnalysisView
from gui.plots import AccuracyPlot
from gui.plots_accuracy import MEASURED_LEGEND, REFERENCE_LEGEND, MeasuredAccuracyView
from gui.results_view import ResultsView
from gui.table_model import RAW_ROLE, DataFrameModel
from tests.gui.accuracy_rows import DATASET_ID, accuracy_frame

DISPLAY = Qt.ItemDataRole.DisplayRole
TIP = Qt.ItemDataRole.ToolTipRole
RESNET18_TOP1 = get_card("resnet18").acc1
MOBILENET_TOP1 = get_card("mobilenet_v3_small").acc1


def _cell(model, row: int, name: str, role=DISPLAY):
    return model.data(model.index(row, model.columns().index(name)), role)


def _headers(model) -> list[str]:
    return [model.headerData(i, Qt.Orientation.Horizontal) for i in range(model.columnCount())]


# -- the table of measured vs reference ---------------------------------------------------------


def test_the_table_puts_each_measured_figure_beside_the_published_one() -> None:
    table = accuracy_table(accuracy_frame())
    assert list(zip(table["model"], table["platform"], table["accuracy_source"], strict=True)) == [
        ("mobilenet_v3_small", REFERENCE_ONLY, REFERENCE),  # timed, never evaluated
        ("resnet18", "onnxruntime/cpu/fp32", MEASURED),
        ("resnet18", "openvino/CPU/bf16", MEASURED),
        ("resnet18", "torch/cpu/fp32", MEASURED),
        ("resnet50", "openvino/CPU/bf16", MEASURED),
        ("resnet50", "torch/cpu/fp32", MEASURED),
    ]
    openvino = table.iloc[2]
    assert openvino["top1"] == pytest.approx(100 * 3481 / 5000)
    assert openvino["reference_top1"] == pytest.approx(RESNET18_TOP1)  # the card's, not a measurement
    assert openvino["top1_ci_low"] < openvino["top1"] < openvino["top1_ci_high"]
    assert (openvino["top1_agreement"], openvino["accuracy_reference"]) == (98.72, "torch/cpu/fp32")
    assert (openvino["n_eval_images"], openvino["skipped_images"], openvino["dataset_id"]) == (5000, 3, DATASET_ID)
    only = table.iloc[0]
    assert pd.isna(only["top1"]) and only["reference_top1"] == pytest.approx(MOBILENET_TOP1)
    # The latency row of resnet18 adds no platform: it measured no accuracy.
    assert len(table[table["model"] == "resnet18"]) == 3


def test_a_model_measured_again_keeps_its_latest_figure_and_files_have_no_reference() -> None:
    frame = accuracy_frame(with_latency=False)
    again = frame.iloc[[1]].assign(top1=70.5, started_at=frame["started_at"].max() + 60)
    table = accuracy_table(pd.concat([frame, again], ignore_index=True))
    assert table.loc[table["platform"] == "openvino/CPU/bf16", "top1"].tolist() == [70.5, pytest.approx(80.36)]
    assert published_accuracy("/srv/models/resnet18.onnx") == (None, None)  # never opened here
    assert published_accuracy("no_such_model") == (None, None)


# -- the results table ---------------------------------------------------------------------


def test_the_results_table_shows_the_accuracy_columns_of_accuracy_runs(qtbot) -> None:
    view = ResultsView()
    qtbot.addWidget(view)
    view.set_dataframe(accuracy_frame(), "accuracy")
    model = view.model
    headers = _headers(model)
    for header in ("top-1 (%)", "top-1 95% CI (%)", "top-5 (%)", "agreement (%)", "max |Δ logit|",
                   "n images", "skipped"):  # fmt: skip
        column = headers.index(header)
        assert not view.table.isColumnHidden(column), header
    # The interval sits right after its figure and reads as one range.
    assert headers.index("top-1 95% CI (%)") == headers.index("top-1 (%)") + 1
    openvino = model.dataframe().index[(model.dataframe()["backend"] == "openvino")
                                       & (model.dataframe()["model"] == "resnet18")][0]  # fmt: skip
    assert _cell(model, openvino, "top1") == "69.62"
    low, high = _cell(model, openvino, "top1_ci95", RAW_ROLE)
    assert _cell(model, openvino, "top1_ci95") == f"{low:.2f}–{high:.2f}" == "68.33–70.88"
    assert (_cell(model, openvino, "top1_agreement"), _cell(model, openvino, "max_logit_diff")) == ("98.72", "0.412")
    assert (_cell(model, openvino, "n_eval_images"), _cell(model, openvino, "skipped_images")) == ("5,000", "3")
    tip = _cell(model, openvino, "top1", TIP)
    assert "Measured by an accuracy run on 5,000 images (3 unreadable, skipped)" in tip
    assert "95% CI 68.33–70.88 %" in tip and "agrees with torch/cpu/fp32 on 98.72 %" in tip
    assert "Not a published figure" in tip
    assert "measured" in model.headerData(headers.index("top-1 (%)"), Qt.Orientation.Horizontal, TIP)
    # A latency row has none: its accuracy cells are empty, never a reference figure.
    latency = model.dataframe().index[model.dataframe()["mode"] == "latency"][0]
    assert _cell(model, latency, "top1") == "–" and _cell(model, latency, "top1_ci95") == "–"


def test_timings_alone_gain_no_empty_accuracy_columns(qtbot) -> None:
    view = ResultsView()
    qtbot.addWidget(view)
    view.set_dataframe(accuracy_frame().query("mode == 'latency'"), "latency")
    headers = _headers(view.model)
    assert "top-1 95% CI (%)" not in headers  # no interval at all: no column
    for header in ("agreement (%)", "n images", "skipped"):
        assert view.table.isColumnHidden(headers.index(header)), header


def test_interval_columns_need_both_bounds(qapp) -> None:
    frame = pd.DataFrame({"model": ["a", "b"], "top1": [70.0, 71.0], "top1_ci_low": [69.0, None],
                          "top1_ci_high": [71.0, None]})  # fmt: skip
    model = DataFrameModel(frame)
    assert model.columns() == ["model", "top1", "top1_ci95", "top1_ci_low", "top1_ci_high"]
    assert [_cell(model, r, "top1_ci95") for r in (0, 1)] == ["69.00–71.00", "–"]
    assert "top1_ci95" not in frame.columns  # the caller's frame (the export) is left as it was


# -- the measured-accuracy view -----------------------------------------------------------------


@pytest.fixture
def accuracy_view(qtbot) -> MeasuredAccuracyView:
    view = MeasuredAccuracyView()
    qtbot.addWidget(view)
    view.set_rows(accuracy_frame())
    return view


def _legend(plot) -> list[str]:
    return [label.text for _sample, label in plot.plot.legend.items]


def test_the_view_plots_measured_points_with_cis_and_hollow_references(accuracy_view) -> None:
    view = accuracy_view
    assert view.skipped_reason is None
    measured, reference = view.scatters["measured"], view.scatters["reference"]
    assert len(measured.points()) == 5 and len(reference.points()) == 6  # every row has its reference
    assert view.error_bars is not None and len(view.error_bars.opts["x"]) == 5
    assert _legend(view) == [MEASURED_LEGEND, REFERENCE_LEGEND]
    assert "measured" in MEASURED_LEGEND and "95% CI" in MEASURED_LEGEND
    assert "reference (ImageNet, torchvision)" in REFERENCE_LEGEND and "published" in REFERENCE_LEGEND
    assert reference.opts["symbol"] == "d" and reference.opts["brush"].color().alpha() == 0  # hollow
    assert measured.opts["brush"].color().alpha() > 0  # filled
    ticks = [label for _y, label in view.plot.getAxis("left")._tickLevels[0]]
    assert ticks[0] == "mobilenet_v3_small · not measured" and "resnet18 · openvino/CPU/bf16" in ticks
    tips = {p.data()["tip"].splitlines()[0]: p.data()["tip"] for p in measured.points()}
    tip = tips["resnet18 on openvino/CPU/bf16: measured"]
    assert "measured top-1: 69.62 %, 95% CI 68.33–70.88 %" in tip
    assert f"reference top-1: {RESNET18_TOP1:.4g} % (reference (ImageNet, torchvision), published)" in tip
    assert "agreement with torch/cpu/fp32: 98.72 %" in tip and "max |Δ logit|: 0.412" in tip
    assert "this is the reference platform" in tips["resnet18 on torch/cpu/fp32: measured"]
    ref_tip = next(p.data()["tip"] for p in reference.points() if p.data()["model"] == "mobilenet_v3_small")
    assert ref_tip.startswith("mobilenet_v3_small: reference") and "not measured here" in ref_tip
    assert "not measured, reference only: mobilenet_v3_small" in view.says_label.text()
    assert "Reference (ImageNet, torchvision): the zoo's published ImageNet top-1" in view.detail_label.text()


def test_the_views_table_marks_reference_cells(accuracy_view) -> None:
    model = accuracy_view.table_model
    headers = _headers(model)
    # Each measured figure and its interval, then the published one beside it.
    assert headers[:7] == ["model", "platform", "top-1 (%)", "top-1 95% CI (%)", "reference top-1 (%)",
                           "top-5 (%)", "top-5 95% CI (%)"]  # fmt: skip
    assert headers[7] == "reference top-5 (%)" and "accuracy" in headers
    for name in ("top1_ci_low", "top1_ci_high", "top5_ci_low", "top5_ci_high"):
        assert accuracy_view.table_view.isColumnHidden(model.columns().index(name))
    assert "not measured here" in model.headerData(headers.index("reference top-1 (%)"), Qt.Orientation.Horizontal, TIP)
    assert _cell(model, 2, "accuracy_source") == "measured"
    assert _cell(model, 0, "accuracy_source") == "reference (ImageNet, torchvision)"
    assert _cell(model, 2, "reference_top1") == f"{RESNET18_TOP1:.4g}"
    assert _cell(model, 2, "reference_top1", Qt.ItemDataRole.FontRole).italic()
    assert "published figure, not measured here" in _cell(model, 2, "reference_top1", TIP)
    assert not _cell(model, 2, "top1", Qt.ItemDataRole.FontRole)  # a measured cell is plain
    assert "Measured by an accuracy run" in _cell(model, 2, "top1", TIP)
    assert _cell(model, 0, "top1") == "–"  # the reference-only model has no measured figure


def test_the_view_says_why_it_is_empty_and_exports_its_table(accuracy_view, tmp_path) -> None:
    written = accuracy_view.export(tmp_path / "accuracy.csv")
    exported = pd.read_csv(written)
    assert {"top1", "top1_ci_low", "top1_ci_high", "reference_top1", "accuracy_source"} <= set(exported.columns)
    accuracy_view.set_rows(accuracy_frame().query("mode == 'latency'"))
    assert "No accuracy runs in these data: submit one from the launcher" in accuracy_view.skipped_label.text()


def test_the_analysis_view_shows_measured_accuracy_even_when_the_analysis_cannot_run(qtbot) -> None:
    view = AnalysisView()
    qtbot.addWidget(view)
    view.set_dataframe(accuracy_frame(with_latency=False))  # no per-image time at all
    tab = view.plots["measured_accuracy"]
    assert tab.skipped_reason is None and len(tab.scatters["measured"].points()) == 5  # drawn at once
    qtbot.waitUntil(lambda: not view.is_busy(), timeout=120_000)
    assert view.error_label.isVisibleTo(view)  # the analysis itself needs timings
    assert tab.skipped_reason is None  # ...and the accuracy stays
    assert "Measured accuracy tab" in view.summary_label.text()
    view.shutdown()


# -- the accuracy-vs-FLOPs plot ---------------------------------------------------------------


def test_accuracy_vs_flops_tells_measured_from_reference() -> None:
    section = {
        "accuracy_source": "mixed", "error_bars": "", "models": [
            {"model": "resnet18", "gflops": 3.6, "params_m": 11.7, "top1": 69.62, "top5": 88.8,
             "accuracy_source": MEASURED, "top1_ci95": [68.33, 70.88], "n_eval_images": 5000},
            {"model": "resnet50", "gflops": 8.2, "params_m": 25.6, "top1": 80.858, "top5": 95.434,
             "accuracy_source": REFERENCE, "top1_ci95": None},
        ],
    }  # fmt: skip
    plot = AccuracyPlot()
    plot.set_analysis({"accuracy_density": section})
    assert [p.data()["model"] for p in plot.scatters["top1"].points()] == ["resnet18"]
    assert [p.data()["model"] for p in plot.scatters["top1 reference"].points()] == ["resnet50"]
    assert _legend(plot) == ["top-1, measured", "top-1, reference (ImageNet, torchvision)",
                             "top-5, measured", "top-5, reference (ImageNet, torchvision)"]  # fmt: skip
    assert plot.scatters["top1 reference"].opts["brush"].color().alpha() == 0  # hollow
    assert plot.error_bars is not None and list(plot.error_bars.opts["x"]) == [pytest.approx(3.6)]
    tip = plot.scatters["top1"].points()[0].data()["tip"]
    assert "top-1 95% CI: 68.33 – 70.88 %" in tip and "accuracy: measured" in tip
    assert "hollow: reference (ImageNet, torchvision), published" in plot.detail_label.text()
    plot.deleteLater()
