"""Image-classification eval datasets, read into preprocessed numpy batches.

Three layouts (``open_dataset`` detects which when none is given):

- ``imagefolder``: ROOT/<class>/<image>; classes are the sorted folder names, indexed
  0..K-1 in that order, and images are listed as torchvision's ImageFolder lists them;
- ``imagenet-val``: ROOT/<wnid>/<image>; labels are ImageNet-1k class indices (the
  wnid's place among the 1000 sorted ILSVRC2012 wnids), so a subset of folders works;
- ``cifar10``: the ``cifar-10-batches-py`` folder of pickled batches, read by
  core.measure.cifar (which unpickles only plain arrays and checks the published md5s).

Runs in workers on Python 3.10 with only numpy and Pillow. Pillow is imported where
images are decoded, so that this module imports without it. An image Pillow cannot
decode is skipped (named in ``Batch.skipped``), never the end of an evaluation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import struct
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import BackbenchError, BackendUnavailableError, DataError, UsageError
from core.measure.cifar import CIFAR_PIXELS, find_cifar_folder, read_cifar
from core.measure.preprocess import Preprocessing
from core.paths import resources_dir

__all__ = [
    "LAYOUTS", "IMG_EXTENSIONS", "Batch", "Dataset", "Item", "Preprocessing",
    "detect_layout", "imagenet_wnids", "open_dataset",
]  # fmt: skip

log = logging.getLogger(__name__)

LAYOUTS: tuple[str, ...] = ("imagefolder", "imagenet-val", "cifar10")
# torchvision.datasets.folder.IMG_EXTENSIONS, compared case-insensitively.
IMG_EXTENSIONS: tuple[str, ...] = (
    ".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp",
)  # fmt: skip
SPLITS: tuple[str, ...] = ("test", "train")  # CIFAR-10's

_WNID = re.compile(r"n\d{8}")
MAX_DECODE_THREADS = 4

EXPECTED_LAYOUTS = """Expected one of these layouts (detected, or given with --layout):
  imagefolder    ROOT/cat/001.jpg, ROOT/dog/002.png, ...      classes: sorted folder names
  imagenet-val   ROOT/n01440764/ILSVRC2012_val_00000293.JPEG  folders: ImageNet-1k wnids
  cifar10        ROOT/[cifar-10-batches-py/]batches.meta, test_batch, data_batch_1..5"""


@dataclass(frozen=True, slots=True)
class Item:
    """One image: ``path`` relative to the root ("/"-separated), or ``test_batch[17]``
    for a CIFAR image, whose pixels are row ``row`` of the dataset's array."""

    path: str
    label: int
    size_bytes: int
    row: int = -1


@dataclass(frozen=True, slots=True)
class Batch:
    """Model inputs (n, 3, crop, crop) float32, their labels (n,) int64 and their
    positions in ``Dataset.items`` (n,) int64; ``skipped``: paths of this chunk's images
    that could not be decoded (left out of the arrays, so labels stay aligned)."""

    images: np.ndarray
    labels: np.ndarray
    indices: np.ndarray
    skipped: list[str]


