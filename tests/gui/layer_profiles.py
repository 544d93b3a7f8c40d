"""Per-layer profiles for the GUI tests: resnet18 on OpenVINO's CPU plugin at fp32 and at
bf16, shaped as `run --profile-layers` records them (node names, fused original layers,
the oneDNN primitives: brgconv_avx512_f32 against brgconv_avx512_amx_bf16).

The bf16 profile matches the fp32 one three ways: five nodes keep their names, one
convolution was renamed but executes the same fused original layers, and the pooling
at the end was renamed with nothing fused into it (same type, same place). A Convert
runs only at bf16.
"""

from __future__ import annotations

from core.results import (
    Backend,
    Case,
    LatencyStats,
    LayerProfile,
    LayerRecord,
    Measurement,
    Precision,
    Status,
)

# name, type, exec type, ms, output shape, fused, GFLOPs x 1e9, bytes
FP32_LAYERS = (
    ("x_abcd_acdb_Multiply_5466", "Reorder", "reorder_brgemm_f32", 0.18, (1, 3, 224, 224), (), None, 1_204_224),
    ("Multiply_5466", "Convolution", "brgconv_avx512_f32", 1.00, (1, 64, 112, 112),
     ("Multiply_5466", "__module.relu/aten::relu_/Relu"), 236_027_904, 3_851_008),
    ("__module.maxpool/aten::max_pool2d/MaxPool", "Pooling", "jit_avx512_f32", 0.16, (1, 64, 56, 56),
     ("__module.maxpool/aten::max_pool2d/MaxPool",), None, 4_014_080),
    ("Multiply_5473", "Convolution", "brgconv_avx512_f32", 0.71, (1, 64, 56, 56),
     ("Multiply_5473", "__module.layer1.0.relu/aten::relu_/Relu"), 231_211_008, 1_753_088),
    ("Multiply_5578", "Convolution", "brgconv_avx512_f32", 1.27, (1, 512, 7, 7),
     ("Multiply_5578", "__module.layer4.0/aten::add_/Add", "__module.layer4.0.relu/aten::relu_/Relu_1"),
     231_211_008, 9_738_240),
    ("__module.avgpool/aten::adaptive_avg_pool2d/AdaptiveAvgPool", "Reduce", "jit_avx512_f32", 0.043,
     (1, 512, 1, 1), ("__module.avgpool/aten::adaptive_avg_pool2d/AdaptiveAvgPool",), None, 102_408),
    ("__module.fc/aten::linear/Add", "FullyConnected", "gemm_mlas_f32", 0.157, (1, 1000),
     ("__module.fc/aten::linear/Add",), 1_024_000, 2_058_048),
)  # fmt: skip
BF16_LAYERS = (
    ("x_abcd_acdb_Multiply_5466", "Reorder", "reorder_brgemm_bf16", 0.10, (1, 3, 224, 224), (), None, 602_112),
    ("Multiply_5466", "Convolution", "brgconv_avx512_amx_bf16", 0.35, (1, 64, 112, 112),
     ("Multiply_5466", "__module.relu/aten::relu_/Relu"), 236_027_904, 1_925_504),
    ("__module.maxpool/aten::max_pool2d/MaxPool", "Pooling", "jit_avx512_bf16", 0.08, (1, 64, 56, 56),
     ("__module.maxpool/aten::max_pool2d/MaxPool",), None, 2_007_040),
    ("Multiply_9001", "Convolution", "brgconv_avx512_amx_bf16", 0.22, (1, 64, 56, 56),
     ("Multiply_9001", "__module.layer1.0.relu/aten::relu_/Relu"), 231_211_008, 876_544),
    ("Multiply_5578", "Convolution", "brgconv_avx512_amx_bf16", 0.41, (1, 512, 7, 7),
     ("Multiply_5578", "__module.layer4.0/aten::add_/Add", "__module.layer4.0.relu/aten::relu_/Relu_1"),
     231_211_008, 4_869_120),
    ("Convert_1234", "Convert", "jit_avx512_bf16", 0.02, (1, 512, 7, 7), (), None, 75_264),
    ("AdaptiveAvgPool_77", "Reduce", "jit_avx512_bf16", 0.03, (1, 512, 1, 1), (), None, 51_204),
    ("__module.fc/aten::linear/Add", "FullyConnected", "brgemm_avx512_amx_bf16", 0.06, (1, 1000),
     ("__module.fc/aten::linear/Add",), 1_024_000, 1_029_024),
)  # fmt: skip
FP32_SUM_MS = sum(row[3] for row in FP32_LAYERS)  # 3.52
BF16_SUM_MS = sum(row[3] for row in BF16_LAYERS)  # 1.27
FP32_E2E_MS = 4.2
BF16_E2E_MS = 1.6


def layers(rows: tuple[tuple, ...], precision: str) -> tuple[LayerRecord, ...]:  # type: ignore[type-arg]
    return tuple(
        LayerRecord(name=name, type=kind, exec_type=exec_type, time_ms=ms, input_shapes=(), output_shapes=(out,),
                    flops=flops, bytes=size, fused=fused, precision=precision)  # fmt: skip
        for name, kind, exec_type, ms, out, fused, flops, size in rows
    )


def measurement(
    precision: Precision,
    *,
    profiled: bool = True,
    model: str = "resnet18",
    measurement_id: int = 1,
    run_id: int = 1,
) -> Measurement:
    fp32 = precision is Precision.FP32
    e2e_ms = FP32_E2E_MS if fp32 else BF16_E2E_MS
    profile = LayerProfile(
        iterations=50,
        layers=layers(FP32_LAYERS if fp32 else BF16_LAYERS, "f32" if fp32 else "bf16"),
        profiled_median_ms=e2e_ms * 1.1,
        source="openvino perf counters",
    )
    samples = [int(e2e_ms * 1e6 * f) for f in (0.98, 0.99, 1.0, 1.0, 1.01, 1.02, 1.0)]
    return Measurement(
        case=Case(model, Backend.OPENVINO, "CPU", precision, 1), status=Status.OK,
        stats=LatencyStats.from_samples(samples), run_id=run_id, run_name=f"ov-{precision.value}",
        measurement_id=measurement_id, layer_profile=profile if profiled else None,
    )  # fmt: skip


def fp32_and_bf16() -> list[Measurement]:
    return [
        measurement(Precision.FP32, measurement_id=1, run_id=1),
        measurement(Precision.BF16, measurement_id=2, run_id=2),
    ]
