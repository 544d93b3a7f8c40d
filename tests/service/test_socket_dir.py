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
