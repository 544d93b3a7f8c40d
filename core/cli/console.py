"""The CLI's console and the helpers every command family shares.

Commands print through ``console`` (stdout: tables and data) and ``err_console`` (stderr:
progress, notes and one-line errors), never with print. ``print_results_table`` is the
one results table, used by ``backbench results`` and by ``backbench remote results``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console

from core.text import fixed, percent

log = logging.getLogger(__name__)

# Piped output gets a wide console: the results table is wider than 80 columns, and a
# file or a pager should receive it whole rather than truncated.
console = Console() if Console().is_terminal else Console(width=int(os.environ.get("COLUMNS", "200")))
err_console = Console(stderr=True, soft_wrap=True)  # one-line errors, even when piped

EXIT_INTERRUPTED = 130


# -- helpers -------------------------------------------------------------------------


def write_or_print(text: str, output: str | None) -> None:
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
        err_console.print(f"Wrote {output}")
    else:
        sys.stdout.write(text)
        if not text.endswith("\n"):
            sys.stdout.write("\n")


def print_results_table(measurements: Sequence[Any], title: str) -> None:
    from rich.table import Table

    table = Table(title=title, caption="Latency per batch; per-image = median / batch (or 1/throughput in throughput mode). FLOPs = 2 × MACs, per image.")
    headers = [
        ("run", "right"), ("model", "left"), ("platform", "left"), ("mode", "left"), ("batch", "right"),
        ("median ms", "right"), ("±CI", "right"), ("p99 ms", "right"), ("ms/img", "right"), ("img/s", "right"),
        ("1st ms", "right"), ("RSS MB", "right"), ("dev MB", "right"), ("params M", "right"),
        ("GFLOPs", "right"), ("status", "left"),
    ]
    for name, justify in headers:
        table.add_column(name, justify=justify, no_wrap=name != "status")  # type: ignore[arg-type]
    for m in measurements:
        r = m.to_row()
        status = r["status"] if r["status"] == "ok" else f"[red]{r['status']}: {r['failure'] or ''}[/] {r['error'] or ''}"
        ci = r["ci95_rel"]
        table.add_row(
            str(r["run_id"]), r["model"], f"{r['backend']}/{r['device']}/{r['precision']}", r["mode"],
            str(r["batch_size"]), fixed(r["latency_ms_median"], 3), percent(ci),
            fixed(r["latency_ms_p99"], 3), fixed(r["per_image_ms"], 3),
            fixed(r["throughput_ips"], 1), fixed(r["first_inference_ms"], 1), fixed(r["peak_rss_mb"], 0),
            fixed(r["peak_device_mem_mb"], 0),
            fixed(r["params"] / 1e6 if r["params"] else None, 2), fixed(r["flops"] / 1e9 if r["flops"] else None, 2),
            status,
        )
    console.print(table)


def case_progress(label: str, *, eta: bool, refresh_per_second: float) -> Any:
    """The progress bar of a sweep on stderr: spinner, ``label``, bar, cases done of all,
    elapsed time, the ETA when ``eta``, and a ``live`` field for the running case.

    ``backbench run`` and ``backbench remote watch`` both draw it; callers give each task
    a ``live`` field (``progress.add_task(..., live="")``).
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns: list[Any] = [
        SpinnerColumn(), TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
    ]  # fmt: skip
    if eta:
        columns += [TextColumn("ETA"), TimeRemainingColumn()]
    columns.append(TextColumn("{task.fields[live]}"))
    return Progress(*columns, console=err_console, refresh_per_second=refresh_per_second)
