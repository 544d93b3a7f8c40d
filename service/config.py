"""The agent's settings: command-line options, default locations, and the test switch.

Defaults follow DESIGN.md: the socket is ``$RUNTIME_DIRECTORY/agent.sock``
(``/run/backbench``) under systemd, else the user's socket of ``core.protocol.address``
(``$XDG_RUNTIME_DIR/backbench/agent.sock``); the store is the CLI's default store, or
``$STATE_DIRECTORY/results.db`` under systemd.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import __version__
from core.errors import UsageError
from core.measure.runtimes import AGENT_CONFIG, WorkerRuntime, load_runtimes, select_runtime
from core.measure.supervisor import PhaseLimits, default_worker_command
from core.paths import data_dir, default_db_path
from core.protocol.address import SOCKET_NAME, user_socket_path
from core.results import EXECUTOR_LOCAL, EXECUTOR_RAY, EXECUTORS, RunSpec

# Test-only: lets a client ask the agent to inject worker faults (crash, hang, ...).
# Never set in production; without it the `test_faults` submit parameter is refused.
ALLOW_FAULTS_ENV = "BACKBENCH_ALLOW_FAULTS"
DEFAULT_CLIENT_QUEUE_SAMPLES = 20_000
DEFAULT_MAX_UPLOAD_MB = 2048
DEFAULT_MAX_QUEUED_JOBS = 1000


def _first_dir(var: str) -> Path | None:
    """systemd passes RuntimeDirectory= and friends as colon-separated absolute paths."""
    value = os.environ.get(var, "")
    first = value.split(":")[0]
    return Path(first) if first and os.path.isabs(first) else None


def default_socket_path() -> Path:
    """Where this agent listens by default: systemd's runtime directory, else the user's."""
    runtime = _first_dir("RUNTIME_DIRECTORY")
    if runtime is not None:
        return runtime / SOCKET_NAME
    return user_socket_path()


def default_agent_db() -> Path:
    state = _first_dir("STATE_DIRECTORY")
    return state / "results.db" if state is not None else default_db_path()


@dataclass(frozen=True, slots=True)
class AgentConfig:
    socket_path: Path
    db_path: Path
    uploads_dir: Path
    group: str | None = None
    model_dirs: tuple[Path, ...] = ()
    # Folders accuracy jobs may read datasets from (--data-dir); none: no accuracy jobs.
    data_dirs: tuple[Path, ...] = ()
    limits: PhaseLimits = field(default_factory=PhaseLimits)
    max_mem_mb: int | None = None
    worker_command: tuple[str, ...] = ()
    client_queue_samples: int = DEFAULT_CLIENT_QUEUE_SAMPLES
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_MB << 20
    max_queued_jobs: int = DEFAULT_MAX_QUEUED_JOBS
    allow_faults: bool = False
    verbose: bool = False
    # The named worker runtimes of the agent's own configuration file (--config), which
    # clients choose by name; never an interpreter a client names.
    runtimes: dict[str, WorkerRuntime] = field(default_factory=dict)
    config_path: Path | None = None  # the file they came from (None: no file)
    # (level, line) to log once logging is set up (the dispatcher does, as it starts):
    # which configuration file was loaded, or why none was.
    startup_notes: tuple[tuple[int, str], ...] = ()
    # Where jobs run unless their spec says (core.measure.executors): "local" (worker
    # processes here) or "ray" (the nodes of the Ray cluster at ray_address; None: a Ray
    # instance of the agent's own on this machine).
    executor: str = EXECUTOR_LOCAL
    ray_address: str | None = None

    def executor_of(self, spec: RunSpec) -> str:
        """Where a job of ``spec`` runs: its own choice, else this agent's default."""
        return spec.executor or self.executor

    def custom_worker_command(self) -> list[str] | None:
        """The worker command given with --worker-command, or None for the default (a
        cluster's nodes then use their own interpreter's)."""
        command = list(self.worker_command)
        return None if not command or command == default_worker_command() else command

    @property
    def allowed_dirs(self) -> tuple[Path, ...]:
        """Where model and weights files named by a client may live."""
        return (self.uploads_dir, *self.model_dirs)

    def runtimes_source(self) -> str:
        """Where this agent's runtimes are configured, for messages."""
        if self.config_path is not None:
            return f"the agent's configuration {self.config_path}"
        return (
            f"the agent's configuration (--config; default {AGENT_CONFIG}, which does not exist "
            "or cannot be read by the agent)"
        )

    def log_startup(self, log: logging.Logger) -> None:
        for level, line in self.startup_notes:
            log.log(level, "%s", line)

    def runtime(self, name: str) -> WorkerRuntime:
        """The runtime ``name``; UsageError listing the configured ones and where."""
        return select_runtime(name, self.runtimes, self.runtimes_source())


