"""``backbench accuracy``: top-1/top-5 of models on a dataset, on every platform asked
for, next to the reference platform's (torch fp32 for a zoo model) in one table.

Each platform (backend, device, precision) is one stored run of accuracy cases, the
reference first, so the others agree against its logits (core.measure.accuracy_plan).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from core.cli.console import (
    EXIT_INTERRUPTED,
    case_progress,
    console,
    err_console,
    ok_case_line,
    write_or_print,
)
from core.cli.run_options import default_device, parse_weights
from core.errors import BackbenchError, UsageError
from core.results import (
    ACCURACY_LAYOUTS,
    AccuracySpec,
    Backend,
    Measurement,
    Mode,
    Precision,
    RunSpec,
    parse_backend,
    parse_batch_sizes,
    parse_precision,
)
from core.text import fixed

DEFAULT_BATCH = 8


def add_accuracy_command(sub: Any) -> None:
    p = sub.add_parser(
        "accuracy",
        help="top-1/top-5 accuracy of models on a dataset, per backend and precision",
        description=(
            "Evaluate models on an image dataset and report top-1/top-5 with 95% confidence "
            "intervals, per platform, next to the reference platform (torch fp32 for a zoo "
            "model): the share of identical top-1 predictions and the largest logit difference."
        ),
    )
    p.add_argument("-m", "--model", dest="models", action="append", default=[], metavar="MODEL",
                   help="zoo model name or model file (.onnx, .xml, TorchScript .pt); repeatable")
    p.add_argument("--suite", help="every model of this suite (paper, quick)")
    p.add_argument("--dataset", required=True, metavar="PATH",
                   help="dataset folder: an ImageFolder tree, ImageNet val in wnid folders, or cifar-10-batches-py")
    p.add_argument("--layout", choices=("auto", *ACCURACY_LAYOUTS), default="auto",
                   help="dataset layout (default: detected from the folder)")
    p.add_argument("--split", choices=("test", "train"), default="test", help="CIFAR-10 split (default test)")
    p.add_argument("--weights", action="append", default=[], metavar="[MODEL=]PATH",
                   help="trained weights (a state dict) for a zoo model; PATH alone with one model")
    p.add_argument("--num-classes", type=int, metavar="N",
                   help="build the zoo model with N classes (weights fine-tuned with a new head)")
    p.add_argument("--limit", type=int, metavar="N", help="evaluate a fixed, seeded subset of N images")
    p.add_argument("--seed", type=int, default=0, help="seed of the --limit subset (default 0)")
    p.add_argument("--backend", default="torch", metavar="B[,B...]",
                   help="torch, openvino, onnxruntime; comma-separated for several (default torch)")
    p.add_argument("--device", metavar="DEVICE",
                   help="device for every backend (default cpu; OpenVINO's CPU)")
    p.add_argument("--precision", default="fp32", metavar="P[,P...]",
                   help="fp32, fp16, bf16; comma-separated for several (default fp32)")
    p.add_argument("--batch", default=str(DEFAULT_BATCH), metavar="N",
                   help=f"images per inference (default {DEFAULT_BATCH})")
    p.add_argument("--size", type=int, metavar="N", help="crop size fed to the model (default: the weights' own)")
    p.add_argument("--resize", type=int, metavar="N", help="shorter side before the crop (default: the weights' own)")
    p.add_argument("--mean", metavar="R,G,B", help="normalisation mean (default: the weights' own, ImageNet's)")
    p.add_argument("--std", metavar="R,G,B", help="normalisation std (default: the weights' own, ImageNet's)")
    p.add_argument("--scale", type=float, metavar="X",
                   help="multiply pixel values (0-255) by X before mean/std (default 1/255; 1 for a model with the normalisation inside)")
    p.add_argument("--bgr", action="store_true", help="feed channels in BGR order (e.g. a Caffe-style model file)")
    p.add_argument("--no-reference", action="store_true",
                   help="do not evaluate the reference platform first (no agreement figures unless it ran before)")
    p.add_argument("--runtime", metavar="NAME", help="run the workers on this worker runtime (`backbench runtimes`)")
    p.add_argument("--name", help="run name (default accuracy-<dataset folder>)")
    p.add_argument("--db", help="results store (default $XDG_DATA_HOME/backbench/results.db)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=cmd_accuracy)


def _split(text: str, parse: Any) -> list[Any]:
    items = [part.strip() for part in str(text).split(",") if part.strip()]
    if not items:
        raise UsageError(f"{text!r} names nothing.", "Give e.g. --backend torch,openvino.")
    return list(dict.fromkeys(parse(item) for item in items))


def _weights(items: list[str], models: list[str]) -> dict[str, str]:
    """``--weights``: MODEL=PATH as for ``run`` (run_options.parse_weights), or a bare
    PATH when there is one model."""
    if len(models) == 1:
        items = [item if "=" in item else f"{models[0]}={item}" for item in items]
    elif any("=" not in item for item in items):
        bare = next(item for item in items if "=" not in item)
        raise UsageError(
            f"--weights {bare!r} does not say which model it is for.",
            "With several models, give --weights MODEL=PATH for each.",
        )
    return parse_weights(items)


def accuracy_specs(args: argparse.Namespace) -> tuple[list[RunSpec], list[str]]:
    """One RunSpec per platform, reference platforms first; and notes on the platforms
    or models left out (a combination the backend does not support)."""
    from core.backends import check_case
    from core.measure.accuracy_plan import platform_label, reference_platform
    from core.zoo import suite_models

    models = list(dict.fromkeys(args.models))
    if args.suite:
        models.extend(m for m in suite_models(args.suite) if m not in models)
    if not models:
        raise UsageError("No model given.", "Use -m MODEL (repeatable) or --suite NAME.")
    acc = AccuracySpec.from_dict({
        "dataset": args.dataset, "layout": args.layout, "limit": args.limit, "seed": args.seed,
        "num_classes": args.num_classes, "size": args.size, "resize": args.resize,
        "mean": args.mean, "std": args.std, "scale": args.scale, "bgr": args.bgr, "split": args.split,
    })  # fmt: skip
    batch = parse_batch_sizes(args.batch)
    if len(batch) != 1:
        raise UsageError("--batch takes one size for accuracy.", "Give e.g. --batch 16.")
    weights = _weights(args.weights, models)
    asked: list[tuple[Backend, str, Precision]] = []
    for backend in _split(args.backend, parse_backend):
        for precision in _split(args.precision, parse_precision):
            asked.append((backend, args.device or default_device(backend.value), precision))
    platforms: list[tuple[Backend, str, Precision]] = []
    if not args.no_reference:
        for model in models:
            ref = reference_platform(model)
            if ref not in platforms:
                platforms.append(ref)
    platforms += [p for p in asked if p not in platforms]
    name = args.name or f"accuracy-{_dataset_name(args.dataset)}"
    notes: list[str] = []
    specs: list[RunSpec] = []
    for backend, device, precision in platforms:
        runnable = [m for m in models if _runs_on(m, backend)]
        if not args.no_reference and (backend, device, precision) not in asked:
            runnable = [m for m in runnable if reference_platform(m) == (backend, device, precision)]
        if not runnable:
            continue
        # A reference added here runs on this host's own interpreter: with --runtime, the
        # platforms asked for run on the runtime and agree against the host's reference.
        runtime = args.runtime if (backend, device, precision) in asked else None
        spec = RunSpec(
            models=tuple(runnable), backend=backend, device=device, precision=precision,
            batch_sizes=batch, mode=Mode.ACCURACY, accuracy=acc,
            name=f"{name} {platform_label(backend, device, precision)}",
            weights={m: w for m, w in weights.items() if m in runnable}, runtime=runtime,
        )  # fmt: skip
        try:
            if runtime is None:
                check_case(spec.cases()[0])
        except BackbenchError as exc:
            notes.append(f"{platform_label(backend, device, precision)} left out: {exc.message}")
            continue
        specs.append(spec)
    if not specs:
        raise UsageError(
            "None of the platforms asked for can run these models here.",
            " ".join(notes) or "Check `backbench devices` for what this host supports.",
        )
    return specs, notes


def _runs_on(model: str, backend: Backend) -> bool:
    from core.backends.convert import SourceKind, source_kind

    kind = source_kind(model)
    if backend is Backend.TORCH:
        return kind in (SourceKind.ZOO, SourceKind.TORCHSCRIPT)
    if backend is Backend.ONNXRUNTIME:
        return kind is not SourceKind.OPENVINO_IR
    return True


def _dataset_name(path: str) -> str:
    from pathlib import Path

    name = Path(path).expanduser().resolve().name
    return name or "dataset"


class _AccuracyProgress:
    """Case and image progress on the console; a line per finished case."""

    def __init__(self, progress: Any, task: Any) -> None:
        self.progress = progress
        self.task = task
        self.label = ""
        self.images = ""

    def on_case_start(self, index: int, total: int, case: Any) -> None:
        self.label = case.label()
        self.images = ""
        self._refresh("starting")

    def on_case_retry(self, index: int, total: int, m: Any) -> None:
        return None

    def on_convert(self, done: int, total: int, model: str) -> None:
        self._refresh(f"converting models: {done}/{total}")

    def on_case_end(self, index: int, total: int, m: Measurement) -> None:
        if m.status.value == "ok":
            line = ok_case_line(m)
        else:
            line = f"[red]{m.status.value}[/] {m.case.label()}: {m.error}"
        self.progress.console.print(line)
        self.progress.advance(self.task)

    def on_phase(self, phase: str) -> None:
        self._refresh(phase)

    def on_samples(self, samples: Any) -> None:
        return None

    def on_memory(self, rss_mb: float | None, device_memory: dict[str, float]) -> None:
        return None

    def on_progress(self, done: int, total: int) -> None:
        self.images = f"{done}/{total} images"
        self._refresh("measure")

    def _refresh(self, phase: str) -> None:
        self.progress.update(self.task, live=f"{self.label} [{phase}] {self.images}")


def cmd_accuracy(args: argparse.Namespace) -> int:
    from core.measure.runner import SweepObserver, run_sweep, validate_spec
    from core.measure.runtimes import user_runtime
    from core.measure.supervisor import CaseRunner
    from core.store import open_store

    specs, notes = accuracy_specs(args)
    for note in notes:
        err_console.print(f"[yellow]{note}[/]", highlight=False)
    runtime = user_runtime(args.runtime) if args.runtime else None

    def case_runner(spec: RunSpec) -> CaseRunner:
        runner = CaseRunner()
        if spec.runtime is not None and runtime is not None:
            runner.use_runtime(runtime)
        return runner

    checked = []
    for spec in specs:
        runner = case_runner(spec)
        try:
            checked.append(validate_spec(spec, runner.runtime))
        finally:
            runner.close()
    store = open_store(args.db)
    total = sum(len(s.cases()) for s in checked)
    runs = []
    progress = case_progress("[bold]{task.description}", eta=True, refresh_per_second=2)

    class Observer(_AccuracyProgress, SweepObserver):
        pass

    t0 = time.monotonic()
    try:
        with progress:
            task = progress.add_task("cases", total=total, live="")
            observer = Observer(progress, task)
            for spec in checked:
                runner = case_runner(spec)
                try:
                    run = run_sweep(spec, store, observer=observer, case_runner=runner, validate=False)
                finally:
                    runner.close()
                runs.append(run)
    except KeyboardInterrupt:
        err_console.print(
            f"Interrupted. Completed cases are saved in {store.path}; resume a run with "
            f"backbench run --db {store.path} --resume RUN (see `backbench runs --db {store.path}`)."
        )
        return EXIT_INTERRUPTED
    measurements = [m for run in runs for m in store.measurements(run.id)]
    rows = accuracy_rows(measurements)
    if args.format == "json":
        write_or_print(json.dumps(rows, indent=2), None)
    else:
        print_accuracy_table(rows, f"Accuracy on {checked[0].accuracy.dataset if checked[0].accuracy else ''} ({store.path})")
    failed = [m for m in measurements if m.status.value != "ok"]
    if failed:
        err_console.print(f"[yellow]{len(failed)} of {len(measurements)} cases did not complete; see above.[/]")
    (err_console if args.format == "json" else console).print(f"{len(measurements)} cases in {time.monotonic() - t0:.0f} s; runs {', '.join(str(r.id) for r in runs)}.")
    return 1 if failed and len(failed) == len(measurements) else 0


def accuracy_rows(measurements: list[Measurement]) -> list[dict[str, Any]]:
    """One row per (model, platform): the figures, the reference's top-1 for the drop,
    and the published (reference) ImageNet figure of a zoo model, marked as such."""
    from core.zoo import get_card

    reference_top1: dict[tuple[str, str], float] = {}
    for m in measurements:
        if m.accuracy is not None and m.accuracy.note == "this is the reference platform" and m.accuracy.top1 is not None:
            reference_top1[(m.case.model, m.accuracy.dataset_id)] = m.accuracy.top1
    rows = []
    for m in measurements:
        acc = m.accuracy
        platform = f"{m.case.backend.value}/{m.case.device}/{m.case.precision.value}"
        row: dict[str, Any] = {"model": m.case.model, "platform": platform, "status": m.status.value}
        if acc is None:
            row["error"] = m.error
            rows.append(row)
            continue
        ref = reference_top1.get((m.case.model, acc.dataset_id))
        try:
            card = get_card(m.case.model)
            published = card.acc1 if acc.dataset.get("layout") == "imagenet-val" else None
        except BackbenchError:
            published = None
        row.update(acc.to_dict())
        row.update(acc.row())
        row["top1_drop"] = None if ref is None or acc.top1 is None else ref - acc.top1
        row["published_top1"] = published
        row["inference_precision"] = m.backend_config.get("inference_precision") or m.backend_config.get("dtype")
        rows.append(row)
    return rows


def print_accuracy_table(rows: list[dict[str, Any]], title: str) -> None:
    from rich.table import Table

    table = Table(title=title, caption=(
        "95% Wilson intervals. Agreement: share of identical top-1 with the reference platform; "
        "Δ top-1: the reference's top-1 minus this one's (points). Published: torchvision's "
        "ImageNet figure (reference, not measured here)."
    ))  # fmt: skip
    for column, justify in (
        ("model", "left"), ("platform", "left"), ("images", "right"), ("skipped", "right"),
        ("top-1 %", "right"), ("95% CI", "right"), ("top-5 %", "right"), ("Δ top-1", "right"),
        ("agreement %", "right"), ("max |Δ logit|", "right"), ("published top-1", "right"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        if "top1" not in r:
            table.add_row(r["model"], r["platform"], "", "", f"[red]{r['status']}[/]", "", "", "", "", "", "")
            continue
        ci = "" if r["top1_ci_low"] is None else f"{r['top1_ci_low']:.2f}-{r['top1_ci_high']:.2f}"
        agreement = "reference" if r.get("note") == "this is the reference platform" else fixed(r["top1_agreement"], 2)
        table.add_row(
            r["model"], r["platform"], str(r["n_images"]), str(r["skipped"]), fixed(r["top1"], 2), ci,
            fixed(r["top5"], 2), fixed(r["top1_drop"], 2), agreement, fixed(r["max_logit_diff"], 3),
            fixed(r["published_top1"], 2),
        )
    console.print(table)
    for r in rows:
        if r.get("note") and r.get("note") != "this is the reference platform":
            console.print(f"{r['model']} {r['platform']}: no agreement figure: {r['note']}.", highlight=False)
        if r.get("skipped"):
            names = ", ".join(r.get("skipped_files", [])[:5])
            console.print(f"{r['model']} {r['platform']}: {r['skipped']} unreadable images skipped ({names}).", highlight=False)
