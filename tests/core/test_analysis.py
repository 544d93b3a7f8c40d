"""The analysis library on synthetic data of known structure."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from core.analysis import (
    analyze,
    cluster_curves,
    fit_curve,
    fit_lines,
    load_csv,
    pareto_front,
    prepare,
)
from core.analysis.accuracy import model_accuracies, wilson_interval
from core.analysis.data import REFERENCE, without_disturbed
from core.analysis.speedup import speedup_table
from core.errors import DataError, UsageError

BATCHES = (1, 2, 4, 8, 16, 32)
TOP_LEVEL = {
    "latency_vs_batch",
    "memory_vs_params",
    "accuracy_density",
    "pareto",
    "speedup",
    "input",
    "notes",
    "skipped",
}


def curve_rows(
    groups: list[tuple[float, float]],
    per_group: int = 4,
    platform: tuple[str, str, str] = ("torch", "cpu", "fp32"),
    factor: float = 1.0,
    noise: float = 0.02,
    seed: int = 0,
    batches: tuple[int, ...] = BATCHES,
) -> pd.DataFrame:
    """Models in groups whose per-image time is factor*(a + b/x), with multiplicative
    noise: times exp(noise * N(0, 1)), the error model the curve fit assumes."""
    rng = np.random.default_rng(seed)
    rows = []
    for g, (a, b) in enumerate(groups):
        for i in range(per_group):
            for x in batches:
                ms = factor * (a + b / x) * math.exp(noise * rng.standard_normal())
                rows.append(
                    {
                        "model": f"g{g}_m{i}",
                        "backend": platform[0],
                        "device": platform[1],
                        "precision": platform[2],
                        "batch_size": x,
                        "per_image_ms": ms,
                        "status": "ok",
                    }
                )
    return pd.DataFrame(rows)


def full_frame() -> pd.DataFrame:
    """Two platforms, 3 speed groups, accuracy with n_eval_images, memory on two lines."""
    torch = curve_rows([(1.5, 6.0), (6.0, 20.0), (25.0, 60.0)], platform=("torch", "cpu", "fp32"))
    ov = torch.copy()
    ov["backend"], ov["device"], ov["per_image_ms"] = "openvino", "CPU", torch["per_image_ms"] / 2.0
    frame = pd.concat([torch, ov], ignore_index=True)
    models = sorted(frame["model"].unique())
    params = {m: 2e6 + 9e6 * i for i, m in enumerate(models)}
    frame["params"] = frame["model"].map(params)
    frame["flops"] = frame["params"] * 100
    mb = frame["params"] * 4 / 2**20
    odd = frame["model"].map({m: i % 2 for i, m in enumerate(models)})
    frame["peak_rss_mb"] = np.where(odd == 1, 1.71 * mb + 300, 0.91 * mb + 250)
    frame["top1"] = frame["model"].map({m: 60 + i for i, m in enumerate(models)})
    frame["top5"] = frame["top1"] + 15
    frame["n_eval_images"] = 1000
    return frame


@pytest.fixture(scope="module")
def full_analysis() -> dict:
    return analyze(full_frame(), run="demo")


# ---- input ---------------------------------------------------------------------------


def test_csv_without_required_columns_names_them(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("model,latency_ms_median\nresnet18,5\n")
    with pytest.raises(DataError) as err:
        prepare(load_csv(path))
    text = str(err.value)
    assert "batch_size" in text and "per_image_ms" in text
    assert "model, batch_size, per_image_ms" in text  # the required set


def test_non_numeric_value_names_column_row_and_value() -> None:
    frame = pd.DataFrame({"model": ["a", "b"], "batch_size": [1, 1], "per_image_ms": [2.0, "fast"]})
    with pytest.raises(DataError) as err:
        prepare(frame)
    text = str(err.value)
    assert "'per_image_ms'" in text and "row 2" in text and "'fast'" in text and "'b'" in text


def test_missing_required_values_dropped_with_note_or_error() -> None:
    frame = pd.DataFrame(
        {"model": ["a", "b", None], "batch_size": [1, None, 1], "per_image_ms": [2.0, 3.0, 1.0]}
    )
    inp = prepare(frame)
    assert inp.models == ["a"]
    assert inp.n_dropped_missing == 2
    assert any("2 row(s)" in note for note in inp.notes)
    with pytest.raises(DataError, match="No row has all"):
        prepare(pd.DataFrame({"model": ["a"], "batch_size": [1], "per_image_ms": [None]}))


def test_empty_binary_and_non_csv_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="is empty"):
        load_csv(empty)
    binary = tmp_path / "r.db"
    binary.write_bytes(b"SQLite format 3\x00\x01\x02\xff\xfe")
    with pytest.raises(DataError, match="not"):
        load_csv(binary)
    text = tmp_path / "r.json"
    text.write_text('{"runs": [1, 2, 3]}\n')
    with pytest.raises(DataError, match="does not look like a results CSV"):
        load_csv(text)
    with pytest.raises(DataError, match="No such file"):
        load_csv(tmp_path / "missing.csv")


def test_status_filter_platform_and_reference_accuracy_from_zoo() -> None:
    frame = pd.DataFrame(
        {
            "model": ["resnet18", "resnet18", "resnet18"],
            "backend": ["torch", "torch", None],
            "device": ["cpu", "cpu", "cpu"],
            "batch_size": [1, 2, 1],
            "per_image_ms": [5.0, 4.0, 9.0],
            "status": ["ok", "failed", "ok"],
        }
    )
    inp = prepare(frame)
    assert inp.n_excluded_status == 1
    assert any("1 failed" in note for note in inp.notes)
    assert inp.platforms == ["torch/cpu/unknown", "unknown/cpu/unknown"]
    row = inp.frame.iloc[0]
    assert row["params"] == 11_689_512  # torchvision's resnet18
    assert row["flops"] > 3e9
    assert row["top1"] == pytest.approx(69.758)
    assert row["accuracy_source"] == REFERENCE


def test_reference_accuracy_never_mixes_with_measured_for_one_model() -> None:
    frame = pd.DataFrame(
        {
            "model": ["resnet18", "resnet18"],
            "batch_size": [1, 8],
            "per_image_ms": [5.0, 2.0],
            "top1": [70.5, None],
        }
    )
    inp = prepare(frame)
    assert inp.frame["accuracy_source"].tolist() == ["measured", None]
    assert np.isnan(inp.frame.loc[1, "top1"])  # not the zoo's 69.758
    assert inp.frame.loc[1, "params"] == 11_689_512


def test_measured_accuracy_as_fraction_is_read_as_percent() -> None:
    frame = pd.DataFrame(
        {"model": ["a"], "batch_size": [1], "per_image_ms": [1.0], "top1": [0.75], "params": [1e6]}
    )
    inp = prepare(frame)
    assert inp.frame.loc[0, "top1"] == pytest.approx(75.0)
    assert inp.frame.loc[0, "accuracy_source"] == "measured"


# ---- accuracy ------------------------------------------------------------------------


def test_wilson_interval_known_values() -> None:
    eight_of_ten = wilson_interval(80.0, 10)
    assert eight_of_ten.low == pytest.approx(49.02, abs=0.01)
    assert eight_of_ten.high == pytest.approx(94.33, abs=0.01)
    half = wilson_interval(50.0, 100)
    assert (half.low, half.high) == (
        pytest.approx(40.383, abs=1e-3),
        pytest.approx(59.617, abs=1e-3),
    )


def test_accuracy_density_and_error_bars() -> None:
    frame = pd.DataFrame(
        {
            "model": ["a", "b"],
            "batch_size": [1, 1],
            "per_image_ms": [1.0, 2.0],
            "params": [2e6, 10e6],
            "top1": [80.0, 70.0],
            "n_eval_images": [10, 10],
        }
    )
    models = {m.model: m for m in model_accuracies(prepare(frame))}
    assert models["a"].density == pytest.approx(40.0)
    assert models["a"].density_low == pytest.approx(49.016 / 2, abs=1e-3)
    assert models["b"].density == pytest.approx(7.0)
    section = analyze(frame)["accuracy_density"]
    assert section["error_bars"].startswith("Wilson")
    assert [m["model"] for m in section["models"]] == ["a", "b"]

    no_n = analyze(frame.drop(columns="n_eval_images"))["accuracy_density"]
    assert "n_eval_images" in no_n["error_bars"]
    assert all(m["density_ci95"] is None for m in no_n["models"])


# ---- latency vs batch ----------------------------------------------------------------


def test_three_groups_of_curves_are_recovered_exactly() -> None:
    frame = curve_rows([(1.5, 6.0), (6.0, 20.0), (25.0, 60.0)], per_group=5, noise=0.03)
    curves = frame.pivot(index="model", columns="batch_size", values="per_image_ms")
    result = cluster_curves(curves)
    assert result.k == 3
    truth = [int(m[1]) for m in curves.index]
    assert adjusted_rand_score(truth, [result.labels[m] for m in curves.index]) == 1.0
    assert result.labels["g0_m0"] == 0 and result.labels["g2_m0"] == 2  # numbered fastest first


def test_inverse_curve_recovered_with_parameters_within_5_percent() -> None:
    frame = curve_rows(
        [(2.0, 8.0)], per_group=5, noise=0.02, seed=3, batches=(1, 2, 4, 8, 16, 32, 64)
    )
    best, candidates, reason = fit_curve(frame["batch_size"], frame["per_image_ms"])
    assert reason is None and best is not None
    assert best.formula == "a + b/x"
    assert best.params["a"] == pytest.approx(2.0, rel=0.05)
    assert best.params["b"] == pytest.approx(8.0, rel=0.05)
    assert {c["form"] for c in candidates} == {"inverse", "exponential", "power", "log"}
    assert all(c["delta_aicc"] > 0 for c in candidates if c["form"] != "inverse")


def test_power_law_is_selected_for_power_law_data() -> None:
    rng = np.random.default_rng(5)
    x = np.tile([1, 2, 4, 8, 16, 32, 64], 4).astype(float)
    y = 5.0 * x**-0.3 * np.exp(0.02 * rng.standard_normal(x.size))
    best, _, _ = fit_curve(x, y)
    assert best is not None and best.form == "power"
    assert best.params["b"] == pytest.approx(-0.3, abs=0.02)


def test_prediction_band_covers_about_95_percent_of_new_points() -> None:
    rng = np.random.default_rng(11)
    xs = np.array([1, 2, 4, 8, 16, 32], dtype=float)

    def draw(reps: int) -> tuple[np.ndarray, np.ndarray]:
        x = np.tile(xs, reps)
        return x, (3.0 + 12.0 / x) * np.exp(0.1 * rng.standard_normal(x.size))

    best, _, _ = fit_curve(*draw(8), forms=("inverse",))
    assert best is not None
    x_new, y_new = draw(400)
    fitted, lower, upper = best.band(x_new)
    # Built on the log scale: symmetric there, so lower * upper = fit^2.
    assert np.allclose(np.log(upper) - np.log(fitted), np.log(fitted) - np.log(lower))
    inside = (np.log(y_new) >= np.log(lower)) & (np.log(y_new) <= np.log(upper))
    assert 0.92 <= float(np.mean(inside)) <= 0.98


def test_band_stays_positive_and_covers_new_models_spanning_decades() -> None:
    """Models whose levels differ by orders of magnitude, as real backbones do: the band
    for one more model is positive at every batch size (an additive band went below 0 ms
    here) and holds about 95% of fresh models' points on the log scale."""
    rng = np.random.default_rng(21)
    xs = np.array([1, 2, 4, 8, 16, 32, 64], dtype=float)

    def models(n: int) -> tuple[np.ndarray, np.ndarray]:
        levels = np.exp(rng.normal(0.0, 1.0, n))  # about 0.14x to 7x the median model
        x = np.tile(xs, n)
        level = np.repeat(levels, xs.size)
        return x, level * (2.0 + 8.0 / x) * np.exp(0.04 * rng.standard_normal(x.size))

    x, y = models(40)
    best, _, _ = fit_curve(x, y)
    assert best is not None and best.form == "inverse"
    _, lower, upper = best.band(np.geomspace(1, 64, 50))
    assert np.all(lower > 0) and np.all(np.isfinite(upper))
    x_new, y_new = models(2000)
    _, lower, upper = best.band(x_new)
    inside = (np.log(y_new) >= np.log(lower)) & (np.log(y_new) <= np.log(upper))
    assert 0.92 <= float(np.mean(inside)) <= 0.98
    # The spread is between models; the trend through the centroids is near exact.
    assert best.r2 < 0.5 and best.r2_centroids > 0.99


