"""The agent and its clients refuse a socket folder another user could have planted
(issue 10, M2): real processes, real folders."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def test_the_client_will_not_connect_through_a_folder_anyone_may_write(tmp_path: Path) -> None:
    from core.errors import AgentUnavailableError
    from service.client import AgentClient

    shared = tmp_path / "backbench-1000"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(AgentUnavailableError) as err:
        AgentClient(shared / "agent.sock")
    assert "Will not connect" in err.value.message and "writable by every user" in err.value.message
    assert "chmod 700" in (err.value.hint or "")



def test_the_agent_will_not_listen_in_a_folder_anyone_may_write(tmp_path: Path) -> None:
    shared = tmp_path / "backbench-1000"
    shared.mkdir()
    shared.chmod(0o777)
    done = subprocess.run(
        [sys.executable, "-m", "core.cli", "agent", "--socket", str(shared / "agent.sock"),
         "--db", str(tmp_path / "agent.db")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0
    assert "Will not listen in" in done.stderr and "writable by every user" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (shared / "agent.sock").exists()


def _agent_on(socket_path: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "core.cli", "agent", "--socket", str(socket_path),
         "--db", str(tmp_path / "agent.db")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _lock_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "lock file" in line]


def test_the_agent_will_not_follow_a_symlink_at_its_lock_file(tmp_path: Path) -> None:
    # Issue 10's L10: `<socket>.lock` was opened through a symlink planted there, which
    # made the agent create a file wherever it pointed.
    folder = tmp_path / "run"
    folder.mkdir(mode=0o700)
    target = tmp_path / "elsewhere" / "created-by-the-agent"
    target.parent.mkdir()
    lock = folder / "agent.sock.lock"
    lock.symlink_to(target)
    done = _agent_on(folder / "agent.sock", tmp_path)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = _lock_lines(done.stderr)
    assert len(lines) == 1 and f"Will not use {lock}" in lines[0], done.stderr
    assert "symbolic link" in lines[0] and "Remove it" in lines[0]
    assert not target.exists(), "the agent created a file through the symlink"
    assert lock.is_symlink() and not (folder / "agent.sock").exists()


def test_a_folder_at_the_lock_file_is_refused_in_one_line(tmp_path: Path) -> None:
    # Issue 10's L11: a folder there crashed the agent with an IsADirectoryError traceback.
    folder = tmp_path / "run"
    folder.mkdir(mode=0o700)
    lock = folder / "agent.sock.lock"
    lock.mkdir()
    (lock / "kept").write_text("not the agent's")
    done = _agent_on(folder / "agent.sock", tmp_path)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr and "IsADirectoryError" not in done.stderr
    lines = _lock_lines(done.stderr)
    assert len(lines) == 1 and f"Will not use {lock}" in lines[0], done.stderr
    assert "it is a folder" in lines[0] and "Remove that folder" in lines[0]
    assert (lock / "kept").read_text() == "not the agent's"
    assert not (folder / "agent.sock").exists()
