"""Framework questions asked in a child process: which devices exist, is a case runnable.

The agent never imports torch, OpenVINO or ONNX Runtime itself. Importing one costs
hundreds of MB and seconds, and a broken driver can crash the importer; in a child that
crash fails one request, never the agent. Answers are cached for a while.

The child runs ``core.measure.runtimes`` (``python -m core.measure.runtimes devices`` or
``... check`` with a case as JSON on stdin; the answer is the last line of stdout, a JSON
object): the one probe, which needs only ``core`` on the path, as a worker runtime's
interpreter has it. ``main`` is that probe too, for the frozen bundle's ``probe`` command.
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

from core.errors import BackbenchError
from core.measure.runtimes import PROBE_MODULE, RUNTIME_CWD, answer, parse_answer, rebuild_error
from core.measure.runtimes import main as _probe_main
from core.results import Case

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 120.0  # a first OpenVINO/CUDA initialisation can be slow
CACHE_S = 300.0


def main(argv: Sequence[str] | None = None) -> int:
    """The probe (``backbench-agent probe COMMAND``): core.measure.runtimes' own."""
    return _probe_main(None if argv is None else list(argv))


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
            self.command = [command[0], "-m", PROBE_MODULE]
        elif getattr(sys, "frozen", False) and command[1:] == ["worker"]:
            self.command = [command[0], "probe"]  # the bundle's own probe (its entry script)
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._devices: tuple[float, dict[str, list[str]]] | None = None
        self._checked: dict[tuple[str, str, str], float] = {}

    def _ask(self, command: str, payload: str = "") -> dict[str, Any]:
        if self.command is None:
            return answer(command, payload)
        try:
            done = subprocess.run(
                [*self.command, command],
                input=payload,
                capture_output=True,
                text=True,
                timeout=self.timeout_s,
                check=False,
                env=self.env,
                # A runtime's probe starts in a neutral folder: `python -m` puts the working
                # folder ahead of its PYTHONPATH.
                cwd=RUNTIME_CWD if self.runtime else None,
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
        reply = parse_answer(done.stdout)
        if reply is None:
            last = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
            log.error("The framework probe failed: %s", done.stderr.strip()[-2000:])
            raise BackbenchError(
                f"The framework probe on the agent host failed{self._on()} ({last[0][:200]}).",
                "Run `backbench runtimes --check --config FILE` on the agent host to see why."
                if self.runtime
                else "Run `backbench devices` on the agent host to see why.",
            )
        return reply

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
            reply = self._ask("check", json.dumps(case.to_dict()))
            if not reply.get("ok"):
                # Say which interpreter answered.
                prefix = f"On runtime {self.runtime!r}: " if self.runtime else ""
                raise rebuild_error(reply.get("error") or {}, prefix)
            self._checked[key] = time.monotonic()


if __name__ == "__main__":
    sys.exit(main())
