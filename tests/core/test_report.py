"""The HTML report: a complete, self-contained folder, escaped, never clobbering."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.errors import DataError, UsageError
from core.predict.evaluate import evaluation_rows
from core.report.figures import BUILDERS
from core.report.html import MARKER, write_report
from core.results import (
    Backend,
    Case,
    LatencyStats,
    LayerProfile,
    LayerRecord,
    Measurement,
    Precision,
    RunSpec,
    Status,
)
from core.store import Store
from core.zoo import model_complexity

MODELS = ("squeezenet1_1", "mobilenet_v3_small", "resnet18", "resnet50", "vgg11", "densenet121")
TWO_PLATFORMS = (("torch", "cpu", "fp32", 1.0), ("openvino", "CPU", "fp32", 0.45))
HOSTILE = "<script>alert('x')</script>&"


def synthetic(
    models: tuple[str, ...] = MODELS,
    platforms: tuple[tuple[str, str, str, float], ...] = TWO_PLATFORMS,
    batches: tuple[int, ...] = (1, 2, 4, 8),
    memory: bool = True,
    seed: int = 3,
) -> pd.DataFrame:
    """Per-image time from FLOPs with a per-batch overhead; RSS on two lines by size."""
    rng = np.random.default_rng(seed)
    rows = []
    for model in models:
        facts = model_complexity(model)
        params, flops = (facts.params, facts.flops) if facts else (3_000_000, 1_500_000_000)
        weights_mb = params * 4 / 2**20
        for backend, device, precision, factor in platforms:
            for batch in batches:
                per_image = factor * (flops / 4e8 * (0.6 + 0.4 / batch) + 3.0 / batch)
                per_image *= float(np.exp(rng.normal(0, 0.03)))
                rss = 300 + 1.7 * weights_mb if params > 50e6 else 250 + 0.9 * weights_mb
                rows.append(
                    {
                        "model": model, "backend": backend, "device": device,
                        "precision": precision, "batch_size": batch, "mode": "latency",
                        "per_image_ms": per_image, "latency_ms_median": per_image * batch,
                        "throughput_ips": 1000.0 / per_image,
                        "peak_rss_mb": rss + rng.normal(0, 2) if memory else None,
                        "params": params, "flops": flops, "status": "ok",
                    }
                )  # fmt: skip
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def full_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reports") / "full"
    manifest = {
        "host": "lab-<1>",
        "cpu_model": "Xeon",
        "cores_logical": 8,
        "packages": {"torch": "2.4"},
    }
    index = write_report(
        synthetic(), out, title="Lab & co", run_label="CSV x.csv", predictor=False,
        manifests=[manifest],
    )  # fmt: skip
    assert index == out / "index.html"
    return out


def test_report_holds_every_figure_table_and_the_analysis(full_report: Path) -> None:
    for name in BUILDERS:
        for ext in ("png", "svg"):
            path = full_report / "figures" / f"{name}.{ext}"
            assert path.is_file() and path.stat().st_size > 1000, path
    tables = {p.name for p in (full_report / "tables").glob("*.csv")}
    assert {"measurements.csv", "accuracy.csv", "latency_fits.csv", "pareto.csv"} <= tables
    assert {"memory_fits.csv", "speedup.csv", "speedup_geomean.csv"} <= tables
    measured = pd.read_csv(full_report / "tables" / "measurements.csv")
    assert len(measured) == len(MODELS) * 2 * 4
    analysis = json.loads(
        (full_report / "analysis.json").read_text(), parse_constant=lambda c: pytest.fail(c)
    )
    assert analysis["speedup"] is not None and analysis["latency_vs_batch"] is not None
    assert (full_report / MARKER).is_file()
    assert not list(full_report.parent.glob(".full.*")), "temporary folders left behind"


def test_index_links_every_file_and_fetches_nothing(full_report: Path) -> None:
    page = (full_report / "index.html").read_text()
    for name in BUILDERS:
        assert f'src="figures/{name}.png"' in page
        assert f'href="figures/{name}.svg"' in page
    for link in re.findall(r'(?:href|src)="([^"#]+)"', page):
        assert not re.match(r"[a-z]+:", link), f"external asset {link}"
        assert (full_report / link).is_file(), f"broken link {link}"
    assert "<script" not in page
    # Generated text and numbers from the analysis are on the page.
    analysis = json.loads((full_report / "analysis.json").read_text())
    assert analysis["speedup"]["says"].split(":")[0] in page
    assert "Lab &amp; co" in page and "lab-&lt;1&gt;" in page  # title and manifest escaped
    assert '<td class="n">' in page  # numbers right-aligned
    # predictor=False is a skipped part with its reason, not a silent gap.
    assert re.search(r"<b>prediction</b>: not requested", page)


def test_model_names_are_escaped_everywhere(tmp_path: Path) -> None:
    frame = synthetic(models=("resnet18", "vgg11", HOSTILE), platforms=TWO_PLATFORMS[:1])
    index = write_report(frame, tmp_path / "r", predictor=False)
    page = index.read_text()
    assert "<script" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&amp;" in page
    assert HOSTILE in (tmp_path / "r" / "tables" / "measurements.csv").read_text()


def test_skipped_sections_are_listed_with_reasons(tmp_path: Path) -> None:
    frame = synthetic(platforms=TWO_PLATFORMS[:1], memory=False, models=MODELS[:4])
    page = write_report(frame, tmp_path / "r", predictor=False).read_text()
    summary = page.split('<section id="accuracy">')[0]
    assert "Skipped parts" in summary
    assert re.search(r"<b>speedup</b>: only one platform", summary)
    assert re.search(r"<b>memory_vs_params</b>: [^<]*memory", summary)
    speedup = page.split('<section id="speedup">')[1].split("</section>")[0]
    assert "Skipped:" in speedup and "only one platform" in speedup
    assert not (tmp_path / "r" / "figures" / "speedup.png").exists()


def test_prediction_section_shows_evaluation_or_the_reason(tmp_path: Path) -> None:
    small = synthetic(models=MODELS[:2], platforms=TWO_PLATFORMS[:1], batches=(1, 2, 4))
    page = write_report(small, tmp_path / "few", predictor=True).read_text()
    prediction = page.split('<section id="prediction">')[1].split("</section>")[0]
    assert "Skipped:" in prediction and "at least 3 models" in prediction

    frame = synthetic(models=MODELS[:4], platforms=TWO_PLATFORMS[:1], batches=(1, 2, 4))
    out = tmp_path / "ok"
    page = write_report(frame, out, predictor=True).read_text()
    prediction = page.split('<section id="prediction">')[1].split("</section>")[0]
    assert "Skipped" not in prediction and "FLOPs-only" in prediction
    evaluation = json.loads((out / "prediction.json").read_text())
    assert f"{100 * evaluation['within_10pct']:.1f}%" in prediction
    rows = pd.read_csv(out / "tables" / "prediction.csv")
    assert list(rows["platform"]) == ["all platforms", "torch/cpu/fp32"]


def test_refuses_to_clobber_a_folder_that_is_not_a_report(tmp_path: Path) -> None:
    target = tmp_path / "thesis"
    target.mkdir()
    (target / "chapter1.tex").write_text("precious")
    with pytest.raises(UsageError, match="not a backbench report"):
        write_report(synthetic(), target, predictor=False)
    assert (target / "chapter1.tex").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis"]
    file_target = tmp_path / "file.html"
    file_target.write_text("x")
    with pytest.raises(UsageError, match="is a file"):
        write_report(synthetic(), file_target, predictor=False)


def test_replaces_an_earlier_report_whole(tmp_path: Path) -> None:
    out = tmp_path / "r"
    frame = synthetic(models=MODELS[:3], platforms=TWO_PLATFORMS[:1])
    write_report(frame, out, predictor=False)
    (out / "stale.txt").write_text("from the old report")
    write_report(frame, out, predictor=False)
    assert not (out / "stale.txt").exists()
    assert (out / "index.html").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


def test_a_failure_leaves_no_half_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import core.report.html

    def broken(*args: object) -> str:
        raise RuntimeError("boom")

    monkeypatch.setattr(core.report.html, "_index_html", broken)
    with pytest.raises(RuntimeError):
        write_report(synthetic(models=MODELS[:3]), tmp_path / "r", predictor=False)
    assert list(tmp_path.iterdir()) == []


def test_unusable_data_is_a_data_error_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="per_image_ms"):
        write_report(pd.DataFrame({"model": ["a"], "batch_size": [1]}), tmp_path / "r")
    assert list(tmp_path.iterdir()) == []


def test_prediction_table_rows_put_each_metric_next_to_the_baseline() -> None:
    # The numbers' display rounding is core.text's (tests/core/test_text.py).
    rows = evaluation_rows(
        {"n": 4, "within_10pct": 0.5, "baseline": {"within_10pct": 0.25}, "per_platform": {}}
    )
    assert rows == [
        {
            "platform": "all platforms", "n": 4, "within_10pct": 0.5, "baseline_within_10pct": 0.25,
            "within_5pct": None, "baseline_within_5pct": None, "mape": None,
            "baseline_mape": None, "spearman": None, "baseline_spearman": None,
        }
    ]  # fmt: skip


# -- the model's memory and disturbed measurements ---------------------------------------------


def measured_now(frame: pd.DataFrame, disturbed_every: int = 5) -> pd.DataFrame:
    """``frame`` as a store written since issue 9 gives it: a baseline RSS (the framework,
    200 MB) and other processes' CPU use, every ``disturbed_every``-th row disturbed."""
    frame = frame.assign(baseline_rss_mb=200.0)
    frame["model_rss_mb"] = frame["peak_rss_mb"] - 200.0
    disturbed = frame.index % disturbed_every == 0
    frame["interference"] = np.where(disturbed, 0.42, 0.01)
    frame["disturbed"] = disturbed
    return frame


