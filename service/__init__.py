"""backbench agent: the headless daemon that runs jobs and streams telemetry, and its
terminal client.

- ``agent``: the process (``backbench-agent``): startup, shutdown, systemd notify;
- ``server``: the Unix-socket JSON-RPC server, one bounded ``client_queue`` per client;
- ``connections``: the connected clients, and the fan-out of events and telemetry to them;
- ``handlers``: what each method does (they publish through ``connections``, never the
  server); ``jobs``: the persistent job queue;
- ``dispatcher``: the thread that measures queued jobs through core's runner;
- ``telemetry``: hands events and samples from that thread to the event loop;
- ``uploads``, ``probe``, ``config``, ``systemd``: model uploads, device probing,
  configuration, sd_notify;
- ``client`` and ``remote``: the terminal client (``backbench remote``);
- ``commands``: the ``agent``, ``remote`` and ``export`` commands of ``backbench``.

Imports core, never gui or Qt.
"""

from __future__ import annotations
