"""A non-editable wheel carries everything backbench needs at run time.

The wheel is built from a copy of the tracked sources (so the checkout gains no build/
folder), installed with ``--no-deps`` into a fresh venv, and run from a folder outside
the checkout. The fresh venv reaches the heavy dependencies (torch, openvino, ...) through
a ``.pth`` line naming the test venv's site-packages: ``.pth`` lines only append to
sys.path, so the wheel's own ``core`` comes first and the editable install's finder (a
``.pth`` file in that other folder) is never run. The test asserts which copy ran.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _tracked_files() -> list[str]:
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, timeout=60
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("the wheel test copies the tracked files, and this is not a git checkout")
    return [name for name in out.decode().split("\0") if name]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in _tracked_files():
        if not (REPO / name).is_file():
            continue  # deleted in the working tree but not yet in the index
        target = src / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(dist), str(src)],
        check=True, timeout=300,
    )  # fmt: skip
    (built,) = dist.glob("backbench-*.whl")
    return built


def test_the_wheel_holds_the_resources_inside_the_packages(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "core/resources/zoo_catalog.json" in names
    assert "core/resources/imagenet_wnids.txt" in names  # imagenet-val labels (accuracy)
    assert {"core/resources/suites/paper.json", "core/resources/suites/quick.json"} <= names
    assert not any(name.startswith(("resources/", "tests/", "bench/")) for name in names)
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "backbench = core.cli.main:main" in text
    assert "[backbench.commands]" in text


def test_an_installed_wheel_lists_the_paper_suite_and_measures(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    # Install with this interpreter's pip into the fresh venv's site-packages.
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
         "--target", site, str(wheel)],
        check=True, timeout=300,
    )  # fmt: skip
    # Scripts land in site/bin with --target; the console script is what a user runs.
    Path(site, "zz-backbench-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    script = Path(site) / "bin" / "backbench"
    assert script.is_file(), "the wheel installed no backbench console script"
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")

    def backbench(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(python), str(script), *args],
            cwd=work, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip

    where = subprocess.run(
        [str(python), "-c", "import core; print(core.__file__)"],
        cwd=work, env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert Path(where).is_relative_to(env_dir), f"core came from {where}, not the wheel"

    listed = backbench("models", "--suite", "paper", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    models = json.loads(listed.stdout)
    assert len(models) == 33
    assert any(m["name"] == "squeezenet1_1" for m in models)

    db = tmp_path / "results.db"
    ran = backbench(
        "run", "-m", "squeezenet1_1", "--backend", "torch", "--device", "cpu", "--batch", "1",
        "--min-iters", "3", "--max-time", "0.2", "--db", str(db),
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    shown = backbench("results", "--db", str(db), "--format", "json")
    assert shown.returncode == 0, shown.stderr
    (row,) = json.loads(shown.stdout)
    assert row["model"] == "squeezenet1_1" and row["status"] == "ok"