def _positive(kind: Callable[[str], Any], what: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{what} must be positive, got {text!r}")
        return value

    return parse


def add_agent_arguments(parser: argparse.ArgumentParser) -> None:
    seconds = _positive(float, "a time limit")
    defaults = PhaseLimits()
    parser.add_argument("--version", action="version", version=f"backbench-agent {__version__}")
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="start an agent of its own on a temporary socket, measure a tiny model through "
        "it, and exit 0 only if everything worked",
    )
    parser.add_argument(
        "--socket", help=f"Unix socket to listen on (default {default_socket_path()})"
    )
    parser.add_argument("--db", help=f"results store and job queue (default {default_agent_db()})")
    parser.add_argument(
        "--group", help="give this group read/write access to the socket (mode 0660)"
    )
    parser.add_argument(
        "--model-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="a folder whose model and weights files jobs may name (repeatable); "
        "uploaded files are always allowed",
    )
    parser.add_argument(
        "--data-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="a folder whose datasets accuracy jobs may read (repeatable); without one the "
        "agent runs no accuracy jobs",
    )
    parser.add_argument("--uploads-dir", help="where uploads are kept (default: beside the store)")
    parser.add_argument(
        "--max-upload-mb", type=_positive(int, "--max-upload-mb"), default=DEFAULT_MAX_UPLOAD_MB
    )
    parser.add_argument(
        "--max-mem-mb",
        type=_positive(int, "--max-mem-mb"),
        help="default memory bound of each case, in MB above the framework's imports "
        "(RLIMIT_AS; not on CUDA); a run's own --max-mem-mb replaces it",
    )
    parser.add_argument("--load-limit-s", type=seconds, default=defaults.load_s)
    parser.add_argument("--compile-limit-s", type=seconds, default=defaults.compile_s)
    parser.add_argument(
        "--measure-limit-s",
        type=seconds,
        help="watchdog limit of the measure phase (default: from the stopping rule)",
    )
    parser.add_argument(
        "--heartbeat-s",
        type=seconds,
        default=defaults.heartbeat_s,
        help="a worker silent this long is hung and is killed",
    )
    parser.add_argument(
        "--term-grace-s",
        type=seconds,
        default=defaults.term_grace_s,
        help="time between SIGTERM and SIGKILL for a stuck worker",
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        help=f"the agent's configuration file, with its worker runtimes (default {AGENT_CONFIG} "
        "if it exists)",
    )
    parser.add_argument(
        "--worker-command",
        help="deprecated: command that starts a worker (default: this Python); configure a "
        "named worker runtime in --config instead",
    )
    parser.add_argument(
        "--executor",
        choices=EXECUTORS,
        default=EXECUTOR_LOCAL,
        help="where jobs run unless their spec says: local (worker processes on this host, "
        "one job at a time) or ray (each case a Ray task on a node of a cluster that holds its "
        "device; docs/CLUSTER.md) (default %(default)s)",
    )
    parser.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="the Ray cluster of Ray jobs (the agent's --executor ray, or a spec's): auto (the "
        "cluster this machine joined with `ray start`), HOST:PORT of its head, or "
        "ray://HOST:10001 (default: a Ray instance of the agent's own on this machine, "
        "started for each job)",
    )
    parser.add_argument(
        "--client-queue-samples",
        type=_positive(int, "--client-queue-samples"),
        default=DEFAULT_CLIENT_QUEUE_SAMPLES,
        help="telemetry samples kept per slow client before the oldest are dropped",
    )
    parser.add_argument(
        "--max-queued-jobs",
        type=_positive(int, "--max-queued-jobs"),
        default=DEFAULT_MAX_QUEUED_JOBS,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="backbench-agent",
        description="The backbench agent: runs benchmark jobs from a queue and streams live "
        "telemetry to clients on a Unix socket (JSON-RPC, one message per line).",
    )
    add_agent_arguments(parser)
    return parser


