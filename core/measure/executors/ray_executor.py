"""The Ray executor: a sweep's cases as Ray tasks on the nodes of a cluster.

Ray schedules and carries results; it does not measure. Each case is one task that
reserves its device (core.measure.executors.resources: ``num_gpus=1``, a custom
resource such as ``openvino:MYRIAD``, or ``backbench_cpu`` for a CPU case) and measures
on its node exactly as a local run does, in a worker process of its own
(core.measure.executors.node). This process, the driver, writes the store: results
stream back as tasks finish (``ray.wait`` on the tasks' generators), each committed as
it arrives, tagged with its node (``conditions["node"]``) and pointing at that node's
environment manifest.

Versions: before a sweep every node that could take its cases is asked its versions,
and a node that runs another backbench version than the driver is refused (the sweep
does not start); a node that joins later with another version refuses the case itself
(the case fails, saying so). Framework versions may differ from node to node (an NCS2
box runs OpenVINO 2022.3, a GPU box the newest): each row is labelled with its node's
manifest, never mixed silently.

Faults: a node lost while it measures (its task fails with a Ray system error) gives
its case a failed attempt with the reason, and the case is re-queued once; Ray places
it on a node that has the resource (the lost one is gone). A case whose worker crashes
is failed by its node's CaseRunner, as locally, and not retried. A case whose resource
no alive node declares any more fails after ``starve_s``. Ctrl-C or a cancel stops the
sweep: the outstanding tasks are cancelled (their workers stopped), results that
arrive meanwhile are kept, and the cases cut off are recorded as such.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
from collections.abc import Iterator
from typing import Any

from core import __version__
from core.errors import ClusterError, UsageError
from core.measure.environment import manifest as host_manifest
from core.measure.executors.base import RUN_FINISHED, CaseExecutor, SweepContext
from core.measure.executors.node import describe_node
from core.measure.executors.ray_sweep import DriverOptions, RaySweep
from core.measure.executors.resources import (
    CPU_RESOURCE,
    OPENVINO_RESOURCE_PREFIX,
    lost_resource_hint,
    node_has,
    resource_of,
)
from core.measure.supervisor import PhaseLimits
from core.results import Mode, RunSpec

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "Install it with: pip install 'backbench[cluster]' (in a source checkout: "
    ".venv/bin/pip install -e '.[cluster]')."
)
NO_SIGNAL_HANDLER_ENV = "RAY_DISABLE_FAILURE_SIGNAL_HANDLER"
GCS_CONNECT_TRIES_ENV = "RAY_gcs_server_port_wait_time_s"
LOCAL_ADDRESS = "local"  # no --ray-address: a Ray instance of its own on this machine


def ray_installed() -> bool:
    """Whether ``import ray`` can find Ray (without importing it: a second)."""
    try:
        return importlib.util.find_spec("ray") is not None
    except ValueError:  # a module "ray" without a spec in sys.modules
        return False


def import_ray() -> Any:
    """The ray module; UsageError saying how to install it when it is missing."""
    try:
        import ray
    except ImportError:
        raise UsageError("--executor ray needs Ray, which is not installed here.", INSTALL_HINT) from None
    return ray


def check_spec(spec: RunSpec) -> None:
    """Refuse what a cluster cannot run, before anything connects (the agent checks a
    submitted spec with it): measuring in this process, accuracy runs (their dataset is
    a folder on this host), and devices Ray cannot reserve."""
    if not ray_installed():
        raise UsageError("--executor ray needs Ray, which is not installed here.", INSTALL_HINT)
    if not spec.isolate:
        raise UsageError(
            "--executor ray measures each case in a worker process on a node; --no-isolate "
            "measures in this process.",
            "Leave out --no-isolate.",
        )
    if spec.mode is Mode.ACCURACY or spec.accuracy is not None:
        raise UsageError(
            "Accuracy runs read their dataset from a folder on the measuring host, which "
            "the nodes of a cluster do not have.",
            "Run accuracy with the local executor.",
        )
    resource_of(spec.cases()[0])  # one device a sweep: its first case says it


def _auth_refused(exc: BaseException) -> bool:
    """Whether Ray's connection error came of the head's token authentication."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if "Authentication" in type(seen).__name__ or "InvalidAuthToken" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@contextlib.contextmanager
