"""Named worker runtimes: their configuration, its errors, and how a case runner and a
run spec use them (core.measure.runtimes). No second interpreter needed: the runtime's
python here is this one (tests/core/test_edge_runtime.py runs the real 3.10 one)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import sysconfig
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from core import __version__
from core.cli.run_options import add_run_options, remote_spec_dict, spec_from_args, spec_from_remote
from core.errors import DeviceUnavailableError, UsageError
from core.measure.runner import check_runtime
from core.measure.runtimes import (
    RUNTIME_CWD,
    ProbeCancelled,
    RuntimeProbeError,
    WorkerRuntime,
    check_resume_runtime,
    load_runtimes,
    parse_runtimes,
    runtime_changes,
    select_runtime,
    user_config_path,
    with_runtime,
)
from core.measure.supervisor import CaseRunner, default_worker_command
from core.results import Backend, RunSpec

PY = sys.executable
REPO = str(Path(__file__).resolve().parents[2])


def core_only(folder: Path) -> Path:
    """A folder holding only backbench's core/ (a link to this checkout's), as the
    packages' /opt/backbench/worker holds it: no service/, no gui/."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "core").symlink_to(Path(REPO) / "core")
    return folder


@pytest.fixture
def bare_runtime(tmp_path: Path) -> WorkerRuntime:
    """This Python as a runtime that sees only core/: started with -S, so the editable
    install's path hook (which would find service/ too) is not read; its pythonpath is
    a core/-only folder and the site-packages of the frameworks."""
    wrapper = tmp_path / "bare-python"
    wrapper.write_text(f'#!/bin/sh\nexec "{PY}" -S "$@"\n')
    wrapper.chmod(0o755)
    site = sysconfig.get_paths()["purelib"]
    return WorkerRuntime("bare", str(wrapper), (str(core_only(tmp_path / "worker")), site), "", "x.toml")


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
    base = {"PATH": "/bin", "PYTHONPATH": "/mine", "VIRTUAL_ENV": "/v", "XDG_CACHE_HOME": "/c",
            "PYTHONHOME": "/h", "PYTHONUSERBASE": "/u", "PYTHONNOUSERSITE": "1",
            "PYTHONPLATLIBDIR": "lib64", "PYTHONSTARTUP": "/s.py", "LD_LIBRARY_PATH": "/ov/libs",
            "LD_PRELOAD": "/x.so", "INTEL_OPENVINO_DIR": "/ov", "OpenVINO_DIR": "/ov/cmake",
            "BACKBENCH_OV_API": "modern", "OMP_NUM_THREADS": "2", "BACKBENCH_CACHE_DIR": "/bc"}  # fmt: skip
    env = edge.env(base)
    assert env == {"PATH": "/bin", "PYTHONPATH": "/opt/bb", "XDG_CACHE_HOME": "/c",
                   "OMP_NUM_THREADS": "2", "BACKBENCH_CACHE_DIR": "/bc"}  # fmt: skip
    assert "PYTHONPATH" not in WorkerRuntime("plain", PY).env(base)
    runner = CaseRunner(runtime=edge)
    try:
        assert runner.worker_command == ["/opt/edge/bin/python", "-m", "core.measure.worker"]
        assert runner.env is not None and runner.env["PYTHONPATH"] == "/opt/bb"
        assert runner._command_for("openvino") == (runner.worker_command, runner.env)
        assert runner._command_for("convert") == (default_worker_command(), None)
        # The runtime's processes start in a neutral folder (`python -m` would put the
        # working folder, and a core/ there, ahead of its pythonpath); conversions here.
        assert runner._cwd_for("openvino") == RUNTIME_CWD == "/"
        assert runner._cwd_for("convert") == os.getcwd()
    finally:
        runner.close()
    plain = CaseRunner()
    try:
        assert plain._cwd_for("openvino") == os.getcwd()
    finally:
        plain.close()
    check_runtime(RunSpec(models=("m",), runtime="edge"), edge)
    with pytest.raises(UsageError, match="would run on 'this interpreter'"):
        check_runtime(RunSpec(models=("m",), runtime="edge"), None)
    with pytest.raises(UsageError, match="--no-isolate"):
        check_runtime(RunSpec(models=("m",), runtime="edge", isolate=False), edge)


