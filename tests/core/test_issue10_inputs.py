"""Bad inputs found in issue 10: garbage TorchScript and weights files, ONNX inputs with a
zero-sized dimension, framework messages cut mid-sentence, OpenVINO's bad_alloc taken for
a missing operation, and torch's advice to load a pickle unsafely passed on to a user."""

from __future__ import annotations

import os
import pickle
import random
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from core.backends.base import ModelSource
from core.backends.convert import framework_message
from core.errors import CaseFailure, ModelFileError
from core.measure.worker import classify_exception
from core.results import Backend, Case, FailureKind, Precision
from core.store import Store
from core.zoo import get_card

SMALL = "squeezenet1_1"


def cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "core.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def random_bytes(n: int = 64 * 1024) -> bytes:
    data = random.Random(10).randbytes(n)
    # Neither a zip's local header nor a pickle's protocol opcode: plain garbage.
    return b"\x00\x01" + data[2:]


def assert_refused_up_front(
    proc: subprocess.CompletedProcess[str], db: Path, *needles: str
) -> None:
    """Exit 2, one line on stderr with no traceback, and no run stored."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    if db.exists():
        with Store(db) as store:
            assert store.list_runs() == []


# -- L1: a .pt model file (or a --weights file) that torch.save / torch.jit.save never wrote


def test_random_bytes_torchscript_is_refused_before_the_run(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.pt"
    bad.write_bytes(random_bytes())
    db = tmp_path / "r.db"
    proc = cli("run", "-m", str(bad), "--backend", "torch", "--db", str(db))
    assert_refused_up_front(proc, db, "garbage.pt", "not a loadable TorchScript model")


def test_random_bytes_weights_file_is_refused_before_the_run(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(random_bytes())
    db = tmp_path / "r.db"
    proc = cli("run", "-m", SMALL, "--weights", f"{SMALL}={bad}", "--db", str(db))
    assert_refused_up_front(proc, db, "garbage.pth", "not a readable PyTorch weights file")


def test_torchscript_archive_check_tells_the_formats_apart(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    good = tmp_path / "good.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated upstream
        torch.jit.script(model).save(str(good))
    assert get_card(str(good)).source == "torchscript"

    state = tmp_path / "state.pt"
    torch.save(model.state_dict(), state)
    with pytest.raises(ModelFileError, match="a torch.save file") as info:
        get_card(str(state))
    assert "\n" not in str(info.value)

    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ModelFileError, match="cut short or damaged"):
        get_card(str(cut))

    from core.zoo.files import check_weights_file

    with pytest.raises(ModelFileError, match="TorchScript model, not a weights file"):
        check_weights_file(good)
    check_weights_file(state)  # a real state dict passes the cheap check
    legacy = tmp_path / "legacy.pth"
    torch.save(model.state_dict(), legacy, _use_new_zipfile_serialization=False)
    check_weights_file(legacy)


# -- L3: ONNX inputs with a zero-sized dimension -----------------------------------------


def _zero_sized_onnx(path: Path) -> Path:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 0, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 0])
    node = helper.make_node("ReduceMean", ["x"], ["y"], axes=[2, 3], keepdims=0)
    graph = helper.make_graph([node], "zero", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_onnx_input_with_a_zero_sized_dimension_is_refused_up_front(tmp_path: Path) -> None:
    path = _zero_sized_onnx(tmp_path / "zero.onnx")
    db = tmp_path / "r.db"
    proc = cli("run", "-m", str(path), "--backend", "onnxruntime", "--db", str(db))
    assert_refused_up_front(proc, db, "zero.onnx", "input 'x'", "[N, 0, 8, 8]")


def test_openvino_ir_input_with_a_zero_sized_dimension_is_refused_up_front(tmp_path: Path) -> None:
    xml = tmp_path / "zero.xml"
    xml.write_text(
        '<net name="zero" version="11"><layers>'
        '<layer id="0" name="images" type="Parameter" version="opset1">'
        '<data shape="1,3,0,8" element_type="f32"/></layer></layers></net>'
    )
    xml.with_suffix(".bin").write_bytes(b"")
    with pytest.raises(ModelFileError, match=r"input 'images' has shape \[1, 3, 0, 8\]"):
        get_card(str(xml))


@pytest.fixture()
def without_onnx_package(monkeypatch: pytest.MonkeyPatch):
    """Cards of ONNX files as on a host without the onnx package: no input shape read, so
    the backend's own check is the one that refuses."""
    from core.zoo import files

    monkeypatch.setattr(files, "_onnx_input_dims", lambda _path: None)
    files._file_card.cache_clear()
    yield
    files._file_card.cache_clear()