def _one_connect_attempt() -> Iterator[None]:
    """Ray tries an unreachable head about 20 times, some 40 s each, before it gives up:
    once is enough to say so (about 40 s). A value the user set is kept."""
    if GCS_CONNECT_TRIES_ENV in os.environ:
        yield
        return
    os.environ[GCS_CONNECT_TRIES_ENV] = "1"
    try:
        yield
    finally:
        os.environ.pop(GCS_CONNECT_TRIES_ENV, None)


class RayExecutor(CaseExecutor):
    """Cases as Ray tasks (see the module's docstring).

    ``address``: None starts a Ray instance of its own on this machine, which declares
    ``backbench_cpu`` and the sweep's edge-device resource, one each (Ray finds the
    GPUs); ``"auto"`` joins the cluster this machine is part of (``ray start``); else a
    head's ``HOST:PORT`` or ``ray://HOST:10001`` (Ray Client, ``pip install 'ray[client]'``).
    Connected to an already initialised Ray (a test's cluster), it uses that one and
    leaves it up.

    ``worker_command``, ``worker_env``, ``limits`` and ``max_mem_mb`` are what the nodes'
    CaseRunners get (the agent passes its own; tests and bench/scale.py pass the
    synthetic worker). ``faults`` is a test hook: case index -> WorkerJob fault.
    """

    name = "ray"
    checks_devices_here = False

    def __init__(
        self,
        address: str | None = None,
        *,
        worker_command: list[str] | None = None,
        worker_env: dict[str, str] | None = None,
        limits: PhaseLimits | None = None,
        max_mem_mb: int | None = None,
        faults: dict[int, str] | None = None,
        starve_s: float = 60.0,
        probe_timeout_s: float = 60.0,
        cancel_grace_s: float = 10.0,
    ) -> None:
        self.address = address
        self.worker_command = list(worker_command) if worker_command else None
        self.worker_env = dict(worker_env) if worker_env else None
        self.limits = limits or PhaseLimits()
        self.max_mem_mb = max_mem_mb
        self.faults = dict(faults or {})
        self.starve_s = starve_s
        self.probe_timeout_s = probe_timeout_s
        self.cancel_grace_s = cancel_grace_s
        self.nodes: list[dict[str, Any]] = []  # what the probe found, for the run's manifest
        self._ray: Any = None
        self._owns_ray = False
        self._spec: RunSpec | None = None
        self._checked: tuple[str, ...] | None = None  # the resources the probe covered

    # -- before the sweep ------------------------------------------------------------------

    def configure(self, spec: RunSpec) -> None:
        check_spec(spec)
        self._spec = spec
        self.connect(spec)
        needed = tuple(sorted({resource_of(case) for case in spec.cases()}))
        if self._checked != needed:
            self._check_nodes(spec, needed)
            self._checked = needed

    def connect(self, spec: RunSpec | None = None) -> None:
        """Join the cluster (or start a Ray instance here); a second call does nothing."""
        if self._ray is not None:
            return
        # Read as Ray is imported: otherwise, once a driver disconnects, Ray's crash handler
        # holds SIGTERM and kills the process outright (the agent stops gracefully on it).
        os.environ.setdefault(NO_SIGNAL_HANDLER_ENV, "1")
        ray = import_ray()
        if not ray.is_initialized():
            options: dict[str, Any] = {
                "include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR,
            }  # fmt: skip
            where = f"the Ray cluster at {self.address}" if self.address else "a Ray instance on this machine"
            try:
                if self.address is None:
                    resources = {CPU_RESOURCE: 1.0}
                    if spec is not None:
                        for case in spec.cases()[:1]:
                            resource = resource_of(case)
                            if resource.startswith(OPENVINO_RESOURCE_PREFIX):
                                resources[resource] = 1.0
                    ray.init(address=LOCAL_ADDRESS, resources=resources, **options)
                else:
                    with _one_connect_attempt():
                        ray.init(address=self.address, **options)
            except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
                first = str(exc).strip().splitlines()[0][:300].rstrip(".")
                if _auth_refused(exc):
                    raise ClusterError(
                        f"Could not connect to {where}: it asks for Ray's auth token, which "
                        "this machine does not give.",
                        "Copy the head's ~/.ray/auth_token here and set RAY_AUTH_MODE=token, "
                        "or join the cluster with `ray start` and use --ray-address auto "
                        "(docs/CLUSTER.md).",
                    ) from None
                raise ClusterError(
                    f"Could not connect to {where}: {first}.",
                    "Start the head with `ray start --head` and give its address with "
                    "--ray-address HOST:6379, or --ray-address auto on a machine that joined "
                    "it (docs/CLUSTER.md).",
                ) from None
            self._owns_ray = True
        self._ray = ray

    def _check_nodes(self, spec: RunSpec, needed: tuple[str, ...]) -> None:
        """Every resource the sweep needs is declared by an alive node, and every node
        that could take a case runs this backbench version (asked of each node)."""
        ray = self._ray
        alive = [n for n in ray.nodes() if n.get("Alive")]
        for resource in needed:
            if not any(node_has(n.get("Resources") or {}, resource) for n in alive):
                device = spec.cases()[0].device
                raise ClusterError(
                    f"No node of the cluster declares the resource {resource!r} that "
                    f"{spec.backend.value} cases on {device} need.",
                    lost_resource_hint(resource),
                )
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        candidates = [
            n for n in alive if any(node_has(n.get("Resources") or {}, r) for r in needed)
        ]
        probe = ray.remote(describe_node)
        refs = {
            probe.options(
                num_cpus=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False),
            ).remote(): n
            for n in candidates
        }
        ready, missing = ray.wait(list(refs), num_returns=len(refs), timeout=self.probe_timeout_s)
        answers: list[dict[str, Any]] = []
        for ref in ready:
            try:
                answer = ray.get(ref)
            except ray.exceptions.RayError as exc:  # a node that went away meanwhile
                log.warning("node %s did not answer: %s", refs[ref].get("NodeManagerAddress"), exc)
                continue
            # What the node declared (its CPUs, GPUs and custom resources), not Ray's
            # bookkeeping (memory, object store, the node:IP label).
            resources = refs[ref].get("Resources") or {}
            answer["resources"] = {
                k: v for k, v in resources.items()
                if k not in ("memory", "object_store_memory") and not k.startswith("node:")
            }  # fmt: skip
            answers.append(answer)
        for ref in missing:
            ray.cancel(ref)
            log.warning(
                "node %s did not answer within %.0f s; its cases will be checked as they start",
                refs[ref].get("NodeManagerAddress"), self.probe_timeout_s,
            )
        others = [a for a in answers if a.get("backbench") != __version__]
        if others:
            listed = ", ".join(f"{a.get('ip')} ({a.get('host')}): {a.get('backbench')}" for a in others)
            raise ClusterError(
                f"Nodes of the cluster run another backbench version than this one ({__version__}): "
                f"{listed}. Their results would mix two versions of the measuring code.",
                f"Install backbench {__version__} on them, or stop them (ray stop).",
            )
        self.nodes = sorted(answers, key=lambda a: (str(a.get("ip")), str(a.get("id"))))

    def run_manifest(self, manifest: dict[str, Any] | None) -> dict[str, Any]:
        """The driver's manifest, with the cluster it ran on. Each measurement points at
        its own node's manifest."""
        ray = self._ray
        out = dict(manifest) if manifest is not None else host_manifest()
        out["executor"] = {
            "name": self.name,
            "address": self.address or LOCAL_ADDRESS,
            "ray": getattr(ray, "__version__", None),
            "nodes": self.nodes,
        }
        if self._spec is not None:
            out["worker_start"] = {"method": "ray", "requested": self._spec.worker_start}
        return out

    def close(self) -> None:
        if self._ray is not None and self._owns_ray:
            self._ray.shutdown()
        self._ray = None
        self._owns_ray = False
        self._checked = None

    # -- the sweep -----------------------------------------------------------------------

    def run_cases(self, sweep: SweepContext) -> str:
        if not sweep.todo:
            return RUN_FINISHED
        self.connect(sweep.spec)
        options = DriverOptions(
            worker_command=self.worker_command, worker_env=self.worker_env, limits=self.limits,
            max_mem_mb=self.max_mem_mb, faults=self.faults, starve_s=self.starve_s,
            cancel_grace_s=self.cancel_grace_s,
        )  # fmt: skip
        return RaySweep(self._ray, sweep, options).run()
