"""Figures built from analyze(): labelled, nothing drawn outside the canvas, skips explained."""

from __future__ import annotations

import copy
import subprocess
import sys
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from core.analysis import analyze
from core.errors import DataError
from core.report import figures as figs


def frame(platforms: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    names = [f"model_{g}{i}" for g in range(3) for i in range(3)]
    for p, (backend, device, factor) in enumerate(
        [("torch", "cpu", 1.0), ("openvino", "CPU", 0.5)][:platforms]
    ):
        for j, name in enumerate(names):
            a, b = [(1.5, 6.0), (6.0, 20.0), (25.0, 60.0)][j // 3]
            params = 2e6 + 12e6 * j
            mb = params * 4 / 2**20
            for x in (1, 2, 4, 8, 16):
                rows.append(
                    {
                        "model": name,
                        "backend": backend,
                        "device": device,
                        "precision": "fp32",
                        "batch_size": x,
                        "per_image_ms": factor * (a + b / x) * (1 + 0.02 * rng.standard_normal()),
                        "params": params,
                        "flops": params * 150,
                        "top1": 60.0 + 2 * j,
                        "top5": 80.0 + j,
                        "n_eval_images": 500,
                        "peak_rss_mb": (1.71 if j % 2 else 0.91) * mb + 250 + p,
                    }
                )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def analysis() -> dict[str, Any]:
    return analyze(frame())


def _drawn_outside_canvas(fig: Any) -> list[str]:
    """Axes (with their labels, ticks, annotations) and legends that reach past the canvas."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    canvas = fig.bbox
    outside = []
    for artist in [*fig.axes, *fig.legends]:
        if not artist.get_visible():
            continue
        box = artist.get_tightbbox(renderer)
        if box.x0 < -1 or box.y0 < -1 or box.x1 > canvas.x1 + 1 or box.y1 > canvas.y1 + 1:
            outside.append(f"{type(artist).__name__} {artist.get_label()!r}: {box.bounds}")
    return outside


@pytest.mark.parametrize("name", sorted(figs.BUILDERS))
def test_each_figure_is_labelled_and_nothing_is_clipped(
    analysis: dict[str, Any], name: str
) -> None:
    fig = figs.BUILDERS[name](analysis)
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]
    main_axes = [ax for ax in axes if ax.get_ylabel()]
    assert main_axes, f"{name}: no labelled axes"
    for ax in main_axes:
        assert ax.get_xlabel() and ax.get_title()
        assert ax.has_data()
    assert _drawn_outside_canvas(fig) == []


def test_latency_figure_has_one_panel_per_platform_and_a_band(analysis: dict[str, Any]) -> None:
    fig = figs.latency_vs_batch(analysis)
    titles = sorted(ax.get_title() for ax in fig.axes if ax.get_visible())
    assert [t.split(": ")[1] for t in titles] == ["openvino/CPU/fp32", "torch/cpu/fp32"]
    assert any(ax.collections for ax in fig.axes)  # fill_between bands


def test_each_latency_panel_has_a_legend_for_its_own_clusters() -> None:
    data = frame()
    slow_ov = data["backend"] == "openvino"
    # openvino: one group of models only, so its clusters and fits differ from torch's.
    data = data[~slow_ov | data["model"].str.startswith("model_0")]
    analysis = analyze(data)
    fig = figs.latency_vs_batch(analysis)
    assert fig.legends == []  # no shared legend that describes one panel only
    per = analysis["latency_vs_batch"]["per_platform"]
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 2
    for ax in panels:
        platform = ax.get_title().split(": ")[1]
        legend = ax.get_legend()
        assert legend is not None
        texts = [t.get_text() for t in legend.get_texts()]
        wanted = [
            f"cluster {d['label']} ({len(d['models'])} model"
            for d in per[platform]["cluster_details"]
        ]
        assert len([t for t in texts if t.startswith("cluster ")]) == len(wanted)
        assert all(any(t.startswith(w) for t in texts) for w in wanted)
        pooled = per[platform]["fit"]
        expected = (
            f"all models: {pooled['formula']}, R² {pooled['r2']:.2f} ({pooled['r2_centroids']:.2f})"
        )
        assert expected in texts
        assert ax.get_yscale() == "log"
        for band in ax.collections:  # fill_between: every vertex above 0 ms
            for path in band.get_paths():
                assert (path.vertices[:, 1] > 0).all()
    assert _drawn_outside_canvas(fig) == []


def test_bubble_size_key_circles_clear_each_other_and_the_frame() -> None:
    """Few, small models: the key's largest circle is the largest bubble (1500 pt²)."""
    rows = [
        {"model": m, "batch_size": 1, "per_image_ms": 5.0, "params": p, "flops": f,
         "top1": t, "top5": t + 20}
        for m, p, f, t in (("a", 1.2e6, 1e8, 60.0), ("b", 2.5e6, 6e8, 65.0), ("c", 10e6, 3e9, 70.0))
    ]  # fmt: skip
    fig = figs.accuracy_bubbles(analyze(pd.DataFrame(rows)))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    (key,) = fig.legends
    frame = key.get_frame().get_window_extent(renderer)
    circles = []
    for handle in key.legend_handles:
        ((cx, cy),) = handle.get_offset_transform().transform(handle.get_offsets())
        radius = np.sqrt(handle.get_sizes()[0]) / 2 * fig.dpi / 72
        circles.append((cx, cy, radius))
        assert frame.x0 < cx - radius and cx + radius < frame.x1
        assert frame.y0 < cy - radius and cy + radius < frame.y1
    assert len(circles) >= 2 and max(r for *_, r in circles) > 15  # big enough to matter
    for (x1, y1, r1), (x2, y2, r2) in pairwise(circles):
        assert np.hypot(x1 - x2, y1 - y2) > r1 + r2
    for text, (_, cy, _) in zip(key.get_texts(), circles, strict=True):
        box = text.get_window_extent(renderer)
        assert abs((box.y0 + box.y1) / 2 - cy) < 4  # each label level with its circle
    assert _drawn_outside_canvas(fig) == []


def test_missing_section_raises_with_reason_and_save_all_skips_it(tmp_path: Path) -> None:
    single = analyze(frame(platforms=1))
    with pytest.raises(DataError, match="only one platform"):
        figs.speedup(single)
    paths = figs.save_all(single, tmp_path)
    assert "speedup" not in paths
    assert set(paths) == set(figs.BUILDERS) - {"speedup"}
    for path in paths.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_importing_the_analysis_does_not_load_matplotlib() -> None:
    code = "import sys, core.report.figures, core.analysis.summary; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_memory_axis_names_the_figure_fitted() -> None:
    data = frame(platforms=1)
    model = analyze(data.assign(baseline_rss_mb=240.0))
    fig = figs.memory_vs_params(model)
    assert fig.axes[0].get_ylabel() == "Model memory: peak − baseline RSS at batch 1 (MB)"
    assert not [t for t in fig.axes[0].texts if "no baseline RSS" in t.get_text()]

    old = analyze(data)  # no baseline RSS: the process figure stands in, and the panel says so
    fig = figs.memory_vs_params(old)
    assert fig.axes[0].get_ylabel() == "Process memory: peak RSS at batch 1 (MB)"
    assert [t for t in fig.axes[0].texts if "no baseline RSS" in t.get_text()]
    assert _drawn_outside_canvas(fig) == []

    process = analyze(data.assign(baseline_rss_mb=240.0), memory="process")
    assert figs.memory_vs_params(process).axes[0].get_ylabel() == "Process memory: peak RSS at batch 1 (MB)"


def test_memory_axis_of_an_analysis_saved_before_the_label(analysis: dict[str, Any]) -> None:
    saved = copy.deepcopy(analysis)
    for part in saved["memory_vs_params"]["per_platform"].values():
        del part["memory_label"], part["memory_fallback"]
    assert figs.memory_vs_params(saved).axes[0].get_ylabel() == "Peak RSS at batch 1 (MB)"
