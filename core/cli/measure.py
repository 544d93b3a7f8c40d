"""Core's own commands: ``models``, ``run``, ``results``, ``runs``, ``devices`` and the
internal ``worker``. Registered through the ``backbench.commands`` entry points."""

from __future__ import annotations

import argparse
import json
import sys
from collections import deque
from collections.abc import Sequence
from typing import Any, NoReturn

from core.cli.console import (
    EXIT_INTERRUPTED,
    add_results_table_options,
    case_progress,
    console,
    err_console,
    ok_case_line,
    print_results_table,
    write_or_print,
)
from core.cli.run_options import add_run_options, spec_from_args
from core.text import fixed

# -- models --------------------------------------------------------------------------


def _model_rows(cards: Sequence[Any]) -> list[dict[str, Any]]:
    from core.zoo import model_complexity

    rows = []
    for card in cards:
        complexity = model_complexity(card.name) if card.source == "torchvision" else None
        rows.append(
            {
                "name": card.name,
                "family": card.family,
                "input_size": "x".join(str(d) for d in card.input_size),
                "params": complexity.params if complexity else card.params,
                "params_published": card.params,
                "macs": complexity.macs if complexity else None,
                "flops": complexity.flops if complexity else card.flops_published,
                "gmacs_published": card.gmacs,
                "acc1": card.acc1,
                "acc5": card.acc5,
                "file_size_mb": card.file_size_mb,
                "source": card.source,
                "notes": card.notes,
            }
        )
    return rows


def cmd_models(args: argparse.Namespace) -> int:
    import pandas as pd

    from core.zoo import list_models

    cards = list_models(args.filter, suite=args.suite)
    rows = _model_rows(cards)
    if args.format == "json":
        write_or_print(json.dumps(rows, indent=2), None)
        return 0
    if args.format == "csv":
        write_or_print(pd.DataFrame(rows).to_csv(index=False), None)
        return 0
    from rich.table import Table

    title = f"{len(rows)} models" + (f" in suite {args.suite!r}" if args.suite else "")
    table = Table(title=title, caption="FLOPs per image = 2 × MACs (counted at batch 1, inference model)")
    for col, justify in [
        ("model", "left"), ("family", "left"), ("input", "left"), ("params (M)", "right"),
        ("GMACs", "right"), ("GFLOPs", "right"), ("acc@1 %", "right"), ("acc@5 %", "right"),
        ("file (MB)", "right"), ("notes", "left"),
    ]:
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        table.add_row(
            r["name"], r["family"], r["input_size"],
            fixed(r["params"] / 1e6 if r["params"] else None),
            fixed(r["macs"] / 1e9 if r["macs"] else r["gmacs_published"], 3),
            fixed(r["flops"] / 1e9 if r["flops"] else None, 3),
            fixed(r["acc1"], 2), fixed(r["acc5"], 2), fixed(r["file_size_mb"], 1),
            r["notes"],
        )
    console.print(table)
    return 0


# -- run -------------------------------------------------------------------------------