def test_fit_is_least_squares_on_the_log_scale() -> None:
    """A few points far above the curve pull an additive fit up; on the log scale a
    point 10x too slow weighs as much as one 10x too fast."""
    x = np.repeat([1.0, 2.0, 4.0, 8.0, 16.0], 2)
    truth = 2.0 + 8.0 / x
    y = truth * np.tile([10.0, 0.1], 5)  # symmetric on the log scale
    best, _, _ = fit_curve(x, y, forms=("inverse",))
    assert best is not None
    assert best.params["a"] == pytest.approx(2.0, rel=1e-6)
    assert best.params["b"] == pytest.approx(8.0, rel=1e-6)


def test_non_positive_times_cannot_be_fitted() -> None:
    best, _, reason = fit_curve([1, 2, 4, 8], [3.0, 2.0, 0.0, 1.0])
    assert best is None and "positive" in reason


def test_too_few_points_gives_a_reason() -> None:
    best, _, reason = fit_curve([1, 2], [3.0, 2.0])
    assert best is None and "too few points" in reason


# ---- memory --------------------------------------------------------------------------


def test_two_memory_lines_recovered() -> None:
    rng = np.random.default_rng(2)
    x1, x2 = rng.uniform(5, 550, 15), rng.uniform(5, 550, 15)
    y1 = (1.71 * x1 + 300) * (1 + 0.01 * rng.standard_normal(15))
    y2 = (0.91 * x2 + 250) * (1 + 0.01 * rng.standard_normal(15))
    lines, bic, why = fit_lines(np.r_[x1, x2], np.r_[y1, y2])
    assert len(lines) == 2, why
    assert lines[0].slope == pytest.approx(1.71, rel=0.05)
    assert lines[1].slope == pytest.approx(0.91, rel=0.05)
    assert set(lines[0].members) == set(range(15)) and bic["2"] < bic["1"]


