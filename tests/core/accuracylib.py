"""Datasets and models with known predictions, for the accuracy tests (core, CLI, agent).

The model is global average pooling then a linear layer with set weights: class 0 scores
the red channel, class 1 green, class 2 blue, and class k >= 3 scores ``-k`` (so the
top-5 is always {0, 1, 2, 3, 4}, ordered by colour first). A solid-colour image is
therefore predicted as its dominant colour, whatever the preprocessing, and a test
knows every image's top-1 and top-5 exactly.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np

RED, GREEN, BLUE = (200, 10, 10), (10, 200, 10), (10, 10, 200)
COLOUR_CLASS = {RED: 0, GREEN: 1, BLUE: 2}


def colour_model_onnx(path: Path, num_classes: int, size: int = 32) -> Path:
    """An ONNX file of the colour model, with a dynamic batch axis."""
    import torch

    class ColourModel(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(3, num_classes)
            with torch.no_grad():
                self.fc.weight.zero_()
                self.fc.bias.copy_(-torch.arange(num_classes, dtype=torch.float32))
                for k in range(3):
                    self.fc.weight[k, k] = 10.0
                    self.fc.bias[k] = 0.0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.mean(dim=(2, 3)))

    return export_onnx(ColourModel().eval(), size, path)


def export_onnx(module: Any, size: int, path: Path) -> Path:
    """``module`` as ONNX (opset 13, dynamic batch), for a 3 x size x size input."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # the legacy exporter says it is deprecated; it is chosen
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            module, (torch.zeros(1, 3, size, size),), str(path), input_names=["x"],
            output_names=["logits"], dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}},
            opset_version=13, dynamo=False,
        )  # fmt: skip
    return path


def solid(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (40, 36)) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def colour_imagefolder(root: Path) -> dict[str, int]:
    """Three classes (a_red, b_green, c_blue) of four images each, plus two red images
    filed as blue, one blue image filed as green, and one corrupt file. Returns the
    expected counts: images, top1 correct, skipped."""
    for name, colour in (("a_red", RED), ("b_green", GREEN), ("c_blue", BLUE)):
        for j in range(4):
            solid(root / name / f"{j}.png", colour, (40 + j, 36))
    solid(root / "c_blue" / "wrong-1.png", RED)
    solid(root / "c_blue" / "wrong-2.jpg", RED)
    solid(root / "b_green" / "wrong-3.png", BLUE)
    (root / "a_red" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    return {"images": 15, "top1": 12, "skipped": 1}


def write_cifar(folder: Path, labels: list[int], colours: list[tuple[int, int, int]]) -> Path:
    """A cifar-10-batches-py folder whose test_batch holds solid 32x32 images."""
    folder.mkdir(parents=True, exist_ok=True)
    data = np.zeros((len(labels), 3072), dtype=np.uint8)
    for i, colour in enumerate(colours):
        for c in range(3):
            data[i, c * 1024 : (c + 1) * 1024] = colour[c]
    names = [f"img_{i}.png".encode() for i in range(len(labels))]
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({b"batch_label": b"testing batch 1 of 1", b"labels": labels, b"data": data, b"filenames": names}, fh)
    classes = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": classes, b"num_cases_per_batch": 10000, b"num_vis": 3072}, fh)
    return folder


def train_digits_cnn(tmp_path: Path) -> tuple[Path, Path, float]:
    """A small CNN trained on scikit-learn's digits (1,797 real 8x8 images), exported to
    ONNX; the held-out images written as an ImageFolder tree. Returns (model, dataset,
    held-out accuracy in torch)."""
    import torch
    from PIL import Image
    from sklearn.datasets import load_digits

    from core.measure.preprocess import Preprocessing

    digits = load_digits()
    pixels = (digits.images * (255.0 / 16.0)).round().astype(np.uint8)
    order = np.random.default_rng(0).permutation(len(pixels))
    train, test = order[:1400], order[1400:]
    prep = Preprocessing(resize=16, crop=16, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    images = np.stack([prep(Image.fromarray(p).convert("RGB")) for p in pixels])
    x, y = torch.from_numpy(images), torch.from_numpy(digits.target.astype(np.int64))
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(32 * 4 * 4, 10),
    )  # fmt: skip
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _epoch in range(12):
        for batch in torch.randperm(len(train)).split(64):
            rows = torch.from_numpy(train)[batch]
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(model(x[rows]), y[rows]).backward()
            optimiser.step()
    model.eval()
    with torch.no_grad():
        held_out = float((model(x[test]).argmax(1) == y[test]).float().mean()) * 100
    onnx_path = export_onnx(model, 16, tmp_path / "digits.onnx")
    root = tmp_path / "digits"
    for i in test:
        folder = root / str(digits.target[i])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels[i]).save(folder / f"{i}.png")
    return onnx_path, root, held_out
