"""The agent's protocol methods. Params arrive validated by ``core.protocol.validate_params``;
submit's run spec is then checked against the run options (``submitted_spec``).

Blocking work (the store, framework probes) runs in worker threads through
``asyncio.to_thread``, so the loop keeps serving telemetry meanwhile. Expected problems
raise BackbenchError subclasses, which the server turns into error replies.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from core import __version__, zoo
from core.cli.run_options import spec_from_remote
from core.errors import ProtocolError, UsageError
from core.measure.accuracy_plan import validate_accuracy
from core.protocol.codes import INVALID_PARAMS, NOT_FOUND
from core.protocol.events import TOPIC_TELEMETRY, TOPICS, JobEvent
from core.protocol.messages import make_job_event
from core.protocol.methods import make_hello_result
from core.results import EXECUTOR_RAY, Run, RunSpec
from core.store import Store
from core.zoo.files import MODEL_FILE_SOURCES
from service.config import AgentConfig
from service.dispatcher import TEST_FAULTS, JobDispatcher
from service.jobs import RUNNING, JobQueue
from service.probe import Prober
from service.uploads import ModelAccess, UploadManager

if TYPE_CHECKING:
    from service.connections import Client

log = logging.getLogger(__name__)

MAX_LISTED_FILES = 500
Handler = Callable[["Client", dict[str, Any]], Awaitable[Any]]
# Hands a job event to the clients subscribed to its job (Connections.publish_event).
Publish = Callable[[dict[str, Any], int], None]


def submitted_spec(value: dict[str, Any]) -> RunSpec:
    """A client's run spec, checked against the run options (``core.cli.run_options``):
    unknown fields and local-only ones (isolate) refused, types and bounds checked."""
    try:
        return spec_from_remote(value)
    except UsageError as exc:
        # Its messages quote at most a short value: keep an error reply small anyway.
        raise ProtocolError(
            INVALID_PARAMS, f"Parameter 'spec': {exc.message[:300]}", exc.hint
        ) from None


def run_dict(run: Run, with_manifest: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "run_id": run.id,
        "name": run.name,
        "status": run.status,
        "created_at": run.created_at,
        "finished_at": run.finished_at,
        "spec": run.spec.to_dict(),
    }
    if with_manifest:
        data["manifest"] = run.manifest
    return data


@dataclass
class Api:
    config: AgentConfig
    store: Store
    queue: JobQueue
    uploads: UploadManager
    access: ModelAccess
    prober: Prober
    manifest: dict[str, Any]
    boot_id: str
    # What the handlers need of the connected clients, passed in so that they never hold
    # the server (which holds them): publishing a job event, and describing the clients.
    publish: Publish
    describe_clients: Callable[[], list[dict[str, Any]]]
    started_at: float = field(default_factory=time.time)
    dispatcher: JobDispatcher | None = None
    # A prober per worker runtime, made as jobs first name it (its interpreter answers).
    runtime_probers: dict[str, Prober] = field(default_factory=dict)

    # -- plumbing ------------------------------------------------------------------------------

    async def call(self, client: Client, method: str, params: dict[str, Any]) -> Any:
        handler: Handler = getattr(self, f"do_{method}")
        return await handler(client, params)

    def take_test_params(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """The test-only ``test_faults`` submit parameter, honoured only when the agent
        runs with BACKBENCH_ALLOW_FAULTS=1; otherwise it stays and is refused as unknown."""
        if method != "submit" or not self.config.allow_faults or "test_faults" not in params:
            return {}
        faults = params.pop("test_faults")
        if not isinstance(faults, dict) or not all(
            isinstance(k, str) and k.isdigit() and v in TEST_FAULTS for k, v in faults.items()
        ):
            raise ProtocolError(
                INVALID_PARAMS, f"test_faults maps case indexes to one of {', '.join(TEST_FAULTS)}."
            )
        return {"test_faults": faults}

    def on_disconnect(self, client: Client) -> None:
        self.uploads.drop_owner(client.id)

    # -- handshake and host ----------------------------------------------------------------------

    async def do_hello(self, client: Client, p: dict[str, Any]) -> Any:
        from core.protocol.methods import check_version

        check_version(p["protocol_version"], peer_role="client")
        client.greeted = True
        client.name = str(p.get("client") or "")
        log.info("Client %d is %r (protocol %s)", client.id, client.name, p["protocol_version"])
        result = make_hello_result(
            agent_version=__version__, boot_id=self.boot_id, host=self.manifest
        )
        result["agent_pid"] = os.getpid()
        result["store"] = self._store_info()
        result["max_upload_bytes"] = self.config.max_upload_bytes
        return result

    def _store_info(self) -> dict[str, Any]:
        quarantined = self.store.quarantined
        return {
            "path": str(self.store.path),
            "quarantined": str(quarantined) if quarantined else None,
        }

    async def do_list_devices(self, client: Client, p: dict[str, Any]) -> Any:
        return {"backends": await asyncio.to_thread(self.prober.devices)}

    async def do_list_models(self, client: Client, p: dict[str, Any]) -> Any:
        def collect() -> dict[str, Any]:
            cards = zoo.list_models(p.get("filter"), suite=p.get("suite"))
            models = []
            for card in cards:
                entry = card.to_dict()
                complexity = zoo.model_complexity(card.name)
                if complexity is not None:
                    entry.update(params=complexity.params, flops=complexity.flops)
                models.append(entry)
            return {"models": models, "files": self._model_files()}

        return await asyncio.to_thread(collect)

    def _model_files(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for root in self.access.roots:
            try:
                entries = sorted(root.iterdir())
            except OSError:
                continue
            for path in entries:
                if (
                    path.suffix.lower() in MODEL_FILE_SOURCES
                    and path.is_file()
                    and len(found) < MAX_LISTED_FILES
                ):
                    found.append(
                        {"name": path.name, "path": str(path), "size": path.stat().st_size}
                    )
        return found

    # -- jobs ----------------------------------------------------------------------------------

    def _resolve_spec(self, spec: RunSpec, upload_ids: dict[str, str]) -> RunSpec:
        """Model and weights paths confined to the allowed folders, then checked like
        the CLI checks them (zoo names with suggestions, backend, device, precision)."""
        renamed: dict[str, str] = {}
        for name in spec.models:
            if name in upload_ids:
                renamed[name] = str(self.uploads.path_of(upload_ids[name]))
            else:
                renamed[name] = self.access.resolve_model(name)
        unknown = sorted(set(upload_ids) - set(spec.models))
        if unknown:
            raise UsageError(
                f"model_upload_ids names {unknown[0]!r}, which is not among the spec's models."
            )
        canonical = {}
        for given, name in renamed.items():
            card = zoo.get_card(name)
            canonical[given] = card.path or card.name
        weights: dict[str, str] = {}
        for model, path in spec.weights.items():
            if model not in canonical:
                raise UsageError(f"Weights were given for {model!r}, which is not in this run.")
            weights[canonical[model]] = str(self.access.resolve_file(path, "weights file"))
        models = tuple(canonical[m] for m in spec.models)
        resolved = replace(spec, models=models, weights=weights)
        if resolved.accuracy is not None:
            dataset = str(self.access.resolve_dataset(resolved.accuracy.dataset, self.config.data_dirs))
            resolved = validate_accuracy(replace(resolved, accuracy=replace(resolved.accuracy, dataset=dataset)))
        if self.config.executor_of(resolved) == EXECUTOR_RAY:
            # Its cases run on the nodes of a cluster, which check their own devices.
            from core.measure.executors.ray_executor import check_spec

            check_spec(resolved)
        else:
            self._prober_for(resolved).check_case(resolved.cases()[0])
        return resolved

    def _prober_for(self, spec: RunSpec) -> Prober:
        """The prober of the interpreter the spec's cases run on: the agent's workers',
        or the named runtime's of the agent's own configuration (an unknown name is
        refused, listing the configured ones; a client never names an interpreter)."""
        if spec.runtime is None:
            return self.prober
        runtime = self.config.runtime(spec.runtime)
        prober = self.runtime_probers.get(runtime.name)
        if prober is None:
            prober = Prober(runtime.worker_command(), env=runtime.env(), runtime=runtime.name)
            self.runtime_probers[runtime.name] = prober
        return prober

    async def do_submit(self, client: Client, p: dict[str, Any]) -> Any:
        request_id: str = p["client_request_id"]
        # Checked before the duplicate lookup: a bad spec is refused whatever its id.
        checked = submitted_spec(p["spec"])
        existing = await asyncio.to_thread(self._job_by_request, request_id)
        if existing is not None:
            return {"job": existing, "duplicate": True}
        spec = await asyncio.to_thread(
            self._resolve_spec, checked, p.get("model_upload_ids") or {}
        )
        faults = p.get("test_faults") or {}
        total = len(spec.cases())
        if any(int(k) >= total for k in faults):
            raise ProtocolError(
                INVALID_PARAMS, f"test_faults names a case beyond the job's {total} cases."
            )
        options = {"test_faults": faults} if faults else {}
        job, created = await asyncio.to_thread(
            self.queue.submit, spec, request_id, options, client.uid
        )
        if created:
            self.publish(make_job_event(JobEvent.QUEUED, job.id, job=job.to_dict()), job.id)
            if self.dispatcher is not None:
                self.dispatcher.wake()
        position = await asyncio.to_thread(self.queue.position, job.id)
        return {"job": job.to_dict(), "duplicate": not created, "position": position}

    def _job_by_request(self, request_id: str) -> dict[str, Any] | None:
        job = self.queue._one("client_request_id = ?", (request_id,))
        return None if job is None else job.to_dict()

    async def do_cancel(self, client: Client, p: dict[str, Any]) -> Any:
        job_id: int = p["job_id"]
        job = await asyncio.to_thread(self.queue.get, job_id)
        if self.dispatcher is not None and self.dispatcher.cancel(job_id):
            return {"job_id": job_id, "state": RUNNING, "cancelling": True}
        if await asyncio.to_thread(self.queue.cancel_queued, job_id):
            self.publish(
                make_job_event(
                    JobEvent.CANCELLED, job_id, state="cancelled", reason="cancelled by a client"
                ),
                job_id,
            )
            return {"job_id": job_id, "state": "cancelled", "cancelling": False}
        return {"job_id": job_id, "state": job.state, "cancelling": False}

    async def do_resume(self, client: Client, p: dict[str, Any]) -> Any:
        job = await asyncio.to_thread(self.queue.requeue, p["job_id"])
        self.publish(
            make_job_event(JobEvent.QUEUED, job.id, job=job.to_dict(), resumed=True), job.id
        )
        if self.dispatcher is not None:
            self.dispatcher.wake()
        return {"job": job.to_dict()}

    async def do_status(self, client: Client, p: dict[str, Any]) -> Any:
        progress = self.dispatcher.progress if self.dispatcher is not None else None
        if "job_id" in p:
            job_id = p["job_id"]

            def one() -> dict[str, Any]:
                job = self.queue.get(job_id)
                data = job.to_dict()
                done = len(self.store.completed_cases(job.run_id)) if job.run_id is not None else 0
                data["cases_ok"] = done
                data["position"] = self.queue.position(job_id)
                return data

            data = await asyncio.to_thread(one)
            data["progress"] = progress if progress and progress.get("job_id") == job_id else None
            return {"job": data}
        jobs = await asyncio.to_thread(lambda: [j.to_dict() for j in self.queue.list(50)])
        counts = await asyncio.to_thread(self.queue.counts)
        clients = self.describe_clients()
        return {
            "agent_version": __version__,
            "agent_pid": os.getpid(),
            "boot_id": self.boot_id,
            "uptime_s": time.time() - self.started_at,
            "store": self._store_info(),
            "running": progress,
            "counts": counts,
            "jobs": jobs,
            "clients": clients,
            "socket": str(self.config.socket_path),
        }

    # -- results -------------------------------------------------------------------------------

    async def do_list_runs(self, client: Client, p: dict[str, Any]) -> Any:
        def page() -> dict[str, Any]:
            runs = self.store.list_runs()
            chosen = runs[p["offset"] : p["offset"] + p["limit"]]
            return {
                "runs": [run_dict(r) for r in chosen],
                "total": len(runs),
                "offset": p["offset"],
                "limit": p["limit"],
            }

        return await asyncio.to_thread(page)

    async def do_get_results(self, client: Client, p: dict[str, Any]) -> Any:
        def page() -> dict[str, Any]:
            run = self.store.get_run(p["run"])
            measurements = self.store.measurements(run.id, include_samples=p["include_samples"])
            chosen = measurements[p["offset"] : p["offset"] + p["limit"]]
            return {
                "run": run_dict(run, with_manifest=True),
                "total": len(measurements),
                "offset": p["offset"],
                "limit": p["limit"],
                "measurements": [m.to_dict(include_samples=p["include_samples"]) for m in chosen],
            }

        return await asyncio.to_thread(page)

    async def do_get_samples(self, client: Client, p: dict[str, Any]) -> Any:
        measurement_id: int = p["measurement_id"]

        def page() -> dict[str, Any]:
            if not self.store.query("SELECT 1 FROM measurements WHERE id = ?", (measurement_id,)):
                raise ProtocolError(
                    NOT_FOUND,
                    f"No measurement {measurement_id} on this agent.",
                    "get_results lists a run's measurement ids.",
                )
            samples = self.store.samples(measurement_id)
            chosen = samples[p["offset"] : p["offset"] + p["limit"]]
            return {
                "measurement_id": measurement_id,
                "offset": p["offset"],
                "total": int(samples.size),
                "samples_ns": chosen.tolist(),
            }

        return await asyncio.to_thread(page)

    # -- subscriptions -------------------------------------------------------------------------

    async def do_subscribe(self, client: Client, p: dict[str, Any]) -> Any:
        client.topics.update(p["topics"])
        client.job_filter = p.get("job_id")
        progress = self.dispatcher.progress if self.dispatcher is not None else None
        return {
            "topics": sorted(client.topics, key=TOPICS.index),
            "job_id": client.job_filter,
            "running": progress,
        }

    async def do_unsubscribe(self, client: Client, p: dict[str, Any]) -> Any:
        topics = set(p.get("topics") or TOPICS)
        if TOPIC_TELEMETRY in topics and TOPIC_TELEMETRY in client.topics:
            client.queue.discard_telemetry()
        client.topics -= topics
        if not client.topics:
            client.job_filter = None
        return {"topics": sorted(client.topics, key=TOPICS.index)}

    # -- uploads -------------------------------------------------------------------------------

    async def do_upload_begin(self, client: Client, p: dict[str, Any]) -> Any:
        return await asyncio.to_thread(
            self.uploads.begin, p["name"], p["size"], p["sha256"], client.id
        )

    async def do_upload_chunk(self, client: Client, p: dict[str, Any]) -> Any:
        return await asyncio.to_thread(
            self.uploads.chunk, p["upload_id"], p["offset"], p["data"], client.id
        )

    async def do_upload_end(self, client: Client, p: dict[str, Any]) -> Any:
        return await asyncio.to_thread(self.uploads.end, p["upload_id"], client.id)
