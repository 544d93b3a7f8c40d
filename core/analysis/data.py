"""Analysis input: validate the long schema, fill model facts from the zoo.

``prepare`` turns a long-schema DataFrame (one row per measurement, columns as in
``core.results.MEASUREMENT_COLUMNS``, plus optional ``top1``, ``top5`` and
``n_eval_images``) into an ``AnalysisInput``: numeric columns, only ``status == ok`` rows
(and, when asked, no disturbed ones), a ``platform`` column, a ``disturbed`` column of
True/False/None, and params/FLOPs/accuracy filled from the zoo where the data lack them.
Model names join their zoo cards as people write them ("ResNet-18" -> resnet18, see
``core.zoo.names``), or through a names mapping; the rows keep the names the data give.
Everything it drops, fills or matches is said in ``notes``. Reading a store, CSV or JSON file into
that DataFrame is ``core.analysis.load``; ``without_disturbed`` leaves disturbed rows out of
a raw long-schema frame (what the predictor's commands train on).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from core.errors import BackbenchError, DataError
from core.zoo import get_card, model_complexity
from core.zoo.names import NameMatches, match_names

log = logging.getLogger(__name__)

REQUIRED_COLUMNS: tuple[str, ...] = ("model", "batch_size", "per_image_ms")
NUMERIC_COLUMNS: tuple[str, ...] = (
    "batch_size",
    "per_image_ms",
    "latency_ms_median",
    "throughput_ips",
    "peak_rss_mb",
    "peak_device_mem_mb",
    "baseline_rss_mb",
    "model_rss_mb",
    "interference",
    "params",
    "flops",
    "top1",
    "top5",
    "n_eval_images",
)
PLATFORM_PARTS: tuple[str, ...] = ("backend", "device", "precision")
MEASURED = "measured"
REFERENCE = "reference (ImageNet, torchvision)"
UNKNOWN = "unknown"
# MB throughout = 2**20 bytes, the unit of peak_rss_mb; fp32 weights take 4 bytes each.
BYTES_PER_MB = float(2**20)
FP32_BYTES = 4.0
# How a CSV or JSON file may spell the disturbed flag (compared lower-case, stripped).
_TRUE_TEXT = frozenset({"true", "1", "1.0", "yes", "y", "t"})
_FALSE_TEXT = frozenset({"false", "0", "0.0", "no", "n", "f"})
DISTURBED_MEANING = (
    "other processes used more CPU than the run's threshold while the case warmed up and was timed"
)

_REQUIRED_TEXT = ", ".join(REQUIRED_COLUMNS)


@dataclass(frozen=True, slots=True, eq=False)
class AnalysisInput:
    """Validated analysis input.

    ``frame`` has one row per ok measurement with numeric columns (NaN where unknown),
    ``platform`` ("backend/device/precision", with "/throughput" appended, as core.predict.platform_label does, for
    throughput-mode rows), ``accuracy_source`` (``MEASURED``, ``REFERENCE`` or None) and
    ``disturbed`` (True, False, or None where the data do not say). ``n_disturbed``
    counts the disturbed rows kept in ``frame``; ``n_excluded_disturbed`` those left out.
    ``name_matches`` says which zoo card each model name of ``frame`` joined (None only
    for an input built by hand).
    """

    frame: pd.DataFrame
    notes: tuple[str, ...]
    n_rows_read: int
    n_excluded_status: int
    n_dropped_missing: int
    n_disturbed: int = 0
    n_excluded_disturbed: int = 0
    name_matches: NameMatches | None = None

    @property
    def models(self) -> list[str]:
        return sorted(self.frame["model"].unique().tolist())

    @property
    def platforms(self) -> list[str]:
        return sorted(self.frame["platform"].unique().tolist())

    @property
    def batch_sizes(self) -> list[int]:
        return sorted(int(b) for b in self.frame["batch_size"].unique())


def _check_columns(frame: pd.DataFrame) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(
            f"The data lack the column(s) {', '.join(missing)}.",
            f"Analysis needs at least the columns {_REQUIRED_TEXT} (the long schema of "
            "`backbench results --format csv`); add or rename them.",
        )


def _to_numeric(frame: pd.DataFrame, column: str) -> pd.Series:
    raw = frame[column]
    if raw.dtype == bool:
        raw = raw.astype(float)
    values = pd.to_numeric(raw, errors="coerce")
    bad = values.isna() & raw.notna() & (raw.astype(str).str.strip() != "")
    if bad.any():
        index = bad[bad].index[0]
        raise DataError(
            f"Column {column!r} must be numeric, but data row {int(index) + 1} "
            f"(model {frame.at[index, 'model']!r}) holds {raw[index]!r}.",
            f"Fix or remove the non-numeric value(s) in {column!r}; leave a cell empty when "
            "the value is unknown.",
        )
    return values.astype(float)


def _flag(value: Any) -> bool | None:
    """A disturbed cell as True, False or None (unknown); ValueError when unreadable."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        if math.isnan(float(value)):
            return None
        if float(value) in (0.0, 1.0):
            return bool(value)
        raise ValueError(value)
    text = str(value).strip().lower()
    if text in ("", "nan", "none", "null", "<na>"):
        return None
    if text in _TRUE_TEXT:
        return True
    if text in _FALSE_TEXT:
        return False
    raise ValueError(value)