@dataclass(frozen=True, slots=True)
class Dataset:
    """An opened dataset: ``items`` are the images evaluated (all ``n_total``, or the
    seeded subset of ``limit``), in a fixed order."""

    layout: str
    root: Path
    classes: tuple[str, ...]
    n_total: int
    items: tuple[Item, ...]
    limit: int | None  # as asked; ``n_images`` says how many are used
    seed: int
    split: str | None  # CIFAR-10's; None for folders
    verified: bool | None  # CIFAR-10 files match the published md5s; None for folders
    files_sha256: str
    layout_detected: bool = False
    cifar_pixels: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def n_images(self) -> int:
        return len(self.items)

    def identity(self) -> dict[str, Any]:
        """What the data was, for the record: two results are comparable when all but
        ``path`` agree."""
        return {
            "path": str(self.root), "layout": self.layout, "split": self.split,
            "files_sha256": self.files_sha256, "n_total": self.n_total,
            "n_images": self.n_images, "limit": self.limit, "seed": self.seed,
            "verified": self.verified, "num_classes": self.num_classes,
        }  # fmt: skip

    @property
    def dataset_id(self) -> str:
        """16 hex digits naming these images, wherever they are: the identity without
        the path. Where every image is used, limit and seed do not matter, so they
        are left out (a limit above the count sees what no limit sees)."""
        payload = self.identity()
        del payload["path"]
        if self.n_images == self.n_total:
            payload["limit"] = payload["seed"] = None
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    def batches(
        self, batch_size: int, preprocessing: Preprocessing, *, threads: int | None = None
    ) -> Iterator[Batch]:
        """The items in order, ``batch_size`` at a time (the last chunk may be shorter),
        decoded on up to ``threads`` threads (Pillow releases the GIL while decoding)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise UsageError(
                f"Batch size {batch_size!r} is not a whole number of 1 or more.", "Use e.g. 32."
            )
        workers = threads if threads is not None else _default_threads()
        load = self._loader(preprocessing)
        pool = ThreadPoolExecutor(max_workers=workers) if workers > 1 else None
        try:
            for start in range(0, len(self.items), batch_size):
                chunk = range(start, min(start + batch_size, len(self.items)))
                decoded = list(pool.map(load, chunk)) if pool else [load(i) for i in chunk]
                yield self._batch(chunk, decoded, preprocessing)
        finally:
            if pool is not None:
                pool.shutdown()

    def _batch(
        self, chunk: range, decoded: list[np.ndarray | None], preprocessing: Preprocessing
    ) -> Batch:
        kept = [i for i, pixels in zip(chunk, decoded, strict=True) if pixels is not None]
        pixels = [p for p in decoded if p is not None]
        side = preprocessing.crop
        stacked = np.stack(pixels) if pixels else np.zeros((0, side, side, 3), dtype=np.uint8)
        return Batch(
            images=preprocessing.normalize(stacked),
            labels=np.array([self.items[i].label for i in kept], dtype=np.int64),
            indices=np.array(kept, dtype=np.int64),
            skipped=[self.items[i].path for i, p in zip(chunk, decoded, strict=True) if p is None],
        )

    def _loader(self, preprocessing: Preprocessing) -> Callable[[int], np.ndarray | None]:
        """item position -> its crop x crop x 3 uint8 pixels, or None (logged) for an
        image that cannot be decoded."""
        Image = _pillow()
        # What Pillow raises for a file that is not an image, is cut short or is corrupt.
        unreadable = (OSError, ValueError, SyntaxError, EOFError, struct.error, Image.DecompressionBombError)  # fmt: skip
        pixels_of = self.cifar_pixels

        def load(position: int) -> np.ndarray | None:
            item = self.items[position]
            if pixels_of is not None:
                return preprocessing.resize_and_crop(Image.fromarray(pixels_of[item.row]))
            try:
                with Image.open(self.root / item.path) as image:
                    rgb = image.convert("RGB")  # greyscale, palette, CMYK, RGBA, as pil_loader
            except unreadable as exc:
                log.warning("Skipping %s, which cannot be decoded: %s", item.path, exc)
                return None
            return preprocessing.resize_and_crop(rgb)

        return load


def open_dataset(
    path: str | os.PathLike[str],
    layout: str | None = None,
    *,
    limit: int | None = None,
    seed: int = 0,
    split: str = "test",
) -> Dataset:
    """Open the dataset at ``path`` in ``layout`` (None: detect it), listing its images
    and labels; ``limit`` keeps a subset drawn with ``seed``, sorted; ``split`` is
    CIFAR-10's ("test": test_batch, "train": data_batch_1..5)."""
    if layout is not None and layout not in LAYOUTS:
        raise UsageError(
            f"Unknown dataset layout {layout!r}.", f"Use one of: {', '.join(LAYOUTS)}."
        )
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise UsageError(
            f"Limit {limit!r} is not a whole number of 1 or more.",
            "Give the number of images to evaluate, or no limit for all.",
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UsageError(f"Seed {seed!r} is not a whole number of 0 or more.", "Use e.g. --seed 0.")
    if split not in SPLITS:
        raise UsageError(f"Unknown split {split!r}.", f"Use one of: {', '.join(SPLITS)}.")
    root = Path(path).expanduser().resolve()
    if not root.exists():
        raise UsageError(f"Dataset folder {root} does not exist.", EXPECTED_LAYOUTS)
    if not root.is_dir():
        raise UsageError(f"Dataset {root} is a file, not a folder.", EXPECTED_LAYOUTS)
    detected = layout is None
    chosen = layout or detect_layout(root)
    pixels: np.ndarray | None = None
    verified: bool | None = None
    if chosen == "cifar10":
        cifar = read_cifar(root, split)
        root, classes, pixels, verified = cifar.folder, cifar.classes, cifar.pixels, cifar.verified
        files_sha256 = cifar.files_sha256
        rows = enumerate(zip(cifar.names, cifar.labels, strict=True))
        every = [Item(name, label, CIFAR_PIXELS, row) for row, (name, label) in rows]
    else:
        classes, every = _open_folders(root, chosen)
        files_sha256 = _listing_sha256(every)
    if limit is not None and limit < len(every):
        chosen_rows = np.sort(
            np.random.default_rng(seed).choice(len(every), size=limit, replace=False)
        )
        items = tuple(every[int(i)] for i in chosen_rows)
    else:
        items = tuple(every)
    dataset = Dataset(
        layout=chosen, root=root, classes=classes, n_total=len(every), items=items,
        limit=limit, seed=seed, split=split if chosen == "cifar10" else None, verified=verified,
        files_sha256=files_sha256, layout_detected=detected, cifar_pixels=pixels,
    )  # fmt: skip
    log.info(
        "Dataset %s: layout %s (%s), %d of %d images, %d classes",
        root, chosen, "detected" if detected else "given", dataset.n_images, dataset.n_total, dataset.num_classes,
    )  # fmt: skip
    return dataset


def detect_layout(root: Path) -> str:
    """cifar10 where the folder (or its cifar-10-batches-py) holds test_batch or
    batches.meta; imagenet-val where every class folder is named like a wnid;
    imagefolder otherwise."""
    if find_cifar_folder(root) is not None:
        return "cifar10"
    folders = _class_folders(root)
    if folders and all(_WNID.fullmatch(name) for name in folders):
        return "imagenet-val"
    return "imagefolder"


@lru_cache(maxsize=1)
def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ILSVRC2012 class ids, sorted: a wnid's index is its ImageNet-1k label."""
    path = resources_dir() / "imagenet_wnids.txt"
    try:
        text = path.read_text(encoding="ascii")
    except OSError as exc:
        raise BackbenchError(
            f"backbench's list of ImageNet class ids ({path}) cannot be read: {exc.strerror or exc}.",
            "Reinstall backbench; the file ships with it.",
        ) from exc
    return tuple(line.strip() for line in text.splitlines() if line.strip())


# -- folder layouts -----------------------------------------------------------------


def _class_folders(root: Path) -> list[str]:
    try:
        with os.scandir(root) as entries:
            return sorted(e.name for e in entries if not e.name.startswith(".") and e.is_dir())
    except OSError as exc:
        raise UsageError(
            f"Cannot list the dataset folder {root}: {exc.strerror or exc}.",
            "Check that this user may read it.",
        ) from exc


def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMG_EXTENSIONS)


