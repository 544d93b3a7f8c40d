"""Per-layer profiles (--profile-layers) on tiny models whose layers are known: what each
framework's profiler reports, the derived FLOPs, the store, and `backbench layers`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.backends import get_backend
from core.backends.base import ModelSource
from core.backends.profiling import derive_flops
from core.measure.runner import run_sweep
from core.results import Backend, Case, Precision, RunSpec, StoppingRule
from core.store import Store
from service.selftest import INPUT_SIZE, make_onnx

FAST = StoppingRule(target_ci=0.5, min_iters=5, max_time_s=0.3)
CHANNELS = 8
# Conv 3->8, 3x3, padding 1, on 32x32: 2 FLOPs per multiply-add.
CONV_FLOPS = 2 * CHANNELS * INPUT_SIZE * INPUT_SIZE * 3 * 3 * 3
GEMM_FLOPS = 2 * 10 * CHANNELS


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_onnx(tmp_path_factory.mktemp("layers"), CHANNELS)


def test_flops_are_derived_from_shapes_for_convolutions_and_products() -> None:
    assert derive_flops("Convolution", [(1, 3, 32, 32), (8, 3, 3, 3)], [(1, 8, 32, 32)]) == CONV_FLOPS
    # OpenVINO's grouped layout: [groups, out/g, in/g, kh, kw]: a depthwise 3x3 on 16 channels.
    assert derive_flops("GroupConvolution", [(1, 16, 8, 8), (16, 1, 1, 3, 3)], [(1, 16, 8, 8)]) == 2 * 16 * 64 * 9
    assert derive_flops("FullyConnected", [(4, 512), (1000, 512)], [(4, 1000)]) == 2 * 4 * 1000 * 512
    assert derive_flops("Relu", [(1, 8)], [(1, 8)]) is None


@pytest.mark.parametrize(("backend", "device"), [(Backend.OPENVINO, "CPU"), (Backend.ONNXRUNTIME, "cpu")])
def test_the_profile_names_the_executed_layers_with_their_shapes_and_flops(
    tiny_onnx: Path, backend: Backend, device: str
) -> None:
    case = Case(str(tiny_onnx), backend, device, Precision.FP32, 2)
    prepared = get_backend(backend).prepare(case, ModelSource(str(tiny_onnx)))
    try:
        profile = prepared.profile_layers()  # type: ignore[attr-defined]
    finally:
        prepared.close()
    assert profile.iterations >= 3 and profile.profiled_median_ms and profile.profiled_median_ms > 0
    assert all(layer.time_ms >= 0 for layer in profile.layers) and profile.sum_ms > 0
    convs = [layer for layer in profile.layers if "conv" in layer.type.lower()]
    assert len(convs) == 1, [(x.name, x.type) for x in profile.layers]
    (conv,) = convs
    assert conv.input_shapes[0] == (2, 3, INPUT_SIZE, INPUT_SIZE)
    batch, out_channels, height, width = conv.output_shapes[0]
    assert (batch, height, width) == (2, INPUT_SIZE, INPUT_SIZE)
    if backend is Backend.OPENVINO:
        assert out_channels == CHANNELS and conv.flops == 2 * CONV_FLOPS  # batch 2
    else:
        # ONNX Runtime's NCHWc kernel pads the 8 channels to a block of 16, and computes them.
        assert out_channels % CHANNELS == 0 and conv.flops == 2 * CONV_FLOPS * out_channels // CHANNELS
    assert conv.bytes and conv.bytes > 0
    products = [x for x in profile.layers if x.type.lower() in ("fullyconnected", "gemm", "matmul")]
    assert products and products[0].flops == 2 * GEMM_FLOPS
    if backend is Backend.OPENVINO:
        # The exec graph says what was fused: the ReLU went into the convolution.
        assert any("relu" in name.lower() for name in conv.fused) or conv.exec_type
        assert conv.precision == "f32"


def test_a_profiled_run_stores_its_layers_and_the_cli_exports_them(tmp_path: Path, tiny_onnx: Path) -> None:
    db = tmp_path / "results.db"
    spec = RunSpec(models=(str(tiny_onnx),), backend=Backend.OPENVINO, device="CPU", batch_sizes=(1, 4),
                   stopping=FAST, profile_layers=True)  # fmt: skip
    with Store(db) as store:
        run = run_sweep(spec, store)
        measurements = store.measurements(run.id)
    assert [m.status.value for m in measurements] == ["ok", "ok"], [m.error for m in measurements]
    for m in measurements:
        profile = m.layer_profile
        assert profile is not None and profile.source == "openvino perf counters"
        conv = next(x for x in profile.layers if x.type == "Convolution")
        assert conv.flops == m.case.batch_size * CONV_FLOPS
        assert m.stats is not None and m.stats.n >= FAST.min_iters  # the headline came from the timed loop
        assert "profile" in m.phase_s
    env = {**os.environ, "COLUMNS": "200"}
    table = subprocess.run([sys.executable, "-m", "core.cli", "layers", "--db", str(db), "--top", "3"],
                           capture_output=True, text=True, env=env, check=False)  # fmt: skip
    assert table.returncode == 0, table.stderr
    assert "Convolution" in table.stdout and "end-to-end median" in table.stdout and "ratio" in table.stdout
    rows = json.loads(subprocess.run(
        [sys.executable, "-m", "core.cli", "layers", "--db", str(db), "--format", "json", "--batch", "4"],
        capture_output=True, text=True, env=env, check=True,
    ).stdout)  # fmt: skip
    assert {r["batch_size"] for r in rows} == {4}
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)
    conv_row = next(r for r in rows if r["type"] == "Convolution")
    assert conv_row["flops"] == 4 * CONV_FLOPS and conv_row["output_shapes"] == [[4, CHANNELS, INPUT_SIZE, INPUT_SIZE]]
    nothing = subprocess.run([sys.executable, "-m", "core.cli", "layers", "--db", str(db), "-m", "resnet18"],
                             capture_output=True, text=True, env=env, check=False)  # fmt: skip
    assert nothing.returncode == 1 and "--profile-layers" in nothing.stderr


def test_torch_profiles_its_aten_ops(tmp_path: Path) -> None:
    case = Case("squeezenet1_1", Backend.TORCH, "cpu", Precision.FP32, 1)
    prepared = get_backend(Backend.TORCH).prepare(case, ModelSource("squeezenet1_1"))
    try:
        profile = prepared.profile_layers()  # type: ignore[attr-defined]
    finally:
        prepared.close()
    types = [x.type for x in profile.layers]
    assert types.count("aten::conv2d") == 26  # squeezenet1_1's 26 convolutions, in order
    first = next(x for x in profile.layers if x.type == "aten::conv2d")
    assert first.input_shapes[:2] == ((1, 3, 224, 224), (64, 3, 3, 3))
    assert first.flops == 2 * 64 * 111 * 111 * 3 * 3 * 3  # stride 2, no padding: 111x111
    assert profile.source == "torch.profiler"
