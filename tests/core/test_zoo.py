"""The model zoo: cards, suites, filtering, the catalogue snapshot, weights files and
user model files."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from core.errors import (
    DeviceUnavailableError,
    ModelFileError,
    UnknownModelError,
    UnknownSuiteError,
    UsageError,
)
from core.zoo import (
    build_torch_model,
    get_card,
    is_model_file,
    list_models,
    load_torchscript,
    model_complexity,
    suite_description,
    suite_models,
    suite_names,
    zoo_names,
)

REPO = Path(__file__).resolve().parents[2]

PAPER_33 = [
    "alexnet",
    *(f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")),
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "squeezenet1_0", "squeezenet1_1",
    "densenet121", "densenet161", "densenet169", "densenet201",
    "googlenet", "inception_v3",
    "shufflenet_v2_x0_5", "shufflenet_v2_x1_0",
    "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small",
    "resnext50_32x4d", "resnext101_32x8d",
    "wide_resnet50_2", "wide_resnet101_2",
    "mnasnet0_5", "mnasnet1_0",
]  # fmt: skip


# ---- cards, suites, filtering (no torch needed) ------------------------------------


def test_paper_suite_is_exactly_the_studys_33_backbones() -> None:
    assert len(PAPER_33) == 33
    assert sorted(suite_models("paper")) == sorted(PAPER_33)
    assert len(set(suite_models("paper"))) == 33
    assert "Wang" in suite_description("paper")
    assert [c.name for c in list_models(suite="paper")] == list(suite_models("paper"))


def test_quick_suite_is_a_few_small_zoo_models() -> None:
    assert {"paper", "quick"} <= set(suite_names())
    quick = list_models(suite="quick")
    assert 4 <= len(quick) <= 5
    assert all(c.source == "torchvision" and c.params < 15_000_000 for c in quick)
    assert all(c.gmacs < 2.0 for c in quick)


def test_cards_carry_published_metadata() -> None:
    r50 = get_card("resnet50")
    assert (r50.family, r50.source, r50.input_size) == ("resnet", "torchvision", (3, 224, 224))
    assert r50.params == 25_557_032 and r50.gmacs == pytest.approx(4.089)
    assert 70 < r50.acc1 < r50.acc5 < 100 and r50.file_size_mb > 90
    assert r50.flops_published == 8_178_000_000
    assert get_card("ResNet50") == r50  # names are case-insensitive
    assert get_card("inception_v3").input_size == (3, 299, 299)
    assert get_card("vit_h_14").input_size == (3, 518, 518)
    assert get_card("efficientnet_b7").input_size == (3, 600, 600)
    families = {c.family for c in list_models()}
    assert {"vgg", "resnet", "mobilenet", "densenet", "vit", "swin"} <= families


def test_fnmatch_filtering() -> None:
    resnets = [c.name for c in list_models("resnet*")]
    assert resnets == sorted(["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"])
    assert [c.name for c in list_models("RESNET1?")] == ["resnet18"]
    assert {c.name for c in list_models("vgg*_bn")} == {f"vgg{d}_bn" for d in (11, 13, 16, 19)}
    assert len(list_models("vgg*", suite="paper")) == 8
    assert list_models("mobilenet*", suite="quick")[0].name == "mobilenet_v3_small"
    assert list_models("nothing*") == []


def test_unknown_model_suggests_close_names() -> None:
    with pytest.raises(UnknownModelError) as info:
        get_card("resnet51")
    assert "resnet50" in info.value.suggestions
    assert "Did you mean" in str(info.value)
    with pytest.raises(UnknownModelError) as info:
        get_card("mobilenet")
    assert info.value.suggestions and all(s.startswith("mobilenet") for s in info.value.suggestions)


def test_unknown_suite_names_the_available_ones() -> None:
    with pytest.raises(UnknownSuiteError) as info:
        suite_models("papr")
    assert "paper" in str(info.value) and "quick" in str(info.value)


def test_model_complexity_from_the_catalogue() -> None:
    c = model_complexity("resnet18")
    assert c is not None and c.params == get_card("resnet18").params
    assert c.flops == 2 * c.macs and c.input_size == (3, 224, 224)
    assert c.layer_counts["conv"] == 20 and c.depth == 21
    assert model_complexity("no_such_model") is None
    assert model_complexity("model.onnx") is None


def test_is_model_file() -> None:
    assert is_model_file("a/b/model.onnx") and is_model_file("net.XML") and is_model_file("m.pt")
    assert not is_model_file("weights.pth") and not is_model_file("resnet50")


def test_paths_that_are_not_model_files(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="weights file"):
        get_card(str(tmp_path / "weights.pth"))
    with pytest.raises(ModelFileError, match="Unsupported"):
        get_card(str(tmp_path / "model.h5"))
    with pytest.raises(ModelFileError, match="not found"):
        get_card(str(tmp_path / "missing.onnx"))


def test_zoo_works_without_torch(tmp_path: Path) -> None:
    # An IR .xml card is read from the XML alone, so no openvino either.
    xml = tmp_path / "net.xml"
    xml.write_text(
        '<?xml version="1.0"?><net name="n" version="11"><layers>'
        '<layer id="0" name="x" type="Parameter" version="opset1">'
        '<data shape="1,3,64,48" element_type="f32"/></layer></layers></net>'
    )
    (tmp_path / "net.bin").write_bytes(b"")
    script = textwrap.dedent(
        f"""
        import json, sys
        for blocked in ("torch", "torchvision", "openvino", "onnx", "onnxruntime"):
            sys.modules[blocked] = None
        from core.zoo import get_card, list_models, model_complexity, suite_names
        c = model_complexity("resnet50")
        ir = get_card({str(xml)!r})
        print(json.dumps({{
            "complexity": c.to_dict(),
            "card_params": get_card("resnet50").params,
            "paper": len(list_models(suite="paper")),
            "all": len(list_models()),
            "suites": suite_names(),
            "ir": [ir.source, list(ir.input_size)],
            "torch_loaded": sys.modules.get("torch") is not None,
        }}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["complexity"] == model_complexity("resnet50").to_dict()
    assert result["card_params"] == 25_557_032
    assert result["paper"] == 33 and result["all"] == len(zoo_names())
    assert {"paper", "quick"} <= set(result["suites"])
    assert result["ir"] == ["openvino-ir", [3, 64, 48]]
    assert result["torch_loaded"] is False


# ---- against the installed torchvision ---------------------------------------------


@pytest.fixture(scope="module")
def tvm():
    pytest.importorskip("torch")
    return pytest.importorskip("torchvision.models")


def test_every_torchvision_classification_model_is_served(tvm) -> None:
    live = set(tvm.list_models(module=tvm))
    assert len(live) >= 80
    assert set(zoo_names()) == live
    assert [c.name for c in list_models()] == sorted(live)


def test_catalogue_snapshot_equals_live_torchvision_metadata(tvm) -> None:
    from core.zoo.build_catalog import stale_entries
    from core.zoo.torchvision_models import card_from_torchvision

    assert stale_entries() == []
    for name in zoo_names():
        assert get_card(name) == card_from_torchvision(name), name


def test_catalogue_complexity_equals_live_measurement_beyond_the_paper(tvm) -> None:
    from core.zoo.complexity import measure_complexity
    from core.zoo.torchvision_models import build_on_meta

    # Builders with special input sizes: vit (image_size), maxvit (input_size),
    # efficientnet (larger crop), regnet (computes while constructing).
    for name in ("vit_b_32", "maxvit_t", "efficientnet_b1", "regnet_x_400mf", "swin_v2_t"):
        card = get_card(name)
        measured = measure_complexity(build_on_meta(name), card.input_size)
        assert model_complexity(name) == measured, name
        assert measured.params == card.params, name
        assert abs(measured.macs / 1e9 - card.gmacs) <= 0.0005 + 1e-9, name


# ---- building torch models and weights files ---------------------------------------

SMALL = "squeezenet1_1"  # 1.2M params: a state dict of 5 MB


@pytest.fixture(scope="module")
def small_state(tvm, tmp_path_factory) -> tuple[Path, dict]:
    import torch

    torch.manual_seed(0)
    state = tvm.squeezenet1_1(weights=None).state_dict()
    path = tmp_path_factory.mktemp("weights") / "squeeze.pth"
    torch.save(state, path)
    return path, state


def test_random_build_is_eval_and_labelled_random(tvm) -> None:
    model, label = build_torch_model(SMALL)
    assert label == "random" and not model.training
    assert next(model.parameters()).device.type == "cpu"


def test_good_state_dict_loads_and_is_labelled(small_state) -> None:
    import torch

    path, state = small_state
    model, label = build_torch_model(SMALL, weights_path=str(path))
    assert label == f"file:{path.resolve()}"
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, state[key]), key


def test_checkpoint_wrappers_and_dataparallel_prefix_load(small_state, tmp_path: Path) -> None:
    import torch

    path, state = small_state
    wrapped = tmp_path / "ckpt.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, wrapped)
    model, label = build_torch_model(SMALL, weights_path=str(wrapped))
    assert label.startswith("file:") and torch.equal(
        model.classifier[1].weight, state["classifier.1.weight"]
    )


def test_missing_corrupt_and_mismatched_weights(small_state, tmp_path: Path) -> None:
    import torch

    path, state = small_state
    with pytest.raises(ModelFileError, match="not found"):
        build_torch_model(SMALL, weights_path=str(tmp_path / "nope.pth"))

    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(ModelFileError, match="not a readable"):
        build_torch_model(SMALL, weights_path=str(corrupt))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00not a checkpoint at all" * 10)
    with pytest.raises(ModelFileError):
        build_torch_model(SMALL, weights_path=str(junk))

    bad = dict(state)
    del bad["classifier.1.bias"]
    bad["extra.weight"] = torch.zeros(1)
    bad["features.0.weight"] = torch.zeros(1, 2, 3, 3)
    mismatched = tmp_path / "mismatched.pth"
    torch.save(bad, mismatched)
    with pytest.raises(ModelFileError) as info:
        build_torch_model(SMALL, weights_path=str(mismatched))
    text = str(info.value)
    assert "classifier.1.bias" in text and "extra.weight" in text and "features.0.weight" in text
    assert "1 missing keys" in text and info.value.hint

    not_a_dict = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], not_a_dict)
    with pytest.raises(ModelFileError, match="does not hold a state dict"):
        build_torch_model(SMALL, weights_path=str(not_a_dict))