def test_one_memory_line_when_the_data_hold_one() -> None:
    rng = np.random.default_rng(4)
    x = rng.uniform(5, 550, 30)
    lines, _, why = fit_lines(x, (1.3 * x + 280) * (1 + 0.01 * rng.standard_normal(30)))
    assert len(lines) == 1, why
    assert lines[0].slope == pytest.approx(1.3, rel=0.05)


def test_memory_section_gives_slope_in_both_units(full_analysis: dict) -> None:
    fits = full_analysis["memory_vs_params"]["fits"]
    torch_fits = [f for f in fits if f["platform"] == "torch/cpu/fp32"]
    assert [round(f["slope"], 2) for f in torch_fits] == [1.71, 0.91]
    per_mparam = 1e6 * 4 / 2**20
    assert torch_fits[0]["slope_mb_per_mparam"] == pytest.approx(1.71 * per_mparam, rel=1e-3)


# ---- pareto and speedup --------------------------------------------------------------


def test_pareto_front_on_a_hand_made_set() -> None:
    accuracy = [70, 75, 80, 72, 80, 60]
    fps = [100, 50, 20, 40, 10, 100]
    # 3 is beaten by 1 (75 > 72, 50 > 40); 4 by 2; 5 by 0 (same fps, less accurate).
    assert pareto_front(accuracy, fps) == [True, True, True, False, False, False]
    assert pareto_front([1, 1], [2, 2]) == [True, True]  # equal points: neither beats the other


