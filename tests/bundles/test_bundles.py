"""The frozen bundles that ``packaging/bundles.py build`` made, in ``$BACKBENCH_BUNDLES``
(skipped when it is unset; ``make test-bundles`` builds them and sets it).

Each bundle answers ``--version`` and passes its real ``--self-test``; the GUI bundle
carries no inference framework and no agent code; the edge agent carries no torch and no
Qt; each is under its size cap. ``gui`` and ``agent-edge`` must be there; ``agent-full``
(built outside CI) is checked where it is.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from core import __version__

ROOT = os.environ.get("BACKBENCH_BUNDLES")
pytestmark = pytest.mark.skipif(not ROOT, reason="BACKBENCH_BUNDLES is not set (make test-bundles)")

# folder, executable, size cap in MB, required
BUNDLES = {
    "gui": ("backbench-gui", "backbench-gui", 450, True),
    "agent-edge": ("backbench-agent-edge", "backbench-agent", 400, True),
    "agent-full": ("backbench-agent-full", "backbench-agent", 12000, False),
}
SELF_TEST_TIMEOUT_S = 600
FRAMEWORK_FILES = re.compile(r"(^|/)(torch|torchvision|openvino|onnxruntime|onnx)(/|$)|"
                             r"(^|/)lib(torch|c10|openvino|onnxruntime)[^/]*\.so")  # fmt: skip
TORCH_FILES = re.compile(r"(^|/)(torch|torchvision)(/|$)|(^|/)lib(torch|c10)[^/]*\.so")
QT_FILES = re.compile(r"(^|/)(PySide6|shiboken6)(/|$)|(^|/)libQt6")


def folder(key: str) -> Path:
    name, _exe, _cap, required = BUNDLES[key]
    path = Path(str(ROOT)).resolve() / name
    if not path.is_dir():
        if required:
            pytest.fail(f"no {key} bundle at {path}: run `python packaging/bundles.py build`")
        pytest.skip(f"no {key} bundle at {path} (built outside CI)")
    return path


def exe(key: str) -> Path:
    path = folder(key) / BUNDLES[key][1]
    assert path.is_file() and os.access(path, os.X_OK), f"no executable at {path}"
    return path


def files(path: Path) -> list[str]:
    return [str(p.relative_to(path)) for p in path.rglob("*")]


def env_for(key: str) -> dict[str, str]:
    env = dict(os.environ)
    if key == "gui" and not env.get("DISPLAY") and not env.get("WAYLAND_DISPLAY"):
        env["QT_QPA_PLATFORM"] = "offscreen"
    return env


def run(key: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(exe(key)), *args], capture_output=True, text=True, timeout=timeout,
        env=env_for(key), cwd=folder(key).parent, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("key", list(BUNDLES))
def test_version(key: str) -> None:
    done = run(key, "--version")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == f"{BUNDLES[key][1]} {__version__}"


@pytest.mark.parametrize("key", list(BUNDLES))
def test_self_test(key: str) -> None:
    done = run(key, "--self-test", timeout=SELF_TEST_TIMEOUT_S)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "FAIL" not in out and out.strip().splitlines()[-1].startswith("self-test passed"), out
    if key == "gui":
        assert "ok    results and analysis views are the real ones" in out
        assert "ok    analysis fitted" in out
    else:
        lines = out.splitlines()
        measured = [
            line for line in lines if line.startswith("ok    openvino CPU selftest.xml: ok")
        ]
        # Workers are forked by the frozen fork server (`backbench-agent zygote`).
        assert measured and "worker started by fork-server" in measured[0], out
        assert any(line.startswith("ok    onnxruntime cpu selftest.onnx: ok") for line in lines), (
            out
        )
        if key == "agent-full":
            assert any(line.startswith("ok    torch cpu squeezenet1_1: ok") for line in lines), out


def test_frozen_agent_answers_as_its_worker_and_probe() -> None:
    """`backbench-agent worker|zygote|probe` reach the worker's, the fork server's and the
    probe's own code (what the supervisor and the agent start)."""
    for command, prog in (("worker", "backbench worker"), ("zygote", "backbench zygote")):
        done = run("agent-edge", command, "--help")
        assert done.returncode == 0 and prog in done.stdout, done.stdout + done.stderr
    done = run("agent-edge", "probe", "devices", timeout=180)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["ok"] and answer["backends"].get("openvino") and "torch" not in answer["backends"]


def test_gui_bundle_has_no_inference_framework_and_no_agent() -> None:
    found = [f for f in files(folder("gui")) if FRAMEWORK_FILES.search(f)]
    assert not found, f"the GUI bundle carries frameworks: {found[:10]}"
    assert not (folder("gui") / "_internal" / "service").exists()


def test_edge_agent_has_no_torch_and_no_qt() -> None:
    names = files(folder("agent-edge"))
    assert not [f for f in names if TORCH_FILES.search(f)]
    assert not [f for f in names if QT_FILES.search(f)]


@pytest.mark.parametrize("key", list(BUNDLES))
def test_size_under_cap_and_resources_collected(key: str) -> None:
    path = folder(key)
    size_mb = (
        sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink()) / 2**20
    )
    assert size_mb < BUNDLES[key][2], (
        f"{key} is {size_mb:.0f} MB, over its {BUNDLES[key][2]} MB cap"
    )
    resources = path / "_internal" / "core" / "resources"
    assert (resources / "zoo_catalog.json").is_file() and list(
        (resources / "suites").glob("*.json")
    )
    assert list((path / "_internal").glob("backbench-*.dist-info")) or list(
        (path / "_internal").glob("backbench*.egg-info")
    ), "the distribution's metadata is missing (entry points of `backbench` commands)"


def test_manifest_records_each_bundle() -> None:
    manifest = Path(str(ROOT)) / "manifest.json"
    if not manifest.exists():
        pytest.skip("no manifest.json (bundles not built by packaging/bundles.py)")
    data = json.loads(manifest.read_text())["bundles"]
    for key in ("gui", "agent-edge"):
        entry = data[key]
        assert (
            entry["folder"] == BUNDLES[key][0] and entry["size_bytes"] > 0 and entry["build_s"] > 0
        )
