"""What runs on a node of a Ray cluster: one case, in a worker process of its own.

``measure_on_node`` is the body of each case's Ray task (core.measure.executors.ray_sweep
submits it). Ray has reserved the case's device before it starts (core.measure.executors.
resources); the task then measures exactly as a local run does, through a
``CaseRunner`` on this node (its own worker process, fork server, watchdog, memory
figures and disturbance check): Ray schedules and carries results, it never measures.

It is a generator, so the driver hears of the case as it happens:

1. ``{"event": "refused", ...}`` and nothing else when this node runs another backbench
   version than the driver (its results would mix two measuring codes);
2. ``{"event": "started", "node": ...}`` once the task runs here (its device held);
3. ``{"event": "result", "measurement": ..., "manifest": ...}``: the measurement as a
   dict (with its samples), tagged with this node (``conditions["node"]``), and this
   node's environment manifest, read here.

A model or weights file named on the driver arrives through Ray's object store and is
kept in a content-addressed cache on the node (``<cache>/cluster/<sha256>/``): a file
already there, with the right sha256, is not fetched again, and one that arrives with
another sha256 fails the case rather than measuring something else.

This module imports Ray only inside the task, so the light parts of core never need it.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import logging
import os
import platform
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from core import __version__
from core.backends import needs_conversion
from core.backends.base import ModelSource
from core.errors import BackbenchError, ModelFileError
from core.measure.environment import manifest as host_manifest
from core.measure.supervisor import CaseRunner, PhaseLimits
from core.measure.worker import WorkerJob
from core.results import Case, FailureKind, Measurement

log = logging.getLogger(__name__)

EVENT_REFUSED = "refused"
EVENT_STARTED = "started"
EVENT_RESULT = "result"
CACHE_FOLDER = "cluster"
_CHUNK = 1 << 20

# One CaseRunner per setting in this Ray worker process: its fork server (the
# framework's imports) serves the next case with the same settings. Ray runs one task
# at a time in a worker process; the lock only guards the table.
_RUNNERS: dict[str, CaseRunner] = {}
_RUNNERS_LOCK = threading.Lock()
_MANIFESTS: dict[str, dict[str, Any]] = {}


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cache_root() -> Path:
    """Where shipped files are kept: the conversion cache's folder, under ``cluster``."""
    from core.backends.convert import cache_root as converted_root

    return converted_root() / CACHE_FOLDER


def bundle_key(files: list[dict[str, Any]]) -> str:
    """A bundle's address: the sha256 over its files' names and sha256s (an OpenVINO IR
    is its .xml and its .bin, which must sit side by side)."""
    text = "\n".join(f"{f['name']}:{f['sha256']}" for f in files)
    return hashlib.sha256(text.encode()).hexdigest()


def materialize(bundle: dict[str, Any]) -> str:
    """The local path of a shipped bundle's first file, fetched from the object store
    only when the cache lacks it or holds it with another sha256. ModelFileError when
    what arrives does not match the sha256 the driver computed."""
    files: list[dict[str, Any]] = bundle["files"]
    folder = cache_root() / bundle_key(files)
    folder.mkdir(parents=True, exist_ok=True)
    for entry in files:
        target = folder / entry["name"]
        if target.is_file():
            try:
                if sha256_of(target) == entry["sha256"]:
                    continue
            except OSError:
                pass
            log.warning("cached %s does not match its sha256; fetching it again", target)
        import ray

        data = ray.get(entry["ref"][0])
        got = hashlib.sha256(data).hexdigest()
        if got != entry["sha256"]:
            raise ModelFileError(
                f"{entry['name']} arrived with sha256 {got[:16]}..., not the driver's "
                f"{entry['sha256'][:16]}...; it was not measured.",
                "Check the node's memory and disk, and run the case again.",
            )
        # Written beside the target and renamed: a reader never sees half a file, and two
        # tasks writing the same file leave one whole copy.
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{entry['name']}.")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    return str(folder / files[0]["name"])


def node_identity(resource: str) -> dict[str, Any]:
    """This node as the driver tags its cases: Ray's node id and address, the host, and
    the resource the case holds here (with the GPU ids Ray assigned, for a CUDA case)."""
    import ray

    context = ray.get_runtime_context()
    identity: dict[str, Any] = {
        "id": context.get_node_id(),
        "ip": ray.util.get_node_ip_address(),
        "host": platform.node(),
        "resource": resource,
    }
    with contextlib.suppress(Exception):  # older Ray: no accelerator ids
        gpus = context.get_accelerator_ids().get("GPU") or []
        if gpus:
            identity["gpu_ids"] = [str(g) for g in gpus]
    return identity


def node_manifest(runtime_name: str | None, runtime: Any, node: dict[str, Any]) -> dict[str, Any]:
    """This node's environment manifest (read here, with the worker runtime's versions
    when the case runs on one), plus the Ray node it is: one manifest per node."""
    key = f"{runtime_name}|{node['id']}"
    found = _MANIFESTS.get(key)
    if found is None:
        import ray

        from core.measure.runtimes import with_runtime

        found = host_manifest()
        if runtime is not None:
            found = with_runtime(found, runtime)
        found["ray_node"] = {"id": node["id"], "ip": node["ip"], "ray": ray.__version__}
        _MANIFESTS[key] = found
    return found


