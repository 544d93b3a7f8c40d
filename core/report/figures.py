"""Static matplotlib figures of the analyses, built from the dict that analyze() returns.

Each builder takes that dict (so a figure can be rebuilt from saved JSON) and returns a
matplotlib Figure made without pyplot: no global figure registry, safe in a worker
thread. A builder whose section is null raises DataError with the skip reason.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import DataError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

REFERENCE_PREFIX = "reference"


def _new_figure(width: float, height: float) -> Figure:
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        # Headless and thread-safe; left alone when an application already chose a backend.
        matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained", dpi=100)
    FigureCanvasAgg(figure)  # draw/save without pyplot; a GUI may attach its own canvas
    return figure


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _section(analysis: Mapping[str, Any], name: str, figure: str) -> dict[str, Any]:
    section = analysis.get(name)
    if not section:
        reason = (analysis.get("skipped") or {}).get(name, "no data")
        raise DataError(
            f"No {figure} figure: {reason}.", "See the analysis notes for what the data lack."
        )
    return section


def _grid(n: int) -> tuple[int, int]:
    cols = min(n, 2)
    return math.ceil(n / cols), cols


# Label positions tried around a point, in order of preference: (dx, dy) as multiples of
# the offset distance, and the text alignment that keeps the label clear of the point.
_SPOTS = (
    (1.0, 0.0, "left", "center"),
    (-1.0, 0.0, "right", "center"),
    (0.7, 0.7, "left", "bottom"),
    (0.7, -0.7, "left", "top"),
    (-0.7, 0.7, "right", "bottom"),
    (-0.7, -0.7, "right", "top"),
    (0.0, 1.0, "center", "bottom"),
    (0.0, -1.0, "center", "top"),
)


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    return width * height if width > 0 and height > 0 else 0.0


def _label_points(
    ax: Axes,
    xs: list[float],
    ys: list[float],
    labels: list[str],
    sizes: list[float] | float = 7.0,
    radii_pt: list[float] | None = None,
) -> None:
    """Label points, each at the spot around it (right, left, diagonals, above, below)
    that overlaps the fewest labels already placed, the other points and the axes edge.
    Earlier points are placed first. Call after scales, data, titles and legends are
    set: the layout is run first so that the spacing is measured at the final axes size."""
    n = len(xs)
    engine = ax.figure.get_layout_engine()
    if engine is not None:
        engine.execute(ax.figure)
    font = [sizes] * n if isinstance(sizes, (int, float)) else list(sizes)
    radii = radii_pt or [3.0] * n
    ax.autoscale_view()
    px_per_pt = ax.figure.dpi / 72.0
    centres = ax.transData.transform(list(zip(xs, ys, strict=True))) if n else []
    frame = ax.bbox.extents
    markers = [
        (cx - r * px_per_pt, cy - r * px_per_pt, cx + r * px_per_pt, cy + r * px_per_pt)
        for (cx, cy), r in zip(centres, radii, strict=True)
    ]
    placed: list[tuple[float, ...]] = []
    for i in range(n):
        cx, cy = centres[i]
        width = (0.62 * font[i] * len(labels[i]) + 2.0) * px_per_pt  # + a gap to neighbours
        height = 1.25 * font[i] * px_per_pt
        distance = (radii[i] * 0.8 + 2.0) * px_per_pt
        options = []
        for k, (fx, fy, ha, va) in enumerate(_SPOTS):
            x0 = cx + fx * distance - {"left": 0.0, "right": width, "center": width / 2}[ha]
            y0 = cy + fy * distance - {"bottom": 0.0, "top": height, "center": height / 2}[va]
            box = (x0, y0, x0 + width, y0 + height)
            outside = width * height - _overlap(box, frame)
            # Text on text is unreadable; text on a translucent bubble is only untidy.
            cost = 4 * outside + 3 * sum(_overlap(box, other) for other in placed)
            cost += 0.5 * sum(_overlap(box, m) for j, m in enumerate(markers) if j != i)
            options.append((cost, k, box))
        _, spot, box = min(options)
        fx, fy, ha, va = _SPOTS[spot]
        placed.append(box)
        ax.annotate(
            labels[i],
            (xs[i], ys[i]),
            xytext=(fx * distance / px_per_pt, fy * distance / px_per_pt),
            textcoords="offset points",
            fontsize=font[i],
            ha=ha,
            va=va,
        )


def _log_if_wide(ax: Axes, values: list[float], axis: str) -> None:
    positive = [v for v in values if v and v > 0]
    if positive and max(positive) / min(positive) > 20:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")


def accuracy_bubbles(analysis: Mapping[str, Any]) -> Figure:
    """Top-1 and top-5 against GFLOPs, bubble area proportional to params."""
    section = _section(analysis, "accuracy_density", "accuracy bubbles")
    models = [m for m in section["models"] if m["gflops"] is not None and m["top1"] is not None]
    if not models:
        raise DataError(
            "No accuracy-vs-FLOPs figure: no model has both FLOPs and accuracy.",
            "Add flops to the data.",
        )
    fig = _new_figure(11, 5)
    axes = fig.subplots(1, 2)
    biggest = max((m["params_m"] or 0.0) for m in models) or 1.0
    scale = 1500.0 / biggest  # the largest bubble gets 1500 pt^2
    labels: list[tuple[Axes, list[float], list[float], list[str], list[float]]] = []
    for ax, key, title in zip(axes, ("top1", "top5"), ("Top-1", "Top-5"), strict=False):
        chosen = [m for m in models if m[key] is not None]
        xs = [m["gflops"] for m in chosen]
        ys = [m[key] for m in chosen]
        sizes = [max((m["params_m"] or 0.0) * scale, 12.0) for m in chosen]
        reference = [str(m["accuracy_source"] or "").startswith(REFERENCE_PREFIX) for m in chosen]
        ax.scatter(
            xs, ys, s=sizes, c=[_colors(1)[0]] * len(xs), alpha=0.45, edgecolors="k", linewidths=0.6
        )
        if any(reference):
            ref_x = [x for x, r in zip(xs, reference, strict=True) if r]
            ref_y = [y for y, r in zip(ys, reference, strict=True) if r]
            ax.scatter(
                ref_x, ref_y, s=10, marker="x", c="k", label="reference accuracy (not measured)"
            )
        _log_if_wide(ax, xs, "x")
        ax.margins(0.12)
        labels.append((ax, xs, ys, [m["model"] for m in chosen], [math.sqrt(s) / 2 for s in sizes]))
        ax.set_xlabel("GFLOPs per image (FLOPs = 2 × MACs)")
        ax.set_ylabel(f"{title} accuracy (%)")
        ax.set_title(f"{title} accuracy vs computation")
        ax.grid(True, alpha=0.3)
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(loc="best", fontsize=8, framealpha=0.85)
    _bubble_size_key(fig, axes[1], biggest, scale)
    for ax, xs, ys, names, radii in labels:  # last: they need the final axes size
        _label_points(ax, xs, ys, names, radii_pt=radii)
    return fig


def _bubble_size_key(fig: Figure, ax: Axes, biggest: float, scale: float) -> None:
    """The bubble-area key, outside the panels on the right. A legend row is only
    0.7 font sizes tall and a circle is drawn centred on it, so the row spacing and the
    frame padding are set from the largest key circle: circles never touch each other or
    the frame, whatever the data's size range, and each label stays level with its circle."""
    values = _size_legend_values(biggest)
    fontsize = 8.0
    diameter_pt = math.sqrt(max(values) * scale) + 1.0  # marker diameter = sqrt(area), + edge
    overflow_pt = max(diameter_pt - 0.7 * fontsize, 0.0)  # beyond the row, both sides together
    handles = [
        ax.scatter([], [], s=v * scale, c="none", edgecolors="k", label=f"{v:g} M params")
        for v in values
    ]
    fig.legend(
        handles=handles,
        loc="outside right center",
        fontsize=fontsize,
        labelspacing=(overflow_pt + 5.0) / fontsize,
        borderpad=(overflow_pt / 2 + 4.0) / fontsize,
        handlelength=diameter_pt / fontsize,
        handletextpad=0.8,
        scatterpoints=1,
        title="bubble area",
        title_fontsize=fontsize,
    )


