"""Named worker runtimes: an interpreter, and the PYTHONPATH to backbench's worker code,
that workers run on instead of the one that supervises them.

The OpenVINO 2022.3 LTS release, the last that drives an Intel NCS2 (MYRIAD), exists
only for Python 3.10 and cannot be installed beside a current OpenVINO, so an edge host
measures with workers on another interpreter (``packaging/edge-runtime.sh`` makes one).
A runtime is configured by name, in TOML::

    [runtimes."openvino-2022.3"]
    python = "/opt/backbench-edge/bin/python"     # required: absolute, executable
    pythonpath = ["/opt/backbench/src"]            # optional: the folder holding core/
    description = "OpenVINO 2022.3.2 on CPython 3.10 (NCS2)"   # optional

The CLI reads the user's ``$XDG_CONFIG_HOME/backbench/config.toml``; the agent reads
only its own file (``--config``, default ``/etc/backbench/agent.toml``). Clients name a
runtime (``--runtime NAME``), never an interpreter.

Run as ``python -m core.measure.runtimes versions`` (or ``check`` with a case as JSON on
stdin, or ``devices``) in an interpreter, this module answers what that interpreter has:
its Python, backbench and package versions, whether a case can run there, its backends
and devices. It is the one framework probe: the agent's (``service.probe``) asks the same
questions through it. That side imports only ``core`` (a runtime's pythonpath holds just
the folder with core/), is Python 3.10 compatible and reads no TOML.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import errors
from core.errors import BackbenchError, UsageError
from core.results import RUNTIME_NAME

AGENT_CONFIG = Path("/etc/backbench/agent.toml")
USER_CONFIG_NAME = "config.toml"
WORKER_MODULE = "core.measure.worker"
PROBE_MODULE = "core.measure.runtimes"  # this module, run in an interpreter: its probe
PROBE_TIMEOUT_S = 120.0  # importing OpenVINO and enumerating its devices on a slow box
# Before a job's first case (the agent's dispatcher): long enough for a slow import, short
# enough that a stuck interpreter does not hold the queue.
VERSIONS_TIMEOUT_S = 30.0
# The working folder of a runtime's processes: `python -m` puts the working folder ahead of
# PYTHONPATH, so a core/ package in the caller's folder would shadow the runtime's.
RUNTIME_CWD = "/"
_FIELDS = {"python", "pythonpath", "description"}
# Environment of the supervising interpreter that must not reach another one: every
# PYTHON* variable (but the PYTHONPATH a runtime sets), the virtual environment, the
# dynamic loader's search path and preloads (searched before a wheel's RUNPATH, so another
# libopenvino would be loaded), OpenVINO's setupvars variables and backbench's own
# OpenVINO API override.
_FOREIGN_ENV = (
    "VIRTUAL_ENV", "LD_LIBRARY_PATH", "LD_PRELOAD", "BACKBENCH_OV_API",
    "INTEL_OPENVINO_DIR", "OpenVINO_DIR", "InferenceEngine_DIR", "ngraph_DIR", "TBB_DIR",
    "HDDL_INSTALL_DIR", "OV_FRONTEND_PATH", "OPENVINO_LIB_PATHS",
)  # fmt: skip
_FOREIGN_PREFIX = "PYTHON"
# Error classes a probe's answer may name, and rebuild (others become BackbenchError).
_NOT_REBUILT = (errors.UnknownModelError, errors.CaseFailure, errors.ProtocolError)


class RuntimeProbeError(BackbenchError):
    """A runtime's interpreter did not answer: it could not start, timed out, or failed.
    ``detail`` is the tail of its stderr, for a log (the agent sends clients the message
    alone)."""

    def __init__(self, message: str, hint: str | None = None, detail: str = "") -> None:
        super().__init__(message, hint)
        self.detail = detail


class ProbeCancelled(BackbenchError):
    """The question was withdrawn (a cancel or stop) before the interpreter answered."""


def user_config_path() -> Path:
    """The CLI's configuration file: ``$XDG_CONFIG_HOME/backbench/config.toml``."""
    from core.paths import config_dir

    return config_dir() / USER_CONFIG_NAME


