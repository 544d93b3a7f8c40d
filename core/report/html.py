"""``write_report``: a self-contained HTML report of an analysis, in one folder.

The folder holds ``index.html`` (inline CSS, no scripts, nothing fetched), ``figures/``
(each figure as PNG and SVG), ``tables/`` (every table as CSV), ``analysis.json`` (what
analyze() returned), ``prediction.json`` (the predictor's cross-validation, when it ran)
and a marker file that lets a later report replace this one and nothing else. It is built
in a temporary folder next to the target and moved into place at the end, so a failure
never leaves half a report. Numbers are rounded by core.text; the predictor's evaluation
and its wording come from core.predict.evaluate.

Memory is the model's share (peak − baseline RSS) unless ``memory="process"`` asks for
the whole process's peak RSS; data without a baseline RSS fall back to the process figure
and the report says so. Disturbed measurements (other processes' CPU use above the run's
threshold) are kept and marked ⚠ in the table of all measurements, or left out of
everything with ``exclude_disturbed``; the data summary counts them either way.
"""

from __future__ import annotations

import html
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import __version__
from core.errors import DataError, UsageError
from core.predict.evaluate import EVALUATION_METRICS, evaluate, evaluation_rows, evaluation_says
from core.text import percent, significant

if TYPE_CHECKING:
    import pandas as pd

    from core.analysis.data import AnalysisInput
    from core.results import Measurement

log = logging.getLogger(__name__)

MARKER = ".backbench-report"
FIGURE_DPI = 150
HTML_ROW_LIMIT = 2000  # rows shown in one HTML table; the CSV always has them all

# (section id, heading, figures, analysis key whose "says" and skip reason apply)
SECTIONS: tuple[tuple[str, str, tuple[str, ...], str | None], ...] = (
    ("accuracy", "Accuracy vs complexity", ("accuracy_bubbles",), "accuracy_density"),
    ("accuracy_density", "Accuracy density", ("accuracy_density",), "accuracy_density"),
    ("latency_vs_batch", "Time per image vs batch size", ("latency_vs_batch",), "latency_vs_batch"),
    ("pareto", "Accuracy vs FPS, Pareto front", ("accuracy_vs_fps",), "pareto"),
    ("memory_vs_params", "Memory vs parameters", ("memory_vs_params",), "memory_vs_params"),
    ("speedup", "Cross-platform speed-up", ("speedup",), "speedup"),
    ("prediction", "Latency prediction: leave-one-model-out evaluation", (), None),
    ("measurements", "All measurements", (), None),
)


# -- tables -----------------------------------------------------------------------------------


