"""core.analysis.load: a store, a CSV or a JSON export read into the long DataFrame, the
one reader behind the CLI's analysis commands and the GUI's import."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.analysis.load import (
    LoadedData,
    file_kind,
    load_csv_file,
    load_file,
    load_json_file,
    load_store,
)
from core.errors import DataError, StoreError, UsageError
from core.results import Backend, Case, LatencyStats, Measurement, Precision, RunSpec, Status
from core.store import Store

MANIFEST_A = {"host": "edge", "cpu_model": "Test CPU"}
MANIFEST_B = {"host": "cloud", "cpu_model": "Big Iron"}


def measurement(model: str, batch: int, ms: float) -> Measurement:
    samples = tuple(int(ms * 1e6) + 1000 * (i % 3) for i in range(9))
    return Measurement(
        case=Case(model, Backend.TORCH, "cpu", Precision.FP32, batch),
        status=Status.OK,
        stats=LatencyStats.from_samples(samples),
        samples_ns=samples,
    )


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    """Three runs: two on one machine (the same manifest), one elsewhere."""
    path = tmp_path / "results.db"
    with Store(path) as store:
        for name, manifest in (("a1", MANIFEST_A), ("b", MANIFEST_B), ("a2", MANIFEST_A)):
            spec = RunSpec(models=("resnet18",), batch_sizes=(1, 2), name=name)
            run = store.create_run(spec, manifest, status="finished")
            for batch in (1, 2):
                store.add_measurement(run.id, measurement("resnet18", batch, 2.0 * batch))
    return path


def test_a_store_loads_every_run_with_its_manifests_once(store_path: Path) -> None:
    loaded = load_store(store_path)
    assert len(loaded.frame) == 6
    assert [r.name for r in loaded.runs] == ["a1", "b", "a2"]
    assert loaded.manifests == (MANIFEST_A, MANIFEST_B)
    assert loaded.source == f"store {store_path}"
    assert loaded.run_label == "3 runs: a1 (id 1), b (id 2), a2 (id 3)"


def test_one_run_of_a_store_by_name_or_id(store_path: Path) -> None:
    by_name = load_store(store_path, "b")
    assert len(by_name.frame) == 2 and set(by_name.frame["run_name"]) == {"b"}
    assert by_name.run_label == "run b (id 2)" and by_name.manifests == (MANIFEST_B,)
    assert load_store(store_path, "3").run_label == "run a2 (id 3)"
    with pytest.raises(StoreError, match="No run 'nope'"):
        load_store(store_path, "nope")


def test_a_store_without_measurements_says_how_to_get_some(tmp_path: Path) -> None:
    Store(tmp_path / "empty.db").close()
    with pytest.raises(DataError, match="No measurements in .*backbench run"):
        load_store(tmp_path / "empty.db")
    (tmp_path / "zero.db").write_bytes(b"")
    with pytest.raises(StoreError, match="zero.db is empty"):
        load_store(tmp_path / "zero.db")
    with pytest.raises(StoreError, match="no results store"):
        load_store(tmp_path / "none.db")
    assert not (tmp_path / "none.db").exists()  # reading never creates a store


def test_a_csv_export_selects_a_run_by_its_columns(store_path: Path, tmp_path: Path) -> None:
    with Store(store_path) as store:
        store.export(tmp_path / "all.csv", "csv")
    whole = load_csv_file(tmp_path / "all.csv")
    assert len(whole.frame) == 6 and whole.runs == () and whole.run_label is None
    picked = load_csv_file(tmp_path / "all.csv", "a2")
    assert set(picked.frame["run_name"]) == {"a2"}
    assert picked.source == f"CSV {tmp_path / 'all.csv'} (run a2)"
    with pytest.raises(DataError, match="No rows of run 'zz'"):
        load_csv_file(tmp_path / "all.csv", "zz")
    (tmp_path / "bare.csv").write_text("model,batch_size,per_image_ms\nresnet18,1,2.0\n")
    with pytest.raises(UsageError, match="no run_id or run_name column"):
        load_csv_file(tmp_path / "bare.csv", "a2")


def test_json_rows_and_the_agents_measurement_form(tmp_path: Path) -> None:
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps([{"model": "a", "batch_size": 1, "per_image_ms": 1.5}]))
    assert load_json_file(rows).frame["per_image_ms"].tolist() == [1.5]
    nested = tmp_path / "agent.json"
    items = [measurement("resnet18", b, 2.0 * b).to_dict() for b in (1, 2)]
    nested.write_text(json.dumps({"measurements": items}))
    assert load_json_file(nested).frame["batch_size"].tolist() == [1, 2]
    (tmp_path / "object.json").write_text('{"a": 1}')
    with pytest.raises(DataError, match="not a list of measurements"):
        load_json_file(tmp_path / "object.json")


def test_a_file_is_told_apart_by_suffix_then_by_content(store_path: Path, tmp_path: Path) -> None:
    sniffed = tmp_path / "results"
    sniffed.write_bytes(store_path.read_bytes())
    (tmp_path / "rows").write_text('[{"model": "a"}]')
    (tmp_path / "table").write_text("model,batch_size\n")
    assert [file_kind(tmp_path / n) for n in ("results", "rows", "table")] == ["store", "json", "csv"]
    assert file_kind(tmp_path / "x.sqlite") == "store"  # the suffix decides, unopened
    loaded = load_file(sniffed)
    assert isinstance(loaded, LoadedData) and len(loaded.runs) == 3


def test_a_file_must_hold_the_columns_a_results_table_needs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="No such file"):
        load_file(tmp_path / "missing.csv")
    (tmp_path / "few.csv").write_text("model,backend\nresnet18,torch\n")
    with pytest.raises(DataError, match="few.csv lacks the column.s. batch_size, per_image_ms"):
        load_file(tmp_path / "few.csv")
    (tmp_path / "none.json").write_text("[]")
    with pytest.raises(DataError, match="none.json lacks the column"):
        load_file(tmp_path / "none.json")
    # The analysis commands read a CSV without that check: predict derives per_image_ms.
    assert list(load_csv_file(tmp_path / "few.csv").frame.columns) == ["model", "backend"]
