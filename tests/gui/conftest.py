"""GUI test fixtures: offscreen Qt, a private settings file, and real agents on sockets
under tmp_path (started as subprocesses, as the service tests do)."""

from __future__ import annotations

import os

# Before any Qt import: no display in tests.
os.environ["QT_QPA_PLATFORM"] = "offscreen"

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
AGENT_START_S = 60.0
# A tiny, fast case: squeezenet at batch 1 with a loose stopping rule.
TINY_MODEL = "squeezenet1_1"
FAST_STOPPING = {"min_iters": 5, "target_ci": 0.5, "max_time_s": 1.0}


class AgentProcess:
    """A real ``backbench agent`` on ``socket_path``; restartable on the same socket."""

    def __init__(self, socket_path: Path, db_path: Path, log_path: Path) -> None:
        self.socket_path = socket_path
        self.db_path = db_path
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AgentProcess:
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
        command = [sys.executable, "-m", "service.agent", "--socket", str(self.socket_path),
                   "--db", str(self.db_path), "--term-grace-s", "2"]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=log,
                                         start_new_session=True)  # fmt: skip
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + AGENT_START_S
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"the agent exited at start: {self.log_path.read_text()[-2000:]}")
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(str(self.socket_path))
                return
            except OSError:
                time.sleep(0.05)  # a subprocess's readiness, outside any Qt event loop
            finally:
                probe.close()
        raise RuntimeError(f"the agent did not listen within {AGENT_START_S} s")

    def stop(self, sig: int = signal.SIGTERM, wait_s: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""


def _agent_dir(factory: pytest.TempPathFactory) -> Path:
    # Unix socket paths are short (107 bytes): a short folder name.
    return factory.mktemp("ag")


@pytest.fixture(scope="module")
def shared_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    """One agent for a test module (its queue and store carry over between tests)."""
    folder = _agent_dir(tmp_path_factory)
    agent = AgentProcess(folder / "agent.sock", folder / "results.db", folder / "agent.log").start()
    yield agent
    agent.stop()


@pytest.fixture
def fresh_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    """An agent of the test's own, which the test may kill and restart."""
    folder = _agent_dir(tmp_path_factory)
    agent = AgentProcess(folder / "agent.sock", folder / "results.db", folder / "agent.log").start()
    yield agent
    agent.stop()


@pytest.fixture(autouse=True)
def gui_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private QSettings file and runtime dir, so no test reads or writes the user's."""
    from PySide6.QtCore import QSettings

    folder = tmp_path / "settings"
    folder.mkdir()
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(folder))
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    return folder


@pytest.fixture(autouse=True)
def _free_qt_objects_while_the_app_lives() -> Iterator[None]:
    """Unparented Qt objects caught in reference cycles must die before the QApplication:
    destroyed during interpreter shutdown they crash the process (SIGSEGV at exit)."""
    yield
    import gc

    gc.collect()
