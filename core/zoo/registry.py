"""The model registry: cards for every zoo model and user model file, and the suites.

Cards and complexities of zoo models come from core/resources/zoo_catalog.json, a snapshot
of torchvision's weight metadata (a test keeps it equal to the installed torchvision), so
nothing here imports torch: the GUI and an OpenVINO-only edge host can list and describe
models. Building a model is torchvision_models' job.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import json
import logging
import os
from pathlib import Path

from core.errors import BackbenchError, UnknownModelError, UnknownSuiteError
from core.paths import resources_dir
from core.zoo import catalog
from core.zoo.card import ModelCard
from core.zoo.complexity import Complexity

log = logging.getLogger(__name__)

@functools.lru_cache(maxsize=1)
def _zoo() -> dict[str, tuple[ModelCard, Complexity]]:
    entries: dict[str, tuple[ModelCard, Complexity]] = {}
    for name, entry in catalog.read_catalog().items():
        try:
            entries[name] = (
                ModelCard.from_dict(entry["card"]),
                Complexity.from_dict(entry["complexity"]),
            )
        except (KeyError, TypeError, ValueError, BackbenchError) as exc:
            raise BackbenchError(
                f"The model catalogue entry for {name!r} is invalid: {exc}.",
                "Regenerate it with `python -m core.zoo.build_catalog --write`.",
            ) from None
    return entries


def zoo_names() -> list[str]:
    return sorted(_zoo())


def _lookup(name: str) -> tuple[ModelCard, Complexity] | None:
    zoo = _zoo()
    return zoo.get(name) or zoo.get(name.strip().lower())


def find_zoo_card(name: str) -> ModelCard | None:
    """The zoo card for ``name`` (case-insensitive), or None."""
    found = _lookup(name)
    return None if found is None else found[0]


def unknown_model(name: str) -> UnknownModelError:
    names = zoo_names()
    wanted = name.strip().lower()
    # A family name ("resnet", "mobilenet") is best answered with its members; difflib
    # would rank unrelated short names ("alexnet") above "mobilenet_v3_large".
    suggestions = [n for n in names if n.startswith(wanted)][:5] if wanted else []
    if not suggestions:
        suggestions = difflib.get_close_matches(wanted, names, n=5, cutoff=0.6)
    return UnknownModelError(name, suggestions)


def looks_like_path(name: str) -> bool:
    return os.sep in name or "/" in name or Path(name).suffix != "" or os.path.exists(name)


def zoo_card(name: str) -> ModelCard:
    """The card of zoo model ``name`` (case-insensitive), or UnknownModelError with
    suggestions."""
    found = _lookup(name)
    if found is None:
        raise unknown_model(name)
    return found[0]


def check_zoo_name(name: str) -> str:
    """The canonical zoo name for ``name``, or UnknownModelError with suggestions."""
    return zoo_card(name).name


def list_models(pattern: str | None = None, suite: str | None = None) -> list[ModelCard]:
    """Zoo cards whose name matches the fnmatch ``pattern`` (case-insensitive), sorted by
    name; with ``suite``, only that suite's models, in the suite's order."""
    if suite is not None:
        cards = [zoo_card(name) for name in suite_models(suite)]
    else:
        cards = [card for card, _ in (_zoo()[n] for n in zoo_names())]
    if pattern:
        lowered = pattern.lower()
        cards = [c for c in cards if fnmatch.fnmatchcase(c.name.lower(), lowered)]
    return cards


def model_complexity(name: str) -> Complexity | None:
    """The measured complexity of a zoo model at its card's input size, from the catalogue
    (no torch needed); None for a model file or a name the catalogue does not hold."""
    found = _lookup(name)
    return None if found is None else found[1]


# ---- suites -------------------------------------------------------------------------


def suites_dir() -> Path:
    return resources_dir() / "suites"


@functools.lru_cache(maxsize=1)
def _suites() -> dict[str, tuple[str, str, tuple[str, ...]]]:
    """name -> (description, file, models). Read once from core/resources/suites/*.json."""
    suites: dict[str, tuple[str, str, tuple[str, ...]]] = {}
    for path in sorted(suites_dir().glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            name = str(data["name"])
            models = data["models"]
            if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
                raise ValueError("'models' must be a list of model names")
            description = str(data.get("description", ""))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BackbenchError(
                f"The suite file {path} is invalid: {exc}.",
                'Fix it: a JSON object with "name", "description" and "models" (a list of names).',
            ) from None
        if name in suites:
            raise BackbenchError(
                f"Two suite files define the suite {name!r}.",
                f"Rename or remove one of them in {suites_dir()}.",
            )
        suites[name] = (description, str(path), tuple(models))
    return suites


def suite_names() -> list[str]:
    return sorted(_suites())


def suite_description(name: str) -> str:
    return _suite(name)[0]


def suite_models(name: str) -> tuple[str, ...]:
    return _suite(name)[2]


def _suite(name: str) -> tuple[str, str, tuple[str, ...]]:
    suites = _suites()
    if name not in suites:
        available = ", ".join(sorted(suites)) or "none"
        raise UnknownSuiteError(f"Unknown suite {name!r}.", f"Available suites: {available}.")
    return suites[name]


def clear_caches() -> None:
    """Forget the catalogue and suites read so far (after regenerating them)."""
    _zoo.cache_clear()
    _suites.cache_clear()
    catalog._read.cache_clear()