def section(page: str, sid: str) -> str:
    return page.split(f'<section id="{sid}">')[1].split("</section>")[0]


def summary_fact(page: str, name: str) -> str:
    match = re.search(rf"<dt>{name}</dt><dd>([^<]*)</dd>", page)
    assert match, f"no {name} in the data summary"
    return match.group(1)


@pytest.fixture(scope="module")
def disturbed_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    frame = measured_now(synthetic())
    out = tmp_path_factory.mktemp("reports") / "disturbed"
    write_report(frame, out, predictor=False)
    return out, frame


def test_disturbed_rows_are_marked_and_model_memory_shown(
    disturbed_report: tuple[Path, pd.DataFrame],
) -> None:
    out, frame = disturbed_report
    page = (out / "index.html").read_text()
    n_disturbed = int(frame["disturbed"].sum())
    table = section(page, "measurements")
    assert table.count('<tr class="disturbed">') == n_disturbed == (len(frame) + 4) // 5
    assert table.count("⚠ disturbed</td>") == n_disturbed
    assert "<th class=n>model memory (MB)</th>" in table
    assert "other processes&#x27; CPU (cores)" in table
    assert f"{n_disturbed} of {len(frame)} measurements were disturbed" in table
    assert (
        summary_fact(page, "disturbed")
        == f"{n_disturbed} of {len(frame)} measurements, included and marked ⚠"
    )
    assert summary_fact(page, "memory") == "model memory: peak − baseline RSS (MB)"
    analysis = json.loads((out / "analysis.json").read_text())
    assert {f["memory_column"] for f in analysis["memory_vs_params"]["fits"]} == {"model_rss_mb"}
    assert analysis["input"]["rows_disturbed"] == n_disturbed
    memory = section(page, "memory_vs_params")
    assert (
        "Memory plotted: model memory: peak − baseline RSS (MB)." in memory
        and 'class="warn"' not in memory
    )


