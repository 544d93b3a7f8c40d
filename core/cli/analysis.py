"""``backbench analyze | predict | report``: the analysis commands of the CLI.

They read the long schema from a results store (every run by default, so that platforms
measured in different runs can be compared; ``--run`` picks one) or from a CSV, through
core.analysis.load, and hand it to core.analysis, core.predict and core.report. Heavy
libraries are imported inside the commands, so ``backbench --help`` stays fast.

``--memory model|process`` (analyze, report) picks the RSS figure of the memory fits: the
model's share, peak − baseline RSS (the default), or the whole process's peak.
``--exclude-disturbed`` (analyze, predict, report) leaves out the measurements other
processes disturbed, and each command says how many that was.
``--names FILE`` (analyze, predict, report) maps the data's model names to zoo names where
matching them by spelling (core.zoo.names) leaves one unmatched or ambiguous; every match
made and every name left without a card is listed with the notes.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from core.errors import UsageError
from core.text import percent, significant

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console

    from core.analysis.load import LoadedData

log = logging.getLogger(__name__)

SHOWN_MEMBERS = 8  # cluster members listed in the terminal before "... and N more"
# core.analysis.memory.MEMORY_CHOICES, spelt out: importing it would load SciPy for --help.
MEMORY_CHOICES = ("model", "process")


def name_map(path: str | None) -> dict[str, str] | None:
    """The names mapping of ``--names FILE``, or None without one. Raises UsageError or
    DataError for a file that cannot be read or maps to no zoo model."""
    if path is None:
        return None
    from core.zoo.names import read_name_map

    return read_name_map(path)


def load_data(db: str | None, csv: str | None, run: str | None) -> LoadedData:
    """Read the input of an analysis command: the store ``--db`` (default: the default
    store) or the CSV ``--csv``. Raises UsageError/DataError/StoreError."""
    from core.analysis.load import load_csv_file, load_store

    if db is not None and csv is not None:
        raise UsageError(
            "--db and --csv were both given.", "Analyse either a results store or a CSV file."
        )
    if csv is not None:
        return load_csv_file(csv, run)
    return load_store(db, run)


# -- formatting ----------------------------------------------------------------------------


def _params_text(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{name} = {significant(v, 4)}" for name, v in params.items())


def _members(models: Sequence[str]) -> str:
    shown = ", ".join(models[:SHOWN_MEMBERS])
    extra = len(models) - SHOWN_MEMBERS
    return shown + (f" ... and {extra} more" if extra > 0 else "")


def _dump_json(obj: Any) -> str:
    from core.analysis import to_jsonable

    return json.dumps(to_jsonable(obj), indent=2, allow_nan=False)


# -- analyze -------------------------------------------------------------------------------


def cmd_analyze(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from core.analysis import analyze
    from core.cli.console import console, err_console, write_or_print

    names = name_map(args.names)
    data = load_data(args.db, args.csv, args.run)
    # analyze() records one run; with several, stderr says which were included so that
    # stdout stays exactly analyze()'s object.
    run_info = data.runs[0] if len(data.runs) == 1 else None
    result = analyze(
        data.frame, run=run_info, baseline=args.baseline, memory=args.memory,
        exclude_disturbed=args.exclude_disturbed, names=names,
    )  # fmt: skip
    if args.json:
        if data.runs:
            err_console.print(f"Analysed {escape(data.run_label or '')} from {escape(data.source)}", highlight=False)
        write_or_print(_dump_json(result), None)
        return 0
    _print_analysis(console, result, data)
    if result["skipped"]:
        err_console.print(f"[yellow]{len(result['skipped'])} part(s) skipped; see above.[/]")
    return 0


def _print_analysis(console: Console, result: Mapping[str, Any], data: LoadedData) -> None:
    from rich.markup import escape
    from rich.table import Table

    inp = result["input"]
    console.rule("[bold]backbench analysis")
    console.print(f"Source: {escape(data.source)}")
    if data.runs:
        console.print(f"Included: {escape(data.run_label or '')}")
    console.print(
        f"{inp['rows_used']} of {inp['rows_read']} rows used "
        f"({inp['rows_excluded_status']} not ok, {inp['rows_dropped_missing']} incomplete"
        f"{_disturbed_counts(inp)}); "
        f"{len(inp['models'])} models, platforms: {escape(', '.join(inp['platforms']))}; "
        f"batch sizes: {', '.join(str(b) for b in inp['batch_sizes'])}",
        highlight=False,
    )

    latency = result.get("latency_vs_batch")
    if latency:
        console.rule("Time per image vs batch size")
        for platform, section in _per_platform(latency):
            console.print(escape(section.get("says", "")), highlight=False)
            fit = section.get("fit")
            if fit:
                console.print(
                    f"  [bold]{escape(platform)}[/]: {escape(fit['formula'])}, {_params_text(fit['params'])}, "
                    f"R² {significant(fit['r2'])} on the log scale ({escape(fit['criterion'])})",
                    highlight=False,
                )
            table = Table(title=f"Clusters on {escape(platform)}", title_justify="left")
            for name, justify in (("cluster", "right"), ("models", "left"), ("fit", "left"), ("R² (log)", "right")):
                table.add_column(name, justify=justify)  # type: ignore[arg-type]
            batches = [str(b) for b in section.get("batch_sizes", [])]
            for b in batches:
                table.add_column(f"b{b} ms", justify="right")
            for detail in section.get("cluster_details", []):
                cfit = detail.get("fit") or {}
                table.add_row(
                    str(detail["label"]), escape(_members(detail["models"])),
                    escape(cfit.get("formula", "-")), significant(cfit.get("r2")),
                    *(significant(detail["centroids"].get(b)) for b in batches),
                )  # fmt: skip
            console.print(table)

    memory = result.get("memory_vs_params")
    if memory:
        console.rule("Memory vs params")
        fallback = [p for p, info in (memory.get("per_platform") or {}).items() if info and info.get("memory_fallback")]
        console.print(f"Memory: {escape(memory.get('y', ''))}", highlight=False)
        if fallback:
            console.print(
                f"[yellow]No baseline RSS on {escape(', '.join(fallback))}: the process figure stands in "
                "for the model's share (see Notes).[/]",
                highlight=False,
            )
        console.print(escape(memory.get("says", "")), highlight=False)
        table = Table()
        for name, justify in (
            ("platform", "left"), ("line", "right"), ("MB per MB weights", "right"),
            ("MB per M params", "right"), ("intercept MB", "right"), ("R²", "right"),
            ("n", "right"), ("models", "left"),
        ):  # fmt: skip
            table.add_column(name, justify=justify)  # type: ignore[arg-type]
        for fit in memory["fits"]:
            table.add_row(
                escape(fit["platform"]), str(fit["line"]), significant(fit["slope"]),
                significant(fit["slope_mb_per_mparam"]), significant(fit["intercept"]), significant(fit["r2"]),
                str(fit["n"]), escape(_members(fit.get("models", []))),
            )  # fmt: skip
        console.print(table)

    accuracy = result.get("accuracy_density")
    if accuracy:
        console.rule("Accuracy density")
        console.print(escape(accuracy.get("says", "")), highlight=False)

    pareto = result.get("pareto")
    if pareto:
        console.rule("Accuracy vs FPS (Pareto front)")
        for section in pareto["platforms"].values():
            if section:
                console.print(escape(section.get("says", "")), highlight=False)

    speedup = result.get("speedup")
    if speedup:
        console.rule(f"Speed-up over {escape(speedup['baseline'])}")
        console.print(escape(speedup.get("says", "")), highlight=False)
        batches = sorted({int(b) for per in speedup["geomean"].values() for b in per}, key=int)
        table = Table(caption="geometric mean over the models measured on both platforms")
        table.add_column("platform")
        for b in batches:
            table.add_column(f"batch {b}", justify="right")
        for platform, per in speedup["geomean"].items():
            cells = [per.get(str(b)) for b in batches]
            table.add_row(escape(platform), *(f"{significant(c['speedup'])}x" if c else "-" for c in cells))
        console.print(table)

    if result.get("notes"):
        console.rule("Notes")
        for note in result["notes"]:
            console.print(f"- {escape(note)}", highlight=False)
    if result.get("skipped"):
        console.rule("[yellow]Skipped")
        for name, reason in result["skipped"].items():
            console.print(f"- [bold]{name}[/]: {escape(reason)}", highlight=False)


def _disturbed_counts(inp: Mapping[str, Any]) -> str:
    """", N disturbed left out" or ", N disturbed kept" for the rows line; "" without."""
    excluded, kept = inp.get("rows_excluded_disturbed") or 0, inp.get("rows_disturbed") or 0
    if excluded:
        return f", {excluded} disturbed left out"
    return f", {kept} disturbed kept" if kept else ""


def _per_platform(section: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    per = section.get("per_platform")
    if per:
        return [(name, s) for name, s in per.items() if s]
    return [(str(section.get("platform", "")), section)]


# -- predict -------------------------------------------------------------------------------


def cmd_predict(args: argparse.Namespace) -> int:
    if args.evaluate:
        if args.model or args.batch is not None or args.platform:
            raise UsageError(
                "--evaluate takes no -m, --batch or --platform.",
                "It cross-validates on every model and platform in the data.",
            )
        return _evaluate(args)
    if not args.model or args.batch is None:
        raise UsageError(
            "predict needs -m MODEL and --batch N (or --evaluate).",
            "Example: backbench predict -m resnet50 --batch 8 --platform openvino/CPU/fp32",
        )
    if args.batch < 1:
        raise UsageError(f"--batch {args.batch} is not a positive integer.")
    from core.cli.console import console, err_console, write_or_print
    from core.predict.predictor import LatencyPredictor

    names = name_map(args.names)
    data = load_data(args.db, args.csv, args.run)
    frame, _ = _training_frame(data.frame, args.exclude_disturbed)
    frame, notes = _zoo_named(frame, names)
    for note in notes:
        err_console.print(f"Note: {note}", highlight=False, markup=False)
    model = _zoo_model(args.model, names)
    platform, rows = _platform_rows(frame, args.platform)
    layers = None if args.end_to_end else _layer_table(args, rows)
    if layers is not None and platform in set(layers["platform"]) and platform.startswith("openvino/"):
        kernel = _kernel_prediction(layers, rows, model, args.batch, platform)
        if kernel is not None:
            if args.json:
                write_or_print(_dump_json(kernel), None)
                return 0
            _print_kernel_prediction(console, kernel, data)
            return 0
    # Training on the one platform asked for saves fitting the others.
    prediction = LatencyPredictor().fit(rows).predict(model, args.batch, platform)
    if args.json:
        write_or_print(_dump_json(prediction.to_dict() | {"method": "end-to-end"}), None)
        return 0
    _print_prediction(console, prediction.to_dict(), data)
    console.print("[dim]Model used: end-to-end (no per-layer profiles on this platform).[/]", highlight=False)
    return 0


def _layer_table(args: argparse.Namespace, frame: pd.DataFrame) -> pd.DataFrame | None:
    """The per-layer records behind ``frame``'s measurements: from ``--layers FILE``, or
    from the store (``--db``); None when there are none."""
    from core.predict.layers import layer_table, read_layers_csv

    if args.layers is not None:
        table = read_layers_csv(args.layers)
    elif args.csv is not None:
        return None
    else:
        from core.cli.layers import layer_rows, profiled
        from core.store import open_store

        store = open_store(args.db, readonly=True)
        try:
            run = store.get_run(args.run) if args.run is not None else None
            chosen = profiled(store.measurements(run.id if run else None), [], None)
        finally:
            store.close()
        if not chosen:
            return None
        table = layer_table(layer_rows(chosen))
    if "measurement_id" in frame.columns:
        ids = _measurement_ids(frame["measurement_id"])
        table = table[table["measurement_id"].isin(ids)]
    return table if not table.empty else None


def _measurement_ids(values: pd.Series) -> set[int]:
    import pandas as pd

    return {int(v) for v in pd.to_numeric(values, errors="coerce").dropna()}


def _kernel_prediction(
    layers: pd.DataFrame, rows: pd.DataFrame, model: str, batch: int, platform: str
) -> dict[str, Any] | None:
    """The kernel-level prediction (the model compiled with OpenVINO for its layers), or
    None, said on stderr, where it cannot be made (no OpenVINO here, a model it cannot
    compile): the end-to-end model answers then."""
    from core.cli.console import err_console
    from core.errors import BackbenchError
    from core.predict.kernels import KernelPredictor

    predictor = KernelPredictor().fit(layers, rows)
    try:
        prediction = predictor.predict(model, batch, platform)
    except BackbenchError as exc:
        err_console.print(f"Note: no kernel-level prediction ({exc}); using the end-to-end model.", highlight=False, markup=False)
        return None
    result = prediction.to_dict()
    result["overhead"] = dict(zip(("scale", "per_layer_ms", "constant_ms"), (
        predictor.overhead(platform).scale, predictor.overhead(platform).per_layer_ms,
        predictor.overhead(platform).constant_ms), strict=True))  # fmt: skip
    return result


def _print_kernel_prediction(console: Console, p: Mapping[str, Any], data: LoadedData) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(
        title=f"Predicted {escape(p['model'])} at batch {p['batch_size']} on {escape(p['platform'])}",
        caption=f"trained on the per-layer profiles in {escape(data.source)}",
    )
    table.add_column("quantity")
    table.add_column("predicted", justify="right")
    table.add_column("measured", justify="right")
    measured = p.get("measured_latency_ms")
    table.add_row("latency per batch (ms)", significant(p["latency_ms"]), significant(measured))
    table.add_row("time per image (ms)", significant(p["per_image_ms"]),
                  significant(measured / p["batch_size"] if measured else None))  # fmt: skip
    table.add_row("images per second", significant(1000.0 / p["per_image_ms"]),
                  significant(1000.0 * p["batch_size"] / measured if measured else None))  # fmt: skip
    table.add_row("sum of the layers (ms)", significant(p["layer_sum_ms"]), "-")
    table.add_row("overhead outside the layers (ms)", significant(p["overhead_ms"]), "-")
    console.print(table)
    kinds = ", ".join(f"{t} {significant(ms)} ms ({n})" for t, ms, n in p["by_type"][:8])
    console.print(f"By layer type: {escape(kinds)}", highlight=False)
    console.print(
        f"[dim]Model used: kernel-level ({p['n_layers']} executed layers of the compiled graph; "
        f"{p['n_skipped']} nodes that never run left out).[/]",
        highlight=False,
    )


def _training_frame(frame: pd.DataFrame, exclude_disturbed: bool) -> tuple[pd.DataFrame, int]:
    """The rows the predictor learns from, and how many disturbed ones were left out (said
    on stderr, so that JSON on stdout stays the predictor's own object)."""
    from core.analysis.data import without_disturbed
    from core.cli.console import err_console

    if not exclude_disturbed:
        return frame, 0
    kept, excluded = without_disturbed(frame)
    err_console.print(f"Left out {excluded} disturbed measurement(s) (--exclude-disturbed).", highlight=False)
    if kept.empty:
        raise UsageError(
            f"All {excluded} measurements were disturbed; none is left to learn from.",
            "Leave out --exclude-disturbed, or measure again on a quieter machine.",
        )
    return kept, excluded


def _zoo_named(
    frame: pd.DataFrame, names: Mapping[str, str] | None
) -> tuple[pd.DataFrame, list[str]]:
    """``frame`` with each model named by the zoo card its name matches (the predictor
    looks features up by zoo name), and the notes on the matching."""
    from core.analysis.data import with_zoo_names

    renamed, matches = with_zoo_names(frame, names)
    return renamed, matches.notes()


def _zoo_model(model: str, names: Mapping[str, str] | None) -> str:
    """``-m MODEL`` as the zoo name it matches (as the data's names are), else as given."""
    from core.zoo.names import match_names

    return match_names([model], names).zoo_name(model) or model


def _platform_rows(frame: pd.DataFrame, wanted: str | None) -> tuple[str, pd.DataFrame]:
    """The platform to predict for (the only one, or ``wanted``, matched ignoring case)
    and the rows measured on it."""
    from core.predict.predictor import platform_label, platforms

    available = platforms(frame)
    listing = ", ".join(available)
    if wanted is None:
        if len(available) > 1:
            raise UsageError(
                f"The data hold {len(available)} platforms; say which one with --platform.",
                f"One of: {listing}.",
            )
        chosen = available[0]
    else:
        matches = [p for p in available if p.lower() == wanted.lower()]
        if not matches:
            raise UsageError(f"No measurements on platform {wanted!r}.", f"Measured: {listing}.")
        chosen = wanted if wanted in matches else matches[0]
    mode = frame["mode"] if "mode" in frame.columns else ["latency"] * len(frame)
    labels = [
        platform_label(*parts)
        for parts in zip(frame["backend"], frame["device"], frame["precision"], mode, strict=True)
    ]
    return chosen, frame.loc[[label == chosen for label in labels]]


def _print_prediction(console: Console, p: Mapping[str, Any], data: LoadedData) -> None:
    from rich.markup import escape
    from rich.table import Table

    level = f"{p['interval']:.0%}"
    table = Table(
        title=f"Predicted {escape(p['model'])} at batch {p['batch_size']} on {escape(p['platform'])}",
        caption=f"trained on {escape(data.source)}; interval: {level} from held-out residuals",
    )
    for name, justify in (("quantity", "left"), ("predicted", "right"), (f"{level} interval", "right"), ("measured", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    measured = p.get("measured_latency_ms")
    table.add_row(
        "latency per batch (ms)", significant(p["latency_ms"]),
        f"{significant(p['latency_ms_low'])} - {significant(p['latency_ms_high'])}", significant(measured),
    )  # fmt: skip
    batch = p["batch_size"]
    table.add_row(
        "time per image (ms)", significant(p["per_image_ms"]),
        f"{significant(p['latency_ms_low'] / batch)} - {significant(p['latency_ms_high'] / batch)}",
        significant(measured / batch if measured is not None else None),
    )  # fmt: skip
    table.add_row(
        "images per second", significant(1000.0 / p["per_image_ms"]),
        f"{significant(1000.0 * batch / p['latency_ms_high'])} - {significant(1000.0 * batch / p['latency_ms_low'])}",
        significant(1000.0 * batch / measured if measured else None),
    )  # fmt: skip
    if p.get("peak_mem_mb") is not None:
        table.add_row(
            "peak memory (MB)", significant(p["peak_mem_mb"]),
            f"{significant(p['peak_mem_mb_low'])} - {significant(p['peak_mem_mb_high'])}", "-",
        )  # fmt: skip
    console.print(table)


def _evaluate(args: argparse.Namespace) -> int:
    from core.cli.console import console, err_console, write_or_print
    from core.predict.kernel_evaluate import evaluate_with_profiles

    names = name_map(args.names)
    data = load_data(args.db, args.csv, args.run)
    frame, excluded = _training_frame(data.frame, args.exclude_disturbed)
    frame, name_notes = _zoo_named(frame, names)
    layers = None if args.end_to_end else _layer_table(args, frame)
    if layers is not None:
        with err_console.status("Cross-validating the kernel-level predictor (one fit per model)..."):
            result = evaluate_with_profiles(frame, layers)
    else:
        result = evaluate_with_profiles(frame, None)
    if args.exclude_disturbed:
        result["rows_excluded_disturbed"] = excluded
        result["notes"] = [
            *(result.get("notes") or []),
            f"{excluded} disturbed measurement(s) left out (--exclude-disturbed).",
        ]
    if name_notes:
        result["notes"] = [*(result.get("notes") or []), *name_notes]
    if args.json:
        write_or_print(_dump_json(result), None)
        return 0
    _print_evaluation(console, result, data)
    return 0


def _print_evaluation(console: Console, result: Mapping[str, Any], data: LoadedData) -> None:
    from rich.markup import escape
    from rich.table import Table

    from core.predict.evaluate import EVALUATION_METRICS, NN_METER_WITHIN_10PCT, evaluation_rows

    table = Table(
        title="Leave-one-model-out cross-validation: predictor vs FLOPs-only baseline",
        caption="latency per batch; each model held out with all its rows",
    )
    table.add_column("platform")
    table.add_column("n", justify="right")
    for metric in EVALUATION_METRICS:
        table.add_column(metric.label, justify="right")
        table.add_column("FLOPs-only", justify="right", style="dim")
    for row in evaluation_rows(result):
        cells = []
        for metric in EVALUATION_METRICS:
            show = percent if metric.share else significant
            cells += [show(row[metric.key]), show(row[f"baseline_{metric.key}"])]
        table.add_row(escape(row["platform"]), str(row["n"]), *cells)
    console.print(f"Data: {escape(data.source)}" + (f"; {escape(data.run_label)}" if data.runs and data.run_label else ""))
    console.print(table)
    console.print(
        f"Within ±10%: {percent(result.get('within_10pct'))} of {result.get('n')} predictions "
        f"(FLOPs-only baseline {percent((result.get('baseline') or {}).get('within_10pct'))}). "
        f"For scale: nn-Meter reports {percent(NN_METER_WITHIN_10PCT)} within ±10% on NCS2, "
        "at batch 1 only.",
        highlight=False,
    )
    used = result.get("model_used") or {}
    if used:
        console.print(
            "Model used: " + "; ".join(f"{escape(p)}: {escape(kind)}" for p, kind in sorted(used.items())),
            highlight=False,
        )
    _print_kernel_details(console, result)
    if result.get("method"):
        console.print(f"[dim]Method: {escape(result['method'])}[/]", highlight=False)
    for note in result.get("notes") or []:
        console.print(f"- {escape(note)}", highlight=False)


def _print_kernel_details(console: Console, result: Mapping[str, Any]) -> None:
    """For each kernel-level platform: all and clean cases, per batch size, against
    today's end-to-end model, the FLOPs-only baseline and the ceiling."""
    from rich.markup import escape
    from rich.table import Table

    for platform, scores in (result.get("per_platform") or {}).items():
        if scores.get("model_used") != "kernel-level":
            continue
        table = Table(
            title=f"Kernel-level predictor on {escape(platform)}: within ±10% (±5%, MAPE)",
            caption=f"{scores.get('disturbed')} of {scores.get('cases')} cases disturbed, "
            f"{scores.get('inflated')} inflated; the fit leaves them out. Ceiling: each model "
            "fitted on its own cases (a + b x batch)",
        )
        for name, justify in (("cases", "left"), ("n", "right"), ("kernel-level", "right"),
                              ("today's model", "right"), ("FLOPs-only", "right"), ("ceiling", "right")):  # fmt: skip
            table.add_column(name, justify=justify)  # type: ignore[arg-type]

        def cells(m: Mapping[str, Any]) -> list[str]:
            def one(x: Mapping[str, Any] | None) -> str:
                x = x or {}
                return f"{percent(x.get('within_10pct'))} ({percent(x.get('within_5pct'))}, {percent(x.get('mape'))})"

            return [str(m.get("n")), one(m), one(m.get("today")), one(m.get("baseline"))]

        ceiling = scores.get("ceiling") or {}
        table.add_row("all", *cells(scores), percent(ceiling.get("all")))
        table.add_row("clean", *cells(scores.get("clean") or {}), percent(ceiling.get("clean")))
        for batch, per in (scores.get("per_batch") or {}).items():
            table.add_row(f"batch {batch}", *cells(per.get("all") or {}), "")
        console.print(table)


# -- report --------------------------------------------------------------------------------


def cmd_report(args: argparse.Namespace) -> int:
    from core.cli.console import console, err_console
    from core.report.html import write_report
    from core.report.layers import load_profiles

    names = name_map(args.names)
    data = load_data(args.db, args.csv, args.run)
    profiles = load_profiles(args.db, args.run) if args.csv is None else []
    with err_console.status("Writing the report (analysis, figures, cross-validation)..."):
        index = write_report(
            data.frame,
            args.output,
            title=args.title,
            run_label=f"{data.source}; {data.run_label}" if data.runs else data.source,
            predictor=not args.no_predict,
            manifests=list(data.manifests),
            memory=args.memory,
            exclude_disturbed=args.exclude_disturbed,
            names=names,
            layer_profiles=profiles,
        )
    console.print(f"Wrote {index}", highlight=False)
    return 0


# -- parser --------------------------------------------------------------------------------


def _add_input_options(p: argparse.ArgumentParser, run: bool = True) -> None:
    p.add_argument("--db", metavar="PATH", help="results store (default $XDG_DATA_HOME/backbench/results.db)")
    p.add_argument("--csv", metavar="FILE", help="a long-schema CSV (columns model, batch_size, per_image_ms, ...) instead of a store")
    if run:
        p.add_argument("--run", metavar="NAME|ID", help="run id or name (default: every run in the store)")
    p.add_argument(
        "--names", metavar="FILE",
        help="map the data's model names to zoo names: a CSV of name,zoo pairs (header optional) or a JSON "
        "object {name: zoo}. Names written otherwise (ResNet-18, SqueezeNet-v1.0) already match by spelling; "
        "this settles the ones the notes list as unmatched or ambiguous, and wins over that matching",
    )  # fmt: skip


def _add_memory_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--memory", choices=MEMORY_CHOICES, default="model",
        help="memory figure of the memory-vs-params fits: model = peak − baseline RSS, the model's own share "
        "(default; data without a baseline RSS fall back to process, and say so); process = the process's peak RSS. "
        "Device memory is used wherever it was measured",
    )  # fmt: skip


def _add_disturbed_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--exclude-disturbed", action="store_true",
        help="leave out measurements that other processes disturbed (their CPU use above the run's threshold); "
        "by default they are kept and flagged",
    )  # fmt: skip


def add_commands(sub: Any) -> None:
    p = sub.add_parser("analyze", help="analyse stored results: clusters, fits, memory lines, Pareto, speed-ups")
    _add_input_options(p)
    _add_memory_option(p)
    _add_disturbed_option(p)
    p.add_argument("--json", action="store_true", help="print the analysis as one JSON object")
    p.add_argument("--baseline", metavar="PLATFORM", help="platform (backend/device/precision) that speed-ups are relative to (default: the slowest)")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("predict", help="predict latency and memory of a model, or cross-validate the predictor")
    p.add_argument("-m", "--model", metavar="MODEL", help="model to predict (a zoo name; need not have been measured)")
    p.add_argument("--batch", type=int, metavar="N", help="batch size")
    p.add_argument("--platform", metavar="NAME", help="backend/device/precision, e.g. openvino/CPU/fp32 (default: the only one)")
    p.add_argument("--evaluate", action="store_true", help="leave-one-model-out cross-validation against a FLOPs-only baseline")
    p.add_argument(
        "--layers", metavar="FILE",
        help="per-layer records (`backbench layers --format csv`, .csv or .csv.gz) for the --csv measurements; "
        "with --db they are read from the store. Where a platform has them, the kernel-level predictor is used",
    )  # fmt: skip
    p.add_argument(
        "--end-to-end", action="store_true",
        help="use the end-to-end predictor (per-model features) even where per-layer profiles exist",
    )  # fmt: skip
    _add_input_options(p)
    _add_disturbed_option(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("report", help="write an HTML report with every figure and table")
    _add_input_options(p)
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder to write (replaced if it holds an earlier report)")
    p.add_argument("--title", help="report title")
    p.add_argument("--no-predict", action="store_true", help="leave out the predictor's cross-validation (the slowest part)")
    _add_memory_option(p)
    _add_disturbed_option(p)
    p.set_defaults(func=cmd_report)