def test_pareto_section_uses_batch_1_fps() -> None:
    frame = pd.DataFrame(
        {
            "model": ["a", "b", "c", "a"],
            "batch_size": [1, 1, 1, 8],
            "per_image_ms": [10.0, 5.0, 20.0, 1.0],
            "top1": [70.0, 60.0, 65.0, 70.0],
        }
    )
    section = analyze(frame)["pareto"]["platforms"]["unknown/unknown/unknown"]
    assert section["front"] == ["b", "a"]
    assert {p["model"]: p["fps"] for p in section["points"]} == {"a": 100.0, "b": 200.0, "c": 50.0}


def test_pareto_uses_each_platforms_own_measured_accuracy() -> None:
    frame = pd.DataFrame(
        {
            "model": ["a", "b", "a", "b"],
            "backend": ["torch", "torch", "openvino", "openvino"],
            "batch_size": 1,
            "per_image_ms": [10.0, 5.0, 10.0, 5.0],
            "top1": [80.0, 70.0, 60.0, 70.0],  # a loses accuracy on openvino
        }
    )
    platforms = analyze(frame)["pareto"]["platforms"]
    assert platforms["torch/unknown/unknown"]["front"] == ["b", "a"]
    assert platforms["openvino/unknown/unknown"]["front"] == ["b"]


