"""``backbench-agent --self-test`` from a checkout: a real agent child on a temporary
socket measures a tiny OpenVINO IR (and ONNX) model and stops on SIGTERM; a failure says
what failed and exits 1. The frozen entry's dispatch of worker/zygote/probe is checked too
(the bundles themselves: tests/bundles)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from service import selftest

REPO = Path(__file__).resolve().parents[2]
ENTRY = REPO / "packaging" / "pyinstaller" / "backbench_agent.py"

pytest.importorskip("openvino")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def test_backbench_agent_self_test_flag_runs_it_and_exits_0() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "service", "--self-test", "--backends", "openvino,onnxruntime"],
        capture_output=True, text=True, timeout=240, env=_env(), cwd=REPO,
    )  # fmt: skip
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stdout + done.stderr
    assert any(line.startswith("ok    hello: agent") for line in lines), done.stdout
    measured = [line for line in lines if line.startswith("ok    openvino CPU selftest.xml: ok")]
    assert measured and "worker started by fork-server" in measured[0]  # the default start
    assert any(line.startswith("ok    onnxruntime cpu selftest.onnx: ok") for line in lines)
    assert any(line.startswith("ok    agent stopped on SIGTERM: exit 0") for line in lines)
    assert "FAIL" not in done.stdout and lines[-1].startswith("self-test passed")


def test_a_failing_agent_fails_the_self_test_with_its_log(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        selftest, "agent_command",
        lambda: [sys.executable, "-c", "import sys; print('cannot start: no reason'); sys.exit(3)"],
    )  # fmt: skip
    lines: list[str] = []
    assert selftest.run_self_test(["openvino"], write=lines.append) == 1
    text = "\n".join(lines)
    assert "FAIL  the agent exited with 3 at start" in text
    assert "cannot start: no reason" in text  # the agent's log is shown
    assert lines[-1].startswith("self-test FAILED")


def test_frozen_agent_starts_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert selftest.agent_command() == [sys.executable]
    monkeypatch.delattr(sys, "frozen")
    assert selftest.agent_command() == [sys.executable, "-m", "service"]


def test_unknown_backend_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exit_info:
        selftest.main(["--backends", "tensorflow"])
    assert exit_info.value.code == 2


def test_frozen_entry_dispatches_worker_zygote_probe_and_the_agent() -> None:
    """The bundle's entry script: ``worker``, ``zygote`` and ``probe`` reach their modules
    before the agent's options are parsed; anything else is the agent's command line."""
    probe = subprocess.run(
        [sys.executable, str(ENTRY), "probe", "no-such-question"],
        capture_output=True, text=True, timeout=60, env=_env(), cwd=REPO,
    )  # fmt: skip
    assert probe.returncode == 1 and "unknown probe command 'no-such-question'" in probe.stderr
    version = subprocess.run(
        [sys.executable, str(ENTRY), "--version"],
        capture_output=True, text=True, timeout=60, env=_env(), cwd=REPO,
    )  # fmt: skip
    assert version.returncode == 0 and version.stdout.startswith("backbench-agent ")
    worker = subprocess.run(
        [sys.executable, str(ENTRY), "worker", "--help"],
        capture_output=True, text=True, timeout=60, env=_env(), cwd=REPO,
    )  # fmt: skip
    assert worker.returncode == 0 and "backbench worker" in worker.stdout
    zygote = subprocess.run(
        [sys.executable, str(ENTRY), "zygote", "--help"],
        capture_output=True, text=True, timeout=60, env=_env(), cwd=REPO,
    )  # fmt: skip
    assert zygote.returncode == 0 and "backbench zygote" in zygote.stdout
