"""Complexity counting: hand-checked counts, meta == CPU, and the paper suite against
torchvision's published num_params and _ops."""

from __future__ import annotations

import warnings

import pytest

from core.errors import DataError
from core.zoo.complexity import KERNEL_KINDS, LAYER_CATEGORIES, Complexity, measure_complexity

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


# ---- the kernel census ---------------------------------------------------------------


class CensusBlock(nn.Module):
    """One of each kind of kernel, functional ops included."""

    def __init__(self) -> None:
        super().__init__()
        self.dense = nn.Conv2d(4, 8, 1, bias=False)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.grouped = nn.Conv2d(8, 8, 1, groups=2, bias=False)
        self.norm = nn.BatchNorm2d(8)
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dense(x)
        y = self.grouped(self.depthwise(y)) + y  # a functional add: no module sees it
        y = torch.relu(self.norm(y))
        y = torch.cat([y, y], dim=1)
        y = y.mean(dim=(2, 3))
        return self.head(y)  # a view of the weight (t) and addmm


def test_kernel_census_of_a_tiny_model_by_hand() -> None:
    c = measure_complexity(CensusBlock(), (4, 5, 5))
    assert c.kernel_counts == {
        "conv": 1, "depthwise_conv": 1, "grouped_conv": 1, "matmul": 1, "norm": 1,
        "pool": 1, "elementwise": 2, "other": 1, "view": 1, "alloc": 1,
    }  # fmt: skip
    assert c.launches == 9  # views and allocations launch nothing
    dense, depthwise, grouped = 8 * 25 * 4, 8 * 25 * 9, 8 * 25 * 4  # MACs
    assert c.kernel_flops == {
        "conv": 2 * dense, "depthwise_conv": 2 * depthwise, "grouped_conv": 2 * grouped,
        "matmul": 2 * 16 * 3, "norm": 0, "pool": 0, "elementwise": 0, "other": 0,
        "view": 0, "alloc": 0,
    }  # fmt: skip
    assert sum(c.kernel_flops.values()) == c.flops
    # Activations read + written, in fp32 elements: 4x5x5 in, 8x5x5 maps, 16 pooled, 3 out.
    elements = {
        "conv": 100 + 200, "depthwise_conv": 200 + 200, "grouped_conv": 200 + 200,
        "matmul": 16 + 3, "norm": 200 + 200, "pool": 400 + 16,
        "elementwise": (200 + 200 + 200) + (200 + 200), "other": 400 + 400,
        "view": 0, "alloc": 0,
    }  # fmt: skip
    assert c.kernel_traffic_mb == pytest.approx({k: v * 4 / 1e6 for k, v in elements.items()})
    # Weights read: conv kernels, the norm's four vectors, the head's weight (through its
    # transposed view) and bias.
    weights = {"conv": 32, "depthwise_conv": 72, "grouped_conv": 32, "matmul": 48 + 3, "norm": 32}
    expected = {k: weights.get(k, 0) * 4 / 1e6 for k in KERNEL_KINDS}
    assert c.kernel_weight_mb == pytest.approx(expected)
    with torch.device("meta"):
        on_meta = CensusBlock()
    assert measure_complexity(on_meta, (4, 5, 5)) == c


def test_kernel_census_of_zoo_models(paper_measured) -> None:
    for name, c in paper_measured.items():
        assert sum(c.kernel_flops.values()) == c.flops, name
        assert set(c.kernel_counts) == set(KERNEL_KINDS), name
        assert c.launches >= c.depth, name  # every conv and linear is a launch
    resnet = paper_measured["resnet18"]
    assert resnet.kernel_counts["depthwise_conv"] == resnet.kernel_counts["grouped_conv"] == 0
    assert resnet.kernel_counts["conv"] == 20 and resnet.kernel_counts["matmul"] == 1
    # 17 ReLUs plus the 8 residual adds, which are functional: no leaf module counts them.
    assert resnet.kernel_counts["elementwise"] == 25
    assert resnet.layer_counts["activation"] == 9
    mobilenet = paper_measured["mobilenet_v2"]
    assert mobilenet.kernel_counts["depthwise_conv"] == 17  # one per inverted residual block
    share = mobilenet.kernel_flops["depthwise_conv"] / mobilenet.flops
    assert 0.03 < share < 0.12  # few FLOPs ...
    traffic = mobilenet.kernel_traffic_mb
    assert traffic["depthwise_conv"] / sum(traffic.values()) > 0.1  # ... much traffic
    resnext = paper_measured["resnext50_32x4d"]
    assert resnext.kernel_counts["grouped_conv"] == 16 and resnext.kernel_flops["grouped_conv"] > 0
    assert (
        model_complexity("vit_b_16").kernel_flops["matmul"]
        > 0.9 * model_complexity("vit_b_16").flops
    )


def test_records_without_the_census_still_load() -> None:
    c = measure_complexity(tiny_model(), (3, 8, 8))
    old = c.to_dict()
    for key in ("kernel_counts", "kernel_flops", "kernel_traffic_mb", "kernel_weight_mb"):
        del old[key]
    loaded = Complexity.from_dict(old)
    assert loaded.kernel_counts == {} and loaded.kernel_flops == {} and loaded.launches == 0
    assert (loaded.flops, loaded.params, loaded.layer_counts) == (c.flops, c.params, c.layer_counts)
    assert "kernel_counts" not in old and Complexity.from_dict(loaded.to_dict()) == loaded
    broken = c.to_dict()
    broken["kernel_counts"] = {**broken["kernel_counts"], "warp_drive": 1}
    with pytest.raises(DataError, match="warp_drive"):
        Complexity.from_dict(broken)