class _Payload:
    """Unpickling this creates a marker file: proof that code would run."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_with_code_is_refused_and_never_runs(tvm, tmp_path: Path) -> None:
    import torch

    marker = tmp_path / "code_ran"
    evil = tmp_path / "evil.pth"
    torch.save({"weight": torch.zeros(1), "payload": _Payload(str(marker))}, evil)
    with pytest.raises(ModelFileError, match="refuses to unpickle"):
        build_torch_model(SMALL, weights_path=str(evil))
    assert not marker.exists()
    # The payload is live: an unsafe load would have run it.
    torch.load(evil, weights_only=False)
    assert marker.exists()


def test_inference_builds_of_googlenet_and_inception(tvm, tmp_path: Path) -> None:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        googlenet, _ = build_torch_model("googlenet")
        inception, _ = build_torch_model("inception_v3")
    assert googlenet.aux1 is None and googlenet.transform_input
    assert inception.AuxLogits is None and inception.transform_input
    # torchvision's own checkpoints keep the aux heads; their keys are ignored.
    full = tvm.googlenet(weights=None, aux_logits=True, init_weights=False)
    path = tmp_path / "googlenet_full.pth"
    torch.save(full.state_dict(), path)
    loaded, label = build_torch_model("googlenet", weights_path=str(path))
    assert label.startswith("file:") and loaded.aux1 is None
    assert torch.equal(loaded.fc.weight, full.fc.weight)


def test_build_rejects_files_unknown_names_and_absent_devices(tvm) -> None:
    import torch

    with pytest.raises(UsageError):
        build_torch_model("model.onnx")
    with pytest.raises(UnknownModelError):
        build_torch_model("resnet51")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceUnavailableError):
            build_torch_model(SMALL, device="cuda")


# ---- user model files ----------------------------------------------------------------


def _tiny_sequential():
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 5),
    ).eval()


def test_torchscript_file_loads_and_has_a_card(tvm, small_state, tmp_path: Path) -> None:
    import torch

    model = _tiny_sequential()
    path = tmp_path / "tiny.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated upstream
        torch.jit.script(model).save(str(path))
    loaded = load_torchscript(str(path))
    x = torch.randn(2, 3, 16, 16)
    assert not loaded.training and torch.equal(loaded(x), model(x))
    card = get_card(str(path))
    assert (card.source, card.name, card.path) == ("torchscript", "tiny.pt", str(path.resolve()))
    assert card.params is None and card.input_size == (3, 224, 224)

    state_as_pt = tmp_path / "state.pt"
    state_as_pt.write_bytes(small_state[0].read_bytes())
    with pytest.raises(ModelFileError, match="not a loadable TorchScript"):
        load_torchscript(str(state_as_pt))
    with pytest.raises(ModelFileError, match="not found"):
        load_torchscript(str(tmp_path / "missing.pt"))
    with pytest.raises(ModelFileError, match="TorchScript model, not a weights file"):
        build_torch_model(SMALL, weights_path=str(path))


@pytest.fixture()
def onnx_file(tvm, tmp_path: Path) -> Path:
    import torch

    pytest.importorskip("onnx")
    path = tmp_path / "resnet18.onnx"  # named like a zoo model: the card borrows its family
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter warns it is legacy
        torch.onnx.export(_tiny_sequential(), (torch.zeros(1, 3, 32, 40),), str(path), dynamo=False)
    return path


def test_onnx_file_card(onnx_file: Path, tmp_path: Path) -> None:
    card = get_card(str(onnx_file))
    assert (card.source, card.name, card.path) == ("onnx", "resnet18.onnx", str(onnx_file))
    assert card.input_size == (3, 32, 40) and card.family == "resnet"
    assert card.params is None and card.gmacs is None
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\xff\xfe garbage")
    with pytest.raises(ModelFileError):
        get_card(str(junk))


def test_openvino_ir_file_card(onnx_file: Path, tmp_path: Path) -> None:
    ov = pytest.importorskip("openvino")
    xml = tmp_path / "ir" / "tiny.xml"
    xml.parent.mkdir()
    ov.save_model(ov.convert_model(str(onnx_file)), str(xml))
    card = get_card(str(xml))
    assert (card.source, card.path, card.family) == ("openvino-ir", str(xml), "custom")
    assert card.input_size == (3, 32, 40)
    xml.with_suffix(".bin").unlink()
    with pytest.raises(ModelFileError, match=r"tiny\.bin"):
        get_card(str(xml))
    not_ir = tmp_path / "other.xml"
    not_ir.write_text("<config><a/></config>")
    (tmp_path / "other.bin").write_bytes(b"")
    with pytest.raises(ModelFileError, match="not an OpenVINO IR"):
        get_card(str(not_ir))


@pytest.mark.gpu
def test_build_on_cuda_counts_like_the_meta_model(tvm) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    from core.zoo.complexity import measure_complexity

    model, label = build_torch_model(SMALL, device="cuda")
    assert label == "random" and next(model.parameters()).device.type == "cuda"
    measured = measure_complexity(model, get_card(SMALL).input_size)
    assert measured == model_complexity(SMALL)
    with pytest.raises(DeviceUnavailableError):
        build_torch_model(SMALL, device=f"cuda:{torch.cuda.device_count()}")
