"""Fixtures for the agent tests; the helpers live in agentlib."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.service.agentlib import QUEUE_SAMPLES, Agent, make_tiny_onnx, other_group


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    make_tiny_onnx(folder / "tiny.onnx")
    return folder


@pytest.fixture
def make_agent(tmp_path: Path) -> Iterator[Any]:
    made: list[Agent] = []

    def make(*args: str, **kwargs: Any) -> Agent:
        agent = Agent(tmp_path, *args, **kwargs)
        made.append(agent)
        return agent

    yield make
    for agent in made:
        agent.close()


@pytest.fixture(scope="session")
def agent(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[Agent]:
    """One agent shared by every test that does not stop or kill it."""
    root = tmp_path_factory.mktemp("agent")
    proc = Agent(
        root,
        "--model-dir",
        str(models_dir),
        "--term-grace-s",
        "1",
        "--client-queue-samples",
        str(QUEUE_SAMPLES),
        "--group",
        other_group(),
    )
    proc.start()
    yield proc
    rc = proc.stop()
    proc.close()
    assert rc == 0, proc.log()
    assert "Traceback" not in proc.log(), proc.log()