def config_from_args(args: argparse.Namespace) -> AgentConfig:
    socket_path = Path(args.socket).expanduser() if args.socket else default_socket_path()
    db_path = Path(args.db).expanduser() if args.db else default_agent_db()
    if args.uploads_dir:
        uploads = Path(args.uploads_dir).expanduser()
    elif args.db or _first_dir("STATE_DIRECTORY"):
        uploads = db_path.parent / "uploads"
    else:
        uploads = data_dir() / "uploads"
    model_dirs = []
    for text in args.model_dir:
        path = Path(text).expanduser()
        if not path.is_dir():
            raise UsageError(
                f"--model-dir {text} is not a folder.", "Give an existing folder of model files."
            )
        model_dirs.append(path.resolve())
    data_dirs = []
    for text in getattr(args, "data_dir", None) or []:
        path = Path(text).expanduser()
        if not path.is_dir():
            raise UsageError(
                f"--data-dir {text} is not a folder.", "Give an existing folder that holds datasets."
            )
        data_dirs.append(path.resolve())
    if getattr(args, "config", None):
        config_path: Path | None = Path(args.config).expanduser().absolute()
        runtimes = load_runtimes(config_path, required=True)
        note = _loaded_note(config_path, runtimes)
    else:
        config_path, runtimes, note = _default_config()
    worker = (
        tuple(shlex.split(args.worker_command))
        if args.worker_command
        else tuple(default_worker_command())
    )
    if not worker:
        raise UsageError("--worker-command is empty.", "Give the command that starts a worker.")
    if args.worker_command:
        print(
            "backbench-agent: warning: --worker-command is deprecated; configure a named worker "
            f'runtime in the agent\'s --config file (default {AGENT_CONFIG}) as a table '
            'runtimes."NAME" with python = "/abs/path/bin/python", and submit with --runtime NAME '
            "(docs/AGENT.md, Worker runtimes).",
            file=sys.stderr,
        )
    executor = getattr(args, "executor", None) or EXECUTOR_LOCAL
    ray_address = getattr(args, "ray_address", None)
    if executor == EXECUTOR_RAY or ray_address:
        from core.measure.executors.ray_executor import INSTALL_HINT, ray_installed

        if not ray_installed():
            raise UsageError("--executor ray needs Ray, which is not installed here.", INSTALL_HINT)
    limits = PhaseLimits(
        load_s=args.load_limit_s,
        compile_s=args.compile_limit_s,
        measure_s=args.measure_limit_s,
        heartbeat_s=args.heartbeat_s,
        term_grace_s=args.term_grace_s,
    )
    return AgentConfig(
        socket_path=socket_path.absolute(),
        db_path=db_path.absolute(),
        uploads_dir=uploads.absolute(),
        group=args.group,
        model_dirs=tuple(model_dirs),
        data_dirs=tuple(data_dirs),
        limits=limits,
        max_mem_mb=args.max_mem_mb,
        worker_command=worker,
        client_queue_samples=args.client_queue_samples,
        max_upload_bytes=args.max_upload_mb << 20,
        max_queued_jobs=args.max_queued_jobs,
        allow_faults=os.environ.get(ALLOW_FAULTS_ENV) == "1",
        verbose=args.verbose,
        runtimes=runtimes,
        config_path=config_path,
        startup_notes=(note,),
        executor=executor,
        ray_address=ray_address,
    )


def _loaded_note(path: Path, runtimes: dict[str, WorkerRuntime]) -> tuple[int, str]:
    names = ", ".join(sorted(runtimes)) or "none"
    return logging.INFO, f"Configuration {path}: worker runtimes: {names}"


def _default_config() -> tuple[Path | None, dict[str, WorkerRuntime], tuple[int, str]]:
    """The default configuration file, when there is one that this agent can read.

    A per-user agent run by someone outside the backbench group may be unable to search
    /etc/backbench (0750) or read the file: it then runs without worker runtimes, as
    with no file, and says so in its log (a warning), rather than refusing to start. A
    file it can read but that is bad still stops it, naming the file and the problem.
    """
    try:
        exists = AGENT_CONFIG.exists()
        readable = exists and os.access(AGENT_CONFIG, os.R_OK)
    except OSError as exc:  # PermissionError: the folder cannot be searched
        exists, readable, why = True, False, exc.strerror or str(exc)
    else:
        why = "Permission denied"
    if not exists:
        return None, {}, (
            logging.INFO,
            f"No configuration file ({AGENT_CONFIG} does not exist; --config FILE names one): "
            "no worker runtimes",
        )  # fmt: skip
    if not readable:
        return None, {}, (
            logging.WARNING,
            f"Cannot read the configuration file {AGENT_CONFIG} ({why}): running without "
            "worker runtimes; --config FILE names one this agent can read",
        )  # fmt: skip
    runtimes = load_runtimes(AGENT_CONFIG, required=False)
    return AGENT_CONFIG, runtimes, _loaded_note(AGENT_CONFIG, runtimes)


def parse_config(argv: Sequence[str] | None = None) -> AgentConfig:
    return config_from_args(build_parser().parse_args(argv))
