"""The options of a run, declared once for ``backbench run``, ``backbench remote submit``,
the GUI's run launcher and the agent's check of a submitted spec.

Each ``RunOption`` says which RunSpec field it fills (stopping fields as
``stopping.NAME``), its flags, type, default, bounds, help text, and whether a remote
client may set it. From that one table:

- ``add_run_options`` declares the flags of ``run`` and of ``remote submit``;
- ``spec_from_args`` builds a RunSpec from the parsed flags;
- ``run_defaults`` gives the GUI launcher its initial values;
- ``spec_from_remote`` checks a spec object sent by a client (unknown fields, local-only
  fields, types and bounds) before the agent builds a RunSpec from it;
- ``remote_spec_dict`` is what a client sends: the spec without its local-only fields.

The GUI imports this module, so it stays light: the standard library at import time, and
core.results, core.zoo only inside the functions that build a spec.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, Sequence, Sized
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from core.errors import UsageError
from core.text import json_type, shown

if TYPE_CHECKING:
    from core.results import RunSpec

STOPPING = "stopping"
MAX_PATH_CHARS = 4096  # PATH_MAX on Linux: a model file or weights file
MAX_MODELS = 1000
_SHOWN_CHARS = 40  # values quoted in an error stay short whatever a client sent


class Kind(str, Enum):
    TEXT = "text"
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    TEXT_LIST = "text list"
    INT_LIST = "int list"
    TEXT_MAP = "text map"  # model name -> file path
    OBJECT = "object"  # a nested object its own data class checks (accuracy)


@dataclass(frozen=True, slots=True)
class RunOption:
    """One option of a run.

    ``field`` is the key in a spec object (``stopping.NAME`` for the stopping rule), or
    None for a flag that only helps build another field (``--suite`` adds to the models).
    An option with no ``flags`` has no command-line flag: a spec object may still carry
    it, so the agent knows its type and bounds. A null value is allowed where the
    default is None. Text is never empty. Bounds are inclusive unless ``min_exclusive``
    or ``max_exclusive`` says otherwise; for lists they apply to each item.
    """

    field: str | None
    flags: tuple[str, ...]
    kind: Kind
    default: Any
    help: str = ""
    remote: bool = True
    minimum: float | None = None
    maximum: float | None = None
    min_exclusive: bool = False
    max_exclusive: bool = False
    max_items: int | None = None
    max_len: int | None = None
    metavar: str | None = None
    remote_note: str = ""  # added to the help of `remote submit`
    why_local: str = ""  # for a local-only option: why a remote client may not set it
    negated: bool = False  # the flag turns the field off (--no-isolate)

    @property
    def dest(self) -> str:
        """The argparse attribute of the flag (argparse's own rule: the first long flag)."""
        long = next((f for f in self.flags if f.startswith("--")), self.flags[0])
        return long.lstrip("-").replace("-", "_")

    def label(self, *, remote: bool) -> str:
        """How an error names the option: its flag on the command line; its field, and
        the flag a terminal user would have typed, for a spec sent to the agent."""
        flag = self.flags[-1] if self.flags else None
        if not remote and flag:
            return flag
        return f"Field {self.field!r}" + (f" ({flag})" if flag else "")

    def bounds_text(self) -> str:
        low = None
        if self.minimum is not None:
            low = f"{'more than' if self.min_exclusive else 'at least'} {_number(self.minimum)}"
        high = None
        if self.maximum is not None:
            high = f"{'less than' if self.max_exclusive else 'at most'} {_number(self.maximum)}"
        return " and ".join(part for part in (low, high) if part)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


RUN_OPTIONS: tuple[RunOption, ...] = (
    RunOption(
        "models", ("-m", "--model"), Kind.TEXT_LIST, (),
        help="zoo model name or model file (.onnx, .xml, .pt); repeatable",
        max_items=MAX_MODELS, max_len=MAX_PATH_CHARS,
        remote_note="a file that is here is uploaded",
    ),
    RunOption(None, ("--suite",), Kind.TEXT, None, help="a suite of models (paper, quick)", max_len=128),
    RunOption(
        "backend", ("--backend",), Kind.TEXT, "torch",
        help="torch | openvino | onnxruntime (default %(default)s)", max_len=32,
    ),
    RunOption(
        "device", ("--device",), Kind.TEXT, None,
        help="cpu, cuda, cuda:N (torch/onnxruntime); CPU, GPU, NPU, MYRIAD, AUTO (openvino)",
        max_len=64,
    ),
    RunOption(
        "precision", ("--precision",), Kind.TEXT, "fp32",
        help="fp32 | fp16 | bf16 (default %(default)s)", max_len=32,
    ),
    RunOption(
        "batch_sizes", ("--batch",), Kind.INT_LIST, (1,),
        help="comma-separated batch sizes, e.g. 1,2,4,8,16,32,64 (default %(default)s)",
        minimum=1, maximum=65_536, max_items=64,
    ),
    RunOption(
        "mode", ("--mode",), Kind.TEXT, "latency",
        help="latency (sync, one request) | throughput (async streams)", max_len=32,
    ),
    RunOption(
        "stopping.target_ci", ("--target-ci",), Kind.FLOAT, 0.01,
        help="stop once the 95%% CI half-width of the median is within this fraction "
        "(default %(default)s)",
        minimum=0, maximum=1, min_exclusive=True, max_exclusive=True,
    ),
    RunOption(
        "stopping.min_iters", ("--min-iters",), Kind.INT, 10,
        help="at least this many timed iterations (default %(default)s)",
        minimum=1, maximum=10_000_000,
    ),
    RunOption(
        "stopping.max_time_s", ("--max-time",), Kind.FLOAT, 10.0,
        help="at most this many seconds of timed loop per case (default %(default)s)",
        minimum=0, maximum=86_400, min_exclusive=True,
    ),
    # No flag: a spec object may set them (the service tests do), the CLI keeps defaults.
    # max_iters bounds the samples of a case, which its worker holds and the store keeps:
    # 10 million is a few hundred MB, which bench/telemetry.py's streaming runs reach.
    RunOption("stopping.max_iters", (), Kind.INT, 100_000, minimum=1, maximum=10_000_000),
    RunOption("stopping.warmup_iters", (), Kind.INT, 3, minimum=1, maximum=100_000),
    RunOption("stopping.warmup_time_s", (), Kind.FLOAT, 0.5, minimum=0, maximum=3_600),
    RunOption("name", ("--name",), Kind.TEXT, None, help="a name for this run", max_len=256),
    # Remote clients may name weights: `remote submit` uploads a file that is here and
    # sends the agent's path of it, and the agent opens only files inside its allowed
    # folders (--model-dir and its uploads), like a model file.
    RunOption(
        "weights", ("--weights",), Kind.TEXT_MAP, None,
        help="load real weights for MODEL from a local state-dict file",
        max_items=MAX_MODELS, max_len=MAX_PATH_CHARS, metavar="MODEL=PATH",
        remote_note="uploaded if the file is here",
    ),
    RunOption(
        "retry_disturbed", ("--retry-disturbed",), Kind.INT, 0,
        help="measure a case disturbed by other processes again, up to N times (default %(default)s)",
        minimum=0, maximum=100, metavar="N",
    ),
    RunOption(
        "disturbed_threshold", ("--disturbed-threshold",), Kind.FLOAT, 0.1,
        help="other processes' CPU use, in cores, above which a case is marked disturbed "
        "(default %(default)s)",
        minimum=0, maximum=4096, min_exclusive=True, metavar="CORES",
    ),
    RunOption(
        "max_mem_mb", ("--max-mem-mb",), Kind.INT, None,
        help="fail a case whose model needs more than this many MB above the framework's "
        "imports (a memory cgroup per case where one can be made, else an address-space "
        "limit, which is not applied on CUDA)",
        minimum=1, maximum=16_777_216, metavar="MB",
    ),
    RunOption(
        "measure_timeout_s", ("--measure-timeout",), Kind.FLOAT, None,
        help="stop a case as hung when its warm-up or timed loop takes longer than this "
        "(default: 3 x --max-time + 120 s, more for a model whose iterations show it needs "
        "longer to reach --min-iters)",
        minimum=0, maximum=604_800, min_exclusive=True, metavar="SECONDS",
    ),
    RunOption(
        "worker_start", ("--worker-start",), Kind.TEXT, "fork-server",
        help="fork-server: fork each case from a process that imported the frameworks once "
        "(falls back to exec where unsafe); exec: a fresh interpreter per case "
        "(default %(default)s)",
        max_len=32,
    ),
    # A name only: the measuring host maps it to an interpreter in its own configuration
    # (the CLI's ~/.config/backbench/config.toml, the agent's --config file).
    RunOption(
        "runtime", ("--runtime",), Kind.TEXT, None,
        help="measure on this named worker runtime (an interpreter configured on the "
        "measuring host, e.g. openvino-2022.3 for an NCS2; `backbench runtimes` lists them)",
        max_len=64, metavar="NAME",
        remote_note="configured on the agent's host, in its --config file",
    ),
    RunOption(
        "profile_layers", ("--profile-layers",), Kind.BOOL, False,
        help="after each case's timed loop, profile it layer by layer in a pass of its own "
        "(the framework's profiler; the headline figures never carry it); see `backbench layers`",
    ),
    # An accuracy run's dataset and preprocessing (core.results.AccuracySpec checks the
    # fields); `backbench accuracy` has its own flags for it.
    RunOption("accuracy", (), Kind.OBJECT, None, max_items=16),
    # Where the cases run. A client may choose it; the cluster an agent reaches is its own
    # (its --ray-address), never one a client names.
    RunOption(
        "executor", ("--executor",), Kind.TEXT, None,
        help="local: worker processes on this host, one case at a time (default); ray: each "
        "case a Ray task on a node of a cluster that holds its device (docs/CLUSTER.md)",
        max_len=16, metavar="local|ray",
        remote_note="default: the agent's own --executor",
    ),
    RunOption(
        None, ("--ray-address",), Kind.TEXT, None,
        help="the Ray cluster of --executor ray: auto (the cluster this machine joined with "
        "`ray start`), HOST:PORT of its head, or ray://HOST:10001 (default: a Ray instance "
        "of its own on this machine)",
        remote=False, max_len=512, metavar="ADDR",
        why_local="the agent runs on the cluster of its own --ray-address.",
    ),
    # Local only: measuring in the agent's own process would let a client crash or hang
    # the agent with one bad model, and load torch into it.
    RunOption(
        "isolate", ("--no-isolate",), Kind.BOOL, True,
        help="measure in this process instead of one worker per case",
        remote=False, negated=True,
        why_local="the agent measures every case in a worker process of its own.",
    ),
)

_BY_FIELD = {opt.field: opt for opt in RUN_OPTIONS if opt.field is not None}
SPEC_FIELDS: tuple[str, ...] = tuple(_BY_FIELD)


def option(field: str) -> RunOption:
    """The option that fills ``field`` (``stopping.NAME`` for the stopping rule)."""
    return _BY_FIELD[field]


def run_defaults() -> dict[str, Any]:
    """The default of every spec field, keyed like ``RUN_OPTIONS`` (``stopping.min_iters``).
    ``device`` is None: it follows the backend (``default_device``)."""
    return {field: opt.default for field, opt in _BY_FIELD.items()}


def default_device(backend: str) -> str:
    # OpenVINO names its devices in capitals; torch and onnxruntime in lower case.
    return "CPU" if backend == "openvino" else "cpu"


# -- the command line ----------------------------------------------------------------------


def add_run_options(parser: argparse.ArgumentParser, *, remote: bool) -> None:
    """Declare the run options on ``parser``: all of them for ``run``, those a remote
    client may set for ``remote submit`` (``remote=True``)."""
    for opt in RUN_OPTIONS:
        if not opt.flags or (remote and not opt.remote):
            continue
        text = opt.help + (f" ({opt.remote_note})" if remote and opt.remote_note else "")
        kwargs: dict[str, Any] = {"help": text}
        if opt.metavar:
            kwargs["metavar"] = opt.metavar
        if opt.kind is Kind.BOOL:
            kwargs["action"] = "store_true"
        elif opt.kind in (Kind.TEXT_LIST, Kind.TEXT_MAP):
            kwargs["action"] = "append"
        elif opt.kind is Kind.INT_LIST:
            kwargs["default"] = ",".join(str(v) for v in opt.default)
        else:
            kwargs["default"] = opt.default
            if opt.kind is Kind.INT:
                kwargs["type"] = int
            elif opt.kind is Kind.FLOAT:
                kwargs["type"] = float
        parser.add_argument(*opt.flags, **kwargs)


def parse_weights(items: Sequence[str]) -> dict[str, str]:
    weights = {}
    for item in items:
        model, sep, path = item.partition("=")
        if not sep or not model or not path:
            raise UsageError(f"--weights {item!r} is not MODEL=PATH.", "Example: --weights resnet18=./resnet18.pth")
        weights[model] = path
    return weights


def spec_from_args(args: argparse.Namespace) -> RunSpec:
    """The RunSpec of parsed ``run`` or ``remote submit`` flags. An option the parser did
    not declare (a local-only one on ``remote submit``) keeps its default."""
    from core.results import parse_batch_sizes
    from core.zoo import suite_models

    values: dict[str, Any] = {}
    for opt in RUN_OPTIONS:
        if opt.field is None or not opt.flags or not hasattr(args, opt.dest):
            continue
        given = getattr(args, opt.dest)
        if opt.negated:
            values[opt.field] = not given
        elif opt.kind is Kind.INT_LIST:
            values[opt.field] = parse_batch_sizes(given)
        elif opt.kind is Kind.TEXT_MAP:
            values[opt.field] = parse_weights(given or [])
        elif opt.kind is Kind.TEXT_LIST:
            values[opt.field] = list(given or [])
        elif given is not None:
            values[opt.field] = given
    models: list[str] = values.get("models", [])
    suite = getattr(args, "suite", None)
    if suite:
        models.extend(m for m in suite_models(suite) if m not in models)
    if not models:
        raise UsageError("No model given.", "Use -m MODEL (repeatable) or --suite NAME; `backbench models` lists them.")
    for field, value in values.items():
        values[field] = _checked(option(field), value, remote=False)
    return _build(values, remote=False)


# -- a spec sent by a client ---------------------------------------------------------------


def spec_from_remote(obj: Any) -> RunSpec:
    """Check a run spec a client sent and build the RunSpec.

    Refuses unknown fields and the fields only a local run may set (except when they
    carry the default, which older clients send and which asks for nothing), checks
    each value's type and bounds, then the cross-field rules of RunSpec. Raises only
    UsageError, whose message names the field and quotes at most a short value.
    """
    if not isinstance(obj, Mapping):
        raise UsageError(f"A run spec must be an object, got {json_type(obj)}.")
    flat: dict[str, Any] = {}
    for key, value in obj.items():
        if key == STOPPING:
            if value is None:
                continue
            if not isinstance(value, Mapping):
                raise UsageError(f"Field {STOPPING!r} must be an object, got {json_type(value)}.")
            flat.update((f"{STOPPING}.{k}", v) for k, v in value.items())
        else:
            flat[key] = value
    values: dict[str, Any] = {}
    for key, value in flat.items():
        opt = _BY_FIELD.get(key) if isinstance(key, str) else None
        if opt is None:
            raise UsageError(
                f"Unknown field {shown(key, _SHOWN_CHARS)} in the run spec.",
                f"A run spec has: {', '.join(f for f in SPEC_FIELDS if _BY_FIELD[f].remote)}.",
            )
        if not opt.remote:
            if _same(value, opt.default):
                continue  # asks for what the agent does anyway; older clients send it
            raise UsageError(
                f"{opt.label(remote=True)} cannot be set remotely: {opt.why_local}",
                f"Leave {key!r} out of the spec.",
            )
        values[key] = _checked(opt, value, remote=True)
    return _build(values, remote=True)


def remote_spec_dict(spec: RunSpec) -> dict[str, Any]:
    """The spec as a client sends it: the local-only fields left out."""
    data = spec.to_dict()
    for field, opt in _BY_FIELD.items():
        if not opt.remote:
            *parents, key = field.split(".")
            holder = data[parents[0]] if parents else data
            holder.pop(key, None)
    return data


# -- checks ----------------------------------------------------------------------------------


def _same(value: Any, default: Any) -> bool:
    return type(value) is type(default) and value == default


def _checked(opt: RunOption, value: Any, *, remote: bool) -> Any:
    """``value`` for ``opt``, type and bounds checked; a list comes back a tuple."""
    label = opt.label(remote=remote)
    if value is None:
        if opt.default is None:
            return None
        raise UsageError(f"{label} must not be null.", f"Leave it out for the default, {opt.default!r}.")
    if opt.kind is Kind.TEXT:
        return _text(opt, label, value)
    if opt.kind in (Kind.INT, Kind.FLOAT):
        return _number_in_bounds(opt, label, value)
    if opt.kind is Kind.BOOL:
        if not isinstance(value, bool):
            raise UsageError(f"{label} must be true or false, got {json_type(value)}.")
        return value
    if opt.kind is Kind.INT_LIST:
        items = [value] if isinstance(value, int) and not isinstance(value, bool) else value
        if not isinstance(items, (list, tuple)) or not items:
            raise UsageError(f"{label} must be a non-empty array of integers, got {json_type(value)}.")
        _count(opt, label, items)
        return tuple(_number_in_bounds(opt, label, item) for item in items)
    if opt.kind is Kind.TEXT_LIST:
        if not isinstance(value, (list, tuple)):
            raise UsageError(f"{label} must be an array of strings, got {json_type(value)}.")
        _count(opt, label, value)
        return tuple(_text(opt, label, item) for item in value)
    if opt.kind is Kind.OBJECT:
        if not isinstance(value, Mapping):
            raise UsageError(f"{label} must be an object, got {json_type(value)}.")
        _count(opt, label, value)
        from core.results import AccuracySpec

        checked = AccuracySpec.from_dict(dict(value))
        _text(opt, f"{label}: 'dataset'", checked.dataset)
        return checked.to_dict()
    if not isinstance(value, Mapping):  # Kind.TEXT_MAP
        raise UsageError(f"{label} must be an object mapping model names to paths, got {json_type(value)}.")
    _count(opt, label, value)
    return {_text(opt, label, k): _text(opt, label, v) for k, v in value.items()}


def _count(opt: RunOption, label: str, items: Sized) -> None:
    if opt.max_items is not None and len(items) > opt.max_items:
        raise UsageError(f"{label} has more than {opt.max_items} entries.")


def _text(opt: RunOption, label: str, value: Any) -> str:
    if not isinstance(value, str):
        raise UsageError(f"{label} must be text, got {json_type(value)}.")
    limit = opt.max_len or MAX_PATH_CHARS
    if not 0 < len(value) <= limit:
        raise UsageError(f"{label} must be 1 to {limit} characters of text.")
    try:
        value.encode("utf-8")  # a lone surrogate would fail later, in the store or a path
    except UnicodeEncodeError:
        raise UsageError(f"{label} is not valid Unicode text.") from None
    return value


def _number_in_bounds(opt: RunOption, label: str, value: Any) -> int | float:
    whole = opt.kind in (Kind.INT, Kind.INT_LIST)
    if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)):
        raise UsageError(f"{label} must be {'an integer' if whole else 'a number'}, got {json_type(value)}.")
    try:
        number = value if whole else float(value)
    except OverflowError:  # an integer beyond any float: out of every bound
        number = math.inf
    low, high = opt.minimum, opt.maximum
    if (
        (not whole and not math.isfinite(number))
        or (low is not None and (number <= low if opt.min_exclusive else number < low))
        or (high is not None and (number >= high if opt.max_exclusive else number > high))
    ):
        raise UsageError(f"{label} must be {opt.bounds_text()}, got {shown(value, _SHOWN_CHARS)}.")
    return number