def test_speedup_ratios_exact_and_baseline_is_the_slowest() -> None:
    inp = prepare(full_frame())
    table, base, _ = speedup_table(inp)
    assert base == "torch/cpu/fp32"
    assert table is not None and np.allclose(table["speedup"], 2.0)
    given, base_given, rule = speedup_table(inp, baseline="openvino/CPU/fp32")
    assert given is not None and np.allclose(given["speedup"], 0.5) and rule == "given by the user"
    with pytest.raises(DataError, match="openvino/CPU/fp32"):
        speedup_table(inp, baseline="nope")


# ---- analyze -------------------------------------------------------------------------


def test_analyze_full_data_gives_every_section_as_strict_json(full_analysis: dict) -> None:
    result = full_analysis
    json.dumps(result, allow_nan=False)
    assert set(result) == TOP_LEVEL
    assert result["skipped"] == {}
    for name in ("latency_vs_batch", "memory_vs_params", "accuracy_density", "pareto", "speedup"):
        assert isinstance(result[name]["says"], str) and result[name]["says"]
    latency = result["latency_vs_batch"]
    assert latency["n_clusters"] == 3
    assert set(latency["per_platform"]) == {"torch/cpu/fp32", "openvino/CPU/fp32"}
    assert latency["fit"]["criterion"].startswith("lowest AICc")
    assert latency["centroids"]["1"] > latency["centroids"]["32"]
    fit = latency["fit"]
    assert fit["r2_scale"] == "log" and -1.0 <= fit["r2_raw"] <= 1.0
    band = fit["band"]
    assert all(
        0 < lo <= f <= hi
        for lo, f, hi in zip(band["lower_ms"], band["fit_ms"], band["upper_ms"], strict=True)
    )
    for detail in latency["cluster_details"]:
        assert detail["fit"]["r2"] > 0.9  # within a cluster the 2% noise is all there is
        assert min(detail["fit"]["band"]["lower_ms"]) > 0
    # Centroids are geometric means over the models.
    at_1 = [curve["1"] for curve in latency["curves"].values()]
    assert latency["centroids"]["1"] == pytest.approx(math.exp(np.mean(np.log(at_1))))
    assert result["speedup"]["geomean"]["openvino/CPU/fp32"]["1"]["speedup"] == pytest.approx(2.0)
    assert result["input"]["run"] == {"name": "demo"}


