"""The Layers view: one profiled case as bars and a table with the framework's overhead
stated; fp32 and bf16 of one model side by side, layers matched by name, fused layers
and order; a click on a bar or a row highlights the layer in both profiles; the way a
profile gets there (a store import, an agent's results) and the launcher's option."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from core.cli.run_options import spec_from_remote
from core.results import Backend, Precision, RunSpec
from core.store import Store
from gui.agents import AgentRegistry
from gui.importers import profiled_measurements
from gui.launcher import LauncherPanel
from gui.layers_table import RAW_ROLE
from gui.layers_view import LayersView
from gui.main_window import TAB_NAMES, MainWindow
from tests.gui.layer_profiles import BF16_SUM_MS, FP32_SUM_MS, fp32_and_bf16, measurement


@pytest.fixture
def view(qtbot) -> LayersView:
    widget = LayersView()
    qtbot.addWidget(widget)
    widget.resize(1400, 900)
    return widget


def table_rows(view: LayersView, side: int) -> list[dict[str, str]]:
    """What table ``side`` shows, in its sorted order, as text by column key."""
    proxy, model = view.proxies[side], view.models[side]
    keys = model.columns()
    return [
        {key: proxy.index(row, column).data() for column, key in enumerate(keys)}
        for row in range(proxy.rowCount())
    ]


def selected_name(view: LayersView, side: int) -> str | None:
    rows = view.tables[side].selectionModel().selectedRows()
    if not rows:
        return None
    return rows[0].sibling(rows[0].row(), view.models[side].columns().index("name")).data()


def test_without_a_profile_the_view_says_how_to_get_one(view: LayersView) -> None:
    view.set_profiles([measurement(Precision.FP32, profiled=False)], "results.db")
    assert not view.has_profiles()
    assert view.stack.currentWidget() is view.empty_label
    text = view.empty_label.text()
    assert "--profile-layers" in text and "Profile layers" in text


def test_one_profile_shows_its_slowest_layers_types_and_overhead(view: LayersView) -> None:
    view.set_profiles([measurement(Precision.FP32)], "results.db")
    assert view.stack.currentIndex() == 0
    assert view.compare_combo.count() == 1  # nothing of the same model to compare with
    assert not view.table_boxes[1].isVisibleTo(view)

    rows = table_rows(view, 0)
    assert len(rows) == 7
    slowest = rows[0]  # sorted by time, slowest first
    assert (slowest["name"], slowest["type"], slowest["exec_type"]) == (
        "Multiply_5578", "Convolution", "brgconv_avx512_f32")  # fmt: skip
    assert slowest["time_ms"] == "1.27" and slowest["share"] == "36.1%"  # 1.27 of 3.52 ms
    assert slowest["gflops"] == "0.231" and slowest["mb"] == "9.74" and slowest["output"] == "1x512x7x7"
    assert [r["name"] for r in rows[:3]] == ["Multiply_5578", "Multiply_5466", "Multiply_5473"]
    pool = next(r for r in rows if r["type"] == "Pooling")
    assert pool["gflops"] == "–"  # not derived for a pooling layer: shown missing, not 0

    chart = view.top_chart
    assert len(chart.series) == 1 and chart.labels[0] == "Multiply_5578 (layer4.0)"
    assert chart.values(chart.keys[0]) == [pytest.approx(1.27)]
    assert view.type_chart.keys[0] == "Convolution"
    assert view.type_chart.values("Convolution") == [pytest.approx(2.98)]

    summary = view.summary_label.text()
    assert f"sum of 7 layers {FP32_SUM_MS:.3f} ms" in summary
    assert "end-to-end median 4.200 ms" in summary
    assert "framework overhead outside the layers 0.680 ms (16%)" in summary

    view.top_spin.setValue(3)
    assert len(view.top_chart.keys) == 3  # the chart follows "top N"; the table keeps all
    assert view.proxies[0].rowCount() == 7


def test_fp32_and_bf16_side_by_side_match_layers(view: LayersView) -> None:
    fp32, bf16 = fp32_and_bf16()
    view.set_profiles([fp32, bf16], "results.db")
    # fp32 first, and the other precision of the same model and batch compared at once.
    assert view.profile_combo.currentText().startswith("resnet18 · openvino/CPU/fp32 b1")
    assert view.compare_combo.currentText().startswith("openvino/CPU/bf16 b1")
    view.select_profile(view.key_of("resnet18", "fp32"), compare=view.key_of("resnet18", "bf16"))
    pairs = [(m.a, m.b, m.how) for m in view.matches]
    assert (4, 4, "name") in pairs  # Multiply_5578 kept its name
    assert (3, 3, "fused") in pairs  # renamed, but runs layer1.0's fused ReLU
    assert (5, 6, "order") in pairs  # the final pooling, renamed, nothing fused
    assert (None, 5, "") in pairs  # the Convert only bf16 runs

    chart = view.top_chart
    assert [name for name, _values in chart.series] == ["fp32", "bf16"]
    conv = next(k for k in chart.keys if view.matches[k].a == 4)
    assert chart.values(conv) == [pytest.approx(1.27), pytest.approx(0.41)]
    assert any(label.endswith("[bf16 only]") for label in chart.labels)
    assert view.type_chart.values("Convolution") == [pytest.approx(2.98), pytest.approx(0.98)]

    assert view.table_boxes[1].isVisibleTo(view)
    left = {r["name"]: r for r in table_rows(view, 0)}
    right = {r["name"]: r for r in table_rows(view, 1)}
    assert left["Multiply_5578"]["other_ms"] == "0.41"
    assert left["Multiply_5578"]["ratio"] == "3.1×"  # fp32 takes 3.1 times the bf16 time
    assert right["Multiply_5578"]["exec_type"] == "brgconv_avx512_amx_bf16"
    assert right["Multiply_9001"]["other_ms"] == "0.71"  # its fp32 counterpart, Multiply_5473
    assert right["Convert_1234"]["other_ms"] == "–"
    header = view.models[0].headerData(view.models[0].columns().index("other_ms"), Qt.Orientation.Horizontal)
    assert header == "bf16 ms"

    summary = view.summary_label.text()
    assert f"{FP32_SUM_MS:.3f} ms" in summary and f"{BF16_SUM_MS:.3f} ms" in summary
    assert "<b>bf16 vs fp32</b>" in summary
    assert "5 by name, 1 by fused layers, 1 by type and order; 0 only in fp32, 1 only in bf16" in summary


def test_a_click_on_a_bar_or_a_row_highlights_the_layer_in_both(view: LayersView, qtbot) -> None:
    view.set_profiles(fp32_and_bf16(), "results.db")
    view.select_profile(view.key_of("resnet18", "fp32"), compare=view.key_of("resnet18", "bf16"))
    view.show()
    qtbot.waitExposed(view)

    # A real mouse click on the bars of Multiply_5578.
    chart = view.top_chart
    key = next(k for k in chart.keys if view.matches[k].a == 4)
    point = chart.plot_widget.mapFromScene(chart.scene_pos_of(key))
    with qtbot.waitSignal(view.layer_selected, timeout=2000) as clicked:
        qtbot.mouseClick(chart.plot_widget.viewport(), Qt.MouseButton.LeftButton, pos=point)
    assert clicked.args == ["Multiply_5578"]
    assert view.highlighted() == (4, 4)
    assert chart.highlighted_key() == key
    assert view.type_chart.highlighted_key() == "Convolution"
    assert selected_name(view, 0) == "Multiply_5578" and selected_name(view, 1) == "Multiply_5578"
    assert (view.models[0].highlighted(), view.models[1].highlighted()) == (4, 4)
    assert "brgconv_avx512_amx_bf16" in view.selection_label.text()

    # A click on a row of the bf16 table: the renamed convolution finds its fp32 twin.
    table, proxy = view.tables[1], view.proxies[1]
    row = next(r for r in range(proxy.rowCount()) if proxy.index(r, 1).data() == "Multiply_9001")
    rect = table.visualRect(proxy.index(row, 1))
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert view.highlighted() == (3, 3)
    assert selected_name(view, 0) == "Multiply_5473" and selected_name(view, 1) == "Multiply_9001"
    assert chart.highlighted_key() == next(k for k in chart.keys if view.matches[k].a == 3)

    # A layer only bf16 runs: highlighted there, nothing selected in fp32.
    view.highlight_layer(1, 5)
    assert view.highlighted() == (None, 5)
    assert selected_name(view, 0) is None and selected_name(view, 1) == "Convert_1234"
    assert "fp32: no matching layer" in view.selection_label.text()


def test_tables_sort_by_the_raw_values(view: LayersView) -> None:
    view.set_profiles([measurement(Precision.FP32)], "results.db")
    column = view.models[0].columns().index("gflops")
    view.tables[0].sortByColumn(column, Qt.SortOrder.AscendingOrder)
    values = [view.proxies[0].index(r, column).data(RAW_ROLE) for r in range(view.proxies[0].rowCount())]
    numbers = [v for v in values if v != ""]
    assert numbers == sorted(numbers) and values[: len(numbers)] == numbers  # missing last


def test_export_writes_the_matched_layers_and_a_picture(view: LayersView, tmp_path: Path) -> None:
    import pandas as pd

    view.set_profiles(fp32_and_bf16(), "results.db")
    view.select_profile(view.key_of("resnet18", "fp32"), compare=view.key_of("resnet18", "bf16"))
    frame = pd.read_csv(view.export(tmp_path / "layers.csv"))
    assert len(frame) == 8 and set(frame["matched_by"].fillna("")) == {"name", "fused", "order", ""}
    row = frame[frame["a_name"] == "Multiply_5578"].iloc[0]
    assert row["b_exec_type"] == "brgconv_avx512_amx_bf16" and row["b_time_ms"] == pytest.approx(0.41)
    png = view.export(tmp_path / "layers.png")
    assert png.stat().st_size > 10_000


def test_agent_results_carry_their_profiles(view: LayersView) -> None:
    dicts = [m.to_dict() for m in fp32_and_bf16()]
    dicts.append(measurement(Precision.FP32, profiled=False, model="vgg11", measurement_id=3).to_dict())
    found = profiled_measurements([*dicts, {"case": "broken", "layer_profile": {}}])
    assert [m.case.precision for m in found] == [Precision.FP32, Precision.BF16]
    assert found[0].layer_profile is not None and len(found[0].layer_profile.layers) == 7
    view.add_profiles(found, source="edge-box")
    view.add_profiles(found, source="edge-box")  # a refetched run replaces, never doubles
    assert len(view.profiles()) == 2


def test_an_imported_store_fills_the_layers_tab(qtbot, tmp_path: Path) -> None:
    db = tmp_path / "results.db"
    with Store(db) as store:
        run = store.create_run(RunSpec(models=("resnet18",), backend=Backend.OPENVINO, device="CPU"),
                               {"host": "test"}, name="profiled")  # fmt: skip
        for m in fp32_and_bf16():
            store.add_measurement(run.id, m)
    window = MainWindow(registry=AgentRegistry(persist=False), restore=False)
    qtbot.addWidget(window)
    assert TAB_NAMES[-1] == "Layers" and window.tabs.tabText(TAB_NAMES.index("Layers")) == "Layers"
    layers = window.layers_view
    assert layers.stack.currentWidget() is layers.empty_label
    assert window.results_view.import_file(db)
    assert len(layers.profiles()) == 2
    assert layers.compare_combo.currentIndex() > 0  # the other precision is compared at once
    assert (len(layers.models[0].rows()), len(layers.models[1].rows())) == (7, 8)  # fp32, bf16
    # The analysis view's HTML report gets the profiles of the rows it analyses.
    assert len(window.analysis_view.layer_profiles_shown()) == 2


def test_the_launcher_asks_for_profiles_only_when_ticked(qtbot) -> None:
    panel = LauncherPanel(AgentRegistry(persist=False))
    qtbot.addWidget(panel)
    assert "profile_layers" not in panel.spec_dict()  # the default is not sent
    panel.profile_layers.setChecked(True)
    spec = {**panel.spec_dict(), "models": ["resnet18"]}
    assert spec["profile_layers"] is True
    assert spec_from_remote(spec).profile_layers is True  # the agent takes it
    assert "profiled layer by layer" in panel.summary.text()
    panel.mode_combo.setCurrentText("accuracy")
    assert "profile_layers" not in panel.spec_dict()  # no timed loop to profile after
    panel.mode_combo.setCurrentText("latency")
    panel.save_choices()
    again = LauncherPanel(AgentRegistry(persist=False))
    qtbot.addWidget(again)
    assert again.profile_layers.isChecked()
