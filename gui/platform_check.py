"""Before Qt starts: can its X11 (xcb) platform plugin load here?

Without libxcb-cursor0 and friends, Qt prints "Could not load the Qt platform plugin xcb"
and aborts the process, which says nothing a user can act on. So, on Linux with an X
display and no other platform chosen, ``missing_xcb_libraries`` asks the dynamic linker
(``ldd`` on the plugin and on Qt's XCB library) which libraries it cannot find, and
``missing_libraries_message`` names them with the apt and dnf lines that install them.
No Qt import here: this runs before any.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

# soname -> (Debian/Ubuntu package, Fedora/RHEL package)
PACKAGES: dict[str, tuple[str, str]] = {
    "libxcb-cursor.so.0": ("libxcb-cursor0", "xcb-util-cursor"),
    "libxcb-icccm.so.4": ("libxcb-icccm4", "xcb-util-wm"),
    "libxcb-keysyms.so.1": ("libxcb-keysyms1", "xcb-util-keysyms"),
    "libxcb-image.so.0": ("libxcb-image0", "xcb-util-image"),
    "libxcb-util.so.1": ("libxcb-util1", "xcb-util"),
    "libxcb-render-util.so.0": ("libxcb-render-util0", "xcb-util-renderutil"),
    "libxcb-randr.so.0": ("libxcb-randr0", "libxcb"),
    "libxcb-shape.so.0": ("libxcb-shape0", "libxcb"),
    "libxcb-shm.so.0": ("libxcb-shm0", "libxcb"),
    "libxcb-sync.so.1": ("libxcb-sync1", "libxcb"),
    "libxcb-xfixes.so.0": ("libxcb-xfixes0", "libxcb"),
    "libxcb-render.so.0": ("libxcb-render0", "libxcb"),
    "libxcb-xkb.so.1": ("libxcb-xkb1", "libxcb"),
    "libxcb-xinput.so.0": ("libxcb-xinput0", "libxcb"),
    "libxcb.so.1": ("libxcb1", "libxcb"),
    "libxkbcommon.so.0": ("libxkbcommon0", "libxkbcommon"),
    "libxkbcommon-x11.so.0": ("libxkbcommon-x11-0", "libxkbcommon-x11"),
    "libX11-xcb.so.1": ("libx11-xcb1", "libX11-xcb"),
    "libX11.so.6": ("libx11-6", "libX11"),
    "libfontconfig.so.1": ("libfontconfig1", "fontconfig"),
    "libfreetype.so.6": ("libfreetype6", "freetype"),
    "libEGL.so.1": ("libegl1", "libglvnd-egl"),
    "libGL.so.1": ("libgl1", "libglvnd-glx"),
    "libOpenGL.so.0": ("libopengl0", "libglvnd-opengl"),
    "libdbus-1.so.3": ("libdbus-1-3", "dbus-libs"),
    "libglib-2.0.so.0": ("libglib2.0-0", "glib2"),
}


def wants_xcb(env: dict[str, str] | None = None, platform: str = sys.platform) -> bool:
    """Whether Qt will try the xcb plugin: Linux, an X display, no other platform chosen
    (QT_QPA_PLATFORM unset, or xcb), and no Wayland session that Qt would prefer."""
    env = dict(os.environ if env is None else env)
    if not platform.startswith("linux"):
        return False
    chosen = env.get("QT_QPA_PLATFORM", "").split(";")[0].split(":")[0].strip()
    if chosen:
        return chosen == "xcb"
    return bool(env.get("DISPLAY")) and not env.get("WAYLAND_DISPLAY")


def xcb_plugin_files() -> list[Path]:
    """The xcb plugin and Qt's XCB library in the installed PySide6, where found."""
    try:
        import importlib.util

        spec = importlib.util.find_spec("PySide6")
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.submodule_search_locations:
        return []
    qt = Path(next(iter(spec.submodule_search_locations))) / "Qt"
    candidates = [qt / "plugins" / "platforms" / "libqxcb.so", *sorted((qt / "lib").glob("libQt6XcbQpa.so*"))]
    return [p for p in candidates if p.is_file()]


def parse_ldd(text: str) -> list[str]:
    """The sonames that ``ldd`` reports as "not found", in order, each once."""
    missing: list[str] = []
    for line in text.splitlines():
        name, sep, where = line.strip().partition("=>")
        if sep and where.strip().startswith("not found") and name.strip() not in missing:
            missing.append(name.strip())
    return missing


def missing_xcb_libraries(files: list[Path] | None = None) -> list[str]:
    """The libraries the xcb plugin needs and the linker cannot find; [] when all load
    (or when there is no ldd or no plugin to ask about: then Qt reports for itself)."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return []
    missing: list[str] = []
    for path in xcb_plugin_files() if files is None else files:
        try:
            done = subprocess.run([ldd, str(path)], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            continue
        for name in parse_ldd(done.stdout):
            if name not in missing:
                missing.append(name)
    return missing


def missing_libraries_message(missing: list[str]) -> str:
    """One line: what is missing and how to install it (apt, dnf), or how to run without
    a display."""
    debian = sorted({PACKAGES[m][0] for m in missing if m in PACKAGES})
    fedora = sorted({PACKAGES[m][1] for m in missing if m in PACKAGES})
    unknown = [m for m in missing if m not in PACKAGES]
    how = []
    if debian:
        how.append(f"`sudo apt-get install {' '.join(debian)}` (Debian, Ubuntu)")
    if fedora:
        how.append(f"`sudo dnf install {' '.join(fedora)}` (Fedora, RHEL)")
    if unknown:
        how.append(f"your distribution's packages for {', '.join(unknown)}")
    return (
        f"backbench-gui: error: Qt's X11 platform plugin (xcb) cannot load: {', '.join(missing)} "
        f"{'is' if len(missing) == 1 else 'are'} missing. Install {' or '.join(how)}, "
        "or run without a display with QT_QPA_PLATFORM=offscreen."
    )
