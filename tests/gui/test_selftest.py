"""``backbench-gui --self-test`` from a checkout: it opens the main window offscreen,
imports and analyses sample data, closes the window and exits 0; a failure exits 1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gui import selftest

REPO = Path(__file__).resolve().parents[2]


def test_backbench_gui_self_test_exits_0_and_says_what_it_checked(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")
    }
    env.update(PYTHONPATH=str(REPO), HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "config"))
    done = subprocess.run(
        [sys.executable, "-m", "gui", "--self-test"],
        capture_output=True, text=True, timeout=240, env=env, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    passed = [line for line in out.splitlines() if line.startswith("ok    ")]
    for check in ("on the 'offscreen' platform", "main window shown", "results and analysis views are the real ones",
                  "imported 48 measurements", "analysis fitted", "main window closed"):  # fmt: skip
        assert any(check in line for line in passed), out
    assert "FAIL" not in out and out.strip().splitlines()[-1].startswith("self-test passed")
    assert not (tmp_path / "config").exists()  # the user's settings are neither read nor written


def test_a_failed_check_exits_1(qapp, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(path: Path) -> Path:
        path.write_text("not,a\nresults,file\n")
        return path

    monkeypatch.setattr(selftest, "synthetic_results", broken)
    lines: list[str] = []
    assert selftest.run_self_test(write=lines.append) == 1
    assert any(line.startswith("FAIL") for line in lines), lines
    assert lines[-1].startswith("self-test FAILED")


def test_offscreen_only_without_a_display() -> None:
    env: dict[str, str] = {}
    assert selftest.use_offscreen_without_display(env) and env["QT_QPA_PLATFORM"] == "offscreen"
    env = {"DISPLAY": ":0"}
    assert not selftest.use_offscreen_without_display(env) and "QT_QPA_PLATFORM" not in env
    env = {"QT_QPA_PLATFORM": "xcb"}
    assert not selftest.use_offscreen_without_display(env) and env["QT_QPA_PLATFORM"] == "xcb"
