"""``backbench-gui`` (and ``backbench gui``): set up Qt and open the main window."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence

from core import __version__

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="backbench-gui",
        description="The backbench desktop app: connect to agents, launch runs, watch them "
        "live and analyse the results.",
    )
    parser.add_argument("--version", action="version", version=f"backbench-gui {__version__}")
    parser.add_argument("--socket", help="the local agent's socket (default: the user's, else the system's)")
    parser.add_argument("--import", dest="import_path", metavar="FILE",
                        help="open a results store, CSV or JSON file at start")  # fmt: skip
    parser.add_argument("--reset-layout", action="store_true", help="ignore the saved window layout")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="open the main window (offscreen where there is no display), analyse sample data, "
        "close it; exit 0 only if all of it worked",
    )
    return parser


def create_application(argv: Sequence[str] | None = None) -> object:
    """The QApplication (created once), named so QSettings finds the user's file."""
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        app = QApplication([sys.argv[0], *(argv or [])])
    app.setOrganizationName("backbench")
    app.setApplicationName("backbench-gui")
    app.setApplicationVersion(__version__)
    app.setApplicationDisplayName("backbench")
    return app


def main(argv: Sequence[str] | None = None) -> int:
    args, qt_args = build_parser().parse_known_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.self_test:
        from gui.selftest import use_offscreen_without_display

        use_offscreen_without_display()
    from gui.platform_check import missing_libraries_message, missing_xcb_libraries, wants_xcb

    if wants_xcb():
        missing = missing_xcb_libraries()
        if missing:  # Qt would abort with a line that names no package
            sys.stderr.write(missing_libraries_message(missing) + "\n")
            return 1
    try:
        app = create_application(qt_args)
        from gui.main_window import MainWindow
    except ImportError as exc:
        sys.stderr.write(
            f"backbench-gui: error: the GUI needs PySide6 and pyqtgraph ({exc.name} is missing). "
            "Install them with `pip install 'backbench[gui]'`.\n"
        )
        return 1
    if args.self_test:
        from gui.selftest import run_self_test

        return run_self_test(qt_args)
    window = MainWindow(restore=not args.reset_layout, local_socket=args.socket)
    window.show()
    if args.import_path and hasattr(window.results_view, "import_file"):
        window.tabs.setCurrentWidget(window.results_view)
        window.results_view.import_file(args.import_path)
    # Ctrl-C or SIGTERM closes the window cleanly (settings saved, SSH tunnels ended).
    # Python runs signal handlers only between bytecodes, so a timer lets it in.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: window.close())
    from PySide6.QtCore import QTimer

    wake = QTimer()
    wake.timeout.connect(lambda: None)
    wake.start(250)
    return int(app.exec())  # type: ignore[attr-defined]


if __name__ == "__main__":
    sys.exit(main())
