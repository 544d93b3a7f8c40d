"""`backbench analyze | predict | report`: input choice, JSON contracts, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from core.analysis import SECTIONS
from core.cli.main import main
from core.predict.predictor import LatencyPredictor
from core.results import (
    Backend,
    Case,
    FailureKind,
    LatencyStats,
    Measurement,
    Mode,
    Precision,
    RunSpec,
    Status,
)
from core.store import Store
from core.zoo import model_complexity

REPO = Path(__file__).resolve().parents[2]
MODELS = ("squeezenet1_1", "mobilenet_v3_small", "resnet18", "resnet50", "vgg11")
BATCHES = (1, 2, 4)
METRICS = ("within_10pct", "within_5pct", "mape", "spearman", "n")


def per_image_ms(model: str, batch: int, factor: float) -> float:
    facts = model_complexity(model)
    assert facts is not None
    wobble = 1.0 + 0.02 * ((len(model) * 7 + batch) % 5 - 2)  # deterministic "noise"
    return factor * (facts.flops / 4e8 * (0.6 + 0.4 / batch) + 3.0 / batch) * wobble


def frame(platforms: tuple[tuple[str, str, str, float], ...]) -> pd.DataFrame:
    rows = []
    for model in MODELS:
        facts = model_complexity(model)
        assert facts is not None
        for backend, device, precision, factor in platforms:
            for batch in BATCHES:
                ms = per_image_ms(model, batch, factor)
                rows.append(
                    {
                        "model": model, "backend": backend, "device": device,
                        "precision": precision, "batch_size": batch, "per_image_ms": ms,
                        "peak_rss_mb": 200 + facts.params / 1e6 * 4, "params": facts.params,
                        "flops": facts.flops, "status": "ok",
                    }
                )  # fmt: skip
    return pd.DataFrame(rows)


@pytest.fixture(autouse=True)
def private_data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Never read or create the user's default store.
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


@pytest.fixture(scope="module")
def csv_two(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("csv") / "two.csv"
    frame((("torch", "cpu", "fp32", 1.0), ("openvino", "CPU", "fp32", 0.5))).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def csv_one(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("csv") / "one.csv"
    frame((("torch", "cpu", "fp32", 1.0),)).to_csv(path, index=False)
    return path


def add_run(store: Store, name: str, device: str, factor: float) -> None:
    backend = Backend.OPENVINO if device == "CPU" else Backend.TORCH
    spec = RunSpec(models=MODELS, backend=backend, device=device, batch_sizes=BATCHES, name=name)
    manifest = {"host": f"host-{name}", "cpu_model": "Test CPU", "packages": {"torch": "2.x"}}
    run = store.create_run(spec, manifest, name=name)
    for model in MODELS:
        facts = model_complexity(model)
        assert facts is not None
        for batch in BATCHES:
            batch_ns = int(per_image_ms(model, batch, factor) * batch * 1e6)
            samples = tuple(batch_ns + 1000 * (i % 3) for i in range(9))
            case = Case(model, backend, device, Precision.FP32, batch, Mode.LATENCY)
            store.add_measurement(
                run.id,
                Measurement(
                    case=case, status=Status.OK, stats=LatencyStats.from_samples(samples),
                    samples_ns=samples, peak_rss_mb=300.0 + facts.params / 1e6 * 4,
                    params=facts.params, flops=facts.flops,
                ),
            )  # fmt: skip
    store.set_run_status(run.id, "finished")


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("store") / "results.db"
    with Store(path) as store:
        add_run(store, "laptop-torch", "cpu", 1.0)
        add_run(store, "laptop-ov", "CPU", 0.5)
    return path


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def strict_json(text: str) -> Any:
    return json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in JSON"))


# -- analyze ---------------------------------------------------------------------------------


def test_analyze_json_has_every_section(capsys: pytest.CaptureFixture[str], csv_two: Path) -> None:
    code, out, _ = run_main(capsys, "analyze", "--csv", str(csv_two), "--json")
    assert code == 0
    result = strict_json(out)
    assert set(SECTIONS) <= set(result) and {"input", "notes", "skipped"} <= set(result)
    latency = result["latency_vs_batch"]
    assert {"centroids", "fit", "clusters"} <= set(latency)
    assert {"formula", "params", "r2", "band"} <= set(latency["fit"])
    assert set(latency["clusters"]) == set(MODELS)
    assert all({"slope", "intercept", "r2", "models"} <= set(f) for f in result["memory_vs_params"]["fits"])
    assert result["speedup"]["baseline"] == "torch/cpu/fp32"  # the slower platform
    assert result["skipped"] == {}


def test_analyze_json_gives_null_and_reason_for_absent_parts(
    capsys: pytest.CaptureFixture[str], csv_one: Path
) -> None:
    code, out, _ = run_main(capsys, "analyze", "--csv", str(csv_one), "--json")
    assert code == 0
    result = strict_json(out)
    assert result["speedup"] is None
    assert "one platform" in result["skipped"]["speedup"]


def test_analyze_table_shows_numbers_members_and_skips(
    capsys: pytest.CaptureFixture[str], csv_one: Path
) -> None:
    code, out, _ = run_main(capsys, "analyze", "--csv", str(csv_one))
    assert code == 0
    assert "R²" in out and "MB per M params" in out
    assert "Pareto-optimal" in out
    assert all(model in out for model in MODELS)  # cluster members are listed
    assert "Skipped" in out and "speedup: only one platform" in out


def test_analyze_store_includes_every_run_and_says_so(
    capsys: pytest.CaptureFixture[str], db: Path
) -> None:
    code, out, _ = run_main(capsys, "analyze", "--db", str(db))
    assert code == 0
    assert "laptop-torch (id 1)" in out and "laptop-ov (id 2)" in out
    assert "Speed-up over torch/cpu/fp32" in out

    code, out, err = run_main(capsys, "analyze", "--db", str(db), "--run", "laptop-ov", "--json")
    assert code == 0
    result = strict_json(out)
    assert result["input"]["run"] == {"id": 2, "name": "laptop-ov"}
    assert result["input"]["platforms"] == ["openvino/CPU/fp32"]
    assert "laptop-ov" in err


def test_missing_columns_exit_2_with_a_message_and_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("model,batch\nresnet18,1\n")
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg")}
    proc = subprocess.run(
        [sys.executable, "-m", "core.cli", "analyze", "--csv", str(bad)],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("error:") == 1
    assert "batch_size, per_image_ms" in " ".join(proc.stderr.split())


def test_db_and_csv_together_is_a_usage_error(tmp_path: Path, csv_one: Path) -> None:
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg")}
    proc = subprocess.run(
        [sys.executable, "-m", "core.cli", "predict", "--evaluate", "--db", str(tmp_path / "x.db"), "--csv", str(csv_one)],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "--db and --csv" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.db").exists()


def test_empty_missing_and_unknown_run_stores(
    capsys: pytest.CaptureFixture[str], db: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "empty.db"
    Store(empty).close()
    code, _, err = run_main(capsys, "analyze", "--db", str(empty))
    assert code == 2 and "No measurements in" in err and "backbench run" in err

    code, _, err = run_main(capsys, "analyze", "--db", str(tmp_path / "none.db"))
    assert code == 2 and "no results store" in err.lower()
    assert not (tmp_path / "none.db").exists()

    code, _, err = run_main(capsys, "analyze", "--db", str(db), "--run", "nope")
    assert code == 2 and "No run 'nope'" in err and "laptop-ov" in err


def test_run_on_a_csv_without_run_columns(capsys: pytest.CaptureFixture[str], csv_one: Path) -> None:
    code, _, err = run_main(capsys, "analyze", "--csv", str(csv_one), "--run", "3")
    assert code == 2 and "no run_id or run_name column" in err


# -- predict ---------------------------------------------------------------------------------


def test_predict_one_model_json_and_table(
    capsys: pytest.CaptureFixture[str], csv_two: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fitted: dict[int, LatencyPredictor] = {}
    fit = LatencyPredictor.fit

    def fit_once(self: LatencyPredictor, df: pd.DataFrame) -> LatencyPredictor:
        # The table run reuses the JSON run's fit: fitting is the slow part.
        return fitted.setdefault(len(df), fit(self, df))

    monkeypatch.setattr(LatencyPredictor, "fit", fit_once)
    args = ("predict", "-m", "densenet121", "--batch", "4", "--platform", "openvino/cpu/FP32")
    code, out, _ = run_main(capsys, *args, "--csv", str(csv_two), "--json")
    assert code == 0
    p = strict_json(out)
    assert p["model"] == "densenet121" and p["batch_size"] == 4
    assert p["platform"] == "openvino/CPU/fp32"  # matched ignoring case
    assert list(fitted) == [len(MODELS) * len(BATCHES)]  # trained on that platform only
    assert p["latency_ms_low"] <= p["latency_ms"] <= p["latency_ms_high"]
    assert p["per_image_ms"] == pytest.approx(p["latency_ms"] / 4)

    code, out, _ = run_main(capsys, *args, "--csv", str(csv_two))
    assert code == 0
    assert "densenet121" in out and "90% interval" in out and "latency per batch" in out


def test_predict_needs_model_and_batch(capsys: pytest.CaptureFixture[str], csv_two: Path) -> None:
    code, _, err = run_main(capsys, "predict", "-m", "resnet18", "--csv", str(csv_two))
    assert code == 2 and "--batch" in err
    code, _, err = run_main(capsys, "predict", "-m", "resnet18", "--batch", "1", "--csv", str(csv_two))
    assert code == 2 and "openvino/CPU/fp32" in err  # two platforms: say which


def test_predict_evaluate_json_and_table(
    capsys: pytest.CaptureFixture[str], db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = run_main(capsys, "predict", "--evaluate", "--db", str(db), "--json")
    assert code == 0
    result = strict_json(out)
    assert set(METRICS) <= set(result) and set(METRICS) <= set(result["baseline"])
    assert set(result["per_platform"]) == {"torch/cpu/fp32", "openvino/CPU/fp32"}
    for scope in (result, result["baseline"], *result["per_platform"].values()):
        assert 0.0 <= scope["within_5pct"] <= scope["within_10pct"] <= 1.0
    assert result["n"] == len(MODELS) * len(BATCHES) * 2

    evaluated: list[pd.DataFrame] = []

    def cached(df: pd.DataFrame) -> dict[str, Any]:
        evaluated.append(df)
        return result  # the table shows what the JSON run computed, without recomputing

    monkeypatch.setattr("core.predict.evaluate.evaluate", cached)  # where the CLI takes it from
    code, out, _ = run_main(capsys, "predict", "--evaluate", "--db", str(db))
    assert len(evaluated) == 1 and len(evaluated[0]) == result["n"]
    assert code == 0
    assert f"{100 * result['within_10pct']:.1f}%" in out
    assert "FLOPs-only" in out and "openvino/CPU/fp32" in out


# -- report ----------------------------------------------------------------------------------


def test_report_command_from_a_store(
    capsys: pytest.CaptureFixture[str], db: Path, tmp_path: Path
) -> None:
    out_dir = tmp_path / "report"
    code, out, _ = run_main(capsys, "report", "--db", str(db), "-o", str(out_dir), "--no-predict")
    assert code == 0 and str(out_dir / "index.html") in out
    page = (out_dir / "index.html").read_text()
    assert "host-laptop-torch" in page and "host-laptop-ov" in page  # both manifests
    assert "laptop-torch (id 1)" in page
    assert (out_dir / "figures" / "speedup.png").is_file()

    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    code, _, err = run_main(capsys, "report", "--db", str(db), "-o", str(keep), "--no-predict")
    assert code == 2 and "not a backbench report" in err
    assert (keep / "notes.txt").read_text() == "mine"


# -- the model's memory and disturbed measurements --------------------------------------------

DISTURBED = {("resnet18", 1), ("vgg11", 2), ("resnet50", 4)}  # slowed 5x by "other processes"


def add_run_now(store: Store, name: str) -> None:
    """A run as backbench writes it since issue 9: a baseline RSS (the framework, varying
    from case to case), other processes' CPU, three cases disturbed and slowed."""
    spec = RunSpec(models=MODELS, backend=Backend.TORCH, device="cpu", batch_sizes=BATCHES, name=name)
    run = store.create_run(spec, {"host": "now"}, name=name)
    for i, model in enumerate(MODELS):
        facts = model_complexity(model)
        assert facts is not None
        for batch in BATCHES:
            disturbed = (model, batch) in DISTURBED
            slow = 5.0 if disturbed else 1.0
            batch_ns = int(per_image_ms(model, batch, 1.0) * batch * 1e6 * slow)
            samples = tuple(batch_ns + 1000 * (k % 3) for k in range(9))
            baseline = 250.0 + 40.0 * ((i * 3 + batch) % 4)
            store.add_measurement(
                run.id,
                Measurement(
                    case=Case(model, Backend.TORCH, "cpu", Precision.FP32, batch, Mode.LATENCY),
                    status=Status.OK, stats=LatencyStats.from_samples(samples), samples_ns=samples,
                    peak_rss_mb=baseline + 1.2 * facts.params * 4 / 2**20 + 10.0, baseline_rss_mb=baseline,
                    params=facts.params, flops=facts.flops, interference=0.5 if disturbed else 0.01,
                    disturbed=disturbed,
                ),
            )  # fmt: skip
    store.set_run_status(run.id, "finished")


