"""CIFAR-10's python version (``cifar-10-batches-py``), read without trusting pickle.

The batches are pickled dicts of bytes, lists and numpy arrays. Unpickling a file can
run any code it names, so the unpickler here resolves only the few numpy globals an
array needs and refuses every other before looking it up. The files' md5s are compared
with the published ones (``CifarSplit.verified``).

Runs in workers on Python 3.10 with only numpy; core.measure.datasets builds the
dataset from what ``read_cifar`` returns.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import DataError

log = logging.getLogger(__name__)

CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_META = "batches.meta"
CIFAR_SPLITS: dict[str, tuple[str, ...]] = {
    "test": ("test_batch",),
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
}
# The published checksums of cifar-10-python.tar.gz's files, as torchvision's CIFAR10 lists them.
CIFAR10_MD5: dict[str, str] = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}
CIFAR_PIXELS = 32 * 32 * 3
CIFAR_SOURCE = "cifar-10-python.tar.gz (https://www.cs.toronto.edu/~kriz/cifar.html)"

# The only globals a CIFAR file's pickle may name: what numpy needs to rebuild an array
# (protocol 2 as the original files use, protocol 5, numpy 1 and 2 module names), and
# _codecs.encode, which Python 3 writes for bytes at protocol 2.
_PICKLE_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
})  # fmt: skip


@dataclass(frozen=True, slots=True)
class CifarSplit:
    """One split, read: ``pixels`` (N, 32, 32, 3) uint8 RGB, and per image its name
    (``test_batch[17]``) and label."""

    folder: Path
    split: str
    classes: tuple[str, ...]
    names: tuple[str, ...]
    labels: tuple[int, ...]
    verified: bool  # every file read matches the published md5
    files_sha256: str  # of the files' md5s
    pixels: np.ndarray = field(repr=False, compare=False)


def find_cifar_folder(root: Path) -> Path | None:
    """``root`` or ``root/cifar-10-batches-py``, whichever holds test_batch or batches.meta."""
    for folder in (root, root / CIFAR_FOLDER):
        if (folder / "test_batch").is_file() or (folder / CIFAR_META).is_file():
            return folder
    return None


def read_cifar(root: Path, split: str) -> CifarSplit:
    """Read ``split`` ("test": test_batch, "train": data_batch_1..5) and the class names."""
    folder = find_cifar_folder(root)
    if folder is None:
        folder = root / CIFAR_FOLDER if (root / CIFAR_FOLDER).is_dir() else root
    files = CIFAR_SPLITS[split]
    missing = [name for name in (*files, CIFAR_META) if not (folder / name).is_file()]
    if missing:
        raise DataError(
            f"{folder} lacks the CIFAR-10 file(s) {', '.join(missing)} that its {split} split needs.",
            f"A cifar-10-batches-py folder, as extracted from {CIFAR_SOURCE}, holds "
            "batches.meta, test_batch and data_batch_1..5.",
        )
    md5s: dict[str, str] = {}
    classes = _classes(_unpickle(folder / CIFAR_META, md5s), folder / CIFAR_META)
    arrays: list[np.ndarray] = []
    names: list[str] = []
    labels: list[int] = []
    for name in files:
        pixels, batch_labels = _batch(_unpickle(folder / name, md5s), folder / name, len(classes))
        arrays.append(pixels)
        names.extend(f"{name}[{row}]" for row in range(len(batch_labels)))
        labels.extend(batch_labels)
    verified = all(CIFAR10_MD5.get(name) == md5 for name, md5 in md5s.items())
    if not verified:
        log.info("CIFAR-10 files in %s do not match the published md5 checksums", folder)
    listing = json.dumps(sorted(md5s.items())).encode("utf-8")
    return CifarSplit(
        folder=folder, split=split, classes=tuple(classes), names=tuple(names),
        labels=tuple(labels), verified=verified,
        files_sha256=hashlib.sha256(listing).hexdigest(), pixels=np.concatenate(arrays),
    )  # fmt: skip


class _ForbiddenGlobal(pickle.UnpicklingError):
    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name}")
        self.module = module
        self.name = name


class _ArraysOnly(pickle.Unpickler):
    """Builds dicts, lists, bytes and numpy arrays; any other global is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _PICKLE_GLOBALS:
            raise _ForbiddenGlobal(module, name)
        return super().find_class(module, name)


def _unpickle(path: Path, md5s: dict[str, str]) -> Any:
    """A CIFAR file's content, its md5 recorded in ``md5s``."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(
            f"Cannot read {path}: {exc.strerror or exc}.", "Check the file's permissions."
        ) from exc
    md5s[path.name] = hashlib.md5(data, usedforsecurity=False).hexdigest()
    try:
        return _ArraysOnly(io.BytesIO(data), encoding="bytes").load()
    except _ForbiddenGlobal as exc:
        raise DataError(
            f"{path} holds a pickled {exc.module}.{exc.name}, which no CIFAR-10 file does: "
            "backbench refused to load it (unpickling it could run code).",
            f"Use the files of the original {CIFAR_SOURCE}.",
        ) from None
    # An unpickler fed a broken file can fail in many ways (whatever a constructor
    # raises): each means the same thing here.
    except Exception as exc:
        raise DataError(
            f"{path} cannot be read as a CIFAR-10 file: {type(exc).__name__}: {exc}.",
            f"The file is damaged or not from {CIFAR_SOURCE}; extract the archive again.",
        ) from exc


def _field(data: Any, key: str, path: Path) -> Any:
    if isinstance(data, dict):
        for candidate in (key.encode("ascii"), key):
            if candidate in data:
                return data[candidate]
    raise DataError(
        f"{path} is not a CIFAR-10 file: it has no {key!r} entry.",
        f"Use the python version of CIFAR-10, {CIFAR_SOURCE}, not the binary one.",
    )


def _classes(meta: Any, path: Path) -> list[str]:
    names = _field(meta, "label_names", path)
    if not isinstance(names, list) or len(names) != 10 or not all(isinstance(n, (bytes, str)) for n in names):  # fmt: skip
        raise DataError(
            f"{path} does not name the 10 CIFAR-10 classes.",
            f"Use the batches.meta of {CIFAR_SOURCE} (CIFAR-100's meta is another dataset).",
        )
    return [n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names]


def _batch(batch: Any, path: Path, num_classes: int) -> tuple[np.ndarray, list[int]]:
    """(N, 32, 32, 3) uint8 RGB pixels and N labels of one batch."""
    data = _field(batch, "data", path)
    labels = np.asarray(_field(batch, "labels", path))
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == CIFAR_PIXELS):  # fmt: skip
        raise DataError(
            f"{path}'s data is not N x {CIFAR_PIXELS} bytes (32 x 32 RGB planes).",
            f"Use the files of {CIFAR_SOURCE}.",
        )
    if labels.ndim != 1 or len(labels) != len(data) or labels.dtype.kind not in "iu":
        raise DataError(
            f"{path} has {len(data)} images but not as many whole-number labels.",
            "The file is damaged; extract the archive again.",
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(
            f"{path} has labels outside 0..{num_classes - 1}.",
            "The file is damaged; extract the archive again.",
        )
    # Each row holds the red plane, then green, then blue, each 32 x 32 row-major.
    pixels = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return pixels, [int(label) for label in labels]