def _platform_parts(section: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    per = section.get("per_platform")
    if per:
        return [(name, s) for name, s in per.items() if s]
    return [(str(section.get("platform", "")), section)]


def _latency_tables(section: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    fits, curves, bands = [], [], []
    for platform, part in _platform_parts(section):
        groups = [("all models", sorted(part.get("curves", {})), part.get("centroids", {}), part.get("fit"))]
        groups += [
            (f"cluster {d['label']}", d["models"], d["centroids"], d.get("fit"))
            for d in part.get("cluster_details", [])
        ]
        for group, models, centroids, fit in groups:
            row: dict[str, Any] = {"platform": platform, "group": group, "n_models": len(models)}
            row["models"] = ", ".join(models)
            row["formula"] = fit["formula"] if fit else None
            row.update({f"param_{k}": v for k, v in (fit["params"] if fit else {}).items()})
            row["r2_log"] = fit["r2"] if fit else None
            row["r2_centroids"] = fit.get("r2_centroids") if fit else None
            row.update({f"centroid_ms_b{b}": v for b, v in centroids.items()})
            fits.append(row)
            if fit:
                band = fit["band"]
                bands += [
                    {"platform": platform, "group": group, "batch_size": x, "fit_ms": f, "lower_ms": lo, "upper_ms": hi}
                    for x, f, lo, hi in zip(band["batch_size"], band["fit_ms"], band["lower_ms"], band["upper_ms"], strict=True)
                ]
        for model, curve in part.get("curves", {}).items():
            cluster = part.get("clusters", {}).get(model)
            curves += [
                {"platform": platform, "model": model, "cluster": cluster, "batch_size": int(b), "per_image_ms": v}
                for b, v in curve.items()
            ]
    return {"latency_fits": fits, "latency_curves": curves, "latency_bands": bands}


def _tables(analysis: Mapping[str, Any], evaluation: Mapping[str, Any] | None) -> dict[str, list[dict[str, Any]]]:
    tables: dict[str, list[dict[str, Any]]] = {}
    accuracy = analysis.get("accuracy_density")
    if accuracy:
        tables["accuracy"] = [
            {
                "model": m["model"], "params_m": m["params_m"], "gflops": m["gflops"],
                "top1": m["top1"], "top5": m["top5"], "density": m["density"],
                "density_ci95_low": (m["density_ci95"] or [None, None])[0],
                "density_ci95_high": (m["density_ci95"] or [None, None])[1],
                "accuracy_source": m["accuracy_source"], "n_eval_images": m["n_eval_images"],
                "reference_top1": m.get("reference_top1"), "reference_top5": m.get("reference_top5"),
            }
            for m in accuracy["models"]
        ]  # fmt: skip
    latency = analysis.get("latency_vs_batch")
    if latency:
        tables.update(_latency_tables(latency))
    pareto = analysis.get("pareto")
    if pareto:
        tables["pareto"] = [
            {"platform": platform, **{k: p[k] for k in ("model", "fps", "per_image_ms", "top1", "on_front", "accuracy_source")}}
            for platform, part in pareto["platforms"].items() if part
            for p in sorted(part["points"], key=lambda p: -p["fps"])
        ]  # fmt: skip
    memory = analysis.get("memory_vs_params")
    if memory:
        keys = ("platform", "line", "memory_column", "batch_size", "slope", "slope_mb_per_mparam", "slope_se", "intercept", "r2", "n")
        tables["memory_fits"] = [{**{k: f[k] for k in keys}, "models": ", ".join(f["models"])} for f in memory["fits"]]
        tables["memory_points"] = [
            {"platform": platform, **point}
            for platform, part in memory["per_platform"].items() if part
            for point in part["points"]
        ]  # fmt: skip
    speedup = analysis.get("speedup")
    if speedup:
        tables["speedup"] = [dict(row) for row in speedup["table"]]
        tables["speedup_geomean"] = [
            {"platform": platform, "baseline": speedup["baseline"], "batch_size": int(b), **cell}
            for platform, per in speedup["geomean"].items()
            for b, cell in per.items() if cell
        ]  # fmt: skip
    if evaluation:
        tables["prediction"] = evaluation_rows(evaluation)
    return tables


# -- HTML -----------------------------------------------------------------------------------

CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d232a;background:#f5f6f8;margin:0}
main{max-width:1280px;margin:0 auto;padding:1.5rem 2rem 4rem}
h1{font-size:1.7rem;margin:.2rem 0}h2{font-size:1.3rem;margin:0 0 .6rem}h3{font-size:1rem;margin:1.2rem 0 .4rem}
.sub{color:#5b6570;margin:0 0 1rem}
section{background:#fff;border:1px solid #dde1e6;border-radius:8px;padding:1.2rem 1.4rem;margin:1.2rem 0}
.figrow{display:grid;grid-template-columns:minmax(0,1fr);gap:1rem;align-items:start;margin-bottom:1rem}
.figrow.side{grid-template-columns:minmax(0,max-content) minmax(16rem,1fr)}
@media (max-width:1000px){.figrow.side{grid-template-columns:minmax(0,1fr)}}
figure{margin:0}figure img{max-width:100%;height:auto;border:1px solid #eef0f3}
figcaption{font-size:.85rem;color:#5b6570}
.says{background:#f0f6ff;border-left:4px solid #3b7dd8;padding:.6rem .9rem;border-radius:4px}
.says p{margin:.2rem 0 .6rem}.says h4{margin:0 0 .3rem;font-size:.85rem;text-transform:uppercase;color:#3b5a85}
.skip{background:#fff7e6;border-left:4px solid #e0a030;padding:.5rem .9rem;border-radius:4px}
.scroll{max-height:30rem;overflow:auto;border:1px solid #e3e6ea;border-radius:4px}
table{border-collapse:collapse;font-size:.85rem;width:100%}
th,td{padding:.3rem .6rem;border-bottom:1px solid #eceff2;text-align:left;vertical-align:top}
th{background:#f0f2f5;position:sticky;top:0;font-weight:600}
th.g{text-align:center;border-bottom:1px solid #cfd5dc;position:static}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr:nth-child(even) td{background:#fafbfc}
tr.disturbed td{background:#fff1e0}td.flag{color:#a05a00;white-space:nowrap}
.warn{background:#fff7e6;border-left:4px solid #e0a030;padding:.5rem .9rem;border-radius:4px}
td.wrap{max-width:28rem}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1.2rem;margin:0}
dl.facts dt{color:#5b6570}dl.facts dd{margin:0}
a{color:#1f5fb8}ul{margin:.3rem 0;padding-left:1.3rem}
.muted{color:#5b6570;font-size:.85rem}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


LABELS: dict[str, str] = {
    "params_m": "params (M)", "gflops": "GFLOPs", "top1": "top-1 %", "top5": "top-5 %",
    "reference_top1": "published top-1 % (reference: ImageNet, torchvision)",
    "reference_top5": "published top-5 % (reference)",
    "density": "top-1 % per M params", "density_ci95_low": "95% CI low",
    "density_ci95_high": "95% CI high", "accuracy_source": "accuracy source",
    "n_eval_images": "eval images", "n_models": "models (n)", "formula": "fit",
    "params": "parameters", "r2": "R²", "r2_log": "R² (log scale, all points)", "r2_centroids": "R² (centroids)", "fps": "FPS", "per_image_ms": "ms / image",
    "on_front": "Pareto-optimal", "memory_column": "memory", "batch_size": "batch",
    "slope": "MB per MB of weights", "slope_mb_per_mparam": "MB per M params",
    "slope_se": "slope SE", "intercept": "intercept (MB)", "latency_ms_median": "ms / batch",
    "throughput_ips": "images / s", "peak_rss_mb": "peak RSS (MB)",
    "peak_device_mem_mb": "device mem (MB)", "model_rss_mb": "model memory (MB)",
    "interference": "other processes' CPU (cores)", "disturbed": "disturbed",
}  # fmt: skip
# The keys each section shows in HTML (the CSV has every column).
HTML_KEYS: dict[str, tuple[str, ...]] = {
    "accuracy": ("model", "params_m", "gflops", "top1", "top5", "accuracy_source", "n_eval_images",
                 "reference_top1", "reference_top5", "density", "density_ci95_low", "density_ci95_high"),
    "latency_fits": ("platform", "group", "n_models", "models", "formula", "params", "r2_log", "r2_centroids"),
    "pareto": ("platform", "model", "fps", "per_image_ms", "top1", "on_front", "accuracy_source"),
    "memory_fits": ("platform", "line", "slope", "slope_mb_per_mparam", "intercept", "r2", "n",
                    "models", "memory_column", "batch_size"),
    "measurements": ("model", "platform", "batch_size", "per_image_ms", "latency_ms_median",
                     "throughput_ips", "peak_rss_mb", "model_rss_mb", "peak_device_mem_mb",
                     "params_m", "gflops", "interference", "disturbed"),
}  # fmt: skip
DISTURBED_MARK = "⚠"


def _kind(rows: Sequence[Mapping[str, Any]], key: str) -> str:
    values = [r.get(key) for r in rows if r.get(key) is not None]
    if values and all(isinstance(v, bool) for v in values):
        return "bool"
    if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return "num"
    return "text"


def _cell(value: Any, kind: str) -> str:
    if kind == "share":
        return f'<td class="n">{_e(percent(value))}</td>'
    if kind == "num":
        return f'<td class="n">{_e(significant(value))}</td>'
    if kind == "bool":
        return f"<td>{'yes' if value else ''}</td>"
    if kind == "flag":
        return f'<td class="flag">{DISTURBED_MARK} disturbed</td>' if value else "<td></td>"
    return f'<td class="wrap">{_e("-" if value is None else value)}</td>'


def _html_table(
    rows: Sequence[Mapping[str, Any]],
    keys: Sequence[str],
    csv_name: str | None,
    kinds: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    groups: Sequence[tuple[str, int]] = (),
    row_class: Callable[[Mapping[str, Any]], str | None] | None = None,
) -> str:
    """An HTML table of ``rows``; columns with no value in any row are left out. ``groups``
    is an optional header row of (label, column span); ``row_class`` gives a row's CSS
    class (None for none)."""
    keys = [k for k in keys if any(r.get(k) is not None for r in rows)] if not groups else keys
    kinds = {k: (kinds or {}).get(k) or _kind(rows, k) for k in keys}
    names = {**LABELS, **(labels or {})}
    numeric = {k for k in keys if kinds[k] in ("num", "share")}
    head = "".join(
        f'<th{" class=n" if k in numeric else ""}>{_e(names.get(k, k.replace("_", " ")))}</th>'
        for k in keys
    )
    group_row = "".join(f'<th colspan="{span}" class="g">{_e(label)}</th>' for label, span in groups)
    shown = rows[:HTML_ROW_LIMIT]
    def tr(row: Mapping[str, Any]) -> str:
        css = row_class(row) if row_class else None
        return f'<tr class="{_e(css)}">' if css else "<tr>"

    body = "".join(
        tr(row) + "".join(_cell(row.get(k), kinds[k]) for k in keys) + "</tr>" for row in shown
    )
    thead = (f"<tr>{group_row}</tr>" if groups else "") + f"<tr>{head}</tr>"
    out = f'<div class="scroll"><table><thead>{thead}</thead><tbody>{body}</tbody></table></div>'
    notes = [f"first {len(shown)} of {len(rows)} rows shown"] if len(rows) > len(shown) else []
    if csv_name:
        notes.append(f'<a href="tables/{csv_name}.csv">{csv_name}.csv</a> (full precision)')
    return out + (f'<p class="muted">{"; ".join(notes)}</p>' if notes else "")


def _latency_html(rows: Sequence[Mapping[str, Any]]) -> str:
    shown = [
        {
            **r,
            "models": "(all)" if r["group"] == "all models" else r["models"],
            "params": ", ".join(
                f"{k.removeprefix('param_')} = {significant(v, 4)}"
                for k, v in r.items() if k.startswith("param_") and v is not None
            ),
        }
        for r in rows
    ]  # fmt: skip
    centroid_keys = [k for k in rows[0] if k.startswith("centroid_ms_b")] if rows else []
    labels = {k: f"b{k.removeprefix('centroid_ms_b')}" for k in centroid_keys}
    return (
        "<h3>Fits by group</h3>"
        + _html_table(shown, HTML_KEYS["latency_fits"], None)
        + "<h3>Centroids: mean time per image (ms) at each batch size</h3>"
        + _html_table(rows, ["platform", "group", *centroid_keys], "latency_fits", labels=labels)
    )


def _speedup_html(section: Mapping[str, Any]) -> str:
    batches = sorted({int(r["batch_size"]) for r in section["table"]})
    rows: list[dict[str, Any]] = []
    for platform, per in section["geomean"].items():
        mean = {f"b{b}": (per.get(str(b)) or {}).get("speedup") for b in batches}
        rows.append({"platform": platform, "model": "geometric mean", **mean})
        cells: dict[str, dict[str, Any]] = {}
        for r in section["table"]:
            if r["platform"] == platform:
                cells.setdefault(r["model"], {})[f"b{r['batch_size']}"] = r["speedup"]
        rows += [{"platform": platform, "model": m, **cells[m]} for m in sorted(cells)]
    keys = ["platform", "model", *(f"b{b}" for b in batches)]
    labels = {f"b{b}": f"batch {b}" for b in batches}
    caption = (
        f"<h3>Speed-up (×) over {_e(section['baseline'])}: baseline time / platform time per "
        "image</h3>"
    )
    return caption + _html_table(rows, keys, "speedup", labels=labels)


def _prediction_html(evaluation: Mapping[str, Any]) -> str:
    rows = evaluation_rows(evaluation)
    keys = ["platform", "n"]
    groups = [("", 2)]
    kinds: dict[str, str] = {"n": "num"}
    labels: dict[str, str] = {}
    for metric in EVALUATION_METRICS:
        key = metric.key
        keys += [key, f"baseline_{key}"]
        groups.append((metric.label, 2))
        kind = "share" if metric.share else "num"
        kinds.update({key: kind, f"baseline_{key}": kind})
        labels.update({key: "predictor", f"baseline_{key}": "FLOPs-only"})
    table = _html_table(rows, keys, "prediction", kinds=kinds, labels=labels, groups=groups)
    notes = "".join(f"<li>{_e(n)}</li>" for n in evaluation.get("notes") or [])
    method = _e(evaluation.get("method", ""))
    return f'{table}<ul>{notes}</ul><p class="muted">Method: {method}</p>'


def _says_block(analysis: Mapping[str, Any], key: str | None, extra: str | None = None) -> str:
    paragraphs: list[str] = []
    section = analysis.get(key) if key else None
    if section and key == "latency_vs_batch":
        paragraphs = [part.get("says", "") for _, part in _platform_parts(section)]
    elif section and key == "pareto":
        paragraphs = [part.get("says", "") for part in section["platforms"].values() if part]
    elif section:
        paragraphs = [section.get("says", "")]
    if extra:
        paragraphs.append(extra)
    body = "".join(f"<p>{_e(p)}</p>" for p in paragraphs if p)
    return f'<div class="says"><h4>What this says</h4>{body}</div>' if body else ""


def _figure_html(name: str, heading: str, width_px: int) -> str:
    return (
        f'<figure><a href="figures/{name}.svg"><img src="figures/{name}.png" width="{width_px}" '
        f'alt="{_e(heading)}"></a><figcaption>{_e(heading)}: '
        f'<a href="figures/{name}.png">PNG</a> · <a href="figures/{name}.svg">SVG</a></figcaption>'
        "</figure>"
    )


def _section_html(sid: str, heading: str, figure_names: Sequence[str], key: str | None,
                  ctx: Mapping[str, Any]) -> str:  # fmt: skip
    analysis, tables, widths = ctx["analysis"], ctx["tables"], ctx["figure_widths"]
    evaluation = ctx["evaluation"] if sid == "prediction" else None
    out = [f'<section id="{sid}"><h2>{_e(heading)}</h2>']
    reasons = [analysis["skipped"].get(key, "no data")] if key and not analysis.get(key) else []
    if not reasons:
        reasons = [ctx["fig_skipped"][f] for f in figure_names if f in ctx["fig_skipped"]]
    if sid == "prediction" and evaluation is None:
        reasons.append(ctx["prediction_reason"])
    if reasons:
        out.append(f'<p class="skip"><strong>Skipped:</strong> {_e("; ".join(reasons))}</p>')
    says = _says_block(analysis, key, evaluation_says(evaluation) if evaluation else None)
    shown = [f for f in figure_names if f in widths]
    if shown:
        # A narrow figure gets its text beside it; a wide one keeps the full width.
        side = max(widths[f] for f in shown) <= 820
        figs = "".join(_figure_html(f, heading, widths[f]) for f in shown)
        out.append(f'<div class="figrow{" side" if side else ""}"><div>{figs}</div>{says}</div>')
    else:
        out.append(says)
    if sid == "memory_vs_params" and analysis.get(key):
        out.append(_memory_note_html(analysis[key]))
    if sid in ("accuracy_density", "pareto", "memory_vs_params") and tables.get(SECTION_TABLE[sid]):
        name = SECTION_TABLE[sid]
        out.append(_html_table(tables[name], HTML_KEYS[name], name))
    if sid == "latency_vs_batch" and tables.get("latency_fits"):
        out.append(_latency_html(tables["latency_fits"]))
    if sid == "speedup" and analysis.get("speedup"):
        out.append(_speedup_html(analysis["speedup"]))
    if evaluation:
        out.append(_prediction_html(evaluation))
    if sid == "measurements":
        out.append(_measurements_html(ctx["measurement_rows"], analysis["input"]))
    links = [f'<a href="tables/{n}.csv">{n}.csv</a>' for n in CSV_ONLY.get(sid, ()) if n in tables]
    if links:
        out.append(f'<p class="muted">More data: {", ".join(links)}</p>')
    out.append("</section>")
    return "".join(out)


def _memory_note_html(section: Mapping[str, Any]) -> str:
    """What the memory axis is, and where the process figure stood in for the model's."""
    text = f"Memory plotted: {section.get('y') or 'peak memory (MB)'}."
    by_reason: dict[str, list[str]] = {}
    for platform, info in (section.get("per_platform") or {}).items():
        if info and info.get("memory_fallback"):
            by_reason.setdefault(str(info["memory_fallback"]), []).append(platform)
    if not by_reason:
        return f'<p class="muted">{_e(text)}</p>'
    items = "".join(f"<li>{_e(', '.join(ps))}: {_e(why)}.</li>" for why, ps in by_reason.items())
    return f'<div class="warn"><strong>{_e(text)}</strong><ul>{items}</ul></div>'


def _measurements_html(rows: Sequence[Mapping[str, Any]], inp: Mapping[str, Any]) -> str:
    keys = list(HTML_KEYS["measurements"])
    if not any(r.get("disturbed") for r in rows):
        keys.remove("disturbed")  # a column of blanks says nothing
    table = _html_table(
        rows, keys, "measurements", kinds={"disturbed": "flag"},
        row_class=lambda r: "disturbed" if r.get("disturbed") else None,
    )  # fmt: skip
    note = _disturbed_text(inp)
    return (f'<p class="muted">{_e(note)}</p>' if note else "") + table


def _disturbed_text(inp: Mapping[str, Any]) -> str | None:
    from core.analysis.data import DISTURBED_MEANING

    kept, excluded = inp.get("rows_disturbed") or 0, inp.get("rows_excluded_disturbed") or 0
    if excluded:
        return (
            f"{excluded} disturbed measurement(s) left out of every analysis and table "
            f"({DISTURBED_MEANING})."
        )
    if kept:
        return (
            f"{kept} of {inp['rows_used']} measurements were disturbed ({DISTURBED_MEANING}); "
            f"they are included and marked {DISTURBED_MARK}. --exclude-disturbed leaves them out."
        )
    return None


def _disturbed_fact(inp: Mapping[str, Any]) -> str:
    kept, excluded = inp.get("rows_disturbed") or 0, inp.get("rows_excluded_disturbed") or 0
    if excluded:
        return f"{excluded} measurement(s) left out"
    if kept:
        return f"{kept} of {inp['rows_used']} measurements, included and marked {DISTURBED_MARK}"
    return "none marked"


def _memory_fact(analysis: Mapping[str, Any]) -> str:
    asked = (analysis.get("input") or {}).get("memory", "model")
    wanted = "the model's share (peak − baseline RSS)" if asked == "model" else "the process's peak RSS"
    section = analysis.get("memory_vs_params")
    if not section:
        return f"{wanted}; no memory figure"
    text = str(section.get("y") or "")
    if section.get("memory_fallback"):
        text += f"; {wanted} was asked for, but these data lack the baseline RSS (see Memory vs parameters)"
    return text


SECTION_TABLE = {"accuracy_density": "accuracy", "pareto": "pareto", "memory_vs_params": "memory_fits"}
CSV_ONLY: dict[str, tuple[str, ...]] = {
    "latency_vs_batch": ("latency_curves", "latency_bands"),
    "memory_vs_params": ("memory_points",),
    "speedup": ("speedup_geomean",),
}


def _manifest_html(manifests: Sequence[Mapping[str, Any]]) -> str:
    items = []
    for m in manifests:
        gpus = "; ".join(f"{g.get('name')} (driver {g.get('driver')})" for g in m.get("gpus") or [])
        packages = ", ".join(f"{k} {v}" for k, v in (m.get("packages") or {}).items() if v)
        cores = f"{m.get('cores_physical') or '?'} physical, {m.get('cores_logical') or '?'} logical"
        facts = [
            ("host", m.get("host")), ("OS", m.get("os")), ("CPU", m.get("cpu_model")),
            ("cores", cores), ("governor", m.get("governor")),
            ("memory", f"{significant(m.get('memory_total_mb'))} MB"), ("GPU", gpus or "none"),
            ("python", m.get("python")), ("packages", packages),
        ]  # fmt: skip
        items.append(_facts(facts))
    if not items:
        return ""
    return f"<h3>Environment{'s' if len(items) > 1 else ''}</h3>" + "<hr>".join(items)


def _facts(facts: Sequence[tuple[str, Any]]) -> str:
    cells = "".join(f"<dt>{_e(k)}</dt><dd>{_e('-' if v is None else v)}</dd>" for k, v in facts)
    return f'<dl class="facts">{cells}</dl>'


def _summary_html(analysis: Mapping[str, Any], ctx: Mapping[str, Any]) -> str:
    inp = analysis["input"]
    rows = (
        f"{inp['rows_used']} used of {inp['rows_read']} read ({inp['rows_excluded_status']} with "
        f"status other than ok excluded, {inp['rows_dropped_missing']} incomplete dropped)"
    )
    facts = [
        ("data", ctx["run_label"] or "-"), ("rows", rows),
        ("platforms", ", ".join(inp["platforms"])),
        ("models", f"{len(inp['models'])}: {', '.join(inp['models'])}"),
        ("batch sizes", ", ".join(str(b) for b in inp["batch_sizes"])),
        ("memory", _memory_fact(analysis)),
        ("disturbed", _disturbed_fact(inp)),
    ]  # fmt: skip
    out = ['<section id="summary"><h2>Data</h2>', _facts(facts)]
    if analysis.get("notes"):
        out.append("<h3>Notes</h3><ul>")
        out += [f"<li>{_e(n)}</li>" for n in analysis["notes"]]
        out.append("</ul>")
    if ctx["all_skipped"]:
        out.append("<h3>Skipped parts</h3><ul>")
        out += [f"<li><b>{_e(k)}</b>: {_e(v)}</li>" for k, v in ctx["all_skipped"].items()]
        out.append("</ul>")
    out.append(_manifest_html(ctx["manifests"]))
    entries = [(sid, h) for sid, h, _, _ in SECTIONS]
    if ctx.get("layer_figures") is not None:
        entries.insert(len(entries) - 1, LAYER_SECTION)  # before the table of all measurements
    toc = " · ".join(f'<a href="#{sid}">{_e(h)}</a>' for sid, h in entries)
    out.append(f'<p class="muted">Sections: {toc} · <a href="analysis.json">analysis.json</a>')
    out.append("</p></section>")
    return "".join(out)


def _index_html(title: str, ctx: Mapping[str, Any]) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime())
    body = [
        f'<h1>{_e(title)}</h1><p class="sub">backbench {_e(__version__)} · generated {stamp}</p>',
        _summary_html(ctx["analysis"], ctx),
        *(_section_html(sid, heading, figs, key, ctx) for sid, heading, figs, key in SECTIONS),
    ]
    if ctx.get("layer_figures") is not None:
        body.insert(len(body) - 1, _layers_html(ctx))  # before the table of all measurements
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body><main>\n"
        + "\n".join(body)
        + "\n</main></body></html>\n"
    )


LAYER_SECTION = ("layers", "Per-layer profiles")
LAYER_SUMMARY_KEYS: tuple[str, ...] = (
    "model", "platform", "batch_size", "n_layers", "layer_sum_ms", "e2e_median_ms", "overhead_ms",
    "overhead_share", "top_type", "top_type_share", "slowest_layer", "slowest_layer_exec_type",
    "slowest_layer_ms",
)  # fmt: skip
LAYER_TOP_KEYS: tuple[str, ...] = (
    "model", "platform", "batch_size", "name", "type", "exec_type", "time_ms", "share", "gflops",
    "mb", "output_shapes",
)  # fmt: skip
LAYER_LABELS: dict[str, str] = {
    "n_layers": "layers", "layer_sum_ms": "layer sum (ms)", "e2e_median_ms": "end-to-end median (ms)",
    "overhead_ms": "overhead (ms)", "overhead_share": "overhead", "top_type": "slowest type",
    "top_type_share": "its share", "slowest_layer": "slowest layer",
    "slowest_layer_exec_type": "its kernel", "slowest_layer_ms": "its ms", "name": "layer",
    "exec_type": "exec type", "time_ms": "ms", "mb": "MB", "output_shapes": "output",
}  # fmt: skip
LAYER_TOP_PER_PROFILE = 5


def _layer_says(summary: Sequence[Mapping[str, Any]]) -> str:
    platforms = sorted({str(r["platform"]) for r in summary})
    text = (
        f"{len(summary)} profiled case(s) on {len(platforms)} platform(s). Each case's layers are "
        "timed by its framework's own profiler in a pass after the timed loop, so the headline "
        "figures never carry the profiler. The sum of the layers is set against the end-to-end "
        "median of the timed loop: the gap is the framework's work outside the layers."
    )
    over = [r for r in summary if r["overhead_ms"] is not None and r["overhead_ms"] < 0]
    if over:
        names = ", ".join(f"{r['model']} ({r['platform']})" for r in over)
        text += f" For {names} the layers' counters add up to more than the end-to-end time."
    return text


def _layers_html(ctx: Mapping[str, Any]) -> str:
    """The per-layer section: a figure per platform, a row per profiled case, and each
    case's slowest layers (every layer is in tables/layers.csv)."""
    sid, heading = LAYER_SECTION
    tables, widths = ctx["tables"], ctx["figure_widths"]
    summary = tables["layer_profiles"]
    says = f'<div class="says"><h4>What this says</h4><p>{_e(_layer_says(summary))}</p></div>'
    figs = "".join(
        _figure_html(name, f"{heading}: {platform}", widths[name])
        for name, platform in ctx["layer_figures"].items() if name in widths
    )  # fmt: skip
    out = [f'<section id="{sid}"><h2>{_e(heading)}</h2>', f"<div class=\"figrow\"><div>{figs}</div>{says}</div>"]
    kinds = {"overhead_share": "share", "top_type_share": "share", "share": "share"}
    out.append(_html_table(summary, LAYER_SUMMARY_KEYS, "layer_profiles", kinds=kinds, labels=LAYER_LABELS))
    top: list[dict[str, Any]] = []
    by_case: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for row in tables["layers"]:
        by_case.setdefault((row["model"], row["platform"], row["batch_size"], row["measurement_id"]), []).append(row)
    for rows in by_case.values():
        for row in sorted(rows, key=lambda r: -r["time_ms"])[:LAYER_TOP_PER_PROFILE]:
            flops, size = row.get("flops"), row.get("bytes")
            top.append({**row, "gflops": None if flops is None else flops / 1e9,
                        "mb": None if size is None else size / 1e6})  # fmt: skip
    out.append(f"<h3>The {LAYER_TOP_PER_PROFILE} slowest layers of each case</h3>")
    out.append(_html_table(top, LAYER_TOP_KEYS, "layers", kinds=kinds, labels=LAYER_LABELS))
    out.append("</section>")
    return "".join(out)


# -- writing ----------------------------------------------------------------------------------


def _check_target(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is a file, not a folder.", "Give a folder for the report with -o.")
    if out.is_dir() and not (out / MARKER).is_file() and any(out.iterdir()):
        raise UsageError(
            f"{out} exists and is not a backbench report; it was left untouched.",
            "Give a new or empty folder with -o, or move that folder away first.",
        )


def _measurement_rows(inp: AnalysisInput) -> list[dict[str, Any]]:
    frame = inp.frame.copy()
    frame["params_m"] = frame["params"] / 1e6
    frame["gflops"] = frame["flops"] / 1e9
    frame = frame.sort_values(["platform", "model", "batch_size"], kind="stable")
    keys = [k for k in HTML_KEYS["measurements"] if k in frame.columns]
    from core.analysis import to_jsonable

    return list(to_jsonable(frame[keys].to_dict(orient="records")))


def _build(folder: Path, data: pd.DataFrame, inp: AnalysisInput, title: str, run_label: str | None,
           predictor: bool, manifests: Sequence[Mapping[str, Any]], memory: str,
           layer_profiles: Sequence[Measurement] = ()) -> None:  # fmt: skip
    import pandas as pd

    from core.analysis import analyze, to_jsonable
    from core.analysis.data import with_zoo_names, without_disturbed
    from core.report.figures import build_all

    started = time.perf_counter_ns()
    log.info("Analysing %d rows", len(inp.frame))
    analysis = analyze(inp, memory=memory)
    (folder / "figures").mkdir()
    (folder / "tables").mkdir()
    figures, fig_skipped = build_all(analysis)
    for name, figure in figures.items():
        log.info("Saving figure %s", name)
        figure.savefig(folder / "figures" / f"{name}.png", dpi=FIGURE_DPI)
        figure.savefig(folder / "figures" / f"{name}.svg")
    layer_figures = _save_layer_figures(folder / "figures", layer_profiles, figures)
    evaluation: dict[str, Any] | None = None
    prediction_reason = "not requested"
    if predictor:
        log.info("Cross-validating the latency predictor (leave one model out)")
        # The predictor learns from what the analysis used: no disturbed rows if left out.
        trained = without_disturbed(data)[0] if inp.n_excluded_disturbed else data
        # The predictor finds a model's features by its zoo name, not the data's spelling.
        trained = with_zoo_names(trained, inp.name_matches)[0] if inp.name_matches else trained
        try:
            evaluation = evaluate(trained)
        except DataError as exc:
            prediction_reason = str(exc)
            log.info("prediction skipped: %s", exc)
    tables = _tables(analysis, evaluation)
    if layer_figures is not None:
        from core.report.layers import layer_table, profile_summary

        tables["layer_profiles"] = profile_summary(layer_profiles)
        tables["layers"] = layer_table(layer_profiles)
    for name, rows in tables.items():
        pd.DataFrame.from_records(rows).to_csv(folder / "tables" / f"{name}.csv", index=False)
    data.to_csv(folder / "tables" / "measurements.csv", index=False)
    (folder / "analysis.json").write_text(json.dumps(analysis, indent=1, allow_nan=False), encoding="utf-8")
    if evaluation is not None:
        text = json.dumps(to_jsonable(evaluation), indent=1, allow_nan=False)
        (folder / "prediction.json").write_text(text, encoding="utf-8")
    all_skipped = dict(analysis.get("skipped") or {})
    section_of = {figure: key for _, _, figs, key in SECTIONS for figure in figs}
    all_skipped.update(
        {f"figure {k}": v for k, v in fig_skipped.items() if section_of.get(k) not in all_skipped}
    )
    if evaluation is None:
        all_skipped["prediction"] = prediction_reason
    ctx = {
        "analysis": analysis, "tables": tables, "figures": figures, "fig_skipped": fig_skipped,
        "evaluation": evaluation, "prediction_reason": prediction_reason, "manifests": manifests,
        "run_label": run_label, "all_skipped": all_skipped, "measurement_rows": _measurement_rows(inp),
        "figure_widths": {n: round(f.get_size_inches()[0] * 100) for n, f in figures.items()},
        "layer_figures": layer_figures,
    }  # fmt: skip
    (folder / "index.html").write_text(_index_html(title, ctx), encoding="utf-8")
    marker = {"backbench": __version__, "created_at": time.time()}
    (folder / MARKER).write_text(json.dumps(marker), encoding="utf-8")
    log.info("Report built in %.1f s", (time.perf_counter_ns() - started) / 1e9)


def _save_layer_figures(
    directory: Path, profiles: Sequence[Measurement], figures: dict[str, Any]
) -> dict[str, str] | None:
    """Draw and save the per-layer figure of each platform with profiles, adding them to
    ``figures``; returns figure name -> platform, or None when no case was profiled (the
    report then has no per-layer section at all)."""
    from core.report.layer_figures import figure_name, layer_type_figures
    from core.report.layers import platform_label, profiled

    chosen = profiled(profiles)
    if not chosen:
        return None
    names = {figure_name(platform_label(m)): platform_label(m) for m in chosen}
    for name, figure in layer_type_figures(chosen).items():
        log.info("Saving figure %s", name)
        figure.savefig(directory / f"{name}.png", dpi=FIGURE_DPI)
        figure.savefig(directory / f"{name}.svg")
        figures[name] = figure
    return {name: names[name] for name in sorted(names)}


def _move_into_place(built: Path, out: Path) -> None:
    if not out.exists():
        os.replace(built, out)
        return
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    os.replace(out, old)
    try:
        os.replace(built, out)
    except OSError:
        os.replace(old, out)
        raise
    try:
        shutil.rmtree(old)
    except OSError as exc:
        log.warning("Could not remove the previous report %s: %s", old, exc)


def write_report(
    data: pd.DataFrame | AnalysisInput,
    out_dir: str | os.PathLike[str],
    *,
    title: str | None = None,
    run_label: str | None = None,
    predictor: bool = True,
    manifests: Sequence[Mapping[str, Any]] | None = None,
    memory: str = "model",
    exclude_disturbed: bool = False,
    names: Mapping[str, str] | None = None,
    layer_profiles: Sequence[Measurement] = (),
) -> Path:
    """Write the report folder ``out_dir`` and return the path of its index.html.

    ``data`` is long-schema rows (or an AnalysisInput); ``manifests`` are the environment
    manifests of the runs, shown in the data summary. ``memory`` ("model" or "process"),
    ``exclude_disturbed`` and ``names`` are analyze()'s. An existing ``out_dir`` is
    replaced only when it holds an earlier report (or nothing). Raises DataError for
    unusable data and UsageError for a target that cannot be written, an unknown
    ``memory`` or a ``names`` mapping to no zoo model.

    ``layer_profiles`` are measurements with per-layer profiles (``run --profile-layers``;
    core.report.layers.load_profiles reads them from a store): with any, the report gains
    a per-layer figure for each platform and the tables layers.csv and
    layer_profiles.csv; without, it is exactly the report it was.
    """
    from core.analysis.data import AnalysisInput, coerce_input
    from core.analysis.memory import check_memory

    check_memory(memory)
    out = Path(out_dir).expanduser().absolute()
    _check_target(out)
    inp = coerce_input(data, exclude_disturbed=exclude_disturbed, names=names)
    frame = inp.frame if isinstance(data, AnalysisInput) else data
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        built = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
        built.chmod(0o755)  # mkdtemp makes it private; a report is meant to be shared
    except OSError as exc:
        raise UsageError(f"Cannot write the report to {out}: {exc.strerror or exc}.", "Choose another -o folder.") from exc
    try:
        if exclude_disturbed:
            layer_profiles = [m for m in layer_profiles if m.disturbed is not True]
        _build(built, frame, inp, title or "backbench report", run_label, predictor, manifests or (), memory,
               layer_profiles)  # fmt: skip
        _move_into_place(built, out)
    except OSError as exc:
        shutil.rmtree(built, ignore_errors=True)
        raise UsageError(f"Cannot write the report to {out}: {exc.strerror or exc}.", "Check free space and permissions, or choose another -o folder.") from exc
    except BaseException:
        shutil.rmtree(built, ignore_errors=True)
        raise
    log.info("Wrote the report %s", out)
    return out / "index.html"