def _open_folders(root: Path, layout: str) -> tuple[tuple[str, ...], list[Item]]:
    folders = _class_folders(root)
    if not folders:
        loose = [name for name in os.listdir(root) if _is_image(name)]
        if loose:
            raise DataError(
                f"{root} holds {len(loose)} images but no class folders, so they have no labels.",
                "Put each class's images in a folder of its own (ImageNet's validation images: "
                "into their wnid folders, as the devkit's labels or valprep.sh sort them).\n"
                + EXPECTED_LAYOUTS,
            )
        raise DataError(f"{root} holds no class folders and no images.", EXPECTED_LAYOUTS)
    if layout == "imagenet-val":
        index = {wnid: i for i, wnid in enumerate(imagenet_wnids())}
        unknown = [name for name in folders if name not in index]
        if unknown:
            shown = ", ".join(unknown[:5]) + (
                f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            )
            raise DataError(
                f"{len(unknown)} folder(s) of {root} are not ImageNet-1k class ids (wnids): {shown}.",
                "imagenet-val labels folders by the 1000 ILSVRC2012 wnids (n01440764 ... n15075141); "
                "for other classes use --layout imagefolder, which labels folders in sorted order.",
            )
        classes = imagenet_wnids()
        labels = [index[name] for name in folders]
    else:
        classes = tuple(folders)
        labels = list(range(len(folders)))
    items: list[Item] = []
    empty: list[str] = []
    for folder, label in zip(folders, labels, strict=True):
        found = _scan_images(root, folder, label)
        if not found:
            empty.append(folder)
        items.extend(found)
    if not items:
        raise DataError(
            f"The {len(folders)} class folder(s) of {root} hold no images ({', '.join(IMG_EXTENSIONS)}).",
            EXPECTED_LAYOUTS,
        )
    if empty:
        shown = ", ".join(empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
        raise DataError(
            f"{len(empty)} class folder(s) of {root} hold no images: {shown}.",
            "Add their images or remove the folders: every folder is a class, and an empty "
            "one would still take a label.",
        )
    return classes, items


def _scan_images(root: Path, folder: str, label: int) -> list[Item]:
    """A class folder's images, in subfolders too, in torchvision's order (by folder,
    then by name); hidden files and folders are left out."""
    found: list[tuple[str, str]] = []
    for dirpath, dirnames, filenames in os.walk(root / folder, followlinks=True):
        dirnames[:] = [name for name in dirnames if not name.startswith(".")]
        found.extend((dirpath, name) for name in filenames if _is_image(name))
    items = []
    for dirpath, name in sorted(found):
        full = os.path.join(dirpath, name)
        try:
            size = os.path.getsize(full)
        except OSError:  # a dangling link: listed, then skipped as unreadable
            size = -1
        items.append(Item(Path(os.path.relpath(full, root)).as_posix(), label, size))
    return items


def _listing_sha256(items: list[Item]) -> str:
    digest = hashlib.sha256()
    for item in sorted(items, key=lambda it: it.path):
        digest.update(f"{item.path}\t{item.label}\t{item.size_bytes}\n".encode())
    return digest.hexdigest()


# -- decoding -------------------------------------------------------------------------


def _default_threads() -> int:
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        available = os.cpu_count() or 1
    return max(1, min(MAX_DECODE_THREADS, available))


def _pillow() -> Any:
    """PIL.Image, or an error that says how to install Pillow where it is missing."""
    try:
        from PIL import Image, ImageFile
    except ImportError as exc:
        raise BackendUnavailableError(
            f"Pillow, which decodes the dataset's images, is not installed for {sys.executable}.",
            "Install it in that interpreter: python -m pip install Pillow.",
        ) from exc
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        log.warning(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set in this process: truncated images "
            "are decoded (part grey) instead of skipped, unlike a plain torchvision evaluation"
        )
    return Image
