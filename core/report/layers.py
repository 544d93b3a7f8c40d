"""Per-layer profiles (``backbench run --profile-layers``) as the report and the GUI read
them: which measurements carry one, the time by layer type, the layer sum against the
end-to-end median, the layer rows of a table, and the matching of one profile's layers
to another's, so two platforms or precisions of one model can be put side by side.

The data model only: no matplotlib and no Qt (the GUI imports this module).
"""

from __future__ import annotations

import difflib
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.results import LayerRecord, Measurement, Mode

# How a layer of one profile was found in the other (LayerMatch.how).
BY_NAME = "name"  # the same node name: OpenVINO keeps names across precisions
BY_FUSED = "fused"  # a renamed node that executes the same original layers
BY_ORDER = "order"  # neither: the same type at the same place in the execution order
UNMATCHED = ""

LAYER_TABLE_COLUMNS: tuple[str, ...] = (
    "run_id", "measurement_id", "model", "platform", "batch_size", "seq", "name", "type",
    "exec_type", "time_ms", "share", "flops", "bytes", "output_shapes", "fused",
    "layer_precision", "layer_sum_ms", "e2e_median_ms",
)  # fmt: skip
HOW_TO_PROFILE = (
    "Measure with --profile-layers (backbench run -m MODEL --profile-layers), or tick "
    "\"Profile layers\" in the GUI's run launcher."
)
_MODULE = re.compile(r"^__module\.([^/]+)/")


def platform_label(m: Measurement) -> str:
    """backend/device/precision, with /throughput for throughput mode: the analysis's
    name for a platform (core.analysis.data)."""
    case = m.case
    label = f"{case.backend.value}/{case.device}/{case.precision.value}"
    return label + ("/throughput" if case.mode is Mode.THROUGHPUT else "")


def profiled(measurements: Iterable[Measurement]) -> list[Measurement]:
    """The measurements that carry a per-layer profile with at least one layer."""
    return [m for m in measurements if m.layer_profile is not None and m.layer_profile.layers]


def load_profiles(path: str | Path | None, run: int | str | None = None) -> list[Measurement]:
    """The profiled measurements of a results store (every run's, or ``run``'s), read
    only. Raises StoreError as core.store does (no store, corrupt, no such run)."""
    from core.store import open_store

    store = open_store(path, readonly=True)
    try:
        return profiled(store.measurements(run))
    finally:
        store.close()


def by_type(m: Measurement) -> list[tuple[str, float, int]]:
    """(layer type, total ms, count), slowest first."""
    totals: dict[str, list[float]] = defaultdict(list)
    for layer in m.layer_profile.layers if m.layer_profile else ():
        totals[layer.type].append(layer.time_ms)
    return sorted(((t, sum(v), len(v)) for t, v in totals.items()), key=lambda x: -x[1])


def overhead_ms(m: Measurement) -> float | None:
    """End-to-end median (the timed loop's) minus the layer sum: the framework's time
    outside the layers. None without a profile or a median."""
    if m.layer_profile is None or not m.latency_ms_median:
        return None
    return m.latency_ms_median - m.layer_profile.sum_ms


def overhead_line(m: Measurement) -> str:
    """The layer sum against the end-to-end median, and what the gap means."""
    profile = m.layer_profile
    if profile is None:
        return ""
    total, e2e = profile.sum_ms, m.latency_ms_median
    line = f"sum of {len(profile.layers)} layers {total:.3f} ms"
    if e2e:
        gap = e2e - total
        line += (
            f"; end-to-end median {e2e:.3f} ms (timed loop), ratio {total / e2e:.2f}; "
            + (f"framework overhead outside the layers {gap:.3f} ms ({gap / e2e:.0%})" if gap >= 0
               else f"the layers' counters add up to {-gap:.3f} ms more than the end-to-end time")
        )  # fmt: skip
    if profile.profiled_median_ms:
        line += (
            f". Under the profiler the end-to-end median was {profile.profiled_median_ms:.3f} ms "
            "(counting every layer costs time too)"
        )
    return line + f" [{profile.source}, {profile.iterations} profiled iterations]"


