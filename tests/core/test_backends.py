"""The three inference backends on CPU, with tiny models.

The central check is ``test_backends_agree_on_logits``: the same model and input give the
same logits on torch, OpenVINO (f32) and ONNX Runtime, which is what makes the torch ->
IR / ONNX conversions trustworthy enough to compare latencies across frameworks.
"""

from __future__ import annotations

import importlib.util
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import core.backends as backends
from core.backends import available_backends, check_case, convert, get_backend
from core.backends.base import ModelSource
from core.errors import (
    BackendUnavailableError,
    DeviceUnavailableError,
    ModelFileError,
    PrecisionUnsupportedError,
    UsageError,
)
from core.results import Backend, Case, Mode, Precision

ALL_BACKENDS = [Backend.TORCH, Backend.OPENVINO, Backend.ONNXRUNTIME]
CPU = {Backend.TORCH: "cpu", Backend.OPENVINO: "CPU", Backend.ONNXRUNTIME: "cpu"}
ZOO_MODEL = "squeezenet1_1"  # the cheapest torchvision classifier to convert


def _case(
    backend: Backend,
    batch: int = 2,
    precision: Precision = Precision.FP32,
    mode: Mode = Mode.LATENCY,
    device: str | None = None,
    model: str = "tiny",
) -> Case:
    return Case(model, backend, device or CPU[backend], precision, batch, mode)


def _tiny_cnn() -> torch.nn.Module:
    # Stride 4 keeps a 224x224 forward (the default input size of a .pt file) cheap.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        return torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, stride=4),
            torch.nn.BatchNorm2d(8),
            torch.nn.ReLU(),
            torch.nn.Conv2d(8, 16, 3, stride=2),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
            torch.nn.Linear(16, 10),
        ).eval()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny.pt (TorchScript), tiny.onnx (dynamic batch) and tiny_b1.onnx (fixed batch 1)."""
    root = tmp_path_factory.mktemp("models")
    module = _tiny_cnn()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit / legacy ONNX exporter deprecations
        torch.jit.script(module).save(str(root / "tiny.pt"))
        convert.export_onnx(module, (3, 224, 224), root / "tiny.onnx", convert.DEFAULT_ONNX_OPSET)
        torch.onnx.export(
            module, (torch.zeros(1, 3, 224, 224),), str(root / "tiny_b1.onnx"), dynamo=False
        )
    return root


@pytest.fixture(scope="session")
def zoo_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One conversion cache for the zoo model, shared by the tests that use it."""
    return tmp_path_factory.mktemp("zoo-cache")


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv(convert.CACHE_DIR_ENV, str(path))
    return path


@pytest.fixture()
def tiny(model_dir: Path) -> ModelSource:
    return ModelSource(str(model_dir / "tiny.pt"))


# -- every backend runs ---------------------------------------------------------------


@pytest.mark.parametrize("backend", ALL_BACKENDS, ids=lambda b: b.value)
def test_backend_prepares_and_times_on_cpu(backend: Backend, tiny: ModelSource) -> None:
    phases: list[str] = []
    prepared = get_backend(backend).prepare(_case(backend), tiny, phases.append)
    try:
        samples = [prepared.infer_ns() for _ in range(3)]
        assert all(isinstance(s, int) and s > 0 for s in samples)
        assert phases[:2] == ["load", "compile"]
        assert prepared.config["input_shape"] == [2, 3, 224, 224]
        assert prepared.device_memory_mb() == {}  # CPU
        prepared.reset_peak_device_memory()
    finally:
        prepared.close()


@pytest.mark.parametrize("backend", [Backend.TORCH, Backend.ONNXRUNTIME], ids=lambda b: b.value)
def test_synchronous_backends_run_throughput_mode_one_at_a_time(
    backend: Backend, tiny: ModelSource
) -> None:
    prepared = get_backend(backend).prepare(_case(backend, mode=Mode.THROUGHPUT), tiny)
    done: list[int] = []
    prepared.submit(done.append)
    assert len(done) == 1 and done[0] > 0  # reported before submit returned
    prepared.drain()
    assert prepared.max_in_flight() == 1
    assert prepared.config["streams"] == 1 and prepared.config["async"] is False


def test_torch_config_records_runtime_settings(tiny: ModelSource) -> None:
    config = (
        get_backend("torch").prepare(_case(Backend.TORCH, precision=Precision.BF16), tiny).config
    )
    assert config["dtype"] == "bfloat16"
    assert config["num_threads"] == torch.get_num_threads()
    assert {
        "num_interop_threads",
        "mkldnn_enabled",
        "cudnn_benchmark",
        "torch_version",
        "device_name",
    } <= set(config)
    assert config["timer"] == "perf_counter_ns"


