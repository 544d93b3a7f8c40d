"""Framework questions asked in a child process: which devices exist, is a case runnable.

The agent never imports torch, OpenVINO or ONNX Runtime itself. Importing one costs
hundreds of MB and seconds, and a broken driver can crash the importer; in a child that
crash fails one request, never the agent. Answers are cached for a while.

Run as ``python -m service.probe devices`` or ``... check`` (a case as JSON on stdin);
the answer is the last line of stdout, a JSON object.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from core import errors
from core.errors import BackbenchError
from core.results import Case

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 120.0  # a first OpenVINO/CUDA initialisation can be slow
CACHE_S = 300.0


def _error_dict(exc: BackbenchError) -> dict[str, Any]:
    return {"type": type(exc).__name__, "message": exc.message, "hint": exc.hint}


def _answer(command: str, payload: str) -> dict[str, Any]:
    from core.backends import available_backends, check_case

    if command == "devices":
        return {"ok": True, "backends": available_backends()}
    if command == "check":
        try:
            check_case(Case.from_dict(json.loads(payload)))
        except BackbenchError as exc:
            return {"ok": False, "error": _error_dict(exc)}
        return {"ok": True}
    raise SystemExit(f"unknown probe command {command!r}")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command = args[0] if args else ""
    payload = sys.stdin.read() if command == "check" else ""
    logging.basicConfig(level=logging.WARNING, format="probe: %(levelname)s %(name)s: %(message)s")
    sys.stdout.write("\n" + json.dumps(_answer(command, payload)) + "\n")
    sys.stdout.flush()
    return 0


def _rebuild_error(data: dict[str, Any]) -> BackbenchError:
    cls = getattr(errors, str(data.get("type")), None)
    if not (isinstance(cls, type) and issubclass(cls, BackbenchError)) or cls in (
        errors.UnknownModelError,
        errors.CaseFailure,
        errors.ProtocolError,
    ):
        cls = BackbenchError
    return cls(str(data.get("message") or "The case cannot run here."), data.get("hint"))


class Prober:
    """Asks a child process (or, without a Python worker command, this process)."""

    def __init__(
        self,
        worker_command: Sequence[str],
        timeout_s: float = PROBE_TIMEOUT_S,
        env: dict[str, str] | None = None,
        runtime: str | None = None,
    ) -> None:
        command = list(worker_command)
        self.env = env  # a worker runtime's: its PYTHONPATH reaches the probe
        self.runtime = runtime  # its name, for messages
        self.command: list[str] | None = None
        if len(command) >= 3 and command[1] == "-m":  # `<python> -m <worker module>`
            self.command = [command[0], "-m", "service.probe"]
        elif getattr(sys, "frozen", False) and command[1:] == ["worker"]:
            self.command = [command[0], "probe"]  # the bundle's own probe (its entry script)
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._devices: tuple[float, dict[str, list[str]]] | None = None
        self._checked: dict[tuple[str, str, str], float] = {}

    def _ask(self, command: str, payload: str = "") -> dict[str, Any]:
        if self.command is None:
            return _answer(command, payload)
        try:
            done = subprocess.run(
                [*self.command, command],
                input=payload,
                capture_output=True,
                text=True,
                timeout=self.timeout_s,
                check=False,
                env=self.env,
            )
        except subprocess.TimeoutExpired:
            raise BackbenchError(
                f"Probing the inference frameworks took over {self.timeout_s:.0f} s.",
                "A device driver may be stuck; check the agent host (backbench devices).",
            ) from None
        except OSError as exc:
            raise BackbenchError(
                f"Could not start the framework probe{self._on()}: {exc.strerror or exc}.",
                "Check the runtime's python in the agent's --config file."
                if self.runtime
                else "Check the agent's --worker-command.",
            ) from None
        lines = [line for line in done.stdout.splitlines() if line.strip()]
        try:
            answer = json.loads(lines[-1]) if lines else None
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            last = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
            log.error("The framework probe failed: %s", done.stderr.strip()[-2000:])
            raise BackbenchError(
                f"The framework probe on the agent host failed{self._on()} ({last[0][:200]}).",
                "Run `backbench runtimes --check --config FILE` on the agent host to see why."
                if self.runtime
                else "Run `backbench devices` on the agent host to see why.",
            )
        return answer

    def _on(self) -> str:
        return f" of worker runtime {self.runtime!r}" if self.runtime else ""

    def devices(self) -> dict[str, list[str]]:
        with self._lock:
            now = time.monotonic()
            if self._devices is not None and now - self._devices[0] < CACHE_S:
                return self._devices[1]
            found = self._ask("devices").get("backends") or {}
            backends = {str(k): [str(d) for d in v] for k, v in found.items()}
            self._devices = (now, backends)
            return backends

    def check_case(self, case: Case) -> None:
        """Raise the BackbenchError that ``core.backends.check_case`` raises there."""
        key = (case.backend.value, case.device, case.precision.value)
        with self._lock:
            checked_at = self._checked.get(key)
            if checked_at is not None and time.monotonic() - checked_at < CACHE_S:
                return
            answer = self._ask("check", json.dumps(case.to_dict()))
            if not answer.get("ok"):
                error = _rebuild_error(answer.get("error") or {})
                if self.runtime:  # say which interpreter answered
                    error.message = f"On runtime {self.runtime!r}: {error.message}"
                    error.args = (error.message,)
                raise error
            self._checked[key] = time.monotonic()


if __name__ == "__main__":
    sys.exit(main())