def test_exclude_disturbed_leaves_them_out_of_the_report_and_the_predictor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import core.report.html

    frame = measured_now(
        synthetic(models=MODELS[:4], platforms=TWO_PLATFORMS[:1], batches=(1, 2, 4))
    )
    trained: list[pd.DataFrame] = []

    def evaluate(df: pd.DataFrame) -> dict:
        trained.append(df)
        return {"n": len(df), "within_10pct": 0.5, "baseline": {}, "per_platform": {}, "notes": []}

    monkeypatch.setattr(core.report.html, "evaluate", evaluate)
    out = tmp_path / "r"
    page = write_report(frame, out, predictor=True, exclude_disturbed=True).read_text()
    n_disturbed = int(frame["disturbed"].sum())
    assert n_disturbed > 0
    assert len(trained) == 1 and len(trained[0]) == len(frame) - n_disturbed
    assert not trained[0]["disturbed"].any()
    assert summary_fact(page, "disturbed") == f"{n_disturbed} measurement(s) left out"
    table = section(page, "measurements")
    assert 'class="disturbed"' not in table and "⚠" not in table
    assert f"{n_disturbed} disturbed measurement(s) left out of every analysis and table" in table
    assert table.count("<tr>") == len(frame) - n_disturbed + 1  # + the header row
    # The CSV keeps what was read, each row with its flag.
    assert len(pd.read_csv(out / "tables" / "measurements.csv")) == len(frame)