def test_onnxruntime_config_records_session_settings(tiny: ModelSource) -> None:
    config = get_backend("onnxruntime").prepare(_case(Backend.ONNXRUNTIME), tiny).config
    assert config["providers"] == ["CPUExecutionProvider"]
    assert config["graph_optimization_level"] == "ORT_ENABLE_ALL"
    assert {"intra_op_num_threads", "inter_op_num_threads", "onnxruntime_version"} <= set(config)


# -- the conversions are faithful ------------------------------------------------------


def _assert_logits_close(got: np.ndarray, ref: np.ndarray) -> None:
    assert got.shape == ref.shape
    scale = float(np.abs(ref).max())
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * scale)


def test_backends_agree_on_logits(tiny: ModelSource) -> None:
    ref = get_backend("torch").prepare(_case(Backend.TORCH, batch=3), tiny).outputs()
    assert ref.shape == (3, 10)
    assert float(ref.std()) > 1e-3  # non-trivial logits, or the comparison proves nothing
    for backend in (Backend.OPENVINO, Backend.ONNXRUNTIME):
        prepared = get_backend(backend).prepare(_case(backend, batch=3), tiny)
        _assert_logits_close(prepared.outputs(), ref)


def test_zoo_model_agrees_across_backends(zoo_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real torchvision model, converted by openvino.convert_model and torch.onnx.export,
    each from its own random-init build: equal logits also prove the seeded weights."""
    monkeypatch.setenv(convert.CACHE_DIR_ENV, str(zoo_cache))
    source = ModelSource(ZOO_MODEL)
    outputs = {}
    for backend in ALL_BACKENDS:
        torch.rand(3)  # as if each backend ran in its own process with its own RNG history
        outputs[backend] = (
            get_backend(backend).prepare(_case(backend, batch=1, model=ZOO_MODEL), source).outputs()
        )
    ref = outputs[Backend.TORCH]
    assert ref.shape == (1, 1000) and float(ref.std()) > 1e-6
    _assert_logits_close(outputs[Backend.OPENVINO], ref)
    _assert_logits_close(outputs[Backend.ONNXRUNTIME], ref)


def test_random_zoo_weights_are_the_same_in_every_build() -> None:
    first, _ = convert.load_torch_module(ModelSource(ZOO_MODEL))
    torch.rand(3)  # whatever else a process draws must not change the model's weights
    second, label = convert.load_torch_module(ModelSource(ZOO_MODEL))
    assert label == "random"
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_one_ir_conversion_serves_every_batch_size(
    tiny: ModelSource, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Path] = []
    real_export = convert.export_ir

    def counting_export(module: object, size: tuple[int, int, int], target: Path) -> None:
        calls.append(target)
        real_export(module, size, target)

    monkeypatch.setattr(convert, "export_ir", counting_export)
    ov = get_backend("openvino")
    small = ov.prepare(_case(Backend.OPENVINO, batch=1), tiny)
    ir = Path(small.config["model_path"])
    mtime = ir.stat().st_mtime_ns
    large = ov.prepare(_case(Backend.OPENVINO, batch=3), tiny)
    assert len(calls) == 1
    assert ir.parent == cache_dir / "ir" and ir.with_suffix(".bin").is_file()
    assert Path(large.config["model_path"]) == ir and ir.stat().st_mtime_ns == mtime
    assert small.config["input_shape"] == [1, 3, 224, 224]
    assert large.config["input_shape"] == [3, 3, 224, 224]
    # random_batch draws in C order, so image 0 is the same in both batches: same weights,
    # same first row of logits.
    _assert_logits_close(large.outputs()[:1], small.outputs())
    assert not list(ir.parent.glob(".*.tmp*"))  # no temporary files left behind


def test_onnx_export_is_cached(tiny: ModelSource, cache_dir: Path) -> None:
    first = convert.ensure_onnx(tiny)
    second = convert.ensure_onnx(tiny)
    assert first.converted and not second.converted
    assert first.path == second.path and first.path.parent == cache_dir / "onnx"


def test_concurrent_conversions_produce_one_file(tiny: ModelSource) -> None:
    """Workers for two batch sizes may start at once; the lock makes one convert and the
    other reuse its file."""
    results: list[convert.ConvertedModel] = []
    barrier = threading.Barrier(2)

    def convert_once() -> None:
        barrier.wait()
        results.append(convert.ensure_onnx(tiny))

    threads = [threading.Thread(target=convert_once) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(r.converted for r in results) == [False, True]
    assert results[0].path == results[1].path


# -- model files -----------------------------------------------------------------------


@pytest.mark.parametrize("backend", [Backend.OPENVINO, Backend.ONNXRUNTIME], ids=lambda b: b.value)
def test_onnx_file_runs_directly(backend: Backend, model_dir: Path, cache_dir: Path) -> None:
    prepared = get_backend(backend).prepare(
        _case(backend, batch=2), ModelSource(str(model_dir / "tiny.onnx"))
    )
    assert prepared.infer_ns() > 0
    assert Path(prepared.config["model_path"]) == model_dir / "tiny.onnx"
    assert not cache_dir.exists()  # nothing converted


def test_openvino_ir_file_runs(model_dir: Path, tmp_path: Path) -> None:
    import openvino as ov

    xml = tmp_path / "user.xml"
    ov.save_model(
        ov.Core().read_model(str(model_dir / "tiny.onnx")), str(xml), compress_to_fp16=False
    )
    prepared = get_backend("openvino").prepare(
        _case(Backend.OPENVINO, batch=4), ModelSource(str(xml))
    )
    assert (
        prepared.config["input_shape"] == [4, 3, 224, 224]
        and prepared.config["model_format"] == "ir"
    )
    with pytest.raises(ModelFileError, match="onnxruntime cannot read|OpenVINO IR"):
        get_backend("onnxruntime").prepare(_case(Backend.ONNXRUNTIME), ModelSource(str(xml)))


def test_fixed_batch_onnx_is_reshaped_by_openvino_but_refused_by_onnxruntime(
    model_dir: Path,
) -> None:
    source = ModelSource(str(model_dir / "tiny_b1.onnx"))
    prepared = get_backend("openvino").prepare(_case(Backend.OPENVINO, batch=2), source)
    assert prepared.config["input_shape"] == [2, 3, 224, 224]
    with pytest.raises(ModelFileError, match="fixed batch size of 1"):
        get_backend("onnxruntime").prepare(_case(Backend.ONNXRUNTIME, batch=2), source)


@pytest.mark.parametrize("backend", [Backend.OPENVINO, Backend.ONNXRUNTIME], ids=lambda b: b.value)
def test_missing_or_corrupt_onnx_is_a_model_file_error(backend: Backend, tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="not found"):
        get_backend(backend).prepare(_case(backend), ModelSource(str(tmp_path / "absent.onnx")))
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage" * 50)
    with pytest.raises(ModelFileError) as info:
        get_backend(backend).prepare(_case(backend), ModelSource(str(corrupt)))
    assert info.value.hint  # says what to do


@pytest.mark.parametrize("suffix", ["onnx", "xml"])
def test_torch_refuses_onnx_and_ir_files(suffix: str, model_dir: Path, tmp_path: Path) -> None:
    path = model_dir / "tiny.onnx"
    if suffix == "xml":
        import openvino as ov

        path = tmp_path / "tiny.xml"
        ov.save_model(ov.Core().read_model(str(model_dir / "tiny.onnx")), str(path))
    with pytest.raises(UsageError, match="--backend openvino or --backend onnxruntime"):
        get_backend("torch").prepare(_case(Backend.TORCH), ModelSource(str(path)))


# -- devices and precisions ------------------------------------------------------------


@pytest.mark.parametrize(
    ("backend", "device", "listed"),
    [
        (Backend.TORCH, "tpu", "cpu"),
        (Backend.TORCH, "cuda:7", "cpu"),
        (Backend.OPENVINO, "GPU.3", "CPU"),
        (Backend.OPENVINO, "MULTI:CPU,XPU", "CPU"),
        (Backend.ONNXRUNTIME, "cuda:5", "cpu"),
    ],
)
def test_unknown_device_lists_the_available_ones(
    backend: Backend, device: str, listed: str, tiny: ModelSource
) -> None:
    case = _case(backend, device=device)
    with pytest.raises(DeviceUnavailableError) as info:
        check_case(case)
    assert listed in str(info.value) and "vailable" in str(info.value)
    with pytest.raises(DeviceUnavailableError):
        get_backend(backend).prepare(case, tiny)


def test_openvino_device_names_are_case_insensitive() -> None:
    ov = get_backend("openvino")
    assert ov.resolve_device("cpu") == "CPU"  # type: ignore[attr-defined]
    assert ov.resolve_device("auto") == "AUTO"  # type: ignore[attr-defined]
    assert ov.resolve_device("hetero:cpu") == "HETERO:CPU"  # type: ignore[attr-defined]
    check_case(_case(Backend.OPENVINO, device="multi:cpu"))


def test_myriad_on_a_new_openvino_points_at_2022_3() -> None:
    with pytest.raises(DeviceUnavailableError, match="2022.3"):
        check_case(_case(Backend.OPENVINO, device="MYRIAD"))


@pytest.mark.parametrize(
    ("backend", "precision", "named"),
    [
        (Backend.ONNXRUNTIME, Precision.FP16, "fp32"),
        (Backend.ONNXRUNTIME, Precision.BF16, "fp32"),
    ],
)
def test_unsupported_precision_names_the_supported_ones(
    backend: Backend, precision: Precision, named: str, tiny: ModelSource
) -> None:
    case = _case(backend, precision=precision)
    with pytest.raises(PrecisionUnsupportedError, match=named):
        check_case(case)
    with pytest.raises(PrecisionUnsupportedError, match=named):
        get_backend(backend).prepare(case, tiny)


def test_torch_runs_bf16_on_cpu(tiny: ModelSource) -> None:
    assert Precision.BF16 in get_backend("torch").precisions("cpu")
    prepared = get_backend("torch").prepare(_case(Backend.TORCH, precision=Precision.BF16), tiny)
    assert prepared.infer_ns() > 0


def test_torch_cpu_fp16_is_offered_only_when_it_runs(tiny: ModelSource) -> None:
    torch_backend = get_backend("torch")
    case = _case(Backend.TORCH, precision=Precision.FP16)
    if Precision.FP16 in torch_backend.precisions("cpu"):
        prepared = torch_backend.prepare(case, tiny)
        assert prepared.config["dtype"] == "float16" and prepared.infer_ns() > 0
    else:
        with pytest.raises(PrecisionUnsupportedError):
            torch_backend.prepare(case, tiny)


# -- framework availability ------------------------------------------------------------


def test_missing_framework_is_backend_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "_loaded", {})
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)
    with pytest.raises(BackendUnavailableError) as info:
        get_backend("onnxruntime")
    text = str(info.value)
    assert "not installed" in text and "pip install 'backbench[measure]'" in text
    assert "available backends are: torch, openvino" in text
    assert "onnxruntime" not in available_backends()


def test_available_backends_lists_usable_devices() -> None:
    found = available_backends()
    assert found["torch"][0] == "cpu"
    assert "CPU" in found["openvino"]
    assert "cpu" in found["onnxruntime"]


def test_unknown_backend_name_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="tensorrt"):
        get_backend("tensorrt")


# -- GPU (run on the lent GPU machine) ---------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", [Precision.FP32, Precision.FP16, Precision.BF16])
def test_torch_cuda_times_with_events_and_reports_memory(
    precision: Precision, tiny: ModelSource
) -> None:
    if precision not in get_backend("torch").precisions("cuda"):
        pytest.skip(f"this GPU has no native {precision.value}")
    prepared = get_backend("torch").prepare(
        _case(Backend.TORCH, batch=4, precision=precision, device="cuda"), tiny
    )
    assert prepared.config["device"] == "cuda:0" and prepared.config["timer"] == "cuda_events"
    prepared.reset_peak_device_memory()
    assert all(prepared.infer_ns() > 0 for _ in range(5))
    memory = prepared.device_memory_mb()
    assert memory["torch_max_allocated_mb"] > 0
    assert memory["torch_max_reserved_mb"] >= memory["torch_max_allocated_mb"]
    if importlib.util.find_spec("pynvml") is not None:
        assert memory["nvml_used_mb"] >= memory["torch_max_reserved_mb"]
    ref = (
        get_backend("torch")
        .prepare(_case(Backend.TORCH, batch=4), tiny)  # CPU fp32 reference
        .outputs()
    )
    tolerance = {Precision.FP32: 1e-3, Precision.FP16: 2e-2, Precision.BF16: 6e-2}[precision]
    np.testing.assert_allclose(
        prepared.outputs(), ref, rtol=tolerance, atol=tolerance * float(np.abs(ref).max())
    )
    prepared.close()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_torch_cuda_throughput_submit_is_synchronous(tiny: ModelSource) -> None:
    prepared = get_backend("torch").prepare(
        _case(Backend.TORCH, mode=Mode.THROUGHPUT, device="cuda:0"), tiny
    )
    lock = threading.Lock()
    done: list[int] = []

    def on_done(latency_ns: int) -> None:
        with lock:
            done.append(latency_ns)

    for _ in range(4):
        prepared.submit(on_done)
    prepared.drain()
    assert len(done) == 4 and min(done) > 0
