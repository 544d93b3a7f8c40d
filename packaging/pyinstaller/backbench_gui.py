"""The frozen ``backbench-gui``: the desktop app (``gui.app.main``)."""

import sys

from gui.app import main

if __name__ == "__main__":
    sys.exit(main())