def short_name(layer: LayerRecord, limit: int = 36) -> str:
    """A layer's name for an axis label: the torch module path where the node name
    carries one (``__module.layer1.0.conv1/aten::...`` -> ``layer1.0.conv1``), else the
    name, middle elided to ``limit`` characters. Generated names such as Multiply_5466
    get the module path of an original layer fused into them, after the name."""
    found = _MODULE.match(layer.name)
    if found:
        text = found.group(1)
    else:
        text = layer.name
        for original in layer.fused:
            module = _MODULE.match(original)
            if module and original != layer.name:
                text = f"{layer.name} ({module.group(1)})"
                break
    if len(text) <= limit:
        return text
    keep = limit - 1
    return text[: keep // 2] + "…" + text[len(text) - (keep - keep // 2) :]


# -- matching two profiles ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LayerMatch:
    """A layer of profile a and its counterpart in profile b, by index into each
    profile's layers; None on the side that has no counterpart."""

    a: int | None
    b: int | None
    how: str = UNMATCHED


def _originals(layer: LayerRecord) -> set[str]:
    return {layer.name, *layer.fused}


def match_layers(a: Sequence[LayerRecord], b: Sequence[LayerRecord]) -> list[LayerMatch]:
    """Pair the layers of two profiles of one model.

    First by node name (OpenVINO keeps its node names across precisions and devices);
    then a renamed node by the original layers fused into it (most shared, same type
    first); then what is left by type in execution order (difflib's alignment of the two
    type sequences). Every layer of each side appears exactly once: matched pairs and
    a-only layers in a's order, then b-only layers in b's order.
    """
    pair_of_a: dict[int, tuple[int, str]] = {}
    taken_b: set[int] = set()
    by_name: dict[str, list[int]] = defaultdict(list)
    for j, layer in enumerate(b):
        by_name[layer.name].append(j)
    for i, layer in enumerate(a):
        candidates = by_name.get(layer.name)
        if candidates:
            j = candidates.pop(0)
            pair_of_a[i] = (j, BY_NAME)
            taken_b.add(j)

    owners: dict[str, list[int]] = defaultdict(list)
    for j, layer in enumerate(b):
        if j not in taken_b:
            for original in _originals(layer):
                owners[original].append(j)
    for i, layer in enumerate(a):
        if i in pair_of_a:
            continue
        shared: dict[int, int] = defaultdict(int)
        for original in _originals(layer):
            for j in owners.get(original, ()):
                if j not in taken_b:
                    shared[j] += 1
        if shared:
            j = max(shared, key=lambda k: (shared[k], b[k].type == layer.type, -k))
            pair_of_a[i] = (j, BY_FUSED)
            taken_b.add(j)

    rest_a = [i for i in range(len(a)) if i not in pair_of_a]
    rest_b = [j for j in range(len(b)) if j not in taken_b]
    aligner = difflib.SequenceMatcher(
        None, [a[i].type for i in rest_a], [b[j].type for j in rest_b], autojunk=False
    )
    for block in aligner.get_matching_blocks():
        for k in range(block.size):
            i, j = rest_a[block.a + k], rest_b[block.b + k]
            pair_of_a[i] = (j, BY_ORDER)
            taken_b.add(j)

    matches = [
        LayerMatch(i, pair_of_a[i][0], pair_of_a[i][1]) if i in pair_of_a else LayerMatch(i, None)
        for i in range(len(a))
    ]
    matches += [LayerMatch(None, j) for j in range(len(b)) if j not in taken_b]
    return matches


def match_counts(matches: Sequence[LayerMatch]) -> dict[str, int]:
    """How many pairs each way matched, and how many layers only one side has."""
    counts = {BY_NAME: 0, BY_FUSED: 0, BY_ORDER: 0, "only_a": 0, "only_b": 0}
    for match in matches:
        if match.a is not None and match.b is not None:
            counts[match.how] += 1
        else:
            counts["only_a" if match.a is not None else "only_b"] += 1
    return counts


# -- tables -------------------------------------------------------------------------------


def output_shape_text(layer: LayerRecord) -> str:
    return ", ".join("x".join(str(d) for d in shape) for shape in layer.output_shapes)


def layer_table(measurements: Sequence[Measurement]) -> list[dict[str, Any]]:
    """One row per layer of each profiled measurement (raw values; the report's
    tables/layers.csv)."""
    rows = []
    for m in profiled(measurements):
        profile = m.layer_profile
        if profile is None:  # profiled() kept none of these
            continue
        total = profile.sum_ms
        for seq, layer in enumerate(profile.layers):
            rows.append({
                "run_id": m.run_id, "measurement_id": m.measurement_id, "model": m.case.model,
                "platform": platform_label(m), "batch_size": m.case.batch_size, "seq": seq,
                "name": layer.name, "type": layer.type, "exec_type": layer.exec_type,
                "time_ms": layer.time_ms, "share": layer.time_ms / total if total > 0 else None,
                "flops": layer.flops, "bytes": layer.bytes, "output_shapes": output_shape_text(layer),
                "fused": " ".join(layer.fused), "layer_precision": layer.precision,
                "layer_sum_ms": total, "e2e_median_ms": m.latency_ms_median,
            })  # fmt: skip
    return rows


def profile_summary(measurements: Sequence[Measurement]) -> list[dict[str, Any]]:
    """One row per profiled measurement: its layer sum against its end-to-end median,
    the slowest layer type and the slowest layer."""
    rows = []
    for m in profiled(measurements):
        profile = m.layer_profile
        if profile is None:  # profiled() kept none of these
            continue
        total, e2e = profile.sum_ms, m.latency_ms_median
        gap = overhead_ms(m)
        types = by_type(m)
        slowest = max(profile.layers, key=lambda layer: layer.time_ms)
        rows.append({
            "model": m.case.model, "platform": platform_label(m), "batch_size": m.case.batch_size,
            "n_layers": len(profile.layers), "layer_sum_ms": total, "e2e_median_ms": e2e,
            "overhead_ms": gap, "overhead_share": gap / e2e if gap is not None and e2e else None,
            "profiled_median_ms": profile.profiled_median_ms,
            "top_type": types[0][0], "top_type_share": types[0][1] / total if total > 0 else None,
            "slowest_layer": slowest.name, "slowest_layer_type": slowest.type,
            "slowest_layer_exec_type": slowest.exec_type, "slowest_layer_ms": slowest.time_ms,
            "source": profile.source, "iterations": profile.iterations,
        })  # fmt: skip
    return rows