def test_single_model_gives_partial_analysis_with_reasons() -> None:
    frame = curve_rows([(2.0, 8.0)], per_group=1)
    frame["top1"], frame["params"], frame["peak_rss_mb"] = 70.0, 5e6, 300.0
    result = analyze(frame)
    json.dumps(result, allow_nan=False)
    assert result["latency_vs_batch"]["n_clusters"] == 1
    assert "too few to cluster" in result["latency_vs_batch"]["clustering"]["choice"]
    assert result["latency_vs_batch"]["fit"] is not None
    assert result["memory_vs_params"] is None
    assert "at least 3" in result["skipped"]["memory_vs_params"]
    assert result["speedup"] is None
    assert result["skipped"]["speedup"] == "only one platform (torch/cpu/fp32) in the data"
    assert result["pareto"]["platforms"]["torch/cpu/fp32"]["front"] == ["g0_m0"]


def test_single_batch_size_skips_latency_only() -> None:
    frame = full_frame()
    frame = frame[frame["batch_size"] == 1]
    result = analyze(frame)
    json.dumps(result, allow_nan=False)
    assert result["latency_vs_batch"] is None
    assert "only one batch size (1)" in result["skipped"]["latency_vs_batch"]
    assert result["memory_vs_params"] is not None and result["speedup"] is not None


def test_nans_and_failures_are_reported_and_analysis_goes_on() -> None:
    frame = full_frame()
    frame.loc[0, "per_image_ms"] = np.nan
    frame.loc[1, "status"] = "failed"
    frame.loc[2, "peak_rss_mb"] = np.nan
    result = analyze(frame)
    json.dumps(result, allow_nan=False)
    assert result["input"]["rows_dropped_missing"] == 1
    assert result["input"]["rows_excluded_status"] == 1
    assert any("status other than ok" in n for n in result["notes"])
    assert result["latency_vs_batch"] is not None


def test_no_accuracy_anywhere_skips_accuracy_parts_with_reason() -> None:
    result = analyze(curve_rows([(1.0, 4.0), (8.0, 30.0)], per_group=3))
    assert result["accuracy_density"] is None and result["pareto"] is None
    assert "top1" in result["skipped"]["accuracy_density"]
    assert result["latency_vs_batch"]["n_clusters"] == 2
    assert all(
        not (isinstance(v, float) and math.isnan(v))
        for v in result["latency_vs_batch"]["centroids"].values()
    )


def test_analyze_rejects_unknown_baseline() -> None:
    with pytest.raises(DataError, match="Use one of"):
        analyze(full_frame(), baseline="torch/cuda/fp16")


# ---- the model's share of memory -------------------------------------------------------


def memory_frame(framework_mb: float = 400.0, model_memory: bool = True) -> pd.DataFrame:
    """Eight models on one platform whose own memory is 1.3 x weights + 20 MB, in processes
    whose framework imports cost ``framework_mb`` plus 0-300 MB that varies from run to run
    (unrelated to the model): the process figure hides the model's line."""
    frame = curve_rows([(2.0, 8.0), (10.0, 30.0)], per_group=4, batches=(1, 4))
    models = sorted(frame["model"].unique())
    params = {m: 2e6 + 9e6 * i for i, m in enumerate(models)}
    frame["params"] = frame["model"].map(params)
    weights_mb = frame["params"] * 4 / 2**20
    baseline = framework_mb + frame["model"].map({m: (i * 137) % 300 for i, m in enumerate(models)})
    frame["peak_rss_mb"] = baseline + 1.3 * weights_mb + 20.0
    if model_memory:
        frame["baseline_rss_mb"] = baseline
        frame["model_rss_mb"] = frame["peak_rss_mb"] - baseline
    return frame


