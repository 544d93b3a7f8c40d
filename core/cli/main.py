"""The ``backbench`` command line.

Each subcommand imports what it needs when it runs (the way glances loads its modes), so
``backbench models`` or ``backbench results`` never pay for torch, and the agent never
loads analysis code. Expected errors (core.errors) print one line saying what to do and
exit non-zero; a traceback means a bug.
"""

from __future__ import annotations

import argparse
import importlib
import logging
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import Any

from rich.markup import escape

from core import __version__
from core.cli.console import EXIT_INTERRUPTED, err_console
from core.errors import BackbenchError

log = logging.getLogger(__name__)

COMMANDS_GROUP = "backbench.commands"
# Core's own families, in the order `backbench --help` lists them; every other family
# (service's agent/remote/export, gui's gui) follows, by entry-point name.
CORE_FAMILIES: tuple[tuple[str, str], ...] = (
    ("measure", "core.cli.measure:add_commands"),
    ("analysis", "core.cli.analysis:add_commands"),
)

AddCommands = Callable[[Any], None]


def command_families() -> list[tuple[str, AddCommands]]:
    """(name, add_commands) for every family registered under ``backbench.commands``.

    Core's own families are loaded from core itself when the installed metadata lacks
    them (a source checkout run with ``python -m core.cli``), so the measuring and
    analysis commands never depend on how backbench was installed.
    """
    found: dict[str, str] = {}
    for ep in entry_points(group=COMMANDS_GROUP):
        found.setdefault(ep.name, ep.value)  # an install seen twice registers once
    for name, target in CORE_FAMILIES:
        found.setdefault(name, target)
    core_order = [name for name, _ in CORE_FAMILIES]
    names = core_order + sorted(n for n in found if n not in core_order)
    families = []
    for name in names:
        module_name, _, attr = found[name].partition(":")
        families.append((name, getattr(importlib.import_module(module_name), attr)))
    return families


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="backbench",
        description="Measure, analyse and predict DNN backbone performance on cloud and edge hardware.",
    )
    parser.add_argument("--version", action="version", version=f"backbench {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Each family's module is imported here only to declare its options; the heavy work
    # is imported inside each command function.
    for _name, add_commands in command_families():
        add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except BackbenchError as exc:
        # Escaped: a message may hold brackets (pip install 'backbench[cluster]').
        err_console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        return exc.exit_code
    except KeyboardInterrupt:
        err_console.print("Interrupted.")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0


