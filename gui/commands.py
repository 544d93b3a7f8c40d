"""The ``gui`` subcommand of ``backbench``: opens the desktop app.

The GUI lives in the gui package (Qt stays out of core); it is imported only when this
command runs, so the rest of the CLI never loads Qt.
"""

from __future__ import annotations

import argparse
from typing import Any

from core.errors import UsageError


def cmd_gui(args: argparse.Namespace) -> int:
    try:
        from gui.app import main as gui_main
    except ImportError as exc:
        raise UsageError(
            f"The GUI needs PySide6 and pyqtgraph ({exc.name or 'a Qt module'} is missing).",
            "Install them with `pip install 'backbench[gui]'`.",
        ) from None
    return gui_main(args.gui_args)


def add_commands(sub: Any) -> None:
    # Every argument, --help included, goes to the GUI's own parser (and Qt's options
    # through it): an unused prefix character keeps this one from reading them.
    p = sub.add_parser("gui", add_help=False, prefix_chars="\x01",
                       help="open the desktop app (see `backbench gui --help`)")  # fmt: skip
    p.add_argument("gui_args", nargs="*")
    p.set_defaults(func=cmd_gui)