class _ProgressObserver:
    """Drives the rich progress bar and the live line from the runner's events."""

    def __init__(self, progress: Any, task: Any) -> None:
        self.progress = progress
        self.task = task
        self.recent: deque[int] = deque(maxlen=2000)
        self.count = 0
        self.case_label = ""
        self.phase = ""
        self.rss_mb: float | None = None

    # SweepObserver
    def on_case_start(self, index: int, total: int, case: Any) -> None:
        self.recent.clear()
        self.count = 0
        self.phase = "starting"
        self.case_label = case.label()
        self._refresh()

    def on_case_placed(self, index: int, total: int, case: Any, node: dict[str, Any]) -> None:
        self.case_label = f"{case.label()} on {_node_name(node)}"
        self.phase = "measuring"
        self._refresh()

    def on_case_retry(self, index: int, total: int, m: Any) -> None:
        if m.status.value != "ok" or m.interference is None:  # its node was lost: re-queued
            self.progress.console.print(
                f"[yellow]{m.status.value}[/] {m.case.label()} (attempt {m.attempt}): {m.error}"
            )
            return
        self.progress.console.print(
            f"[yellow]disturbed[/] {m.case.label()} (attempt {m.attempt}): "
            f"{m.interference:.2f} cores of other work; measuring again"
        )

    def on_convert(self, done: int, total: int, model: str) -> None:
        self.case_label = f"converting models for the backend: {done}/{total}"
        self.phase = "convert"
        self._refresh()

    def on_case_end(self, index: int, total: int, m: Any) -> None:
        if m.status.value == "ok":
            line = ok_case_line(m) + ("" if m.target_met or m.stats is None else " (CI target not met in time)")
            if m.model_rss_mb is not None:
                line += f", model {m.model_rss_mb:.0f} MB"
            if m.disturbed:
                line += (
                    f" [yellow]disturbed: {m.interference:.2f} cores of other work[/]"
                    + (f" (attempt {m.attempt})" if m.attempt > 1 else "")
                )
        else:
            line = f"[red]{m.status.value}[/] {m.case.label()}: {m.failure.value if m.failure else ''}: {m.error}"
        node = m.conditions.get("node")
        if isinstance(node, dict) and m.status.value == "ok":
            line += f" [dim]on {_node_name(node)}[/]"
        self.progress.console.print(line)
        self.progress.advance(self.task)

    # CaseObserver
    def on_phase(self, phase: str) -> None:
        self.phase = phase
        self._refresh()

    def on_samples(self, samples: Any) -> None:
        self.recent.extend(samples[-self.recent.maxlen :, 1].tolist())  # type: ignore[misc]
        self.count += len(samples)

    def on_memory(self, rss_mb: float | None, device_memory: dict[str, float]) -> None:
        self.rss_mb = rss_mb
        self._refresh()

    def _refresh(self) -> None:
        live = f"{self.case_label} [{self.phase}]"
        if self.count:
            ordered = sorted(self.recent)
            median_ms = ordered[len(ordered) // 2] / 1e6
            live += f" median {median_ms:.3f} ms, {self.count} iters"
        if self.rss_mb:
            live += f", RSS {self.rss_mb:.0f} MB"
        self.progress.update(self.task, live=live)


def _node_name(node: dict[str, Any]) -> str:
    """A cluster node as a line names it: its address and the start of its Ray id."""
    where = str(node.get("ip") or node.get("host") or "?")
    ident = str(node.get("id") or "")[:8]
    return f"{where} ({ident})" if ident else where


def _cluster_for(args: argparse.Namespace, spec: Any) -> Any:
    """The Ray executor of ``run --executor ray`` (or of a resumed Ray run), not yet
    connected; None for the local executor."""
    from core.measure.executors import make_executor
    from core.results import EXECUTOR_LOCAL

    name = getattr(args, "executor", None) or spec.executor or EXECUTOR_LOCAL
    executor = make_executor(name, ray_address=getattr(args, "ray_address", None))
    return None if executor.name == EXECUTOR_LOCAL else executor


def _connect(cluster: Any, spec: Any) -> None:
    """Connect and check the cluster here, before the progress bar, so an unreachable
    cluster, a missing resource or a node of another version is one line."""
    try:
        cluster.configure(spec)
    except BaseException:
        cluster.close()
        raise


def _node_lines(measurements: list[Any], nodes: list[dict[str, Any]], backend: str) -> list[str]:
    """Where a Ray sweep's cases ran and, when its nodes run different versions of the
    backend's framework, which (each row points at its own node's manifest)."""
    counts: dict[str, int] = {}
    for m in measurements:
        node = m.conditions.get("node")
        if isinstance(node, dict):
            name = _node_name(node)
            counts[name] = counts.get(name, 0) + 1
    lines = []
    if counts:
        lines.append("Cases by node: " + ", ".join(f"{name} {n}" for name, n in sorted(counts.items())))
    package = backend  # the framework's distribution name (onnxruntime-gpu counts as it)
    versions: dict[str, list[str]] = {}
    for node in nodes:
        packages = node.get("packages") or {}
        found = packages.get(package) or packages.get(f"{package}-gpu")
        versions.setdefault(str(found), []).append(str(node.get("ip")))
    if len(versions) > 1:
        spread = "; ".join(f"{v} on {', '.join(ips)}" for v, ips in sorted(versions.items()))
        lines.append(
            f"[yellow]The nodes run different {package} versions ({spread}): each row is "
            "labelled with its node's manifest; compare like with like.[/]"
        )
    return lines


def cmd_run(args: argparse.Namespace) -> int:
    import time

    from rich.markup import escape

    from core.measure.runner import run_sweep, time_summary, validate_spec
    from core.measure.runtimes import check_resume_runtime, user_runtime
    from core.measure.supervisor import CaseRunner
    from core.store import open_store

    resume = None
    lease = None
    runner = CaseRunner()
    cluster = None  # the Ray executor of --executor ray; None: this host's CaseRunner
    try:
        if args.resume:
            store = open_store(args.db)
            resume = store.get_run(args.resume)
            spec = resume.spec
            if resume.status == "finished" and not _unmeasured(store, resume):
                console.print(
                    _nothing_to_resume(store, resume), markup=False, highlight=False, soft_wrap=True
                )
                runner.close()
                return 0
            cluster = _cluster_for(args, spec)
            if cluster is not None:
                _connect(cluster, spec)
            elif spec.runtime:
                runtime = user_runtime(spec.runtime)
                runner.use_runtime(runtime)
                # Its cases must not mix two interpreters: the runtime must be the one the
                # run recorded (its python, Python, backbench and package versions).
                check_resume_runtime(resume.manifest, runtime, str(resume.id))
            # Claimed before the progress bar: a run another process measures is refused
            # in one line (RunBusyError), and this one is not measured twice.
            lease = store.acquire_run_lease(resume.id)
            took_over = lease.takeover_line(resume.name)
            if took_over:
                err_console.print(f"[yellow]{escape(took_over)}[/]", highlight=False)
        else:
            spec = spec_from_args(args)
            cluster = _cluster_for(args, spec)
            if cluster is not None:
                # The nodes check the backend and device, each its own.
                spec = validate_spec(spec, None, check_device=False)
                _connect(cluster, spec)
            else:
                if spec.runtime:
                    # Workers (and their fork server) on the runtime's interpreter.
                    runner.use_runtime(user_runtime(spec.runtime))
                if spec.isolate:
                    # The fork server imports the framework while this process validates.
                    runner.start = spec.worker_start
                    runner.prestart(spec.backend)
                spec = validate_spec(spec, runner.runtime)
            store = open_store(args.db)
        total = len(_unmeasured(store, resume)) if resume else len(spec.cases())
    except BaseException:
        runner.close()
        if cluster is not None:
            cluster.close()
        if lease is not None:
            store.release_run_lease(lease)
        raise
    # The parent shares the CPU with the worker: a slow refresh keeps it quiet.
    progress = case_progress("[bold]{task.description}", eta=True, refresh_per_second=2)
    run_ref = None
    t0 = time.monotonic()
    try:
        with progress:
            task = progress.add_task("cases", total=total, live="")
            observer = _ProgressObserver(progress, task)
            run = run_sweep(
                spec, store, observer=observer, resume=resume, validate=False,  # type: ignore[arg-type]
                case_runner=runner if cluster is None else None, executor=cluster, lease=lease,
            )  # fmt: skip
            run_ref = run.id
    except KeyboardInterrupt:
        latest = resume or store.latest_run()
        if latest is not None:
            err_console.print(
                f"Interrupted. Completed cases are saved in {store.path} (run {latest.id}, {latest.name!r}). "
                f"Resume with: backbench run --db {store.path} --resume {latest.id}"
            )
        return EXIT_INTERRUPTED
    finally:
        runner.close()
        if cluster is not None:
            cluster.close()
        if lease is not None:  # run_sweep released it, unless it failed before it could
            store.release_run_lease(lease)
    measurements = store.measurements(run_ref)
    print_results_table(measurements, title=f"Run {run.id} {run.name!r} ({store.path})")
    failed = [m for m in measurements if m.status.value != "ok"]
    if failed:
        err_console.print(f"[yellow]{len(failed)} of {len(measurements)} cases did not complete; see the status column.[/]")
    disturbed = [m for m in measurements if m.disturbed]
    if disturbed:
        err_console.print(
            f"[yellow]{len(disturbed)} of {len(measurements)} cases were disturbed by other processes "
            f"(above {spec.disturbed_threshold:g} cores); measure them again with --retry-disturbed N "
            "on a quieter machine, or leave them out with --exclude-disturbed.[/]"
        )
    if cluster is not None:
        for line in _node_lines(measurements, cluster.nodes, spec.backend.value):
            err_console.print(line)
    # Only this session's cases: a resume's wall time does not cover the earlier ones.
    session = [m for m in measurements if (m.started_at or 0) >= time.time() - (time.monotonic() - t0) - 1]
    console.print(time_summary(session, time.monotonic() - t0).line())
    return 0


def _unmeasured(store: Any, run: Any) -> list[Any]:
    """The cases of ``run`` with no result yet: what a resume measures."""
    measured = store.measured_cases(run.id)
    return [case for case in run.spec.cases() if case not in measured]


def _nothing_to_resume(store: Any, run: Any) -> str:
    """One line for a resume of a finished run: nothing to do, and how to measure its
    failed cases again (a new run; the failures stand as this run's results)."""
    import shlex

    current = store.measurements(run.id)
    failed = [m for m in current if m.status.value != "ok"]
    line = f"Run {run.name!r} (id {run.id}) is finished: all {len(current)} cases have a result"
    if not failed:
        return line + "; there is nothing to resume."
    spec = run.spec
    models = list(dict.fromkeys(m.case.model for m in failed))
    batches = list(dict.fromkeys(m.case.batch_size for m in failed))
    command = ["backbench", "run", "--db", str(store.path)]
    for model in models:
        command += ["-m", model]
    command += ["--batch", ",".join(str(b) for b in batches), "--backend", spec.backend.value,
                "--device", spec.device, "--precision", spec.precision.value]  # fmt: skip
    if spec.mode.value != "latency":
        command += ["--mode", spec.mode.value]
    return (
        f"{line} ({len(failed)} failed), so there is nothing to resume. To measure the failed "
        f"cases again, start a new run: {shlex.join(command)}"
    )


# -- results ---------------------------------------------------------------------------



def cmd_results(args: argparse.Namespace) -> int:
    from core.store import open_store

    store = open_store(args.db)
    run = store.get_run(args.run) if args.run is not None else None
    run_ref = run.id if run is not None else None
    if args.format == "table":
        measurements = store.measurements(run_ref, all_attempts=args.attempts)
        if not measurements:
            err_console.print(f"No results in {store.path} yet. Measure with: backbench run -m resnet18 --db {store.path}")
            return 0
        title = f"Run {run.id} {run.name!r}" if run is not None else f"All runs in {store.path}"
        print_results_table(measurements, title, timings=args.timings, attempts=args.attempts)
        return 0
    if args.format == "parquet" and not args.output:
        from core.errors import UsageError

        raise UsageError("Parquet is binary.", "Give a file with -o, e.g. -o results.parquet.")
    if args.output:
        store.export(args.output, args.format, run=run_ref, all_attempts=args.attempts)
        err_console.print(f"Wrote {args.output}")
    else:
        store.export(sys.stdout, args.format, run=run_ref, all_attempts=args.attempts)
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from datetime import datetime

    from rich.table import Table

    from core.store import open_store

    store = open_store(args.db)
    runs = store.list_runs()
    table = Table(title=f"Runs in {store.path}")
    for col in ("id", "name", "created", "status", "backend", "device", "precision", "models", "batches"):
        table.add_column(col)
    for run in runs:
        table.add_row(
            str(run.id), run.name, datetime.fromtimestamp(run.created_at).strftime("%Y-%m-%d %H:%M"), run.status,
            run.spec.backend.value, run.spec.device, run.spec.precision.value, str(len(run.spec.models)),
            ",".join(str(b) for b in run.spec.batch_sizes),
        )
    console.print(table)
    return 0


def cmd_devices(args: argparse.Namespace) -> int:
    from core.backends import available_backends

    found = available_backends()
    if args.format == "json":
        write_or_print(json.dumps(found, indent=2), None)
        return 0
    if not found:
        console.print("No inference framework is installed. Install one with: pip install 'backbench[measure]'")
        return 0
    for backend, devices in found.items():
        console.print(f"[bold]{backend}[/]: {', '.join(devices) if devices else '(no usable device)'}")
    return 0


def cmd_runtimes(args: argparse.Namespace) -> int:
    """The configured worker runtimes; with --check, each interpreter is started and
    says its Python and framework versions."""
    from rich.markup import escape
    from rich.table import Table

    from core.errors import BackbenchError
    from core.measure.runtimes import load_runtimes, user_config_path

    path = args.config or str(user_config_path())
    runtimes = load_runtimes(path, required=bool(args.config))
    if not runtimes:
        if args.format == "json":
            write_or_print("[]", None)
            return 0
        console.print(
            f"No worker runtimes are configured in {path}. Add a table runtimes.'NAME' with "
            "python = \"/abs/path/bin/python\" (`make edge-runtime` prints the entry of the "
            "OpenVINO 2022.3 runtime).", markup=False, highlight=False, soft_wrap=True,
        )  # fmt: skip
        return 0
    rows: list[dict[str, Any]] = []
    failed = 0
    for runtime in runtimes.values():
        row: dict[str, Any] = runtime.to_dict()
        if args.check:
            try:
                versions = runtime.versions()
                row["python_version"] = versions.get("python")
                row["backbench"] = versions.get("backbench")
                row["packages"] = {k: v for k, v in (versions.get("packages") or {}).items() if v}
                row["ok"] = True
            except BackbenchError as exc:
                row["ok"] = False
                row["error"] = exc.message
                failed += 1
        rows.append(row)
    if args.format == "json":
        write_or_print(json.dumps(rows, indent=2), None)
        return 1 if failed else 0
    table = Table(title=f"Worker runtimes ({path})")
    for col in ("name", "python", "description") + (("versions",) if args.check else ()):
        table.add_column(col)
    frameworks = ("openvino", "onnxruntime", "torch", "numpy")
    for row in rows:
        cells = [row["name"], row["python"], row.get("description", "")]
        if args.check:
            if row["ok"]:
                pkgs = row.get("packages") or {}
                found = [f"{name} {pkgs[name]}" for name in frameworks if pkgs.get(name)]
                cells.append(", ".join([f"Python {row['python_version']}", *found]))
            else:
                cells.append(f"[red]{escape(row['error'])}[/]")
        table.add_row(*(c if c.startswith("[red]") else escape(c) for c in cells))
    console.print(table)
    return 1 if failed else 0


def cmd_zygote(args: argparse.Namespace) -> NoReturn:
    from core.measure.zygote import main as zygote_main

    zygote_main(args.zygote_args)  # exits


def cmd_worker(args: argparse.Namespace) -> NoReturn:
    from core.measure.worker import exit_now
    from core.measure.worker import main as worker_main

    exit_now(worker_main(args.worker_args))



# -- parser ------------------------------------------------------------------------------


def add_commands(sub: Any) -> None:
    p = sub.add_parser("models", help="list the model zoo")
    p.add_argument("--suite", help="only the models of this suite (paper, quick)")
    p.add_argument("--filter", help="fnmatch pattern on model names, e.g. 'resnet*'")
    p.add_argument("--format", choices=["table", "json", "csv"], default="table")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("run", help="measure models on one backend/device/precision across batch sizes")
    add_run_options(p, remote=False)
    p.add_argument("--db", help="results store (default $XDG_DATA_HOME/backbench/results.db)")
    p.add_argument("--resume", metavar="RUN", help="finish an interrupted run (id or name) from its first unfinished case")
    p.set_defaults(func=cmd_run)

    from core.cli.accuracy import add_accuracy_command
    from core.cli.layers import add_layers_command

    add_accuracy_command(sub)
    add_layers_command(sub)

    p = sub.add_parser("results", help="show or export stored measurements")
    p.add_argument("--db", help="results store (default $XDG_DATA_HOME/backbench/results.db)")
    p.add_argument("--run", help="run id or name (default: all runs)")
    p.add_argument("--format", choices=["table", "csv", "json", "parquet"], default="table")
    p.add_argument("-o", "--output", help="write to this file instead of stdout")
    add_results_table_options(p)
    p.set_defaults(func=cmd_results)

    p = sub.add_parser("runs", help="list the runs in a store")
    p.add_argument("--db", help="results store")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("devices", help="list the backends and devices usable on this host")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser("runtimes", help="list the worker runtimes configured for --runtime")
    p.add_argument("--check", action="store_true", help="start each interpreter and show its Python and framework versions")
    p.add_argument("--config", metavar="PATH", help="read this file (default $XDG_CONFIG_HOME/backbench/config.toml; the agent's is /etc/backbench/agent.toml)")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.set_defaults(func=cmd_runtimes)

    p = sub.add_parser("worker")  # internal: the frozen build re-execs itself with it
    p.add_argument("worker_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("zygote")  # internal: the frozen build's fork server
    p.add_argument("zygote_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_zygote)
