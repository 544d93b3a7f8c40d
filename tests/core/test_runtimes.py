"""Named worker runtimes: their configuration, its errors, and how a case runner and a
run spec use them (core.measure.runtimes). No second interpreter needed: the runtime's
python here is this one (tests/core/test_edge_runtime.py runs the real 3.10 one)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

from core.cli.run_options import add_run_options, remote_spec_dict, spec_from_args, spec_from_remote
from core.errors import UsageError
from core.measure.runner import check_runtime
from core.measure.runtimes import (
    WorkerRuntime,
    load_runtimes,
    parse_runtimes,
    select_runtime,
    user_config_path,
    with_runtime,
)
from core.measure.supervisor import CaseRunner, default_worker_command
from core.results import RunSpec

PY = sys.executable
REPO = str(Path(__file__).resolve().parents[2])


def test_a_runtime_table_parses_with_a_bare_dotted_name_or_a_quoted_one(tmp_path: Path) -> None:
    text = f"""
[runtimes.openvino-2022.3]
python = "{PY}"
pythonpath = ["{REPO}"]
description = "OpenVINO 2022.3.2 on CPython 3.10 (NCS2)"

[runtimes."ort.cpu"]
python = "{PY}"

[other]
ignored = true
"""
    found = parse_runtimes(text, "cfg.toml")
    assert sorted(found) == ["openvino-2022.3", "ort.cpu"]
    edge = found["openvino-2022.3"]
    assert edge == WorkerRuntime("openvino-2022.3", PY, (REPO,), "OpenVINO 2022.3.2 on CPython 3.10 (NCS2)", "cfg.toml")
    assert edge.worker_command() == [PY, "-m", "core.measure.worker"]
    assert found["ort.cpu"].pythonpath == ()
    path = tmp_path / "agent.toml"
    path.write_text(text)
    assert load_runtimes(path) == {k: WorkerRuntime(**{**v.__dict__, "source": str(path)}) for k, v in found.items()}


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("[runtimes.x\npython = 1", "is not valid TOML"),
        ('runtimes = "x"', "'runtimes' must be a table"),
        ("[runtimes.x]\ndescription = 'no python'", 'runtime "x" needs python'),
        ("[runtimes.x]\npython = 'bin/python'", "is not an absolute path"),
        ("[runtimes.x]\npython = '/no/such/python'", "/no/such/python does not exist"),
        ("[runtimes.x]\npython = 'NOTEXEC'", "is not executable"),
        (f"[runtimes.x]\npython = '{PY}'\ninterpreter = 'y'", "unknown key 'interpreter'"),
        (f"[runtimes.x]\npython = '{PY}'\npythonpath = [1]", "pythonpath must be a list"),
        (f"[runtimes.x]\npython = '{PY}'\npythonpath = ['rel']", "'rel' is not an absolute path"),
        (f"[runtimes.x]\npython = '{PY}'\ndescription = 3", "description must be text"),
        (f"[runtimes.\"a b\"]\npython = '{PY}'", "a runtime name is"),
        ("[runtimes]\nx = 3", 'runtime "x" must be a table'),
    ],
)
def test_a_bad_file_is_a_usage_error_naming_the_file_and_the_problem(
    body: str, says: str, tmp_path: Path
) -> None:
    plain = tmp_path / "python"
    plain.write_text("")
    body = body.replace("NOTEXEC", str(plain))
    with pytest.raises(UsageError) as caught:
        parse_runtimes(body, "/etc/backbench/agent.toml")
    assert "/etc/backbench/agent.toml" in caught.value.message
    assert says in caught.value.message
    assert "[" not in caught.value.message  # the CLI prints through rich, which eats [markup]


def test_a_missing_file_is_an_error_only_when_it_was_named(tmp_path: Path) -> None:
    assert load_runtimes(tmp_path / "none.toml", required=False) == {}
    with pytest.raises(UsageError, match="none.toml does not exist"):
        load_runtimes(tmp_path / "none.toml")
    (tmp_path / "bad.toml").write_bytes(b"\xff\xfe")
    with pytest.raises(UsageError, match="bad.toml is not UTF-8"):
        load_runtimes(tmp_path / "bad.toml", required=False)


def test_runtimes_are_chosen_by_name_never_by_path() -> None:
    runtimes = parse_runtimes(f"[runtimes.edge]\npython = '{PY}'", "x.toml")
    assert select_runtime("edge", runtimes, "x.toml").python == PY
    with pytest.raises(UsageError) as unknown:
        select_runtime("nope", runtimes, "/etc/backbench/agent.toml")
    assert unknown.value.message == "Unknown worker runtime 'nope'; configured: edge."
    assert "/etc/backbench/agent.toml" in (unknown.value.hint or "")
    with pytest.raises(UsageError, match="not a path"):
        select_runtime(PY, runtimes, "x.toml")
    # The spec refuses a path before any configuration is read (CLI, remote submit, agent).
    for bad in (PY, "../x", "a b"):
        with pytest.raises(UsageError, match="never an interpreter or a path"):
            RunSpec(models=("m",), runtime=bad)


def test_the_user_config_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert user_config_path() == tmp_path / "backbench" / "config.toml"


def test_the_runtime_option_reaches_run_remote_submit_and_the_spec() -> None:
    for remote in (False, True):
        parser = argparse.ArgumentParser()
        add_run_options(parser, remote=remote)
        spec = spec_from_args(parser.parse_args(["-m", "resnet18", "--runtime", "openvino-2022.3"]))
        assert spec.runtime == "openvino-2022.3"
        sent = remote_spec_dict(spec)
        assert sent["runtime"] == "openvino-2022.3"
        assert spec_from_remote(sent).runtime == "openvino-2022.3"
        assert RunSpec.from_dict(spec.to_dict()) == spec
    # Without one the spec reads as before: no field (older agents refuse unknown ones).
    assert "runtime" not in RunSpec(models=("m",)).to_dict()
    with pytest.raises(UsageError, match="never an interpreter"):
        spec_from_remote({"models": ["m"], "runtime": "/usr/bin/python3"})


def test_a_case_runner_on_a_runtime_converts_here_and_measures_there(tmp_path: Path) -> None:
    edge = WorkerRuntime("edge", "/opt/edge/bin/python", ("/opt/bb",), source="x.toml")
    base = {"PATH": "/bin", "PYTHONPATH": "/mine", "VIRTUAL_ENV": "/v", "XDG_CACHE_HOME": "/c"}
    env = edge.env(base)
    assert env == {"PATH": "/bin", "PYTHONPATH": "/opt/bb", "XDG_CACHE_HOME": "/c"}
    runner = CaseRunner(runtime=edge)
    try:
        assert runner.worker_command == ["/opt/edge/bin/python", "-m", "core.measure.worker"]
        assert runner.env is not None and runner.env["PYTHONPATH"] == "/opt/bb"
        assert runner._command_for("openvino") == (runner.worker_command, runner.env)
        assert runner._command_for("convert") == (default_worker_command(), None)
    finally:
        runner.close()
    check_runtime(RunSpec(models=("m",), runtime="edge"), edge)
    with pytest.raises(UsageError, match="would run on 'this interpreter'"):
        check_runtime(RunSpec(models=("m",), runtime="edge"), None)
    with pytest.raises(UsageError, match="--no-isolate"):
        check_runtime(RunSpec(models=("m",), runtime="edge", isolate=False), edge)


def test_the_manifest_has_the_worker_interpreters_versions() -> None:
    here = WorkerRuntime("same", PY, (REPO,), "this Python", "x.toml")
    host = {"python": "9.9", "packages": {"numpy": "0"}, "host": "h"}
    out = with_runtime(host, here)
    assert out["python"] == sys.version.split()[0]
    assert out["packages"]["numpy"] == __import__("numpy").__version__
    assert out["supervisor"] == {"python": "9.9", "packages": {"numpy": "0"}}
    assert out["runtime"]["name"] == "same" and out["runtime"]["python_version"] == out["python"]
    assert out["host"] == "h"


def test_a_broken_runtime_says_which_and_why(tmp_path: Path) -> None:
    from core.errors import BackbenchError

    broken = WorkerRuntime("broken", "/bin/false", (), "", "x.toml")
    with pytest.raises(BackbenchError, match="'broken' .* cannot run backbench's worker"):
        broken.versions()
