"""The analysis views on synthetic data of 12 real zoo models on two platforms: every plot
drawn with the right points, fits on a worker thread, click-to-highlight everywhere,
skip reasons, and export."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pyqtgraph as pg
import pytest
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QApplication

from core.analysis import analyze
from core.errors import UsageError
from core.zoo import get_card, model_complexity, suite_models
from gui.analysis_view import AnalysisView
from gui.plots import AccuracyPlot, DensityPlot, ParetoPlot, SpeedupPlot
from gui.plots_fits import LatencyBatchPlot, MemoryPlot
from gui.results_view import ResultsView

BATCHES = (1, 2, 4, 8, 16, 32, 64)
PLATFORMS = (("torch", "cpu", 1.0), ("openvino", "CPU", 0.45))
N_MODELS = 12
FIT_TIMEOUT_MS = 120_000  # the machine is shared; analyze() takes seconds, not minutes


def synthetic(
    n_models: int = N_MODELS, platforms=PLATFORMS, batches=BATCHES, seed: int = 0
) -> pd.DataFrame:
    """Per-image time = factor * (0.9 GFLOPs + 0.6 + 6/batch) with 3% noise; memory on two
    lines by params; measured top-1/top-5 (the zoo's figures) over 5000 images."""
    names = list(suite_models("paper"))
    models = names[:: max(1, len(names) // n_models)][:n_models]
    rng = np.random.default_rng(seed)
    rows = []
    for backend, device, factor in platforms:
        for i, model in enumerate(models):
            complexity, card = model_complexity(model), get_card(model)
            weights_mb = complexity.params * 4 / 2**20
            slope = 1.7 if i % 3 == 0 else 1.1
            for batch in batches:
                per_image = factor * (0.9 * complexity.flops / 1e9 + 0.6 + 6.0 / batch)
                per_image *= 1 + 0.03 * rng.standard_normal()
                rows.append(
                    {"model": model, "backend": backend, "device": device, "precision": "fp32",
                     "batch_size": batch, "mode": "latency", "per_image_ms": per_image,
                     "latency_ms_median": per_image * batch, "throughput_ips": 1000 / per_image,
                     "peak_rss_mb": 180 + slope * weights_mb + 2 * batch, "params": complexity.params,
                     "flops": complexity.flops, "status": "ok", "top1": card.acc1, "top5": card.acc5,
                     "n_eval_images": 5000}
                )  # fmt: skip
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return synthetic()


@pytest.fixture(scope="module")
def analysis(frame: pd.DataFrame) -> dict:
    return analyze(frame)


def n_points(item: pg.ScatterPlotItem) -> int:
    return len(item.points())


def test_every_plot_is_drawn_with_its_points_and_says_text(
    qtbot, analysis: dict, frame: pd.DataFrame
) -> None:
    n_models = frame["model"].nunique()
    accuracy = AccuracyPlot()
    qtbot.addWidget(accuracy)
    accuracy.set_analysis(analysis)
    assert n_points(accuracy.scatters["top1"]) == n_points(accuracy.scatters["top5"]) == n_models
    sizes = accuracy.scatters["top1"].data["size"]
    assert sizes.max() > 3 * sizes.min()  # bubble size follows params
    assert accuracy.says_label.text() == analysis["accuracy_density"]["says"]
    assert "GFLOPs" in accuracy.plot.getAxis("bottom").labelText

    density = DensityPlot()
    qtbot.addWidget(density)
    density.set_analysis(analysis)
    assert len(density.bars.opts["width"]) == n_models
    assert density.error_bars is not None and len(density.error_bars.opts["x"]) == n_models
    assert n_points(density.scatters["density"]) == n_models

    latency = LatencyBatchPlot()
    qtbot.addWidget(latency)
    latency.set_analysis(analysis)
    per = analysis["latency_vs_batch"]["per_platform"]
    assert latency.platform_combo.count() == 2
    for platform in per:
        latency.platform_combo.setCurrentText(platform)
        clusters = [k for k in latency.scatters if k.startswith("cluster ")]
        assert sum(n_points(latency.scatters[k]) for k in clusters) == n_models * len(BATCHES)
        assert len(clusters) == per[platform]["n_clusters"]
        centroids = [k for k in latency.scatters if k.startswith("centroids ")]
        assert sum(n_points(latency.scatters[k]) for k in centroids) == per[platform][
            "n_clusters"
        ] * len(BATCHES)
        fills = [i for i in latency.plot.items if isinstance(i, pg.FillBetweenItem)]
        assert len(fills) >= 1  # the 95% band
        assert latency.says_label.text() == per[platform]["says"]

    pareto = ParetoPlot()
    qtbot.addWidget(pareto)
    pareto.set_analysis(analysis)
    for platform, data in analysis["pareto"]["platforms"].items():
        pareto.platform_combo.setCurrentText(platform)
        assert n_points(pareto.scatters["front"]) == len(data["front"])
        assert (
            n_points(pareto.scatters["front"])
            + n_points(pareto.scatters.get("others", pg.ScatterPlotItem()))
            == n_models
        )
        assert pareto.says_label.text() == data["says"]

    memory = MemoryPlot()
    qtbot.addWidget(memory)
    memory.set_analysis(analysis)
    platform = memory.platform()
    fits = [f for f in analysis["memory_vs_params"]["fits"] if f["platform"] == platform]
    assert len(fits) == 2  # the data hold two lines
    assert sum(n_points(item) for item in memory.scatters.values()) == n_models
    lines = [i for i in memory.plot.items if isinstance(i, pg.PlotDataItem)]
    assert len(lines) == len(fits)
    assert memory.says_label.text().startswith(f"On {platform}")

    speedup = SpeedupPlot()
    qtbot.addWidget(speedup)
    speedup.set_analysis(analysis)
    assert len(speedup.bars) == 1  # one platform against the baseline
    bar = next(iter(speedup.bars.values()))
    assert len(bar.opts["x"]) == len(BATCHES)
    assert sum(n_points(item) for item in speedup.scatters.values()) == n_models * len(BATCHES)
    assert speedup.says_label.text() == analysis["speedup"]["says"]
    for plot in (accuracy, density, latency, pareto, memory, speedup):
        assert plot.stack.currentIndex() == 0 and plot.skipped_reason is None


def test_hover_tip_names_the_model_and_values(qtbot, analysis: dict) -> None:
    pareto = ParetoPlot()
    qtbot.addWidget(pareto)
    pareto.set_analysis(analysis)
    point = pareto.scatters["front"].points()[0]
    tip = pareto._tip(point.pos().x(), point.pos().y(), point.data())
    assert point.data()["model"] in tip and "FPS" in tip and "top-1" in tip
    assert pareto.scatters["front"].opts["hoverable"]


def test_single_platform_shows_the_speedup_skip_reason(qtbot, frame: pd.DataFrame) -> None:
    one = analyze(frame[frame["backend"] == "torch"])
    speedup = SpeedupPlot()
    qtbot.addWidget(speedup)
    speedup.set_analysis(one)
    assert speedup.stack.currentIndex() == 1
    assert "only one platform" in speedup.skipped_label.text().lower()
    assert "torch/cpu/fp32" in speedup.skipped_label.text()
    assert speedup.skipped_reason == one["skipped"]["speedup"]


def test_fit_runs_on_a_worker_thread_and_stale_results_are_dropped(
    qtbot, frame: pd.DataFrame
) -> None:
    view = AnalysisView()
    qtbot.addWidget(view)
    view.runner.with_prediction = False  # the predictor has its own test, on less data
    first = frame[frame["model"].isin(frame["model"].unique()[:4])]
    with qtbot.waitSignal(view.runner.busy_changed) as busy:
        view.set_dataframe(first)
    assert busy.args == [True]
    assert view.busy_bar.isVisibleTo(view)  # the busy indicator runs while the fit does
    view.set_dataframe(frame)  # the data change while the first fit runs
    with qtbot.waitSignal(view.analysis_finished, timeout=FIT_TIMEOUT_MS) as done:
        pass
    qtbot.waitUntil(lambda: not view.is_busy(), timeout=FIT_TIMEOUT_MS)
    assert done.args[0] is not None
    assert len(view.analysis()["input"]["models"]) == N_MODELS  # the latest data, not the first
    assert view.runner.discarded >= 1
    assert view.last_analysis_thread is not None
    assert view.last_analysis_thread != threading.get_ident()
    assert not view.busy_bar.isVisibleTo(view)
    assert "12 models" in view.summary_label.text()
    assert view.plots["latency"].says_label.text()


def test_click_highlights_the_model_in_every_view_and_the_table(
    qtbot, analysis: dict, frame: pd.DataFrame
) -> None:
    view = AnalysisView()
    results = ResultsView()
    qtbot.addWidget(view)
    qtbot.addWidget(results)
    results.set_dataframe(frame, "synthetic")
    view.model_selected.connect(results.select_model)
    view.show_analysis(analysis)
    model = analysis["pareto"]["platforms"]["torch/cpu/fp32"]["front"][0]
    with qtbot.waitSignal(view.model_selected) as picked:
        view.plots["pareto"].click_model(model)
    assert picked.args == [model]
    for key in ("accuracy", "density", "latency", "pareto", "memory", "speedup"):
        plot = view.plots[key]
        assert plot.highlighted_model() == model, key
        assert plot.highlighted_points(), key  # the ring is drawn on its points
    assert len(view.plots["accuracy"].highlighted_points()) == 2  # top-1 and top-5
    assert len(view.plots["latency"].highlighted_points()) == len(BATCHES)
    selected = results.selected_rows()
    assert set(selected["model"]) == {model} and len(selected) == 2 * len(BATCHES)
    # From outside (the table) no signal goes back.
    other = analysis["input"]["models"][-1]
    with qtbot.assertNotEmitted(view.model_selected):
        view.highlight_model(other)
    assert view.plots["memory"].highlighted_model() == other


def test_prediction_panel_shows_prediction_interval_and_lomo_accuracy(qtbot) -> None:
    small = synthetic(n_models=5, platforms=PLATFORMS[:1], batches=(1, 2, 4, 8))
    view = AnalysisView()
    qtbot.addWidget(view)
    view.set_dataframe(small)
    panel = view.plots["prediction"]
    qtbot.waitUntil(
        lambda: panel.evaluation_table.shape[0] > 0 or panel.skipped_reason, timeout=FIT_TIMEOUT_MS
    )
    qtbot.waitUntil(lambda: not view.is_busy(), timeout=FIT_TIMEOUT_MS)
    assert panel.skipped_reason is None
    assert view.last_prediction_thread != threading.get_ident()
    assert panel.eval_table.rowCount() == 2  # all platforms + the one platform
    texts = [panel.eval_table.item(0, c).text() for c in range(panel.eval_table.columnCount())]
    assert texts[0] == "all platforms" and all(t.endswith("%") for t in texts[2:5])
    assert "±10%" in panel.says_label.text() and "FLOPs-only" in panel.says_label.text()
    model = small["model"].iloc[0]
    view.highlight_model(model)
    assert panel.model_combo.currentText() == model
    panel.batch_spin.setValue(4)
    prediction = panel.last_prediction
    assert prediction.model == model and prediction.batch_size == 4
    assert prediction.latency_ms_low < prediction.latency_ms < prediction.latency_ms_high
    assert "interval" in panel.result_label.text() and "Measured" in panel.result_label.text()
    assert n_points(panel.scatters["measured"]) == 4
    assert isinstance(panel.band, pg.FillBetweenItem)
    panel.model_combo.setCurrentText("efficientnet_b0")  # a zoo model never measured
    assert panel.last_prediction.model == "efficientnet_b0"
    assert "Measured" not in panel.result_label.text()


def test_too_few_models_for_prediction_says_why(qtbot) -> None:
    tiny = synthetic(n_models=2, platforms=PLATFORMS[:1], batches=(1, 2, 4))
    view = AnalysisView()
    qtbot.addWidget(view)
    view.set_dataframe(tiny)
    qtbot.waitUntil(lambda: not view.is_busy(), timeout=FIT_TIMEOUT_MS)
    panel = view.plots["prediction"]
    assert panel.stack.currentIndex() == 1
    assert "at least 3 models" in panel.skipped_label.text()
    assert view.analysis() is not None  # the analysis itself still ran


def test_unusable_data_show_the_error(qtbot) -> None:
    view = AnalysisView()
    qtbot.addWidget(view)
    view.runner.with_prediction = False
    bad = pd.DataFrame(
        {
            "model": ["a"],
            "backend": ["torch"],
            "status": ["failed"],
            "batch_size": [1],
            "per_image_ms": [None],
        }
    )
    with qtbot.waitSignal(view.analysis_finished, timeout=FIT_TIMEOUT_MS) as done:
        view.set_dataframe(bad)
    assert done.args == [None]
    assert "None of the 1 measurements has status ok" in view.error_label.text()
    assert "status ok" in view.plots["accuracy"].skipped_label.text()


def test_export_png_svg_csv_and_report(
    qtbot, analysis: dict, frame: pd.DataFrame, tmp_path: Path
) -> None:
    view = AnalysisView()
    qtbot.addWidget(view)
    view.resize(1200, 800)
    view.show_analysis(analysis)
    for key in ("accuracy", "latency", "speedup"):
        plot = view.plots[key]
        png = plot.export(tmp_path / f"{key}.png")
        svg = plot.export(tmp_path / f"{key}.svg")
        csv = plot.export(tmp_path / f"{key}.csv")
        image = QImage(str(png))
        assert not image.isNull() and image.width() >= 800
        assert svg.read_text().lstrip().startswith("<?xml") and "<svg" in svg.read_text()
        assert len(pd.read_csv(csv)) == len(plot.table) > 0
    with pytest.raises(UsageError, match="unknown file type"):
        view.plots["accuracy"].export(tmp_path / "plot.gif")
    small = frame[frame["model"].isin(frame["model"].unique()[:4]) & (frame["backend"] == "torch")]
    view._frame = small
    with qtbot.waitSignal(view.report_written, timeout=FIT_TIMEOUT_MS) as written:
        assert view.start_report(tmp_path / "report", predictor=False)
    index = Path(written.args[0])
    assert index.name == "index.html" and index.stat().st_size > 1000


# -- issue 9: the model's own memory, and disturbed measurements --------------------------------


def with_model_memory(frame: pd.DataFrame) -> pd.DataFrame:
    """The framework's baseline (200-255 MB, by model) under the synthetic peak RSS: the
    model's share is what remains."""
    baseline = 200.0 + 5.0 * frame["model"].astype("category").cat.codes.astype(float)
    peak = frame["peak_rss_mb"] + baseline
    return frame.assign(peak_rss_mb=peak, baseline_rss_mb=baseline, model_rss_mb=peak - baseline)


@pytest.fixture(scope="module")
def memory_frame() -> pd.DataFrame:
    return with_model_memory(synthetic(n_models=8, platforms=PLATFORMS[:1], batches=(1, 2, 4)))


def plotted_memory(plot: MemoryPlot) -> dict[str, float]:
    points = {}
    for item in plot.scatters.values():
        for point in item.points():
            points[point.data()["model"]] = point.pos().y()
    return points


def at_batch_1(frame: pd.DataFrame, column: str) -> dict[str, float]:
    rows = frame[frame["batch_size"] == 1]
    return dict(zip(rows["model"], rows[column].astype(float), strict=True))


def test_memory_choices_are_cores(qapp) -> None:
    from core.analysis.memory import MEMORY_CHOICES
    from gui.memory_choice import CHOICES

    assert tuple(MEMORY_CHOICES) == CHOICES


def test_memory_switch_changes_the_plotted_figure_and_the_axis(qtbot, memory_frame) -> None:
    from core.analysis.data import prepare
    from gui.memory_choice import MODEL, PROCESS, memory_choices

    inp = prepare(memory_frame)
    plot = MemoryPlot()
    qtbot.addWidget(plot)
    plot.resize(900, 600)
    plot.show()
    QApplication.processEvents()
    plot.set_memory_choices(memory_choices(inp))
    plot.set_analysis(analyze(inp))
    QApplication.processEvents()
    assert plot.memory_choice() == MODEL  # the model's share by default
    assert plotted_memory(plot) == pytest.approx(at_batch_1(memory_frame, "model_rss_mb"))
    assert plot.axis_text() == "model memory: peak − baseline RSS (MB)"
    assert not plot.fallback
    assert set(plot.table["memory_column"]) == {"model_rss_mb"}
    assert plot.says_label.text().startswith(f"On {plot.platform()} model memory")
    plot.memory_combo.setCurrentIndex(plot.memory_combo.findData(PROCESS))  # as a user would
    QApplication.processEvents()
    assert plotted_memory(plot) == pytest.approx(at_batch_1(memory_frame, "peak_rss_mb"))
    assert plot.axis_text() == "process memory: peak RSS (MB)"
    assert set(plot.table["memory_column"]) == {"peak_rss_mb"}
    plot.set_memory_choice(MODEL)
    QApplication.processEvents()  # the view settles its range, as between two clicks
    assert plotted_memory(plot) == pytest.approx(at_batch_1(memory_frame, "model_rss_mb"))
    # The redrawn axes follow the view (a new axis over an unchanged range once read 0-1).
    view_x = plot.plot.getViewBox().viewRange()[0]
    assert plot.plot.getAxis("bottom").range == pytest.approx(view_x)


def test_memory_of_older_results_falls_back_to_peak_rss_and_says_so(qtbot) -> None:
    from core.analysis.data import prepare
    from gui.memory_choice import MODEL, memory_choices

    old = synthetic(n_models=8, platforms=PLATFORMS[:1], batches=(1, 2))
    assert "model_rss_mb" not in old.columns
    inp = prepare(old)
    plot = MemoryPlot()
    qtbot.addWidget(plot)
    plot.set_memory_choices(memory_choices(inp))
    plot.set_analysis(analyze(inp))
    assert plot.memory_choice() == MODEL and plot.fallback
    assert plot.stack.currentIndex() == 0  # drawn, not skipped
    assert plotted_memory(plot) == pytest.approx(at_batch_1(old, "peak_rss_mb"))
    assert plot.axis_text() == "process memory: peak RSS (MB); no baseline RSS in these data"
    assert "baseline RSS" in plot.detail_label.text()


def test_too_few_models_with_a_baseline_fall_back_too(qtbot, memory_frame) -> None:
    from core.analysis.data import prepare
    from gui.memory_choice import memory_choices

    mixed = memory_frame.copy()
    keep = mixed["model"].isin(mixed["model"].unique()[:2])
    mixed.loc[~keep, ["model_rss_mb", "baseline_rss_mb"]] = np.nan  # older rows mixed in
    inp = prepare(mixed)
    plot = MemoryPlot()
    qtbot.addWidget(plot)
    plot.set_memory_choices(memory_choices(inp))
    plot.set_analysis(analyze(inp))
    assert plot.fallback and plot.axis_text().endswith("no baseline RSS in these data")
    assert "only 2 model(s) with a baseline rss" in plot.detail_label.text().lower()
    assert plotted_memory(plot) == pytest.approx(at_batch_1(mixed, "peak_rss_mb"))


def test_no_memory_at_all_says_why_and_the_switch_stays(qtbot, memory_frame) -> None:
    from core.analysis.data import prepare
    from gui.memory_choice import PROCESS, memory_choices

    bare = memory_frame.drop(columns=["peak_rss_mb", "model_rss_mb", "baseline_rss_mb"])
    inp = prepare(bare)
    plot = MemoryPlot()
    qtbot.addWidget(plot)
    plot.set_memory_choices(memory_choices(inp))
    plot.set_analysis(analyze(inp))
    assert plot.stack.currentIndex() == 1
    assert "model memory" in plot.skipped_label.text().lower()
    assert "no memory figures" in plot.skipped_label.text()
    assert plot.memory_combo.isVisibleTo(plot) and plot.memory_combo.isEnabled()
    plot.set_memory_choice(PROCESS)
    assert "process memory" in plot.skipped_label.text().lower()


def test_the_analysis_view_fits_model_memory_and_can_exclude_disturbed(qtbot, memory_frame) -> None:
    view = AnalysisView()
    qtbot.addWidget(view)
    view.runner.with_prediction = False
    disturbed = memory_frame["batch_size"] == 4
    frame = memory_frame.assign(disturbed=disturbed, interference=np.where(disturbed, 0.5, 0.01))
    n_disturbed = int(disturbed.sum())
    with qtbot.waitSignal(view.analysis_finished, timeout=FIT_TIMEOUT_MS) as done:
        view.set_dataframe(frame)
    assert done.args[0]["input"]["rows_read"] == len(frame)
    memory = view.plots["memory"]
    assert isinstance(memory, MemoryPlot)
    assert memory.axis_text().startswith("model memory")
    assert view.exclude_disturbed.isEnabled()
    assert view.exclude_disturbed.text() == f"Exclude disturbed ({n_disturbed})"
    assert f"Includes {n_disturbed} disturbed" in view.summary_label.text()
    with qtbot.waitSignal(view.analysis_finished, timeout=FIT_TIMEOUT_MS) as done:
        view.exclude_disturbed.setChecked(True)
    assert done.args[0]["input"]["rows_read"] == len(frame) - n_disturbed
    assert 4 not in done.args[0]["input"]["batch_sizes"]
    assert len(view.dataframe()) == len(frame) - n_disturbed
    assert f"{n_disturbed} disturbed measurement(s) excluded" in view.summary_label.text()
    # Data with nothing disturbed, or without the column: nothing to exclude.
    with qtbot.waitSignal(view.analysis_finished, timeout=FIT_TIMEOUT_MS):
        view.set_dataframe(memory_frame)
    assert not view.exclude_disturbed.isEnabled()
    assert len(view.dataframe()) == len(memory_frame)


def test_excluding_every_measurement_says_so(qtbot) -> None:
    view = AnalysisView()
    qtbot.addWidget(view)
    view.runner.with_prediction = False
    view.exclude_disturbed.setChecked(False)
    rows = synthetic(n_models=3, platforms=PLATFORMS[:1], batches=(1,)).assign(disturbed=True)
    with qtbot.waitSignal(view.analysis_finished, timeout=FIT_TIMEOUT_MS):
        view.set_dataframe(rows)
    view.exclude_disturbed.setChecked(True)
    assert view.analysis() is None and view.dataframe().empty
    assert "All 3 measurements are disturbed" in view.summary_label.text()
    assert "disturbed" in view.plots["memory"].skipped_label.text()