def test_a_runtime_with_only_core_on_its_path_answers(bare_runtime: WorkerRuntime, tmp_path: Path) -> None:
    """The packages ship only core/ for a runtime's pythonpath: its probe needs no more."""
    seen = subprocess.run(
        [bare_runtime.python, "-c", "import core, importlib.util as u; print(u.find_spec('service'))"],
        env=bare_runtime.env(), cwd="/", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert seen.returncode == 0 and seen.stdout.strip() == "None", seen.stdout + seen.stderr
    host = {"python": "9.9", "packages": {"numpy": "0"}, "host": "h"}
    out = with_runtime(host, bare_runtime)
    assert out["python"] == sys.version.split()[0]
    assert out["packages"]["numpy"] == __import__("numpy").__version__
    assert out["supervisor"] == {"python": "9.9", "packages": {"numpy": "0"}}
    assert out["runtime"]["name"] == "bare" and out["runtime"]["python_version"] == out["python"]
    assert out["runtime"]["backbench"] == __version__
    assert out["host"] == "h"
    case = RunSpec(models=("m",), backend=Backend.ONNXRUNTIME).cases()[0]
    bare_runtime.check_case(case)
    # The runtime's check raises the class the check raised there, naming the runtime.
    with pytest.raises(DeviceUnavailableError, match=r"^On runtime 'bare': Device 'nope'"):
        bare_runtime.check_case(replace(case, device="NOPE"))


def test_a_core_package_in_the_callers_folder_does_not_reach_the_runtime(
    bare_runtime: WorkerRuntime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bogus = tmp_path / "here"
    (bogus / "core").mkdir(parents=True)
    (bogus / "core" / "__init__.py").write_text("raise ImportError('the bogus core')\n")
    monkeypatch.chdir(bogus)
    monkeypatch.setenv("BACKBENCH_OV_API", "bogus")
    monkeypatch.setenv("LD_PRELOAD", str(bogus / "missing.so"))
    assert bare_runtime.versions()["backbench"] == __version__


def _script(tmp_path: Path, body: str) -> str:
    script = tmp_path / "python"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return str(script)


def test_a_broken_runtime_says_which_and_why(tmp_path: Path) -> None:
    broken = WorkerRuntime("broken", _script(tmp_path, "echo 'the driver said no' >&2; exit 3"), (), "", "x.toml")
    with pytest.raises(RuntimeProbeError, match="'broken' .* cannot run backbench's worker: the driver said no") as caught:
        broken.versions()
    assert "the driver said no" in caught.value.detail


def test_a_stuck_runtime_times_out_and_gives_way_to_a_cancel(tmp_path: Path) -> None:
    stuck = WorkerRuntime("stuck", _script(tmp_path, "exec sleep 60"), (), "", "x.toml")
    t0 = time.monotonic()
    with pytest.raises(RuntimeProbeError, match="did not answer within 1 s"):
        stuck.versions(timeout_s=1.0)
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    with pytest.raises(ProbeCancelled):
        stuck.versions(timeout_s=60.0, cancel=cancel)
    assert time.monotonic() - t0 < 10


def test_a_resume_on_a_changed_runtime_is_refused_saying_what_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = WorkerRuntime("edge", PY, (), "", "x.toml")
    now = {"python": "3.10.12", "backbench": "0.2.0", "packages": {"openvino": "2022.3.2", "torch": None}}
    recorded = with_runtime({"python": "3.11"}, runtime, now)
    assert runtime_changes(recorded, runtime, now) == []
    check_resume_runtime(recorded, runtime, "7", now)
    later = {"python": "3.10.13", "backbench": "0.3.0", "packages": {"openvino": "2023.0.0", "torch": "2.1"}}
    assert runtime_changes(recorded, WorkerRuntime("edge", "/opt/other/python"), later) == [
        f"python {PY} -> /opt/other/python", "Python 3.10.12 -> 3.10.13", "backbench 0.2.0 -> 0.3.0",
        "openvino 2022.3.2 -> 2023.0.0", "torch absent -> 2.1",
    ]  # fmt: skip
    with pytest.raises(UsageError) as refused:
        check_resume_runtime(recorded, runtime, "7", later)
    assert refused.value.message.startswith("Run 7 cannot be resumed: worker runtime 'edge' changed")
    assert "start a new run" in refused.value.message and "\n" not in refused.value.message
    # An older run's manifest, without the backbench version, is compared on the rest.
    del recorded["runtime"]["backbench"]
    check_resume_runtime(recorded, runtime, "7", {**now, "backbench": "0.9"})

    # `backbench run --resume` refuses such a run, in one line.
    from core.store import Store

    config = tmp_path / "config" / "backbench"
    config.mkdir(parents=True)
    (config / "config.toml").write_text(f'[runtimes.edge]\npython = "{PY}"\n')
    spec = RunSpec(models=("m",), backend=Backend.ONNXRUNTIME, runtime="edge")
    store = Store(tmp_path / "r.db")
    try:
        run = store.create_run(spec, with_runtime({"python": "3.11"}, runtime, now), name="old")
        store.set_run_status(run.id, "interrupted")
    finally:
        store.close()
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    done = subprocess.run(
        [PY, "-m", "core.cli", "run", "--db", str(tmp_path / "r.db"), "--resume", str(run.id)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0
    assert f"Run {run.id} cannot be resumed: worker runtime 'edge' changed" in done.stderr, done.stderr
    assert "Python 3.10.12 -> " in done.stderr and "start a new run" in done.stderr


def test_runtime_names_end_where_they_end(tmp_path: Path) -> None:
    for bad in ("edge\n", "edge\nx"):
        with pytest.raises(UsageError):
            RunSpec(models=("m",), runtime=bad)
    with pytest.raises(UsageError, match="a runtime name is"):
        parse_runtimes(f'[runtimes."edge\\n"]\npython = "{PY}"', "x.toml")


def test_runtimes_as_json_is_json_even_when_none_are_configured(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path)}
    done = subprocess.run([PY, "-m", "core.cli", "runtimes", "--format", "json"],
                          env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
