"""backbench core: measurement, store, analysis, prediction, report and CLI.

No Qt and no sockets live here. Heavy frameworks (torch, openvino, onnxruntime) are
imported lazily, inside the backends and the zoo's builders, so the light parts (results,
store, analysis, protocol) work where only some of them are installed.
"""

from __future__ import annotations

__version__ = "0.1.0"
