"""``backbench-agent --self-test``: start a real agent, measure a tiny model through it, stop it.

What a packaged agent (a PyInstaller bundle, a .deb) runs to prove it works on this host,
and what the tests run from a checkout. It starts this same program as an agent child
process, on a socket, store, uploads folder and caches in a private temporary folder, then,
as a client:

1. ``hello``: the agent answers with its version and the protocol's;
2. ``list_devices``: the frameworks the agent's probe finds;
3. builds a tiny convolutional model with OpenVINO's opset API, saved as IR in a folder the
   agent gets as ``--model-dir`` (and, where ONNX Runtime and onnx are there, the same as
   an ONNX file), and where torch is there picks the zoo's squeezenet1_1 (random weights);
4. submits one job per framework (a short timed loop, batch 1 on the CPU), waits for each to
   end, and checks that each case measured ``ok`` with samples, and how its workers started
   (forked by the fork server, or exec'd and why);
5. stops the agent with SIGTERM, which must exit 0.

Every check prints one line; the exit status is 0 only when all passed. On a failure the
agent's log is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from core import __version__
from core.protocol.events import JOB_ENDING_EVENTS
from service.client import wait_until_listening

EXIT_OK = 0
EXIT_FAILED = 1
START_TIMEOUT_S = 120.0
JOB_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 60.0
# Short, but enough samples for a median: a self-test proves it works, it measures nothing.
STOPPING = {
    "min_iters": 10,
    "max_time_s": 0.5,
    "target_ci": 0.5,
    "warmup_iters": 2,
    "warmup_time_s": 0,
}
BACKENDS = ("openvino", "onnxruntime", "torch")
REQUIRED = ("openvino",)
TORCH_MODEL = "squeezenet1_1"
INPUT_SIZE = 32
ACCURACY_IMAGES = 10  # one per class of the test model
# Environment a surrounding systemd or test run would otherwise hand the child agent.
PRIVATE_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "BACKBENCH_ALLOW_FAULTS")
END_EVENTS = tuple(event.value for event in JOB_ENDING_EVENTS)


class SelfTestFailed(Exception):
    pass


def agent_command() -> list[str]:
    """This program as an agent: the bundle's own executable when frozen."""
    if getattr(sys, "frozen", False):
        return [sys.executable]
    return [sys.executable, "-m", "service"]


def make_openvino_ir(folder: Path, channels: int = 8) -> Path:
    """conv 3x3 -> relu -> global mean -> matmul, dynamic batch, saved as fp32 IR."""
    import numpy as np
    import openvino as ov
    from openvino import opset13 as ops

    rng = np.random.default_rng(0)
    image = ops.parameter([-1, 3, INPUT_SIZE, INPUT_SIZE], np.float32, name="input")
    weights = ops.constant(rng.standard_normal((channels, 3, 3, 3)).astype(np.float32))
    conv = ops.convolution(image, weights, [1, 1], [1, 1], [1, 1], [1, 1])
    pooled = ops.reduce_mean(ops.relu(conv), ops.constant(np.array([2, 3], dtype=np.int64)), False)
    fc = ops.constant(rng.standard_normal((channels, 10)).astype(np.float32))
    logits = ops.matmul(pooled, fc, False, False)
    model = ov.Model([logits], [image], "selftest")
    path = folder / "selftest.xml"
    ov.save_model(model, str(path), compress_to_fp16=False)
    return path


