"""Planning an accuracy run, in the supervising process: which platform is a model's
reference, whether its weights can be scored at all, where the reference's logits are
kept, and what each case's worker is told (core.measure.accuracy.AccuracyJob).

The reference is the model's own framework at full precision on the CPU: torch fp32 for
a zoo model or a TorchScript file, ONNX Runtime fp32 for an .onnx file, OpenVINO f32
for an IR. Its logits are cached under ``$XDG_CACHE_HOME/backbench/accuracy``, keyed by
the model (its weights' hash), the dataset's identity and the preprocessing options, so
that a later run on another platform, from the CLI or the agent, agrees against them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import replace
from typing import Any

from core.backends.base import ModelSource
from core.backends.convert import (
    SourceKind,
    cache_root,
    cache_stem,
    file_digest,
    model_file,
    source_kind,
)
from core.errors import BackbenchError, ModelFileError, UsageError
from core.measure.accuracy import AccuracyJob
from core.results import AccuracySpec, Backend, Case, Precision, RunSpec, accuracy_reference
from core.zoo import get_card

log = logging.getLogger(__name__)

WEIGHTS_HINT = (
    "Give trained weights: --weights FILE (a torchvision state dict, e.g. resnet18-f37072fd.pth, "
    "read safely with weights_only=True; add --num-classes N for a fine-tuned head), or "
    "measure a model file (.onnx, .xml, TorchScript .pt) that holds its own weights."
)


def reference_platform(model: str) -> tuple[Backend, str, Precision]:
    """The platform a model's accuracy on other platforms is compared with."""
    return accuracy_reference(get_card(model).source)


def platform_label(backend: Backend, device: str, precision: Precision) -> str:
    return f"{backend.value}/{device}/{precision.value}"


def is_reference(case: Case) -> bool:
    backend, device, precision = reference_platform(case.model)
    return (case.backend, case.device, case.precision) == (backend, device, precision)


def validate_accuracy(spec: RunSpec) -> RunSpec:
    """Refuse what cannot give a meaningful accuracy, before anything runs: a zoo model
    with random weights, a dataset that is missing or not in a layout backbench reads.
    Returns the spec with the dataset's path made absolute."""
    acc = _accuracy_of(spec)
    for model in spec.models:
        if source_kind(model) is SourceKind.ZOO and not spec.weights.get(model):
            raise UsageError(
                f"{model} would be scored with random weights, which guess at chance: "
                "an accuracy needs trained weights.",
                WEIGHTS_HINT,
            )
    _DATASETS.clear()  # a new run lists its dataset afresh: files may have come or gone
    dataset = dataset_of(acc)
    log.info(
        "dataset %s: %s layout, %d of %d images, %d classes",
        dataset.root, dataset.layout, len(dataset.items), dataset.n_total, dataset.num_classes,
    )
    accuracy = replace(acc, dataset=str(dataset.root), layout=dataset.layout)
    return replace(spec, accuracy=accuracy)


def model_key(source: ModelSource) -> str:
    """The model's identity for the logits cache: the file's hash, or the zoo name with
    its weights' hash and class count."""
    kind = source_kind(source.name)
    if kind in (SourceKind.ONNX, SourceKind.OPENVINO_IR):
        path = model_file(source.name)
        return f"{path.stem}-{file_digest(path)}"
    try:
        return cache_stem(source)
    except ModelFileError:
        return hashlib.sha256(source.name.encode()).hexdigest()[:16]


def logits_path(source: ModelSource, spec: RunSpec, dataset_id: str) -> str:
    options = _accuracy_of(spec).to_dict()
    options.pop("dataset")  # the same images elsewhere on disk share their reference
    key = json.dumps(
        {"model": model_key(source), "dataset_id": dataset_id, "options": options}, sort_keys=True
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    return os.path.join(cache_root(), "accuracy", f"{digest}.npy")


def accuracy_job(spec: RunSpec, case: Case, source: ModelSource) -> AccuracyJob:
    """What the worker of ``case`` is told: the dataset, the weights' own transform, and
    where the reference's logits are (to read) or go (for the reference itself)."""
    acc = _accuracy_of(spec)
    dataset = dataset_of(acc)
    try:
        preprocessing = get_card(case.model).preprocessing
    except BackbenchError as exc:  # a file that went away: the worker reports it properly
        log.debug("no card for %s: %s", case.model, exc)
        preprocessing = None
    backend, device, precision = reference_platform(case.model)
    return AccuracyJob(
        spec=acc,
        card_preprocessing=dict(preprocessing) if preprocessing else None,
        reference=platform_label(backend, device, precision),
        is_reference=is_reference(case),
        logits_path=logits_path(source, spec, dataset.dataset_id),
    )



def _accuracy_of(spec: RunSpec) -> AccuracySpec:
    if spec.accuracy is None:
        raise ValueError("not an accuracy run")
    return spec.accuracy


# A run's cases share one dataset: it is listed (and its files hashed) once per run, not
# once per case. Keyed by everything that selects its images.
_DATASETS: dict[tuple[Any, ...], Any] = {}


def dataset_of(acc: AccuracySpec) -> Any:
    from core.measure.datasets import open_dataset

    key = (acc.dataset, acc.layout, acc.limit, acc.seed, acc.split)
    if key not in _DATASETS:
        if len(_DATASETS) > 8:
            _DATASETS.clear()
        _DATASETS[key] = open_dataset(acc.dataset, acc.layout, limit=acc.limit, seed=acc.seed, split=acc.split)
    return _DATASETS[key]
