"""Agents that are stopped, killed, restarted, or started on a bad store, a full disk, a
memory limit, or a host without torch. Each test has its own agent."""

from __future__ import annotations

import signal
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from core.store import Store
from tests.service.agentlib import job_events, ort_spec, submit, until, wait_for

LONG = {"min_iters": 5, "max_time_s": 1.5, "target_ci": 1e-6, "warmup_iters": 1, "warmup_time_s": 0}


def _stop_mid_job(agent: Any, sig: int) -> tuple[int, list[dict[str, Any]]]:
    """Start a 3-case job and signal the agent once case 1 is measuring."""
    with agent.client() as c:
        c.call("subscribe", topics=["jobs", "telemetry"])
        job_id = submit(c, ort_spec([1, 2, 3], LONG), f"stop-{sig}")
        until(c, job_id, ("job.case_finished",))
        seen = until(c, job_id, ("job.case_started",))
        while not any(n["method"] == "telemetry" and n["params"]["case_index"] == 1 for n in seen):
            note = c.notification(timeout_s=30)
            assert note is not None, "no telemetry for case 1"
            seen.append(note)
        workers = agent.worker_pids()
        assert workers, "case 1 must be running in a worker"
        agent.proc.send_signal(sig)
        if sig == signal.SIGTERM:
            seen += until(c, job_id, ("job.interrupted",), timeout_s=30)
    return job_id, seen


def _resume_and_check(agent: Any, job_id: int) -> None:
    with agent.client() as c:
        job = c.call("status", job_id=job_id)["job"]
        assert job["state"] == "interrupted" and "resume" in job["reason"]
        before = c.call("get_results", run=job["run_id"])["measurements"]
        assert [(m["case"]["batch_size"], m["status"]) for m in before if m["status"] == "ok"] == [
            (1, "ok")
        ]
        c.call("subscribe", topics=["jobs"])
        c.call("resume", job_id=job_id)
        events = job_events(until(c, job_id), job_id)
        assert events[-1]["params"]["state"] == "finished"
        # The cut-off case is measured again from scratch; the completed one is not redone.
        assert [e["params"]["case_index"] for e in events if e["method"] == "job.case_started"] == [
            1,
            2,
        ]
        after = c.call("get_results", run=job["run_id"])["measurements"]
        ok = [(m["case"]["batch_size"], m["measurement_id"]) for m in after if m["status"] == "ok"]
        assert [b for b, _ in ok] == [1, 2, 3]
        assert ok[0][1] == before[0]["measurement_id"], "the completed case stands"


def test_sigterm_interrupts_the_job_and_resume_finishes_it(
    make_agent: Any, models_dir: Path
) -> None:
    agent = make_agent("--model-dir", str(models_dir), "--term-grace-s", "2").start()
    job_id, seen = _stop_mid_job(agent, signal.SIGTERM)
    assert agent.proc.wait(30) == 0
    cut = [n["params"] for n in job_events(seen, job_id) if n["method"] == "job.case_failed"]
    assert cut and cut[0]["case_index"] == 1 and cut[0]["status"] == "cancelled"
    assert not agent.socket.exists(), "a stopped agent removes its socket"
    agent.start()
    _resume_and_check(agent, job_id)


def test_sigkill_of_the_agent_loses_no_completed_case_and_resume_finishes(
    make_agent: Any, models_dir: Path
) -> None:
    agent = make_agent("--model-dir", str(models_dir), "--term-grace-s", "1").start()
    job_id, _ = _stop_mid_job(agent, signal.SIGKILL)
    old_pid = agent.pid
    assert agent.proc.wait(10) == -signal.SIGKILL
    # PDEATHSIG takes the worker along with the agent.
    wait_for(lambda: not agent.worker_pids(), 10, "the orphaned worker to die")
    assert agent.socket.exists(), "SIGKILL leaves a stale socket behind"
    agent.start()
    assert agent.pid != old_pid
    assert "Removing the stale socket" in agent.log()
    _resume_and_check(agent, job_id)


def test_corrupt_store_is_quarantined_and_reported(make_agent: Any, tmp_path: Path) -> None:
    db = tmp_path / "results.db"
    db.write_bytes(b"this is not an SQLite file" * 500)
    agent = make_agent(db=db).start()
    with agent.client() as c:
        quarantined = c.hello["store"]["quarantined"]
        assert quarantined and Path(quarantined).read_bytes().startswith(b"this is not")
        assert c.call("status")["store"]["quarantined"] == quarantined
        assert c.call("list_runs")["total"] == 0
    assert "corrupt" in agent.log()


