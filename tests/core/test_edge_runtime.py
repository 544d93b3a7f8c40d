"""The OpenVINO 2022.3 LTS edge runtime for real: `backbench run --runtime` measures on
CPython 3.10 with openvino==2022.3.2 (the venv of packaging/edge-runtime.sh, which `make
test` builds), on the CPU device (MYRIAD is the same code path), and the run records
that interpreter's versions, not this one's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.store import Store
from tests.realenv import missing

REPO = Path(__file__).resolve().parents[2]
RUNTIME = "openvino-2022.3"
FAST = ["--min-iters", "3", "--max-time", "0.2", "--target-ci", "0.5"]


def edge_python() -> Path:
    venv = Path(os.environ.get("BACKBENCH_EDGE_VENV") or REPO / ".venv-edge")
    python = venv / "bin" / "python"
    if not python.is_file():
        missing(f"the OpenVINO 2022.3 edge runtime is not built at {venv} (make edge-runtime)")
    return python


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A user configuration naming the edge runtime, and a cache and store of its own."""
    python = edge_python()
    root = tmp_path_factory.mktemp("edge")
    (root / "config" / "backbench").mkdir(parents=True)
    # Only core/ on its path, as the packages' /opt/backbench/worker holds it.
    worker = root / "worker"
    worker.mkdir()
    (worker / "core").symlink_to(REPO / "core")
    (root / "config" / "backbench" / "config.toml").write_text(
        f'[runtimes.{RUNTIME}]\npython = "{python}"\npythonpath = ["{worker}"]\n'
        'description = "OpenVINO 2022.3.2 on CPython 3.10"\n'
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "BACKBENCH_CACHE_DIR")}
    env.update(XDG_CONFIG_HOME=str(root / "config"), XDG_CACHE_HOME=str(root / "cache"),
               XDG_DATA_HOME=str(root / "data"))  # fmt: skip
    yield {"root": root, "env": env, "db": root / "results.db", "python": python}


def backbench(home: dict[str, Any], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "core.cli", *args], env=home["env"], cwd=home["root"],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def make_ir(path: Path, newer_op: bool = False) -> Path:
    """A tiny IR written by this host's (newer) OpenVINO; with ``newer_op`` it uses
    MaxPool-14, which OpenVINO 2022.3 cannot read."""
    import openvino as ov
    from openvino import opset1, opset14

    data = opset1.parameter([-1, 3, 16, 16], np.float32, name="input")
    weights = opset1.constant(np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32))
    node = opset1.convolution(data, weights, [1, 1], [1, 1], [1, 1], [1, 1])
    if newer_op:
        node = opset14.max_pool(node, [1, 1], [1, 1], [0, 0], [0, 0], [2, 2]).output(0)
    out = opset1.relu(node)
    ov.save_model(ov.Model([out.output(0)], [data], path.stem), str(path), compress_to_fp16=False)
    return path


def last_run(home: dict[str, Any]) -> tuple[Any, list[Any]]:
    store = Store(home["db"])
    try:
        run = store.latest_run()
        assert run is not None
        return run, store.measurements(run.id)
    finally:
        store.close()


def assert_on_edge(run: Any, measurements: list[Any]) -> None:
    """The run and its cases say they ran on the 2022.3 runtime's own interpreter."""
    manifest = run.manifest
    assert run.spec.runtime == RUNTIME
    assert manifest["python"].startswith("3.10.")
    assert manifest["packages"]["openvino"] == "2022.3.2"
    assert manifest["runtime"]["name"] == RUNTIME and manifest["runtime"]["python_version"].startswith("3.10.")
    assert manifest["supervisor"]["python"] == sys.version.split()[0]
    assert manifest["worker_start"]["method"] == "fork-server", manifest["worker_start"]
    for m in measurements:
        assert m.status.value == "ok", m.error
        assert m.conditions["runtime"] == RUNTIME
        assert m.backend_config["openvino_version"].startswith("2022.3.2")
        assert m.backend_config["api"] == "legacy"


def test_an_ir_file_is_measured_on_the_2022_3_runtime(home: dict[str, Any]) -> None:
    model = make_ir(home["root"] / "conv.xml")
    backbench(home, "run", "-m", str(model), "--backend", "openvino", "--device", "CPU",
              "--batch", "1,2", "--runtime", RUNTIME, "--db", str(home["db"]), *FAST)  # fmt: skip
    run, measurements = last_run(home)
    assert len(measurements) == 2
    assert_on_edge(run, measurements)
    assert measurements[1].backend_config["input_shape"] == [2, 3, 16, 16]