def test_memory_fits_the_models_own_share_by_default() -> None:
    section = analyze(memory_frame())["memory_vs_params"]
    (fit,) = section["fits"]
    assert fit["memory_column"] == "model_rss_mb"
    assert fit["slope"] == pytest.approx(1.3, rel=1e-6) and fit["intercept"] == pytest.approx(
        20.0, abs=1e-6
    )
    assert section["y"] == "model memory: peak − baseline RSS (MB)"
    assert section["memory"] == "model" and section["memory_fallback"] is False
    platform = section["per_platform"]["torch/cpu/fp32"]
    assert platform["memory_label"] == section["y"] and platform["memory_fallback"] is None
    assert "model memory (peak − baseline RSS)" in section["says"]


def test_memory_process_fits_the_whole_processs_peak() -> None:
    result = analyze(memory_frame(), memory="process")
    section = result["memory_vs_params"]
    assert result["input"]["memory"] == "process"
    assert {f["memory_column"] for f in section["fits"]} == {"peak_rss_mb"}
    assert section["y"] == "process memory: peak RSS (MB)" and section["memory_fallback"] is False
    # The framework's share (400 MB and more) is in every point of the process figure.
    assert min(f["intercept"] for f in section["fits"]) > 300
    assert not any("baseline RSS" in note for note in result["notes"])


def test_without_a_baseline_rss_the_process_figure_is_used_and_said() -> None:
    result = analyze(memory_frame(model_memory=False))
    section = result["memory_vs_params"]
    assert {f["memory_column"] for f in section["fits"]} == {"peak_rss_mb"}
    assert section["memory"] == "model" and section["memory_fallback"] is True
    platform = section["per_platform"]["torch/cpu/fp32"]
    assert (
        "baseline RSS" in platform["memory_fallback"]
        and "peak_rss_mb" in platform["memory_fallback"]
    )
    assert section["y"] == "process memory: peak RSS (MB)"
    assert "no baseline RSS in these data" in section["says"]
    assert any(
        n.startswith("memory_vs_params on torch/cpu/fp32: no model with a baseline")
        for n in result["notes"]
    )


def test_model_memory_is_derived_from_peak_and_baseline_when_the_column_is_absent() -> None:
    frame = memory_frame().drop(columns=["model_rss_mb"])
    (fit,) = analyze(frame)["memory_vs_params"]["fits"]
    assert fit["memory_column"] == "model_rss_mb" and fit["intercept"] == pytest.approx(
        20.0, abs=1e-6
    )


def test_device_memory_keeps_its_precedence_over_either_rss_figure() -> None:
    frame = memory_frame()
    frame["peak_device_mem_mb"] = frame["params"] * 4 / 2**20 * 2.0 + 5.0
    for memory in ("model", "process"):
        section = analyze(frame, memory=memory)["memory_vs_params"]
        (fit,) = section["fits"]
        assert fit["memory_column"] == "peak_device_mem_mb" and fit["slope"] == pytest.approx(2.0)
        assert section["y"] == "peak device memory (MB)" and section["memory_fallback"] is False


def test_unknown_memory_choice_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="model, process"):
        analyze(memory_frame(), memory="device")


# ---- disturbed measurements ------------------------------------------------------------


def disturbed_frame() -> pd.DataFrame:
    """Two speed groups; three rows at batch 1 were disturbed and ran 10x slower."""
    frame = curve_rows([(1.0, 4.0), (8.0, 30.0)], per_group=3, batches=(1, 2, 4, 8))
    frame["disturbed"] = False
    slow = frame.index[frame["batch_size"] == 1][:3]
    frame.loc[slow, "disturbed"] = True
    frame.loc[slow, "per_image_ms"] *= 10.0
    frame["interference"] = np.where(frame["disturbed"], 0.6, 0.01)
    return frame


