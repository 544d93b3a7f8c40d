"""Frozen one-folder bundles of backbench, built with PyInstaller, and their self-tests.

Run with the main .venv's Python::

    python packaging/bundles.py build [gui|agent-edge|agent-full ...] [--out dist/bundles]
    python packaging/bundles.py self-test [gui|agent-edge|agent-full ...] [--out dist/bundles]

``build`` makes each bundle from a clean venv of its own, ``build/bundles/venv-NAME``,
holding only what that bundle needs (the light core's dependencies, the flavour's
frameworks, PyInstaller) and backbench itself installed non-editable, so nothing of the
development venv leaks in. A venv is reused while its requirements are unchanged (a stamp
file records them); backbench is reinstalled only when its sources changed. PyInstaller
runs the spec files in ``packaging/pyinstaller/``. Each bundle lands in
``OUT/<bundle>/`` with its executable at the top (``backbench-gui``, ``backbench-agent``),
and ``OUT/manifest.json`` records its size, build time and the versions inside.

``self-test`` runs each built bundle's ``--version`` and ``--self-test`` (the GUI with
``QT_QPA_PLATFORM=offscreen`` where there is no display) and fails if either does.

Without a bundle name, ``build`` and ``self-test`` do ``gui`` and ``agent-edge``: the
``agent-full`` flavour carries torch (gigabytes) and is built outside CI.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import tomllib  # Python 3.11+: run with the main .venv's Python

REPO = Path(__file__).resolve().parents[1]
SPECS = REPO / "packaging" / "pyinstaller"
WORK = REPO / "build" / "bundles"
DEFAULT_OUT = REPO / "dist" / "bundles"
DEFAULT_BUNDLES = ("gui", "agent-edge")
PYINSTALLER = "pyinstaller>=6.10,<7"
# The torch build this project is tested with (as the Makefile's venv).
TORCH = ("torch==2.14.1", "torchvision==0.29.1")
SOURCES = ("pyproject.toml", "README.md", "core", "service", "gui")
SELF_TEST_TIMEOUT_S = 600


@dataclass(frozen=True)
class Bundle:
    key: str  # gui, agent-edge, agent-full
    folder: str  # OUT/<folder>
    exe: str  # its executable, at the folder's top
    spec: str  # in packaging/pyinstaller/
    extras: tuple[str, ...]  # what the flavour adds to the light core (names from pyproject)
    pinned: tuple[str, ...] = ()  # exact pins installed before the rest
    flavour: str = ""  # passed to the spec
    max_mb: int = 0  # a size above this is a packaging mistake (checked by the tests)


BUNDLES = {
    b.key: b
    for b in (
        Bundle("gui", "backbench-gui", "backbench-gui", "gui.spec",
               extras=("PySide6-Essentials", "pyqtgraph"), max_mb=450),
        Bundle("agent-edge", "backbench-agent-edge", "backbench-agent", "agent.spec",
               extras=("openvino", "onnxruntime", "onnx", "pillow"), flavour="edge", max_mb=400),
        Bundle("agent-full", "backbench-agent-full", "backbench-agent", "agent.spec",
               extras=("openvino", "onnxruntime", "onnx", "pillow"), pinned=TORCH, flavour="full",
               max_mb=12000),
    )
}  # fmt: skip


def _say(msg: str) -> None:
    print(f"[bundles] {msg}", flush=True)


def _requirement_name(req: str) -> str:
    for i, ch in enumerate(req):
        if not (ch.isalnum() or ch in "-_."):
            return req[:i].lower().replace("_", "-")
    return req.lower().replace("_", "-")


def requirements(bundle: Bundle) -> list[str]:
    """The light core's dependencies and the flavour's, as pyproject spells them."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    optional = [r for extra in project["optional-dependencies"].values() for r in extra]
    wanted = {_requirement_name(name) for name in bundle.extras}
    chosen = [r for r in optional if _requirement_name(r) in wanted]
    missing = wanted - {_requirement_name(r) for r in chosen}
    if missing:
        raise SystemExit(f"pyproject.toml has no optional dependency {sorted(missing)}")
    return [*project["dependencies"], *chosen]


def _run(cmd: list[str], **kwargs: object) -> None:
    _say("$ " + " ".join(str(c) for c in cmd))
    subprocess.run(cmd, check=True, **kwargs)  # type: ignore[call-overload]


