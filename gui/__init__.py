"""backbench desktop GUI: PySide6 + pyqtgraph (issue 5). Never imports torch, openvino or service."""

from __future__ import annotations
