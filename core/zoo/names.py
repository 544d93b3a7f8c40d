"""Model names as people write them, matched to zoo cards without guessing.

A results table or accuracy list from a paper or another tool writes "ResNet-18",
"MobileNet-v3_small", "ResNeXt-50(32x4d)" or "SqueezeNet-v1.0" where the zoo (torchvision)
writes resnet18, mobilenet_v3_small, resnext50_32x4d and squeezenet1_0. ``match_names``
joins such names to their cards:

- a zoo name (any case) or a model file passes through untouched;
- a name in the user's mapping (``--names FILE``, read by ``read_name_map``) goes where the
  mapping says, whatever else it resembles;
- any other name matches the one card whose ``name_key`` equals its own. The key ignores
  case and punctuation, and a 'v' before a version number, so "SqueezeNet-v1.0",
  "squeezenet 1.0" and squeezenet1_0 share one; it keeps the break between two numbers,
  so regnet_x_1_6gf and regnet_x_16gf stay apart. No closer-looking card is ever
  taken instead: a name is a match, ambiguous (its key is the family part of several
  cards' keys: "MobileNet-v3", "ResNet") or unmatched, and ``NameMatches.notes`` says
  which, with the candidates or the nearest names.

A test keeps ``name_key`` one-to-one over the zoo catalogue.
"""

from __future__ import annotations

import csv
import difflib
import functools
import io
import json
import logging
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from core.errors import DataError, UsageError
from core.zoo.files import is_model_file
from core.zoo.registry import find_zoo_card, unknown_model, zoo_names

log = logging.getLogger(__name__)

NAMES_OPTION = "--names FILE"
NAMES_FILE_HINT = (
    'Give a CSV with one "name,zoo" pair per line (a "name,zoo" header is optional) or a '
    'JSON object {"name": "zoo name"}; `backbench models` lists the zoo names.'
)
SHOWN_SUGGESTIONS = 3

# A 'v' right before a digit is a version mark ("MobileNet-v3", "SqueezeNet-v1.0",
# "mobilenetv3"); it becomes a break, so that "resnet50v1.5" keeps 50 and 1 apart.
_VERSION_V = re.compile(r"v(?=\d)")
_PIECE = re.compile(r"[a-z]+|[0-9]+")


class MatchKind(str, Enum):
    """How a given name found its zoo card."""

    EXACT = "exact"  # the zoo name itself, in any case
    TOLERANT = "tolerant"  # the same name_key
    MAPPED = "mapped"  # the user's mapping said so


def _pieces(name: str) -> list[str]:
    """The runs of letters and of digits in ``name``, lower case, version 'v's dropped."""
    text = unicodedata.normalize("NFKC", name).casefold()
    return _PIECE.findall(_VERSION_V.sub(" ", text))


def _join(pieces: Iterable[str]) -> str:
    """Pieces as one key: letters run together, but two numbers in a row keep a "_"
    between them ("1.0" and "1_0" are "1_0"; "10" stays "10")."""
    out: list[str] = []
    previous_digit = False
    for piece in pieces:
        digit = piece.isdigit()
        if digit and previous_digit:
            out.append("_")
        out.append(piece)
        previous_digit = digit
    return "".join(out)


def name_key(name: str) -> str:
    """The spelling-free key of a model name: "ResNet-18" and resnet18 give "resnet18",
    "MobileNet-v3_small" and mobilenet_v3_small "mobilenet3small", "SqueezeNet-v1.0" and
    squeezenet1_0 "squeezenet1_0", "ViT-B/16" and vit_b_16 "vitb16"."""
    return _join(_pieces(name))


@dataclass(frozen=True, slots=True)
class _Index:
    by_key: dict[str, tuple[str, ...]]  # full key -> zoo names (one each; the test sees to it)
    by_family: dict[str, tuple[str, ...]]  # key of a leading part -> zoo names that have it


@functools.lru_cache(maxsize=2)
def _index(names: tuple[str, ...]) -> _Index:
    by_key: dict[str, list[str]] = {}
    by_family: dict[str, list[str]] = {}
    for name in names:
        pieces = _pieces(name)
        by_key.setdefault(_join(pieces), []).append(name)
        for cut in range(1, len(pieces)):
            family = by_family.setdefault(_join(pieces[:cut]), [])
            if name not in family:
                family.append(name)
    clashes = {k: v for k, v in by_key.items() if len(v) > 1}
    if clashes:
        # Safe (such a key is reported ambiguous, never guessed) but a catalogue bug.
        log.warning("zoo names that share a name key: %s", clashes)
    return _Index(
        by_key={k: _sorted(v) for k, v in by_key.items()},
        by_family={k: _sorted(v) for k, v in by_family.items()},
    )


