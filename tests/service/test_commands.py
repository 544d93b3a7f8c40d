"""The command families service registers: `remote submit` offers exactly the run options
a remote client may set, with `run`'s own flags, defaults and help; `export --to` and
its deprecated old name `--format`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from core.cli import measure
from core.cli.main import main
from core.cli.run_options import RUN_OPTIONS, remote_spec_dict, spec_from_args, spec_from_remote
from service import commands

RUN_ONLY = {"--db", "--resume"}
SUBMIT_ONLY = {"--request-id", "--watch"}


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    root = argparse.ArgumentParser(prog="backbench")
    sub = root.add_subparsers()
    measure.add_commands(sub)
    commands.add_commands(sub)
    run = _subcommands(root)["run"]
    submit = _subcommands(_subcommands(root)["remote"])["submit"]
    return run, submit


def _options(parser: argparse.ArgumentParser, leave_out: set[str]) -> dict[str, argparse.Action]:
    """Flag -> action, one entry per flag, without --help and ``leave_out``."""
    found = {}
    for action in parser._actions:
        for flag in action.option_strings:
            if flag not in {"-h", "--help", *leave_out}:
                found[flag] = action
    return found


def test_run_and_remote_submit_expose_the_same_remote_options() -> None:
    run, submit = _parsers()
    run_flags, submit_flags = _options(run, RUN_ONLY), _options(submit, SUBMIT_ONLY)
    declared = {flag for opt in RUN_OPTIONS for flag in opt.flags}
    remote = {flag for opt in RUN_OPTIONS if opt.remote for flag in opt.flags}
    assert set(run_flags) == declared
    assert set(submit_flags) == remote == declared - {"--no-isolate", "--ray-address"}
    for flag in remote:
        ours, theirs = run_flags[flag], submit_flags[flag]
        assert (ours.dest, ours.default, ours.type, type(ours)) == (
            theirs.dest, theirs.default, theirs.type, type(theirs)
        ), flag  # fmt: skip
        assert theirs.help.startswith(ours.help), flag  # submit may add how files travel


def test_the_same_flags_make_the_same_spec_and_the_agent_takes_what_a_client_sends() -> None:
    run, submit = _parsers()
    argv = ["-m", "resnet18", "--backend", "openvino", "--device", "GPU", "--precision", "fp16",
            "--batch", "1,4", "--mode", "throughput", "--target-ci", "0.02", "--min-iters", "7",
            "--max-time", "3", "--name", "both", "--weights", "resnet18=/w.pth"]  # fmt: skip
    local = spec_from_args(run.parse_args(argv))
    sent = remote_spec_dict(spec_from_args(submit.parse_args(argv)))
    assert "isolate" not in sent
    assert spec_from_remote(sent) == local


# -- export --to -----------------------------------------------------------------------------


@pytest.fixture
def conversions(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """Stand-ins for the torch conversions: the tests are about the options."""
    from core.backends import convert

    done: list[str] = []

    def fake(kind: str) -> Any:
        def ensure(source: Any, *args: Any) -> convert.ConvertedModel:
            done.append(kind)
            path = tmp_path / f"{source.name}.{'xml' if kind == 'ir' else 'onnx'}"
            path.write_text(kind)
            return convert.ConvertedModel(path, (3, 224, 224), True)

        return ensure

    monkeypatch.setattr(convert, "ensure_onnx", fake("onnx"))
    monkeypatch.setattr(convert, "ensure_ir", fake("ir"))
    return done


def test_export_to(conversions: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "-m", "squeezenet1_1", "--to", "ir"]) == 0
    assert main(["export", "-m", "squeezenet1_1", "--to", "onnx"]) == 0
    assert conversions == ["ir", "onnx"]
    out, err = capsys.readouterr()
    assert out.splitlines()[-1].endswith("squeezenet1_1.onnx") and "deprecated" not in err


def test_export_format_is_a_deprecated_alias(
    conversions: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", "-m", "squeezenet1_1", "--format", "ir"]) == 0
    assert main(["export", "-m", "squeezenet1_1", "--format", "onnx", "--to", "onnx"]) == 0
    assert conversions == ["ir", "onnx"]
    notes = [line for line in capsys.readouterr().err.splitlines() if "deprecated" in line]
    assert notes == ["Note: `backbench export --format` is deprecated; use --to (same values)."] * 2


def test_export_needs_one_target_and_refuses_two(
    conversions: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", "-m", "squeezenet1_1", "--to", "onnx", "--format", "ir"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "error: --to onnx and --format ir disagree. Give only --to" in err
    assert main(["export", "-m", "squeezenet1_1"]) == 2
    assert "error: No format to export to. Add --to onnx or --to ir." in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse's own usage error, as for any bad choice
        main(["export", "-m", "squeezenet1_1", "--to", "tflite"])
    assert conversions == []
