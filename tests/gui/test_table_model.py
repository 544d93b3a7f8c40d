"""The results table model and its sort/filter proxy, tested without showing a widget."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import math

import numpy as np
import pandas as pd
import pytest
from PySide6.QtCore import Qt

from gui.table_model import RAW_ROLE, DataFrameModel, ResultsProxyModel, query_mask

DISPLAY = Qt.ItemDataRole.DisplayRole


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "model": ["resnet18", "resnet101", "resnet152", "resnet34", "alexnet"],
            "backend": ["torch", "openvino", "torch", "onnxruntime", "openvino"],
            "device": ["cpu", "CPU", "cuda:0", "cpu", "CPU"],
            "batch_size": [9, 10, 2, 100, 1],
            "per_image_ms": [2.3456789, 10.0, np.nan, 0.5, 123456.789],
            "ci95_rel": [0.0123, 0.004, np.nan, 0.02, 0.001],
            "params": [11_689_512, 44_549_160, 60_192_808, 21_797_672, 61_100_840],
            "flops": [3.6e9, 15.6e9, 23.1e9, 7.3e9, 1.4e9],
            "status": ["ok", "ok", "failed", "ok", "ok"],
            "error": [None, None, "CUDA out of memory", None, None],
        }
    )


@pytest.fixture
def models(qapp):
    model = DataFrameModel(frame())
    proxy = ResultsProxyModel()
    proxy.setSourceModel(model)
    yield model, proxy
    # Qt objects must not outlive the QApplication: without this the interpreter's
    # shutdown destroys them after it and crashes (SIGSEGV at exit).
    proxy.setSourceModel(None)
    del proxy, model
    import gc

    gc.collect()


def column(model: DataFrameModel, name: str) -> int:
    return model.column_index(name)


def proxy_column(proxy: ResultsProxyModel, model: DataFrameModel, name: str, role=RAW_ROLE) -> list:
    c = column(model, name)
    return [proxy.data(proxy.index(r, c), role) for r in range(proxy.rowCount())]


def test_counts_and_display_vs_raw_roles(models) -> None:
    model, _ = models
    assert model.rowCount() == 5
    assert model.columnCount() == 10
    per_image = model.index(0, column(model, "per_image_ms"))
    assert model.data(per_image, DISPLAY) == "2.346"
    assert model.data(per_image, RAW_ROLE) == pytest.approx(2.3456789)
    assert model.data(per_image, Qt.ItemDataRole.EditRole) == pytest.approx(2.3456789)
    big = model.index(4, column(model, "per_image_ms"))
    assert model.data(big, DISPLAY) == "123,457"
    assert model.data(big, RAW_ROLE) == pytest.approx(123456.789)
    params = model.index(0, column(model, "params"))
    assert model.data(params, DISPLAY) == "11.69"  # shown in millions, as the header says
    assert model.data(params, RAW_ROLE) == 11_689_512
    assert model.data(model.index(0, column(model, "flops")), DISPLAY) == "3.6"
    assert model.data(model.index(0, column(model, "ci95_rel")), DISPLAY) == "1.23"
    assert model.data(model.index(0, column(model, "batch_size")), DISPLAY) == "9"
    # Numbers are right-aligned, text left.
    align = model.data(per_image, Qt.ItemDataRole.TextAlignmentRole)
    assert align & Qt.AlignmentFlag.AlignRight


def test_header_units_and_tooltips(models) -> None:
    model, _ = models
    headers = {
        model.headerData(i, Qt.Orientation.Horizontal, RAW_ROLE): model.headerData(
            i, Qt.Orientation.Horizontal
        )
        for i in range(model.columnCount())
    }
    assert headers["per_image_ms"] == "per image (ms)"
    assert headers["params"] == "params (M)"
    assert headers["flops"] == "FLOPs (G)"
    assert headers["ci95_rel"] == "CI95 (±%)"
    assert headers["batch_size"] == "batch"
    tip = model.headerData(
        column(model, "flops"), Qt.Orientation.Horizontal, Qt.ItemDataRole.ToolTipRole
    )
    assert "flops" in tip and "2 x MACs" in tip


def test_numeric_sort_is_numeric_and_text_sort_is_natural(models) -> None:
    model, proxy = models
    proxy.sort(column(model, "batch_size"), Qt.SortOrder.AscendingOrder)
    assert proxy_column(proxy, model, "batch_size") == [1, 2, 9, 10, 100]  # not 1, 10, 100, 2, 9
    proxy.sort(column(model, "batch_size"), Qt.SortOrder.DescendingOrder)
    assert proxy_column(proxy, model, "batch_size") == [100, 10, 9, 2, 1]
    proxy.sort(column(model, "model"), Qt.SortOrder.AscendingOrder)
    assert proxy_column(proxy, model, "model") == [
        "alexnet",
        "resnet18",
        "resnet34",
        "resnet101",
        "resnet152",
    ]


def test_numbers_stored_as_text_sort_as_numbers(qapp) -> None:
    model = DataFrameModel(pd.DataFrame({"run_id": ["10", "9", "100", None, "2"]}))
    proxy = ResultsProxyModel()
    proxy.setSourceModel(model)
    proxy.sort(0, Qt.SortOrder.AscendingOrder)
    assert [proxy.data(proxy.index(r, 0), RAW_ROLE) for r in range(5)] == [
        "2",
        "9",
        "10",
        "100",
        None,
    ]


def test_missing_values_show_blank_and_sort_last_both_ways(models) -> None:
    model, proxy = models
    missing = model.index(2, column(model, "per_image_ms"))
    assert model.data(missing, DISPLAY) == "–"
    assert model.data(missing, RAW_ROLE) is None
    assert model.data(model.index(0, column(model, "error")), DISPLAY) == ""
    assert model.data(model.index(0, column(model, "error")), RAW_ROLE) is None
    for order in (Qt.SortOrder.AscendingOrder, Qt.SortOrder.DescendingOrder):
        proxy.sort(column(model, "per_image_ms"), order)
        values = proxy_column(proxy, model, "per_image_ms")
        assert values[-1] is None
        present = values[:-1]
        assert present == sorted(present, reverse=order == Qt.SortOrder.DescendingOrder)


def test_nan_none_and_na_in_object_and_nullable_columns(qapp) -> None:
    df = pd.DataFrame(
        {
            "model": pd.Series(["a", None, "c"], dtype="string"),
            "peak_rss_mb": pd.Series([1.5, None, 3.0], dtype="Float64"),
            "target_met": [True, None, False],
        }
    )
    model = DataFrameModel(df)
    assert [model.data(model.index(r, 0), DISPLAY) for r in range(3)] == ["a", "", "c"]
    assert model.data(model.index(1, 1), RAW_ROLE) is None
    assert model.data(model.index(0, 2), DISPLAY) == "yes"
    assert model.data(model.index(2, 2), DISPLAY) == "no"


def test_failed_rows_are_coloured(models) -> None:
    model, _ = models
    assert model.data(model.index(2, 0), Qt.ItemDataRole.ForegroundRole) is not None
    assert model.data(model.index(0, 0), Qt.ItemDataRole.ForegroundRole) is None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("resnet", ["resnet18", "resnet101", "resnet152", "resnet34"]),
        ("OPENVINO", ["resnet101", "alexnet"]),  # any case, matches the backend
        ("failed", ["resnet152"]),  # status
        ("cuda", ["resnet152"]),  # device
        ("backend:torch", ["resnet18", "resnet152"]),
        ("batch>=10", ["resnet101", "resnet34"]),
        ("batch_size<9", ["resnet152", "alexnet"]),
        ("params>50", ["resnet152", "alexnet"]),  # millions, the header's unit
        ("flops<=3.6", ["resnet18", "alexnet"]),  # GFLOPs
        ("resnet batch!=100 per_image_ms<5", ["resnet18"]),
        ("", ["resnet18", "resnet101", "resnet152", "resnet34", "alexnet"]),
    ],
)
def test_filter_queries(query: str, expected: list[str]) -> None:
    df = frame()
    assert df.loc[query_mask(df, query), "model"].tolist() == expected


def test_proxy_filter_and_bad_query_keeps_previous_filter(models) -> None:
    model, proxy = models
    assert proxy.set_query("openvino")
    assert sorted(proxy_column(proxy, model, "model")) == ["alexnet", "resnet101"]
    assert not proxy.set_query("nosuchcolumn>3")
    assert "nosuchcolumn" in (proxy.query_error or "")
    assert proxy.rowCount() == 2  # the previous filter stays
    assert not proxy.set_query("batch>big")
    assert "needs a number" in (proxy.query_error or "")
    allowed = np.array([True, True, False, False, False])
    proxy.set_allowed_rows(allowed)
    assert proxy_column(proxy, model, "model") == ["resnet101"]
    assert proxy.accepted_mask().tolist() == [False, True, False, False, False]


def test_new_data_keeps_the_query_and_drops_the_row_restriction(models) -> None:
    model, proxy = models
    proxy.set_query("batch>=9")
    proxy.set_allowed_rows(np.array([True, False, False, False, False]))
    bigger = pd.concat([frame(), frame()], ignore_index=True)
    model.set_dataframe(bigger)
    assert proxy.rowCount() == 6  # 3 rows with batch >= 9, twice
    assert math.isclose(sum(proxy_column(proxy, model, "batch_size")), 2 * (9 + 10 + 100))


def test_yes_no_columns_from_a_store_a_csv_or_json_read_alike(qapp) -> None:
    from gui.table_model import disturbed_mask, truth_values

    raw = pd.Series([True, False, None, "True", "false", "yes", 1.0, 0.0, np.nan, "maybe"], dtype=object)
    assert truth_values(raw).tolist() == [True, False, pd.NA, True, False, True, True, False, pd.NA, pd.NA]
    assert disturbed_mask(pd.DataFrame({"disturbed": raw})).tolist() == [
        True, False, False, True, False, True, True, False, False, False,
    ]  # fmt: skip
    assert disturbed_mask(pd.DataFrame({"model": ["a", "b"]})).tolist() == [False, False]
    data = pd.DataFrame({"model": ["a", "b", "c"], "disturbed": ["True", "False", ""]})
    assert query_mask(data, "disturbed=yes").tolist() == [True, False, False]
    assert query_mask(data, "disturbed:no").tolist() == [False, True, False]
    assert query_mask(data, "disturbed!=yes").tolist() == [False, True, True]
    with pytest.raises(ValueError, match="yes or no"):
        query_mask(data, "disturbed>yes")