def test_the_callers_environment_and_folder_do_not_reach_the_runtime(home: dict[str, Any]) -> None:
    """The host's OpenVINO libraries on LD_LIBRARY_PATH, an API override, and a bogus core/
    in the working folder: the runtime's workers still load their own."""
    import openvino

    here = home["root"] / "bogus-cwd"
    (here / "core").mkdir(parents=True)
    (here / "core" / "__init__.py").write_text("raise ImportError('the bogus core')\n")
    model = make_ir(home["root"] / "env.xml")
    env = {**home["env"], "LD_LIBRARY_PATH": str(Path(openvino.__file__).parent / "libs"),
           "BACKBENCH_OV_API": "modern", "PYTHONNOUSERSITE": "1"}  # fmt: skip
    done = subprocess.run(
        # -P: this (3.11) supervisor ignores the folder's core/ too.
        [sys.executable, "-P", "-m", "core.cli", "run", "-m", str(model), "--backend", "openvino",
         "--batch", "1", "--runtime", RUNTIME, "--db", str(home["db"]), *FAST],
        env=env, cwd=here, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    run, measurements = last_run(home)
    assert_on_edge(run, measurements)  # api "legacy": BACKBENCH_OV_API did not reach it


def test_a_zoo_model_reaches_the_2022_3_runtime_as_onnx(home: dict[str, Any]) -> None:
    backbench(home, "run", "-m", "squeezenet1_1", "--backend", "openvino", "--runtime", RUNTIME,
              "--db", str(home["db"]), *FAST)  # fmt: skip
    run, measurements = last_run(home)
    assert_on_edge(run, measurements)
    # This host exported ONNX at opset 13 with torch; OpenVINO 2022.3 read it itself. No
    # IR of this host's newer OpenVINO was made for it.
    config = measurements[0].backend_config
    assert config["model_format"] == "onnx" and config["model_path"].endswith("-op13.onnx")
    cache = Path(home["env"]["XDG_CACHE_HOME"]) / "backbench"
    assert not list(cache.glob("ir/*.xml"))


def test_an_ir_of_a_newer_openvino_says_who_made_it_and_what_to_do(home: dict[str, Any]) -> None:
    model = make_ir(home["root"] / "pool14.xml", newer_op=True)
    backbench(home, "run", "-m", str(model), "--backend", "openvino", "--runtime", RUNTIME,
              "--db", str(home["db"]), *FAST)  # fmt: skip
    _run, (m,) = last_run(home)
    import openvino as ov

    made_by = ov.get_version().split("-")[0]
    assert m.status.value == "failed"
    assert f"OpenVINO 2022.3.2 cannot read {model}: it was written by OpenVINO {made_by}" in m.error
    assert "as ONNX" in m.error and "delete" not in m.error.lower()


def test_runtimes_check_reports_the_interpreters_versions(home: dict[str, Any]) -> None:
    done = backbench(home, "runtimes", "--check", "--format", "json")
    (row,) = json.loads(done.stdout)
    assert row["name"] == RUNTIME and row["ok"] and row["python_version"].startswith("3.10.")
    assert row["packages"]["openvino"] == "2022.3.2" and "torch" not in row["packages"]
    unknown = backbench(home, "run", "-m", "squeezenet1_1", "--backend", "openvino",
                        "--runtime", "nope", "--db", str(home["db"]), check=False)  # fmt: skip
    assert unknown.returncode != 0
    assert f"Unknown worker runtime 'nope'; configured: {RUNTIME}." in unknown.stderr
    assert "config.toml" in unknown.stderr


def test_the_worker_imports_on_python_3_10_without_torch(home: dict[str, Any]) -> None:
    """Everything the worker, its fork server and the probes import, on the runtime."""
    code = (
        "import sys, core.measure.worker, core.measure.zygote, core.measure.runtimes, "
        "core.backends.openvino_backend\n"
        "assert sys.version_info[:2] == (3, 10), sys.version\n"
        "assert 'torch' not in sys.modules\n"
    )
    env = {**home["env"], "PYTHONPATH": str(home["root"] / "worker")}
    done = subprocess.run([str(home["python"]), "-c", code], env=env, cwd="/", capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_accuracy_on_the_2022_3_runtime_agrees_with_the_hosts_reference(home: dict[str, Any]) -> None:
    """An NCS2 user's accuracy: OpenVINO 2022.3 on Python 3.10 decodes the images (Pillow)
    and evaluates; the reference (ONNX Runtime fp32) runs on the host's interpreter."""
    import json

    from tests.core.accuracylib import colour_imagefolder, colour_model_onnx

    expected = colour_imagefolder(home["root"] / "colours")
    model = colour_model_onnx(home["root"] / "colour3.onnx", 3)
    done = backbench(home, "accuracy", "-m", str(model), "--dataset", str(home["root"] / "colours"),
                     "--backend", "openvino", "--runtime", RUNTIME, "--batch", "4", "--db", str(home["db"]),
                     "--format", "json")  # fmt: skip
    rows = json.loads(done.stdout[done.stdout.index("[") : done.stdout.rindex("]") + 1])
    assert [r["platform"] for r in rows] == ["onnxruntime/cpu/fp32", "openvino/CPU/fp32"]
    for r in rows:
        assert (r["n_images"], r["top1_correct"], r["skipped"]) == (expected["images"], expected["top1"], expected["skipped"])
    assert rows[1]["top1_agreement"] == 100.0 and rows[1]["max_logit_diff"] < 1e-4
    run, measurements = last_run(home)
    assert_on_edge(run, measurements)


def test_a_per_layer_profile_on_the_2022_3_runtime(home: dict[str, Any]) -> None:
    """The NCS2 host's OpenVINO 2022.3 reports its performance counters and execution
    graph through the same profile (there on the CPU device; MYRIAD has its own)."""
    model = make_ir(home["root"] / "conv-profiled.xml")
    backbench(home, "run", "-m", str(model), "--backend", "openvino", "--device", "CPU", "--batch", "2",
              "--runtime", RUNTIME, "--profile-layers", "--db", str(home["db"]), *FAST)  # fmt: skip
    run, measurements = last_run(home)
    assert_on_edge(run, measurements)
    (m,) = measurements
    profile = m.layer_profile
    assert profile is not None and profile.source == "openvino perf counters" and profile.iterations >= 3
    conv = next(layer for layer in profile.layers if layer.type == "Convolution")
    assert conv.output_shapes == ((2, 4, 16, 16),) and conv.flops == 2 * 2 * 4 * 16 * 16 * 3 * 3 * 3