def _digest(parts: list[str]) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _source_digest() -> str:
    h = hashlib.sha256()
    for name in SOURCES:
        path = REPO / name
        files = [path] if path.is_file() else sorted(path.rglob("*"))
        for f in files:
            if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc":
                h.update(str(f.relative_to(REPO)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def venv_dir(bundle: Bundle) -> Path:
    return WORK / f"venv-{bundle.key}"


def venv_python(bundle: Bundle) -> Path:
    return venv_dir(bundle) / "bin" / "python"


# The distributions that torch==2.14.1 brings (top-level folders and dist-infos), which
# --link-torch-from hard-links instead of installing 5.5 GB again.
_TORCH_TREES = (
    "torch",
    "torchvision",
    "torchvision.libs",
    "nvidia",
    "triton",
    "functorch",
    "torchgen",
)
_TORCH_DISTS = ("torch-", "torchvision-", "nvidia_", "triton-")


def link_torch(venv: Path, source_venv: Path) -> None:
    """Hard-link torch, torchvision and their CUDA libraries from ``source_venv`` (same
    Python) into ``venv``: the same files pip would unpack, without the disk. pip then sees
    the pins satisfied and installs the rest as usual."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    src = source_venv / "lib" / version / "site-packages"
    dst = venv / "lib" / version / "site-packages"
    if not (src / "torch").is_dir():
        raise SystemExit(f"--link-torch-from {source_venv}: no torch in {src}")
    if src.stat().st_dev != dst.stat().st_dev:
        raise SystemExit(f"--link-torch-from {source_venv}: not on the same file system as {venv}")
    names = [n.name for n in src.iterdir()
             if n.name in _TORCH_TREES or (n.name.endswith(".dist-info") and n.name.startswith(_TORCH_DISTS))]  # fmt: skip
    _say(f"hard-linking {len(names)} torch distributions from {src}")
    for name in names:
        _run(["cp", "-al", str(src / name), str(dst / name)])


def prepare_venv(bundle: Bundle, link_torch_from: Path | None = None) -> Path:
    """The bundle's own venv: created and filled once, reused while its requirements and
    backbench's sources are unchanged."""
    venv = venv_dir(bundle)
    py = venv_python(bundle)
    reqs = [*bundle.pinned, *requirements(bundle), PYINSTALLER]
    deps_stamp = venv / ".deps-stamp"
    want = _digest([sys.version, *reqs])
    if not (py.exists() and deps_stamp.exists() and deps_stamp.read_text() == want):
        if venv.exists():
            _say(f"requirements changed: recreating {venv}")
            shutil.rmtree(venv)
        venv.parent.mkdir(parents=True, exist_ok=True)
        _run([sys.executable, "-m", "venv", str(venv)])
        pip = [str(py), "-m", "pip", "install", "-q", "--no-input"]
        if bundle.pinned and link_torch_from is not None:
            link_torch(venv, link_torch_from)
        if bundle.pinned:  # first, so that nothing else picks another torch
            _run([*pip, *bundle.pinned])
        _run([*pip, *reqs])
        deps_stamp.write_text(want)
        (venv / ".src-stamp").unlink(missing_ok=True)
    else:
        _say(f"reusing {venv} (requirements unchanged)")
    src_stamp = venv / ".src-stamp"
    source = _source_digest()
    if not (src_stamp.exists() and src_stamp.read_text() == source):
        # Installed from a clean copy of the sources: setuptools builds in ./build, where
        # a stale file of an earlier build would go into the wheel.
        with tempfile.TemporaryDirectory(prefix="bb-src-") as tmp:
            for name in SOURCES:
                src, dst = REPO / name, Path(tmp) / name
                if src.is_dir():
                    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
                else:
                    shutil.copy2(src, dst)
            _run([str(py), "-m", "pip", "install", "-q", "--no-input", "--no-deps",
                  "--force-reinstall", tmp])  # fmt: skip
        src_stamp.write_text(source)
    else:
        _say("backbench unchanged since its last install")
    return py


def folder_size(path: Path) -> int:
    total = 0
    for f in path.rglob("*"):
        if f.is_file() and not f.is_symlink():
            total += f.stat().st_size
    return total


def _versions(py: Path) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json\n"
        "names = ['backbench', 'pyinstaller', 'numpy', 'pandas', 'PySide6-Essentials',\n"
        "         'pyqtgraph', 'openvino', 'onnxruntime', 'onnx', 'torch', 'torchvision']\n"
        "out = {}\n"
        "for n in names:\n"
        "    try: out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run([str(py), "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def _manifest_path(out: Path) -> Path:
    return out / "manifest.json"


def _update_manifest(out: Path, key: str, entry: dict[str, object]) -> None:
    path = _manifest_path(out)
    data: dict[str, object] = {}
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except ValueError:
            data = {}
    bundles = data.setdefault("bundles", {})
    assert isinstance(bundles, dict)
    old = bundles.get(key)
    bundles[key] = {**(old if isinstance(old, dict) else {}), **entry}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def build(bundle: Bundle, out: Path, link_torch_from: Path | None = None) -> dict[str, object]:
    started = time.monotonic()
    py = prepare_venv(bundle, link_torch_from)
    venv_s = time.monotonic() - started
    work = WORK / f"work-{bundle.key}"
    with tempfile.TemporaryDirectory(prefix="bb-dist-", dir=WORK) as tmp:
        cmd = [str(py), "-m", "PyInstaller", "--noconfirm", "--clean", "--log-level", "WARN",
               "--distpath", tmp, "--workpath", str(work), str(SPECS / bundle.spec),
               "--", "--name", bundle.folder]  # fmt: skip
        if bundle.flavour:
            cmd += ["--flavour", bundle.flavour]
        pyi_started = time.monotonic()
        _run(cmd, cwd=SPECS)
        pyinstaller_s = time.monotonic() - pyi_started
        built = Path(tmp) / bundle.folder
        if not (built / bundle.exe).is_file():
            raise SystemExit(f"PyInstaller made no {built / bundle.exe}")
        target = out / bundle.folder
        if target.exists():
            shutil.rmtree(target)
        out.mkdir(parents=True, exist_ok=True)
        shutil.move(str(built), target)
    shutil.rmtree(work, ignore_errors=True)  # PyInstaller's cache: a copy of the bundle
    size = folder_size(target)
    entry: dict[str, object] = {
        "folder": bundle.folder,
        "exe": bundle.exe,
        "flavour": bundle.flavour or bundle.key,
        "size_bytes": size,
        "size_mb": round(size / 2**20, 1),
        "max_mb": bundle.max_mb,
        "build_s": round(time.monotonic() - started, 1),
        "venv_s": round(venv_s, 1),
        "pyinstaller_s": round(pyinstaller_s, 1),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": ".".join(map(str, sys.version_info[:3])),
        "versions": _versions(py),
    }
    _update_manifest(out, bundle.key, entry)
    _say(f"{bundle.key}: {target} {entry['size_mb']} MB in {entry['build_s']} s "
         f"(venv {entry['venv_s']} s, PyInstaller {entry['pyinstaller_s']} s)")  # fmt: skip
    return entry


def bundle_env(bundle: Bundle) -> dict[str, str]:
    env = dict(os.environ)
    if bundle.key == "gui" and not env.get("DISPLAY") and not env.get("WAYLAND_DISPLAY"):
        env["QT_QPA_PLATFORM"] = "offscreen"
    return env


def self_test(bundle: Bundle, out: Path) -> bool:
    exe = out / bundle.folder / bundle.exe
    if not exe.is_file():
        _say(f"{bundle.key}: no bundle at {exe}; build it first")
        return False
    env = bundle_env(bundle)
    ok = True
    times: dict[str, float] = {}
    for args in (["--version"], ["--self-test"]):
        started = time.monotonic()
        _say(f"$ {exe} {' '.join(args)}")
        try:
            done = subprocess.run([str(exe), *args], env=env, timeout=SELF_TEST_TIMEOUT_S,
                                  check=False)  # fmt: skip
            code = done.returncode
        except subprocess.TimeoutExpired:
            code = -1
            _say(f"{bundle.key}: {' '.join(args)} timed out after {SELF_TEST_TIMEOUT_S} s")
        took = time.monotonic() - started
        times[args[0].lstrip("-").replace("-", "_") + "_s"] = round(took, 1)
        _say(f"{bundle.key} {' '.join(args)}: exit {code} in {took:.1f} s")
        ok = ok and code == 0
    if _manifest_path(out).exists():
        _update_manifest(out, bundle.key, {**times, "self_test_ok": ok})
    return ok


def _chosen(names: list[str]) -> list[Bundle]:
    unknown = [n for n in names if n not in BUNDLES]
    if unknown:
        raise SystemExit(f"unknown bundle {unknown}; choose from {sorted(BUNDLES)}")
    return [BUNDLES[n] for n in (names or DEFAULT_BUNDLES)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bundles.py", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["build", "self-test", "list"])
    parser.add_argument(
        "bundles", nargs="*", help=f"of {sorted(BUNDLES)} (default: gui agent-edge)"
    )
    parser.add_argument(
        "--out", default=str(DEFAULT_OUT), help="where bundles go (default dist/bundles)"
    )
    parser.add_argument("--keep-venv", action="store_true",
                        help="keep agent-full's venv (several GB; removed after its build otherwise)")  # fmt: skip
    parser.add_argument("--link-torch-from", metavar="VENV", type=Path,
                        help="hard-link torch and its CUDA libraries from this venv (same Python, "
                        "same file system) instead of installing 5.5 GB again")  # fmt: skip
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    chosen = _chosen(args.bundles)
    if args.command == "list":
        for b in chosen:
            print(f"{b.key}: {out / b.folder / b.exe}")
        return 0
    if args.command == "build":
        for b in chosen:
            try:
                build(b, out, args.link_torch_from.resolve() if args.link_torch_from else None)
            finally:
                if b.key == "agent-full" and not args.keep_venv:
                    _say(f"removing {venv_dir(b)} (torch: several GB)")
                    shutil.rmtree(venv_dir(b), ignore_errors=True)
        return 0
    failed = [b.key for b in chosen if not self_test(b, out)]
    if failed:
        _say(f"self-test FAILED: {', '.join(failed)}")
        return 1
    _say(f"self-test passed: {', '.join(b.key for b in chosen)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
