"""``get_card``: the one lookup that accepts either a zoo name or a model file.

It sits above the registry (zoo names) and files (model files), which know nothing of
each other's callers, so neither imports the other in a circle.
"""

from __future__ import annotations

from core.zoo import files
from core.zoo.card import ModelCard
from core.zoo.registry import find_zoo_card, looks_like_path, unknown_model


def get_card(name_or_path: str) -> ModelCard:
    """The card of a zoo model, or of a model file (.onnx, .xml with its .bin, .pt)."""
    if files.is_model_file(name_or_path):
        return files.file_card(name_or_path)
    card = find_zoo_card(name_or_path)
    if card is not None:
        return card
    if looks_like_path(name_or_path):
        raise files.not_a_model_file(name_or_path)
    raise unknown_model(name_or_path)