def test_disturbed_rows_are_kept_counted_and_noted_by_default() -> None:
    frame = disturbed_frame()
    result = analyze(frame)
    assert result["input"]["rows_used"] == len(frame)
    assert (
        result["input"]["rows_disturbed"] == 3 and result["input"]["rows_excluded_disturbed"] == 0
    )
    assert any(n.startswith("3 measurement(s) were disturbed") for n in result["notes"])
    inp = prepare(frame)
    assert inp.frame["disturbed"].tolist().count(True) == 3 and inp.n_disturbed == 3


def test_exclude_disturbed_leaves_them_out_of_every_part() -> None:
    frame = disturbed_frame()
    kept = analyze(frame)
    result = analyze(frame, exclude_disturbed=True)
    assert result["input"]["rows_used"] == len(frame) - 3
    assert (
        result["input"]["rows_excluded_disturbed"] == 3 and result["input"]["rows_disturbed"] == 0
    )
    assert any(n.startswith("3 disturbed measurement(s) left out") for n in result["notes"])
    clean = analyze(frame[~frame["disturbed"]].drop(columns=["disturbed"]))
    assert result["latency_vs_batch"]["centroids"] == clean["latency_vs_batch"]["centroids"]
    # The slowed batch-1 point is in the default analysis and gone from the other.
    slowed = frame.loc[(frame["model"] == "g0_m0") & (frame["batch_size"] == 1), "per_image_ms"]
    assert kept["latency_vs_batch"]["curves"]["g0_m0"]["1"] == pytest.approx(float(slowed.iloc[0]))
    assert sorted(result["latency_vs_batch"]["curves"]["g0_m0"]) == ["2", "4", "8"]
    assert kept["latency_vs_batch"]["centroids"] != clean["latency_vs_batch"]["centroids"]


def test_disturbed_flags_as_a_csv_or_json_file_spells_them(tmp_path: Path) -> None:
    frame = curve_rows([(1.0, 4.0)], per_group=3, batches=(1, 2))
    frame["disturbed"] = ["True", "false", "", "1", "0", None]
    path = tmp_path / "r.csv"
    frame.to_csv(path, index=False)
    inp = prepare(load_csv(path))
    assert inp.frame["disturbed"].tolist() == [True, False, None, True, False, None]
    assert inp.n_disturbed == 2
    kept, excluded = without_disturbed(frame)
    assert excluded == 2 and len(kept) == 4
    assert without_disturbed(frame.drop(columns=["disturbed"]))[1] == 0  # an old file: none


def test_unreadable_disturbed_value_names_the_row() -> None:
    frame = curve_rows([(1.0, 4.0)], per_group=2, batches=(1, 2))
    frame["disturbed"] = [False, False, "maybe", False]
    with pytest.raises(DataError, match=r"data row 3 \(model 'g0_m1'\) holds 'maybe'"):
        prepare(frame)


def test_excluding_every_row_says_what_to_do() -> None:
    frame = curve_rows([(1.0, 4.0)], per_group=2, batches=(1, 2))
    frame["disturbed"] = True
    with pytest.raises(DataError, match="were disturbed") as err:
        analyze(frame, exclude_disturbed=True)
    assert "--exclude-disturbed" in (err.value.hint or "")


def test_unreadable_disturbed_value_names_its_row_in_the_input_after_failed_rows() -> None:
    frame = curve_rows([(1.0, 4.0)], per_group=2, batches=(1, 2))
    frame["status"] = ["failed", "ok", "ok", "ok"]
    frame["disturbed"] = [None, False, False, "sometimes"]
    with pytest.raises(DataError, match=r"data row 4 \(model 'g0_m1'\) holds 'sometimes'"):
        prepare(frame)