def _natural(name: str) -> tuple[Any, ...]:
    """Sort key that puts resnet18 before resnet101."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def _sorted(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(names), key=_natural))


def _zoo_index() -> _Index:
    return _index(tuple(zoo_names()))


@dataclass(frozen=True, slots=True)
class NameMatches:
    """What ``match_names`` made of each given name.

    ``matched``: given name -> zoo name, and ``how`` it matched (a MatchKind, equal to its
    string "exact", "tolerant" or "mapped"); ``unmatched``: names no card fits, with
    their nearest zoo names in ``suggestions``; ``ambiguous``: given name -> the cards it
    fits, none of them taken; ``files``: model files, whose cards come from the files.
    """

    matched: dict[str, str]
    how: dict[str, MatchKind]
    unmatched: tuple[str, ...]
    ambiguous: dict[str, tuple[str, ...]]
    files: tuple[str, ...] = ()
    suggestions: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def zoo_name(self, name: str) -> str | None:
        """The zoo name ``name`` matched, or None."""
        return self.matched.get(name)

    def card_source(self, name: str) -> str | None:
        """What to look ``name``'s card up by: its zoo name, itself for a model file, or
        None when it has no card."""
        if name in self.files:
            return name
        return self.matched.get(name)

    def renamed(self) -> dict[str, str]:
        """Given name -> zoo name, for the names spelt otherwise than their zoo name."""
        return {given: zoo for given, zoo in self.matched.items() if given != zoo}

    def notes(self) -> list[str]:
        """Every match that was not the zoo name itself, and every name left without a
        card, in words."""
        notes: list[str] = []
        for kind, how in (
            (MatchKind.TOLERANT, "by spelling (case, punctuation, a 'v' before a version)"),
            (MatchKind.MAPPED, "by the names mapping"),
        ):
            pairs = [f"{g} -> {z}" for g, z in self.matched.items() if self.how[g] is kind]
            if pairs:
                notes.append(
                    f"{len(pairs)} model name(s) matched to zoo cards {how}: {', '.join(pairs)}."
                )
        for name, candidates in self.ambiguous.items():
            notes.append(
                f"The model name {name!r} fits {len(candidates)} zoo cards "
                f"({', '.join(candidates)}), so none was used for its params, FLOPs and "
                f"reference accuracy; map it with {NAMES_OPTION}."
            )
        for name in self.unmatched:
            near = self.suggestions.get(name, ())
            nearest = f" (nearest: {', '.join(near)})" if near else ""
            notes.append(
                f"No zoo card matches the model name {name!r}{nearest}: its params, FLOPs and "
                f"accuracy come from the data alone; if it is a zoo model, map it with "
                f"{NAMES_OPTION}."
            )
        return notes


def match_names(names: Iterable[str], mapping: Mapping[str, str] | None = None) -> NameMatches:
    """Match each of ``names`` to a zoo card (see the module's docstring).

    ``mapping`` (given name -> zoo name, as ``read_name_map`` returns) wins over
    everything else. Raises UsageError when a mapping target is not a zoo name.
    """
    wanted = _checked_mapping(mapping or {})
    index = _zoo_index()
    matched: dict[str, str] = {}
    how: dict[str, MatchKind] = {}
    unmatched: list[str] = []
    ambiguous: dict[str, tuple[str, ...]] = {}
    files: list[str] = []
    suggestions: dict[str, tuple[str, ...]] = {}
    for name in dict.fromkeys(names):  # each once, in the given order
        given = name.strip()
        if given in wanted:
            matched[name], how[name] = wanted[given], MatchKind.MAPPED
            continue
        card = find_zoo_card(given)
        if card is not None:
            matched[name], how[name] = card.name, MatchKind.EXACT
            continue
        if is_model_file(given):
            files.append(name)
            continue
        key = name_key(given)
        fits = index.by_key.get(key, ())
        if len(fits) == 1:
            matched[name], how[name] = fits[0], MatchKind.TOLERANT
            continue
        family = fits or index.by_family.get(key, ())
        if len(family) > 1:
            ambiguous[name] = family
            continue
        unmatched.append(name)
        suggestions[name] = _suggestions(key, family, index)
    result = NameMatches(
        matched=matched,
        how=how,
        unmatched=tuple(unmatched),
        ambiguous=ambiguous,
        files=tuple(files),
        suggestions=suggestions,
    )
    log.debug(
        "matched %d name(s), %d ambiguous, %d unmatched",
        len(matched),
        len(ambiguous),
        len(unmatched),
    )
    return result


def _suggestions(key: str, family: tuple[str, ...], index: _Index) -> tuple[str, ...]:
    """The nearest zoo names: the one card whose family the key names ("Inception" ->
    inception_v3), then the closest keys."""
    near = list(family)
    if key:
        keys = difflib.get_close_matches(key, list(index.by_key), n=SHOWN_SUGGESTIONS, cutoff=0.6)
        near += [name for k in keys for name in index.by_key[k]]
    return tuple(dict.fromkeys(near))[:SHOWN_SUGGESTIONS]


def _checked_mapping(mapping: Mapping[str, str]) -> dict[str, str]:
    """``mapping`` with stripped keys and canonical zoo names; UsageError for a target
    that is not a zoo name."""
    checked: dict[str, str] = {}
    for given, target in mapping.items():
        card = find_zoo_card(str(target))
        if card is None:
            raise UsageError(
                f"The names mapping sends {given!r} to {target!r}, which is not a zoo model.",
                _unknown_hint(str(target)),
            )
        checked[str(given).strip()] = card.name
    return checked


def _unknown_hint(target: str) -> str:
    suggestions = unknown_model(target).suggestions
    if suggestions:
        return f"Did you mean: {', '.join(suggestions)}? (`backbench models` lists the zoo names.)"
    return "Run `backbench models` to list the zoo names."


# -- the names file -----------------------------------------------------------------------


def read_name_map(path: str | Path) -> dict[str, str]:
    """The mapping in the names file ``path``: given name -> zoo name (canonical).

    A CSV of (given name, zoo name) rows, with an optional "name,zoo" header, blank
    lines and "#" comment lines allowed; or a JSON object {given: zoo} (a .json file, or
    text that starts with "{"). Raises UsageError when the file cannot be read and
    DataError for a malformed file, a name given twice with two targets, or a target that
    is not a zoo name.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise UsageError(f"No names file {file}.", NAMES_FILE_HINT)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"The names file {file} is not UTF-8 text.", NAMES_FILE_HINT) from None
    except OSError as exc:
        raise UsageError(
            f"Cannot read the names file {file}: {exc.strerror or exc}.",
            "Check the path and its permissions.",
        ) from None
    if not text.strip():
        raise DataError(f"The names file {file} is empty.", NAMES_FILE_HINT)
    if file.suffix.lower() == ".json" or text.lstrip().startswith(("{", "[")):
        entries = _json_entries(text, file)
    else:
        entries = _csv_entries(text, file)
    if not entries:
        raise DataError(f"The names file {file} maps no names.", NAMES_FILE_HINT)
    mapping: dict[str, str] = {}
    for where, given, target in entries:
        card = find_zoo_card(target)
        if card is None:
            raise DataError(
                f"{file.name}{where} maps {given!r} to {target!r}, which is not a zoo model.",
                _unknown_hint(target),
            )
        if mapping.get(given, card.name) != card.name:
            raise DataError(
                f"{file.name}{where} maps {given!r} to {card.name}, but an earlier entry maps "
                f"it to {mapping[given]}.",
                "Keep one entry per name.",
            )
        mapping[given] = card.name
    log.debug("read %d name mapping(s) from %s", len(mapping), file)
    return mapping


