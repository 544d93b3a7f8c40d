"""OpenVINO specifics: API selection (2023+ vs 2022.3), explicit precision, throughput.

The 2022.3 ``openvino.runtime`` route cannot be installed next to the current release,
so it is exercised for real as far as this OpenVINO allows: the legacy adapter converts
through ONNX (opset 13) and runs through the same backend code.
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from core.backends import convert, get_backend
from core.backends.base import ModelSource
from core.backends.openvino_backend import (
    API_ENV,
    LEGACY,
    MODERN,
    OpenVinoBackend,
    installed_version,
    load_api,
    precision_name,
    select_api,
)
from core.errors import BackbenchError, PrecisionUnsupportedError
from core.results import Backend, Case, Mode, Precision


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> ModelSource:
    path = tmp_path_factory.mktemp("ov-models") / "tiny_ov.pt"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2)
        module = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, stride=4),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
            torch.nn.Linear(8, 5),
        ).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(module).save(str(path))
    return ModelSource(str(path))


@pytest.fixture(autouse=True)
def cache_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    # One cache for the module: the conversion is not what these tests look at.
    path = tmp_path_factory.getbasetemp() / "ov-api-cache"
    monkeypatch.setenv(convert.CACHE_DIR_ENV, str(path))
    return path


def _case(
    precision: Precision = Precision.FP32,
    mode: Mode = Mode.LATENCY,
    batch: int = 2,
    device: str = "CPU",
) -> Case:
    return Case("tiny", Backend.OPENVINO, device, precision, batch, mode)


# -- API selection ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "api"),
    [
        ("2022.3.0-9052-9752fafe8eb-releases/2022/3", LEGACY),
        ("2022.1.0", LEGACY),
        ("2021.4.2-3974-e2a469a3450-releases/2021/4", LEGACY),
        ("2023.0.0", MODERN),
        ("2024.6.0-17404-4c0f47d2335-releases/2024/6", MODERN),
        ("2026.4.1-22982-e213a147257-releases/2026/4", MODERN),
        ("custom-build", MODERN),
    ],
)
def test_select_api_by_version(version: str, api: str) -> None:
    assert select_api(version) == api


def test_installed_version_selects_the_modern_api(monkeypatch: pytest.MonkeyPatch) -> None:
    import openvino

    monkeypatch.delenv(API_ENV, raising=False)
    assert installed_version().startswith(openvino.__version__.split("-")[0])
    api = load_api()
    assert api.name == MODERN and not api.onnx_route


def test_env_var_forces_the_legacy_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(API_ENV, "legacy")
    api = load_api()
    assert api.name == LEGACY and api.onnx_route
    monkeypatch.setenv(API_ENV, "newest")
    with pytest.raises(BackbenchError, match="modern"):
        load_api()


def test_legacy_route_converts_through_onnx_and_matches_the_modern_one(
    tiny: ModelSource, cache_dir: Path
) -> None:
    legacy = OpenVinoBackend(load_api(LEGACY)).prepare(_case(batch=3), tiny)
    modern = OpenVinoBackend(load_api(MODERN)).prepare(_case(batch=3), tiny)
    assert legacy.config["api"] == LEGACY and legacy.config["model_format"] == "onnx"
    assert legacy.config["model_path"].endswith(f"-op{convert.LEGACY_ONNX_OPSET}.onnx")
    assert Path(legacy.config["model_path"]).parent == cache_dir / "onnx"
    assert modern.config["api"] == MODERN and modern.config["model_format"] == "ir"
    assert legacy.config["inference_precision"] == "f32"
    assert legacy.infer_ns() > 0
    ref = modern.outputs()
    np.testing.assert_allclose(
        legacy.outputs(), ref, rtol=1e-4, atol=1e-5 * float(np.abs(ref).max())
    )


def test_legacy_route_runs_throughput_mode(tiny: ModelSource) -> None:
    prepared = OpenVinoBackend(load_api(LEGACY)).prepare(_case(mode=Mode.THROUGHPUT), tiny)
    done: list[int] = []
    lock = threading.Lock()

    def on_done(latency_ns: int) -> None:
        with lock:
            done.append(latency_ns)

    for _ in range(4):
        prepared.submit(on_done)
    prepared.drain()
    assert len(done) == 4


@pytest.mark.parametrize(
    ("value", "name"),
    [("f32", "f32"), ("<Type: 'float32'>", "f32"), ("bfloat16", "bf16"), ("F16", "f16")],
)
def test_precision_names_are_normalised(value: str, name: str) -> None:
    assert precision_name(value) == name


def test_precision_name_of_a_type_object() -> None:
    import openvino as ov

    assert precision_name(ov.Type.f32) == "f32"
    assert precision_name(ov.Type.bf16) == "bf16"


# -- explicit precision ----------------------------------------------------------------


def test_f32_is_asked_for_by_name_and_recorded(tiny: ModelSource) -> None:
    config = get_backend("openvino").prepare(_case(Precision.FP32), tiny).config
    assert config["requested"]["INFERENCE_PRECISION_HINT"] == "f32"
    assert config["inference_precision"] == "f32"
    assert config["inference_precision_source"] == "reported"
    assert config["performance_hint"] == "LATENCY"
    assert {"num_streams", "inference_num_threads", "device_name", "openvino_version"} <= set(
        config
    )


def test_bf16_when_the_cpu_has_it(tiny: ModelSource) -> None:
    ov_backend = get_backend("openvino")
    if Precision.BF16 not in ov_backend.precisions("CPU"):
        with pytest.raises(PrecisionUnsupportedError, match="fp32"):
            ov_backend.prepare(_case(Precision.BF16), tiny)
        return
    config = ov_backend.prepare(_case(Precision.BF16), tiny).config
    assert config["inference_precision"] == "bf16"


def test_a_hint_the_device_ignores_is_an_error(
    tiny: ModelSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CPU plugin quietly runs f16 in bf16 (or f32) on CPUs without fp16 arithmetic;
    the read-back must catch that instead of recording a wrong precision."""
    ov_backend = OpenVinoBackend()
    if Precision.FP16 in ov_backend.precisions("CPU"):
        pytest.skip("this CPU computes in fp16 natively")
    monkeypatch.setattr(ov_backend, "precisions", lambda device: list(Precision))
    with pytest.raises(PrecisionUnsupportedError, match="not f16 as asked"):
        ov_backend.prepare(_case(Precision.FP16), tiny)