def test_memory_process_and_the_fallback_of_old_data(full_report: Path, tmp_path: Path) -> None:
    # full_report's data predate the baseline RSS: the process figure, said where it shows.
    page = (full_report / "index.html").read_text()
    assert summary_fact(page, "memory").startswith("process memory: peak RSS (MB); the model")
    memory = section(page, "memory_vs_params")
    assert 'class="warn"' in memory and "no model with a baseline RSS" in memory
    assert "disturbed" not in section(page, "measurements")  # old data: nothing to mark
    assert summary_fact(page, "disturbed") == "none marked"

    frame = measured_now(synthetic(models=MODELS[:4], platforms=TWO_PLATFORMS[:1]))
    page = write_report(frame, tmp_path / "p", predictor=False, memory="process").read_text()
    assert summary_fact(page, "memory") == "process memory: peak RSS (MB)"
    assert 'class="warn"' not in section(page, "memory_vs_params")
    analysis = json.loads((tmp_path / "p" / "analysis.json").read_text())
    assert analysis["input"]["memory"] == "process"
    with pytest.raises(UsageError, match="Unknown memory figure"):
        write_report(frame, tmp_path / "q", predictor=False, memory="gpu")
    assert not (tmp_path / "q").exists()


# -- per-layer profiles (run --profile-layers) -----------------------------------------------

PROFILED_MODELS = ("resnet18", "mobilenet_v3_small", "squeezenet1_1", "resnet50")
# name, type, exec type at fp32, ms at fp32, ms at bf16, fused original layers
RESNET18_LAYERS = (
    ("x_abcd_acdb_Multiply_5466", "Reorder", "reorder_brgemm_f32", 0.18, 0.10, ()),
    ("Multiply_5466", "Convolution", "brgconv_avx512_f32", 1.00, 0.35, ("Multiply_5466", "__module.relu/aten::relu_/Relu")),
    ("__module.maxpool/aten::max_pool2d/MaxPool", "Pooling", "jit_avx512_f32", 0.16, 0.08, ()),
    ("Multiply_5578", "Convolution", "brgconv_avx512_f32", 1.27, 0.41, ("Multiply_5578", "__module.layer4.0/aten::add_/Add")),
    ("__module.fc/aten::linear/Add", "FullyConnected", "gemm_mlas_f32", 0.157, 0.06, ()),
)  # fmt: skip


def resnet18_profile(bf16: bool) -> LayerProfile:
    """resnet18's layers as OpenVINO's CPU plugin runs them at fp32 or at bf16 (AMX)."""
    layers = []
    for name, kind, exec_type, ms32, ms16, fused in RESNET18_LAYERS:
        if bf16:
            exec_type = exec_type.replace("_f32", "_amx_bf16" if kind == "Convolution" else "_bf16")
        layers.append(LayerRecord(
            name, kind, exec_type, ms16 if bf16 else ms32, output_shapes=((1, 64, 56, 56),),
            flops=231_211_008 if kind == "Convolution" else None, fused=fused,
        ))  # fmt: skip
    return LayerProfile(50, tuple(layers), None, "openvino perf counters")


def profiled_store(path: Path, with_profiles: bool) -> Path:
    """A store of OpenVINO CPU fp32 and bf16 runs of four models at batch 1 and 2; with
    ``with_profiles``, resnet18 at batch 1 carries a per-layer profile on both, and takes
    4.2 ms (fp32) and 1.6 ms (bf16) end to end."""
    with Store(path) as store:
        for precision, factor in ((Precision.FP32, 1.0), (Precision.BF16, 0.4)):
            spec = RunSpec(models=PROFILED_MODELS, backend=Backend.OPENVINO, device="CPU", precision=precision)
            run = store.create_run(spec, {"host": "lab"}, name=f"ov-{precision.value}")
            for model in PROFILED_MODELS:
                facts = model_complexity(model)
                for batch in (1, 2):
                    ms = factor * (facts.flops / 4e8 if facts else 5.0) * (0.7 + 0.3 / batch) * batch + 0.4
                    profile = None
                    if with_profiles and model == "resnet18" and batch == 1:
                        bf16 = precision is Precision.BF16
                        profile, ms = resnet18_profile(bf16), (1.6 if bf16 else 4.2)
                    samples = [int(ms * 1e6 * f) for f in (0.98, 1.0, 1.0, 1.02, 0.99)]
                    case = Case(model, Backend.OPENVINO, "CPU", precision, batch)
                    store.add_measurement(run.id, Measurement(case, Status.OK, LatencyStats.from_samples(samples),
                                                              layer_profile=profile))  # fmt: skip
    return path


