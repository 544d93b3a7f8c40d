"""Measuring one case, and a sweep of them.

- ``harness``: warm-up, the timed loop with adaptive stopping, the telemetry hook;
- ``pipe``: the worker -> parent pipe format (batched sample frames, JSON frames);
- ``worker``: the process that measures one case (``python -m core.measure.worker``),
  kept importable on Python 3.10 for the OpenVINO 2022.3 (NCS2) runtime;
- ``supervisor``: starts a worker per case, watches it, classifies how it ended;
- ``runner``: a sweep of cases into the store, shared by the CLI and the agent;
- ``executors``: where a sweep's cases run: worker processes here (local), or Ray tasks
  on the nodes of a cluster, each holding its device (ray);
- ``environment``: the host manifest recorded with each run;
- ``runtimes``: named worker runtimes (another interpreter for the workers, such as
  OpenVINO 2022.3 on Python 3.10), their configuration and what they report.

Imports: backends, store, zoo and the data model below; never analysis, report or cli.
"""
