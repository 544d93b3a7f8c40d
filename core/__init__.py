"""backbench core: the library behind the ``backbench`` command, one sub-package per stage.

From the top down (each imports only the ones below it; docs/ARCHITECTURE.md):

- ``cli``: the command line; command families come from entry points;
- ``report``: the HTML report and its figures;
- ``analysis`` and ``predict``: the study's analyses; the latency and memory predictor;
- ``measure``: harness, worker, supervisor, runner;
- ``backends`` and ``store``: one module per framework; the SQLite results store;
- ``zoo`` and ``protocol``: model cards and complexity; the agent wire protocol;
- ``results``, ``errors``, ``text``, ``paths``: the data model and its plain helpers.

No Qt and no sockets live here. Heavy frameworks (torch, openvino, onnxruntime) are
imported lazily, inside the backends and the zoo's builders, so the light parts work
where only some of them are installed.
"""

from __future__ import annotations

__version__ = "0.1.0"