def without_stamp(page: str) -> str:
    return re.sub(r"generated \d{4}-\d\d-\d\d \d\d:\d\d", "generated -", page)


def test_layers_are_matched_by_name_then_fused_layers_then_order() -> None:
    from core.report.layers import match_counts, match_layers

    def layer(name: str, kind: str, *fused: str) -> LayerRecord:
        return LayerRecord(name, kind, "", 1.0, fused=(name, *fused))

    fp32 = [layer("Multiply_1", "Convolution", "__module.relu/aten::relu_/Relu"),
            layer("Multiply_2", "Convolution", "__module.layer1.0.relu/aten::relu_/Relu"),
            layer("Pool_3", "Reduce"), layer("fc", "FullyConnected")]  # fmt: skip
    bf16 = [layer("Multiply_1", "Convolution"), layer("Multiply_9", "Convolution", "__module.layer1.0.relu/aten::relu_/Relu"),
            layer("Convert_5", "Convert"), layer("Pool_7", "Reduce"), layer("fc", "FullyConnected")]  # fmt: skip
    matches = match_layers(fp32, bf16)
    assert [(m.a, m.b, m.how) for m in matches] == [
        (0, 0, "name"), (1, 1, "fused"), (2, 3, "order"), (3, 4, "name"), (None, 2, ""),
    ]  # fmt: skip
    assert match_counts(matches) == {"name": 2, "fused": 1, "order": 1, "only_a": 0, "only_b": 1}


def test_profiles_add_a_per_layer_figure_per_platform_and_tables(tmp_path: Path) -> None:
    from core.analysis.load import load_store
    from core.report.layers import load_profiles

    db = profiled_store(tmp_path / "profiled.db", with_profiles=True)
    profiles = load_profiles(db)
    assert len(profiles) == 2
    out = tmp_path / "r"
    page = write_report(load_store(db).frame, out, predictor=False, layer_profiles=profiles).read_text()
    for name in ("layers_openvino_cpu_fp32", "layers_openvino_cpu_bf16"):
        for ext in ("png", "svg"):
            path = out / "figures" / f"{name}.{ext}"
            assert path.is_file() and path.stat().st_size > 1000, path
        assert f'src="figures/{name}.png"' in page
    layers = pd.read_csv(out / "tables" / "layers.csv")
    assert len(layers) == 2 * len(RESNET18_LAYERS)
    assert set(layers["exec_type"]) >= {"brgconv_avx512_f32", "brgconv_avx512_amx_bf16"}
    summary = pd.read_csv(out / "tables" / "layer_profiles.csv").set_index("platform")
    fp32 = summary.loc["openvino/CPU/fp32"]
    assert fp32["layer_sum_ms"] == pytest.approx(2.767) and fp32["overhead_ms"] == pytest.approx(4.2 - 2.767, rel=0.02)
    assert fp32["top_type"] == "Convolution" and fp32["slowest_layer"] == "Multiply_5578"
    body = section(page, "layers")
    assert "Per-layer profiles" in body and "end-to-end median" in body
    assert "Multiply_5578" in body and "brgconv_avx512_amx_bf16" in body
    assert 'href="#layers"' in page
    assert page.index('<section id="layers">') < page.index('<section id="measurements">')


def test_without_profiles_the_report_is_unchanged(tmp_path: Path) -> None:
    from core.analysis.load import load_store
    from core.report.layers import load_profiles

    db = profiled_store(tmp_path / "plain.db", with_profiles=False)
    assert load_profiles(db) == []
    frame = load_store(db).frame
    plain = write_report(frame, tmp_path / "plain", predictor=False)
    given = write_report(frame, tmp_path / "given", predictor=False, layer_profiles=load_profiles(db))

    def files(root: Path) -> list[str]:
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())

    assert files(tmp_path / "plain") == files(tmp_path / "given")
    assert not [f for f in files(tmp_path / "given") if "layer" in f]
    assert without_stamp(given.read_text()) == without_stamp(plain.read_text())
    assert 'id="layers"' not in given.read_text()
