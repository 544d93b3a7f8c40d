"""The ``agent``, ``remote`` and ``export`` subcommands of ``backbench``.

``agent`` and ``remote`` live in the service package (sockets stay out of core); they
are imported only when those commands run, so the rest of the CLI never loads them.
``export`` converts a zoo model to ONNX or OpenVINO IR for a host without torch.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

from core.cli.run_options import add_run_options
from core.errors import BackendUnavailableError, UsageError
from core.protocol.address import SYSTEM_SOCKET

EXPORT_FORMATS = ("onnx", "ir")


def cmd_agent(args: argparse.Namespace) -> int:
    from service.agent import main as agent_main

    return agent_main(args.agent_args)


def cmd_remote(args: argparse.Namespace) -> int:
    from service.remote import main as remote_main

    return remote_main(args)


def _copy_model(path: Path, output: Path) -> Path:
    if output.is_dir():
        output = output / path.name
    if path.suffix == ".xml":
        if output.suffix.lower() != ".xml":
            raise UsageError(
                f"-o {output} must end in .xml for an OpenVINO IR.", "Its .bin goes beside it."
            )
        shutil.copyfile(path.with_suffix(".bin"), output.with_suffix(".bin"))
    shutil.copyfile(path, output)
    return output


def export_target(args: argparse.Namespace) -> str:
    """The format to export to: ``--to``, or its deprecated old name ``--format``
    (renamed because ``--format`` means the output format everywhere else)."""
    from core.cli.console import err_console

    to, old = args.to, args.old_format
    if old is not None:
        err_console.print("Note: `backbench export --format` is deprecated; use --to (same values).")
        if to is not None and to != old:
            raise UsageError(
                f"--to {to} and --format {old} disagree.",
                "Give only --to; --format is its deprecated old name.",
            )
    target = to or old
    if target is None:
        raise UsageError("No format to export to.", f"Add --to {' or --to '.join(EXPORT_FORMATS)}.")
    return str(target)


def cmd_export(args: argparse.Namespace) -> int:
    from core.backends import convert
    from core.backends.base import ModelSource
    from core.cli.console import err_console

    target = export_target(args)
    source = ModelSource(args.model, args.weights)
    try:
        if target == "onnx":
            converted = convert.ensure_onnx(source, args.opset)
        else:
            converted = convert.ensure_ir(source)
    except ImportError as exc:
        raise BackendUnavailableError(
            f"Exporting needs {exc.name or 'torch'}, which is not installed here.",
            "Export on a machine with `pip install 'backbench[measure]'` and copy the file over.",
        ) from None
    path = converted.path
    if args.output:
        path = _copy_model(converted.path, Path(args.output).expanduser())
    what = "Converted" if converted.converted else "Cached"
    err_console.print(
        f"{what} {args.model} ({'x'.join(map(str, converted.input_size))}, dynamic batch):"
    )
    sys.stdout.write(f"{path}\n")  # the command's output: the file's path, for scripts
    return 0


def _add_remote(sub: Any) -> None:
    p = sub.add_parser(
        "remote", help="drive a backbench agent (local or over SSH) from this terminal"
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--socket", help="the agent's socket (default: this user's local agent)")
    where.add_argument(
        "--ssh", metavar="[USER@]HOST", help="reach the agent on HOST through `ssh -N -L`"
    )
    p.add_argument(
        "--remote-socket",
        default=SYSTEM_SOCKET,
        help=f"the agent's socket on the SSH host (default {SYSTEM_SOCKET})",
    )
    p.add_argument(
        "--ssh-option",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="an `ssh -o` option for --ssh, e.g. Port=2222 or IdentityFile=~/.ssh/lab "
        "(repeatable; only options that say how to reach and log in to the host are "
        "allowed, e.g. Port, User, IdentityFile, ProxyJump, ConnectTimeout; others, such "
        "as ProxyCommand, belong in an ssh config file you own: --ssh-config)",
    )
    p.add_argument(
        "--ssh-config",
        metavar="FILE",
        help="the ssh config file for --ssh, read instead of ~/.ssh/config (`ssh -F`); "
        "it must be yours (or root's) and writable by no one else",
    )
    p.set_defaults(func=cmd_remote)
    rsub = p.add_subparsers(dest="remote_command", metavar="COMMAND")

    q = rsub.add_parser("devices", help="backends and devices on the agent host")
    q.add_argument("--format", choices=["table", "json"], default="table")

    q = rsub.add_parser("submit", help="queue a run (the options of `backbench run`)")
    add_run_options(q, remote=True)
    q.add_argument(
        "--request-id", help="idempotency key: resubmitting with it never queues a second job"
    )
    q.add_argument("--watch", action="store_true", help="watch the job live after submitting it")

    q = rsub.add_parser("watch", help="live view of a job: progress, latency, memory")
    q.add_argument("job", nargs="?", type=int, help="job id (default: the running or next job)")

    q = rsub.add_parser("jobs", help="the agent's jobs")
    q.add_argument("--format", choices=["table", "json"], default="table")

    q = rsub.add_parser("cancel", help="cancel a queued or running job")
    q.add_argument("job", type=int)

    q = rsub.add_parser("resume", help="finish an interrupted job from its first unfinished case")
    q.add_argument("job", type=int)
    q.add_argument("--watch", action="store_true", help="watch it live")

    q = rsub.add_parser(
        "results", help="show or export a run's measurements (the options of `backbench results`)"
    )
    which = q.add_mutually_exclusive_group()
    which.add_argument("--run", help="run id or name (default: the latest run)")
    which.add_argument("--job", type=int, help="the run of this job")
    q.add_argument("--format", choices=["table", "csv", "json", "parquet"], default="table")
    q.add_argument("-o", "--output", help="write to this file instead of stdout")


def add_commands(sub: Any) -> None:
    # Every argument, --help included, goes to the agent's own parser: an unused prefix
    # character keeps this one from reading "-..." as its options.
    p = sub.add_parser(
        "agent",
        add_help=False,
        prefix_chars="\x01",
        help="run the agent daemon (see `backbench agent --help`)",
    )
    p.add_argument("agent_args", nargs="*")
    p.set_defaults(func=cmd_agent)

    _add_remote(sub)

    p = sub.add_parser("export", help="convert a zoo model to ONNX or OpenVINO IR (needs torch)")
    p.add_argument(
        "-m", "--model", required=True, help="zoo model name (or a TorchScript .pt file)"
    )
    # One of --to and --format is required; export_target says so, since argparse's
    # required group would also refuse both given with the same value.
    p.add_argument("--to", choices=EXPORT_FORMATS, help="onnx, or ir (OpenVINO IR)")
    p.add_argument(
        "--format",
        dest="old_format",
        choices=EXPORT_FORMATS,
        help="deprecated: the old name of --to",
    )
    p.add_argument(
        "-o", "--output", help="where to write it (a file, or a folder); default: the cache"
    )
    p.add_argument("--weights", help="a local state-dict file (default: random weights)")
    p.add_argument(
        "--opset", type=int, default=17, help="ONNX opset (default 17; 13 for OpenVINO 2022.3)"
    )
    p.set_defaults(func=cmd_export)