def _json_entries(text: str, file: Path) -> list[tuple[str, str, str]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"The names file {file} is not valid JSON ({exc.msg} at line {exc.lineno}).",
            NAMES_FILE_HINT,
        ) from None
    if not isinstance(data, dict):
        raise DataError(
            f"The names file {file} holds a JSON {type(data).__name__}, not an object.",
            NAMES_FILE_HINT,
        )
    entries = []
    for given, target in data.items():
        if not isinstance(target, str) or not target.strip() or not given.strip():
            raise DataError(
                f"{file.name}: the entry {given!r}: {target!r} is not a pair of names.",
                NAMES_FILE_HINT,
            )
        entries.append((f" (entry {given!r})", given.strip(), target.strip()))
    return entries


def _csv_entries(text: str, file: Path) -> list[tuple[str, str, str]]:
    entries = []
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        rows = list(reader)
    except csv.Error as exc:
        raise DataError(
            f"The names file {file} cannot be read as CSV (line {reader.line_num}: {exc}).",
            NAMES_FILE_HINT,
        ) from None
    first = True
    for line, row in enumerate(rows, start=1):
        cells = [cell.strip() for cell in row]
        while cells and not cells[-1]:
            cells.pop()
        if not cells or cells[0].startswith("#"):
            continue
        if first and len(cells) == 2 and cells[1].lower() == "zoo":
            first = False
            continue  # the header
        first = False
        if len(cells) != 2 or not cells[0] or not cells[1]:
            raise DataError(
                f"{file.name} line {line} is not a pair of names (a given name and its zoo "
                f"name): {','.join(row)!r}.",
                'Write one "name,zoo" pair per line; quote a name that holds a comma.',
            )
        entries.append((f" line {line}", cells[0], cells[1]))
    return entries
