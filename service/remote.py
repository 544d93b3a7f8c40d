"""``backbench remote ...``: drive an agent from a terminal, locally or over SSH.

Subcommands: devices, submit (the options of ``backbench run``; local model files are
uploaded), watch (a live view of the running job: progress bar, latency, memory), jobs,
cancel, resume, results (the options of ``backbench results``). ``--ssh HOST`` forwards
the remote agent's socket with ``ssh -N -L`` (``--ssh-option`` adds ``-o`` options,
``--ssh-config`` an ssh config file) and closes the tunnel on exit.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import math
import sys
import uuid
from collections import deque
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from core.cli.console import case_progress, console, err_console, ok_case_line, print_results_table
from core.cli.run_options import remote_spec_dict, spec_from_args
from core.errors import AgentUnavailableError, UsageError
from core.protocol.address import ssh_config_problem
from core.protocol.codes import UPLOAD_CHUNK_BYTES
from core.protocol.events import GAP, JOB_ENDING_EVENTS, TELEMETRY, JobEvent
from core.results import MEASUREMENT_COLUMNS, Measurement
from core.zoo.files import is_model_file
from service.client import AgentClient, SshTunnel

RECENT_SAMPLES = 2000


@contextlib.contextmanager
def _connected(args: argparse.Namespace) -> Iterator[AgentClient]:
    if args.ssh:
        tunnel = SshTunnel(
            args.ssh,
            args.remote_socket,
            options=getattr(args, "ssh_option", None) or (),
            config=_ssh_config(getattr(args, "ssh_config", None)),
        )
        with tunnel as local:
            try:
                with AgentClient(local) as client:
                    yield client
            except AgentUnavailableError as exc:
                # Through a tunnel, "the agent closed the connection" usually means that
                # ssh could not reach the remote socket, or that ssh itself went away.
                raise tunnel.explain(exc) from None
    else:
        if getattr(args, "ssh_option", None) or getattr(args, "ssh_config", None):
            raise UsageError(
                "--ssh-option and --ssh-config apply to --ssh only.", "Add --ssh HOST."
            )
        from service.config import default_socket_path

        with AgentClient(args.socket or default_socket_path()) as client:
            yield client


def _ssh_config(path: str | None) -> str | None:
    """``--ssh-config FILE`` as an absolute path; a missing file is a usage error here
    rather than ssh's less direct message, and so is one that another user could have
    written (``ssh -F`` does not check it, and it can run programs: ``ssh_config_problem``)."""
    if path is None:
        return None
    config = Path(path).expanduser()
    if not config.is_file():
        raise UsageError(
            f"No ssh config file at {config}.", "Give an existing file to --ssh-config."
        )
    resolved = str(config.resolve())
    problem = ssh_config_problem(resolved)
    if problem is not None:
        raise UsageError(f"Will not use {config}: {problem}.")
    return resolved


def main(args: argparse.Namespace) -> int:
    command = getattr(args, "remote_command", None)
    if command is None:
        raise UsageError(
            "No remote command given.",
            "Use one of: devices, submit, watch, jobs, cancel, resume, results.",
        )
    with _connected(args) as client:
        return int(COMMANDS[command](client, args) or 0)


# -- devices and jobs -----------------------------------------------------------------------


def cmd_devices(client: AgentClient, args: argparse.Namespace) -> int:
    backends = client.call("list_devices")["backends"]
    if args.format == "json":
        sys.stdout.write(json.dumps(backends, indent=2) + "\n")
        return 0
    host = client.hello.get("host", {}).get("host", "?")
    console.print(f"Agent on [bold]{host}[/] ({client.path})")
    if not backends:
        console.print("No inference framework is installed on the agent host.")
    for backend, devices in backends.items():
        console.print(
            f"[bold]{backend}[/]: {', '.join(devices) if devices else '(no usable device)'}"
        )
    return 0


def _when(stamp: float | None) -> str:
    return datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M:%S") if stamp else "-"


def cmd_jobs(client: AgentClient, args: argparse.Namespace) -> int:
    status = client.call("status")
    if args.format == "json":
        sys.stdout.write(json.dumps(status["jobs"], indent=2) + "\n")
        return 0
    from rich.table import Table

    table = Table(title=f"Jobs on {client.path}")
    for column in (
        "job",
        "state",
        "run",
        "cases",
        "backend/device",
        "models",
        "submitted",
        "reason",
    ):
        table.add_column(column)
    for job in status["jobs"]:
        spec = job["spec"]
        models = ", ".join(Path(m).name for m in spec["models"])
        table.add_row(
            str(job["job_id"]),
            job["state"],
            str(job["run_id"] or "-"),
            str(job["cases_total"]),
            f"{spec['backend']}/{spec['device']}",
            models[:60],
            _when(job["submitted_at"]),
            job["reason"] or "",
        )
    console.print(table)
    running = status.get("running")
    if running:
        console.print(
            f"Running: job {running['job_id']}, case {running['case_index']} of "
            f"{running['cases_total']} ({running['phase']})"
        )
    return 0


def cmd_cancel(client: AgentClient, args: argparse.Namespace) -> int:
    result = client.call("cancel", job_id=args.job)
    note = " (stopping its running case)" if result["cancelling"] else ""
    console.print(f"Job {args.job}: {result['state']}{note}")
    return 0


def cmd_resume(client: AgentClient, args: argparse.Namespace) -> int:
    job = client.call("resume", job_id=args.job)["job"]
    console.print(
        f"Job {job['job_id']} queued again; it resumes run {job['run_id']} at its first unfinished case."
    )
    return _watch(client, job["job_id"]) if args.watch else 0


# -- submit ---------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def upload_file(client: AgentClient, path: Path) -> dict[str, Any]:
    """Send one file in chunks; returns upload_end's answer (upload_id, path, ...)."""
    size = path.stat().st_size
    begun = client.call("upload_begin", name=path.name, size=size, sha256=_sha256(path))
    if begun.get("complete"):
        return dict(begun)
    offset = 0
    with open(path, "rb") as fh:
        while True:
            data = fh.read(UPLOAD_CHUNK_BYTES)
            if not data:
                break
            client.call(
                "upload_chunk",
                upload_id=begun["upload_id"],
                offset=offset,
                data=base64.b64encode(data).decode("ascii"),
            )
            offset += len(data)
    return dict(client.call("upload_end", upload_id=begun["upload_id"]))


