"""The model zoo: cards for every torchvision classification model and for user model
files, the benchmark suites, and builders.

Importing this package never imports torch: cards, suites and complexities come from
core/resources/zoo_catalog.json. ``build_torch_model`` and ``load_torchscript`` import torch
when called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.zoo.card import ModelCard
from core.zoo.complexity import Complexity
from core.zoo.files import MODEL_FILE_SOURCES, is_model_file, load_torchscript
from core.zoo.lookup import get_card
from core.zoo.names import MatchKind, NameMatches, match_names, name_key, read_name_map
from core.zoo.registry import (
    list_models,
    model_complexity,
    suite_description,
    suite_models,
    suite_names,
    zoo_names,
)

if TYPE_CHECKING:
    import torch


def build_torch_model(
    name: str,
    weights_path: str | None = None,
    device: str | None = None,
    num_classes: int | None = None,
) -> tuple[torch.nn.Module, str]:
    """Build zoo model ``name`` in eval() mode, with ``num_classes`` outputs (None: its
    default); returns (module, weights_label), the label being "random" (weights=None)
    or "file:<absolute path>"."""
    from core.zoo.torchvision_models import build_torch_model as build

    return build(name, weights_path, device, num_classes)


__all__ = [
    "MODEL_FILE_SOURCES",
    "Complexity",
    "MatchKind",
    "ModelCard",
    "NameMatches",
    "build_torch_model",
    "get_card",
    "is_model_file",
    "list_models",
    "load_torchscript",
    "match_names",
    "model_complexity",
    "name_key",
    "read_name_map",
    "suite_description",
    "suite_models",
    "suite_names",
    "zoo_names",
]
