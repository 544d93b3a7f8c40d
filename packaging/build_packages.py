"""The installers: two .deb packages and a tarball, made from the PyInstaller bundles.

Run with the main .venv's Python (standard library only)::

    python packaging/build_packages.py --bundles dist/bundles --out dist/packages \\
        [--agent-flavour edge|full] [--version X] [agent] [gui] [tarball]

Without a target it builds all three:

``backbench-agent_<ver>_<arch>.deb``
    The agent bundle (``BUNDLES/backbench-agent-<flavour>/``) under /opt/backbench/agent,
    /usr/bin/backbench-agent, the systemd unit, the sysusers file, the NCS2 udev rule, the
    example /etc/backbench/agent.toml (a conffile), backbench's worker code for other
    interpreters (/opt/backbench/worker: ``core/`` and ``packaging/edge-runtime.sh``),
    the docs and the drop-ins as examples. Its maintainer scripts (packaging/deb/agent/)
    create the user, reload udev, and enable and start the service on a first install,
    unless the admin opts out (docs/INSTALL.md).
``backbench-gui_<ver>_<arch>.deb``
    The GUI bundle under /opt/backbench/gui, /usr/bin/backbench-gui, the .desktop entry
    and the icons; it depends on the X11 (xcb) libraries Qt's platform plugin loads.
``backbench-<ver>-linux-<arch>.tar.gz``
    Both bundles and the same system files, with ``install.sh`` for other distributions.

Packages are built with ``dpkg-deb --build --root-owner-group`` (no fakeroot): every
file is root's, directories 0755, files 0644 or 0755. The version defaults to
pyproject.toml's, the architecture to ``dpkg --print-architecture``. Each bundle's
executable is run with ``--version`` first (``--no-check`` skips that).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGING = REPO / "packaging"
SYSTEMD = PACKAGING / "systemd"
UNIT = SYSTEMD / "backbench-agent.service"
SYSUSERS = SYSTEMD / "backbench.sysusers.conf"
UDEV_RULE = PACKAGING / "udev" / "97-backbench-ncs2.rules"
DESKTOP = PACKAGING / "desktop"
AGENT_TOML = PACKAGING / "etc" / "agent.toml"
DEB = PACKAGING / "deb"
INSTALL_SH = PACKAGING / "install.sh"
EDGE_RUNTIME_SH = PACKAGING / "edge-runtime.sh"
DOCS = (REPO / "docs" / "AGENT.md", REPO / "docs" / "INSTALL.md")

PREFIX = "/opt/backbench"
TARGETS = ("agent", "gui", "tarball")
MAINTAINER = "backbench maintainers <backbench@invalid>"
HOMEPAGE = ""  # none published yet

# What Qt's xcb platform plugin (and the Qt libraries under it) load from the system on
# Debian 12, from `readelf -d` on PySide6 6.11's libqxcb.so, libQt6XcbQpa, libQt6Gui,
# libQt6Core, libQt6DBus, libQt6Widgets and the xcb GL integrations, mapped to packages
# with `dpkg -S`. The ICU libraries come with PySide6. tests/packaging/test_packages.py
# checks a real bundle against this list.
GUI_DEPENDS = (
    "libc6 (>= 2.28)", "libstdc++6", "libgcc-s1", "zlib1g", "libglib2.0-0",
    "libdbus-1-3", "libfontconfig1", "libfreetype6", "libegl1", "libgl1",
    "libx11-6", "libx11-xcb1", "libxcb1", "libxcb-cursor0", "libxcb-glx0",
    "libxcb-icccm4", "libxcb-image0", "libxcb-keysyms1", "libxcb-randr0",
    "libxcb-render0", "libxcb-render-util0", "libxcb-shape0", "libxcb-shm0",
    "libxcb-sync1", "libxcb-util1", "libxcb-xfixes0", "libxcb-xkb1",
    "libxkbcommon0", "libxkbcommon-x11-0",
)  # fmt: skip
# Qt's Wayland plugin; without them Qt falls back to xcb (XWayland).
GUI_RECOMMENDS = ("libwayland-client0", "libwayland-cursor0", "libwayland-egl1")
# The agent is headless: no X, no GL. systemd and udev are recommended, not required
# (the maintainer scripts work without either, e.g. in a container).
AGENT_DEPENDS = ("libc6 (>= 2.28)",)
AGENT_RECOMMENDS = ("systemd", "udev")

AGENT_DESCRIPTION = {
    "edge": "the OpenVINO and ONNX Runtime flavour (no torch), for edge hosts with an Intel NCS2",
    "full": "the full flavour with PyTorch (CUDA), for GPU and cloud hosts",
}


def say(msg: str) -> None:
    print(f"[packages] {msg}", flush=True)


class BuildError(Exception):
    pass


# -- version and architecture --------------------------------------------------------


def project_version() -> str:
    text = (REPO / "pyproject.toml").read_text()
    try:
        import tomllib

        return str(tomllib.loads(text)["project"]["version"])
    except ModuleNotFoundError:  # Python 3.10
        found = re.search(r'^version\s*=\s*"([^"]+)"', text, re.MULTILINE)
        if not found:
            raise BuildError("no version in pyproject.toml") from None
        return found.group(1)


def debian_version(version: str) -> str:
    """A PEP 440 version as Debian orders it: pre-releases and dev releases sort before
    the release (``1.0rc1`` -> ``1.0~rc1``, ``1.0.dev3`` -> ``1.0~dev3``), local labels
    become ``+``."""
    v = version.strip().lstrip("v")
    v = re.sub(r"[.\-_]?(dev|a|alpha|b|beta|rc|c|pre|preview)(\d*)", r"~\1\2", v)
    if not re.fullmatch(r"[0-9][A-Za-z0-9.+~]*", v):
        raise BuildError(f"{version!r} is not a version dpkg accepts")
    return v


def host_arch() -> str:
    try:
        done = subprocess.run(
            ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        raise BuildError(f"cannot ask dpkg for the architecture ({exc}); pass --arch") from exc
    return done.stdout.strip()


# -- staging trees ---------------------------------------------------------------------


def _normal_mode(mode: int) -> int:
    return 0o755 if mode & 0o111 else 0o644


def copy_tree(src: Path, dst: Path) -> None:
    """``src`` into ``dst`` with modes normalised (directories 0755, files 0644 or
    0755), symlinks kept. A file whose mode is already normal is hard-linked where the
    filesystem allows (a torch bundle is gigabytes), else copied; the source is never
    changed."""
    dst.mkdir(parents=True, exist_ok=True)
    os.chmod(dst, 0o755)
    for root, dirs, files in os.walk(src):
        rel = Path(root).relative_to(src)
        target = dst / rel
        for name in dirs:
            s, d = Path(root) / name, target / name
            if s.is_symlink():
                os.symlink(os.readlink(s), d)
            else:
                d.mkdir(exist_ok=True)
                os.chmod(d, 0o755)
        for name in files:
            s, d = Path(root) / name, target / name
            if s.is_symlink():
                os.symlink(os.readlink(s), d)
                continue
            mode = s.stat().st_mode & 0o7777
            want = _normal_mode(mode)
            if mode == want:
                try:
                    os.link(s, d)
                    continue
                except OSError:
                    pass
            shutil.copyfile(s, d)
            os.chmod(d, want)
        dirs[:] = [n for n in dirs if not (Path(root) / n).is_symlink()]


def put(src: Path, dst: Path, mode: int = 0o644) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    os.chmod(dst, mode)


def write(dst: Path, text: str, mode: int = 0o644) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(text)
    os.chmod(dst, mode)


def _fix_dirs(root: Path) -> None:
    for folder, dirs, _files in os.walk(root):
        for name in dirs:
            p = Path(folder) / name
            if not p.is_symlink():
                os.chmod(p, 0o755)
    os.chmod(root, 0o755)


def worker_tree(dst: Path) -> None:
    """backbench's worker code for interpreters other than the bundle's (the OpenVINO
    2022.3 edge runtime on CPython 3.10): the ``core`` package as source, and the script
    that makes such a runtime, laid out as in the repository so that the entry it
    prints points here."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo")
    shutil.copytree(REPO / "core", dst / "core", ignore=ignore)
    put(EDGE_RUNTIME_SH, dst / "packaging" / "edge-runtime.sh", 0o755)
    for path in dst.rglob("*"):
        if path.is_file():
            os.chmod(path, _normal_mode(path.stat().st_mode))


