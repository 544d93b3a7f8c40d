"""The agent's worker runtimes: read only from its own --config file, chosen by clients by
name (never by path), and used for real: a job on the OpenVINO 2022.3 edge runtime
(CPython 3.10, packaging/edge-runtime.sh) completes and records that interpreter."""

from __future__ import annotations

import logging
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
    # Only core/ on the runtime's path, as the packages' /opt/backbench/worker holds it.
    worker = tmp_path / "worker"
    worker.mkdir(exist_ok=True)
    if not (worker / "core").exists():
        (worker / "core").symlink_to(REPO / "core")
    path = tmp_path / "agent.toml"
    path.write_text(
        f'[runtimes.{RUNTIME}]\npython = "{python}"\npythonpath = ["{worker}"]\n'
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


def test_an_unreadable_default_config_is_no_config_and_the_log_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class Unsearchable(type(tmp_path)):  # type: ignore[misc]
        def exists(self, *args: Any, **kwargs: Any) -> bool:
            raise PermissionError(13, "Permission denied", str(self))

    db = ["--db", str(tmp_path / "r.db")]
    monkeypatch.setattr("service.config.AGENT_CONFIG", Unsearchable("/etc/backbench/agent.toml"))
    config = parse_config(db)  # /etc/backbench is 0750 and this user is not in the group
    assert config.runtimes == {} and config.config_path is None
    path = _config(tmp_path, sys.executable)
    monkeypatch.setattr("service.config.AGENT_CONFIG", path)
    monkeypatch.setattr("service.config.os.access", lambda *_a, **_k: False)  # a 0640 file
    unreadable = parse_config(db)
    assert unreadable.runtimes == {} and "cannot be read" in unreadable.runtimes_source()
    monkeypatch.undo()
    monkeypatch.setattr("service.config.AGENT_CONFIG", path)
    loaded = parse_config(db)
    with caplog.at_level(logging.INFO, logger="service.test"):
        for each in (config, unreadable, loaded):
            each.log_startup(logging.getLogger("service.test"))
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert lines[0] == (logging.WARNING, "Cannot read the configuration file /etc/backbench/agent.toml "
                        "(Permission denied): running without worker runtimes; --config FILE names "
                        "one this agent can read")  # fmt: skip
    assert lines[1][0] == logging.WARNING and str(path) in lines[1][1]
    assert lines[2] == (logging.INFO, f"Configuration {path}: worker runtimes: {RUNTIME}")


class _Recorder:
    """The dispatcher's queue and bridge: what it finished a job with."""

    def __init__(self) -> None:
        self.finished: list[tuple[int, str, str | None]] = []

    def finish(self, job_id: int, state: str, reason: str | None = None) -> None:
        self.finished.append((job_id, state, reason))

    def event(self, *args: Any) -> None:
        pass


def _dispatcher(tmp_path: Path, python: str, run_manifest: dict[str, Any] | None = None) -> Any:
    from types import SimpleNamespace

    from core.measure.runtimes import WorkerRuntime
    from service.dispatcher import JobDispatcher

    config = parse_config(["--db", str(tmp_path / "r.db"), "--config", str(_config(tmp_path, sys.executable))])
    config.runtimes[RUNTIME] = WorkerRuntime(RUNTIME, python, config.runtimes[RUNTIME].pythonpath)
    recorder = _Recorder()
    store = SimpleNamespace(get_run=lambda ref: SimpleNamespace(id=ref, manifest=run_manifest or {}))
    dispatcher = JobDispatcher(recorder, store, config, recorder, {"python": "3.11"})  # type: ignore[arg-type]
    job = SimpleNamespace(id=5, spec=SimpleNamespace(runtime=RUNTIME), run_id=3 if run_manifest else None)
    return dispatcher, job, recorder


def _script(tmp_path: Path, body: str) -> str:
    script = tmp_path / "python"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return str(script)


def test_the_dispatcher_asks_a_runtime_briefly_and_gives_way_to_a_cancel(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import threading

    dispatcher, job, recorder = _dispatcher(tmp_path, _script(tmp_path, "exec sleep 60"))
    threading.Timer(0.3, dispatcher._cancel.set).start()
    assert dispatcher._prepare_runtime(job) is None
    assert recorder.finished == [(5, "cancelled", "cancelled by a client")]
    # A broken interpreter: clients get a fixed line, the log its stderr.
    dispatcher, job, recorder = _dispatcher(tmp_path, _script(tmp_path, "echo secret-trace >&2; exit 1"))
    with caplog.at_level(logging.ERROR, logger="service.dispatcher"):
        assert dispatcher._prepare_runtime(job) is None
    ((_, state, reason),) = recorder.finished
    assert state == "failed" and "secret-trace" not in (reason or "")
    assert reason == f"worker runtime '{RUNTIME}' did not answer; the agent's log has the details"
    assert "secret-trace" in caplog.text


def test_the_dispatcher_refuses_to_resume_a_run_on_a_changed_runtime(tmp_path: Path) -> None:
    from core.measure.runtimes import with_runtime

    dispatcher, job, _ = _dispatcher(tmp_path, sys.executable)
    runtime = dispatcher.config.runtime(RUNTIME)
    versions = runtime.versions()
    same = with_runtime({"python": "3.11"}, runtime, versions)
    dispatcher, job, recorder = _dispatcher(tmp_path, sys.executable, same)
    prepared = dispatcher._prepare_runtime(job)
    assert prepared is not None and prepared[0] == runtime and recorder.finished == []
    changed = with_runtime({"python": "3.11"}, runtime, {**versions, "python": "3.10.12"})
    dispatcher, job, recorder = _dispatcher(tmp_path, sys.executable, changed)
    assert dispatcher._prepare_runtime(job) is None
    ((_, state, reason),) = recorder.finished
    assert state == "failed"
    assert reason and f"Run 3 cannot be resumed: worker runtime '{RUNTIME}' changed" in reason
    assert "Python 3.10.12 -> " in reason and "start a new run" in reason


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
