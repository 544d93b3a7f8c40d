"""Eval datasets (core.measure.datasets) and the eval transform (core.measure.preprocess):
layouts and labels, skipped images, seeded subsets, dataset identity, the CIFAR-10
reader's refusal of foreign pickles, and equality with torchvision's transforms."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from core.errors import BackendUnavailableError, DataError, UsageError
from core.measure import cifar
from core.measure.datasets import Dataset, detect_layout, imagenet_wnids, open_dataset
from core.measure.preprocess import Preprocessing

CIFAR_CLASSES = [
    b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck",
]  # fmt: skip
# A flat colour per class, far apart, so a decoded image tells its class.
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255)]
RAW = Preprocessing(resize=8, crop=8, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), scale=1.0)


def _save(
    path: Path,
    colour: tuple[int, int, int],
    size: tuple[int, int] = (12, 10),
    fmt: str | None = None,
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format=fmt)
    return path


def _folder_dataset(root: Path, classes: list[str], per_class: int = 2) -> Path:
    for label, name in enumerate(classes):
        for i in range(per_class):
            _save(root / name / f"img{i}.png", COLOURS[label % len(COLOURS)])
    return root


def _class_of(image_chw: np.ndarray) -> int:
    """Which COLOURS entry a RAW-preprocessed image shows."""
    rgb = tuple(int(round(v)) for v in image_chw.reshape(3, -1).mean(axis=1))
    return COLOURS.index(rgb)  # type: ignore[arg-type]


def _all(
    dataset: Dataset, batch_size: int = 4, preprocessing: Preprocessing = RAW, **kw: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    images, labels, indices, skipped = [], [], [], []
    for batch in dataset.batches(batch_size, preprocessing, **kw):
        assert batch.images.dtype == np.float32 and batch.labels.dtype == np.int64
        assert len(batch.images) == len(batch.labels) == len(batch.indices)
        images.append(batch.images)
        labels.append(batch.labels)
        indices.append(batch.indices)
        skipped.extend(batch.skipped)
    return np.concatenate(images), np.concatenate(labels), np.concatenate(indices), skipped


# -- folder layouts ---------------------------------------------------------------------


def test_imagefolder_lists_images_and_labels_as_torchvision_imagefolder(tmp_path: Path) -> None:
    torchvision = pytest.importorskip("torchvision")
    root = _folder_dataset(tmp_path / "data", ["zebra", "ant", "Bee"])
    _save(
        root / "ant" / "deeper" / "a.JPG", COLOURS[1], fmt="JPEG"
    )  # subfolder, upper-case extension
    _save(root / "ant" / "b.jpeg", COLOURS[1], fmt="JPEG")
    (root / "ant" / "notes.txt").write_text("not an image")

    dataset = open_dataset(root)

    reference = torchvision.datasets.ImageFolder(str(root))
    assert dataset.layout == "imagefolder" and dataset.layout_detected
    assert list(dataset.classes) == reference.classes == ["Bee", "ant", "zebra"]
    expected = [(Path(p).relative_to(root).as_posix(), label) for p, label in reference.samples]
    assert [(item.path, item.label) for item in dataset.items] == expected
    assert dataset.num_classes == 3 and dataset.n_total == dataset.n_images == 8
    assert dataset.verified is None and dataset.split is None
    assert all(item.size_bytes == (root / item.path).stat().st_size for item in dataset.items)


def test_each_image_keeps_its_label_and_position(tmp_path: Path) -> None:
    root = _folder_dataset(tmp_path, ["a", "b", "c"], per_class=3)
    dataset = open_dataset(root)
    batches = list(dataset.batches(4, RAW, threads=1))
    assert [len(b.labels) for b in batches] == [4, 4, 1]
    images, labels, indices, skipped = _all(dataset)
    assert skipped == [] and list(indices) == list(range(9))
    assert list(labels) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert [_class_of(image) for image in images] == list(labels)


def test_hidden_files_and_folders_are_ignored(tmp_path: Path) -> None:
    root = _folder_dataset(tmp_path, ["a", "b"])
    _save(root / ".cache" / "x.png", COLOURS[3])
    _save(root / "a" / ".thumb.png", COLOURS[3])
    _save(root / "a" / ".hidden" / "y.png", COLOURS[3])
    dataset = open_dataset(root)
    assert dataset.classes == ("a", "b")
    assert [item.path for item in dataset.items] == [
        "a/img0.png",
        "a/img1.png",
        "b/img0.png",
        "b/img1.png",
    ]


def test_imagenet_val_labels_are_imagenet_indices(tmp_path: Path) -> None:
    for wnid in ("n15075141", "n01440764", "n01443537"):
        _save(tmp_path / wnid / "ILSVRC2012_val_00000001.JPEG", (10, 20, 30), fmt="JPEG")
    dataset = open_dataset(tmp_path)
    assert dataset.layout == "imagenet-val" and dataset.layout_detected
    assert [(item.path.split("/")[0], item.label) for item in dataset.items] == [
        ("n01440764", 0), ("n01443537", 1), ("n15075141", 999),
    ]  # fmt: skip
    assert dataset.num_classes == 1000 and dataset.classes == imagenet_wnids()
    _, labels, _, _ = _all(dataset)
    assert list(labels) == [0, 1, 999]


def test_the_wnid_list_is_the_ilsvrc2012_one() -> None:
    wnids = imagenet_wnids()
    assert len(wnids) == len(set(wnids)) == 1000
    assert all(re.fullmatch(r"n\d{8}", w) for w in wnids)
    assert list(wnids) == sorted(wnids)
    assert (wnids[0], wnids[-1]) == ("n01440764", "n15075141")
    # Known ImageNet-1k indices (imagenet_class_index.json): goldfish, candle, spindle.
    assert (wnids.index("n01443537"), wnids.index("n02948072"), wnids.index("n04277352")) == (
        1,
        470,
        816,
    )


def test_a_folder_that_is_not_a_wnid_is_named(tmp_path: Path) -> None:
    for name in ("n01440764", "n99999999"):
        _save(tmp_path / name / "x.JPEG", (1, 2, 3), fmt="JPEG")
    with pytest.raises(DataError, match="n99999999") as caught:
        open_dataset(tmp_path)
    assert "imagefolder" in (caught.value.hint or "")
    _save(tmp_path / "cats" / "x.png", (1, 2, 3))
    assert detect_layout(tmp_path) == "imagefolder"
    with pytest.raises(DataError, match="cats"):
        open_dataset(tmp_path, "imagenet-val")
    assert open_dataset(tmp_path, "imagefolder").classes == ("cats", "n01440764", "n99999999")


# -- unreadable images --------------------------------------------------------------------


def _truncated_jpeg(path: Path) -> Path:
    noise = np.random.default_rng(1).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="JPEG", quality=95)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path


@pytest.mark.parametrize("threads", [1, 3])
def test_corrupt_images_are_skipped_without_shifting_labels(tmp_path: Path, threads: int) -> None:
    root = _folder_dataset(tmp_path, ["a", "b", "c"], per_class=2)
    (root / "a" / "img0b.jpg").write_bytes(np.random.default_rng(0).bytes(2000))
    _truncated_jpeg(root / "b" / "img0b.jpg")
    with pytest.raises(OSError), Image.open(root / "b" / "img0b.jpg") as image:
        image.convert("RGB")  # the premise: Pillow refuses a truncated JPEG

    dataset = open_dataset(root)
    assert dataset.n_total == 8
    images, labels, indices, skipped = _all(dataset, batch_size=3, threads=threads)

    assert skipped == ["a/img0b.jpg", "b/img0b.jpg"]
    assert list(labels) == [0, 0, 1, 1, 2, 2]
    assert [_class_of(image) for image in images] == list(labels)
    assert [dataset.items[i].path for i in indices] == [
        "a/img0.png", "a/img1.png", "b/img0.png", "b/img1.png", "c/img0.png", "c/img1.png",
    ]  # fmt: skip


def test_a_batch_of_only_corrupt_images_is_empty_not_an_error(tmp_path: Path) -> None:
    root = _folder_dataset(tmp_path, ["a"], per_class=1)
    (root / "a" / "broken.png").write_bytes(b"not a png")
    batches = list(open_dataset(root).batches(1, RAW))
    assert [b.skipped for b in batches] == [["a/broken.png"], []]
    assert batches[0].images.shape == (0, 3, 8, 8) and batches[0].labels.shape == (0,)


def test_a_dangling_link_is_listed_then_skipped(tmp_path: Path) -> None:
    root = _folder_dataset(tmp_path / "data", ["a"], per_class=1)
    (root / "a" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    dataset = open_dataset(root)
    assert [item.path for item in dataset.items] == ["a/gone.png", "a/img0.png"]
    _, labels, _, skipped = _all(dataset)
    assert skipped == ["a/gone.png"] and list(labels) == [0]


# -- subsets and identity -------------------------------------------------------------------


def test_limit_draws_a_fixed_sorted_subset_per_seed(tmp_path: Path) -> None:
    root = _folder_dataset(tmp_path, ["a", "b", "c", "d"], per_class=5)
    full = open_dataset(root)
    first = open_dataset(root, limit=6, seed=3)
    again = open_dataset(root, limit=6, seed=3)
    other = open_dataset(root, limit=6, seed=4)

    rows = np.sort(np.random.default_rng(3).choice(20, size=6, replace=False))
    assert first.items == again.items == tuple(full.items[int(i)] for i in rows)
    assert other.items != first.items
    assert first.n_images == 6 and first.n_total == 20 and first.limit == 6
    assert open_dataset(root, limit=500).items == full.items
    with pytest.raises(UsageError):
        open_dataset(root, limit=0)


def test_dataset_id_follows_the_images_not_the_path(tmp_path: Path) -> None:
    root = _folder_dataset(tmp_path / "one", ["a", "b"], per_class=4)
    copy = Path(shutil.copytree(root, tmp_path / "two"))
    base = open_dataset(root)

    moved = open_dataset(copy)
    assert moved.identity()["path"] != base.identity()["path"]
    assert moved.dataset_id == base.dataset_id and len(base.dataset_id) == 16

    ids = {
        open_dataset(root, limit=3, seed=0).dataset_id,
        open_dataset(root, limit=3, seed=1).dataset_id,
        open_dataset(root, limit=4, seed=0).dataset_id,
        base.dataset_id,
    }
    assert len(ids) == 4
    # Every image used: the same images, whatever limit or seed was asked.
    assert open_dataset(root, limit=100, seed=7).dataset_id == base.dataset_id

    _save(copy / "b" / "extra.png", COLOURS[1])
    assert open_dataset(copy).dataset_id != base.dataset_id
    (copy / "b" / "extra.png").unlink()
    (copy / "b" / "img0.png").rename(copy / "a" / "img9.png")  # same files, other labels
    assert open_dataset(copy).dataset_id != base.dataset_id

    identity = open_dataset(root, limit=3, seed=2).identity()
    assert set(identity) == {
        "path", "layout", "split", "files_sha256", "n_total", "n_images", "limit", "seed",
        "verified", "num_classes",
    }  # fmt: skip
    assert (identity["n_images"], identity["limit"], identity["seed"]) == (3, 3, 2)


# -- layout errors --------------------------------------------------------------------------


def test_missing_path_file_and_empty_folder_say_what_is_expected(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist") as caught:
        open_dataset(tmp_path / "nowhere")
    assert "cifar-10-batches-py" in (caught.value.hint or "") and "n01440764" in (
        caught.value.hint or ""
    )
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(UsageError, match="not a folder"):
        open_dataset(tmp_path / "file.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class folders") as caught:
        open_dataset(tmp_path / "empty")
    assert "imagefolder" in (caught.value.hint or "")
    with pytest.raises(UsageError, match="layout"):
        open_dataset(tmp_path / "empty", "coco")


def test_loose_images_and_empty_class_folders_are_errors(tmp_path: Path) -> None:
    _save(tmp_path / "flat" / "ILSVRC2012_val_00000001.JPEG", (1, 2, 3), fmt="JPEG")
    with pytest.raises(DataError, match="no class folders"):
        open_dataset(tmp_path / "flat")
    root = _folder_dataset(tmp_path / "data", ["a", "c"])
    (root / "b_empty").mkdir()
    (root / "d_text").mkdir()
    (root / "d_text" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match="b_empty, d_text"):
        open_dataset(root)
    (tmp_path / "none" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="hold no images"):
        open_dataset(tmp_path / "none")


# -- CIFAR-10 -------------------------------------------------------------------------------


def _dump(path: Path, obj: Any) -> None:
    # Protocol 2 with numpy 1's module names, as in the published files.
    path.write_bytes(pickle.dumps(obj, protocol=2).replace(b"numpy._core.", b"numpy.core."))


def _write_cifar(folder: Path, per_batch: int = 5) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    written = {}
    for k, name in enumerate(["test_batch", *(f"data_batch_{i}" for i in range(1, 6))]):
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [(k + i) % 10 for i in range(per_batch)]
        _dump(folder / name, {b"batch_label": name.encode(), b"labels": labels, b"data": data,
                              b"filenames": [f"{i}.png".encode() for i in range(per_batch)]})  # fmt: skip
        written[name] = data
    _dump(
        folder / "batches.meta",
        {b"label_names": CIFAR_CLASSES, b"num_cases_per_batch": per_batch, b"num_vis": 3072},
    )
    return written


def test_cifar10_reads_the_test_batch_pixels_and_labels(tmp_path: Path) -> None:
    written = _write_cifar(tmp_path / "cifar-10-batches-py")
    dataset = open_dataset(tmp_path)
    assert dataset.layout == "cifar10" and dataset.layout_detected
    assert dataset.root == (tmp_path / "cifar-10-batches-py").resolve()
    assert dataset.classes[:3] == ("airplane", "automobile", "bird") and dataset.num_classes == 10
    assert dataset.n_total == 5 and dataset.split == "test" and dataset.verified is False
    assert [item.path for item in dataset.items][:2] == ["test_batch[0]", "test_batch[1]"]

    raw = Preprocessing(resize=32, crop=32, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), scale=1.0)
    images, labels, _, skipped = _all(dataset, batch_size=2, preprocessing=raw)
    assert skipped == [] and list(labels) == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(
        images, written["test_batch"].reshape(-1, 3, 32, 32).astype(np.float32)
    )

    train = open_dataset(tmp_path, "cifar10", split="train", limit=7, seed=1)
    assert train.n_total == 25 and train.n_images == 7 and train.split == "train"
    assert train.identity()["split"] == "train" and train.dataset_id != dataset.dataset_id
    _, labels, _, _ = _all(train)
    assert list(labels) == [item.label for item in train.items]


def test_cifar10_verified_compares_with_the_published_md5s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar(folder)
    assert open_dataset(folder).verified is False
    table = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    monkeypatch.setattr(cifar, "CIFAR10_MD5", table)
    assert open_dataset(folder).verified is True
    assert open_dataset(folder, split="train").verified is True
    monkeypatch.setitem(table, "data_batch_3", "0" * 32)
    assert open_dataset(folder, split="test").verified is True  # data_batch_3 is not read
    assert open_dataset(folder, split="train").verified is False


def test_cifar10_missing_files_are_named(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar(folder)
    (folder / "data_batch_2").unlink()
    assert open_dataset(tmp_path).n_total == 5  # the test split does not need it
    with pytest.raises(DataError, match="data_batch_2") as caught:
        open_dataset(tmp_path, split="train")
    assert "batches.meta" in (caught.value.hint or "")
    (folder / "test_batch").unlink()
    with pytest.raises(DataError, match="test_batch"):
        open_dataset(tmp_path)
    (tmp_path / "nothing_here").mkdir()
    with pytest.raises(DataError, match="batches.meta"):
        open_dataset(tmp_path / "nothing_here", "cifar10")


class _RunsCommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_a_cifar_file_with_a_foreign_pickle_is_refused_unrun(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar(folder)
    marker = tmp_path / "ran"
    (folder / "test_batch").write_bytes(
        pickle.dumps({b"data": _RunsCommand(marker), b"labels": [0]})
    )
    with pytest.raises(DataError, match=r"system.*refused") as caught:
        open_dataset(tmp_path)
    assert "cifar-10-python.tar.gz" in (caught.value.hint or "")
    assert not marker.exists()

    (folder / "test_batch").write_bytes(pickle.dumps(os.system))
    with pytest.raises(DataError, match="refused"):
        open_dataset(tmp_path)
    (folder / "test_batch").write_bytes(b"\x80\x02garbage")
    with pytest.raises(DataError, match="cannot be read"):
        open_dataset(tmp_path)
    _dump(folder / "test_batch", {b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]})
    with pytest.raises(DataError, match="3072"):
        open_dataset(tmp_path)


def test_cifar_arrays_pickled_by_python3_and_numpy2_are_read(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    _write_cifar(folder)
    data = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072) % 251
    for protocol in (2, 4, 5):
        (folder / "test_batch").write_bytes(
            pickle.dumps({b"data": data, b"labels": [3, 4]}, protocol=protocol)
        )
        dataset = open_dataset(folder)
        assert [item.label for item in dataset.items] == [3, 4]
        assert np.array_equal(
            dataset.cifar_pixels, data.reshape(2, 3, 32, 32).transpose(0, 2, 3, 1)
        )


# -- preprocessing --------------------------------------------------------------------------


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(7)

    def noise(w: int, h: int, channels: int = 3) -> np.ndarray:
        shape = (h, w, channels) if channels > 1 else (h, w)
        return rng.integers(0, 256, size=shape, dtype=np.uint8)

    return [
        Image.fromarray(noise(300, 200)),
        Image.fromarray(noise(199, 451)),
        Image.fromarray(noise(500, 500)),
        Image.fromarray(noise(41, 27)),  # smaller than every crop: zero padding
        Image.fromarray(noise(333, 250, 1), mode="L"),
        Image.fromarray(noise(260, 301, 4), mode="RGBA"),
        Image.fromarray(noise(257, 257, 1), mode="L").convert("P"),
    ]


@pytest.mark.parametrize(
    "weights_name",
    [
        "ResNet18_Weights.IMAGENET1K_V1",
        "ResNet50_Weights.IMAGENET1K_V2",  # resize 232
        "Inception_V3_Weights.IMAGENET1K_V1",  # 342 / 299
        "Swin_T_Weights.IMAGENET1K_V1",  # bicubic
        "EfficientNet_B0_Weights.IMAGENET1K_V1",  # bicubic
        "ViT_B_16_Weights.IMAGENET1K_SWAG_E2E_V1",  # 384 / 384 bicubic
    ],
)
def test_preprocessing_matches_the_weights_transforms(weights_name: str) -> None:
    pytest.importorskip("torch")
    models = pytest.importorskip("torchvision.models")
    enum_name, member = weights_name.split(".")
    transform = getattr(getattr(models, enum_name), member).transforms()
    ours = Preprocessing(
        resize=transform.resize_size[0], crop=transform.crop_size[0], mean=tuple(transform.mean),
        std=tuple(transform.std), interpolation=transform.interpolation.value,
    )  # fmt: skip
    for image in _images():
        rgb = image.convert("RGB")
        expected = transform(rgb).numpy()
        got = ours(rgb)
        assert got.shape == expected.shape and got.dtype == np.float32
        assert np.abs(got - expected).max() < 1e-5, (weights_name, image.size, image.mode)


@pytest.mark.parametrize(
    ("resize", "crop", "interpolation"),
    [(256, 224, "nearest"), (100, 224, "bilinear"), (37, 31, "bicubic")],
)
def test_preprocessing_matches_torchvision_resize_and_center_crop(
    resize: int, crop: int, interpolation: str
) -> None:
    pytest.importorskip("torch")
    transforms = pytest.importorskip("torchvision.transforms")
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    reference = transforms.Compose([
        transforms.Resize(resize, interpolation=transforms.InterpolationMode(interpolation)),
        transforms.CenterCrop(crop), transforms.ToTensor(), transforms.Normalize(mean, std),
    ])  # fmt: skip
    ours = Preprocessing(resize=resize, crop=crop, mean=mean, std=std, interpolation=interpolation)
    for image in _images():
        rgb = image.convert("RGB")
        assert np.abs(ours(rgb) - reference(rgb).numpy()).max() < 1e-5, (image.size, image.mode)


def test_dataset_batches_match_torchvision_on_files_and_cifar(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    models = pytest.importorskip("torchvision.models")
    transform = models.ResNet18_Weights.IMAGENET1K_V1.transforms()
    (tmp_path / "files" / "c").mkdir(parents=True)
    for i, image in enumerate(_images()):
        image.save(tmp_path / "files" / "c" / f"{i}.png")
    _save(tmp_path / "files" / "c" / "photo.jpg", (90, 140, 200), size=(320, 240), fmt="JPEG")
    dataset = open_dataset(tmp_path / "files")
    images, _, _, _ = _all(dataset, batch_size=3, preprocessing=Preprocessing.default_for(224))
    for got, item in zip(images, dataset.items, strict=True):
        with Image.open(dataset.root / item.path) as image:
            expected = transform(image.convert("RGB")).numpy()
        assert np.abs(got - expected).max() < 1e-5, item.path

    written = _write_cifar(tmp_path / "cifar")
    images, _, _, _ = _all(
        open_dataset(tmp_path / "cifar"), preprocessing=Preprocessing.default_for(224)
    )
    for got, row in zip(images, written["test_batch"], strict=True):
        expected = transform(Image.fromarray(row.reshape(3, 32, 32).transpose(1, 2, 0))).numpy()
        assert np.abs(got - expected).max() < 1e-5


def test_bgr_and_scale_change_only_what_they_say() -> None:
    image = Image.fromarray(np.random.default_rng(3).integers(0, 256, (40, 50, 3), dtype=np.uint8))
    raw = Preprocessing(resize=40, crop=40, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), scale=1.0)
    pixels = np.asarray(image)[:, 5:45].transpose(2, 0, 1).astype(np.float32)
    np.testing.assert_array_equal(raw(image), pixels)
    bgr = Preprocessing(
        resize=40, crop=40, mean=(1.0, 2.0, 3.0), std=(1.0, 2.0, 4.0), scale=1.0, bgr=True
    )
    expected = (pixels - np.array([1, 2, 3], np.float32)[:, None, None]) / np.array(
        [1, 2, 4], np.float32
    )[:, None, None]
    np.testing.assert_allclose(bgr(image), expected[::-1], rtol=1e-6)


def test_default_for_follows_torchvision_resize_ratio() -> None:
    assert (Preprocessing.default_for().resize, Preprocessing.default_for().crop) == (256, 224)
    assert (Preprocessing.default_for(299).resize, Preprocessing.default_for(299).crop) == (
        342,
        299,
    )
    assert Preprocessing.default_for().mean == (0.485, 0.456, 0.406)
    assert (
        Preprocessing.default_for().interpolation == "bilinear"
        and not Preprocessing.default_for().bgr
    )


def test_preprocessing_round_trips_and_validates() -> None:
    original = Preprocessing(
        resize=342,
        crop=299,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        interpolation="bicubic",
        bgr=True,
        scale=1.0,
    )
    assert Preprocessing.from_dict(original.to_dict()) == original
    assert Preprocessing.from_dict(
        {"resize": 8, "crop": 8, "mean": [0, 0, 0], "std": [1, 1, 1]}
    ).mean == (0.0, 0.0, 0.0)
    bad = [
        None,
        {"resize": 8, "crop": 8, "mean": [0, 0, 0]},
        {"resize": 8, "crop": 8, "mean": [0, 0, 0], "std": [1, 1, 1], "colour": "red"},
        {"resize": 8.5, "crop": 8, "mean": [0, 0, 0], "std": [1, 1, 1]},
        {"resize": True, "crop": 8, "mean": [0, 0, 0], "std": [1, 1, 1]},
        {"resize": 8, "crop": 0, "mean": [0, 0, 0], "std": [1, 1, 1]},
        {"resize": 8, "crop": 8, "mean": [0, 0], "std": [1, 1, 1]},
        {"resize": 8, "crop": 8, "mean": "123", "std": [1, 1, 1]},
        {"resize": 8, "crop": 8, "mean": [0, 0, float("nan")], "std": [1, 1, 1]},
        {"resize": 8, "crop": 8, "mean": [0, 0, 0], "std": [1, 0, 1]},
        {"resize": 8, "crop": 8, "mean": [0, 0, 0], "std": [1, 1, 1], "interpolation": "cubic"},
        {"resize": 8, "crop": 8, "mean": [0, 0, 0], "std": [1, 1, 1], "bgr": "yes"},
        {"resize": 8, "crop": 8, "mean": [0, 0, 0], "std": [1, 1, 1], "scale": 0},
    ]
    for data in bad:
        with pytest.raises(UsageError) as caught:
            Preprocessing.from_dict(data)
        assert caught.value.hint, data


# -- the worker's constraints ---------------------------------------------------------------


def test_importing_the_module_loads_no_pillow() -> None:
    code = "import sys, core.measure.datasets; sys.exit('PIL' in sys.modules)"
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def test_decoding_without_pillow_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = open_dataset(_folder_dataset(tmp_path, ["a"], per_class=1))
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(BackendUnavailableError, match="Pillow") as caught:
        next(dataset.batches(1, RAW))
    assert "pip install Pillow" in (caught.value.hint or "")
