"""The memory cgroup helper: finding this process's memory cgroup on either version, and
what it says when none can be made. The real thing (a case OOM-killed under its own
cgroup) is tested in test_supervisor.py where this machine allows it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.measure.cgroup import MECHANISM_V1, MemoryCgroup, own_memory_cgroup


def test_v1_memory_hierarchy_is_found(tmp_path: Path) -> None:
    (tmp_path / "memory" / "process_api" / "abc").mkdir(parents=True)
    text = "9:name=systemd:/\n4:memory:/process_api/abc\n1:cpu:/\n0::/\n"
    assert own_memory_cgroup(text, root=tmp_path) == (1, tmp_path / "memory" / "process_api" / "abc")


def test_v2_unified_hierarchy_with_the_memory_controller_is_found(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (tmp_path / "system.slice" / "backbench-agent.service").mkdir(parents=True)
    found = own_memory_cgroup("0::/system.slice/backbench-agent.service\n", root=tmp_path)
    assert found == (2, tmp_path / "system.slice" / "backbench-agent.service")


def test_a_hybrid_unified_tree_without_memory_is_not_a_memory_cgroup(tmp_path: Path) -> None:
    (tmp_path / "unified").mkdir()
    (tmp_path / "unified" / "cgroup.controllers").write_text("\n")
    assert own_memory_cgroup("1:name=systemd:/\n0::/\n", root=tmp_path) is None
    assert own_memory_cgroup("", root=tmp_path) is None


def test_a_cgroup_that_cannot_be_limited_is_removed_and_says_why(tmp_path: Path) -> None:
    parent = tmp_path / "memory" / "mine"
    parent.mkdir(parents=True)  # a plain folder: no memory.limit_in_bytes to write
    made = MemoryCgroup.create("backbench-1-1", 100, parent=(1, parent))
    assert isinstance(made, str) and made.startswith("cannot set a memory limit in")
    assert list(parent.iterdir()) == []


def test_no_cgroup_without_a_parent_says_so(tmp_path: Path) -> None:
    made = MemoryCgroup.create("backbench-1-1", 100, parent=(1, tmp_path / "missing"))
    assert isinstance(made, str) and "cannot make a memory cgroup" in made


def test_a_real_case_cgroup_limits_and_counts_here_where_allowed() -> None:
    made = MemoryCgroup.create(f"backbench-{os.getpid()}-unit", 64)
    if isinstance(made, str):
        pytest.skip(f"no memory cgroup can be made here: {made}")
    try:
        assert made.mechanism.startswith(MECHANISM_V1 if made.version == 1 else "cgroup v2")
        limit_file = "memory.limit_in_bytes" if made.version == 1 else "memory.max"
        assert int((made.path / limit_file).read_text()) == 64 << 20
        assert made.oom_kills() == 0
    finally:
        assert made.remove()
    assert not made.path.exists()
