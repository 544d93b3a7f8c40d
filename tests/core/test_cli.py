"""The `backbench` CLI end to end: real worker processes, a real store, bad input."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from core.cli.main import main
from core.results import MEASUREMENT_COLUMNS
from core.store import Store

FAST = ["--max-time", "0.3", "--min-iters", "5", "--target-ci", "0.5"]


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    # Piped output is as wide as COLUMNS says; pin it so a narrow terminal running the
    # tests does not elide the names the assertions look for.
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "core.cli", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.fixture(scope="module")
def measured_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("cli") / "results.db"
    proc = cli("run", "-m", "squeezenet1_1", "--batch", "1,2", "--db", str(db), "--name", "smoke", *FAST)
    assert proc.returncode == 0, proc.stderr
    assert "squeezenet1_1" in proc.stdout
    return db


def test_run_stores_every_case_with_the_contract_fields(measured_db: Path) -> None:
    with Store(measured_db) as store:
        run = store.get_run("smoke")
        ms = store.measurements(run.id, include_samples=True)
        assert run.status == "finished"
        assert run.manifest["cpu_model"] and run.manifest["packages"]["torch"]
    assert [(m.case.batch_size, m.status.value) for m in ms] == [(1, "ok"), (2, "ok")]
    for m in ms:
        assert m.params == 1_235_496 and m.flops and m.flops == 2 * m.macs
        assert m.stats.n >= 5 and len(m.samples_ns) == m.stats.n
        assert m.weights == "random"


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_results_export_uses_measurement_field_names(measured_db: Path, fmt: str) -> None:
    proc = cli("results", "--db", str(measured_db), "--run", "smoke", "--format", fmt)
    assert proc.returncode == 0, proc.stderr
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(proc.stdout)))
        assert list(rows[0].keys()) == list(MEASUREMENT_COLUMNS)
    else:
        rows = json.loads(proc.stdout)
        assert set(MEASUREMENT_COLUMNS) <= set(rows[0])
        assert isinstance(rows[0]["latency_ms_median"], float)
    assert len(rows) == 2


def test_results_table_and_parquet(measured_db: Path, tmp_path: Path) -> None:
    proc = cli("results", "--db", str(measured_db))
    assert proc.returncode == 0 and "squeezenet1_1" in proc.stdout and "median ms" in proc.stdout
    out = tmp_path / "r.parquet"
    assert cli("results", "--db", str(measured_db), "--format", "parquet", "-o", str(out)).returncode == 0
    import pandas as pd

    assert list(pd.read_parquet(out).columns) == list(MEASUREMENT_COLUMNS)


def test_models_formats(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--suite", "paper", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 33
    inception = next(r for r in rows if r["name"] == "inception_v3")
    assert inception["params"] != inception["params_published"] and "aux" in inception["notes"].lower()
    assert main(["models", "--filter", "resnet1*", "--format", "csv"]) == 0
    names = [r["name"] for r in csv.DictReader(io.StringIO(capsys.readouterr().out))]
    assert names == sorted(names) and set(names) == {"resnet18", "resnet101", "resnet152"}
    assert main(["models", "--suite", "quick"]) == 0
    assert "FLOPs per image = 2 × MACs" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args,needle",
    [
        (["run", "-m", "resnet81"], "Did you mean: resnet18"),
        (["run", "-m", "resnet18", "--batch", "0"], "positive integer"),
        (["run", "-m", "resnet18", "--batch", "1,two"], "positive integer"),
        (["run", "-m", "resnet18", "--max-time", "0"], "--max-time must be more than 0"),
        (["run", "-m", "resnet18", "--backend", "tensorflow"], "torch, openvino, onnxruntime"),
        (["run", "-m", "resnet18", "--device", "cuda:7"], "Available devices: cpu"),
        (["run", "-m", "resnet18", "--backend", "openvino", "--device", "MYRIAD"], "CPU"),
        (["run", "-m", "/nonexistent/model.onnx", "--backend", "onnxruntime"], "not found"),
        (["run", "-m", "resnet18", "--db", "/proc/forbidden/results.db"], "--db"),
        (["run", "--suite", "nosuch"], "paper"),
        (["results", "--db", "/proc/forbidden/results.db"], "--db"),
    ],
)
def test_bad_input_is_one_line_with_a_fix_and_no_traceback(args: list[str], needle: str) -> None:
    proc = cli(*args, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error:")
    assert needle in " ".join(proc.stderr.split())


def test_corrupt_model_file_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07 not a protobuf at all" * 10)
    proc = cli("run", "-m", str(bad), "--backend", "onnxruntime", "--db", str(tmp_path / "r.db"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "broken.onnx" in proc.stderr


def test_weights_file_is_loaded_and_recorded(tmp_path: Path) -> None:
    import torch

    from core.zoo import build_torch_model

    module, _ = build_torch_model("squeezenet1_1")
    weights = tmp_path / "sq.pth"
    torch.save(module.state_dict(), weights)
    db = tmp_path / "w.db"
    proc = cli("run", "-m", "squeezenet1_1", "--weights", f"squeezenet1_1={weights}", "--db", str(db), *FAST)
    assert proc.returncode == 0, proc.stderr
    with Store(db) as store:
        (m,) = store.measurements()
    assert m.status.value == "ok" and m.weights == f"file:{weights}"


def test_ctrl_c_keeps_completed_cases_and_resume_finishes(tmp_path: Path) -> None:
    db = tmp_path / "int.db"
    args = ["run", "-m", "squeezenet1_1", "--batch", "1,2,3", "--db", str(db), "--name", "cut",
            "--max-time", "2", "--min-iters", "5", "--target-ci", "0.0001"]
    # A shell's background job starts with SIGINT ignored, and Python then never turns it
    # into KeyboardInterrupt: give the CLI the default disposition whatever ran pytest.
    proc = subprocess.Popen([sys.executable, "-m", "core.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 180
    done = 0
    while time.monotonic() < deadline and done < 1:
        time.sleep(0.5)
        if db.exists():
            with Store(db) as store:
                done = len(store.measurements())
    assert done >= 1, "no case completed in time"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Resume with" in err and "Traceback" not in err
    with Store(db) as store:
        run = store.get_run("cut")
        kept = store.measurements(run.id)
    assert run.status == "interrupted"
    # Completed cases stand; a case cut off is kept as an interrupted attempt.
    cut = [m for m in kept if m.status.value != "ok"]
    kept = [m for m in kept if m.status.value == "ok"]
    assert kept and all(m.failure is not None and m.failure.value == "interrupted" for m in cut)
    assert len(cut) <= 1
    # No worker outlives the CLI (workers and fork servers carry their parent's pid on
    # their command line; a forked worker has its fork server's).
    left = subprocess.run(["pgrep", "-f", f"--parent-pid {proc.pid}"], capture_output=True, text=True).stdout
    assert not left.split(), f"workers left behind: {left}"

    fast = ["--max-time", "0.3", "--target-ci", "0.5"]  # ignored on resume: the stored spec rules
    resumed = cli("run", "--db", str(db), "--resume", str(run.id), *fast)
    assert resumed.returncode == 0, resumed.stderr
    with Store(db) as store:
        final = store.measurements(run.id)
        assert store.get_run(run.id).status == "finished"
    assert sorted(m.case.batch_size for m in final) == [1, 2, 3]
    assert all(m.status.value == "ok" for m in final)
    assert [m.measurement_id for m in final[: len(kept)]] == [m.measurement_id for m in kept]
    # The case cut off was measured again as its second attempt.
    assert [m.attempt for m in final if m.case in {c.case for c in cut}] == [2] * len(cut)


# -- command families ------------------------------------------------------------------


def subcommands(parser: Any) -> list[str]:
    action = next(a for a in parser._actions if a.dest == "command")
    return list(action.choices)


def test_every_family_registers_through_the_entry_points() -> None:
    from importlib.metadata import entry_points

    from core.cli.main import COMMANDS_GROUP, CORE_FAMILIES

    installed = {ep.name: ep.value for ep in entry_points(group=COMMANDS_GROUP)}
    assert {"measure", "analysis", "agent", "gui"} <= set(installed)
    # core's fallback for a bare checkout names exactly what pyproject declares
    assert {name: installed[name] for name, _ in CORE_FAMILIES} == dict(CORE_FAMILIES)


def test_commands_come_in_family_order() -> None:
    from core.cli.main import build_parser

    assert subcommands(build_parser()) == [
        "models", "run", "accuracy", "layers", "results", "runs", "devices", "runtimes", "worker", "zygote", "analyze", "predict",
        "report", "agent", "remote", "export", "gui",
    ]  # fmt: skip


def test_core_commands_work_without_installed_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    import core.cli.main as cli_main

    monkeypatch.setattr(cli_main, "entry_points", lambda group: [])
    names = subcommands(cli_main.build_parser())
    assert "run" in names and "report" in names
    assert "agent" not in names and "gui" not in names  # only entry points bring those
