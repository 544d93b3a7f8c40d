"""The agent's worker runtimes: read only from its own --config file, chosen by clients by
name (never by path), and used for real: a job on the OpenVINO 2022.3 edge runtime
(CPython 3.10, packaging/edge-runtime.sh) completes and records that interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from core.errors import ProtocolError, UsageError
from core.measure import runtimes as runtimes_module
from core.store import Store
from service.config import parse_config
from tests.realenv import missing
from tests.service.agentlib import FAST, submit, until

REPO = Path(__file__).resolve().parents[2]
RUNTIME = "openvino-2022.3"


def _config(tmp_path: Path, python: str | Path) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(
        f'[runtimes.{RUNTIME}]\npython = "{python}"\npythonpath = ["{REPO}"]\n'
        'description = "OpenVINO 2022.3.2 on CPython 3.10"\n'
    )
    return path


def test_the_agent_reads_runtimes_from_its_own_config_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtimes_module, "AGENT_CONFIG", tmp_path / "absent.toml")
    monkeypatch.setattr("service.config.AGENT_CONFIG", tmp_path / "absent.toml")
    plain = parse_config(["--db", str(tmp_path / "r.db")])
    assert plain.runtimes == {} and plain.config_path is None
    with pytest.raises(UsageError, match="Unknown worker runtime 'x'; configured: none."):
        plain.runtime("x")
    path = _config(tmp_path, sys.executable)
    config = parse_config(["--db", str(tmp_path / "r.db"), "--config", str(path)])
    assert list(config.runtimes) == [RUNTIME] and config.config_path == path
    assert config.runtime(RUNTIME).python == sys.executable
    with pytest.raises(UsageError) as unknown:
        config.runtime("nope")
    assert unknown.value.message == f"Unknown worker runtime 'nope'; configured: {RUNTIME}."
    assert str(path) in (unknown.value.hint or "")
    # A default file that exists is read too.
    monkeypatch.setattr("service.config.AGENT_CONFIG", path)
    assert list(parse_config(["--db", str(tmp_path / "r.db")]).runtimes) == [RUNTIME]


def test_a_missing_or_bad_config_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"configuration file .*nothere.toml does not exist"):
        parse_config(["--config", str(tmp_path / "nothere.toml")])
    bad = tmp_path / "bad.toml"
    bad.write_text('[runtimes.edge]\npython = "relative/python"\n')
    with pytest.raises(UsageError, match=r"bad.toml: runtime \"edge\": python 'relative/python' is not an absolute path"):
        parse_config(["--config", str(bad)])


def test_worker_command_is_a_deprecated_local_alias(capsys: pytest.CaptureFixture[str]) -> None:
    config = parse_config(["--worker-command", f"{sys.executable} -m core.measure.worker"])
    assert config.worker_command == (sys.executable, "-m", "core.measure.worker")
    warning = capsys.readouterr().err
    assert "--worker-command is deprecated" in warning and "--runtime NAME" in warning


# -- a real agent on the 2022.3 runtime -------------------------------------------------------


def _edge_python() -> Path:
    venv = Path(os.environ.get("BACKBENCH_EDGE_VENV") or REPO / ".venv-edge")
    python = venv / "bin" / "python"
    if not python.is_file():
        missing(f"the OpenVINO 2022.3 edge runtime is not built at {venv} (make edge-runtime)")
    return python


def _spec(**extra: Any) -> dict[str, Any]:
    return {"models": ["tiny.onnx"], "backend": "openvino", "device": "CPU",
            "batch_sizes": [1, 2], "stopping": FAST, **extra}  # fmt: skip


def test_a_job_runs_on_the_named_runtime_and_names_and_paths_are_checked(
    make_agent: Any, models_dir: Path, tmp_path: Path
) -> None:
    python = _edge_python()
    agent = make_agent("--model-dir", str(models_dir), "--config", str(_config(tmp_path, python)))
    agent.start()
    with agent.client() as client:
        client.call("subscribe", topics=["jobs"])
        job_id = submit(client, _spec(runtime=RUNTIME), "edge-1")
        notes = until(client, job_id)
        assert notes[-1]["method"] == "job.finished", notes[-1]
        assert notes[-1]["params"]["state"] == "finished" and notes[-1]["params"]["cases_ok"] == 2
        with pytest.raises(ProtocolError) as unknown:
            submit(client, _spec(runtime="nope"), "edge-2")
        assert f"Unknown worker runtime 'nope'; configured: {RUNTIME}." in unknown.value.message
        assert "agent.toml" in str(unknown.value)
        for path in (str(python), "../bin/python"):
            with pytest.raises(ProtocolError) as refused:
                submit(client, _spec(runtime=path), f"edge-path-{len(path)}")
            assert "never an interpreter or a path" in refused.value.message
        # The device is checked on the runtime's own OpenVINO (2022.3 has no NPU).
        with pytest.raises(ProtocolError) as device:
            submit(client, _spec(runtime=RUNTIME, device="NPU"), "edge-npu")
        assert "On runtime 'openvino-2022.3'" in device.value.message
    # The terminal client's `remote submit --runtime` reaches it too.
    done = subprocess.run(
        [sys.executable, "-m", "core.cli", "remote", "--socket", str(agent.socket), "submit",
         "-m", "tiny.onnx", "--backend", "openvino", "--runtime", RUNTIME, "--min-iters", "3",
         "--max-time", "0.2", "--target-ci", "0.5", "--watch"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    store = Store(agent.db)
    try:
        run = store.latest_run()
        assert run is not None and run.spec.runtime == RUNTIME
        assert run.manifest["python"].startswith("3.10.")
        assert run.manifest["packages"]["openvino"] == "2022.3.2"
        assert run.manifest["runtime"]["config"] == str(tmp_path / "agent.toml")
        for m in store.measurements(run.id):
            assert m.status.value == "ok", m.error
            assert m.conditions["runtime"] == RUNTIME
            assert m.backend_config["openvino_version"].startswith("2022.3.2")
    finally:
        store.close()
    assert agent.stop() == 0
    assert "Traceback" not in agent.log(), agent.log()
