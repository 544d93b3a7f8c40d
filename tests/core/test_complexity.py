"""Complexity counting: hand-checked counts, meta == CPU, and the paper suite against
torchvision's published num_params and _ops."""

from __future__ import annotations

import warnings

import pytest

from core.complexity import LAYER_CATEGORIES, Complexity, measure_complexity
from core.errors import DataError

torch = pytest.importorskip("torch")
tvm = pytest.importorskip("torchvision.models")
nn = torch.nn

from core.zoo import get_card, model_complexity, suite_models  # noqa: E402
from core.zoo.torchvision_models import _tensors_on_meta, build_on_meta  # noqa: E402

# _ops is GMACs rounded to 3 decimals.
GMACS_ROUNDING = 0.0005 + 1e-9


def tiny_model() -> torch.nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, bias=False),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 5),
    )


def test_tiny_model_counts_by_hand() -> None:
    c = measure_complexity(tiny_model(), (3, 8, 8))
    conv_macs = (4 * 6 * 6) * (3 * 3 * 3)  # outputs x kernel volume
    linear_macs = 4 * 5
    assert c.macs == conv_macs + linear_macs
    assert c.flops == 2 * c.macs
    assert c.params == 3 * 3 * 3 * 4 + 4 * 5 + 5
    assert c.size_mb == pytest.approx(c.params * 4 / 1e6)
    assert c.depth == 2
    assert c.layer_counts == {
        "conv": 1, "linear": 1, "batchnorm": 0, "pool": 1,
        "activation": 1, "dropout": 0, "other": 1,
    }  # fmt: skip
    # Per leaf: inputs + outputs + own weights, in fp32 elements.
    conv = 3 * 8 * 8 + 4 * 6 * 6 + 108
    relu = 2 * (4 * 6 * 6)
    pool = 4 * 6 * 6 + 4
    flatten = 4 + 4
    linear = 4 + 5 + 25
    assert c.memory_traffic_mb == pytest.approx((conv + relu + pool + flatten + linear) * 4 / 1e6)
    assert c.input_size == (3, 8, 8)


def test_meta_device_counts_equal_a_real_cpu_model() -> None:
    cpu_model = tvm.squeezenet1_1(weights=None)
    on_cpu = measure_complexity(cpu_model, (3, 224, 224))
    on_meta = measure_complexity(build_on_meta("squeezenet1_1"), (3, 224, 224))
    assert on_meta == on_cpu
    assert on_cpu.flops > 0 and on_cpu.memory_traffic_mb > on_cpu.size_mb


def test_counts_in_eval_mode_and_restores_each_module_mode() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 1), nn.Dropout(0.5), nn.BatchNorm2d(4))
    model.train()
    model[2].eval()
    c = measure_complexity(model, (1, 4, 4))
    assert model.training and model[1].training and not model[2].training
    assert c.layer_counts["dropout"] == 1 and c.layer_counts["batchnorm"] == 1
    # inception_v3 built for training runs its aux head: eval mode must skip it.
    with _tensors_on_meta():
        inception = tvm.inception_v3(weights=None, aux_logits=True, init_weights=False)
    inception.train()
    assert (
        measure_complexity(inception, (3, 299, 299)).flops == model_complexity("inception_v3").flops
    )
    assert inception.training


def test_torchscript_module_is_counted() -> None:
    model = tiny_model().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated upstream
        scripted = torch.jit.script(model)
    eager = measure_complexity(model, (3, 8, 8))
    script = measure_complexity(scripted, (3, 8, 8))
    assert (script.flops, script.params, script.depth) == (eager.flops, eager.params, eager.depth)
    assert script.layer_counts == eager.layer_counts
    # No hooks on ScriptModules: weights plus the model's input and output only.
    assert script.memory_traffic_mb == pytest.approx((3 * 64 + 5 + eager.params) * 4 / 1e6)


def test_round_trip_and_validation() -> None:
    c = measure_complexity(tiny_model(), (3, 8, 8))
    assert Complexity.from_dict(c.to_dict()) == c
    assert list(c.to_dict()["layer_counts"]) == list(LAYER_CATEGORIES)
    broken = c.to_dict()
    del broken["flops"]
    with pytest.raises(DataError):
        Complexity.from_dict(broken)
    with pytest.raises(DataError):
        measure_complexity(tiny_model(), (3, 8))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def paper_measured() -> dict[str, Complexity]:
    return {
        name: measure_complexity(build_on_meta(name), get_card(name).input_size)
        for name in suite_models("paper")
    }


def test_paper_suite_equals_published_params_and_flops(paper_measured) -> None:
    for name, measured in paper_measured.items():
        card = get_card(name)
        assert measured.flops == 2 * measured.macs
        assert abs(measured.macs / 1e9 - card.gmacs) <= GMACS_ROUNDING, name
        assert abs(measured.flops - card.flops_published) <= 2 * GMACS_ROUNDING * 1e9, name
        if name != "inception_v3":
            assert measured.params == card.params, name


def test_paper_suite_snapshot_equals_live_measurement(paper_measured) -> None:
    for name, measured in paper_measured.items():
        assert model_complexity(name) == measured, name


def test_inception_published_params_differ_exactly_by_the_aux_head(paper_measured) -> None:
    with _tensors_on_meta():
        with_aux = tvm.inception_v3(weights=None, aux_logits=True, init_weights=False)
    aux_params = sum(p.numel() for p in with_aux.AuxLogits.parameters())
    card = get_card("inception_v3")
    assert card.params - paper_measured["inception_v3"].params == aux_params
    assert "AuxLogits" in card.notes and "aux_logits=False" in card.notes
    # The published _ops are the inference count: the aux head only runs in training.
    assert abs(paper_measured["inception_v3"].macs / 1e9 - card.gmacs) <= GMACS_ROUNDING


def test_googlenet_published_count_is_the_inference_model(paper_measured) -> None:
    model = build_on_meta("googlenet")
    assert model.aux1 is None and model.aux2 is None and model.transform_input
    assert paper_measured["googlenet"].params == get_card("googlenet").params
    assert "AuxLogits" not in get_card("googlenet").notes
