"""Helpers for the agent tests: a real agent process on a socket, and tiny model files.

Sockets live in short folders under /tmp (a Unix socket path is limited to 107 bytes,
which pytest's tmp_path can exceed); stores and logs live in tmp_path.
"""

from __future__ import annotations

import grp
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from core.protocol.events import JOB_ENDING_EVENTS
from service.client import AgentClient, wait_until_listening

REPO = Path(__file__).resolve().parents[2]
FAST = {"min_iters": 5, "max_time_s": 0.3, "target_ci": 0.5, "warmup_iters": 1, "warmup_time_s": 0}
QUEUE_SAMPLES = 2000  # the shared agent's --client-queue-samples
END_EVENTS = tuple(event.value for event in JOB_ENDING_EVENTS)
START_TIMEOUT_S = 60.0
_PRIVATE_ENV = (
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "JOURNAL_STREAM",
    "BACKBENCH_ALLOW_FAULTS",
)


def make_tiny_onnx(path: Path, channels: int = 8, size: int = 32) -> Path:
    """A small conv net with a dynamic batch axis: fast to load and to run."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    conv = numpy_helper.from_array(rng.standard_normal((channels, 3, 3, 3)).astype(np.float32), "W")
    fc = numpy_helper.from_array(rng.standard_normal((10, channels)).astype(np.float32), "W2")
    nodes = [
        helper.make_node("Conv", ["input", "W"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "W2"], ["output"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 10])],
        [conv, fc],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def ort_spec(
    batches: list[int] | None = None, stopping: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "models": ["tiny.onnx"],
        "backend": "onnxruntime",
        "device": "cpu",
        "batch_sizes": batches or [1],
        "stopping": stopping or FAST,
        **extra,
    }


class Agent:
    """A real ``python -m service`` process."""

    def __init__(
        self,
        root: Path,
        *args: str,
        env: dict[str, str] | None = None,
        faults: bool = True,
        db: Path | None = None,
    ) -> None:
        self.root = root
        self.sock_dir = Path(tempfile.mkdtemp(prefix="bb-", dir="/tmp"))
        self.socket = self.sock_dir / "agent.sock"
        self.db = db or root / "results.db"
        self.args = list(args)
        # Nothing of a surrounding systemd or test switch leaks in unless asked for.
        base = {k: v for k, v in os.environ.items() if k not in _PRIVATE_ENV}
        self.env = {
            **base,
            "XDG_DATA_HOME": str(root / "data"),
            "XDG_CACHE_HOME": str(root / "cache"),
            **({"BACKBENCH_ALLOW_FAULTS": "1"} if faults else {}),
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = root / f"agent-{id(self)}.log"
        self.starts = 0

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "service",
            "--socket",
            str(self.socket),
            "--db",
            str(self.db),
            *self.args,
        ]

    def start(self, wait: bool = True) -> Agent:
        self.starts += 1
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child holds it; closed below
        try:
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=log, env=self.env, cwd=REPO
            )
        finally:
            log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self) -> None:
        assert self.proc is not None
        problem = wait_until_listening(self.proc, self.socket, START_TIMEOUT_S)
        if problem is not None:
            raise AssertionError(f"{problem}:\n{self.log()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def client(self, **kwargs: Any) -> AgentClient:
        return AgentClient(self.socket, timeout_s=60, **kwargs)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout_s)

    def worker_pids(self) -> list[int]:
        """Worker processes this agent started (they carry --parent-pid PID)."""
        mark = ["--parent-pid", str(self.pid)]
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            cmd = proc.info["cmdline"] or []
            if any(cmd[i : i + 2] == mark for i in range(len(cmd) - 1)):
                found.append(proc.pid)
        return found

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.stop(signal.SIGKILL, 10)
        shutil.rmtree(self.sock_dir, ignore_errors=True)


def other_group() -> str:
    """A group other than ours, to check that --group really chowns the socket."""
    mine = os.getgid()
    for group in grp.getgrall():
        if group.gr_gid != mine:
            return group.gr_name
    return grp.getgrgid(mine).gr_name


def until(
    client: AgentClient, job_id: int, methods: tuple[str, ...] = END_EVENTS, timeout_s: float = 90.0
) -> list[dict[str, Any]]:
    """Every notification up to and including the first of ``methods`` for ``job_id``."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        note = client.notification(timeout_s=max(0.0, deadline - time.monotonic()))
        if note is None:
            break
        seen.append(note)
        if note["method"] in methods and note["params"].get("job_id") == job_id:
            return seen
    raise AssertionError(
        f"no {methods} for job {job_id} within {timeout_s} s; saw {[n['method'] for n in seen][-20:]}"
    )


def job_events(notes: list[dict[str, Any]], job_id: int) -> list[dict[str, Any]]:
    return [
        n for n in notes if n["method"].startswith("job.") and n["params"].get("job_id") == job_id
    ]


def submit(client: AgentClient, spec: dict[str, Any], request_id: str, **params: Any) -> int:
    return int(
        client.call("submit", spec=spec, client_request_id=request_id, **params)["job"]["job_id"]
    )


def wait_for(predicate: Any, timeout_s: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
