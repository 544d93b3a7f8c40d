"""The installers of packaging/build_packages.py: the agent and GUI .deb packages and the
tarball with install.sh, built from stand-in bundles (a script that answers --version),
then looked at with dpkg-deb, installed into a scratch root (dpkg -x, systemd-sysusers
--root, systemctl --root), and their maintainer scripts run against that root with
systemctl, udevadm and systemd-sysusers replaced by stubs that record their calls. No
test touches this machine's own system: a stub forwards to the real tool only when
called with --root=<the scratch root>.

``test_real_bundles`` does the same with the PyInstaller bundles in $BACKBENCH_BUNDLES
(``make test-bundles``), and checks the GUI package's Depends against what Qt's xcb
plugin in the bundle really loads from the system.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import struct
import subprocess
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.packaging.test_systemd import ANALYZE, _verify
from tests.realenv import missing

REPO = Path(__file__).resolve().parents[2]
PACKAGING = REPO / "packaging"
UNIT = "backbench-agent.service"
WANTS = Path("etc/systemd/system/multi-user.target.wants") / UNIT
SCRIPTS = PACKAGING / "deb" / "agent"

# packaging/ is not a Python package (and `packaging` is pip's library): load by path.
_spec = importlib.util.spec_from_file_location("build_packages", PACKAGING / "build_packages.py")
assert _spec and _spec.loader
bp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bp)

X_LIBS = re.compile(
    r"\b(libx|libxcb|libxkb|libgl|libegl|libopengl|libfontconfig|libdbus|libwayland)", re.I
)
# What Qt's xcb platform plugin cannot start without (README, gui/platform_check.py).
XCB_CORE = (
    "libxcb-cursor0", "libxcb-icccm4", "libxcb-keysyms1", "libxcb-image0", "libxcb-render-util0",
    "libxcb-shape0", "libxcb-xkb1", "libxkbcommon-x11-0", "libxcb-randr0", "libegl1",
    "libfontconfig1", "libdbus-1-3", "libgl1",
)  # fmt: skip


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        missing(f"{tool} is not installed")
    return path


# -- stand-ins and the packages built from them ----------------------------------------


def _stand_in(folder: Path, exe: str) -> None:
    (folder / "_internal" / "lib").mkdir(parents=True)
    program = folder / exe
    program.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = --version ]; then echo "{exe} 0.0-stand-in"; exit 0; fi\n'
        'echo "ran: $*"\n'
    )
    program.chmod(0o700)  # becomes 0755 in a package
    secret = folder / "_internal" / "data.bin"
    secret.write_bytes(b"\0" * 3000)
    secret.chmod(0o600)  # becomes 0644
    (folder / "_internal" / "lib" / "libfoo.so.1").write_bytes(b"not an ELF")
    os.symlink("libfoo.so.1", folder / "_internal" / "lib" / "libfoo.so")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    _need("dpkg-deb")
    _need("dpkg")
    base = tmp_path_factory.mktemp("packages")
    bundles = base / "bundles"
    _stand_in(bundles / "backbench-gui", "backbench-gui")
    _stand_in(bundles / "backbench-agent-edge", "backbench-agent")
    out = base / "out"
    out.mkdir()
    done = subprocess.run(
        [str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv" / "bin" / "python").exists() else "python3",
         str(PACKAGING / "build_packages.py"), "--bundles", str(bundles), "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return {
        "agent": next(out.glob("backbench-agent_*.deb")),
        "gui": next(out.glob("backbench-gui_*.deb")),
        "tarball": next(out.glob("backbench-*-linux-*.tar.gz")),
        "bundles": bundles,
    }


def _field(deb: Path, name: str) -> str:
    done = subprocess.run(
        ["dpkg-deb", "--field", str(deb), name], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def _contents(deb: Path) -> dict[str, tuple[str, str, str]]:
    """path -> (mode string, owner/group, link target)."""
    done = subprocess.run(
        ["dpkg-deb", "--contents", str(deb)], capture_output=True, text=True, check=True
    )
    entries = {}
    for line in done.stdout.splitlines():
        mode, owner, _size, _date, _time, rest = line.split(None, 5)
        path, _, target = rest.partition(" -> ")
        entries[path.removeprefix(".").rstrip("/") or "/"] = (mode, owner, target)
    return entries


def _depends(deb: Path, field: str = "Depends") -> list[str]:
    return [d.strip().split()[0] for d in _field(deb, field).split(",") if d.strip()]


# -- what the packages hold --------------------------------------------------------------


def test_the_agent_package_is_headless_with_its_conffile_and_scripts(
    built: dict[str, Path],
) -> None:
    deb = built["agent"]
    version = bp.debian_version(bp.project_version())
    assert deb.name == f"backbench-agent_{version}_{bp.host_arch()}.deb"
    assert _field(deb, "Package") == "backbench-agent" and _field(deb, "Version") == version
    depends = _field(deb, "Depends") + _field(deb, "Recommends")
    assert not X_LIBS.search(depends), depends
    done = subprocess.run(
        ["dpkg-deb", "--info", str(deb)], capture_output=True, text=True, check=True
    )
    for script in ("postinst", "prerm", "postrm"):
        assert re.search(rf"\*\s+{script}\s", done.stdout), done.stdout  # executable
    conffiles = subprocess.run(
        ["dpkg-deb", "--ctrl-tarfile", str(deb)], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=__import__("io").BytesIO(conffiles)) as tar:
        member = tar.extractfile("./conffiles")
        assert member is not None and member.read().decode().split() == [
            "/etc/backbench/agent.toml"
        ]


def test_the_agent_package_puts_everything_in_place(built: dict[str, Path]) -> None:
    entries = _contents(built["agent"])
    assert all(owner == "root/root" for _mode, owner, _t in entries.values())
    expect = {
        "/opt/backbench/agent/backbench-agent": "-rwxr-xr-x",
        "/opt/backbench/agent/_internal/data.bin": "-rw-r--r--",
        "/lib/systemd/system/backbench-agent.service": "-rw-r--r--",
        "/usr/lib/sysusers.d/backbench.conf": "-rw-r--r--",
        "/lib/udev/rules.d/97-backbench-ncs2.rules": "-rw-r--r--",
        "/etc/backbench/agent.toml": "-rw-r--r--",
        "/usr/share/doc/backbench-agent/AGENT.md": "-rw-r--r--",
        "/usr/share/doc/backbench-agent/examples/gpu.conf": "-rw-r--r--",
        "/usr/share/doc/backbench-agent/examples/ray.conf": "-rw-r--r--",
        "/opt/backbench/worker/core/measure/worker.py": "-rw-r--r--",
        "/opt/backbench/worker/packaging/edge-runtime.sh": "-rwxr-xr-x",
        "/opt/backbench/agent": "drwxr-xr-x",
    }
    for path, mode in expect.items():
        assert entries[path][0] == mode, (path, entries.get(path))
    assert entries["/usr/bin/backbench-agent"][2] == "/opt/backbench/agent/backbench-agent"
    assert entries["/opt/backbench/agent/_internal/lib/libfoo.so"][2] == "libfoo.so.1"
    assert not any("__pycache__" in p for p in entries)
    assert not any(m[8] == "w" for m, _o, _t in entries.values() if not m.startswith("l")), (
        "world-writable"
    )


def test_the_example_config_is_all_comments_and_parses() -> None:
    import tomllib

    text = (PACKAGING / "etc" / "agent.toml").read_text()
    assert all(not ln.strip() or ln.lstrip().startswith("#") for ln in text.splitlines())
    assert tomllib.loads(text) == {}
    example = "\n".join(ln.lstrip("# ") for ln in text.splitlines() if ln.startswith("# [runtimes") or
                        re.match(r"# (python|pythonpath|description) =", ln))  # fmt: skip
    runtime = tomllib.loads(example)["runtimes"]["openvino-2022.3"]
    assert runtime["python"].startswith("/opt/backbench/runtimes/")
    assert runtime["pythonpath"] == ["/opt/backbench/worker"]


def test_the_gui_package_depends_on_the_xcb_libraries(built: dict[str, Path]) -> None:
    deb = built["gui"]
    depends = _depends(deb)
    assert set(XCB_CORE) <= set(depends), set(XCB_CORE) - set(depends)
    entries = _contents(deb)
    assert all(owner == "root/root" for _mode, owner, _t in entries.values())
    assert entries["/usr/bin/backbench-gui"][2] == "/opt/backbench/gui/backbench-gui"
    for path in ("/usr/share/applications/backbench.desktop",
                 "/usr/share/icons/hicolor/scalable/apps/backbench.svg",
                 "/usr/share/icons/hicolor/256x256/apps/backbench.png"):  # fmt: skip
        assert entries[path][0] == "-rw-r--r--", path
    assert entries["/opt/backbench/gui/backbench-gui"][0] == "-rwxr-xr-x"
    done = subprocess.run(
        ["dpkg-deb", "--info", str(deb)], capture_output=True, text=True, check=True
    )
    assert "postinst" not in done.stdout  # the icon cache and menus update by dpkg triggers


def test_the_desktop_entry_and_icons() -> None:
    desktop = PACKAGING / "desktop" / "backbench.desktop"
    validate = shutil.which("desktop-file-validate")
    if validate:
        done = subprocess.run([validate, str(desktop)], capture_output=True, text=True)
        assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr
    lines = desktop.read_text().splitlines()
    assert lines[0] == "[Desktop Entry]"
    keys = dict(ln.split("=", 1) for ln in lines[1:] if "=" in ln)
    assert (
        keys["Type"] == "Application"
        and keys["Exec"] == "backbench-gui"
        and keys["Icon"] == "backbench"
    )
    assert keys["Terminal"] == "false" and keys["Categories"].endswith(";") and keys["Name"]
    png = (PACKAGING / "desktop" / "backbench-256.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (256, 256)
    svg = ET.parse(PACKAGING / "desktop" / "backbench.svg").getroot()
    assert svg.tag.endswith("svg") and svg.get("viewBox") == "0 0 256 256"


# -- installed into a scratch root ---------------------------------------------------------


def _stubs(folder: Path, root: Path, *, forward: bool) -> dict[str, str]:
    """PATH stubs for systemctl, systemd-sysusers, udevadm, groupadd and useradd: each
    records its command line in $CALLS. With ``forward``, systemctl and systemd-sysusers
    calls that carry --root=ROOT run the real tool on ROOT; nothing else ever does.
    ``systemctl is-enabled`` answers from ROOT's wants symlink, ``is-active`` from the
    file ACTIVE beside the stubs."""
    folder.mkdir(parents=True, exist_ok=True)
    calls = folder / "calls.log"
    calls.write_text("")
    real = {name: shutil.which(name) or "/bin/false" for name in ("systemctl", "systemd-sysusers")}
    for name in ("systemctl", "systemd-sysusers", "udevadm", "groupadd", "useradd"):
        text = f'#!/bin/sh\necho "{name} $*" >>"{calls}"\n'
        if name in real and forward:
            text += f'case " $* " in *" --root={root} "*) exec "{real[name]}" "$@" ;; esac\n'
        if name == "systemctl":
            text += (
                "r= verb=\n"
                'for a in "$@"; do case "$a" in --root=*) r=${a#--root=} ;; -*) ;;'
                ' *) [ -n "$verb" ] || verb=$a ;; esac; done\n'
                'case "$verb" in\n'
                f'is-enabled) [ -L "{root}/{WANTS}" ]; exit ;;\n'
                f'is-active) [ -e "{folder}/ACTIVE" ]; exit ;;\n'
                f'enable) [ "$r" = "{root}" ] && mkdir -p "{root}/{WANTS.parent}" &&\n'
                f'    ln -sf /lib/systemd/system/{UNIT} "{root}/{WANTS}" ;;\n'
                "esac\n"
            )
        text += "exit 0\n"
        stub = folder / name
        stub.write_text(text)
        stub.chmod(0o755)
    return {"PATH": f"{folder}:/usr/bin:/bin", "CALLS": str(calls), "HOME": str(folder)}


def _calls(env: dict[str, str]) -> list[str]:
    return Path(env["CALLS"]).read_text().splitlines()


def _script(
    name: str, *args: str, root: Path, env: dict[str, str], **extra: str
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["sh", str(SCRIPTS / name), *args], capture_output=True, text=True, timeout=60,
        env={**env, "DPKG_ROOT": str(root), **extra},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done


def _extract(deb: Path, root: Path) -> Path:
    subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True, capture_output=True)
    return root


@pytest.mark.parametrize("opt_out", ["", "env", "file"])
def test_installing_the_agent_in_a_scratch_root(
    built: dict[str, Path], tmp_path: Path, opt_out: str
) -> None:
    """dpkg -x, then the package's postinst with DPKG_ROOT: the real systemd-sysusers
    and systemctl make the user and the enablement in that root."""
    _need("systemd-sysusers")
    _need("systemctl")
    root = _extract(built["agent"], tmp_path / "root")
    env = _stubs(tmp_path / "bin", root, forward=True)
    extra = {"BACKBENCH_NO_ENABLE": "1"} if opt_out == "env" else {}
    if opt_out == "file":
        (root / "etc" / "backbench" / "no-enable").touch()
    _script("postinst", "configure", root=root, env=env, **extra)
    passwd = (root / "etc" / "passwd").read_text().splitlines()
    (user,) = [ln for ln in passwd if ln.startswith("backbench:")]
    assert user.split(":")[5:] == ["/var/lib/backbench", "/usr/sbin/nologin"]
    assert any(
        ln.startswith("backbench:") for ln in (root / "etc" / "group").read_text().splitlines()
    )
    wants = root / WANTS
    if opt_out:
        assert not wants.is_symlink()
    else:
        assert os.readlink(wants) == f"/lib/systemd/system/{UNIT}"
    # Nothing live: no systemd runs in the scratch root.
    calls = _calls(env)
    assert not [c for c in calls if re.search(r"\b(start|restart|daemon-reload|stop)\b", c)], calls
    assert not [c for c in calls if c.startswith("udevadm")]
    # /usr/bin/backbench-agent resolves into the bundle, which runs.
    link = os.readlink(root / "usr" / "bin" / "backbench-agent")
    program = root / link.lstrip("/")
    assert program.is_file() and os.stat(program).st_mode & 0o777 == 0o755
    done = subprocess.run([str(program), "--version"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "backbench-agent" in done.stdout
    assert (root / "etc" / "backbench" / "agent.toml").stat().st_mode & 0o777 == 0o644


def _staged_unit(root: Path, folder: Path) -> Path:
    """The packaged unit, its ExecStart pointing at the extracted bundle (verify wants an
    executable that exists)."""
    folder.mkdir()
    text = (root / "lib" / "systemd" / "system" / UNIT).read_text()
    assert "ExecStart=/usr/bin/backbench-agent " in text
    text = text.replace(
        "/usr/bin/backbench-agent", str(root / "opt" / "backbench" / "agent" / "backbench-agent")
    )
    (folder / UNIT).write_text(text)
    return folder


def test_the_packaged_unit_verifies_and_is_hardened(built: dict[str, Path], tmp_path: Path) -> None:
    if ANALYZE is None:
        missing("systemd-analyze is not installed")
    root = _extract(built["agent"], tmp_path / "root")
    folder = _staged_unit(root, tmp_path / "unit")
    done = _verify(folder)
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr
    done = subprocess.run([ANALYZE, "security", "--offline=yes", str(folder / UNIT)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout)
    assert found and float(found.group(1)) <= 2.5, done.stdout[-1500:] + done.stderr


def test_the_dpkg_lifecycle_in_a_scratch_root(built: dict[str, Path], tmp_path: Path) -> None:
    """Real dpkg on a scratch root (--root with --force-script-chrootless: the maintainer
    scripts run here with DPKG_ROOT set): install, upgrade keeping an edited conffile,
    remove keeping the store, purge deleting it."""
    _need("systemd-sysusers")
    _need("systemctl")
    if os.geteuid() != 0:
        pytest.skip("dpkg --root installs files as root")
    root = tmp_path / "root"
    for folder in ("var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers", "etc"):
        (root / folder).mkdir(parents=True)
    (root / "var/lib/dpkg/status").touch()
    env = _stubs(tmp_path / "bin", root, forward=True)
    env["PATH"] += ":/usr/sbin:/sbin"  # dpkg wants ldconfig and start-stop-daemon on PATH
    newer = bp.build_agent(built["bundles"], tmp_path, "99.0", bp.host_arch(), "edge", check=False)

    def dpkg(*args: str) -> None:
        cmd = ["dpkg", f"--root={root}", "--force-script-chrootless", "--force-depends", *args]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr

    dpkg("-i", str(built["agent"]))
    assert (root / WANTS).is_symlink() and "backbench:" in (root / "etc/passwd").read_text()
    config, store = root / "etc/backbench/agent.toml", root / "var/lib/backbench/results.db"
    config.write_text(config.read_text() + "# mine\n")
    store.parent.mkdir(parents=True)
    store.write_text("results")
    dpkg("-i", str(newer))
    assert config.read_text().endswith("# mine\n") and store.read_text() == "results"
    dpkg("--remove", "backbench-agent")
    assert (
        not (root / "opt/backbench/agent").exists()
        and not (root / "usr/bin/backbench-agent").exists()
    )
    assert store.read_text() == "results" and config.exists() and (root / WANTS).is_symlink()
    dpkg("--purge", "backbench-agent")
    assert not (root / "var/lib/backbench").exists() and not (root / "etc/backbench").exists()
    assert not (root / WANTS).is_symlink()
    assert not [c for c in _calls(env) if re.search(r"\b(start|stop|daemon-reload)\b|^udevadm", c)]


# -- the maintainer scripts, with systemd "running" in the scratch root ----------------


def test_the_maintainer_scripts_are_posix_sh() -> None:
    for script in sorted(SCRIPTS.iterdir()) + [PACKAGING / "install.sh"]:
        assert script.read_text().startswith("#!/bin/sh\n"), script
        for shell in ("sh", "dash", "bash"):
            if shutil.which(shell):
                done = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True)
                assert done.returncode == 0, (shell, script, done.stderr)


def _live_root(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "root"
    for folder in ("run/systemd/system", "run/udev", "etc/backbench", "usr/sbin"):
        (root / folder).mkdir(parents=True)
    (root / "run" / "udev" / "control").touch()
    return root, _stubs(tmp_path / "bin", root, forward=False)


def test_a_first_install_enables_and_starts_the_agent(tmp_path: Path) -> None:
    root, env = _live_root(tmp_path)
    _script("postinst", "configure", root=root, env=env)
    calls = _calls(env)
    assert f"systemd-sysusers --root={root} backbench.conf" in calls
    assert "udevadm control --reload-rules" in calls
    assert "udevadm trigger --subsystem-match=usb --attr-match=idVendor=03e7" in calls
    i_enable = calls.index(f"systemctl --root={root} enable {UNIT}")
    assert (
        calls.index(f"systemctl start {UNIT}") > calls.index("systemctl daemon-reload") > i_enable
    )


@pytest.mark.parametrize("how", ["env", "file", "policy-rc.d"])
def test_the_admin_opts_out_of_enabling_or_starting(tmp_path: Path, how: str) -> None:
    root, env = _live_root(tmp_path)
    extra = {"BACKBENCH_NO_ENABLE": "1"} if how == "env" else {}
    if how == "file":
        (root / "etc" / "backbench" / "no-enable").touch()
    if how == "policy-rc.d":
        policy = root / "usr" / "sbin" / "policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    _script("postinst", "configure", root=root, env=env, **extra)
    calls = _calls(env)
    assert f"systemctl start {UNIT}" not in calls
    # policy-rc.d stops starts only: the unit is enabled for the next boot.
    assert (f"systemctl --root={root} enable {UNIT}" in calls) == (how == "policy-rc.d")
    assert f"systemd-sysusers --root={root} backbench.conf" in calls


@pytest.mark.parametrize("was_active", [True, False])
def test_an_upgrade_restarts_a_running_agent_and_enables_nothing(
    tmp_path: Path, was_active: bool
) -> None:
    root, env = _live_root(tmp_path)
    if was_active:
        (tmp_path / "bin" / "ACTIVE").touch()
    _script("prerm", "upgrade", "0.2.0", root=root, env=env)
    (tmp_path / "bin" / "ACTIVE").unlink(missing_ok=True)
    assert (f"systemctl stop {UNIT}" in _calls(env)) == was_active
    _script("postinst", "configure", "0.1.0", root=root, env=env)
    calls = _calls(env)
    assert not [c for c in calls if " enable " in c], calls  # the admin's choice stands
    assert (f"systemctl start {UNIT}" in calls) == was_active
    assert not (root / "run" / "backbench-agent.dpkg-was-active").exists()


def test_an_upgrade_starts_an_enabled_agent_unless_opted_out(tmp_path: Path) -> None:
    root, env = _live_root(tmp_path)
    (root / WANTS).parent.mkdir(parents=True)
    (root / WANTS).symlink_to(f"/lib/systemd/system/{UNIT}")
    _script("postinst", "configure", "0.1.0", root=root, env=env, BACKBENCH_NO_ENABLE="1")
    assert f"systemctl start {UNIT}" not in _calls(env)
    _script("postinst", "configure", "0.1.0", root=root, env=env)
    assert f"systemctl start {UNIT}" in _calls(env)


def test_remove_keeps_the_store_and_only_purge_deletes_it(tmp_path: Path) -> None:
    root, env = _live_root(tmp_path)
    kept = [root / "etc/backbench/agent.toml", root / "var/lib/backbench/results.db",
            root / "var/lib/backbench/uploads/net.onnx", root / "var/cache/backbench/ir/x.xml"]  # fmt: skip
    for path in kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("data")
    (root / WANTS).parent.mkdir(parents=True)
    (root / WANTS).symlink_to(f"/lib/systemd/system/{UNIT}")
    _script("prerm", "remove", root=root, env=env)
    assert f"systemctl stop {UNIT}" in _calls(env)
    for action in (
        "remove",
        "upgrade",
        "failed-upgrade",
        "abort-install",
        "abort-upgrade",
        "disappear",
    ):
        _script("postrm", action, "0.2.0", root=root, env=env)
        assert all(p.exists() for p in kept), action
    assert (root / WANTS).is_symlink()  # a reinstall after remove is enabled as it was
    _script("postrm", "purge", root=root, env=env)
    assert not any(p.exists() for p in kept)
    assert not (root / "etc/backbench").exists() and not (root / "var/lib/backbench").exists()
    assert not (root / WANTS).is_symlink()
    assert (root / "run" / "systemd").is_dir()  # nothing else went


# -- the tarball and install.sh --------------------------------------------------------------


def _unpacked(tarball: Path, where: Path) -> Path:
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
        tar.extractall(where, filter="tar")
    top = names[0].split("/")[0]
    assert all(n.split("/")[0] == top for n in names)
    return where / top


def test_the_tarball_holds_both_bundles_and_the_system_files(built: dict[str, Path]) -> None:
    with tarfile.open(built["tarball"]) as tar:
        members = {m.name.split("/", 1)[1]: m for m in tar.getmembers() if "/" in m.name}
    for name in ("install.sh", "agent/backbench-agent", "gui/backbench-gui", "worker/core/measure/worker.py",
                 "systemd/backbench-agent.service", "systemd/backbench.sysusers.conf",
                 "systemd/dropins/gpu.conf", "udev/97-backbench-ncs2.rules", "desktop/backbench.desktop",
                 "desktop/backbench.svg", "desktop/backbench-256.png", "etc/agent.toml", "docs/AGENT.md"):  # fmt: skip
        assert name in members, name
    assert all(m.uid == 0 and m.gid == 0 for m in members.values())
    assert members["install.sh"].mode == members["agent/backbench-agent"].mode == 0o755


def _install_sh(
    top: Path, env: dict[str, str], *args: str, **extra: str
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["sh", str(top / "install.sh"), *args], capture_output=True, text=True,
                          timeout=120, env={**env, **extra})  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_install_sh_installs_upgrades_and_uninstalls_into_a_root(
    built: dict[str, Path], tmp_path: Path
) -> None:
    _need("systemd-sysusers")
    _need("systemctl")
    top = _unpacked(built["tarball"], tmp_path / "unpacked")
    root = tmp_path / "root"
    env = _stubs(tmp_path / "bin", root, forward=True)
    root.mkdir()
    common = ("--root", str(root), "--prefix", "/opt/bb")
    _install_sh(top, env, *common)
    assert os.readlink(root / "usr/local/bin/backbench-agent") == "/opt/bb/agent/backbench-agent"
    assert os.readlink(root / "usr/local/bin/backbench-gui") == "/opt/bb/gui/backbench-gui"
    unit = (root / "etc/systemd/system" / UNIT).read_text()
    assert "ExecStart=/opt/bb/agent/backbench-agent --group backbench" in unit
    assert os.readlink(root / WANTS) == f"/etc/systemd/system/{UNIT}"
    assert any(ln.startswith("backbench:") for ln in (root / "etc/passwd").read_text().splitlines())
    for path in ("etc/udev/rules.d/97-backbench-ncs2.rules", "etc/sysusers.d/backbench.conf",
                 "etc/backbench/agent.toml", "usr/local/share/applications/backbench.desktop",
                 "usr/local/share/icons/hicolor/256x256/apps/backbench.png",
                 "usr/local/share/icons/hicolor/scalable/apps/backbench.svg",
                 "opt/bb/worker/core/measure/worker.py", "opt/bb/doc/examples/gpu.conf"):  # fmt: skip
        assert (root / path).is_file(), path
    program = root / "opt/bb/agent/backbench-agent"
    assert (
        subprocess.run([str(program), "--version"], capture_output=True, text=True).returncode == 0
    )
    assert program.stat().st_mode & 0o777 == 0o755
    assert (root / "opt/bb/agent/_internal/data.bin").stat().st_mode & 0o777 == 0o644
    assert not [c for c in _calls(env) if re.search(r"\b(start|daemon-reload|stop)\b|^udevadm", c)]

    # Again: an upgrade in place, which keeps the admin's config and the store.
    (root / "etc/backbench/agent.toml").write_text("# mine\n")
    store = root / "var/lib/backbench/results.db"
    store.parent.mkdir(parents=True)
    store.write_text("results")
    (root / WANTS).unlink()  # the admin disabled it: a rerun does not enable it again
    _install_sh(top, env, *common)
    assert (root / "etc/backbench/agent.toml").read_text() == "# mine\n"
    assert store.read_text() == "results" and not (root / WANTS).is_symlink()
    assert not list((root / "opt/bb").glob("*.new")) and not list((root / "opt/bb").glob("*.old"))

    _install_sh(top, env, *common, "--uninstall")
    assert not (root / "opt/bb/agent").exists() and not (root / "opt/bb/gui").exists()
    assert (
        not (root / "usr/local/bin/backbench-agent").exists()
        and not (root / "etc/systemd/system" / UNIT).exists()
    )
    assert not (root / "usr/local/share/applications/backbench.desktop").exists()
    assert store.read_text() == "results" and (root / "etc/backbench/agent.toml").exists()
    _install_sh(top, env, *common, "--uninstall", "--purge")
    assert not store.exists() and not (root / "etc/backbench").exists()


@pytest.mark.parametrize("how", ["flag", "env"])
def test_install_sh_opt_out_and_gui_only(built: dict[str, Path], tmp_path: Path, how: str) -> None:
    _need("systemd-sysusers")
    _need("systemctl")
    top = _unpacked(built["tarball"], tmp_path / "unpacked")
    root = tmp_path / "root"
    env = _stubs(tmp_path / "bin", root, forward=True)
    args = ("--root", str(root), "--agent") + (("--no-enable",) if how == "flag" else ())
    _install_sh(top, env, *args, **({"BACKBENCH_NO_ENABLE": "1"} if how == "env" else {}))
    assert (root / "etc/systemd/system" / UNIT).is_file() and not (root / WANTS).exists()
    assert not (root / "opt/backbench/gui").exists()
    gui_root = tmp_path / "gui-root"
    _install_sh(top, env, "--root", str(gui_root), "--gui")
    assert (gui_root / "opt/backbench/gui/backbench-gui").is_file()
    assert (
        not (gui_root / "etc/systemd").exists() and not (gui_root / "opt/backbench/agent").exists()
    )


def test_install_sh_refuses_a_relative_prefix_and_a_home_prefix(
    built: dict[str, Path], tmp_path: Path
) -> None:
    top = _unpacked(built["tarball"], tmp_path / "unpacked")
    for prefix in ("opt/bb", "/home/me/bb"):
        done = subprocess.run(["sh", str(top / "install.sh"), "--root", str(tmp_path / "r"), "--prefix", prefix],
                              capture_output=True, text=True)  # fmt: skip
        assert done.returncode == 2 and "--prefix" in done.stderr


# -- the real bundles (make test-bundles) ---------------------------------------------------


def _needed(path: Path) -> list[str]:
    done = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True, check=True)
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", done.stdout)


def test_real_bundles(tmp_path: Path) -> None:
    where = os.environ.get("BACKBENCH_BUNDLES")
    if not where:
        pytest.skip("set BACKBENCH_BUNDLES to the bundles' folder (make test-bundles)")
    for tool in ("dpkg-deb", "dpkg", "readelf"):
        _need(tool)
    bundles = Path(where).resolve()
    flavour = os.environ.get("BACKBENCH_AGENT_FLAVOUR") or (
        "edge" if (bundles / "backbench-agent-edge").is_dir() else "full"
    )
    out = tmp_path / "out"
    out.mkdir()
    version, arch = bp.debian_version(bp.project_version()), bp.host_arch()
    agent = bp.build_agent(bundles, out, version, arch, flavour, compression="gzip")
    gui = bp.build_gui(bundles, out, version, arch, compression="gzip")
    for deb in (agent, gui):
        print(f"{deb.name}: {deb.stat().st_size / 1e6:.1f} MB")
    assert not X_LIBS.search(_field(agent, "Depends") + _field(agent, "Recommends"))

    root = tmp_path / "root"
    _extract(agent, root)
    _extract(gui, root)
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    for name in ("backbench-agent", "backbench-gui"):
        program = root / os.readlink(root / "usr" / "bin" / name).lstrip("/")
        done = subprocess.run(
            [str(program), "--version"], capture_output=True, text=True, timeout=300, env=env
        )
        assert done.returncode == 0 and name in done.stdout + done.stderr, done.stderr[-2000:]

    # Every library Qt's xcb plugin loads from the system is in the GUI's Depends.
    gui_dir = root / "opt" / "backbench" / "gui"
    plugin = next(gui_dir.rglob("platforms/libqxcb.so"), None)
    assert plugin is not None, "no xcb platform plugin in the GUI bundle"
    shipped = {p.name for p in gui_dir.rglob("*.so*")}
    to_check = [plugin, *gui_dir.rglob("libQt6XcbQpa.so*"), *gui_dir.rglob("libQt6Gui.so*")]
    system = sorted({lib for f in to_check if not f.is_symlink() for lib in _needed(f)} - shipped)
    depends = set(_depends(gui))
    uncovered = []
    for lib in system:
        if lib.startswith(("libQt6", "libicu", "libpyside", "libshiboken")):
            uncovered.append(f"{lib} (a Qt library missing from the bundle)")
            continue
        owner = subprocess.run(["dpkg", "-S", f"*/{lib}"], capture_output=True, text=True)
        packages = {ln.split(":")[0] for ln in owner.stdout.splitlines() if ":" in ln}
        if not packages:
            uncovered.append(f"{lib} (no installed package has it)")
        elif not packages & depends:
            uncovered.append(f"{lib} ({', '.join(sorted(packages))})")
    assert not uncovered, uncovered
