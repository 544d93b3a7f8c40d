"""The seams of DESIGN.md, checked on the source: core has no Qt and no sockets, service
has no Qt, the GUI never touches torch, openvino, onnxruntime or service."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FORBIDDEN = {
    "core": {"PySide6", "pyqtgraph", "gui", "socket", "selectors", "asyncio", "service"},
    "service": {"PySide6", "pyqtgraph", "gui"},
    "gui": {"torch", "torchvision", "openvino", "onnxruntime", "service"},
}
# The `backbench` entry point lives in core and starts the agent and the GUI: those two
# command modules may import service or gui inside the command functions that run them
# (never at module level), the way glances loads each mode only when it is used.
LAZY_ALLOWED = {("core/cli_agent.py", "service"), ("core/cli_gui.py", "gui")}


def imports(path: Path) -> list[tuple[str, bool]]:
    """(top-level package, at module level?) for every import in a file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[str, bool]] = []
    module_level = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name.split(".")[0], id(node) in module_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module.split(".")[0], id(node) in module_level))
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_respects_its_seams(package: str) -> None:
    violations = []
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for name, at_module_level in imports(path):
            if name not in FORBIDDEN[package]:
                continue
            if (rel, name) in LAZY_ALLOWED and not at_module_level:
                continue
            violations.append(f"{rel} imports {name}")
    assert not violations, "\n".join(violations)