@dataclass(frozen=True)
class WorkerRuntime:
    """A named interpreter for workers (and their fork server)."""

    name: str
    python: str
    pythonpath: tuple[str, ...] = ()
    description: str = ""
    source: str = ""  # the configuration file that declares it

    def worker_command(self) -> list[str]:
        return [self.python, "-m", WORKER_MODULE]

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """The environment of this runtime's processes: the caller's (the cache folder,
        thread settings, XDG locations), without what belongs to the caller's own
        interpreter or libraries (every PYTHON* variable, VIRTUAL_ENV, LD_LIBRARY_PATH,
        LD_PRELOAD, OpenVINO's setupvars variables, BACKBENCH_OV_API), and with the
        runtime's PYTHONPATH."""
        env = {
            key: value
            for key, value in (os.environ if base is None else base).items()
            if not key.startswith(_FOREIGN_PREFIX) and key not in _FOREIGN_ENV
        }
        if self.pythonpath:
            env["PYTHONPATH"] = os.pathsep.join(self.pythonpath)
        return env

    def to_dict(self) -> dict[str, Any]:
        """What a run records of its runtime (never secrets: a path and a name)."""
        data: dict[str, Any] = {"name": self.name, "python": self.python}
        if self.pythonpath:
            data["pythonpath"] = list(self.pythonpath)
        if self.description:
            data["description"] = self.description
        if self.source:
            data["config"] = self.source
        return data

    def versions(
        self, timeout_s: float = PROBE_TIMEOUT_S, cancel: threading.Event | None = None
    ) -> dict[str, Any]:
        """The interpreter's own Python, backbench and package versions (it is started to
        ask). ``cancel``, when set, withdraws the question (ProbeCancelled)."""
        return self._ask("versions", "", timeout_s, cancel)

    def check_case(self, case: Any, timeout_s: float = PROBE_TIMEOUT_S) -> None:
        """Raise the BackbenchError that ``core.backends.check_case`` raises on this
        runtime for ``case`` (its backend, device and precision): the same class
        (DeviceUnavailableError, ...), its message prefixed with the runtime's name."""
        reply = self._ask("check", json.dumps(case.to_dict()), timeout_s)
        if not reply.get("ok"):
            raise rebuild_error(reply.get("error") or {}, f"On runtime {self.name!r}: ")

    def devices(self, timeout_s: float = PROBE_TIMEOUT_S) -> dict[str, list[str]]:
        """The backends and devices this runtime's interpreter can use."""
        found = self._ask("devices", "", timeout_s).get("backends") or {}
        return {str(k): [str(d) for d in v] for k, v in found.items()}

    def _ask(
        self, command: str, payload: str, timeout_s: float, cancel: threading.Event | None = None
    ) -> dict[str, Any]:
        try:
            proc = subprocess.Popen(
                [self.python, "-m", PROBE_MODULE, command],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True, env=self.env(), cwd=RUNTIME_CWD,
            )  # fmt: skip
        except OSError as exc:
            raise RuntimeProbeError(
                f"Could not start runtime {self.name!r} ({self.python}): {exc.strerror or exc}.",
                f"Fix its entry in {self.source or 'the configuration'}.",
            ) from None
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                stdout, stderr = proc.communicate(payload, timeout=0.25 if cancel else timeout_s)
                break
            except subprocess.TimeoutExpired:
                cancelled = cancel is not None and cancel.is_set()
                if not cancelled and time.monotonic() < deadline:
                    continue
                proc.kill()
                proc.communicate()
                if cancelled:
                    raise ProbeCancelled(f"Asking runtime {self.name!r} was cancelled.") from None
                raise RuntimeProbeError(
                    f"Runtime {self.name!r} did not answer within {timeout_s:.0f} s.",
                    f"Check its interpreter {self.python} (a device driver may be stuck).",
                ) from None
        reply = parse_answer(stdout)
        if reply is None:
            detail = stderr.strip()[-2000:]
            tail = (detail.splitlines() or [f"exit status {proc.returncode}"])[-1]
            raise RuntimeProbeError(
                f"Runtime {self.name!r} ({self.python}) cannot run backbench's worker: {tail[:300]}",
                "Its pythonpath must hold the folder with backbench's core/ package (or install "
                f"backbench into it); see {self.source or 'the configuration'}.",
                detail or f"exit status {proc.returncode}",
            )
        return reply