def _upload_local_files(client: AgentClient, spec_dict: dict[str, Any]) -> dict[str, str]:
    """Upload model and weights files that exist here; returns model -> upload id and
    rewrites weights paths to where the agent keeps them."""
    upload_ids: dict[str, str] = {}
    for model in spec_dict["models"]:
        path = Path(model).expanduser()
        if not (is_model_file(model) and path.is_file()):
            continue  # a zoo name, or a file that lives on the agent host
        if path.suffix.lower() == ".xml" and path.with_suffix(".bin").is_file():
            upload_file(client, path.with_suffix(".bin"))
        err_console.print(f"Uploading {path} ...")
        upload_ids[model] = upload_file(client, path)["upload_id"]
    for model, weights in list(spec_dict["weights"].items()):
        path = Path(weights).expanduser()
        if path.is_file():
            err_console.print(f"Uploading {path} ...")
            spec_dict["weights"][model] = upload_file(client, path)["path"]
    return upload_ids


def cmd_submit(client: AgentClient, args: argparse.Namespace) -> int:
    spec_dict = remote_spec_dict(spec_from_args(args))
    upload_ids = _upload_local_files(client, spec_dict)
    params: dict[str, Any] = {
        "spec": spec_dict,
        "client_request_id": args.request_id or uuid.uuid4().hex,
    }
    if upload_ids:
        params["model_upload_ids"] = upload_ids
    answer = client.call("submit", **params)
    job = answer["job"]
    again = " (already submitted with this request id)" if answer.get("duplicate") else ""
    place = f", position {answer['position']} in the queue" if answer.get("position") else ""
    console.print(f"Job {job['job_id']}: {job['cases_total']} cases, {job['state']}{place}{again}")
    return _watch(client, job["job_id"]) if args.watch else 0


# -- watch ----------------------------------------------------------------------------------


class _LiveView:
    def __init__(self, progress: Any, task: Any) -> None:
        self.progress = progress
        self.task = task
        self.recent: deque[int] = deque(maxlen=RECENT_SAMPLES)
        self.count = 0
        self.label = "waiting"
        self.rss_mb: float | None = None
        self.device_mb: float | None = None
        self.dropped = 0
        self.images = ""  # an accuracy case's progress

    def telemetry(self, params: dict[str, Any]) -> None:
        samples = params.get("samples") or []
        self.recent.extend(int(s[1]) for s in samples)
        self.count += len(samples)
        for reading in params.get("memory") or []:
            self.rss_mb = reading.get("rss_mb")
            device = reading.get("device_memory") or {}
            self.device_mb = max(device.values()) if device else None
        self.refresh()

    def refresh(self) -> None:
        text = self.label + self.images
        if self.recent:
            ordered = sorted(self.recent)
            median = ordered[len(ordered) // 2] / 1e6
            p99 = ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)] / 1e6
            text += f"  latency median {median:.3f} ms, p99 {p99:.3f} ms, {self.count} iters"
        if self.rss_mb:
            text += f"  RSS {self.rss_mb:.0f} MB"
        if self.device_mb:
            text += f"  device {self.device_mb:.0f} MB"
        if self.dropped:
            text += f"  ({self.dropped} samples not shown: slow link)"
        self.progress.update(self.task, live=text)


def _case_line(event: str, params: dict[str, Any]) -> str:
    m = Measurement.from_dict(params["measurement"]) if params.get("measurement") else None
    if event == JobEvent.CASE_FINISHED and m is not None:
        return ok_case_line(m)
    label = m.case.label() if m is not None else f"case {params.get('case_index')}"
    return f"[red]{params.get('status', 'failed')}[/] {label}: {params.get('reason')}"


def _pick_job(client: AgentClient) -> int | None:
    status = client.call("status")
    if status.get("running"):
        return int(status["running"]["job_id"])
    queued = [j for j in status["jobs"] if j["state"] == "queued"]
    return min(j["job_id"] for j in queued) if queued else None