# -- bundles ---------------------------------------------------------------------------


_CHECKED: set[Path] = set()


def bundle_dir(bundles: Path, name: str, exe: str, check: bool) -> Path:
    folder = bundles / name
    program = folder / exe
    if not (program.is_file() and os.access(program, os.X_OK)):
        raise BuildError(f"no bundle at {folder} (its executable {exe} is missing); build it with "
                         f"`python packaging/bundles.py build` or pass --bundles")  # fmt: skip
    if check and program not in _CHECKED:
        _CHECKED.add(program)
        env = {**os.environ, "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen")}
        try:
            done = subprocess.run(
                [str(program), "--version"], capture_output=True, text=True, timeout=300, env=env
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BuildError(f"{program} --version did not run: {exc}") from exc
        if done.returncode != 0:
            raise BuildError(
                f"{program} --version failed ({done.returncode}): {(done.stderr or done.stdout)[-500:]}"
            )
        say(f"{name}: {(done.stdout or done.stderr).strip()}")
    return folder


_GLIBC = re.compile(r"GLIBC_(\d+)\.(\d+)")


def glibc_needed(folder: Path) -> tuple[int, int] | None:
    """The newest GLIBC_x.y symbol version any ELF file of ``folder`` needs (from
    ``readelf -V``), or None (no readelf, no ELF file: a stand-in bundle)."""
    readelf = shutil.which("readelf")
    if readelf is None:
        return None
    elves = []
    for root, _dirs, files in os.walk(folder):
        for name in files:
            p = Path(root) / name
            try:
                if not p.is_symlink() and p.stat().st_size > 64:
                    with open(p, "rb") as fh:
                        if fh.read(4) == b"\x7fELF":
                            elves.append(str(p))
            except OSError:
                continue
    best = None
    for i in range(0, len(elves), 200):
        done = subprocess.run(
            [readelf, "-V", "--wide", *elves[i : i + 200]], capture_output=True, text=True
        )
        for major, minor in _GLIBC.findall(done.stdout):
            v = (int(major), int(minor))
            best = v if best is None or v > best else best
    return best


def _with_glibc(depends: tuple[str, ...], folder: Path) -> list[str]:
    need = glibc_needed(folder)
    out = list(depends)
    if need and need > (2, 28):
        out = [f"libc6 (>= {need[0]}.{need[1]})" if d.startswith("libc6") else d for d in out]
    return out


# -- .deb ------------------------------------------------------------------------------


def installed_size_kib(root: Path) -> int:
    total = 0
    for folder, dirs, files in os.walk(root):
        if Path(folder) == root / "DEBIAN":
            dirs[:] = []
            continue
        for name in files + dirs:
            p = Path(folder) / name
            size = p.lstat().st_size if p.is_symlink() or p.is_file() else 0
            total += (size + 1023) // 1024 or 1
    return total


def control_text(fields: dict[str, str | list[str]], summary: str, body: str) -> str:
    lines = []
    for key, value in fields.items():
        if isinstance(value, list):
            value = ", ".join(value)
        if value:
            lines.append(f"{key}: {value}")
    lines.append(f"Description: {summary}")
    for para in body.strip().split("\n\n"):
        lines.extend(f" {ln}" for ln in textwrap.wrap(" ".join(para.split()), 79))
        lines.append(" .")
    lines.pop()
    return "\n".join(lines) + "\n"


def dpkg_deb(root: Path, out: Path, compression: str) -> Path:
    if shutil.which("dpkg-deb") is None:
        raise BuildError("dpkg-deb is not installed (apt-get install dpkg)")
    _fix_dirs(root)
    cmd = ["dpkg-deb", "--root-owner-group", f"-Z{compression}", "--build", str(root), str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise BuildError(f"dpkg-deb failed: {done.stderr.strip()}")
    return out


def _doc(root: Path, package: str) -> Path:
    doc = root / "usr" / "share" / "doc" / package
    for path in DOCS:
        if path.is_file():
            put(path, doc / path.name)
    return doc


def build_agent(bundles: Path, out: Path, version: str, arch: str, flavour: str, *,
                compression: str = "xz", check: bool = True, maintainer: str = MAINTAINER) -> Path:  # fmt: skip
    bundle = bundle_dir(bundles, f"backbench-agent-{flavour}", "backbench-agent", check)
    name = f"backbench-agent_{version}_{arch}.deb"
    with tempfile.TemporaryDirectory(prefix="backbench-agent-deb-", dir=out) as tmp:
        root = Path(tmp) / "root"
        copy_tree(bundle, root / PREFIX.lstrip("/") / "agent")
        worker_tree(root / PREFIX.lstrip("/") / "worker")
        (root / "usr" / "bin").mkdir(parents=True)
        os.symlink(f"{PREFIX}/agent/backbench-agent", root / "usr" / "bin" / "backbench-agent")
        put(UNIT, root / "lib" / "systemd" / "system" / UNIT.name)
        put(SYSUSERS, root / "usr" / "lib" / "sysusers.d" / "backbench.conf")
        put(UDEV_RULE, root / "lib" / "udev" / "rules.d" / UDEV_RULE.name)
        put(AGENT_TOML, root / "etc" / "backbench" / "agent.toml")
        doc = _doc(root, "backbench-agent")
        for dropin in sorted((SYSTEMD / "dropins").glob("*.conf")):
            put(dropin, doc / "examples" / dropin.name)
        debian = root / "DEBIAN"
        debian.mkdir()
        for script in ("postinst", "prerm", "postrm"):
            put(DEB / "agent" / script, debian / script, 0o755)
        write(debian / "conffiles", "/etc/backbench/agent.toml\n")
        fields: dict[str, str | list[str]] = {
            "Package": "backbench-agent", "Version": version, "Architecture": arch,
            "Maintainer": maintainer, "Installed-Size": str(installed_size_kib(root)),
            "Depends": _with_glibc(AGENT_DEPENDS, bundle), "Recommends": list(AGENT_RECOMMENDS),
            "Suggests": "backbench-gui", "Section": "science", "Priority": "optional",
            "Homepage": HOMEPAGE,
        }  # fmt: skip
        body = (
            "The headless side of backbench: runs benchmark jobs of DNN backbones from a\n"
            "persistent queue, one worker process per case, keeps every result in its\n"
            "SQLite store (/var/lib/backbench) and streams live latency and memory over\n"
            "a Unix socket (/run/backbench/agent.sock, group backbench) to the desktop GUI\n"
            "or `backbench remote`.\n\n"
            f"This build is {AGENT_DESCRIPTION[flavour]}. It runs as the systemd service\n"
            "backbench-agent, enabled and started on install unless\n"
            "BACKBENCH_NO_ENABLE=1 is set or /etc/backbench/no-enable exists."
        )
        write(
            debian / "control",
            control_text(fields, "DNN backbone benchmark agent (" + flavour + ")", body),
        )
        return dpkg_deb(root, out / name, compression)


def build_gui(bundles: Path, out: Path, version: str, arch: str, *,
              compression: str = "xz", check: bool = True, maintainer: str = MAINTAINER) -> Path:  # fmt: skip
    bundle = bundle_dir(bundles, "backbench-gui", "backbench-gui", check)
    name = f"backbench-gui_{version}_{arch}.deb"
    with tempfile.TemporaryDirectory(prefix="backbench-gui-deb-", dir=out) as tmp:
        root = Path(tmp) / "root"
        copy_tree(bundle, root / PREFIX.lstrip("/") / "gui")
        (root / "usr" / "bin").mkdir(parents=True)
        os.symlink(f"{PREFIX}/gui/backbench-gui", root / "usr" / "bin" / "backbench-gui")
        share = root / "usr" / "share"
        put(DESKTOP / "backbench.desktop", share / "applications" / "backbench.desktop")
        put(
            DESKTOP / "backbench.svg",
            share / "icons" / "hicolor" / "scalable" / "apps" / "backbench.svg",
        )
        put(
            DESKTOP / "backbench-256.png",
            share / "icons" / "hicolor" / "256x256" / "apps" / "backbench.png",
        )
        _doc(root, "backbench-gui")
        (root / "DEBIAN").mkdir()
        fields: dict[str, str | list[str]] = {
            "Package": "backbench-gui", "Version": version, "Architecture": arch,
            "Maintainer": maintainer, "Installed-Size": str(installed_size_kib(root)),
            "Depends": _with_glibc(GUI_DEPENDS, bundle), "Recommends": list(GUI_RECOMMENDS),
            "Suggests": "backbench-agent", "Section": "science", "Priority": "optional",
            "Homepage": HOMEPAGE,
        }  # fmt: skip
        body = (
            "The backbench desktop app (Qt): connects to the local backbench agent and to\n"
            "remote ones over SSH, launches benchmark runs of DNN backbones, plots them\n"
            "live, and does the study's analyses (latency against batch size, accuracy,\n"
            "Pareto fronts, memory, latency prediction) interactively."
        )
        write(
            root / "DEBIAN" / "control",
            control_text(fields, "DNN backbone benchmark desktop GUI", body),
        )
        return dpkg_deb(root, out / name, compression)


# -- tarball ---------------------------------------------------------------------------


def build_tarball(bundles: Path, out: Path, version: str, arch: str, flavour: str, *,
                  check: bool = True) -> Path:  # fmt: skip
    agent = bundle_dir(bundles, f"backbench-agent-{flavour}", "backbench-agent", check)
    gui = bundle_dir(bundles, "backbench-gui", "backbench-gui", check)
    top = f"backbench-{version}-linux-{arch}"
    name = f"{top}.tar.gz"
    with tempfile.TemporaryDirectory(prefix="backbench-tar-", dir=out) as tmp:
        base = Path(tmp) / top
        copy_tree(agent, base / "agent")
        copy_tree(gui, base / "gui")
        worker_tree(base / "worker")
        put(INSTALL_SH, base / "install.sh", 0o755)
        put(UNIT, base / "systemd" / UNIT.name)
        put(SYSUSERS, base / "systemd" / SYSUSERS.name)
        for dropin in sorted((SYSTEMD / "dropins").glob("*.conf")):
            put(dropin, base / "systemd" / "dropins" / dropin.name)
        put(UDEV_RULE, base / "udev" / UDEV_RULE.name)
        for icon in ("backbench.desktop", "backbench.svg", "backbench-256.png"):
            put(DESKTOP / icon, base / "desktop" / icon)
        put(AGENT_TOML, base / "etc" / "agent.toml")
        for path in DOCS:
            if path.is_file():
                put(path, base / "docs" / path.name)
        write(base / "VERSION", f"{version} {flavour}\n")
        _fix_dirs(base)
        cmd = ["tar", "--sort=name", "--owner=0", "--group=0", "--numeric-owner",
               "-czf", str(out / name), "-C", tmp, top]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise BuildError(f"tar failed: {done.stderr.strip()}")
    return out / name


# -- command line ----------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument(
        "targets", nargs="*", metavar="TARGET", help="agent, gui, tarball (default: all three)"
    )
    parser.add_argument(
        "--bundles", type=Path, default=REPO / "dist" / "bundles", help="the bundles' folder"
    )
    parser.add_argument(
        "--out", type=Path, default=REPO / "dist" / "packages", help="where the packages go"
    )
    parser.add_argument("--agent-flavour", choices=sorted(AGENT_DESCRIPTION), default="edge")
    parser.add_argument("--version", help="package version (default: pyproject.toml's)")
    parser.add_argument("--arch", help="Debian architecture (default: dpkg --print-architecture)")
    parser.add_argument("--compression", choices=("xz", "zstd", "gzip", "none"), default="xz",
                        help="of the .deb payload (default xz; zstd is faster for the full flavour, "
                        "and needs dpkg >= 1.21.18 to install)")  # fmt: skip
    parser.add_argument("--maintainer", default=os.environ.get("BACKBENCH_MAINTAINER", MAINTAINER))
    parser.add_argument(
        "--no-check", action="store_true", help="do not run each bundle's --version first"
    )
    args = parser.parse_args(argv)
    targets = args.targets or list(TARGETS)
    unknown = sorted(set(targets) - set(TARGETS))
    if unknown:
        parser.error(f"unknown target {', '.join(unknown)} (choose from {', '.join(TARGETS)})")
    try:
        version = debian_version(args.version or project_version())
        arch = args.arch or host_arch()
        args.out.mkdir(parents=True, exist_ok=True)
        bundles, check = args.bundles.resolve(), not args.no_check
        built = []
        if "agent" in targets:
            built.append(build_agent(bundles, args.out, version, arch, args.agent_flavour, compression=args.compression,
                                     check=check, maintainer=args.maintainer))  # fmt: skip
        if "gui" in targets:
            built.append(build_gui(bundles, args.out, version, arch, compression=args.compression, check=check,
                                   maintainer=args.maintainer))  # fmt: skip
        if "tarball" in targets:
            built.append(
                build_tarball(bundles, args.out, version, arch, args.agent_flavour, check=check)
            )
    except BuildError as exc:
        print(f"build_packages: error: {exc}", file=sys.stderr)
        return 2
    for path in built:
        say(f"{path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