def _build(values: Mapping[str, Any], *, remote: bool) -> RunSpec:
    """The RunSpec of checked values; a field not in ``values`` takes its default."""
    from core.results import (
        AccuracySpec,
        RunSpec,
        StoppingRule,
        parse_backend,
        parse_batch_sizes,
        parse_mode,
        parse_precision,
    )

    def get(field: str) -> Any:
        return values[field] if field in values else _BY_FIELD[field].default

    backend = parse_backend(get("backend"))
    least, most = option("stopping.min_iters"), option("stopping.max_iters")
    if get(least.field) > get(most.field):  # StoppingRule checks it too, naming neither field
        raise UsageError(
            f"{least.label(remote=remote)} {get(least.field)} is more than "
            f"{most.field + ' ' if remote else ''}{get(most.field)}, "
            "the most timed iterations of a case.",
            f"Ask for at most {get(most.field)} iterations.",
        )
    prefix = STOPPING + "."
    rule = StoppingRule(**{f[len(prefix):]: get(f) for f in SPEC_FIELDS if f.startswith(prefix)})
    spec = RunSpec(
        models=tuple(get("models")),
        backend=backend,
        device=get("device") or default_device(backend.value),
        precision=parse_precision(get("precision")),
        batch_sizes=parse_batch_sizes(list(get("batch_sizes"))),
        mode=parse_mode(get("mode")),
        stopping=rule,
        name=get("name"),
        weights=dict(get("weights") or {}),
        isolate=get("isolate"),
        retry_disturbed=get("retry_disturbed"),
        disturbed_threshold=get("disturbed_threshold"),
        max_mem_mb=get("max_mem_mb"),
        measure_timeout_s=get("measure_timeout_s"),
        worker_start=get("worker_start"),
        runtime=get("runtime"),
        accuracy=AccuracySpec.from_dict(get("accuracy")) if get("accuracy") is not None else None,
        profile_layers=get("profile_layers"),
        executor=get("executor"),
    )
    spec.check_size()
    return spec
