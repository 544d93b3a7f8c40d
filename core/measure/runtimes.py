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
stdin) in a runtime's interpreter, this module answers what that interpreter has: its
Python and package versions, whether a case can run there. That side is Python 3.10
compatible and reads no TOML.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import BackbenchError, UsageError
from core.results import RUNTIME_NAME

AGENT_CONFIG = Path("/etc/backbench/agent.toml")
USER_CONFIG_NAME = "config.toml"
WORKER_MODULE = "core.measure.worker"
PROBE_TIMEOUT_S = 120.0  # importing OpenVINO and enumerating its devices on a slow box
_FIELDS = {"python", "pythonpath", "description"}
# Environment variables of the supervising interpreter that must not reach another one.
_FOREIGN_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONEXECUTABLE")


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
        interpreter, and with the runtime's PYTHONPATH."""
        env = dict(os.environ if base is None else base)
        for var in _FOREIGN_ENV:
            env.pop(var, None)
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

    def versions(self, timeout_s: float = PROBE_TIMEOUT_S) -> dict[str, Any]:
        """The interpreter's own Python and package versions (it is started to ask)."""
        return self._ask("versions", "", timeout_s)

    def check_case(self, case: Any, timeout_s: float = PROBE_TIMEOUT_S) -> None:
        """Raise the BackbenchError that ``core.backends.check_case`` raises on this
        runtime for ``case`` (its backend, device and precision)."""
        answer = self._ask("check", json.dumps(case.to_dict()), timeout_s)
        if not answer.get("ok"):
            error = answer.get("error") or {}
            raise BackbenchError(
                f"On runtime {self.name!r}: {error.get('message') or 'the case cannot run there.'}",
                error.get("hint"),
            )

    def _ask(self, command: str, payload: str, timeout_s: float) -> dict[str, Any]:
        try:
            done = subprocess.run(
                [self.python, "-m", "core.measure.runtimes", command],
                input=payload, capture_output=True, text=True, timeout=timeout_s,
                env=self.env(), check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise BackbenchError(
                f"Runtime {self.name!r} did not answer within {timeout_s:.0f} s.",
                f"Check its interpreter {self.python} (a device driver may be stuck).",
            ) from None
        except OSError as exc:
            raise BackbenchError(
                f"Could not start runtime {self.name!r} ({self.python}): {exc.strerror or exc}.",
                f"Fix its entry in {self.source or 'the configuration'}.",
            ) from None
        lines = [line for line in done.stdout.splitlines() if line.strip()]
        try:
            answer = json.loads(lines[-1]) if lines else None
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            tail = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            raise BackbenchError(
                f"Runtime {self.name!r} ({self.python}) cannot run backbench's worker: {tail[:300]}",
                "Its pythonpath must hold the folder with backbench's core/ package (or install "
                f"backbench into it); see {self.source or 'the configuration'}.",
            )
        return answer


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
        if not RUNTIME_NAME.match(name):
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


def with_runtime(manifest: dict[str, Any], runtime: WorkerRuntime) -> dict[str, Any]:
    """A run's manifest for workers on ``runtime``: its Python and packages are the
    worker interpreter's own (asked of it), the supervisor's are kept under
    ``supervisor``, and ``runtime`` says which one it was."""
    versions = runtime.versions()
    out = dict(manifest)
    out["supervisor"] = {"python": manifest.get("python"), "packages": manifest.get("packages")}
    out["python"] = versions.get("python")
    out["packages"] = versions.get("packages")
    out["runtime"] = {**runtime.to_dict(), "python_version": versions.get("python"),
                      "executable": versions.get("executable")}  # fmt: skip
    return out


# -- the runtime's side (Python 3.10, no TOML) -------------------------------------------------


def _answer(command: str, payload: str) -> dict[str, Any]:
    if command == "versions":
        from core.measure.environment import package_versions

        return {
            "ok": True,
            "python": sys.version.split()[0],
            "executable": sys.executable,
            "packages": package_versions(),
        }
    if command == "check":
        from core.backends import check_case
        from core.results import Case

        try:
            check_case(Case.from_dict(json.loads(payload)))
        except BackbenchError as exc:
            return {"ok": False, "error": {"message": exc.message, "hint": exc.hint}}
        return {"ok": True}
    if command == "devices":
        from core.backends import available_backends

        return {"ok": True, "backends": available_backends()}
    raise SystemExit(f"unknown command {command!r}: versions | check | devices")


def main(argv: list[str] | None = None) -> int:
    import logging

    args = list(sys.argv[1:] if argv is None else argv)
    command = args[0] if args else ""
    payload = sys.stdin.read() if command == "check" else ""
    logging.basicConfig(level=logging.WARNING, format="runtime: %(levelname)s %(name)s: %(message)s")
    sys.stdout.write("\n" + json.dumps(_answer(command, payload)) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