def _size_legend_values(biggest: float) -> list[float]:
    nice = [1, 2, 5, 10, 20, 50, 100, 200, 500]
    chosen = [v for v in nice if biggest / 12 <= v <= biggest]
    return (
        [chosen[0], chosen[len(chosen) // 2], chosen[-1]]
        if len(chosen) >= 3
        else chosen or [round(biggest, 1)]
    )


def accuracy_density(analysis: Mapping[str, Any]) -> Figure:
    """Top-1 % per million params per model, highest first, with Wilson 95% error bars."""
    section = _section(analysis, "accuracy_density", "accuracy density")
    models = [m for m in section["models"] if m["density"] is not None]
    if not models:
        raise DataError(
            "No accuracy-density figure: no model has both params and accuracy.",
            "Add params to the data.",
        )
    fig = _new_figure(8, max(3.0, 0.32 * len(models) + 1.4))
    ax = fig.subplots()
    ordered = models[::-1]  # barh draws bottom-up; the densest model goes on top
    reference = [str(m["accuracy_source"] or "").startswith(REFERENCE_PREFIX) for m in ordered]
    measured_color, reference_color = _colors(1)[0], "#bbbbbb"
    errors = None
    if any(m["density_ci95"] for m in ordered):
        errors = [
            [m["density"] - m["density_ci95"][0] if m["density_ci95"] else 0.0 for m in ordered],
            [m["density_ci95"][1] - m["density"] if m["density_ci95"] else 0.0 for m in ordered],
        ]
    ax.barh(
        [m["model"] for m in ordered],
        [m["density"] for m in ordered],
        color=[reference_color if r else measured_color for r in reference],
        xerr=errors,
        capsize=3,
        error_kw={"elinewidth": 1},
    )
    ax.set_xlabel("Accuracy density (top-1 % per million parameters)")
    ax.set_ylabel("Model")
    ax.set_title("Accuracy density")
    ax.grid(True, axis="x", alpha=0.3)
    ax.tick_params(axis="y", labelsize=8)
    from matplotlib.patches import Patch

    handles = []
    if not all(reference):
        bars = "error bars: Wilson 95% CI" if errors else "no error bars: n_eval_images unknown"
        handles.append(Patch(color=measured_color, label=f"measured top-1 ({bars})"))
    if any(reference):
        handles.append(
            Patch(color=reference_color, label="reference top-1 (torchvision), not measured")
        )
    ax.legend(handles=handles, loc="lower right", fontsize=8)
    return fig


def _platform_sections(section: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    per = section.get("per_platform")
    if per:
        return [(name, s) for name, s in per.items() if s]
    return [(section["platform"], section)]


def latency_vs_batch(analysis: Mapping[str, Any]) -> Figure:
    """Per-image time against batch size: models as points coloured by cluster, cluster
    centroids, the fitted curve and its 95% prediction band; one panel per platform, each
    with its own legend below it (clusters and fits differ between platforms)."""
    section = _section(analysis, "latency_vs_batch", "latency vs batch")
    panels = _platform_sections(section)
    rows, cols = _grid(len(panels))
    fig = _new_figure(6.2 * cols, 5.4 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (platform, data) in zip(axes, panels, strict=False):
        _latency_panel(ax, platform, data)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    return fig


def _latency_panel(ax: Axes, platform: str, data: Mapping[str, Any]) -> None:
    from matplotlib.ticker import LogFormatter, NullLocator
    from matplotlib.transforms import ScaledTranslation

    colors = _colors(max(data["n_clusters"], 1))
    clusters = data["clusters"]
    clustered = data["n_clusters"] > 1
    times: list[float] = []
    for model, curve in data["curves"].items():
        xs = [float(b) for b in curve]
        ys = list(curve.values())
        times += ys
        color = colors[clusters[model]] if model in clusters else "#999999"
        ax.plot(xs, ys, "o", ms=3.5, color=color, alpha=0.5, lw=0)
        ax.plot(xs, ys, "-", color=color, alpha=0.15, lw=0.8)
    bands: list[float] = []
    for detail in data["cluster_details"]:
        color = colors[detail["label"]]
        n_members = len(detail["models"])
        label = f"cluster {detail['label']} ({n_members} model{'' if n_members == 1 else 's'})"
        fit = detail.get("fit")
        if clustered and fit:
            label += f": {_fit_text(fit)}"
        cx = [float(b) for b in detail["centroids"]]
        ax.plot(cx, list(detail["centroids"].values()), "D", ms=6, color=color, mec="k", mew=0.6,
                label=label)  # fmt: skip
        if clustered and fit:
            bands += _draw_fit(ax, fit, color)
    overall = data.get("fit")
    if overall:
        # With clusters the pooled band spans every cluster and hides them: line only.
        bands += _draw_fit(ax, overall, "k", dashed=clustered, band=not clustered)
        pooled = f"all models: {_fit_text(overall)}"
        ax.plot([], [], "k--" if clustered else "k-", label=pooled)
    if bands:
        ax.fill_between([], [], [], color="0.5", alpha=0.3, label="95% prediction band")
    ax.set_xscale("log", base=2)
    ax.set_xticks(data["batch_sizes"], [str(b) for b in data["batch_sizes"]])
    ax.xaxis.set_minor_locator(NullLocator())
    if times and min(times) > 0:
        # Always log: the fit and its band are multiplicative (symmetric on this axis).
        # Show the bands, but never at the cost of squeezing the measurements.
        ax.set_yscale("log")
        # Plain numbers ("3", "200"), not 3×10⁰; minor labels only on a short range.
        ax.yaxis.set_major_formatter(LogFormatter())
        ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(1.2, 0.6)))
        low = max(min(bands + times), min(times) / 6.0)
        high = min(max(bands + times), max(times) * 6.0)
        ax.set_ylim(low / 1.15, high * 1.15)
    ax.set_xlabel("Batch size")
    ax.set_ylabel("Per-image time (ms)")
    ax.set_title(f"Per-image time vs batch size: {platform}", fontsize=10)
    ax.grid(True, alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        # Below the panel, under the x label: a fixed offset in points, so it holds
        # whatever size the layout gives the axes.
        below = ax.transAxes + ScaledTranslation(0, -32 / 72, ax.figure.dpi_scale_trans)
        ax.legend(
            handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), bbox_transform=below,
            ncols=1 if max(map(len, labels)) > 46 else 2, fontsize=7.5, frameon=False,
            title="◆ centroid (geometric mean); curves chosen by AICc;\n"
            "R² on the log scale over all points (against the centroids)", title_fontsize=7.5,
        )  # fmt: skip


def _fit_text(fit: Mapping[str, Any]) -> str:
    text = f"{fit['formula']}, R² {fit['r2']:.2f}"
    centroids = fit.get("r2_centroids")  # absent from analyses saved before it was added
    return text if centroids is None else f"{text} ({centroids:.2f})"


def _draw_fit(
    ax: Axes, fit: Mapping[str, Any], color: Any, dashed: bool = False, band: bool = True
) -> list[float]:
    """Draw the fitted curve (and its band); return the band's finite values."""
    grid = fit["band"]
    ax.plot(grid["batch_size"], grid["fit_ms"], "--" if dashed else "-", color=color, lw=1.4)
    if not band:
        return []
    lower = [math.nan if v is None else v for v in grid["lower_ms"]]
    upper = [math.nan if v is None else v for v in grid["upper_ms"]]
    ax.fill_between(grid["batch_size"], lower, upper, color=color, alpha=0.15, lw=0)
    return [v for v in lower + upper if math.isfinite(v) and v > 0]


def accuracy_vs_fps(analysis: Mapping[str, Any]) -> Figure:
    """Top-1 against FPS at batch 1, one panel per platform, the Pareto front marked."""
    section = _section(analysis, "pareto", "accuracy vs fps")
    panels = list(section["platforms"].items())
    rows, cols = _grid(len(panels))
    fig = _new_figure(6.2 * cols, 4.8 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (platform, data) in zip(axes, panels, strict=False):
        points = data["points"]
        front = sorted((p for p in points if p["on_front"]), key=lambda p: p["fps"])
        rest = [p for p in points if not p["on_front"]]
        ax.scatter(
            [p["fps"] for p in rest],
            [p["top1"] for p in rest],
            s=22,
            c="#9a9a9a",
            label="dominated",
        )
        ax.scatter(
            [p["fps"] for p in front],
            [p["top1"] for p in front],
            s=40,
            c="#d62728",
            zorder=3,
            label="Pareto-optimal",
        )
        ax.step(
            [p["fps"] for p in front],
            [p["top1"] for p in front],
            where="pre",
            color="#d62728",
            lw=1,
            alpha=0.7,
        )
        _log_if_wide(ax, [p["fps"] for p in points], "x")
        ax.margins(0.12)
        ax.set_xlabel(f"Images per second at batch {data['batch_size']} (FPS)")
        ax.set_ylabel("Top-1 accuracy (%)")
        ax.set_title(f"Accuracy vs speed: {platform}", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    for ax, (_, data) in zip(axes, panels, strict=False):  # last: at the final axes size
        front = sorted((p for p in data["points"] if p["on_front"]), key=lambda p: p["fps"])
        ordered = front + [p for p in data["points"] if not p["on_front"]]
        _label_points(
            ax,
            [p["fps"] for p in ordered],
            [p["top1"] for p in ordered],
            [p["model"] for p in ordered],
            [7.5] * len(front) + [6.0] * (len(ordered) - len(front)),
            [3.6] * len(front) + [2.6] * (len(ordered) - len(front)),
        )
    return fig


def memory_vs_params(analysis: Mapping[str, Any]) -> Figure:
    """Memory (the model's share, the process's, or the device's; the y label says which)
    against fp32 weight size, the fitted line(s) with their equations."""
    section = _section(analysis, "memory_vs_params", "memory vs params")
    panels = list(section["per_platform"].items())
    rows, cols = _grid(len(panels))
    fig = _new_figure(6.2 * cols, 4.8 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    from core.analysis.memory import PARAM_MB_PER_MPARAM

    for ax, (platform, data) in zip(axes, panels, strict=False):
        fits = [f for f in section["fits"] if f["platform"] == platform]
        colors = _colors(len(fits))
        for fit, color in zip(fits, colors, strict=True):
            pts = [p for p in data["points"] if p["line"] == fit["line"]]
            ax.scatter(
                [p["params_mb"] for p in pts],
                [p["memory_mb"] for p in pts],
                s=24,
                color=color,
                zorder=3,
            )
            lo, hi = min(p["params_mb"] for p in pts), max(p["params_mb"] for p in pts)
            ax.plot(
                [lo, hi],
                [fit["intercept"] + fit["slope"] * lo, fit["intercept"] + fit["slope"] * hi],
                color=color,
                lw=1.4,
                label=f"y = {fit['slope']:.2f}x + {fit['intercept']:.0f} MB (R² {fit['r2']:.3f}, {fit['n']} models)",
            )
        top = ax.secondary_xaxis(
            "top", functions=(lambda v: v / PARAM_MB_PER_MPARAM, lambda v: v * PARAM_MB_PER_MPARAM)
        )
        top.set_xlabel("Parameters (millions)")
        ax.set_xlabel("fp32 weights (MB = params × 4 bytes / 2²⁰)")
        ax.set_ylabel(_memory_axis(data))
        if data.get("memory_fallback"):
            ax.text(
                0.98, 0.02, "no baseline RSS in these data:\nprocess figure, framework included",
                transform=ax.transAxes, ha="right", va="bottom", fontsize=7, color="#8a5a00",
            )  # fmt: skip
        ax.set_title(f"Memory vs model size: {platform}", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    return fig


def _memory_axis(data: Mapping[str, Any]) -> str:
    """The y label of a memory panel: what was measured, at which batch size, in MB."""
    batch = data["batch_size"]
    label = data.get("memory_label")
    if label is None:  # an analysis saved before the label was recorded
        name = "device memory" if data["memory_column"] == "peak_device_mem_mb" else "RSS"
        return f"Peak {name} at batch {batch} (MB)"
    text = str(label)
    text = text[:1].upper() + text[1:]
    return text.replace(" (MB)", f" at batch {batch} (MB)")


def speedup(analysis: Mapping[str, Any]) -> Figure:
    """Speed-up over the baseline platform: per model, one bar per batch size; one panel
    per compared platform."""
    section = _section(analysis, "speedup", "speedup")
    table = section["table"]
    platforms = sorted({row["platform"] for row in table})
    batches = sorted({row["batch_size"] for row in table})
    models = sorted({row["model"] for row in table})
    width_in = min(14.0, max(7.0, 0.12 * len(models) * len(batches) + 3.0))
    fig = _new_figure(width_in, 4.2 * len(platforms) + 0.6)
    axes = fig.subplots(len(platforms), 1, squeeze=False).ravel()
    colors = _colors(len(batches))
    width = 0.8 / len(batches)
    for ax, platform in zip(axes, platforms, strict=False):
        lookup = {
            (r["model"], r["batch_size"]): r["speedup"] for r in table if r["platform"] == platform
        }
        for j, batch in enumerate(batches):
            xs = [i + (j - (len(batches) - 1) / 2) * width for i in range(len(models))]
            heights = [lookup.get((m, batch), 0.0) for m in models]
            ax.bar(xs, heights, width=width, color=colors[j], label=f"batch {batch}")
        ax.axhline(1.0, color="k", lw=0.8, ls="--")
        ax.set_xticks(range(len(models)), models, rotation=45, ha="right", fontsize=8)
        ax.set_ylabel("Speed-up (×, > 1 is faster)")
        ax.set_xlabel("Model")
        ax.set_title(
            f"Speed-up of {platform} over {section['baseline']} (ratio of per-image times)",
            fontsize=10,
        )
        ax.grid(True, axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(
        handles, labels, loc="outside right upper", fontsize=8, title="batch size", title_fontsize=8
    )
    return fig


BUILDERS: dict[str, Callable[[Mapping[str, Any]], Figure]] = {
    "accuracy_bubbles": accuracy_bubbles,
    "accuracy_density": accuracy_density,
    "latency_vs_batch": latency_vs_batch,
    "accuracy_vs_fps": accuracy_vs_fps,
    "memory_vs_params": memory_vs_params,
    "speedup": speedup,
}


def build_all(analysis: Mapping[str, Any]) -> tuple[dict[str, Figure], dict[str, str]]:
    """Every figure the analysis has data for: (figures by name, skipped name -> reason)."""
    figures: dict[str, Figure] = {}
    skipped: dict[str, str] = {}
    for name, builder in BUILDERS.items():
        try:
            figures[name] = builder(analysis)
        except DataError as exc:
            skipped[name] = exc.message
    return figures, skipped


def save_all(
    analysis: Mapping[str, Any], directory: str | Path, fmt: str = "png", dpi: int = 150
) -> dict[str, Path]:
    """Write every available figure as ``<name>.<fmt>`` into ``directory``."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    figures, skipped = build_all(analysis)
    paths = {}
    for name, fig in figures.items():
        path = out / f"{name}.{fmt}"
        fig.savefig(path, dpi=dpi)
        paths[name] = path
    for name, reason in skipped.items():
        log.info("figure %s skipped: %s", name, reason)
    return paths