def test_full_disk_fails_the_case_and_job_cleanly(make_agent: Any, models_dir: Path) -> None:
    agent = make_agent("--model-dir", str(models_dir)).start()
    many = {
        "min_iters": 5,
        "max_time_s": 0.5,
        "target_ci": 1e-6,
        "warmup_iters": 1,
        "warmup_time_s": 0,
    }
    with agent.client() as c:
        c.call("subscribe", topics=["jobs"])
        job_id = submit(c, ort_spec([1, 2], many), "disk-full", test_faults={"1": "diskfull"})
        events = job_events(until(c, job_id), job_id)
        failed = [e["params"] for e in events if e["method"] == "job.case_failed"]
        assert [e["method"] for e in events if e["method"] == "job.case_finished"] == [
            "job.case_finished"
        ]
        assert failed and failed[0]["case_index"] == 1 and "full" in failed[0]["reason"]
        assert (
            events[-1]["params"]["state"] == "failed" and "full" in events[-1]["params"]["reason"]
        )
        job = c.call("status", job_id=job_id)["job"]
        assert job["state"] == "failed" and "Free some disk space" in job["reason"]
        run_id = job["run_id"]
    assert agent.stop() == 0
    with Store(agent.db, on_corrupt="raise") as store:
        assert store.query("PRAGMA quick_check")[0][0] == "ok"
        kept = store.measurements(run_id, include_samples=True)
        assert [(m.case.batch_size, m.status.value) for m in kept] == [(1, "ok")]
        assert len(kept[0].samples_ns) == kept[0].stats.n


def test_memory_limit_is_classified_as_oom(make_agent: Any, models_dir: Path) -> None:
    agent = make_agent("--model-dir", str(models_dir), "--max-mem-mb", "1536").start()
    with agent.client() as c:
        c.call("subscribe", topics=["jobs"])
        job_id = submit(c, ort_spec([1, 2]), "alloc", test_faults={"0": "alloc"})
        events = job_events(until(c, job_id), job_id)
    failed = [e["params"] for e in events if e["method"] == "job.case_failed"]
    assert failed[0]["failure"] == "oom" and failed[0]["case_index"] == 0
    assert [e["params"]["case_index"] for e in events if e["method"] == "job.case_finished"] == [1]


NO_TORCH = """
import sys
for name in ("torch", "torchvision", "onnxruntime"):
    sys.modules[name] = None  # `import torch` now raises ImportError, as on an edge host
"""


def test_edge_flavour_measures_onnx_and_ir_without_torch(
    make_agent: Any, models_dir: Path, tmp_path: Path
) -> None:
    import openvino as ov

    edge_models = tmp_path / "edge-models"
    edge_models.mkdir()
    (edge_models / "tiny.onnx").write_bytes((models_dir / "tiny.onnx").read_bytes())
    ov.save_model(ov.convert_model(str(edge_models / "tiny.onnx")), str(edge_models / "tiny.xml"))
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(NO_TORCH)
    agent = make_agent("--model-dir", str(edge_models), env={"PYTHONPATH": str(site)}).start()
    with agent.client() as c:
        assert c.call("list_devices")["backends"] == {"openvino": ["CPU"]}
        assert c.hello["host"]["packages"]["openvino"]
        assert c.call("list_models", filter="resnet18")["models"][0]["name"] == "resnet18"
        c.call("subscribe", topics=["jobs"])
        spec = {
            "models": ["tiny.onnx", "tiny.xml"],
            "backend": "openvino",
            "device": "CPU",
            "stopping": {
                "min_iters": 5,
                "max_time_s": 0.3,
                "target_ci": 0.5,
                "warmup_iters": 1,
                "warmup_time_s": 0,
            },
        }
        job_id = submit(c, spec, "edge")
        events = job_events(until(c, job_id), job_id)
        finished = [
            e["params"]["measurement"] for e in events if e["method"] == "job.case_finished"
        ]
        assert [Path(m["case"]["model"]).name for m in finished] == ["tiny.onnx", "tiny.xml"], (
            events
        )
        assert all(m["status"] == "ok" and m["stats"]["n"] >= 5 for m in finished)
        with pytest.raises(Exception) as err:
            c.call(
                "submit",
                spec={"models": ["resnet18"], "backend": "torch"},
                client_request_id="torch",
            )
        assert "torch" in str(err.value) and "not installed" in str(err.value)


def test_systemd_notify_watchdog_and_journal_logs(make_agent: Any, tmp_path: Path) -> None:
    name = f"backbench-test-{time.monotonic_ns()}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind("\0" + name)  # an abstract socket, as systemd passes with '@'
    listener.settimeout(30)
    env = {"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "300000", "JOURNAL_STREAM": "8:1234"}
    agent = make_agent(env=env).start(wait=False)
    try:
        messages = [listener.recv(4096).decode()]
        assert messages[0].startswith("READY=1")
        assert agent.socket.exists()
        deadline = time.monotonic() + 10
        while sum(m == "WATCHDOG=1" for m in messages) < 3 and time.monotonic() < deadline:
            messages.append(listener.recv(4096).decode())
        assert sum(m == "WATCHDOG=1" for m in messages) >= 3
        assert agent.stop() == 0
        rest = []
        listener.settimeout(1)
        while True:
            try:
                rest.append(listener.recv(4096).decode())
            except TimeoutError:
                break
        assert "STOPPING=1" in rest
    finally:
        listener.close()
    lines = [line for line in agent.log().splitlines() if line]
    assert lines and all(line.startswith("<") for line in lines), lines[:3]
    assert any(line.startswith("<6>service.agent: backbench agent") for line in lines)


def test_store_from_a_newer_backbench_is_refused(make_agent: Any, tmp_path: Path) -> None:
    db = tmp_path / "future.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA user_version = 99")
    agent = make_agent(db=db).start(wait=False)
    assert agent.proc.wait(60) == 1
    assert "newer backbench" in agent.log()
