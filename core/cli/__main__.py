"""``python -m core.cli``: the same as the ``backbench`` command."""

from __future__ import annotations

import sys

from core.cli.main import main

sys.exit(main())
