"""The f32-against-bf16 accuracy and agreement table of a small CNN trained on real
images (scikit-learn's digits), measured with `backbench accuracy` on this machine.

    .venv/bin/python bench/accuracy_digits.py [--out docs/perf/accuracy_digits.json]

It trains the CNN (seconds), exports it to ONNX, writes the 397 held-out digits as an
ImageFolder tree, and runs the CLI on ONNX Runtime fp32 (the reference for an ONNX file)
and OpenVINO fp32 and bf16. OpenVINO's bf16 is real on a CPU with AVX-512 BF16 or AMX,
so any drop in accuracy or agreement is real; the JSON says what OpenVINO ran.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.core.accuracylib import train_digits_cnn  # noqa: E402


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model, root, torch_top1 = train_digits_cnn(tmp)
        env = {**os.environ, "XDG_CACHE_HOME": str(tmp / "cache"), "COLUMNS": "160"}
        command = [
            sys.executable, "-m", "core.cli", "accuracy", "-m", str(model), "--dataset", str(root),
            "--backend", "openvino", "--precision", "fp32,bf16", "--size", "16", "--resize", "16",
            "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5", "--batch", "16", "--db", str(tmp / "r.db"),
        ]  # fmt: skip
        table = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
        if table.returncode != 0:
            print(table.stderr, file=sys.stderr)
            return 1
        print(f"torch held-out top-1 after training: {torch_top1:.2f} %")
        print(table.stdout)
        as_json = subprocess.run([*command, "--format", "json"], capture_output=True, text=True, env=env, cwd=REPO)
        text = as_json.stdout
        rows = json.loads(text[text.index("[") : text.rindex("]") + 1])
    record = {
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version()},
        "torch_top1": torch_top1,
        "rows": [
            {k: r.get(k) for k in ("platform", "n_images", "top1", "top1_ci_low", "top1_ci_high", "top1_agreement",
                                   "max_logit_diff", "inference_precision")}  # fmt: skip
            for r in rows
        ],
    }
    if args.out:
        args.out.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