def test_onnxruntime_prepare_refuses_a_zero_sized_input(
    tmp_path: Path, without_onnx_package: None
) -> None:
    pytest.importorskip("onnxruntime")
    from core.backends.onnxruntime_backend import BACKEND

    path = _zero_sized_onnx(tmp_path / "zero.onnx")
    case = Case(str(path), Backend.ONNXRUNTIME, "cpu", Precision.FP32, 2)
    with pytest.raises(ModelFileError, match=r"input 'x' has shape \[N, 0, 8, 8\]"):
        BACKEND.prepare(case, ModelSource(str(path)))


def test_openvino_prepare_refuses_a_zero_sized_input(
    tmp_path: Path, without_onnx_package: None
) -> None:
    pytest.importorskip("openvino")
    from core.backends.openvino_backend import OpenVinoBackend

    path = _zero_sized_onnx(tmp_path / "zero.onnx")
    case = Case(str(path), Backend.OPENVINO, "CPU", Precision.FP32, 2)
    with pytest.raises(ModelFileError, match=r"input 'x' has shape \[\?, 0, 8, 8\]"):
        OpenVinoBackend().prepare(case, ModelSource(str(path)))


# -- L3: framework messages shortened at a sentence boundary ------------------------------

ORT_TEXT = (
    "[ONNXRuntimeError] : 10 : INVALID_GRAPH : Load model from /data/models/classifier.onnx "
    "failed:This is an invalid model. "
    + " ".join(
        f'In Node, ("conv_{i}", Conv, "", -1) : ("x": tensor(float),) -> ("y{i}",) , '
        f"Error Unrecognized attribute: dilation_{i} for operator Conv."
        for i in range(8)
    )
)


def _sentences(text: str) -> list[str]:
    import re

    return [s for s in re.split(r"(?<=[.!?])\s+", text) if s]


def test_framework_message_ends_at_a_sentence_boundary() -> None:
    short = framework_message(RuntimeError(ORT_TEXT), max_chars=300)
    assert len(short) <= 300
    assert short.startswith("[ONNXRuntimeError] : 10 : INVALID_GRAPH : Load model from")
    assert "This is an invalid model." in short
    # Whole sentences of the original, and nothing cut: it ends where a sentence ends.
    assert ORT_TEXT.startswith(short)
    assert short.endswith(".") and not short.endswith("...")
    assert all(s in _sentences(ORT_TEXT) for s in _sentences(short))


def test_framework_message_keeps_a_long_first_sentence_whole() -> None:
    first = (
        "Load model from " + "/very/long/path" * 30 + "/m.onnx failed: the protobuf is truncated."
    )
    text = f"{first} Second sentence. Third sentence."
    assert len(first) > 300
    assert framework_message(RuntimeError(text), max_chars=300) == first
    # Lines are boundaries too, and OpenVINO's source-location lines are dropped.
    ov = (
        "Exception from src/inference/src/cpp/core.cpp:109:\nCheck 'x' failed at src/a.cpp:1:\n"
        + "\n".join(f"line {i} says something useful" for i in range(40))
    )
    short = framework_message(RuntimeError(ov), max_chars=120)
    assert short.startswith("line 0 says") and short.endswith("useful") and len(short) <= 120


def test_worker_classifies_a_long_error_without_cutting_a_sentence() -> None:
    kind, message, hint = classify_exception(RuntimeError(ORT_TEXT))
    assert kind is FailureKind.ERROR and hint is None
    body = message.removeprefix("RuntimeError: ")
    assert ORT_TEXT.startswith(body) and body.endswith(".")


# -- L3: OpenVINO's bad_alloc is out of memory, not a missing operation ------------------

OV_BAD_ALLOC = [
    "Exception from src/inference/src/cpp/core.cpp:109:\n"
    "Exception from src/inference/src/dev/plugin.cpp:53:\nstd::bad_alloc\n",
    "Exception from src\\inference\\src\\cpp\\core.cpp:113:\n"
    "Exception from src\\inference\\src\\dev\\plugin.cpp:53:\n"
    "Exception from src\\core\\src\\runtime\\allocator.cpp:79:\nbad allocation\n",
    "bad_alloc",
    "Exception from src/inference/src/cpp/core.cpp:109:\n"
    "Check 'ptr' failed at src/plugins/intel_cpu/src/cpu_memory.cpp:257:\n"
    "Failed to allocate 7663872811008 bytes of memory\n",
]


