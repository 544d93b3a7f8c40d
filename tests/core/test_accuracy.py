"""Measured accuracy: exact top-1/top-5 on generated datasets in every layout, through
real workers, the store and the CLI; the refusals; and agreement between backends and
precisions on a small CNN trained here on real images (scikit-learn's digits)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from core.errors import UsageError
from core.measure.datasets import imagenet_wnids
from core.measure.runner import run_sweep
from core.results import AccuracySpec, Backend, Measurement, Mode, Precision, RunSpec, Status
from core.store import Store
from tests.core.accuracylib import (
    BLUE,
    GREEN,
    RED,
    colour_imagefolder,
    colour_model_onnx,
    solid,
    train_digits_cnn,
    write_cifar,
)


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The reference logits live in the cache: each test starts with none.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "core.cli", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def sweep(tmp_path: Path, model: str, dataset: Path, backend: Backend = Backend.ONNXRUNTIME,
          precision: Precision = Precision.FP32, batch: int = 4, weights: dict[str, str] | None = None,
          **options: Any) -> Measurement:
    spec = RunSpec(
        models=(model,), backend=backend, device="CPU" if backend is Backend.OPENVINO else "cpu",
        precision=precision, batch_sizes=(batch,), mode=Mode.ACCURACY,
        accuracy=AccuracySpec(dataset=str(dataset), **options), weights=weights or {},
    )  # fmt: skip
    with Store(tmp_path / "results.db") as store:
        run = run_sweep(spec, store)
        (measurement,) = store.measurements(run.id)
    return measurement


def test_imagenet_val_layout_counts_top1_and_top5_exactly(tmp_path: Path) -> None:
    wnids = imagenet_wnids()
    root = tmp_path / "val"
    # Index 0/1/2 hold their own colour: top-1 right. Index 3 holds red images: top-1
    # wrong (0), top-5 right ({0..4}). Index 9 holds green: both wrong.
    for j in range(3):
        solid(root / wnids[0] / f"r{j}.JPEG", RED)
        solid(root / wnids[1] / f"g{j}.JPEG", GREEN)
        solid(root / wnids[2] / f"b{j}.JPEG", BLUE)
    for j in range(2):
        solid(root / wnids[3] / f"x{j}.JPEG", RED)
        solid(root / wnids[9] / f"y{j}.JPEG", GREEN)
    model = colour_model_onnx(tmp_path / "colour1000.onnx", 1000)
    m = sweep(tmp_path, str(model), root, batch=3)
    assert m.status is Status.OK, m.error
    acc = m.accuracy
    assert acc is not None and m.stats is None  # an accuracy row carries no latency figures
    assert (acc.n_images, acc.top1_correct, acc.top5_correct, acc.skipped) == (13, 9, 11, 0)
    assert acc.top1 == pytest.approx(100 * 9 / 13) and acc.top5 == pytest.approx(100 * 11 / 13)
    low, high = acc.top1_ci or (0, 0)
    assert low < acc.top1 < high
    assert acc.dataset["layout"] == "imagenet-val" and acc.num_classes == 1000
    # The reference of an ONNX file is ONNX Runtime fp32: this case is it.
    assert acc.reference == "onnxruntime/cpu/fp32" and acc.note == "this is the reference platform"


def test_cifar10_layout_and_the_stored_record(tmp_path: Path) -> None:
    folder = write_cifar(tmp_path / "cifar-10-batches-py", [0, 1, 2, 0, 5], [RED, GREEN, BLUE, GREEN, RED])
    model = colour_model_onnx(tmp_path / "colour10.onnx", 10)
    m = sweep(tmp_path, str(model), tmp_path)  # the parent folder: the layout is found inside
    assert m.status is Status.OK, m.error
    acc = m.accuracy
    assert acc is not None
    assert (acc.n_images, acc.top1_correct, acc.top5_correct) == (5, 3, 4)
    assert acc.dataset["layout"] == "cifar10" and acc.dataset["verified"] is False  # not the published files
    assert acc.preprocessing["crop"] == 32 and acc.preprocessing["resize"] == 32  # scaled whole, not cropped
    with Store(tmp_path / "results.db") as store:
        (stored,) = store.measurements()
        row = store.to_dataframe().iloc[0]
    assert stored.accuracy == acc
    assert row["top1"] == pytest.approx(60.0) and row["n_eval_images"] == 5 and row["dataset_id"] == acc.dataset_id
    assert folder.is_dir()


def test_limit_and_bgr_are_applied_and_recorded(tmp_path: Path) -> None:
    root = tmp_path / "data"
    colour_imagefolder(root)
    model = colour_model_onnx(tmp_path / "colour3.onnx", 3)
    m = sweep(tmp_path, str(model), root, limit=6, seed=3)
    acc = m.accuracy
    assert acc is not None and acc.n_images + acc.skipped == 6
    assert acc.dataset["limit"] == 6 and acc.dataset["seed"] == 3 and acc.dataset["n_total"] == 16
    # BGR: a red image reads as blue and a blue one as red; green stays green. Right
    # then: the four greens, and the two reds filed as blue.
    bgr = sweep(tmp_path, str(model), root, bgr=True)
    assert bgr.accuracy is not None and bgr.accuracy.preprocessing["bgr"] is True
    assert (bgr.accuracy.n_images, bgr.accuracy.top1_correct) == (15, 6)


def test_random_weights_are_refused_with_how_to_give_weights(tmp_path: Path) -> None:
    root = tmp_path / "data"
    colour_imagefolder(root)
    with pytest.raises(UsageError) as info:
        sweep(tmp_path, "resnet18", root, backend=Backend.TORCH)
    assert "random weights" in info.value.message and "--weights FILE" in (info.value.hint or "")


def test_a_class_count_that_does_not_match_fails_the_case_with_a_reason(tmp_path: Path) -> None:
    root = tmp_path / "data"
    colour_imagefolder(root)
    model = colour_model_onnx(tmp_path / "colour10.onnx", 10)
    m = sweep(tmp_path, str(model), root)
    assert m.status is Status.FAILED
    assert "10 output classes" in (m.error or "") and "has 3" in (m.error or "")


def test_a_missing_dataset_says_what_layouts_are_expected(tmp_path: Path) -> None:
    model = colour_model_onnx(tmp_path / "colour3.onnx", 3)
    with pytest.raises(UsageError) as info:
        sweep(tmp_path, str(model), tmp_path / "nowhere")
    assert "does not exist" in info.value.message and "imagefolder" in (info.value.hint or "")


def test_cli_end_to_end_on_an_imagefolder_with_wrong_and_corrupt_images(tmp_path: Path) -> None:
    """As a user runs it: a model file, a tree with mislabelled images and a corrupt one,
    two backends; the exact figures, the skipped count, and agreement with the reference."""
    root = tmp_path / "data"
    expected = colour_imagefolder(root)
    model = colour_model_onnx(tmp_path / "colour3.onnx", 3)
    db = tmp_path / "r.db"
    proc = cli("accuracy", "-m", str(model), "--dataset", str(root), "--backend", "onnxruntime,openvino",
               "--precision", "fp32", "--batch", "4", "--db", str(db), "--format", "json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout[proc.stdout.index("[") : proc.stdout.rindex("]") + 1])
    assert [r["platform"] for r in rows] == ["onnxruntime/cpu/fp32", "openvino/CPU/fp32"]
    for r in rows:
        assert (r["n_images"], r["top1_correct"], r["skipped"]) == (expected["images"], expected["top1"], expected["skipped"])
        assert r["top5"] is None  # three classes: no top-5
        assert r["skipped_files"] == ["a_red/corrupt.jpg"]
    assert rows[0]["note"] == "this is the reference platform"
    assert rows[1]["top1_agreement"] == 100.0 and rows[1]["max_logit_diff"] < 1e-4
    table = cli("results", "--db", str(db), "--format", "csv")
    assert table.returncode == 0 and "top1_agreement" in table.stdout.splitlines()[0]


def test_cli_refuses_an_unreadable_weights_file(tmp_path: Path) -> None:
    root = tmp_path / "data"
    colour_imagefolder(root)
    weights = tmp_path / "broken.pth"
    weights.write_bytes(b"PK\x03\x04 truncated")
    proc = cli("accuracy", "-m", "mobilenet_v3_small", "--weights", str(weights), "--num-classes", "3",
               "--dataset", str(root), "--db", str(tmp_path / "r.db"))  # fmt: skip
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and "broken.pth" in proc.stderr


def test_a_fine_tuned_head_needs_its_class_count(tmp_path: Path) -> None:
    import torch
    import torchvision

    root = tmp_path / "data"
    colour_imagefolder(root)
    weights = tmp_path / "mnv3s-3.pth"
    torch.save(torchvision.models.mobilenet_v3_small(num_classes=3).state_dict(), weights)
    m = sweep(tmp_path, "mobilenet_v3_small", root, backend=Backend.TORCH, weights={"mobilenet_v3_small": str(weights)})
    assert m.status is Status.FAILED and "--num-classes 3" in (m.error or "")
    ok = sweep(tmp_path, "mobilenet_v3_small", root, backend=Backend.TORCH, num_classes=3,
               weights={"mobilenet_v3_small": str(weights)})  # fmt: skip
    assert ok.status is Status.OK, ok.error
    assert ok.accuracy is not None and ok.accuracy.n_images == 15 and ok.accuracy.num_classes == 3
    # The weights' own transform (mobilenet_v3_small's: resize 256, crop 224), recorded.
    assert (ok.accuracy.preprocessing["resize"], ok.accuracy.preprocessing["crop"]) == (256, 224)


# -- agreement on a real model ---------------------------------------------------------------


@pytest.mark.slow
def test_backends_and_precisions_agree_on_a_cnn_trained_on_real_digits(tmp_path: Path) -> None:
    model, root, torch_top1 = train_digits_cnn(tmp_path)
    assert torch_top1 >= 90.0
    db = tmp_path / "r.db"
    proc = cli("accuracy", "-m", str(model), "--dataset", str(root), "--backend", "openvino",
               "--precision", "fp32,bf16", "--size", "16", "--resize", "16", "--mean", "0.5,0.5,0.5",
               "--std", "0.5,0.5,0.5", "--batch", "16", "--db", str(db), "--format", "json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = {r["platform"]: r for r in json.loads(proc.stdout[proc.stdout.index("[") : proc.stdout.rindex("]") + 1])}
    reference, f32, bf16 = rows["onnxruntime/cpu/fp32"], rows["openvino/CPU/fp32"], rows["openvino/CPU/bf16"]
    assert reference["n_images"] == 397 and reference["top1"] == pytest.approx(torch_top1, abs=0.3)
    assert f32["top1_agreement"] == 100.0 and f32["max_logit_diff"] < 1e-3
    assert bf16["top1_agreement"] >= 97.0 and bf16["top1"] >= 88.0
    assert bf16["inference_precision"] in ("bf16", "f32")  # what OpenVINO says it ran, recorded
