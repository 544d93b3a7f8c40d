from __future__ import annotations

import json
import math

import numpy as np
import pytest

from core.errors import UsageError
from core.results import (
    MEASUREMENT_COLUMNS,
    Backend,
    Case,
    FailureKind,
    LatencyStats,
    Measurement,
    Mode,
    Precision,
    RunSpec,
    Status,
    StoppingRule,
    median_ci95,
    parse_batch_sizes,
    parse_precision,
)

CONTRACT = [
    "model", "backend", "device", "precision", "batch_size", "mode", "latency_ms_median",
    "latency_ms_mean", "latency_ms_p90", "latency_ms_p99", "latency_ms_std", "ci95_rel",
    "iterations", "per_image_ms", "throughput_ips", "first_inference_ms", "peak_rss_mb",
    "peak_device_mem_mb", "params", "flops", "status", "error",
]


def test_contract_columns_come_first_in_order() -> None:
    assert list(MEASUREMENT_COLUMNS[: len(CONTRACT)]) == CONTRACT


def test_stats_match_numpy() -> None:
    rng = np.random.default_rng(0)
    samples = rng.lognormal(mean=15, sigma=0.2, size=1001).astype(np.int64)
    s = LatencyStats.from_samples(samples)
    assert s.n == 1001
    assert s.median_ns == pytest.approx(float(np.median(samples)))
    assert s.mean_ns == pytest.approx(float(samples.mean()))
    assert s.std_ns == pytest.approx(float(samples.std(ddof=1)))
    assert s.p90_ns == pytest.approx(float(np.percentile(samples, 90)))
    assert s.p99_ns == pytest.approx(float(np.percentile(samples, 99)))
    assert s.min_ns == samples.min() and s.max_ns == samples.max()
    assert 0 < s.ci95_rel < 0.05


def test_median_ci_covers_true_median_about_95_percent() -> None:
    rng = np.random.default_rng(1)
    true_median = math.exp(1.0)  # lognormal(1, 0.5) median
    hits = 0
    trials = 400
    for _ in range(trials):
        data = np.sort(rng.lognormal(1.0, 0.5, size=60))
        lo, hi = median_ci95(data)
        hits += lo <= true_median <= hi
    # Order-statistic intervals are conservative: coverage at least nominal, minus noise.
    assert 0.92 <= hits / trials <= 0.995


def test_ci_undefined_for_few_samples() -> None:
    assert math.isnan(LatencyStats.from_samples([5, 6, 7]).ci95_rel)


@pytest.mark.parametrize("text,expected", [("1,2,4", (1, 2, 4)), ("8", (8,)), (" 1, 64 ", (1, 64)), ("2,2,1", (2, 1))])
def test_parse_batch_sizes(text: str, expected: tuple[int, ...]) -> None:
    assert parse_batch_sizes(text) == expected


