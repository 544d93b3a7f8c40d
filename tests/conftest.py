"""Test-wide configuration: offline, headless, and a private data/cache dir per session."""

from __future__ import annotations

import os

# Qt runs offscreen in tests; set before any Qt import.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
