"""Executors: where a sweep's cases run (``run_sweep(..., executor=...)``).

- ``base``: the interface (``CaseExecutor``), the sweep's hooks (``SweepObserver``) and
  what the runner hands an executor (``SweepContext``);
- ``local``: the default: each case in a worker process of its own on this host, one
  after another (core.measure.supervisor.CaseRunner);
- ``ray_executor``: each case a Ray task on a node of a cluster, reserving its device
  (``pip install 'backbench[cluster]'``): connecting, and checking the nodes first;
- ``ray_sweep``: the driver's side of such a sweep: submitting the tasks, streaming their
  results back into the store, lost nodes, cancelling;
- ``node``: what such a task runs on its node (the same CaseRunner, a content-addressed
  cache of the files it needs, the node's manifest);
- ``resources``: what a case reserves on a cluster (the device policy).

Ray is imported only when a Ray executor connects, so core works without it.
"""

from __future__ import annotations

from typing import Any

from core.errors import UsageError
from core.measure.executors.base import CaseExecutor
from core.results import EXECUTOR_LOCAL, EXECUTOR_RAY, EXECUTORS


def make_executor(name: str | None, *, ray_address: str | None = None, **options: Any) -> CaseExecutor:
    """The executor called ``name`` (None: local). ``options`` go to its constructor:
    ``runner`` (a CaseRunner) for the local one; ``worker_command``, ``limits``,
    ``max_mem_mb`` ... for the Ray one, with ``ray_address`` (None: a Ray instance of its
    own on this machine)."""
    if name in (None, EXECUTOR_LOCAL):
        if ray_address is not None:
            raise UsageError("--ray-address is for --executor ray.", "Add --executor ray, or leave out --ray-address.")
        from core.measure.executors.local import LocalExecutor

        return LocalExecutor(options.get("runner"))
    if name == EXECUTOR_RAY:
        from core.measure.executors.ray_executor import RayExecutor

        return RayExecutor(ray_address, **options)
    raise UsageError(f"Unknown executor {name!r}.", f"Use one of: {', '.join(EXECUTORS)}.")