def make_onnx(folder: Path, channels: int = 8) -> Path:
    """The same network as an ONNX file (opset 13)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    conv = rng.standard_normal((channels, 3, 3, 3)).astype(np.float32)
    fc = rng.standard_normal((10, channels)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["input", "W"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "W2"], ["output"], transB=1),
    ]
    size = INPUT_SIZE
    graph = helper.make_graph(
        nodes,
        "selftest",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 10])],
        [numpy_helper.from_array(conv, "W"), numpy_helper.from_array(fc, "W2")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = folder / "selftest.onnx"
    onnx.save(model, str(path))
    return path


def make_image_folder(root: Path, images: int) -> Path:
    """An ImageFolder of ``images`` solid-colour PNGs, one class each (10 classes, as
    the test model has)."""
    from PIL import Image

    for index in range(images):
        folder = root / f"class{index % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (INPUT_SIZE + 7, INPUT_SIZE), (25 * index % 256, 80, 160)).save(folder / f"{index}.png")
    return root


class SelfTest:
    def __init__(
        self,
        backends: Sequence[str] | None = None,
        *,
        write: Callable[[str], None] | None = None,
        keep: bool = False,
        verbose: bool = False,
    ) -> None:
        self.backends = tuple(backends) if backends else BACKENDS
        self.write = write or (lambda line: print(line, flush=True))
        self.keep = keep
        self.verbose = verbose
        self.proc: subprocess.Popen[bytes] | None = None
        self.root = Path(tempfile.mkdtemp(prefix="bb-selftest-", dir=_short_tmp()))
        self.socket = self.root / "run" / "agent.sock"
        self.models = self.root / "models"
        self.datasets = self.root / "datasets"
        self.log_path = self.root / "agent.log"
        self.failures = 0

    # -- reporting ------------------------------------------------------------------------

    def ok(self, what: str) -> None:
        self.write(f"ok    {what}")

    def fail(self, what: str) -> None:
        self.failures += 1
        self.write(f"FAIL  {what}")

    def skip(self, what: str) -> None:
        self.write(f"skip  {what}")

    # -- the agent ------------------------------------------------------------------------

    def start_agent(self) -> None:
        env = {k: v for k, v in os.environ.items() if k not in PRIVATE_ENV}
        env["XDG_DATA_HOME"] = str(self.root / "data")
        env["XDG_CACHE_HOME"] = str(self.root / "cache")
        cmd = [
            *agent_command(),
            "--socket", str(self.socket),
            "--db", str(self.root / "results.db"),
            "--uploads-dir", str(self.root / "uploads"),
            "--model-dir", str(self.models),
            "--data-dir", str(self.datasets),
            *(["-v"] if self.verbose else []),
        ]  # fmt: skip
        self.models.mkdir(exist_ok=True)
        self.datasets.mkdir(exist_ok=True)
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, env=env, cwd=self.root)
        problem = wait_until_listening(self.proc, self.socket, START_TIMEOUT_S)
        if problem is not None:
            raise SelfTestFailed(problem)
        self.ok(
            f"agent started: pid {self.proc.pid}, listening on {self.socket} "
            f"after {time.monotonic() - started:.1f} s"
        )

    def stop_agent(self) -> None:
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            self.fail(f"the agent did not stop within {STOP_TIMEOUT_S:.0f} s of SIGTERM")
            return
        if code == 0:
            self.ok(f"agent stopped on SIGTERM: exit 0 after {time.monotonic() - started:.1f} s")
        else:
            self.fail(f"agent stopped on SIGTERM with exit status {code}, not 0")

    # -- the checks -----------------------------------------------------------------------

    def check_hello(self, client: Any) -> None:
        hello = client.hello
        version = hello.get("agent_version")
        if version != __version__:
            self.fail(f"hello: agent version {version!r}, expected {__version__}")
        else:
            self.ok(f"hello: agent {version}, protocol {hello.get('protocol_version')}")

    def plan(self, devices: dict[str, list[str]]) -> list[tuple[str, dict[str, Any]]]:
        """One job per framework to measure: (label, spec)."""
        jobs: list[tuple[str, dict[str, Any]]] = []
        self.models.mkdir(exist_ok=True)
        for backend in self.backends:
            if backend not in devices:
                if backend in REQUIRED:
                    self.fail(f"{backend}: the agent finds no {backend} ({sorted(devices)})")
                else:
                    self.skip(f"{backend}: not in this agent")
                continue
            if backend == "openvino":
                model = make_openvino_ir(self.models).name
                device = "CPU"
            elif backend == "onnxruntime":
                try:
                    model = make_onnx(self.models).name
                except ImportError:
                    self.skip("onnxruntime: no onnx package to write the test model")
                    continue
                device = "cpu"
            else:
                model, device = TORCH_MODEL, "cpu"
            spec = {
                "models": [model],
                "backend": backend,
                "device": device,
                "batch_sizes": [1],
                "stopping": STOPPING,
            }
            jobs.append((f"{backend} {device} {model}", spec))
        accuracy = next((spec for _, spec in jobs if spec["backend"] != "torch"), None)
        if accuracy is not None:
            # Decoding and preprocessing images in the agent's own workers (Pillow).
            make_image_folder(self.datasets / "colours", ACCURACY_IMAGES)
            spec = {
                **{k: v for k, v in accuracy.items() if k != "stopping"},
                "mode": "accuracy", "accuracy": {"dataset": "colours", "size": INPUT_SIZE},
            }  # fmt: skip
            jobs.append((f"accuracy {spec['backend']} {spec['device']} {spec['models'][0]}", spec))
        return jobs

    def measure(self, client: Any, jobs: list[tuple[str, dict[str, Any]]]) -> None:
        client.call("subscribe", topics=["jobs"])
        submitted: dict[int, tuple[str, float]] = {}
        for index, (label, spec) in enumerate(jobs):
            reply = client.call("submit", spec=spec, client_request_id=f"self-test-{index}")
            submitted[int(reply["job"]["job_id"])] = (label, time.monotonic())
        ended: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + JOB_TIMEOUT_S * len(jobs)
        while len(ended) < len(submitted):
            note = client.notification(timeout_s=max(0.0, deadline - time.monotonic()))
            if note is None:
                waiting = [submitted[j][0] for j in submitted if j not in ended]
                raise SelfTestFailed(f"no result within the time limit for {waiting}")
            params = note["params"]
            job_id = params.get("job_id")
            if note["method"] == "job.case_failed" and job_id in submitted:
                self.write(f"      {submitted[job_id][0]}: case failed: {params.get('reason')}")
            if note["method"] in END_EVENTS and job_id in submitted:
                ended[job_id] = {**params, "method": note["method"], "at": time.monotonic()}
        for job_id, (label, _) in submitted.items():
            self.check_job(client, job_id, label, ended[job_id])

    def check_job(self, client: Any, job_id: int, label: str, end: dict[str, Any]) -> None:
        if end["method"] != "job.finished" or end.get("state") != "finished":
            self.fail(f"{label}: job {job_id} ended as {end.get('state') or end['method']}")
            return
        run_id = end.get("run_id")
        if run_id is None:
            status = client.call("status", job_id=job_id)["job"]
            run_id = status.get("run_id")
        results = client.call("get_results", run=run_id)
        measurements = results.get("measurements") or []
        if not measurements:
            self.fail(f"{label}: job {job_id} stored no measurement")
            return
        m = measurements[0]
        accuracy = m.get("accuracy")
        if m.get("status") == "ok" and accuracy is not None:
            if accuracy.get("n_images") != ACCURACY_IMAGES:
                self.fail(f"{label}: {accuracy.get('n_images')} images evaluated of {ACCURACY_IMAGES}")
            else:
                self.ok(f"{label}: ok, {accuracy['n_images']} images decoded and evaluated")
            return
        stats = m.get("stats") or {}
        n = int(stats.get("n") or 0)
        if m.get("status") != "ok" or n < STOPPING["min_iters"]:
            why = m.get("failure") or m.get("error") or m.get("reason") or ""
            self.fail(f"{label}: measurement {m.get('status')} with {n} samples {why}".rstrip())
            return
        median_ms = float(stats.get("median_ns") or 0) / 1e6
        note = self._start_note(results.get("run") or {})
        self.ok(f"{label}: ok, {n} samples, median {median_ms:.3f} ms{note}")

    @staticmethod
    def _start_note(run: dict[str, Any]) -> str:
        """How the run's workers started, from its manifest (fork server or exec)."""
        how = (run.get("manifest") or {}).get("worker_start") or {}
        if not how.get("method"):
            return ""
        why = f"; {how['fallback']}" if how.get("fallback") else ""
        return f" (worker started by {how['method']}{why})"

    def run(self) -> int:
        started = time.monotonic()
        self.write(f"backbench-agent {__version__} self-test ({self._where()})")
        try:
            from service.client import AgentClient

            self.start_agent()
            with AgentClient(
                self.socket, timeout_s=180, name="backbench-agent self-test"
            ) as client:
                self.check_hello(client)
                devices = client.call("list_devices")["backends"]
                found = ", ".join(f"{b} {'/'.join(d)}" for b, d in sorted(devices.items()))
                self.ok(f"list_devices: {found or 'none'}")
                jobs = self.plan(devices)
                if jobs:
                    self.measure(client, jobs)
            self.stop_agent()
        except SelfTestFailed as exc:
            self.fail(str(exc))
        except Exception as exc:  # any surprise is a failed self-test, said in one line
            self.fail(f"{type(exc).__name__}: {exc}")
        finally:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
        took = time.monotonic() - started
        if self.failures:
            self.write(f"--- the agent's log ({self.log_path}) ---")
            with contextlib.suppress(OSError):
                self.write(self.log_path.read_text(errors="replace")[-8000:].rstrip())
            self.write(f"self-test FAILED: {self.failures} check(s) failed in {took:.1f} s")
        else:
            self.write(f"self-test passed in {took:.1f} s")
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)
        return EXIT_FAILED if self.failures else EXIT_OK

    @staticmethod
    def _where() -> str:
        if getattr(sys, "frozen", False):
            return f"frozen: {sys.executable}"
        return f"Python {sys.version.split()[0]}: {sys.executable}"


def _short_tmp() -> str:
    """A folder for the socket: a Unix socket path has at most 107 bytes, which a long
    $TMPDIR can exceed."""
    tmp = tempfile.gettempdir()
    return tmp if len(tmp) < 60 else "/tmp"


def run_self_test(
    backends: Sequence[str] | None = None,
    *,
    write: Callable[[str], None] | None = None,
    keep: bool = False,
    verbose: bool = False,
) -> int:
    return SelfTest(backends, write=write, keep=keep, verbose=verbose).run()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="backbench-agent --self-test",
        description="Start an agent on a temporary socket, measure a tiny model through it, stop it.",
    )
    parser.add_argument(
        "--backends",
        default=",".join(BACKENDS),
        help=f"frameworks to measure where the agent has them (default {','.join(BACKENDS)})",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder and log")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="the agent logs debug messages"
    )
    args = parser.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown:
        parser.error(f"unknown backend(s) {unknown}; choose from {','.join(BACKENDS)}")
    return run_self_test(backends, keep=args.keep, verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