def parse_answer(stdout: str) -> dict[str, Any] | None:
    """A probe's answer: the last non-empty line of its stdout, a JSON object (None if
    there is none: the interpreter failed before it could answer)."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    try:
        answer = json.loads(lines[-1]) if lines else None
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


def rebuild_error(data: dict[str, Any], prefix: str = "") -> BackbenchError:
    """The BackbenchError a probe's ``check`` answer describes, of the same class when it
    is one of core.errors' (not a protocol or model error: those mean other things where
    this is raised), with ``prefix`` before its message."""
    cls = getattr(errors, str(data.get("type")), None)
    if not (isinstance(cls, type) and issubclass(cls, BackbenchError)) or cls in _NOT_REBUILT:
        cls = BackbenchError
    return cls(prefix + str(data.get("message") or "The case cannot run here."), data.get("hint"))


def _toml_loads(text: str) -> dict[str, Any]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    return tomllib.loads(text)


def _entries(table: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """(name, entry) of each runtime. A bare dotted name, [runtimes.openvino-2022.3],
    is nested tables in TOML (openvino-2022 -> 3): a table without ``python`` whose
    values are all tables is such a level, and its keys join the name with dots."""
    found: list[tuple[str, Any]] = []
    for key, value in table.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        nested = (
            isinstance(value, dict) and value and "python" not in value
            and all(isinstance(v, dict) for v in value.values())
        )  # fmt: skip
        if nested:
            found.extend(_entries(value, name))
        else:
            found.append((name, value))
    return found


def parse_runtimes(text: str, source: str) -> dict[str, WorkerRuntime]:
    """The ``[runtimes.NAME]`` tables of a TOML document; UsageError naming ``source``
    and what is wrong. Other top-level tables are left to their readers."""
    try:
        data = _toml_loads(text)
    except ValueError as exc:  # tomllib.TOMLDecodeError is a ValueError
        raise UsageError(f"{source} is not valid TOML: {exc}.", "Fix the file's syntax.") from None
    table = data.get("runtimes", {})
    if not isinstance(table, dict):
        raise UsageError(
            f"{source}: 'runtimes' must be a table of runtime tables, such as runtimes.\"NAME\".",
            'Example: a table runtimes."openvino-2022.3" with python = "/opt/edge/bin/python".',
        )
    found: dict[str, WorkerRuntime] = {}
    # (Messages name a runtime as runtimes."NAME": the CLI prints them through rich,
    # which would take [runtimes.NAME] for markup.)
    for name, entry in _entries(table):
        where = f'{source}: runtime "{name}"'
        if not RUNTIME_NAME.fullmatch(name):
            raise UsageError(
                f"{where}: a runtime name is 1 to 64 letters, digits, '.', '_', '+' or '-'.",
                'Rename its table, e.g. runtimes."openvino-2022.3".',
            )
        if not isinstance(entry, dict):
            raise UsageError(f"{where} must be a table with python = \"/abs/path/bin/python\".")
        unknown = sorted(set(entry) - _FIELDS)
        if unknown:
            raise UsageError(
                f"{where} has unknown key {unknown[0]!r}.",
                f"A runtime has: {', '.join(sorted(_FIELDS))}.",
            )
        python = entry.get("python")
        if not isinstance(python, str) or not python:
            raise UsageError(f"{where} needs python = \"/abs/path/bin/python\" (text).")
        if not os.path.isabs(python):
            raise UsageError(f"{where}: python {python!r} is not an absolute path.", "Give the interpreter's absolute path.")
        if not os.path.isfile(python):
            raise UsageError(f"{where}: python {python} does not exist.", "Create the runtime (make edge-runtime) or fix the path.")
        if not os.access(python, os.X_OK):
            raise UsageError(f"{where}: python {python} is not executable.")
        pythonpath = entry.get("pythonpath", [])
        if isinstance(pythonpath, str):
            pythonpath = [pythonpath]
        if not isinstance(pythonpath, list) or not all(isinstance(p, str) and p for p in pythonpath):
            raise UsageError(f"{where}: pythonpath must be a list of folders (text).")
        for folder in pythonpath:
            if not os.path.isabs(folder):
                raise UsageError(f"{where}: pythonpath entry {folder!r} is not an absolute path.")
        description = entry.get("description", "")
        if not isinstance(description, str):
            raise UsageError(f"{where}: description must be text.")
        found[name] = WorkerRuntime(name, python, tuple(pythonpath), description, source)
    return found


def load_runtimes(path: str | Path, *, required: bool = True) -> dict[str, WorkerRuntime]:
    """The runtimes declared in the TOML file ``path``. A missing file is a UsageError
    when ``required``, else no runtimes; an unreadable or bad file always is."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        if not required:
            return {}
        raise UsageError(f"The configuration file {path} does not exist.", "Give an existing file.") from None
    except IsADirectoryError:
        raise UsageError(f"The configuration file {path} is a folder.") from None
    except OSError as exc:
        raise UsageError(f"Cannot read the configuration file {path}: {exc.strerror or exc}.") from None
    except UnicodeDecodeError:
        raise UsageError(f"The configuration file {path} is not UTF-8 text.") from None
    return parse_runtimes(text, str(path))


