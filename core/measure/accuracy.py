"""Accuracy in the worker: a dataset's images through a prepared model, top-1/top-5
counted, and the logits compared with the reference platform's.

Runs inside a worker process (``WorkerJob.accuracy``), so it stays compatible with
Python 3.10 and needs only numpy and Pillow (core.measure.datasets): the NCS2 host's
OpenVINO 2022.3 runtime evaluates with it too. The timed call is the backend's
``run(batch)``; decoding and preprocessing are outside it.

Agreement with the reference (torch fp32 for a zoo model): the reference platform's
case saves its logits (``save_logits``, float32, one row per evaluated image, NaN for a
skipped one); a later case of the same model, weights, dataset and preprocessing reads
them (``reference_logits``) and reports the share of identical top-1 predictions and
the largest logit difference.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.backends.base import PHASE_MEASURE, PreparedModel
from core.errors import DataError, UsageError
from core.results import MAX_SKIPPED_NAMES, AccuracyResult, AccuracySpec

log = logging.getLogger(__name__)

# Images between two progress reports to the parent (a batch always reports).
PROGRESS_EVERY_S = 0.25


@dataclass(frozen=True, slots=True)
class AccuracyJob:
    """The accuracy part of a WorkerJob, as the runner fills it in."""

    spec: AccuracySpec
    card_preprocessing: dict[str, Any] | None = None  # the weights' own eval transform
    reference: str | None = None  # the reference platform's label, "torch/cpu/fp32"
    is_reference: bool = False  # this case is the reference: it saves its logits
    logits_path: str | None = None  # where the reference's logits are (or go)

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec.to_dict(), "card_preprocessing": self.card_preprocessing,
            "reference": self.reference, "is_reference": self.is_reference,
            "logits_path": self.logits_path,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AccuracyJob:
        card = data.get("card_preprocessing")
        return cls(
            spec=AccuracySpec.from_dict(data["spec"]),
            card_preprocessing=dict(card) if isinstance(card, dict) else None,
            reference=data.get("reference"),
            is_reference=bool(data.get("is_reference")),
            logits_path=data.get("logits_path"),
        )


def resolve_preprocessing(
    spec: AccuracySpec, card: dict[str, Any] | None, input_shape: Any, layout: str
) -> Any:
    """The preprocessing used: the spec's options over the weights' own transform (or the
    stated defaults), checked against the input size the model was prepared for."""
    from core.measure.preprocess import Preprocessing

    side = None
    if input_shape is not None and len(input_shape) == 4:
        height, width = int(input_shape[2]), int(input_shape[3])
        if height != width:
            raise UsageError(
                f"The model takes {height}x{width} images; backbench's preprocessing crops squares.",
                "Give a model with a square input.",
            )
        side = height
    base = dict(card) if card else {}
    crop = spec.size or int(base.get("crop") or side or 224)
    if side is not None and crop != side:
        raise UsageError(
            f"The model takes {side}x{side} images, but the preprocessing crops {crop}x{crop}.",
            f"Give --size {side}, or a model exported for {crop}x{crop} input.",
        )
    if spec.resize:
        resize = spec.resize
    elif base.get("resize") and int(base.get("crop") or 0) == crop:
        resize = int(base["resize"])
    elif layout == "cifar10":
        resize = crop  # a 32x32 image is scaled up whole, never cropped
    else:
        resize = int(round(crop * 256 / 224))
    if resize < crop:
        raise UsageError(
            f"--resize {resize} is smaller than the crop {crop}.", "Give a resize of at least the crop size."
        )
    return Preprocessing(
        resize=resize,
        crop=crop,
        mean=tuple(spec.mean or base.get("mean") or (0.485, 0.456, 0.406)),
        std=tuple(spec.std or base.get("std") or (0.229, 0.224, 0.225)),
        interpolation=str(base.get("interpolation") or "bilinear"),
        bgr=spec.bgr,
        scale=spec.scale if spec.scale is not None else 1.0 / 255.0,
    )


class _Reference:
    """The reference logits, read (to compare) or written (by the reference itself)."""

    def __init__(self, job: AccuracyJob, n_images: int) -> None:
        self.job = job
        self.n_images = n_images
        self.read: np.ndarray | None = None
        self.write: np.ndarray | None = None
        self.tmp: Path | None = None
        self.note = ""
        path = Path(job.logits_path) if job.logits_path else None
        if path is None:
            self.note = "no reference platform for this model"
        elif job.is_reference:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        elif path.is_file():
            try:
                self.read = np.load(path, mmap_mode="r")
            except (OSError, ValueError) as exc:
                self.note = f"the reference logits could not be read ({exc})"
            else:
                if self.read.shape[0] != n_images:
                    self.note = "the reference saw another set of images"
                    self.read = None
        else:
            self.note = f"no {job.reference} result for these images yet: evaluate that platform first"

    def open_for_writing(self, n_classes: int) -> None:
        if self.tmp is not None and self.write is None:
            self.write = np.lib.format.open_memmap(
                self.tmp, mode="w+", dtype=np.float32, shape=(self.n_images, n_classes)
            )
            self.write[:] = np.nan

    def finish(self) -> None:
        if self.write is not None and self.tmp is not None and self.job.logits_path:
            self.write.flush()
            del self.write
            self.write = None
            os.replace(self.tmp, self.job.logits_path)

    def discard(self) -> None:
        self.write = None
        if self.tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                self.tmp.unlink()


def evaluate(
    prepared: PreparedModel,
    job: AccuracyJob,
    dataset: Any,
    batch_size: int,
    input_shape: Any,
    *,
    on_phase: Callable[[str], None],
    on_batch: Callable[[int, int], None],
    on_progress: Callable[[int, int], None],
) -> AccuracyResult:
    """Run every image of ``dataset`` through ``prepared`` in batches of ``batch_size``
    (the last one padded, for a model compiled for that batch), and count. ``on_batch``
    gets (end stamp, latency ns) of each timed call, ``on_progress`` (done, total)."""
    run = getattr(prepared, "run", None)
    if run is None:
        raise UsageError("This backend cannot evaluate accuracy.", "Use torch, openvino or onnxruntime.")
    preprocessing = resolve_preprocessing(job.spec, job.card_preprocessing, input_shape, dataset.layout)
    total = len(dataset.items)
    reference = _Reference(job, total)
    top1 = top5 = evaluated = agree = compared = 0
    max_diff = 0.0
    skipped: list[str] = []
    n_classes: int | None = None
    last_report = 0.0
    on_phase(PHASE_MEASURE)
    on_progress(0, total)
    try:
        for batch in dataset.batches(batch_size, preprocessing):
            skipped.extend(batch.skipped)
            n = len(batch.labels)
            if n == 0:
                continue
            images = batch.images
            if n < batch_size:
                pad = np.zeros((batch_size - n, *images.shape[1:]), dtype=images.dtype)
                images = np.concatenate([images, pad])
            t0 = time.perf_counter_ns()
            logits = run(np.ascontiguousarray(images))
            t1 = time.perf_counter_ns()
            on_batch(t1, t1 - t0)
            logits = np.asarray(logits, dtype=np.float32).reshape(len(images), -1)[:n]
            if n_classes is None:
                n_classes = int(logits.shape[1])
                _check_classes(n_classes, dataset)
                reference.open_for_writing(n_classes)
            labels = batch.labels
            top1 += int(np.count_nonzero(np.argmax(logits, axis=1) == labels))
            if n_classes >= 5:
                best5 = np.argpartition(-logits, 4, axis=1)[:, :5]
                top5 += int(np.count_nonzero((best5 == labels[:, None]).any(axis=1)))
            if reference.write is not None:
                reference.write[batch.indices] = logits
            elif reference.read is not None:
                ref = np.asarray(reference.read[batch.indices], dtype=np.float32)
                valid = ~np.isnan(ref).any(axis=1)
                if valid.any():
                    agree += int(np.count_nonzero(np.argmax(ref[valid], axis=1) == np.argmax(logits[valid], axis=1)))
                    compared += int(valid.sum())
                    max_diff = max(max_diff, float(np.abs(ref[valid] - logits[valid]).max()))
            evaluated += n
            now = time.monotonic()
            if now - last_report >= PROGRESS_EVERY_S:
                on_progress(evaluated + len(skipped), total)
                last_report = now
        if evaluated == 0:
            raise DataError(
                f"None of the {total} images of {dataset.root} could be read ({len(skipped)} skipped).",
                "Check the files: they must be images Pillow can open (JPEG, PNG, ...).",
            )
        reference.finish()
    except BaseException:
        reference.discard()
        raise
    on_progress(total, total)
    note = reference.note
    if job.is_reference:
        note = "this is the reference platform"
    elif reference.read is not None and compared == 0:
        note = "the reference could not read any of these images"
    return AccuracyResult(
        top1_correct=top1,
        top5_correct=top5 if (n_classes or 0) >= 5 else None,
        n_images=evaluated,
        skipped=len(skipped),
        num_classes=int(n_classes or 0),
        dataset_id=dataset.dataset_id,
        dataset=dataset.identity(),
        preprocessing=preprocessing.to_dict(),
        skipped_files=tuple(skipped[:MAX_SKIPPED_NAMES]),
        reference=job.reference,
        agreement_top1=100.0 * agree / compared if compared else None,
        max_logit_diff=max_diff if compared else None,
        note=note,
    )


def _check_classes(n_classes: int, dataset: Any) -> None:
    if n_classes == dataset.num_classes:
        return
    hint = f"Give a model with {dataset.num_classes} outputs: --num-classes {dataset.num_classes} with weights fine-tuned for them."
    if dataset.layout == "imagefolder" and n_classes == 1000:
        hint = (
            "For ImageNet class folders named by wnid (n01440764, ...) use --layout imagenet-val, "
            f"which maps them to the 1000 ImageNet classes; otherwise {hint[0].lower()}{hint[1:]}"
        )
    raise UsageError(
        f"The model has {n_classes} output classes, but the dataset {dataset.root} has "
        f"{dataset.num_classes} ({dataset.layout}): its labels would not line up.",
        hint,
    )
