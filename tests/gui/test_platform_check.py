"""The check before Qt starts: without the xcb libraries, one line that names them and
the packages, instead of Qt's abort."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gui.platform_check import (
    missing_libraries_message,
    missing_xcb_libraries,
    parse_ldd,
    wants_xcb,
    xcb_plugin_files,
)

LDD_OUTPUT = """\
\tlinux-vdso.so.1 (0x00007ffd)
\tlibQt6XcbQpa.so.6 => /x/PySide6/Qt/lib/libQt6XcbQpa.so.6 (0x00007f)
\tlibxcb-cursor.so.0 => not found
\tlibxcb-icccm.so.4 => not found
\tlibxcb.so.1 => /lib/x86_64-linux-gnu/libxcb.so.1 (0x00007f)
\tlibxcb-cursor.so.0 => not found
\tlibweird.so.9 => not found
"""


def test_ldd_output_gives_the_missing_libraries_once_each() -> None:
    assert parse_ldd(LDD_OUTPUT) == ["libxcb-cursor.so.0", "libxcb-icccm.so.4", "libweird.so.9"]


def test_the_message_names_the_libraries_and_the_packages() -> None:
    line = missing_libraries_message(["libxcb-cursor.so.0", "libxcb-icccm.so.4", "libweird.so.9"])
    assert "\n" not in line
    assert "libxcb-cursor.so.0, libxcb-icccm.so.4, libweird.so.9 are missing" in line
    assert "`sudo apt-get install libxcb-cursor0 libxcb-icccm4`" in line
    assert "`sudo dnf install xcb-util-cursor xcb-util-wm`" in line
    assert "packages for libweird.so.9" in line and "QT_QPA_PLATFORM=offscreen" in line


def test_only_an_x_session_on_linux_asks() -> None:
    assert wants_xcb({"DISPLAY": ":0"}, "linux")
    assert not wants_xcb({"DISPLAY": ":0", "QT_QPA_PLATFORM": "offscreen"}, "linux")
    assert wants_xcb({"QT_QPA_PLATFORM": "xcb"}, "linux")
    assert not wants_xcb({"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"}, "linux")
    assert not wants_xcb({}, "linux")
    assert not wants_xcb({"DISPLAY": ":0"}, "darwin")


def test_the_installed_plugin_is_found_and_asked_about() -> None:
    files = xcb_plugin_files()
    assert any(f.name == "libqxcb.so" for f in files), files
    assert isinstance(missing_xcb_libraries(files), list)


def test_a_library_the_linker_cannot_find_is_reported(tmp_path: Path) -> None:
    """A real ELF file whose dependency does not exist: ldd says "not found"."""
    if not Path("/usr/bin/ldd").exists():
        pytest.skip("no ldd")
    cc = next((c for c in ("cc", "gcc") if subprocess.run(["which", c], capture_output=True).returncode == 0), None)
    if cc is None:
        pytest.skip("no C compiler to build a library with a missing dependency")
    (tmp_path / "dep.c").write_text("int dep(void) { return 1; }\n")
    (tmp_path / "plug.c").write_text("int dep(void); int plug(void) { return dep(); }\n")
    name = "libbackbench-gone.so.0"  # a name no system has, unlike libxcb-cursor.so.0 here
    subprocess.run([cc, "-shared", "-fPIC", "-o", tmp_path / name, tmp_path / "dep.c",
                    f"-Wl,-soname,{name}"], check=True)  # fmt: skip
    subprocess.run([cc, "-shared", "-fPIC", "-o", tmp_path / "libqxcb.so", tmp_path / "plug.c",
                    f"-L{tmp_path}", f"-l:{name}"], check=True)  # fmt: skip
    (tmp_path / name).unlink()
    assert missing_xcb_libraries([tmp_path / "libqxcb.so"]) == [name]


def test_the_gui_says_so_in_one_line_and_exits_1_when_xcb_cannot_load(tmp_path: Path) -> None:
    """The real entry point, with the check pointed at a plugin whose library is gone."""
    code = (
        "import sys, gui.platform_check as pc\n"
        "pc.missing_xcb_libraries = lambda files=None: ['libxcb-cursor.so.0']\n"
        "from gui.app import main\n"
        "sys.exit(main([]))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY")}
    env["DISPLAY"] = ":99"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "libxcb-cursor0" in lines[0] and "Traceback" not in done.stderr