def select_runtime(name: str, runtimes: dict[str, WorkerRuntime], where: str) -> WorkerRuntime:
    """The runtime called ``name``; UsageError listing the known ones and ``where``
    they are configured. A path is refused as such: runtimes are chosen by name."""
    if "/" in name or os.sep in name:
        raise UsageError(
            f"--runtime takes the name of a configured worker runtime, not a path ({name[:60]!r}).",
            f"Runtimes are configured in {where}.",
        )
    if name in runtimes:
        return runtimes[name]
    known = ", ".join(sorted(runtimes)) or "none"
    raise UsageError(
        f"Unknown worker runtime {name[:64]!r}; configured: {known}.",
        f'Runtimes are configured in {where} (a table runtimes."NAME" with python = ...).',
    )


def user_runtimes() -> dict[str, WorkerRuntime]:
    """The runtimes of the user's configuration file (none when it does not exist)."""
    return load_runtimes(user_config_path(), required=False)


def user_runtime(name: str) -> WorkerRuntime:
    """The runtime ``name`` of the user's configuration (``backbench run --runtime``)."""
    return select_runtime(name, user_runtimes(), str(user_config_path()))


def with_runtime(
    manifest: dict[str, Any],
    runtime: WorkerRuntime,
    versions: dict[str, Any] | None = None,
    timeout_s: float = PROBE_TIMEOUT_S,
) -> dict[str, Any]:
    """A run's manifest for workers on ``runtime``: its Python and packages are the
    worker interpreter's own (asked of it, unless ``versions`` already holds its answer),
    the supervisor's are kept under ``supervisor``, and ``runtime`` says which one it was
    (with the backbench version its pythonpath holds)."""
    if versions is None:
        versions = runtime.versions(timeout_s)
    out = dict(manifest)
    out["supervisor"] = {"python": manifest.get("python"), "packages": manifest.get("packages")}
    out["python"] = versions.get("python")
    out["packages"] = versions.get("packages")
    out["runtime"] = {**runtime.to_dict(), "python_version": versions.get("python"),
                      "executable": versions.get("executable"),
                      "backbench": versions.get("backbench")}  # fmt: skip
    return out


