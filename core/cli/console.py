"""The CLI's console and the helpers every command family shares.

Commands print through ``console`` (stdout: tables and data) and ``err_console`` (stderr:
progress, notes and one-line errors), never with print. ``print_results_table`` is the
one results table, used by ``backbench results`` and by ``backbench remote results``, and
``add_results_table_options`` its options (``--timings``, ``--attempts``).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape

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


# The phases of a case's wall time (core.results.PHASES), as the timings table heads them.
PHASE_HEADERS: tuple[tuple[str, str], ...] = (
    ("convert", "convert"), ("start", "start"), ("load", "load"), ("compile", "compile"),
    ("warmup", "warm-up"), ("measure", "measure"),
)  # fmt: skip
DISTURBED_FLAG = "!"
_LATENCY_CAPTION = "Latency per batch; per-image = median / batch (or 1/throughput in throughput mode)."
_TIMINGS_CAPTION = (
    "Seconds per phase: convert (model conversion; 0 on a cache hit), start (the worker), load, "
    "compile, warm-up (first inference included), measure (the timed loop); wall: the whole case."
)
_MODEL_MB_CAPTION = "model MB = peak − baseline RSS: the model's own memory, without the framework's."
_OTHER_CPU_CAPTION = (
    "other CPU = cores' worth of CPU other processes used during warm-up and the timed loop; "
    f"{DISTURBED_FLAG} = disturbed (above the run's threshold)."
)
_ATTEMPTS_CAPTION = "try = the case's attempt; dim rows were superseded by a later attempt."


def add_results_table_options(p: Any) -> None:
    """The options of the results table (``print_results_table``) on an argparse parser."""
    p.add_argument(
        "--timings", action="store_true",
        help="show where each case's time went (convert, start, load, compile, warm-up, measure, wall seconds)",
    )  # fmt: skip
    p.add_argument(
        "--attempts", action="store_true",
        help="list every attempt of each case (retries, resumes), numbered, not only the one that counts",
    )  # fmt: skip


def _platform(r: dict[str, Any]) -> str:
    label = f"{r['backend']}/{r['device']}/{r['precision']}"
    return label if r["mode"] == "latency" else f"{label}/{r['mode']}"


def _status(r: dict[str, Any], disturbed: bool) -> str:
    if r["status"] != "ok":  # the kind of failure says it failed; its error follows the table
        return f"[red]{escape(r['failure'] or r['status'])}[/]"
    return f"[bold yellow]ok {DISTURBED_FLAG}[/]" if disturbed else "ok"


def _errors(rows: Sequence[tuple[Any, dict[str, Any]]]) -> list[str]:
    """One line per failed row: which case, and its error (the table only has room for the
    kind of failure)."""
    lines = []
    for m, r in rows:
        if r["status"] != "ok" and r["error"]:
            first, *rest = str(r["error"]).strip().splitlines() or [""]
            more = f" (+{len(rest)} more lines)" if rest else ""
            kind = f" ({r['failure']})" if r["failure"] else ""
            lines.append(
                f"[red]{escape(r['status'] + kind)}[/] {escape(m.case.label())}: {escape(first)}{escape(more)}"
            )
    return lines


def _other_cpu(r: dict[str, Any]) -> str:
    value = fixed(r["interference"], 2)
    return f"[bold yellow]{value} {DISTURBED_FLAG}[/]" if r["disturbed"] else value


def ok_case_line(m: Any) -> str:
    """One line of rich markup for a case that completed: its accuracy, or its latency."""
    label = escape(m.case.label())
    acc = m.accuracy
    if acc is not None:
        line = (
            f"[green]ok[/] {label}: top-1 {fixed(acc.top1, 2)} %, top-5 {fixed(acc.top5, 2)} % "
            f"over {acc.n_images} images"
        )
        if acc.agreement_top1 is not None:
            line += f", {acc.agreement_top1:.2f} % agree with {escape(acc.reference or 'the reference')}"
        if acc.skipped:
            line += f" [yellow]({acc.skipped} unreadable images skipped)[/]"
        return line
    if m.stats is None:
        return f"[green]ok[/] {label}"
    return (
        f"[green]ok[/] {label}: median {m.stats.median_ns / 1e6:.3f} ms, "
        f"{m.stats.n} iters, ±{m.stats.ci95_rel * 100:.1f}%"
    )


_ACCURACY_CAPTION = (
    "Accuracy over the dataset, 95% Wilson intervals; agree = share of identical top-1 with "
    "the reference platform (`backbench accuracy` prints the whole comparison)."
)
_ACCURACY_ROWS_CAPTION = "Accuracy rows (platform …/accuracy) have no latency: see `backbench results --run RUN` for one."


def _interval(low: float | None, high: float | None) -> str:
    return "-" if low is None or high is None else f"{low:.2f}-{high:.2f}"


def print_results_table(
    measurements: Sequence[Any], title: str, *, timings: bool = False, attempts: bool = False
) -> None:
    """The results table of ``measurements`` (core.results.Measurement) under ``title``.

    By default: latency, throughput and memory, the model's own memory and other
    processes' CPU use (each only when some row has it), a disturbed case flagged with
    ``!``. ``timings`` shows where each case's time went instead; ``attempts`` adds each
    row's attempt number and dims superseded attempts. A run column appears when the rows
    come from several runs. A failed case's error follows the table, one line each. The
    default table of a latency run fits 120 columns.
    """
    from rich import box
    from rich.table import Table

    rows = [(m, m.to_row()) for m in measurements]

    def some(key: str) -> bool:
        return any(r[key] is not None for _, r in rows)

    # (header, justify, cell); a cell is rich markup. One run's id is in the title.
    columns: list[tuple[str, str, Any]] = []
    if len({r["run_id"] for _, r in rows}) > 1:
        columns.append(("run", "right", lambda m, r: escape(str(r["run_id"]))))
    if attempts:
        columns.append(("try", "right", lambda m, r: str(r["attempt"])))
    columns += [
        ("model", "left", lambda m, r: escape(r["model"])),
        ("platform", "left", lambda m, r: escape(_platform(r))),
        ("batch", "right", lambda m, r: str(r["batch_size"])),
    ]
    captions = [_TIMINGS_CAPTION if timings else _LATENCY_CAPTION]
    if timings:
        for phase, header in PHASE_HEADERS:
            if any(m.phase_s.get(phase) is not None for m, _ in rows):
                columns.append((header, "right", lambda m, r, p=phase: fixed(m.phase_s.get(p), 2)))
        columns.append(("wall", "right", lambda m, r: fixed(r["wall_s"], 2)))
    elif all(r["mode"] == "accuracy" for _, r in rows):
        # Accuracy rows have no latency: their own figures instead.
        captions = [_ACCURACY_CAPTION]
        columns += [
            ("images", "right", lambda m, r: fixed(r["n_eval_images"], 0)),
            ("skipped", "right", lambda m, r: fixed(r["skipped_images"], 0)),
            ("top-1 %", "right", lambda m, r: fixed(r["top1"], 2)),
            ("95% CI", "right", lambda m, r: _interval(r["top1_ci_low"], r["top1_ci_high"])),
            ("top-5 %", "right", lambda m, r: fixed(r["top5"], 2)),
            ("agree %", "right", lambda m, r: fixed(r["top1_agreement"], 2)),
            ("RSS MB", "right", lambda m, r: fixed(r["peak_rss_mb"], 0)),
        ]
    else:
        if some("top1"):
            captions.append(_ACCURACY_ROWS_CAPTION)
        columns += [
            ("median ms", "right", lambda m, r: fixed(r["latency_ms_median"], 3)),
            ("±CI", "right", lambda m, r: percent(r["ci95_rel"])),
            ("ms/img", "right", lambda m, r: fixed(r["per_image_ms"], 3)),
            ("img/s", "right", lambda m, r: fixed(r["throughput_ips"], 1)),
            ("RSS MB", "right", lambda m, r: fixed(r["peak_rss_mb"], 0)),
        ]
        if some("model_rss_mb"):
            columns.append(("model MB", "right", lambda m, r: fixed(r["model_rss_mb"], 0)))
            captions.append(_MODEL_MB_CAPTION)
        if some("peak_device_mem_mb"):
            columns.append(("dev MB", "right", lambda m, r: fixed(r["peak_device_mem_mb"], 0)))
        if some("interference") or any(r["disturbed"] for _, r in rows):
            columns.append(("other CPU", "right", lambda m, r: _other_cpu(r)))
            captions.append(_OTHER_CPU_CAPTION)
    flag_in_status = timings or not any(name == "other CPU" for name, _, _ in columns)
    columns.append(("status", "left", lambda m, r: _status(r, flag_in_status and bool(r["disturbed"]))))
    if attempts:
        captions.append(_ATTEMPTS_CAPTION)

    table = Table(
        title=title, caption=" ".join(captions), box=box.SIMPLE_HEAD, show_edge=False,
        collapse_padding=True, padding=(0, 1),
    )  # fmt: skip
    for name, justify, _ in columns:
        # A narrow terminal shortens model and platform names (with an ellipsis), not numbers.
        squeeze = name in ("model", "platform")
        table.add_column(
            name, justify=justify, no_wrap=not squeeze, overflow="ellipsis",  # type: ignore[arg-type]
            min_width=None if squeeze else len(name),
        )  # fmt: skip
    for m, r in rows:
        table.add_row(*(cell(m, r) for _, _, cell in columns), style="dim" if not m.current else None)
    console.print(table)
    for line in _errors(rows):
        console.print(line, highlight=False)


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
