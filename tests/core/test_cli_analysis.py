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
from core.results import Backend, Case, LatencyStats, Measurement, Mode, Precision, RunSpec, Status
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