@pytest.mark.parametrize("bad", ["0", "-1", "1.5", "abc", "1,,2", "", "4,x"])
def test_bad_batch_sizes_explain_themselves(bad: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_batch_sizes(bad)
    assert "positive integer" in str(info.value) or "No batch size" in str(info.value)


def test_precision_aliases_and_errors() -> None:
    assert parse_precision("f32") is Precision.FP32
    with pytest.raises(UsageError, match="fp32, fp16, bf16"):
        parse_precision("int3")


def test_stopping_rule_validation() -> None:
    with pytest.raises(UsageError):
        StoppingRule(target_ci=0)
    with pytest.raises(UsageError):
        StoppingRule(min_iters=0)
    with pytest.raises(UsageError):
        StoppingRule(max_time_s=-1)


def _measurement(mode: Mode = Mode.LATENCY) -> Measurement:
    case = Case("resnet18", Backend.TORCH, "cpu", Precision.FP32, 4, mode)
    samples = tuple(range(10_000_000, 10_000_000 + 50 * 1000, 1000))
    return Measurement(
        case=case, status=Status.OK, stats=LatencyStats.from_samples(samples), samples_ns=samples,
        throughput_ips=350.0, first_inference_ms=40.0, target_met=True, peak_rss_mb=300.0,
        params=11_689_512, flops=3_628_146_688, backend_config={"threads": 2}, weights="random",
    )


def test_row_units_and_derivations() -> None:
    m = _measurement()
    row = m.to_row()
    assert row["latency_ms_median"] == pytest.approx(m.stats.median_ns / 1e6)
    assert row["per_image_ms"] == pytest.approx(row["latency_ms_median"] / 4)
    assert row["iterations"] == 50
    assert row["macs"] * 2 == row["flops"]
    thr = _measurement(Mode.THROUGHPUT).to_row()
    assert thr["per_image_ms"] == pytest.approx(1000 / 350.0)


def test_measurement_round_trips_through_json() -> None:
    m = _measurement()
    back = Measurement.from_dict(json.loads(json.dumps(m.to_dict(include_samples=True))))
    assert back == m
    failed = Measurement.failed(m.case, FailureKind.CRASHED, "SIGSEGV")
    assert Measurement.from_dict(json.loads(json.dumps(failed.to_dict()))) == failed


def test_run_spec_cases_and_round_trip() -> None:
    spec = RunSpec(models=("a", "b"), batch_sizes=(1, 8), name="x")
    assert [(c.model, c.batch_size) for c in spec.cases()] == [("a", 1), ("a", 8), ("b", 1), ("b", 8)]
    assert RunSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    with pytest.raises(UsageError):
        RunSpec(models=())


@pytest.mark.parametrize(
    ("backend", "asked", "canonical"),
    [
        (Backend.OPENVINO, "cpu", "CPU"),
        (Backend.OPENVINO, "Cpu", "CPU"),
        (Backend.OPENVINO, " CPU ", "CPU"),
        (Backend.OPENVINO, "gpu.1", "GPU.1"),
        (Backend.OPENVINO, "auto:gpu, cpu", "AUTO:GPU,CPU"),
        (Backend.TORCH, "CPU", "cpu"),
        (Backend.TORCH, "CUDA", "cuda:0"),
        (Backend.TORCH, "cuda:1", "cuda:1"),
        (Backend.ONNXRUNTIME, "Cpu", "cpu"),
    ],
)
def test_device_names_have_one_spelling(backend: Backend, asked: str, canonical: str) -> None:
    """cpu, Cpu and CPU are one platform: in a spec, in its cases, and in cases read back
    from a store that holds the old spellings."""
    spec = RunSpec(models=("resnet18",), backend=backend, device=asked)
    assert spec.device == canonical
    assert {c.device for c in spec.cases()} == {canonical}
    assert Case("resnet18", backend, asked, Precision.FP32, 1).device == canonical
    assert Case.from_dict({**spec.cases()[0].to_dict(), "device": asked}) == spec.cases()[0]


def test_openvino_cpu_spellings_are_one_platform_in_analysis(tmp_path) -> None:
    import pandas as pd

    from core.analysis.load import load_file

    rows = []
    for device in ("cpu", "Cpu", "CPU"):
        case = Case("resnet18", Backend.OPENVINO, "CPU", Precision.FP32, 1)
        row = Measurement(case=case, status=Status.OK).to_row()
        rows.append({**row, "device": device, "latency_ms_median": 5.0})
    csv = tmp_path / "hand-written.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    assert set(load_file(csv).frame["device"]) == {"CPU"}
    # A frame handed in is not modified behind the caller's back.
    from core.analysis.load import LoadedData

    mine = pd.DataFrame(rows)
    assert set(LoadedData(mine, "mine").frame["device"]) == {"CPU"}
    assert list(mine["device"]) == ["cpu", "Cpu", "CPU"]


def test_a_model_or_batch_size_named_twice_is_measured_once() -> None:
    spec = RunSpec(models=("vgg16", "resnet18", "vgg16"), batch_sizes=(1, 2, 1))
    assert spec.models == ("vgg16", "resnet18")
    assert spec.batch_sizes == (1, 2)
    assert len(spec.cases()) == 4
    # A submit listing one model 1,000 times is one model's cases, not 10,000.
    spec = RunSpec.from_dict({"models": ["x"] * 1000, "batch_sizes": list(range(1, 11))})
    assert len(spec.cases()) == 10


def test_a_run_of_too_many_cases_is_refused_in_one_line() -> None:
    from core.cli.run_options import spec_from_remote

    models = [f"m{i}" for i in range(200)]
    with pytest.raises(UsageError, match="more than one run may hold") as err:
        spec_from_remote({"models": models, "batch_sizes": list(range(1, 65))})
    assert "several runs" in (err.value.hint or "")
    assert len(spec_from_remote({"models": models[:150], "batch_sizes": list(range(1, 65))}).cases()) == 9600
    # A spec already stored is read back whatever its size (runs made before the bound).
    big = RunSpec(models=tuple(models), batch_sizes=tuple(range(1, 65)))
    assert RunSpec.from_dict(big.to_dict()) == big