def _assert_memory_hint(hint: str | None) -> None:
    assert hint is not None
    assert "smaller batch" in hint and "--max-mem-mb" in hint and "other programs" in hint


@pytest.mark.parametrize("text", OV_BAD_ALLOC)
def test_worker_classifies_bad_alloc_as_out_of_memory(text: str) -> None:
    kind, message, hint = classify_exception(RuntimeError(text))
    assert kind is FailureKind.OOM
    assert "Exception from" not in message and "\n" not in message
    _assert_memory_hint(hint)


class _FailingCore:
    def __init__(self, text: str) -> None:
        self.text = text

    def compile_model(self, *_args: object) -> None:
        raise RuntimeError(self.text)

    def read_model(self, *_args: object) -> None:
        raise RuntimeError(self.text)


@pytest.mark.parametrize("text", OV_BAD_ALLOC)
def test_openvino_compile_reports_bad_alloc_as_out_of_memory(text: str) -> None:
    from core.backends.openvino_backend import OpenVinoBackend

    backend = OpenVinoBackend(api=object())  # type: ignore[arg-type]
    backend._core = _FailingCore(text)
    with pytest.raises(CaseFailure) as info:
        backend._compile(object(), "CPU", {}, Precision.FP32)
    kind, message, hint = classify_exception(info.value)
    assert kind is FailureKind.OOM and "out of memory" in message
    assert "lack an operation" not in f"{message} {hint}"
    _assert_memory_hint(hint)


def test_openvino_compile_still_reports_other_failures_as_the_model() -> None:
    from core.backends.openvino_backend import OpenVinoBackend

    backend = OpenVinoBackend(api=object())  # type: ignore[arg-type]
    backend._core = _FailingCore(
        "Exception from src/a.cpp:1:\nUnsupported operation: Foo of type Bar"
    )
    with pytest.raises(ModelFileError, match="Unsupported operation") as info:
        backend._compile(object(), "CPU", {}, Precision.FP32)
    assert classify_exception(info.value)[0] is FailureKind.ERROR


def test_a_wrapped_out_of_memory_error_is_out_of_memory() -> None:
    wrapped = ModelFileError(
        "onnxruntime cannot load m.onnx: Failed to allocate memory for requested buffer of size 4096.",
        "Check the file.",
    )
    kind, _message, hint = classify_exception(wrapped)
    assert kind is FailureKind.OOM and hint == "Check the file."
    kind, _message, hint = classify_exception(MemoryError())
    assert kind is FailureKind.OOM
    _assert_memory_hint(hint)


# -- L12: never advise loading a pickle unsafely ------------------------------------------


@pytest.fixture(scope="module")
def torch_mod():
    return pytest.importorskip("torch")


def _pickled_module(torch_mod, path: Path, how: str) -> Path:
    module = torch_mod.nn.Sequential(torch_mod.nn.Linear(4, 2))
    if how == "torch.save":
        torch_mod.save(module, path)
    elif how == "torch.save legacy":
        torch_mod.save(module, path, _use_new_zipfile_serialization=False)
    else:
        with path.open("wb") as fh:
            pickle.dump(module, fh)  # a "raw pickle", in Python's default protocol
    return path


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
@pytest.mark.parametrize("how", ["torch.save", "torch.save legacy", "pickle.dump"])
def test_a_pickled_module_as_weights_gets_safe_advice(torch_mod, tmp_path: Path, how: str) -> None:
    from core.zoo import build_torch_model

    path = _pickled_module(torch_mod, tmp_path / "whole_model.pth", how)
    with pytest.raises(ModelFileError) as info:
        build_torch_model(SMALL, weights_path=str(path))
    text = str(info.value)
    assert "weights_only" not in text and "safe_globals" not in text
    assert "not a plain state dict" in text
    assert "torch.save(model.state_dict(), path)" in text
    assert "\n" not in text


def test_torch_unsafe_advice_is_stripped_from_a_reason() -> None:
    pytest.importorskip("torch")
    from torch.serialization import UNSAFE_MESSAGE

    from core.zoo.torchvision_models import _corrupt

    exc = RuntimeError(f"Weights only load failed. {UNSAFE_MESSAGE}\nUnexpected end of file. More.")
    text = str(_corrupt(Path("/tmp/w.pth"), exc))
    assert "weights_only" not in text and "trusted source" not in text
    assert "Unexpected end of file" in text