@pytest.fixture(scope="module")
def db_now(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("store") / "now.db"
    with Store(path) as store:
        add_run_now(store, "now")
    return path


def test_analyze_memory_model_by_default_and_process_on_request(
    capsys: pytest.CaptureFixture[str], db_now: Path
) -> None:
    code, out, _ = run_main(capsys, "analyze", "--db", str(db_now), "--json")
    assert code == 0
    model = strict_json(out)["memory_vs_params"]
    (fit,) = model["fits"]
    assert fit["memory_column"] == "model_rss_mb" and model["y"] == "model memory: peak − baseline RSS (MB)"
    assert fit["slope"] == pytest.approx(1.2, rel=1e-6) and fit["intercept"] == pytest.approx(10.0, abs=1e-3)

    code, out, _ = run_main(capsys, "analyze", "--db", str(db_now), "--json", "--memory", "process")
    assert code == 0
    result = strict_json(out)
    assert result["input"]["memory"] == "process"
    assert {f["memory_column"] for f in result["memory_vs_params"]["fits"]} == {"peak_rss_mb"}
    assert result["memory_vs_params"]["fits"][0]["intercept"] > 200  # the framework is in it

    code, out, _ = run_main(capsys, "analyze", "--db", str(db_now))
    assert code == 0 and "Memory: model memory: peak − baseline RSS (MB)" in out

    with pytest.raises(SystemExit) as exit_:
        main(["analyze", "--db", str(db_now), "--memory", "device"])
    assert exit_.value.code == 2
    assert "invalid choice: 'device'" in capsys.readouterr().err


def test_analyze_says_when_old_data_have_no_model_memory(
    capsys: pytest.CaptureFixture[str], db: Path
) -> None:
    code, out, _ = run_main(capsys, "analyze", "--db", str(db), "--json")
    assert code == 0
    result = strict_json(out)
    section = result["memory_vs_params"]
    assert section["memory_fallback"] is True and section["y"] == "process memory: peak RSS (MB)"
    assert all(p["memory_fallback"] for p in section["per_platform"].values())
    assert any("no model with a baseline RSS" in note for note in result["notes"])
    code, out, _ = run_main(capsys, "analyze", "--db", str(db))
    assert code == 0
    assert "No baseline RSS on openvino/CPU/fp32, torch/cpu/fp32" in " ".join(out.split())


def test_analyze_keeps_disturbed_rows_unless_told_and_counts_them(
    capsys: pytest.CaptureFixture[str], db_now: Path
) -> None:
    n_rows = len(MODELS) * len(BATCHES)
    code, out, _ = run_main(capsys, "analyze", "--db", str(db_now), "--json")
    kept = strict_json(out)["input"]
    assert (kept["rows_used"], kept["rows_disturbed"], kept["rows_excluded_disturbed"]) == (n_rows, 3, 0)

    code, out, _ = run_main(capsys, "analyze", "--db", str(db_now), "--json", "--exclude-disturbed")
    assert code == 0
    result = strict_json(out)
    left = result["input"]
    assert (left["rows_used"], left["rows_disturbed"], left["rows_excluded_disturbed"]) == (n_rows - 3, 0, 3)
    curves = result["latency_vs_batch"]["curves"]
    assert "1" not in curves["resnet18"] and "2" not in curves["vgg11"] and "4" not in curves["resnet50"]

    code, out, _ = run_main(capsys, "analyze", "--db", str(db_now), "--exclude-disturbed")
    assert code == 0 and "3 disturbed left out" in out
    code, out, _ = run_main(capsys, "analyze", "--db", str(db_now))
    assert code == 0 and "3 disturbed kept" in out


def test_predict_and_evaluate_exclude_disturbed_rows(
    capsys: pytest.CaptureFixture[str], db_now: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    n_rows = len(MODELS) * len(BATCHES)
    seen: list[pd.DataFrame] = []
    fit = LatencyPredictor.fit

    def recording_fit(self: LatencyPredictor, df: pd.DataFrame) -> LatencyPredictor:
        seen.append(df)
        return fit(self, df)

    monkeypatch.setattr(LatencyPredictor, "fit", recording_fit)
    args = ("predict", "-m", "resnet34", "--batch", "2", "--db", str(db_now), "--json")
    code, out, err = run_main(capsys, *args, "--exclude-disturbed")
    assert code == 0 and strict_json(out)["model"] == "resnet34"  # stdout stays the prediction
    assert "Left out 3 disturbed measurement(s)" in err
    assert len(seen[-1]) == n_rows - 3 and not seen[-1]["disturbed"].astype(bool).any()

    evaluated: list[pd.DataFrame] = []

    def evaluate(df: pd.DataFrame) -> dict[str, Any]:
        evaluated.append(df)
        return {"n": len(df), "within_10pct": 0.5, "baseline": {}, "per_platform": {}, "notes": ["x"]}

    monkeypatch.setattr("core.predict.evaluate.evaluate", evaluate)
    code, out, _ = run_main(capsys, "predict", "--evaluate", "--db", str(db_now), "--json", "--exclude-disturbed")
    assert code == 0
    result = strict_json(out)
    assert len(evaluated[-1]) == n_rows - 3 and result["rows_excluded_disturbed"] == 3
    assert result["notes"] == ["x", "3 disturbed measurement(s) left out (--exclude-disturbed)."]
    code, out, _ = run_main(capsys, "predict", "--evaluate", "--db", str(db_now), "--json")
    assert code == 0 and len(evaluated[-1]) == n_rows and "rows_excluded_disturbed" not in strict_json(out)


def test_report_memory_and_exclude_disturbed_options(
    capsys: pytest.CaptureFixture[str], db_now: Path, tmp_path: Path
) -> None:
    out_dir = tmp_path / "report"
    argv = ("report", "--db", str(db_now), "-o", str(out_dir), "--no-predict")
    code, _, _ = run_main(capsys, *argv, "--memory", "process", "--exclude-disturbed")
    assert code == 0
    analysis = json.loads((out_dir / "analysis.json").read_text())
    assert analysis["input"]["memory"] == "process" and analysis["input"]["rows_excluded_disturbed"] == 3
    assert "<dt>disturbed</dt><dd>3 measurement(s) left out</dd>" in (out_dir / "index.html").read_text()

    code, _, _ = run_main(capsys, *argv)
    assert code == 0
    analysis = json.loads((out_dir / "analysis.json").read_text())
    assert analysis["input"]["memory"] == "model" and analysis["input"]["rows_disturbed"] == 3
    assert (out_dir / "index.html").read_text().count('<tr class="disturbed">') == 3


def test_the_cli_offers_the_memory_choices_the_analysis_knows() -> None:
    from core.analysis.memory import MEMORY_CHOICES as ANALYSIS_CHOICES
    from core.cli.analysis import MEMORY_CHOICES

    assert MEMORY_CHOICES == ANALYSIS_CHOICES


# -- the results table (core.cli.console) ----------------------------------------------------


def result(model: str, batch: int = 1, **fields: Any) -> Measurement:
    samples = tuple(2_000_000 + 1000 * (k % 3) for k in range(9))
    defaults: dict[str, Any] = {
        "stats": LatencyStats.from_samples(samples), "throughput_ips": 490.5, "peak_rss_mb": 512.0,
        "run_id": 7,
    }  # fmt: skip
    case = Case(model, Backend.OPENVINO, "CPU", Precision.FP32, batch, Mode.LATENCY)
    return Measurement(case=case, status=Status.OK, **{**defaults, **fields})


NOW = {
    "baseline_rss_mb": 300.0, "interference": 0.01, "disturbed": False, "duration_s": 14.9,
    "phase_s": {"convert": 2.5, "start": 0.05, "load": 0.31, "compile": 1.2, "warmup": 0.6, "measure": 10.02},
}  # fmt: skip


def table_lines(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: Any, **kw: Any) -> list[str]:
    from core.cli.console import console, print_results_table

    monkeypatch.setattr(console, "width", 120)
    print_results_table(*args, **kw)
    return capsys.readouterr().out.splitlines()


def row_of(lines: list[str], *words: str) -> list[str]:
    return next(line.split() for line in lines if all(w in line.split() for w in words))


def test_results_table_shows_model_memory_and_flags_disturbed_cases(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    failed = Measurement.failed(
        Case("vgg11", Backend.OPENVINO, "CPU", Precision.FP32, 4), FailureKind.OOM,
        "worker exceeded its memory limit\nsecond line", run_id=7,
    )  # fmt: skip
    rows = [
        result("mobilenet_v3_small", **NOW),
        result("resnet18", 8, **{**NOW, "interference": 0.43, "disturbed": True, "peak_rss_mb": 700.25}),
        failed,
    ]
    lines = table_lines(capsys, monkeypatch, rows, "Run 7 'now'")
    assert max(len(line) for line in lines) <= 120
    header = row_of(lines, "model", "platform")
    assert header[:2] == ["model", "platform"]  # one run: its id is in the title, not a column
    assert "model MB" in " ".join(lines) and "other CPU" in " ".join(lines) and "try" not in header
    assert row_of(lines, "mobilenet_v3_small")[-4:] == ["512", "212", "0.01", "ok"]
    assert row_of(lines, "resnet18")[-5:] == ["700", "400", "0.43", "!", "ok"]
    assert row_of(lines, "vgg11")[-1] == "oom"
    assert "failed (oom) vgg11 openvino/CPU/fp32 b4 latency: worker exceeded its memory limit (+1 more lines)" in lines
    assert any("! = disturbed" in line for line in lines)


def test_results_table_of_old_results_has_no_empty_issue_9_columns(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = table_lines(capsys, monkeypatch, [result("resnet18"), result("vgg11", run_id=8)], "All runs")
    text = " ".join(lines)
    assert "model MB" not in text and "other CPU" not in text and "dev MB" not in text
    assert row_of(lines, "resnet18")[:2] == ["7", "resnet18"]  # several runs: a run column
    assert row_of(lines, "vgg11")[-2:] == ["512", "ok"]


def test_results_table_timings_show_where_the_time_went(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [result("mobilenet_v3_small", **NOW), result("resnet18", **{**NOW, "disturbed": True})]
    lines = table_lines(capsys, monkeypatch, rows, "Run 7", timings=True)
    assert max(len(line) for line in lines) <= 120
    assert row_of(lines, "model")[-8:] == ["convert", "start", "load", "compile", "warm-up", "measure", "wall", "status"]
    assert row_of(lines, "mobilenet_v3_small")[-8:] == ["2.50", "0.05", "0.31", "1.20", "0.60", "10.02", "14.90", "ok"]
    assert row_of(lines, "resnet18")[-2:] == ["ok", "!"]
    assert "median" not in " ".join(lines)
    # A phase no case has (convert, where nothing was converted) is left out.
    no_convert = {**NOW, "phase_s": {k: v for k, v in NOW["phase_s"].items() if k != "convert"}}
    lines = table_lines(capsys, monkeypatch, [result("resnet18", **no_convert)], "Run 7", timings=True)
    assert "convert" not in row_of(lines, "model")


def test_results_table_attempts_number_every_try(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with Store(tmp_path / "r.db") as store:
        run = store.create_run(RunSpec(models=("resnet18",)), {"host": "x"}, name="tries")
        store.add_measurement(run.id, result("resnet18", **{**NOW, "disturbed": True, "interference": 0.5}))
        store.add_measurement(run.id, result("resnet18", **NOW))
        store.add_measurement(run.id, result("vgg11", **NOW))
        every = store.measurements(run.id, all_attempts=True)
    lines = table_lines(capsys, monkeypatch, every, "Run 1", attempts=True)
    header = row_of(lines, "model", "platform")
    assert header[:2] == ["try", "model"]
    tries = [line.split() for line in lines if "resnet18" in line.split()]
    assert [(t[0], t[-2] if t[-1] == "!" else t[-1]) for t in tries] == [("1", "ok"), ("2", "ok")]
    assert tries[0][-3:] == ["0.50", "!", "ok"]
    assert row_of(lines, "vgg11")[0] == "1"
    assert any("superseded" in line for line in lines)


def test_results_table_options() -> None:
    import argparse

    from core.cli.console import add_results_table_options

    parser = argparse.ArgumentParser()
    add_results_table_options(parser)
    assert vars(parser.parse_args([])) == {"timings": False, "attempts": False}
    assert vars(parser.parse_args(["--timings", "--attempts"])) == {"timings": True, "attempts": True}
