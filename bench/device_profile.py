"""Device profiling for the kernel-level predictor: synthetic single-layer blocks timed on
the device, where the zoo's own layers leave the shape space thin.

Each block is a tiny torch model, a convolution then an activation (ReLU, SiLU, Hardswish,
ReLU6, Sigmoid or none), with a residual sum where the shapes allow, with sampled
channels in and out, spatial size (log-uniform, 7 to 150), kernel, stride and groups
(dense, grouped, depthwise), at a sampled batch size. It is converted to OpenVINO IR by
the same converter as the zoo models (core.backends.convert.export_ir, so its layers
are named as theirs are: .../aten::silu_/Swish), compiled for the device and precision
asked for, and profiled through the backend's own ``profile_layers`` (PERF_COUNT, the
same LayerRecord path as ``backbench run --profile-layers``): its records are exactly
what the predictor is trained on, the convolution as OpenVINO fused it and the reorders
it put around it.

Writes the records as a layers CSV (the columns of ``backbench layers --format csv``),
for ``bench/kernel_predict.py --synthetic FILE``, and says how long the profiling took.

    python bench/device_profile.py [--blocks N] [--out FILE] [--device CPU] [--precision fp32]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.backends import get_backend  # noqa: E402
from core.backends.base import ModelSource  # noqa: E402
from core.cli.layers import LAYER_COLUMNS  # noqa: E402
from core.results import Backend, Case, parse_precision  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "data" / "ov_cpu_f32_synthetic_layers.csv.gz"
CHANNELS = (16, 24, 32, 40, 48, 64, 80, 96, 112, 128, 192, 256, 320, 384, 512, 768, 1024)
ACTIVATIONS = ("relu", "silu", "hardswish", "relu6", "sigmoid", "none")
KERNELS = (1, 3, 5)
BATCHES = (1, 2, 4, 8)
ID_OFFSET = 10_000_000  # measurement ids of synthetic blocks, apart from any store's


def sample_block(rng: np.random.Generator) -> dict[str, Any]:
    """One block's geometry: dense (60%), depthwise (25%) or grouped (15%)."""
    kind = rng.choice(["dense", "depthwise", "grouped"], p=[0.6, 0.25, 0.15])
    size = int(round(float(np.exp(rng.uniform(np.log(7), np.log(150))))))
    cin = int(rng.choice(CHANNELS))
    # Wide layers live at small sizes in real backbones; keep the blocks plausible.
    while cin * size * size > 64 * 112 * 112 * 2:
        cin = int(rng.choice(CHANNELS))
    kernel = int(rng.choice(KERNELS if kind == "dense" else (3, 5)))
    stride = int(rng.choice([1, 1, 2]))
    if kind == "depthwise":
        groups, cout = cin, cin
    elif kind == "grouped":
        groups = int(rng.choice([g for g in (8, 16, 32) if cin % g == 0] or [1]))
        cout = cin
    else:
        groups, cout = 1, int(rng.choice(CHANNELS))
    residual = bool(stride == 1 and cin == cout and rng.random() < 0.5)
    return {"cin": cin, "cout": cout, "size": size, "kernel": kernel, "stride": stride,
            "groups": groups, "batch": int(rng.choice(BATCHES)),
            "activation": str(rng.choice(ACTIVATIONS)), "residual": residual}  # fmt: skip


def make_block(folder: Path, index: int, block: dict[str, Any]) -> Path:
    """The block as OpenVINO IR, converted as the zoo's models are."""
    import torch

    from core.backends.convert import export_ir

    class Block(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            k = block["kernel"]
            self.conv = torch.nn.Conv2d(block["cin"], block["cout"], k, block["stride"], k // 2,
                                        groups=block["groups"])  # fmt: skip
            self.act = {
                "relu": torch.nn.ReLU(), "silu": torch.nn.SiLU(), "hardswish": torch.nn.Hardswish(),
                "relu6": torch.nn.ReLU6(), "sigmoid": torch.nn.Sigmoid(), "none": torch.nn.Identity(),
            }[block["activation"]]  # fmt: skip

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.act(self.conv(x))
            return y + x if block["residual"] else y

    torch.manual_seed(index)
    target = folder / f"block{index}.xml"
    export_ir(Block().eval(), (block["cin"], block["size"], block["size"]), target)
    return target


def profile_block(path: Path, block: dict[str, Any], device: str, precision: str) -> Any:
    case = Case(str(path), Backend.OPENVINO, device, parse_precision(precision), block["batch"])
    prepared = get_backend(Backend.OPENVINO).prepare(case, ModelSource(str(path)))
    try:
        return case, prepared.profile_layers()  # type: ignore[attr-defined]
    finally:
        prepared.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--blocks", type=int, default=240)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--device", default="CPU")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    rows: list[dict[str, Any]] = []
    started = time.perf_counter_ns()
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(args.blocks):
            block = sample_block(rng)
            path = make_block(Path(tmp), index, block)
            case, profile = profile_block(path, block, args.device, args.precision)
            name = "synthetic_conv_c{cin}_o{cout}_s{size}_k{kernel}_st{stride}_g{groups}_{activation}".format(
                **block
            )
            for seq, layer in enumerate(profile.layers):
                rows.append({
                    "run_id": None, "measurement_id": ID_OFFSET + index, "model": name,
                    "backend": case.backend.value, "device": case.device, "precision": case.precision.value,
                    "batch_size": case.batch_size, "seq": seq, "name": layer.name, "type": layer.type,
                    "exec_type": layer.exec_type, "time_ms": layer.time_ms,
                    "share": layer.time_ms / profile.sum_ms if profile.sum_ms > 0 else None,
                    "flops": layer.flops, "bytes": layer.bytes,
                    "input_shapes": json.dumps([list(s) for s in layer.input_shapes]),
                    "output_shapes": json.dumps([list(s) for s in layer.output_shapes]),
                    "fused": json.dumps(list(layer.fused)), "layer_precision": layer.precision,
                    "layer_sum_ms": profile.sum_ms, "e2e_median_ms": profile.profiled_median_ms,
                })  # fmt: skip
            if (index + 1) % 20 == 0:
                elapsed = (time.perf_counter_ns() - started) / 1e9
                print(f"  {index + 1}/{args.blocks} blocks, {elapsed:.0f} s", flush=True)
    seconds = (time.perf_counter_ns() - started) / 1e9
    frame = pd.DataFrame.from_records(rows, columns=list(LAYER_COLUMNS))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    print(f"Profiled {args.blocks} synthetic blocks ({len(frame)} layer records) on OpenVINO {args.device} "
          f"{args.precision} in {seconds:.0f} s ({seconds / args.blocks:.2f} s a block); wrote {args.out}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
