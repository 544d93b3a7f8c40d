"""The results view: import from a store, CSV and JSON; bad files; runs, filter, export."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import json
from pathlib import Path

import pandas as pd
import pytest
from PySide6.QtCore import QItemSelectionModel, Qt

from core.results import (
    Backend,
    Case,
    FailureKind,
    LatencyStats,
    Measurement,
    Precision,
    RunSpec,
    Status,
)
from core.store import Store
from gui.results_view import ResultsView

MANIFEST_EDGE = {
    "host": "edge-box",
    "cpu_model": "Test CPU 3000",
    "packages": {"openvino": "2022.3"},
}
MANIFEST_CLOUD = {"host": "cloud", "cpu_model": "Big Iron", "gpus": [{"name": "H100"}]}


def measurement(model: str, backend: Backend, device: str, batch: int, ms: float) -> Measurement:
    samples = [int(ms * 1e6 * (1 + 0.01 * i)) for i in range(12)]
    return Measurement(
        case=Case(model, backend, device, Precision.FP32, batch),
        status=Status.OK,
        stats=LatencyStats.from_samples(samples),
        samples_ns=tuple(samples),
        throughput_ips=1000.0 * batch / ms,
        peak_rss_mb=300.0 + batch,
        params=11_689_512,
        flops=3_628_146_688,
    )


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    path = tmp_path / "results.db"
    store = Store(path)
    for name, backend, device, manifest, factor in (
        ("edge-run", Backend.OPENVINO, "CPU", MANIFEST_EDGE, 3.0),
        ("cloud-run", Backend.TORCH, "cuda:0", MANIFEST_CLOUD, 1.0),
    ):
        spec = RunSpec(
            models=("resnet18", "alexnet"),
            backend=backend,
            device=device,
            batch_sizes=(1, 2),
            name=name,
        )
        run = store.create_run(spec, manifest, status="finished")
        for model in spec.models:
            for batch in spec.batch_sizes:
                store.add_measurement(
                    run.id, measurement(model, backend, device, batch, factor * 2.0 * batch)
                )
    failed = Measurement.failed(
        Case("vgg16", Backend.TORCH, "cuda:0", Precision.FP32, 64),
        FailureKind.OOM,
        "CUDA out of memory",
    )
    store.add_measurement(store.get_run("cloud-run").id, failed)
    store.close()
    return path


@pytest.fixture
def view(qtbot) -> ResultsView:
    widget = ResultsView()
    qtbot.addWidget(widget)
    return widget


def test_store_import_lists_runs_and_shows_the_manifest(
    view: ResultsView, store_path: Path, qtbot
) -> None:
    with qtbot.waitSignal(view.selection_changed) as emitted:
        assert view.import_file(store_path)
    assert len(emitted.args[0]) == 9
    assert view.model.rowCount() == 9
    assert view.runs_table.rowCount() == 2
    names = {view.runs_table.item(r, 0).text() for r in range(2)}
    assert names == {"edge-run", "cloud-run"}
    with qtbot.waitSignal(view.selection_changed) as emitted:
        view.select_runs(["edge-run"])
    edge = emitted.args[0]
    assert set(edge["backend"]) == {"openvino"} and len(edge) == 4
    assert view.proxy.rowCount() == 4
    assert view.details.title.text() == "Run: edge-run"
    shown = json.dumps(view.details.payload())
    assert "Test CPU 3000" in shown and "2022.3" in shown
    environment = view.details.section("Environment")
    assert environment is not None
    tree_text = [environment.child(i).text(1) for i in range(environment.childCount())]
    assert "Test CPU 3000" in tree_text
    # Both runs selected: the rows of both platforms go to the analysis.
    with qtbot.waitSignal(view.selection_changed) as emitted:
        view.select_runs(["edge-run", "cloud-run"])
    assert set(emitted.args[0]["backend"]) == {"openvino", "torch"}
    assert len(view.dataframe()) == 9


def test_csv_and_json_exports_import_to_the_same_rows(
    view: ResultsView, store_path: Path, tmp_path: Path
) -> None:
    store = Store(store_path)
    store.export(tmp_path / "r.csv", "csv")
    store.export(tmp_path / "r.json", "json")
    reference = store.to_dataframe()
    store.close()
    for name in ("r.csv", "r.json"):
        assert view.import_file(tmp_path / name), view.last_error
        got = view.dataframe()
        assert len(got) == len(reference)
        assert sorted(got["per_image_ms"].dropna().round(9)) == sorted(
            reference["per_image_ms"].dropna().round(9)
        )
        assert view.runs_table.rowCount() == 2  # runs come from run_id / run_name columns


def test_json_in_measurement_dict_form(view: ResultsView, tmp_path: Path) -> None:
    items = [measurement("resnet18", Backend.TORCH, "cpu", b, 2.0 * b).to_dict() for b in (1, 2, 4)]
    path = tmp_path / "agent.json"
    path.write_text(json.dumps({"measurements": items}))
    assert view.import_file(path), view.last_error
    assert view.dataframe()["batch_size"].tolist() == [1, 2, 4]


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("random.db", os.urandom(4096), "corrupt"),
        ("empty.db", b"", "empty"),
        (
            "missing.csv",
            b"model,backend\nresnet18,torch\n",
            "lacks the column(s) batch_size, per_image_ms",
        ),
        ("empty.csv", b"", "empty"),
        ("binary.csv", b"\x00\x01\x02" * 50, "not a"),
        ("empty.json", b"", "empty"),
        ("object.json", b'{"a": 1}', "not a list of measurements"),
        ("numbers.json", b"[1, 2, 3]", "not a list of measurement objects"),
        ("broken.json", b'[{"model": ', "not valid JSON"),
        ("rows.json", b'[{"model": "a"}]', "lacks the column(s) batch_size, per_image_ms"),
    ],
)
def test_bad_files_give_a_clear_message_and_keep_the_table(
    view: ResultsView,
    store_path: Path,
    tmp_path: Path,
    qtbot,
    name: str,
    content: bytes,
    expected: str,
) -> None:
    assert view.import_file(store_path)
    path = tmp_path / name
    path.write_bytes(content)
    with qtbot.waitSignal(view.import_failed) as failed:
        assert not view.import_file(path)
    message = failed.args[0]
    assert name in message and expected in message, message
    assert view.status_label.text() == message
    assert view.last_error == message
    assert view.model.rowCount() == 9  # the good data stay


def test_not_a_store_and_missing_file(view: ResultsView, tmp_path: Path) -> None:
    import sqlite3

    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("create table t (x int)")
    assert not view.import_file(other)
    assert "not a backbench results store" in (view.last_error or "")
    assert not view.import_file(tmp_path / "nope.csv")
    assert "No such file" in (view.last_error or "")


def test_filter_box_and_bad_query(view: ResultsView, store_path: Path, qtbot) -> None:
    view.import_file(store_path)
    with qtbot.waitSignal(view.selection_changed) as emitted:
        view.set_filter("backend:openvino batch>=2")
    assert set(emitted.args[0]["backend"]) == {"openvino"}
    assert set(emitted.args[0]["batch_size"]) == {2}
    assert view.count_label.text() == "2 of 9 rows"
    view.set_filter("colour:red")
    assert "No column 'colour'" in view.status_label.text()
    assert view.proxy.rowCount() == 2  # the last good filter stays
    view.set_filter("")
    assert view.proxy.rowCount() == 9
    # Typing is debounced: the filter applies once the user pauses.
    view.filter_edit.setText("alexnet")
    qtbot.waitUntil(lambda: view.proxy.rowCount() == 4, timeout=3000)


def test_row_click_emits_model_and_select_model_does_not(
    view: ResultsView, store_path: Path, qtbot
) -> None:
    view.import_file(store_path)
    column = view.model.column_index("model")
    proxy_row = next(
        r
        for r in range(view.proxy.rowCount())
        if view.proxy.index(r, column).data(Qt.ItemDataRole.UserRole) == "alexnet"
    )
    with qtbot.waitSignal(view.model_selected) as picked:
        view.table.selectionModel().setCurrentIndex(
            view.proxy.index(proxy_row, column),
            QItemSelectionModel.SelectionFlag.ClearAndSelect
            | QItemSelectionModel.SelectionFlag.Rows,
        )
    assert picked.args == ["alexnet"]
    with qtbot.assertNotEmitted(view.model_selected):
        count = view.select_model("resnet18")
    assert count == 4
    assert set(view.selected_rows()["model"]) == {"resnet18"}


def test_sort_by_clicking_header_is_numeric(view: ResultsView, store_path: Path) -> None:
    view.import_file(store_path)
    column = view.model.column_index("per_image_ms")
    view.table.sortByColumn(column, Qt.SortOrder.DescendingOrder)
    values = [
        view.proxy.index(r, column).data(Qt.ItemDataRole.UserRole)
        for r in range(view.proxy.rowCount())
    ]
    present = [v for v in values if v is not None]
    assert present == sorted(present, reverse=True)
    assert values[-1] is None  # the failed case has no time: last


def test_export_csv_keeps_raw_values(view: ResultsView, store_path: Path, tmp_path: Path) -> None:
    view.import_file(store_path)
    view.set_filter("openvino")
    written = view.export_csv(tmp_path / "out" / "rows.csv")
    assert written is not None
    back = pd.read_csv(written)
    assert len(back) == 4
    assert back["per_image_ms"].tolist() == pytest.approx(
        view.dataframe()["per_image_ms"].tolist(), rel=1e-12
    )
    assert view.export_csv(tmp_path / "rows.xlsx") is None
    assert "unknown file type" in (view.last_error or "")


def test_append_and_add_dataframe_replace_a_refetched_run(
    view: ResultsView, store_path: Path, tmp_path: Path
) -> None:
    view.import_file(store_path)
    extra = pd.DataFrame(
        {"model": ["mobilenet_v2"] * 2, "backend": ["onnxruntime"] * 2, "device": ["cpu"] * 2,
         "precision": ["fp32"] * 2, "batch_size": [1, 2], "per_image_ms": [1.0, 0.8],
         "status": ["ok"] * 2, "run_id": [7, 7], "run_name": ["colab"] * 2}
    )  # fmt: skip
    extra.to_csv(tmp_path / "colab.csv", index=False)
    assert view.import_file(tmp_path / "colab.csv", append=True)
    assert view.model.rowCount() == 11
    assert view.runs_table.rowCount() == 3
    view.add_dataframe(
        extra.assign(per_image_ms=[2.0, 1.5]),
        source_label="agent-a",
        runs=[{"id": 7, "name": "colab", "manifest": {"host": "a"}}],
    )
    assert view.model.rowCount() == 13
    view.add_dataframe(
        extra.assign(per_image_ms=[3.0, 2.5]),
        source_label="agent-a",
        runs=[{"id": 7, "name": "colab", "manifest": {"host": "a"}}],
    )
    assert view.model.rowCount() == 13  # the same agent's run 7 replaced, not doubled
    assert sorted(view.dataframe()["per_image_ms"].tail(2)) == [2.5, 3.0]


# -- issue 9: where the time went, disturbed cases, the model's memory -----------------------


def timed_measurement(
    batch: int, phases: dict[str, float], wall_s: float, interference: float, disturbed: bool
) -> Measurement:
    m = measurement("resnet18", Backend.TORCH, "cpu", batch, 2.0 * batch)
    return Measurement(
        **{f: getattr(m, f) for f in ("case", "status", "stats", "samples_ns", "throughput_ips",
                                      "params", "flops")},
        peak_rss_mb=500.0, baseline_rss_mb=380.0, phase_s=phases, duration_s=wall_s,
        interference=interference, disturbed=disturbed,
    )  # fmt: skip


@pytest.fixture
def timed_store(tmp_path: Path) -> Path:
    """Two cases: 412 s of wall time, 333.72 s of it warm-up and timed loop (81%)."""
    path = tmp_path / "timed.db"
    store = Store(path)
    spec = RunSpec(models=("resnet18",), batch_sizes=(1, 8), name="timed", disturbed_threshold=0.1)
    run = store.create_run(spec, MANIFEST_EDGE, status="finished")
    clean = {"convert": 0.0, "start": 0.6, "load": 1.5, "compile": 0.25, "warmup": 10.0, "measure": 150.0}
    busy = {"convert": 3.5, "start": 0.5, "load": 2.0, "compile": 1.0, "warmup": 20.0, "measure": 153.72}
    store.add_measurement(run.id, timed_measurement(1, clean, 200.0, 0.02, False))
    store.add_measurement(run.id, timed_measurement(8, busy, 212.0, 0.4213, True))
    store.close()
    return path


def test_run_details_show_where_the_time_went(view: ResultsView, timed_store: Path) -> None:
    assert view.import_file(timed_store), view.last_error
    details = view.details
    time_item = details.section("Time")
    assert time_item is not None
    assert time_item.text(1) == "412 s wall, 81% measuring"
    cases = {time_item.child(i).text(0): time_item.child(i).text(1) for i in range(time_item.childCount())}
    # A cached model's conversion (0 s) is left out; a real one is shown first.
    assert cases["resnet18 b1"] == "load 1.5 s, compile 0.25 s, warm-up 10 s, measure 150 s, wall 200 s"
    assert cases["resnet18 b8"].startswith(
        "convert 3.5 s, load 2 s, compile 1 s, warm-up 20 s, measure 154 s, wall 212 s"
    )
    assert "disturbed: 0.42 cores of other work" in cases["resnet18 b8"]
    assert "disturbed" not in cases["resnet18 b1"]
    disturbed = details.section("Disturbed")
    assert disturbed is not None
    assert disturbed.text(1) == "⚠ 1 of 2 cases (other processes above 0.1 cores)"
    assert [disturbed.child(i).text(0) for i in range(disturbed.childCount())] == ["resnet18 b8"]
    payload = details.payload()["time"]
    assert payload["wall_s"] == pytest.approx(412.0)
    assert payload["measuring_share"] == pytest.approx(333.72 / 412.0)


def test_the_table_flags_the_disturbed_case_and_shows_the_model_memory(
    view: ResultsView, timed_store: Path
) -> None:
    assert view.import_file(timed_store), view.last_error
    model = view.model
    columns = model.columns()
    for name in ("disturbed", "interference", "attempt", "model_rss_mb"):
        assert name in columns and not view.table.isColumnHidden(columns.index(name)), name
    assert columns.index("model_rss_mb") < columns.index("peak_rss_mb")
    assert model.headerData(columns.index("model_rss_mb"), Qt.Orientation.Horizontal) == "model memory (MB)"
    rows = {model.raw(r, columns.index("batch_size")): r for r in range(model.rowCount())}
    busy, clean = rows[8], rows[1]

    def cell(row: int, name: str, role=Qt.ItemDataRole.DisplayRole):
        return model.data(model.index(row, columns.index(name)), role)

    assert cell(busy, "disturbed") == "yes" and cell(clean, "disturbed") == "no"
    assert cell(busy, "interference") == "0.42"
    assert cell(busy, "model_rss_mb") == "120"  # 500 MB peak - 380 MB baseline
    assert cell(busy, "attempt") == "1"
    # The whole disturbed row is tinted and says why; the clean one is not.
    for name in ("model", "per_image_ms", "disturbed"):
        assert cell(busy, name, Qt.ItemDataRole.BackgroundRole) is not None, name
        assert cell(clean, name, Qt.ItemDataRole.BackgroundRole) is None, name
    assert "0.42 cores" in cell(busy, "disturbed", Qt.ItemDataRole.ToolTipRole)
    assert view.count_label.text() == "2 of 2 rows, 1 disturbed"
    view.set_filter("disturbed=no")
    assert view.dataframe()["batch_size"].tolist() == [1]
    assert view.count_label.text() == "1 of 2 rows"
    view.set_filter("disturbed=yes")
    assert view.dataframe()["batch_size"].tolist() == [8]


def test_older_results_without_the_new_columns_still_display(view: ResultsView, tmp_path: Path) -> None:
    old = pd.DataFrame(
        {"model": ["alexnet"] * 2, "backend": ["torch"] * 2, "device": ["cpu"] * 2,
         "precision": ["fp32"] * 2, "batch_size": [1, 2], "per_image_ms": [1.0, 0.8],
         "peak_rss_mb": [400.0, 420.0], "status": ["ok"] * 2, "run_id": [3, 3], "run_name": ["old"] * 2}
    )  # fmt: skip
    old.to_csv(tmp_path / "old.csv", index=False)
    assert view.import_file(tmp_path / "old.csv"), view.last_error
    assert view.model.rowCount() == 2
    assert view.count_label.text() == "2 of 2 rows"
    time_item = view.details.section("Time")
    assert time_item is not None and time_item.text(1).startswith("not recorded")
    assert view.details.section("Disturbed") is None
    column = view.model.column_index("peak_rss_mb")
    assert view.model.data(view.model.index(0, column)) == "400"
    for row in range(2):
        assert view.model.data(view.model.index(row, 0), Qt.ItemDataRole.BackgroundRole) is None
    # A file that has the columns but no values in them (an agent that did not fill them).
    blank = old.assign(disturbed=[None, None], model_rss_mb=[None, None], wall_s=[None, None])
    view.set_dataframe(blank, "blank")
    assert view.count_label.text() == "2 of 2 rows"
    assert view.model.data(view.model.index(0, view.model.column_index("model_rss_mb"))) == "–"
    view.set_filter("disturbed=no")
    assert view.proxy.rowCount() == 0  # unknown is neither yes nor no