def disturbed_flags(frame: pd.DataFrame) -> pd.Series:
    """The ``disturbed`` column as True/False/None (object dtype); all None without one.

    Raises DataError naming the row for a value that is neither true nor false.
    """
    if "disturbed" not in frame.columns:
        return pd.Series(None, index=frame.index, dtype=object)
    flags: list[bool | None] = []
    for position, (label, value) in enumerate(frame["disturbed"].items()):
        try:
            flags.append(_flag(value))
        except ValueError:
            model = frame["model"].iloc[position] if "model" in frame.columns else None
            # prepare() keeps each row's position in the input as its index label.
            row = int(label) + 1 if isinstance(label, (int, np.integer)) else position + 1
            raise DataError(
                f"Column 'disturbed' must be true or false, but data row {row} "
                f"(model {model!r}) holds {value!r}.",
                "Write true or false (or leave the cell empty when unknown).",
            ) from None
    return pd.Series(flags, index=frame.index, dtype=object)


def without_disturbed(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """``frame`` without the rows whose ``disturbed`` is true, and how many those were."""
    disturbed = disturbed_flags(frame).map(lambda flag: flag is True).astype(bool)
    return frame.loc[~disturbed].reset_index(drop=True), int(disturbed.sum())


def _platform_column(frame: pd.DataFrame) -> pd.Series:
    parts = []
    for name in PLATFORM_PARTS:
        if name in frame.columns:
            part = frame[name].astype("string").str.strip().fillna(UNKNOWN)
            part = part.mask(part == "", UNKNOWN)
        else:
            part = pd.Series(UNKNOWN, index=frame.index, dtype="string")
        parts.append(part)
    platform = parts[0] + "/" + parts[1] + "/" + parts[2]
    if "mode" in frame.columns:
        # Throughput mode (async, several requests) is another operating point, so it is
        # kept apart rather than averaged with latency mode.
        is_throughput = frame["mode"].astype("string").str.strip().str.lower() == "throughput"
        platform = platform.mask(is_throughput.fillna(False), platform + "/throughput")
    return platform.astype(str)


def _zoo_facts(model: str) -> dict[str, float | None]:
    """params, flops, top1, top5 of a zoo model (None each where unknown).

    FLOPs and params come from the zoo's inference count (model_complexity) and fall back
    to the model card's published figures; accuracy is the card's ImageNet reference.
    """
    facts: dict[str, float | None] = {"params": None, "flops": None, "top1": None, "top5": None}
    try:
        card = get_card(model)
    except BackbenchError:
        return facts
    complexity = None
    try:
        complexity = model_complexity(model)
    except BackbenchError as exc:
        log.debug("no complexity count for %s: %s", model, exc)
    if complexity is not None:
        facts["params"] = _number(getattr(complexity, "params", None))
        facts["flops"] = _number(getattr(complexity, "flops", None))
    if facts["params"] is None:
        facts["params"] = _number(getattr(card, "params", None))
    if facts["flops"] is None:
        facts["flops"] = _number(getattr(card, "flops_published", None))
    if facts["flops"] is None:
        gmacs = _number(getattr(card, "gmacs", None))
        facts["flops"] = None if gmacs is None else 2.0 * gmacs * 1e9
    facts["top1"] = _number(getattr(card, "acc1", None))
    facts["top5"] = _number(getattr(card, "acc5", None))
    return facts


def _number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _fill_from_zoo(
    frame: pd.DataFrame, notes: list[str], names: Mapping[str, str] | None = None
) -> tuple[pd.DataFrame, NameMatches]:
    """``frame`` with its missing params, flops, top1 and top5 taken from the zoo card
    each model name matches (``core.zoo.names.match_names``, with the ``names`` mapping),
    and the matches; the model column keeps the data's own names."""
    matches = match_names(sorted(frame["model"].unique().tolist()), names)
    notes.extend(matches.notes())
    needs = frame[["params", "flops", "top1", "top5"]].isna().any(axis=1)
    models = sorted(frame.loc[needs, "model"].unique().tolist())
    filled: dict[str, set[str]] = {}
    # Reference accuracy only goes to models with no measured accuracy in any row: a
    # measured value next to a reference one would mix two sources for one model.
    measured_models = set(frame.loc[frame["accuracy_source"] == MEASURED, "model"])
    unmeasured = ~frame["model"].isin(measured_models)
    for model in models:
        source = matches.card_source(model)
        if source is None:
            continue
        facts = _zoo_facts(source)
        rows = frame["model"] == model
        for column, value in facts.items():
            if value is None:
                continue
            gap = rows & frame[column].isna()
            if column in ("top1", "top5"):
                gap &= unmeasured
            if gap.any():
                frame.loc[gap, column] = value
                filled.setdefault(column, set()).add(model)
    frame.loc[unmeasured & frame["top1"].notna(), "accuracy_source"] = REFERENCE
    # The published figures stay beside the measured ones, so views can show both.
    frame["reference_top1"] = np.nan
    frame["reference_top5"] = np.nan
    for model in frame["model"].unique().tolist():
        source = matches.card_source(model)
        facts = _zoo_facts(source) if source is not None else {}
        rows = frame["model"] == model
        for column in ("top1", "top5"):
            if facts.get(column) is not None:
                frame.loc[rows, f"reference_{column}"] = facts[column]
    for column in ("params", "flops"):
        if column in filled:
            notes.append(
                f"{column} taken from the model zoo for {len(filled[column])} model(s) "
                f"that lacked it ({', '.join(sorted(filled[column]))})."
            )
    if "top1" in filled:
        notes.append(
            f"No measured accuracy for {len(filled['top1'])} model(s) "
            f"({', '.join(sorted(filled['top1']))}); their top-1/top-5 are the "
            f"{REFERENCE} figures from the model cards, not measured here."
        )
    return frame, matches


def with_zoo_names(
    frame: pd.DataFrame, names: Mapping[str, str] | NameMatches | None = None
) -> tuple[pd.DataFrame, NameMatches]:
    """A raw long-schema ``frame`` whose model column names each matched model by its
    zoo name (what the predictor looks features up by), and the matches; the caller's
    frame is not changed. ``names`` is a names mapping, or matches already made."""
    if isinstance(names, NameMatches):
        matches = names
    else:
        column = frame["model"] if "model" in frame.columns else pd.Series(dtype=object)
        models = column.dropna().astype(str).str.strip().unique().tolist()
        matches = match_names(sorted(models), names)
    renamed = matches.renamed()
    if not renamed or "model" not in frame.columns:
        return frame, matches
    frame = frame.copy()
    stripped = frame["model"].map(lambda m: m.strip() if isinstance(m, str) else m)
    frame["model"] = stripped.map(lambda m: renamed.get(m, m) if isinstance(m, str) else m)
    return frame, matches


def prepare(
    df: pd.DataFrame,
    *,
    exclude_disturbed: bool = False,
    names: Mapping[str, str] | None = None,
) -> AnalysisInput:
    """Validate and normalise a long-schema DataFrame for analysis.

    ``exclude_disturbed`` leaves out the rows whose ``disturbed`` is true (by default they
    are kept, counted and noted). ``names`` maps model names of the data to zoo names
    (``core.zoo.names.read_name_map``), for names the tolerant matching leaves unmatched
    or ambiguous; it wins over that matching. Raises UsageError for a mapping target that
    is not a zoo name. Raises DataError for missing required columns,
    non-numeric values or when no usable row is left; everything else that is dropped or
    filled is recorded in ``notes``.
    """
    if not isinstance(df, pd.DataFrame):
        raise DataError(
            f"Analysis input must be a table (DataFrame), not {type(df).__name__}.",
            "Pass a DataFrame in the long schema or load a CSV with load_csv().",
        )
    if df.empty:
        raise DataError(
            "The data hold no measurements.",
            f"Run a benchmark first, or give a CSV with the columns {_REQUIRED_TEXT} and one row per measurement.",
        )
    frame = df.reset_index(drop=True)  # index = position in the input, for messages
    frame.columns = [str(c).strip() for c in frame.columns]
    _check_columns(frame)
    notes: list[str] = []
    n_read = len(frame)

    n_excluded = 0
    if "status" in frame.columns:
        status = frame["status"].astype("string").str.strip().str.lower()
        keep = (status == "ok").fillna(False) | status.isna()
        n_excluded = int((~keep).sum())
        if n_excluded:
            counts = status[~keep].value_counts().to_dict()
            detail = ", ".join(f"{count} {name}" for name, count in sorted(counts.items()))
            notes.append(
                f"{n_excluded} measurement(s) with status other than ok excluded ({detail})."
            )
        frame = frame.loc[keep]
        if frame.empty:
            raise DataError(
                f"None of the {n_read} measurements has status ok.",
                "Look at their error column (backbench results) and rerun the failed cases.",
            )

    frame["model"] = frame["model"].astype("string").str.strip()
    frame["disturbed"] = disturbed_flags(frame)
    is_disturbed = frame["disturbed"].map(lambda flag: flag is True).astype(bool)
    n_disturbed = int(is_disturbed.sum())
    n_excluded_disturbed = 0
    if n_disturbed and exclude_disturbed:
        n_excluded_disturbed, n_disturbed = n_disturbed, 0
        notes.append(
            f"{n_excluded_disturbed} disturbed measurement(s) left out ({DISTURBED_MEANING})."
        )
        frame = frame.loc[~is_disturbed]
        if frame.empty:
            raise DataError(
                f"All {n_excluded_disturbed} ok measurements were disturbed, so none is left "
                "once they are left out.",
                "Leave out --exclude-disturbed, or measure again on a quieter machine "
                "(backbench run --retry-disturbed N measures a disturbed case again).",
            )
    elif n_disturbed:
        notes.append(
            f"{n_disturbed} measurement(s) were disturbed ({DISTURBED_MEANING}); they are "
            "included and marked (--exclude-disturbed leaves them out)."
        )
    for column in NUMERIC_COLUMNS:
        if column in frame.columns:
            frame[column] = _to_numeric(frame, column)
        else:
            frame[column] = np.nan
    # A table with both RSS figures but no model_rss_mb column still has the model's share.
    derived = (frame["peak_rss_mb"] - frame["baseline_rss_mb"]).clip(lower=0.0)
    frame["model_rss_mb"] = frame["model_rss_mb"].fillna(derived)

    frame = join_measured_accuracy(frame, notes)
    required_na = frame["model"].isna() | (frame["model"] == "")
    for column in ("batch_size", "per_image_ms"):
        required_na |= frame[column].isna()
    n_dropped = int(required_na.sum())
    if n_dropped:
        notes.append(f"{n_dropped} row(s) without model, batch_size or per_image_ms dropped.")
        frame = frame.loc[~required_na]
    if frame.empty:
        raise DataError(
            "No row has all of model, batch_size and per_image_ms.",
            f"Fill the columns {_REQUIRED_TEXT} (empty cells are not usable).",
        )
    _check_ranges(frame)

    frame["model"] = frame["model"].astype(str)
    frame["batch_size"] = frame["batch_size"].astype(int)
    frame["platform"] = _platform_column(frame)
    frame["accuracy_source"] = pd.Series(
        np.where(frame["top1"].notna(), MEASURED, None), index=frame.index, dtype=object
    )
    frame = _accuracy_as_percent(frame, notes)
    frame, matches = _fill_from_zoo(frame, notes, names)
    frame = frame.reset_index(drop=True)
    return AnalysisInput(
        frame=frame,
        notes=tuple(notes),
        n_rows_read=n_read,
        n_excluded_status=n_excluded,
        n_dropped_missing=n_dropped,
        n_disturbed=int(frame["disturbed"].map(lambda flag: flag is True).sum()),
        n_excluded_disturbed=n_excluded_disturbed,
        name_matches=matches,
    )


def _check_ranges(frame: pd.DataFrame) -> None:
    checks = (
        ("batch_size", lambda s: (s >= 1) & (s == np.floor(s)), "a positive integer"),
        ("per_image_ms", lambda s: (s > 0) & np.isfinite(s), "a positive, finite time in ms"),
    )
    for column, ok, what in checks:
        bad = ~ok(frame[column])
        if bad.any():
            index = bad[bad].index[0]
            raise DataError(
                f"Column {column!r} must be {what}, but data row {int(index) + 1} "
                f"(model {frame.at[index, 'model']!r}) has {float(frame.at[index, column]):g}.",
                f"Fix or remove the row(s) with invalid {column}.",
            )


def _accuracy_as_percent(frame: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    for column in ("top1", "top5"):
        values = frame[column].dropna()
        # A top-1 of at most 1% is not a plausible ImageNet model; fractions are meant.
        if not values.empty and values.max() <= 1.0:
            frame[column] = frame[column] * 100.0
            notes.append(f"{column} given as fractions (all <= 1); read as percent x 100.")
    return frame


def coerce_input(
    data: pd.DataFrame | AnalysisInput,
    *,
    exclude_disturbed: bool = False,
    names: Mapping[str, str] | None = None,
) -> AnalysisInput:
    """``data`` prepared; an AnalysisInput is taken as it is (it was prepared with its own
    ``exclude_disturbed`` and ``names``)."""
    if isinstance(data, AnalysisInput):
        return data
    return prepare(data, exclude_disturbed=exclude_disturbed, names=names)


def join_measured_accuracy(frame: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """Accuracy rows (``mode == accuracy``: top-1/top-5 over a dataset, no latency) give
    their figures to the timing rows of their model: the accuracy measured on the same
    backend, device and precision where there is one, else the model's median over its
    measured platforms. A model measured on several datasets uses the one with the most
    images. The accuracy rows themselves then leave the table (they have no timing).
    Raises DataError when the table holds accuracy rows only."""
    if "mode" not in frame.columns:
        return frame
    is_accuracy = (frame["mode"].astype("string").str.strip().str.lower() == "accuracy").fillna(False)
    if not is_accuracy.any():
        return frame
    accuracy = frame.loc[is_accuracy & frame["top1"].notna()]
    timing = frame.loc[~is_accuracy].copy()
    if timing.empty:
        raise DataError(
            f"The table holds {int(is_accuracy.sum())} accuracy measurement(s) and no timing: the "
            "analyses set accuracy against time, FLOPs and memory.",
            "Measure latency too (backbench run -m MODEL ...) into the same store, or see the "
            "accuracy alone with `backbench results` or `backbench accuracy`.",
        )
    if "dataset_id" in accuracy.columns and accuracy["dataset_id"].notna().any():
        sizes = accuracy.groupby(["model", "dataset_id"])["n_eval_images"].max().reset_index()
        best = sizes.sort_values(["model", "n_eval_images"], ascending=[True, False]).drop_duplicates("model")
        chosen = set(zip(best["model"], best["dataset_id"], strict=False))
        keep = [(m, d) in chosen for m, d in zip(accuracy["model"], accuracy["dataset_id"], strict=False)]
        if not all(keep):
            notes.append(
                "Some models were evaluated on several datasets; each uses the one with the most images."
            )
        accuracy = accuracy.loc[keep]
    parts = [c for c in PLATFORM_PARTS if c in frame.columns]
    columns = ("top1", "top5", "n_eval_images")
    by_platform = accuracy.groupby(["model", *parts])[list(columns)].median() if parts else None
    by_model = accuracy.groupby("model")[list(columns)].median()
    joined = 0
    for index, row in timing.iterrows():
        if pd.notna(row.get("top1")):
            continue  # a table that carries its own accuracy column keeps it
        key = (row["model"], *(row[c] for c in parts))
        if by_platform is not None and key in by_platform.index:
            figures = by_platform.loc[key]
        elif row["model"] in by_model.index:
            figures = by_model.loc[row["model"]]
        else:
            continue
        for column in columns:
            timing.at[index, column] = figures[column]
        joined += 1
    if joined:
        notes.append(
            f"Measured accuracy ({int(len(accuracy))} accuracy measurement(s)) joined to {joined} "
            "timing row(s): the same platform's where measured, else the model's median."
        )
    return timing


def cell_medians(inp: AnalysisInput, columns: tuple[str, ...]) -> pd.DataFrame:
    """One row per (platform, model, batch_size): the median of repeated measurements."""
    frame = inp.frame
    keys = ["platform", "model", "batch_size"]
    return frame.groupby(keys, as_index=False, sort=True)[list(columns)].median()


def model_table(inp: AnalysisInput) -> pd.DataFrame:
    """One row per model: params, flops, top1, top5 (medians over its rows), the accuracy
    source (measured wins over reference) and n_eval_images (the smallest recorded)."""
    frame = inp.frame
    rows = []
    for model, group in frame.groupby("model", sort=True):
        measured = group[group["accuracy_source"] == MEASURED]
        source_rows = measured if not measured.empty else group
        source = (
            MEASURED if not measured.empty else (REFERENCE if group["top1"].notna().any() else None)
        )
        n_eval = measured["n_eval_images"].dropna()
        rows.append(
            {
                "model": model,
                "params": group["params"].median(),
                "flops": group["flops"].median(),
                "top1": source_rows["top1"].median(),
                "top5": source_rows["top5"].median(),
                "accuracy_source": source,
                "n_eval_images": float(n_eval.min()) if not n_eval.empty else np.nan,
                "reference_top1": group["reference_top1"].median() if "reference_top1" in group else np.nan,
                "reference_top5": group["reference_top5"].median() if "reference_top5" in group else np.nan,
            }
        )
    return pd.DataFrame(rows)