def describe_node() -> dict[str, Any]:
    """What a node answers to the driver's probe before a sweep: its identity and
    versions (the driver refuses nodes with another backbench version)."""
    import ray

    manifest = host_manifest()
    return {
        "id": ray.get_runtime_context().get_node_id(),
        "ip": ray.util.get_node_ip_address(),
        "host": platform.node(),
        "backbench": __version__,
        "python": manifest.get("python"),
        "packages": {k: v for k, v in (manifest.get("packages") or {}).items() if v},
        "ray": ray.__version__,
    }


def version_refusal(driver_version: str) -> str | None:
    """Why this node may not measure for the driver, or None."""
    if driver_version != __version__:
        return (
            f"this node runs backbench {__version__} and the driver {driver_version}: its "
            "results would mix two versions of the measuring code"
        )
    return None


def _runner_key(settings: dict[str, Any], runtime_name: str | None) -> str:
    return json.dumps({"settings": settings, "runtime": runtime_name}, sort_keys=True, default=str)


def _runner(settings: dict[str, Any], runtime_name: str | None) -> tuple[CaseRunner, Any]:
    """The CaseRunner for these settings (made once per Ray worker process), set up for
    this case, and its worker runtime (None: this interpreter)."""
    key = _runner_key(settings, runtime_name)
    with _RUNNERS_LOCK:
        runner = _RUNNERS.get(key)
        if runner is None:
            runtime = None
            if runtime_name is not None:
                from core.measure.runtimes import user_runtime

                # The node's own configuration names the interpreter (never the driver).
                runtime = user_runtime(runtime_name)
            command = settings.get("worker_command")
            runner = CaseRunner(
                worker_command=list(command) if command else None,
                env=dict(settings["env"]) if settings.get("env") else None,
                runtime=runtime,
            )
            _RUNNERS[key] = runner
    runner.start = settings["worker_start"]
    runner.disturbed_threshold = float(settings["disturbed_threshold"])
    runner.max_mem_mb = settings.get("max_mem_mb")
    limits = settings.get("limits")
    runner.limits = PhaseLimits(**limits) if limits else PhaseLimits()
    return runner, runner.runtime


def _discard_runner(settings: dict[str, Any], runtime_name: str | None) -> None:
    """Close and forget the runner of a case cut off mid-way (a cancel raises
    KeyboardInterrupt in the task, wherever it is, even inside a talk with the fork
    server): the next case starts a fresh one rather than trust its state."""
    with _RUNNERS_LOCK:
        runner = _RUNNERS.pop(_runner_key(settings, runtime_name), None)
    if runner is not None:
        with contextlib.suppress(Exception):
            runner.close()


@atexit.register
def _close_runners() -> None:
    with _RUNNERS_LOCK:
        for runner in _RUNNERS.values():
            with contextlib.suppress(Exception):
                runner.close()
        _RUNNERS.clear()


def measure_on_node(payload: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The Ray task of one case (a generator: see the module's docstring)."""
    node = node_identity(str(payload["resource"]))
    refusal = version_refusal(str(payload["backbench"]))
    if refusal is not None:
        yield {"event": EVENT_REFUSED, "node": node, "reason": refusal, "backbench": __version__}
        return
    yield {"event": EVENT_STARTED, "node": node, "t": time.time()}
    driver_case = Case.from_dict(payload["case"])
    driver_job = WorkerJob.from_dict(payload["job"])
    started_at = time.time()
    runtime = None
    try:
        runner, runtime = _runner(payload["runner"], payload.get("runtime"))
        measurement = _measure(runner, driver_case, driver_job, payload)
    except BaseException as exc:
        if not isinstance(exc, BackbenchError):  # cancelled (KeyboardInterrupt), or a bug
            _discard_runner(payload["runner"], payload.get("runtime"))
            raise
        # A file that arrived corrupt, a runtime not configured on this node: the case's
        # result, not the task's failure.
        measurement = Measurement.failed(
            driver_case, FailureKind.ERROR, str(exc),
            started_at=started_at, duration_s=time.time() - started_at,
        )  # fmt: skip
    measurement = replace(
        measurement,
        case=driver_case,
        weights=driver_job.source.weights_label,
        conditions={**measurement.conditions, "node": node},
    )
    yield {
        "event": EVENT_RESULT,
        "measurement": measurement.to_dict(include_samples=True),
        "manifest": node_manifest(payload.get("runtime"), runtime, node),
    }


def _measure(runner: CaseRunner, driver_case: Case, driver_job: WorkerJob, payload: dict[str, Any]) -> Measurement:
    """Convert the model for the case's backend if it needs it (in a process of its own,
    before the case, into this node's cache), then measure the case in its own worker."""
    model = driver_case.model
    if payload.get("model_file"):
        model = materialize(payload["model_file"])
    weights = driver_job.source.weights_path
    if payload.get("weights_file"):
        weights = materialize(payload["weights_file"])
    case = replace(driver_case, model=model)
    job = replace(driver_job, case=case, source=ModelSource(model, weights, driver_job.source.num_classes))
    convert_s = 0.0
    if needs_conversion(case):
        converted = runner.convert(job)
        if isinstance(converted, Measurement):
            return converted
        if converted.converted:
            convert_s = converted.seconds
    measurement = runner.run(job)
    if convert_s:
        measurement = replace(
            measurement,
            phase_s={**measurement.phase_s, "convert": convert_s},
            duration_s=(measurement.duration_s or 0.0) + convert_s,
        )
    return measurement
