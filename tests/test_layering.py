"""The architecture of docs/ARCHITECTURE.md, checked on the import graph.

The layer contracts themselves are import-linter contracts in pyproject.toml, run by
`make test` (`lint-imports`). This file adds what a contract cannot say: that no two
modules import each other in a circle, anywhere in the tree; which core modules the GUI
may import; and that importing the GUI really loads no inference framework.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "service", "gui")

# The light core modules the GUI may import directly: the data model and its helpers,
# the wire protocol, and the analysis side. Measuring (core.measure, core.backends)
# stays out, and so do the CLI's commands; the run options are shared with the launcher.
GUI_MAY_IMPORT = (
    "core", "core.errors", "core.results", "core.text", "core.paths",
    "core.protocol", "core.zoo", "core.store", "core.analysis", "core.predict",
    "core.report", "core.cli.run_options",
)  # fmt: skip
FRAMEWORKS = ("torch", "torchvision", "openvino", "onnxruntime", "onnx")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, cache_dir=None)


def strongly_connected(nodes: Iterable[str], edges: Mapping[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iteratively: every strongly connected component."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in sorted(nodes):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def internal_edges(graph: grimp.ImportGraph) -> dict[str, set[str]]:
    modules = {m for m in graph.modules if m.split(".")[0] in PACKAGES}
    return {m: graph.find_modules_directly_imported_by(m) & modules for m in modules}


def test_the_cycle_finder_finds_cycles() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    found = [c for c in strongly_connected(edges, edges) if len(c) > 1]
    assert found == [["a", "b", "c"]]


def test_no_import_cycle_between_modules(graph: grimp.ImportGraph) -> None:
    # Imports inside functions and under TYPE_CHECKING count: a cycle hidden in a
    # function is still two modules that cannot be understood apart.
    edges = internal_edges(graph)
    cycles = [c for c in strongly_connected(edges, edges) if len(c) > 1]
    cycles += [[m] for m, targets in edges.items() if m in targets]
    described = []
    for cycle in cycles:
        members = set(cycle)
        links = [f"{a} -> {b}" for a in cycle for b in sorted(edges[a] & members)]
        described.append("; ".join(links))
    assert not cycles, "import cycles:\n" + "\n".join(described)


def test_gui_imports_only_the_light_core_modules(graph: grimp.ImportGraph) -> None:
    def allowed(module: str) -> bool:
        return any(module == a or module.startswith(a + ".") for a in GUI_MAY_IMPORT if a != "core") \
            or module == "core"  # fmt: skip

    wrong = sorted(
        f"{m} imports {target}"
        for m in graph.find_children("gui") | {"gui"}
        for target in graph.find_modules_directly_imported_by(m)
        if target.split(".")[0] == "core" and not allowed(target)
    )
    assert not wrong, "\n".join(wrong)


def test_importing_every_gui_module_loads_no_framework_and_no_service() -> None:
    modules = sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts)
        for p in (ROOT / "gui").glob("*.py")
        if p.name not in ("__main__.py", "__init__.py")
    )
    script = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))\n"
    )
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    loaded = set(json.loads(proc.stdout.splitlines()[-1]))
    assert "PySide6" in loaded  # the check ran on the real modules
    assert not loaded & {*FRAMEWORKS, "service"}


# What Python 3.11 added that a 3.10 interpreter (OpenVINO 2022.3, the NCS2 host) lacks.
PY311_ONLY = ("StrEnum", "tomllib", "typing.Self", "ExceptionGroup", "TaskGroup",
              "datetime.UTC", "from typing import Self")  # fmt: skip


def test_the_worker_side_stays_python_310_compatible(graph: grimp.ImportGraph) -> None:
    # The worker loads its backend by name (core.backends.get_backend), which the graph
    # cannot see: start from every backend module as well.
    seeds = {"core.measure.worker", *graph.find_descendants("core.backends")}
    modules = set(seeds)
    for seed in seeds:
        modules |= {m for m in graph.find_upstream_modules(seed) if m.split(".")[0] in PACKAGES}
    assert "core.backends.openvino_backend" in modules
    problems = []
    for module in sorted(modules):
        path = ROOT / Path(*module.split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        source = path.read_text(encoding="utf-8")
        try:
            ast.parse(source, filename=str(path), feature_version=(3, 10))
        except SyntaxError as exc:
            problems.append(f"{module}: {exc}")
        problems += [f"{module} uses {name}" for name in PY311_ONLY if name in source]
    assert not problems, "\n".join(problems)