def runtime_changes(manifest: dict[str, Any], runtime: WorkerRuntime, versions: dict[str, Any]) -> list[str]:
    """What differs between the runtime a run's ``manifest`` recorded and ``runtime`` as
    it answers now (``versions``): its python path, Python version, backbench version and
    package versions, as "what: then -> now". A field the manifest lacks (an older run)
    is not compared."""
    recorded = manifest.get("runtime")
    if not isinstance(recorded, dict):
        return []
    changes: list[str] = []

    def compare(what: str, then: Any, now: Any) -> None:
        if then is not None and then != now:
            changes.append(f"{what} {then} -> {now if now is not None else 'absent'}")

    compare("python", recorded.get("python"), runtime.python)
    compare("Python", recorded.get("python_version"), versions.get("python"))
    compare("backbench", recorded.get("backbench"), versions.get("backbench"))
    then_packages = manifest.get("packages") or {}
    now_packages = versions.get("packages") or {}
    if isinstance(then_packages, dict) and isinstance(now_packages, dict):
        for name in sorted(set(then_packages) | set(now_packages)):
            then, now = then_packages.get(name), now_packages.get(name)
            if then != now:
                changes.append(f"{name} {then or 'absent'} -> {now or 'absent'}")
    return changes


def check_resume_runtime(
    manifest: dict[str, Any], runtime: WorkerRuntime, run_label: str, versions: dict[str, Any] | None = None
) -> None:
    """Refuse (UsageError, one line) to resume a run on a runtime that is not the one
    its manifest recorded: its cases would mix two interpreters' figures."""
    if versions is None:
        versions = runtime.versions()
    changes = runtime_changes(manifest, runtime, versions)
    if changes:
        raise UsageError(
            f"Run {run_label} cannot be resumed: worker runtime {runtime.name!r} changed since "
            f"it started ({'; '.join(changes)}); start a new run to measure on it as it is now."
        )


# -- the runtime's side (Python 3.10, no TOML) -------------------------------------------------


def _error_dict(exc: BackbenchError) -> dict[str, Any]:
    return {"type": type(exc).__name__, "message": exc.message, "hint": exc.hint}


def answer(command: str, payload: str = "") -> dict[str, Any]:
    """This interpreter's answer to a probe ``command`` (versions | check | devices)."""
    if command == "versions":
        from core import __version__
        from core.measure.environment import package_versions

        return {
            "ok": True,
            "python": sys.version.split()[0],
            "executable": sys.executable,
            "backbench": __version__,
            "packages": package_versions(),
        }
    if command == "check":
        from core.backends import check_case
        from core.results import Case

        try:
            check_case(Case.from_dict(json.loads(payload)))
        except BackbenchError as exc:
            return {"ok": False, "error": _error_dict(exc)}
        return {"ok": True}
    if command == "devices":
        from core.backends import available_backends

        return {"ok": True, "backends": available_backends()}
    raise SystemExit(f"unknown probe command {command!r}: versions | check | devices")


def main(argv: list[str] | None = None) -> int:
    """``python -m core.measure.runtimes COMMAND`` (``check`` reads its case from stdin):
    the answer is the last line of stdout, a JSON object."""
    import logging

    args = list(sys.argv[1:] if argv is None else argv)
    command = args[0] if args else ""
    payload = sys.stdin.read() if command == "check" else ""
    logging.basicConfig(level=logging.WARNING, format="probe: %(levelname)s %(name)s: %(message)s")
    sys.stdout.write("\n" + json.dumps(answer(command, payload)) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
