"""The run options, declared once (core/cli/run_options.py): the RunSpec fields they
cover, the `run` flags they declare, the defaults the GUI starts from, and the check of a
spec a client sends to the agent (unknown, local-only, mistyped and out-of-bounds fields)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import subprocess
import sys
from typing import Any

import pytest

from core.cli import run_options
from core.cli.run_options import (
    RUN_OPTIONS,
    SPEC_FIELDS,
    Kind,
    add_run_options,
    remote_spec_dict,
    run_defaults,
    spec_from_args,
    spec_from_remote,
)
from core.errors import UsageError
from core.results import RunSpec, StoppingRule
from tests.jsonfuzz import random_json

SPEC = {"models": ["resnet18"], "batch_sizes": [1, 4], "stopping": {"min_iters": 5}}

# Every value a remote client may set, none of them a default: the agent must take each.
EVERY_REMOTE_FIELD: dict[str, Any] = {
    "models": ["resnet18", "models/mine.onnx"],
    "backend": "openvino",
    "device": "GPU",
    "precision": "fp16",
    "batch_sizes": [2, 8],
    "mode": "throughput",
    "stopping": {
        "target_ci": 0.02,
        "min_iters": 20,
        "max_time_s": 3,
        "max_iters": 5000,
        "warmup_iters": 7,
        "warmup_time_s": 0,
    },
    "name": "sweep-7",
    "weights": {"resnet18": "weights/r18.pth"},
    "retry_disturbed": 2,
    "disturbed_threshold": 0.25,
    "max_mem_mb": 4096,
    "measure_timeout_s": 900.0,
    "worker_start": "exec",
    "runtime": "openvino-2022.3",
    "profile_layers": True,
    "executor": "ray",
}


def _spec_fields() -> set[str]:
    fields = {f.name for f in dataclasses.fields(RunSpec)} - {"stopping"}
    return fields | {f"stopping.{f.name}" for f in dataclasses.fields(StoppingRule)}


def _run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run", exit_on_error=False)
    add_run_options(parser, remote=False)
    return parser


def _raises(obj: Any) -> UsageError:
    with pytest.raises(UsageError) as info:
        spec_from_remote(obj)
    return info.value


# -- the declaration ---------------------------------------------------------------------------


def test_every_spec_field_is_declared_once_with_the_data_model_default() -> None:
    assert set(SPEC_FIELDS) == _spec_fields() and len(SPEC_FIELDS) == len(set(SPEC_FIELDS))
    defaults = run_defaults()
    rule = StoppingRule()
    for field in SPEC_FIELDS:
        if field.startswith("stopping."):
            assert defaults[field] == getattr(rule, field.split(".", 1)[1]), field
    assert defaults["backend"] == "torch" and defaults["precision"] == "fp32"
    assert defaults["mode"] == "latency" and defaults["batch_sizes"] == (1,)
    assert defaults["isolate"] is True and defaults["device"] is None


def test_options_are_frozen_and_state_bounds_for_numbers_and_lists() -> None:
    opt = run_options.option("stopping.min_iters")
    with pytest.raises(dataclasses.FrozenInstanceError):
        opt.default = 3  # type: ignore[misc]
    for opt in RUN_OPTIONS:
        if opt.kind in (Kind.INT, Kind.FLOAT, Kind.INT_LIST):
            assert opt.minimum is not None and opt.maximum is not None, opt.field
        if opt.kind in (Kind.TEXT, Kind.TEXT_LIST, Kind.TEXT_MAP):
            assert opt.max_len, opt.field
        if opt.kind in (Kind.TEXT_LIST, Kind.INT_LIST, Kind.TEXT_MAP):
            assert opt.max_items, opt.field
    # Local only: where this process measures, and the Ray cluster it reaches (a flag
    # that fills no spec field: the agent's cluster is its own --ray-address).
    assert [o.field or o.flags[0] for o in RUN_OPTIONS if not o.remote] == ["--ray-address", "isolate"]
    assert all(o.why_local for o in RUN_OPTIONS if not o.remote)


def test_run_declares_exactly_its_flags() -> None:
    flags = {s for a in _run_parser()._actions for s in a.option_strings} - {"-h", "--help"}
    assert flags == {
        "-m", "--model", "--suite", "--backend", "--device", "--precision", "--batch",
        "--mode", "--target-ci", "--min-iters", "--max-time", "--name", "--weights",
        "--no-isolate", "--retry-disturbed", "--disturbed-threshold", "--max-mem-mb",
        "--measure-timeout", "--worker-start", "--runtime", "--profile-layers", "--executor",
        "--ray-address",
    }  # fmt: skip
    # The spec fields with no flag stay without one.
    assert not any(run_options.option(f).flags for f in
                   ("stopping.max_iters", "stopping.warmup_iters", "stopping.warmup_time_s"))  # fmt: skip


def test_the_command_line_the_agent_and_the_gui_share_one_set_of_defaults() -> None:
    from_flags = spec_from_args(_run_parser().parse_args(["-m", "resnet18"]))
    assert from_flags == spec_from_remote({"models": ["resnet18"]})
    assert from_flags.stopping == StoppingRule() and from_flags.device == "cpu"
    openvino = spec_from_args(_run_parser().parse_args(["-m", "resnet18", "--backend", "openvino"]))
    assert openvino.device == "CPU" == spec_from_remote({"models": ["x"], "backend": "openvino"}).device


def test_light_at_import_time() -> None:
    code = (
        "import sys, core.cli.run_options\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'rich', 'torch', 'pandas', 'numpy', 'PySide6'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


# -- the command line --------------------------------------------------------------------------


def test_flags_build_the_spec() -> None:
    args = _run_parser().parse_args(
        ["-m", "resnet18", "-m", "mobilenet_v2", "--backend", "onnxruntime", "--batch", "1,8",
         "--mode", "throughput", "--target-ci", "0.05", "--min-iters", "20", "--max-time", "2",
         "--name", "n", "--weights", "resnet18=/w.pth", "--no-isolate"]  # fmt: skip
    )
    spec = spec_from_args(args)
    assert spec.models == ("resnet18", "mobilenet_v2") and spec.backend.value == "onnxruntime"
    assert spec.batch_sizes == (1, 8) and spec.mode.value == "throughput"
    assert spec.stopping == StoppingRule(min_iters=20, target_ci=0.05, max_time_s=2.0)
    assert spec.name == "n" and spec.weights == {"resnet18": "/w.pth"} and not spec.isolate


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        ([], "No model given"),
        (["-m", "r", "--min-iters", "0"], "--min-iters must be at least 1"),
        (["-m", "r", "--target-ci", "1"], "--target-ci must be more than 0 and less than 1"),
        (["-m", "r", "--max-time", "0"], "--max-time must be more than 0"),
        (["-m", "r", "--max-time", "nan"], "--max-time must be"),
        (["-m", "r", "--batch", "0"], "positive integer"),
        (["-m", "r", "--batch", "100000"], "--batch must be at least 1 and at most 65536"),
        (["-m", "r", "--min-iters", "200000"], "--min-iters 200000 is more than 100000"),
        (["-m", "r", "--weights", "r"], "MODEL=PATH"),
    ],
)
def test_flags_out_of_bounds_name_the_flag(argv: list[str], words: str) -> None:
    with pytest.raises(UsageError) as info:
        spec_from_args(_run_parser().parse_args(argv))
    assert words in info.value.message


# -- a spec sent by a client -------------------------------------------------------------------


def test_every_remote_option_is_accepted() -> None:
    spec = spec_from_remote(EVERY_REMOTE_FIELD)
    assert spec.to_dict() == {
        **EVERY_REMOTE_FIELD,
        "stopping": {**EVERY_REMOTE_FIELD["stopping"], "max_time_s": 3.0, "warmup_time_s": 0.0},
        "isolate": True,
    }
    remote_fields = {o.field for o in RUN_OPTIONS if o.remote and o.field}
    sent = set(EVERY_REMOTE_FIELD) - {"stopping"}
    # Accuracy takes an accuracy run (one batch size): the next test sends it.
    assert sent | {f"stopping.{k}" for k in EVERY_REMOTE_FIELD["stopping"]} == remote_fields - {"accuracy"}
    # What a client sends comes back as the same spec, without the local-only field.
    assert "isolate" not in remote_spec_dict(spec)
    assert spec_from_remote(json.loads(json.dumps(remote_spec_dict(spec)))) == spec


ACCURACY_SPEC: dict[str, Any] = {
    "models": ["resnet18"], "backend": "openvino", "device": "CPU", "precision": "bf16",
    "batch_sizes": [8], "mode": "accuracy", "weights": {"resnet18": "weights/r18.pth"},
    "accuracy": {
        "dataset": "imagenet/val", "layout": "imagenet-val", "limit": 5000, "seed": 1,
        "num_classes": None, "size": 224, "resize": 256, "mean": [0.5, 0.5, 0.5],
        "std": [0.25, 0.25, 0.25], "scale": 1.0, "bgr": True, "split": "test",
    },
}  # fmt: skip


def test_an_accuracy_spec_round_trips() -> None:
    spec = spec_from_remote(ACCURACY_SPEC)
    assert spec.accuracy is not None and spec.accuracy.limit == 5000 and spec.accuracy.bgr is True
    assert spec.to_dict()["accuracy"] == ACCURACY_SPEC["accuracy"]
    assert spec_from_remote(json.loads(json.dumps(remote_spec_dict(spec)))) == spec


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"accuracy": "imagenet/val"}, "must be an object"),
        ({"accuracy": {"dataset": "d", "colour": "red"}}, "Unknown accuracy option(s): colour"),
        ({"accuracy": {"dataset": "d", "limit": 0}}, "--limit must be 1 or more"),
        ({"accuracy": {"dataset": "d", "limit": 2.5}}, "is not a whole number"),
        ({"accuracy": {"dataset": "d", "mean": [1, 2]}}, "is not three numbers"),
        ({"accuracy": {"dataset": "d", "layout": "voc"}}, "Unknown dataset layout"),
        ({"accuracy": {"layout": "cifar10"}}, "No dataset given"),
        ({"accuracy": {"dataset": "x" * 5000}}, "1 to 4096 characters"),
        ({"mode": "latency"}, "only an accuracy run takes one"),
        ({"batch_sizes": [1, 8]}, "one batch size"),
    ],
)
def test_a_bad_accuracy_spec_is_refused_with_a_reason(change: dict[str, Any], says: str) -> None:
    err = _raises({**ACCURACY_SPEC, **change})
    assert says in err.message, err.message


def test_nulls_where_a_field_has_no_value_and_a_bare_batch_size() -> None:
    spec = spec_from_remote({**SPEC, "name": None, "weights": None, "device": None, "batch_sizes": 4})
    assert spec.name is None and spec.weights == {} and spec.device == "cpu"
    assert spec.batch_sizes == (4,)
    assert spec_from_remote({**SPEC, "stopping": None}).stopping == StoppingRule()


def test_isolate_cannot_be_set_remotely() -> None:
    err = _raises({**SPEC, "isolate": False})
    assert "'isolate'" in err.message and "cannot be set remotely" in err.message
    assert err.hint and "Leave 'isolate' out" in err.hint
    for wrong in (0, "false", None, [False]):
        assert "cannot be set remotely" in _raises({**SPEC, "isolate": wrong}).message
    # `true` asks for what the agent does anyway: clients of protocol 1.0 send it.
    assert spec_from_remote({**SPEC, "isolate": True}).isolate


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"evil": 1}, "Unknown field 'evil'"),
        ({"stopping": {"min_iters": 5, "patience": 2}}, "Unknown field 'stopping.patience'"),
        ({"models": []}, "No model"),
        ({"models": "resnet18"}, "'models' (--model) must be an array"),
        ({"models": ["x" * 4097]}, "'models' (--model) must be 1 to 4096 characters"),
        ({"models": ["r"] * 1001}, "more than 1000 entries"),
        ({"models": ["\ud800"]}, "not valid Unicode"),
        ({"backend": "tf"}, "Unknown backend 'tf'"),
        ({"backend": "t" * 33}, "'backend' (--backend) must be 1 to 32 characters"),
        ({"precision": "int3"}, "Unknown precision"),
        ({"device": ""}, "'device' (--device) must be 1 to 64"),
        ({"batch_sizes": []}, "'batch_sizes' (--batch) must be a non-empty array"),
        ({"batch_sizes": [1, "2"]}, "must be an integer, got a string"),
        ({"batch_sizes": [True]}, "must be an integer, got a boolean"),
        ({"batch_sizes": [0]}, "at least 1 and at most 65536, got 0"),
        ({"batch_sizes": list(range(1, 66))}, "more than 64 entries"),
        ({"stopping": {"min_iters": "5"}}, "'stopping.min_iters' (--min-iters) must be an integer"),
        ({"stopping": {"min_iters": 5.0}}, "'stopping.min_iters' (--min-iters) must be an integer"),
        ({"stopping": {"min_iters": 0}}, "'stopping.min_iters' (--min-iters) must be at least 1"),
        ({"stopping": {"min_iters": 10**5000}}, "far out of range"),
        ({"stopping": {"target_ci": 5.0}}, "target-ci"),
        ({"stopping": {"target_ci": 0}}, "'stopping.target_ci' (--target-ci) must be more than 0"),
        ({"stopping": {"max_time_s": 86_400.5}}, "at most 86400"),
        ({"stopping": {"max_time_s": 10**400}}, "far out of range"),
        ({"stopping": {"max_iters": 10**7 + 1}}, "'stopping.max_iters' must be at least 1 and at most 10000000"),
        ({"stopping": {"min_iters": 50, "max_iters": 20}}, "is more than stopping.max_iters 20"),
        ({"stopping": {"warmup_time_s": -1}}, "'stopping.warmup_time_s' must be at least 0"),
        ({"stopping": [1]}, "'stopping' must be an object"),
        ({"name": 5}, "'name'"),
        ({"name": ""}, "'name' (--name) must be 1 to 256 characters"),
        ({"weights": ["r=w"]}, "'weights' (--weights) must be an object"),
        ({"weights": {"resnet18": 7}}, "'weights' (--weights) must be text"),
    ],
)
def test_a_bad_spec_is_refused_naming_the_field(change: dict[str, Any], words: str) -> None:
    err = _raises({**SPEC, **change})
    assert words in err.message
    assert len(err.message) < 300 and len(err.hint or "") < 400  # small whatever was sent


def test_bounds_themselves_are_accepted() -> None:
    for opt in RUN_OPTIONS:
        if opt.field is None or opt.kind not in (Kind.INT, Kind.FLOAT, Kind.INT_LIST):
            continue
        for edge, exclusive in ((opt.minimum, opt.min_exclusive), (opt.maximum, opt.max_exclusive)):
            assert edge is not None
            value = int(edge) if opt.kind is not Kind.FLOAT else float(edge)
            spec = {"models": ["r"], "stopping": {"max_iters": 10_000_000}}
            if opt.kind is Kind.INT_LIST:
                spec[opt.field] = [value]
            elif "." not in opt.field:
                spec[opt.field] = value
            elif opt.field == "stopping.max_iters":
                spec["stopping"] = {"max_iters": value, "min_iters": 1}
            else:
                spec["stopping"] = {**spec["stopping"], opt.field.split(".", 1)[1]: value}
            if exclusive:
                assert "must be" in _raises(spec).message, (opt.field, value)
            else:
                spec_from_remote(spec)


def test_not_an_object() -> None:
    assert "must be an object, got an array" in _raises([SPEC]).message


def _random_json(rng: random.Random) -> Any:
    return random_json(rng, [*SPEC_FIELDS, "stopping", "x"], max_depth=3)


def test_fuzzed_specs_raise_only_short_usage_errors() -> None:
    rng = random.Random(20240611)
    outcomes = {"ok": 0, "refused": 0}
    for _ in range(5000):
        spec = json.loads(json.dumps(EVERY_REMOTE_FIELD if rng.random() < 0.5 else SPEC))
        for _ in range(rng.randrange(1, 3)):
            key = rng.choice([*SPEC_FIELDS, "stopping", "extra"])
            near_miss = [[], [1], ["x"], "x" * 300, -1, 0, {"min_iters": 0}, True, None]
            value = rng.choice(near_miss) if rng.random() < 0.5 else _random_json(rng)
            if key.startswith("stopping.") and isinstance(spec.get("stopping"), dict):
                spec["stopping"][key.split(".", 1)[1]] = value
            else:
                spec[key] = value
        try:
            built = spec_from_remote(spec)
        except UsageError as exc:
            outcomes["refused"] += 1
            assert len(exc.message) < 300 and len(exc.hint or "") < 400
            continue
        outcomes["ok"] += 1
        assert isinstance(built, RunSpec) and built.isolate
    assert outcomes["ok"] > 100 and outcomes["refused"] > 2000


def test_a_client_listing_one_model_a_thousand_times_gets_one_model_s_cases() -> None:
    """Issue 10 L7, at the protocol boundary: the agent builds its RunSpec here."""
    spec = spec_from_remote({"models": ["resnet18"] * 1000, "batch_sizes": list(range(1, 11))})
    assert spec.models == ("resnet18",)
    assert len(spec.cases()) == 10
    spec = spec_from_remote({"models": ["resnet18"], "backend": "openvino", "device": "cpu"})
    assert spec.device == "CPU"  # L2: one spelling per device
