"""``backbench layers``: the per-layer profiles of measured cases (``run
--profile-layers``), as a table of the top layers and the time by layer type, or every
layer as CSV or JSON. Each profile's layer sum is shown next to the case's end-to-end
median from the timed loop; the gap between them is the framework's own overhead."""

from __future__ import annotations

import argparse
import json
from typing import Any

from core.cli.console import console, err_console, write_or_print
from core.errors import UsageError
from core.report.layers import by_type, overhead_line
from core.results import Measurement
from core.text import fixed

DEFAULT_TOP = 15

LAYER_COLUMNS = (
    "run_id", "measurement_id", "model", "backend", "device", "precision", "batch_size", "seq",
    "name", "type", "exec_type", "time_ms", "share", "flops", "bytes", "input_shapes",
    "output_shapes", "fused", "layer_precision", "layer_sum_ms", "e2e_median_ms",
)  # fmt: skip


def add_layers_command(sub: Any) -> None:
    p = sub.add_parser(
        "layers",
        help="per-layer profiles of cases measured with --profile-layers",
        description=(
            "The layers each profiled case executed (after the framework's fusion), with "
            "their median time and share, next to the case's end-to-end median."
        ),
    )
    p.add_argument("--db", help="results store (default $XDG_DATA_HOME/backbench/results.db)")
    p.add_argument("--run", help="run id or name (default: every run)")
    p.add_argument("-m", "--model", dest="models", action="append", default=[], metavar="MODEL",
                   help="only this model (repeatable)")
    p.add_argument("--batch", type=int, metavar="N", help="only this batch size")
    p.add_argument("--top", type=int, default=DEFAULT_TOP, metavar="N",
                   help=f"layers shown per case in the table (default {DEFAULT_TOP}); csv and json hold all")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("-o", "--output", help="write csv or json to this file instead of stdout")
    p.set_defaults(func=cmd_layers)


def profiled(measurements: list[Measurement], models: list[str], batch: int | None) -> list[Measurement]:
    chosen = [m for m in measurements if m.layer_profile is not None and m.layer_profile.layers]
    if models:
        chosen = [m for m in chosen if m.case.model in models]
    if batch is not None:
        chosen = [m for m in chosen if m.case.batch_size == batch]
    return chosen


def layer_rows(measurements: list[Measurement]) -> list[dict[str, Any]]:
    """One row per layer of each profiled measurement: the long form of `layers`."""
    rows = []
    for m in measurements:
        profile = m.layer_profile
        if profile is None:
            continue
        total = profile.sum_ms
        e2e = m.latency_ms_median
        for seq, layer in enumerate(profile.layers):
            rows.append({
                "run_id": m.run_id, "measurement_id": m.measurement_id, "model": m.case.model,
                "backend": m.case.backend.value, "device": m.case.device,
                "precision": m.case.precision.value, "batch_size": m.case.batch_size, "seq": seq,
                "name": layer.name, "type": layer.type, "exec_type": layer.exec_type,
                "time_ms": layer.time_ms, "share": layer.time_ms / total if total > 0 else None,
                "flops": layer.flops, "bytes": layer.bytes,
                "input_shapes": [list(s) for s in layer.input_shapes],
                "output_shapes": [list(s) for s in layer.output_shapes],
                "fused": list(layer.fused), "layer_precision": layer.precision,
                "layer_sum_ms": total, "e2e_median_ms": e2e,
            })  # fmt: skip
    return rows


def cmd_layers(args: argparse.Namespace) -> int:
    from rich.table import Table

    from core.store import open_store

    if args.top < 1:
        raise UsageError("--top must be 1 or more.")
    store = open_store(args.db, readonly=True)
    run = store.get_run(args.run) if args.run is not None else None
    chosen = profiled(store.measurements(run.id if run else None), args.models, args.batch)
    if not chosen:
        where = f"run {run.id} ({run.name!r})" if run else str(store.path)
        err_console.print(
            f"No per-layer profile in {where}"
            + (f" for {', '.join(args.models)}" if args.models else "")
            + ". Measure with: backbench run -m MODEL --profile-layers"
        )
        return 1
    if args.format != "table":
        rows = layer_rows(chosen)
        if args.format == "json":
            text = json.dumps(rows, indent=1)
        else:
            import pandas as pd

            frame = pd.DataFrame.from_records(rows, columns=list(LAYER_COLUMNS))
            for column in ("input_shapes", "output_shapes", "fused"):
                frame[column] = frame[column].map(json.dumps)
            for column in ("flops", "bytes"):
                frame[column] = frame[column].astype("Int64")  # whole numbers, empty where unknown
            text = frame.to_csv(index=False)
        if args.output:
            with open(args.output, "w", encoding="utf-8") as fh:
                fh.write(text)
            err_console.print(f"Wrote {len(rows)} layers of {len(chosen)} cases to {args.output}")
        else:
            write_or_print(text, None)
        return 0
    for m in chosen:
        profile = m.layer_profile
        assert profile is not None  # noqa: S101 - profiled() kept only these
        title = f"{m.case.model} {m.case.backend.value}/{m.case.device}/{m.case.precision.value} batch {m.case.batch_size}"
        table = Table(title=title, caption=overhead_line(m), caption_justify="left")
        for column, justify in (("layer", "left"), ("type", "left"), ("exec type", "left"),
                                ("ms", "right"), ("share", "right"), ("GFLOPs", "right"),
                                ("MB", "right"), ("output", "left")):  # fmt: skip
            table.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]
        total = profile.sum_ms or 1.0
        for layer in sorted(profile.layers, key=lambda x: -x.time_ms)[: args.top]:
            table.add_row(
                layer.name, layer.type, layer.exec_type, fixed(layer.time_ms, 3),
                f"{layer.time_ms / total:.1%}", fixed(layer.flops / 1e9 if layer.flops else None, 3),
                fixed(layer.bytes / 1e6 if layer.bytes else None, 2),
                "x".join(str(d) for d in layer.output_shapes[0]) if layer.output_shapes else "",
            )  # fmt: skip
        console.print(table)
        kinds = ", ".join(f"{t} {ms:.2f} ms ({ms / total:.0%}, {n})" for t, ms, n in by_type(m)[:8])
        console.print(f"by type: {kinds}", highlight=False)
    return 0
