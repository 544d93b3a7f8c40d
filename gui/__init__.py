"""backbench desktop GUI: PySide6 + pyqtgraph.

Imports core's light modules (listed in tests/test_layering.py and docs/ARCHITECTURE.md)
and core.protocol; never service, torch, openvino or onnxruntime. ``commands`` registers
the ``gui`` command of ``backbench``.
"""

from __future__ import annotations