def test_fp16_refused_up_front_when_the_cpu_lacks_it(tiny: ModelSource) -> None:
    ov_backend = get_backend("openvino")
    supported = ov_backend.precisions("CPU")
    if Precision.FP16 in supported:
        pytest.skip("this CPU computes in fp16 natively")
    with pytest.raises(PrecisionUnsupportedError) as info:
        ov_backend.prepare(_case(Precision.FP16), tiny)
    assert all(p.value in str(info.value) for p in supported)


def test_auto_device_records_the_requested_precision(tiny: ModelSource) -> None:
    config = get_backend("openvino").prepare(_case(device="auto"), tiny).config
    assert config["device"] == "AUTO"
    assert config["inference_precision"] == "f32"
    assert config["inference_precision_source"] in ("reported", "requested")


# -- throughput mode -------------------------------------------------------------------


def test_throughput_mode_keeps_requests_in_flight(tiny: ModelSource) -> None:
    prepared = get_backend("openvino").prepare(_case(mode=Mode.THROUGHPUT, batch=1), tiny)
    config = prepared.config
    assert config["performance_hint"] == "THROUGHPUT" and config["async"] is True
    assert (
        prepared.max_in_flight()
        == config["nireq"]
        == config["optimal_number_of_infer_requests"]
        >= 1
    )
    lock = threading.Lock()
    latencies: list[int] = []
    threads: set[int] = set()

    def on_done(latency_ns: int) -> None:
        with lock:
            latencies.append(latency_ns)
            threads.add(threading.get_ident())

    for _ in range(12):
        prepared.submit(on_done)
    prepared.drain()
    assert len(latencies) == 12
    assert all(isinstance(v, int) and v > 0 for v in latencies)
    prepared.close()


def test_an_error_in_a_completion_callback_surfaces_on_drain(tiny: ModelSource) -> None:
    prepared = get_backend("openvino").prepare(_case(mode=Mode.THROUGHPUT, batch=1), tiny)

    def broken(_latency_ns: int) -> None:
        raise ValueError("callback bug")

    prepared.submit(broken)
    with pytest.raises(ValueError, match="callback bug"):
        prepared.drain()
    prepared.drain()  # reported once, then cleared
