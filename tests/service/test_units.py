"""The agent's parts in-process: event/telemetry hand-off, the job queue, the file-path
policy, configuration defaults, sd_notify, and `backbench export`."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from core.errors import ProtocolError
from core.results import RunSpec
from core.store import Store
from service import systemd
from service.config import default_socket_path, parse_config
from service.jobs import CANCELLED, INTERRUPTED, QUEUED, RUNNING, JobQueue
from service.telemetry import LoopBridge
from service.uploads import (
    FREE_SPACE_MARGIN_BYTES,
    MAX_PARTIAL_UPLOADS,
    MAX_PARTIAL_UPLOADS_PER_CLIENT,
    ModelAccess,
    PathRefusedError,
    UploadManager,
    sanitize_name,
)


class _Sink:
    def __init__(self) -> None:
        self.seen: list[tuple[Any, ...]] = []

    def publish_event(self, msg: dict[str, Any], job_id: int) -> None:
        self.seen.append(("event", msg["n"]))

    def publish_samples(self, job_id: int, case_index: int, samples: list[list[int]]) -> None:
        self.seen.append(("samples", case_index, [s[1] for s in samples]))

    def publish_memory(self, job_id: int, case_index: int, reading: dict[str, Any]) -> None:
        self.seen.append(("memory", case_index))


def test_bridge_batches_telemetry_and_keeps_order_with_events() -> None:
    async def scenario() -> _Sink:
        sink = _Sink()
        bridge = LoopBridge(asyncio.get_running_loop(), sink, min_interval_s=0.05)

        def produce() -> None:
            for i in range(200):
                bridge.samples(1, 0, np.array([[i, i]], dtype=np.int64))
            bridge.memory(1, 0, 100.0, {})
            bridge.event({"n": 1}, 1)
            for i in range(200, 300):
                bridge.samples(1, 1, np.array([[i, i]], dtype=np.int64))
            bridge.event({"n": 2}, 1)

        thread = threading.Thread(target=produce)
        thread.start()
        await asyncio.to_thread(thread.join)
        await asyncio.sleep(0.2)
        return sink

    seen = asyncio.run(scenario()).seen
    flat: list[int] = []
    order = []
    for item in seen:
        if item[0] == "samples":
            flat.extend(item[2])
            order.append(("samples", item[1]))
        else:
            order.append(item[:2])
    assert flat == list(range(300)), "every sample, once, in order"
    # Case 0 telemetry, then its memory reading, then event 1, then case 1, then event 2.
    compact = [o for i, o in enumerate(order) if i == 0 or o != order[i - 1]]
    assert compact == [("samples", 0), ("memory", 0), ("event", 1), ("samples", 1), ("event", 2)]
    assert len([s for s in seen if s[0] == "samples"]) < 20, "batched, not one message per sample"


def _spec() -> RunSpec:
    return RunSpec(models=("squeezenet1_1",), batch_sizes=(1, 2))


def test_queue_is_fifo_idempotent_and_recovers_running_jobs(tmp_path: Path) -> None:
    with Store(tmp_path / "r.db") as store:
        queue = JobQueue(store, max_queued=2)
        first, created = queue.submit(_spec(), "a", {}, 1000)
        again, created_again = queue.submit(_spec(), "a", {}, 1000)
        assert created and not created_again and again.id == first.id
        second, _ = queue.submit(_spec(), "b", {}, None)
        with pytest.raises(ProtocolError, match="queue is full"):
            queue.submit(_spec(), "c", {}, None)
        assert queue.next_queued().id == first.id and queue.position(second.id) == 2
        started = queue.mark_started(first.id)
        assert started is not None and started.state == RUNNING and started.attempts == 1
        assert queue.mark_started(first.id) is None, "only a queued job starts"
        run = store.create_run(first.spec, {"host": "x"})
        queue.set_run(first.id, run.id)
        assert queue.cancel_queued(second.id) and queue.get(second.id).state == CANCELLED
    # The agent died here; the next one finds the job interrupted, and its run too.
    with Store(tmp_path / "r.db") as store:
        queue = JobQueue(store)
        assert queue.recover() == [first.id]
        assert queue.get(first.id).state == INTERRUPTED
        assert store.get_run(run.id).status == "interrupted"
        resumed = queue.requeue(first.id)
        assert resumed.state == QUEUED and resumed.run_id == run.id
        with pytest.raises(ProtocolError, match="nothing to resume"):
            queue.requeue(first.id)


def test_model_paths_are_confined_to_allowed_folders(tmp_path: Path) -> None:
    allowed = tmp_path / "models"
    allowed.mkdir()
    (allowed / "a.onnx").write_bytes(b"x")
    (allowed / "net.xml").write_text("<net/>")
    secret = tmp_path / "secret.onnx"
    secret.write_bytes(b"x")
    (allowed / "leak.onnx").symlink_to(secret)
    (allowed / "ir.xml").write_text("<net/>")
    (allowed / "ir.bin").symlink_to(secret)
    access = ModelAccess([allowed])
    assert access.resolve_model("resnet18") == "resnet18"
    assert access.resolve_model("a.onnx") == str(allowed / "a.onnx")
    assert access.resolve_model(str(allowed / "a.onnx")) == str(allowed / "a.onnx")
    for name in (
        str(secret),
        "../secret.onnx",
        "leak.onnx",
        "ir.xml",
        "missing.onnx",
        "/etc/passwd",
    ):
        with pytest.raises(PathRefusedError, match="--model-dir"):
            access.resolve_file(name)


def test_upload_names_are_sanitised() -> None:
    assert sanitize_name("..model v2.onnx") == "model_v2.onnx"
    assert sanitize_name("dir\\..\\x.onnx") == "x.onnx"
    for bad in ("...", "x.sh", "noext"):
        with pytest.raises(ProtocolError):
            sanitize_name(bad)


def test_upload_begin_refuses_what_the_disk_cannot_hold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 10's L8: refused up front, counting what the uploads in progress still need.
    free = FREE_SPACE_MARGIN_BYTES + 1000
    usage = SimpleNamespace(total=10 * free, used=9 * free, free=free)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage)
    uploads = UploadManager(tmp_path / "uploads", max_bytes=1 << 30)
    with pytest.raises(ProtocolError) as err:
        uploads.begin("big.onnx", 1001, "0" * 64, owner=1)
    assert "Not enough free disk space on the agent for big.onnx" in str(err.value)
    assert "Free some space" in str(err.value) and "\n" not in str(err.value)
    assert not uploads.begin("half.onnx", 600, "0" * 64, owner=1)["complete"]
    with pytest.raises(ProtocolError, match="Not enough free disk space"):
        uploads.begin("other-half.onnx", 600, "1" * 64, owner=2)
    assert len(list((tmp_path / "uploads" / ".partial").iterdir())) == 1


def test_uploads_in_progress_are_bounded_per_client_and_in_total(tmp_path: Path) -> None:
    uploads = UploadManager(tmp_path / "uploads", max_bytes=1 << 30)
    per_client = MAX_PARTIAL_UPLOADS_PER_CLIENT
    assert 1 < per_client < MAX_PARTIAL_UPLOADS
    opened = owner = 0
    while opened < MAX_PARTIAL_UPLOADS:
        for i in range(min(per_client, MAX_PARTIAL_UPLOADS - opened)):
            uploads.begin(f"m{owner}-{i}.onnx", 10, "0" * 64, owner=owner)
            opened += 1
        owner += 1
    with pytest.raises(ProtocolError) as err:
        uploads.begin("late.onnx", 10, "0" * 64, owner=owner)
    assert f"The agent already has {MAX_PARTIAL_UPLOADS} uploads in progress" in str(err.value)
    with pytest.raises(ProtocolError) as err:
        uploads.begin("greedy.onnx", 10, "0" * 64, owner=0)
    assert f"This connection already has {per_client} uploads in progress" in str(err.value)
    assert "Finish or abort an upload first" in str(err.value) and "\n" not in str(err.value)
    uploads.drop_owner(0)  # a client goes away: its share is free for others
    assert not uploads.begin("late.onnx", 10, "0" * 64, owner=owner)["complete"]


def test_default_socket_follows_systemd_then_xdg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNTIME_DIRECTORY", "/run/backbench")
    assert default_socket_path() == Path("/run/backbench/agent.sock")
    monkeypatch.delenv("RUNTIME_DIRECTORY")
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert default_socket_path() == Path("/run/user/1000/backbench/agent.sock")
    config = parse_config(
        ["--socket", "/tmp/x.sock", "--db", "/tmp/db/r.db", "--measure-limit-s", "7"]
    )
    assert config.uploads_dir == Path("/tmp/db/uploads") and config.limits.measure_s == 7
    assert config.allowed_dirs == (Path("/tmp/db/uploads"),) and not config.allow_faults


def test_sd_notify_to_a_path_socket_and_watchdog_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        assert systemd.notify("READY=1")
        assert listener.recv(100) == b"READY=1"
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not systemd.notify("READY=1")
    monkeypatch.setenv("WATCHDOG_USEC", "20000000")
    assert systemd.watchdog_interval_s() == 10.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert systemd.watchdog_interval_s() is None


def test_export_writes_an_onnx_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime as ort

    from core.cli.main import main

    monkeypatch.setenv("BACKBENCH_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "sq.onnx"
    assert main(["export", "-m", "squeezenet1_1", "--format", "onnx", "-o", str(out)]) == 0
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    batch = np.zeros((3, 3, 224, 224), dtype=np.float32)
    assert session.run(None, {session.get_inputs()[0].name: batch})[0].shape == (3, 1000)


def test_the_agent_and_remote_client_load_no_framework_and_no_gui() -> None:
    import subprocess
    import sys

    code = (
        "import sys, service.agent, service.remote, service.client, service.commands\n"
        "bad = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'torchvision', 'openvino',"
        " 'onnxruntime', 'PySide6', 'pyqtgraph', 'gui'})\n"
        "print(','.join(bad))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == ""