def _watch(client: AgentClient, job_id: int | None) -> int:
    client.call("subscribe", topics=["jobs", "telemetry"], **({"job_id": job_id} if job_id else {}))
    if job_id is None:
        job_id = _pick_job(client)
        if job_id is None:
            console.print("No job is running or queued on the agent.")
            return 0
        client.call("subscribe", topics=["jobs", "telemetry"], job_id=job_id)
    job = client.call("status", job_id=job_id)["job"]
    if job["state"] not in ("queued", "running"):
        console.print(
            f"Job {job_id} is {job['state']}{': ' + job['reason'] if job['reason'] else ''}."
        )
        return 0
    progress = case_progress(f"[bold]job {job_id}", eta=False, refresh_per_second=4)
    with progress:
        task = progress.add_task(
            "cases", total=job["cases_total"], completed=job["cases_ok"], live=""
        )
        view = _LiveView(progress, task)
        while True:
            note = client.notification(timeout_s=None)
            if note is None:
                continue
            method, params = note["method"], note["params"]
            if method == TELEMETRY:
                view.telemetry(params)
            elif method == GAP:
                view.dropped += int(params.get("dropped", 0))
            elif params.get("job_id") != job_id:
                continue
            elif method == JobEvent.STARTED:
                progress.update(task, total=params["cases_total"])
                view.label = f"run {params['run_id']} started"
                view.refresh()
            elif method == JobEvent.CASE_STARTED:
                view.recent.clear()
                view.count = 0
                view.images = ""
                view.label = params.get("label", "")
                view.refresh()
            elif method == JobEvent.CASE_PROGRESS:
                view.images = f"  {params.get('images_done')}/{params.get('images_total')} images"
                view.refresh()
            elif method in (JobEvent.CASE_FINISHED, JobEvent.CASE_FAILED):
                progress.console.print(_case_line(method, params))
                progress.advance(task)
            elif method in JOB_ENDING_EVENTS:
                reason = params.get("reason")
                progress.console.print(
                    f"Job {job_id} {params.get('state')}{': ' + reason if reason else ''}"
                )
                return 0 if params.get("state") == "finished" else 1


def cmd_watch(client: AgentClient, args: argparse.Namespace) -> int:
    try:
        return _watch(client, args.job)
    except KeyboardInterrupt:
        err_console.print("Stopped watching; the job goes on.")
        return 0


# -- results --------------------------------------------------------------------------------


def _fetch_measurements(
    client: AgentClient, run: int | str
) -> tuple[dict[str, Any], list[Measurement]]:
    out: list[Measurement] = []
    offset = 0
    while True:
        page = client.call("get_results", run=run, offset=offset, limit=200)
        out.extend(Measurement.from_dict(m) for m in page["measurements"])
        offset += len(page["measurements"])
        if offset >= page["total"] or not page["measurements"]:
            return page["run"], out


def cmd_results(client: AgentClient, args: argparse.Namespace) -> int:
    run_ref: int | str | None = args.run
    if args.job is not None:
        run_ref = client.call("status", job_id=args.job)["job"]["run_id"]
        if run_ref is None:
            raise UsageError(f"Job {args.job} has not started yet; it has no results.")
    if run_ref is None:
        runs = client.call("list_runs", limit=1)["runs"]
        if not runs:
            err_console.print("The agent holds no results yet.")
            return 0
        run_ref = runs[0]["run_id"]
    if isinstance(run_ref, str) and run_ref.isdigit():
        run_ref = int(run_ref)
    run, measurements = _fetch_measurements(client, run_ref)
    if args.format == "table":
        print_results_table(
            measurements, title=f"Run {run['run_id']} {run['name']!r} on {client.path}"
        )
        return 0
    _export(measurements, args.format, args.output)
    return 0


def _export(measurements: list[Measurement], fmt: str, output: str | None) -> None:
    import pandas as pd

    rows = [m.to_row() for m in measurements]
    if fmt == "json":
        clean = [
            {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in r.items()}
            for r in rows
        ]
        payload: str | bytes = json.dumps(clean, indent=1)
    else:
        frame = pd.DataFrame.from_records(rows, columns=list(MEASUREMENT_COLUMNS))
        if fmt == "csv":
            payload = frame.to_csv(index=False)
        else:
            if not output:
                raise UsageError(
                    "Parquet is binary.", "Give a file with -o, e.g. -o results.parquet."
                )
            frame.to_parquet(output, index=False)
            err_console.print(f"Wrote {output}")
            return
    if output:
        Path(output).write_text(
            payload if isinstance(payload, str) else payload.decode(), encoding="utf-8"
        )
        err_console.print(f"Wrote {output}")
    else:
        sys.stdout.write(payload if isinstance(payload, str) else payload.decode())
        sys.stdout.write("" if str(payload).endswith("\n") else "\n")


COMMANDS = {
    "devices": cmd_devices,
    "submit": cmd_submit,
    "watch": cmd_watch,
    "jobs": cmd_jobs,
    "cancel": cmd_cancel,
    "resume": cmd_resume,
    "results": cmd_results,
}
