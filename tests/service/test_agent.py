"""One real agent, shared by the tests that do not kill it: jobs end to end, failures of
workers (kill, crash, hang), cancel and resume, and a hostile or stalled peer.

Worker faults are injected through the test-only ``test_faults`` submit parameter, which
the agent honours only with BACKBENCH_ALLOW_FAULTS=1.
"""

from __future__ import annotations

import grp
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from core.errors import ProtocolError
from core.protocol.codes import (
    HANDSHAKE_REQUIRED,
    INVALID_PARAMS,
    NOT_FOUND,
    UNAVAILABLE,
    VERSION_MISMATCH,
)
from tests.service.agentlib import (
    FAST,
    QUEUE_SAMPLES,
    Agent,
    job_events,
    ort_spec,
    other_group,
    submit,
    until,
    wait_for,
)

MEASURE_LIMIT_S = 3


def test_submit_watch_telemetry_and_results(agent: Agent) -> None:
    spec = {
        "models": ["squeezenet1_1"],
        "backend": "torch",
        "device": "cpu",
        "batch_sizes": [1, 2],
        "stopping": FAST,
    }
    with agent.client() as c:
        c.call("subscribe", topics=["jobs", "telemetry"])
        first = c.call("submit", spec=spec, client_request_id="main-1")
        job_id = first["job"]["job_id"]
        notes = until(c, job_id)
        again = c.call("submit", spec=spec, client_request_id="main-1")
        assert again["duplicate"] and again["job"]["job_id"] == job_id
        assert sum(j["client_request_id"] == "main-1" for j in c.call("status")["jobs"]) == 1

        events = job_events(notes, job_id)
        assert [e["method"] for e in events] == [
            "job.queued",
            "job.started",
            "job.case_started",
            "job.case_finished",
            "job.case_started",
            "job.case_finished",
            "job.finished",
        ]
        assert events[-1]["params"]["state"] == "finished" and events[-1]["params"]["cases_ok"] == 2
        run_id = events[1]["params"]["run_id"]

        # Telemetry for a case arrives between its case_started and case_finished, in full.
        streamed: dict[int, list[int]] = {0: [], 1: []}
        memory: list[float] = []
        case = None
        for note in notes:
            if note["method"] == "job.case_started":
                case = note["params"]["case_index"]
            elif note["method"] == "job.case_finished":
                case = None
            elif note["method"] == "telemetry":
                assert note["params"]["case_index"] == case and note["params"]["job_id"] == job_id
                pairs = note["params"].get("samples") or []
                streamed[case].extend(p[1] for p in pairs)
                memory.extend(
                    r["rss_mb"] for r in note["params"].get("memory") or [] if r["rss_mb"]
                )
            assert note["method"] != "gap", "a live client lost telemetry"
        assert memory and max(memory) > 50  # the worker's RSS, with torch loaded

        results = c.call("get_results", run=run_id)
        assert results["total"] == 2 and results["run"]["status"] == "finished"
        for index, m in enumerate(results["measurements"]):
            assert m["status"] == "ok" and m["case"]["batch_size"] == index + 1
            samples = c.call("get_samples", measurement_id=m["measurement_id"])
            assert samples["total"] == m["stats"]["n"] >= 5
            assert samples["samples_ns"] == streamed[index], (
                "telemetry differs from the stored samples"
            )
        assert run_id in [r["run_id"] for r in c.call("list_runs")["runs"]]


def test_worker_killed_mid_case_fails_that_case_and_the_next_runs(agent: Agent) -> None:
    with agent.client() as c:
        c.call("subscribe", topics=["jobs"])
        job_id = submit(c, ort_spec([1, 2]), "kill-worker", test_faults={"0": "hang"})
        until(c, job_id, ("job.case_started",))
        worker = wait_for(agent.worker_pids, what="the worker")[0]
        time.sleep(0.3)
        os.kill(worker, signal.SIGKILL)
        events = job_events(until(c, job_id), job_id)
    failed = [e["params"] for e in events if e["method"] == "job.case_failed"]
    assert len(failed) == 1 and failed[0]["case_index"] == 0
    assert failed[0]["failure"] == "crashed" and "SIGKILL" in failed[0]["reason"]
    finished = [e["params"] for e in events if e["method"] == "job.case_finished"]
    assert [f["case_index"] for f in finished] == [1]
    assert events[-1]["params"]["state"] == "finished"
    assert agent.proc is not None and agent.proc.poll() is None


def test_segfault_is_classified_and_the_job_goes_on(agent: Agent) -> None:
    with agent.client() as c:
        c.call("subscribe", topics=["jobs"])
        job_id = submit(c, ort_spec([1, 2]), "segfault", test_faults={"0": "segfault"})
        events = job_events(until(c, job_id), job_id)
    failed = [e["params"] for e in events if e["method"] == "job.case_failed"]
    assert failed[0]["failure"] == "crashed" and "SIGSEGV" in failed[0]["reason"]
    assert [e["params"]["case_index"] for e in events if e["method"] == "job.case_finished"] == [1]


def test_hung_case_is_killed_by_the_watchdog(make_agent: Any, models_dir: Path) -> None:
    agent = make_agent(
        "--model-dir",
        str(models_dir),
        "--measure-limit-s",
        str(MEASURE_LIMIT_S),
        "--term-grace-s",
        "1",
    ).start()
    with agent.client() as c:
        c.call("subscribe", topics=["jobs"])
        job_id = submit(c, ort_spec([1]), "hang", test_faults={"0": "hang"})
        events = job_events(until(c, job_id), job_id)
    failed = [e["params"] for e in events if e["method"] == "job.case_failed"]
    assert failed[0]["failure"] == "timeout"
    assert f"measure phase exceeded its limit of {MEASURE_LIMIT_S} s" in failed[0]["reason"]
    assert not agent.worker_pids()


def test_cancel_queued_and_running_jobs_then_resume(agent: Agent) -> None:
    with agent.client() as c:
        c.call("subscribe", topics=["jobs"])
        running = submit(c, ort_spec([1]), "cancel-running", test_faults={"0": "hang"})
        queued = submit(c, ort_spec([1]), "cancel-queued")
        until(c, running, ("job.case_started",))
        assert c.call("cancel", job_id=queued)["state"] == "cancelled"
        assert c.call("cancel", job_id=running)["cancelling"] is True
        events = job_events(until(c, running), running)
        assert events[-1]["method"] == "job.cancelled"
        cut = [e["params"] for e in events if e["method"] == "job.case_failed"]
        assert cut[0]["status"] == "cancelled"
        assert c.call("status", job_id=queued)["job"]["state"] == "cancelled"
        with pytest.raises(ProtocolError) as err:
            c.call("cancel", job_id=10**9)
        assert err.value.code == NOT_FOUND

        # Resume runs it again, this time without the fault (faults apply to attempt 1).
        assert c.call("resume", job_id=running)["job"]["state"] == "queued"
        events = job_events(until(c, running), running)
        assert events[-1]["params"]["state"] == "finished"
        results = c.call("get_results", run=events[-1]["params"]["run_id"])
        # The cancelled try is kept as attempt 1; the case's result is the resume's.
        assert [(m["status"], m["attempt"]) for m in results["measurements"]] == [("ok", 2)]


def _send_lines(sock: socket.socket, lines: list[bytes]) -> None:
    sock.sendall(b"".join(line + b"\n" for line in lines))


def test_wrong_protocol_version_is_refused_and_disconnected(agent: Agent) -> None:
    for version, side in (("2.0", "upgrade the agent"), ("0.9", "upgrade the client")):
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(agent.socket))
            _send_lines(
                sock,
                [
                    b'{"jsonrpc":"2.0","id":1,"method":"hello","params":{"protocol_version":"%s"}}'
                    % version.encode()
                ],
            )
            data = _read_all(sock)
        import json

        reply = json.loads(data.splitlines()[0])
        assert reply["error"]["code"] == VERSION_MISMATCH and side in reply["error"]["message"]


def _read_all(sock: socket.socket, timeout_s: float = 10.0) -> bytes:
    sock.settimeout(timeout_s)
    chunks = []
    while True:
        data = sock.recv(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def test_requests_before_hello_are_refused(agent: Agent) -> None:
    from service.client import AgentClient

    with AgentClient(agent.socket, hello=False) as c:
        with pytest.raises(ProtocolError) as err:
            c.call("status")
        assert err.value.code == HANDSHAKE_REQUIRED
        assert c.call("hello", protocol_version="1.0")["protocol_version"].startswith("1.")
        assert c.call("status")["agent_pid"] == agent.pid


def test_socket_is_0660_with_the_group(agent: Agent) -> None:
    info = agent.socket.stat()
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o660
    assert info.st_gid == grp.getgrnam(other_group()).gr_gid


def test_lock_file_is_a_private_regular_file(agent: Agent) -> None:
    lock = agent.socket.with_name(agent.socket.name + ".lock")
    info = os.lstat(lock)
    assert stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid()
    assert stat.S_IMODE(info.st_mode) == 0o600


def test_pipelined_requests_all_get_replies_in_order(agent: Agent) -> None:
    # Issue 10's L6: 1,500 requests in one write, from a client that reads its replies,
    # got it disconnected with no reply at all ("not reading its events"). unsubscribe
    # answers without awaiting anything, so without backpressure per request the agent
    # queued a whole read's worth of replies before writing one.
    import json

    count = 1500
    lines = [b'{"jsonrpc":"2.0","id":0,"method":"hello","params":{"protocol_version":"1.0"}}']
    lines += [b'{"jsonrpc":"2.0","id":%d,"method":"unsubscribe"}' % i for i in range(1, count + 1)]
    replies: list[dict[str, Any]] = []
    ended: list[str] = []

    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(agent.socket))
        sock.settimeout(60)

        def read() -> None:
            buffer = b""
            try:
                while len(replies) <= count:
                    data = sock.recv(1 << 16)
                    if not data:
                        ended.append("the agent closed the connection")
                        return
                    *complete, buffer = (buffer + data).split(b"\n")
                    replies.extend(json.loads(line) for line in complete)
            except OSError as exc:
                ended.append(repr(exc))

        reader = threading.Thread(target=read)
        reader.start()
        _send_lines(sock, lines)
        reader.join(120)
    assert not ended, f"after {len(replies)} replies: {ended[0]}"
    assert [r.get("id") for r in replies] == list(range(count + 1)), "every reply, in order"
    assert all("result" in r for r in replies), [r for r in replies if "error" in r][:1]
    assert all(r["result"] == {"topics": []} for r in replies[1:])
    with agent.client() as c:
        assert c.call("status")["agent_pid"] == agent.pid


def test_second_agent_on_the_same_socket_is_refused(agent: Agent, tmp_path: Path) -> None:
    second = subprocess.run(
        [
            sys.executable,
            "-m",
            "service",
            "--socket",
            str(agent.socket),
            "--db",
            str(tmp_path / "other.db"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=agent.env,
    )
    assert second.returncode == 1
    assert "already running" in second.stderr
    assert not (tmp_path / "other.db").exists(), "it must refuse before touching a store"
    with agent.client() as c:
        assert c.call("status")["agent_pid"] == agent.pid


def test_devices_and_models(agent: Agent) -> None:
    with agent.client() as c:
        backends = c.call("list_devices")["backends"]
        assert "cpu" in backends["onnxruntime"]
        listed = c.call("list_models", filter="resnet1*")
        assert [m["name"] for m in listed["models"]] == ["resnet101", "resnet152", "resnet18"]
        assert "tiny.onnx" in [f["name"] for f in listed["files"]]
        with pytest.raises(ProtocolError) as err:
            c.call("submit", spec=ort_spec(device="cuda:7"), client_request_id="no-such-device")
        assert err.value.code == UNAVAILABLE


def test_submit_without_the_test_switch_refuses_faults(agent: Agent, make_agent: Any) -> None:
    plain = make_agent(faults=False).start()
    with plain.client() as c, pytest.raises(ProtocolError) as err:
        c.call("submit", spec=ort_spec(), client_request_id="x", test_faults={"0": "segfault"})
    assert err.value.code == INVALID_PARAMS and "test_faults" in err.value.message


def test_submit_refuses_local_only_unknown_and_out_of_bounds_fields(make_agent: Any) -> None:
    # Issue 10's H1: `"isolate": false` from a client made the agent measure in its own
    # process, loading torch into it and letting one bad model take it down.
    fresh = make_agent(faults=False).start()
    spec = {"models": ["squeezenet1_1"], "backend": "torch", "device": "cpu", "stopping": FAST}
    refused = [
        ({**spec, "isolate": False}, "Field 'isolate' (--no-isolate) cannot be set remotely"),
        ({**spec, "priority": 1}, "Unknown field 'priority'"),
        (
            {**spec, "stopping": {**FAST, "max_time_s": 10**6}},
            "Field 'stopping.max_time_s' (--max-time) must be more than 0 and at most 86400",
        ),
    ]
    with fresh.client() as c:
        for i, (bad, words) in enumerate(refused):
            with pytest.raises(ProtocolError) as err:
                c.call("submit", spec=bad, client_request_id=f"refused-{i}")
            assert err.value.code == INVALID_PARAMS
            assert err.value.message.startswith("Parameter 'spec': ") and words in err.value.message
        assert c.call("status")["jobs"] == []  # nothing queued, so nothing measured anywhere
    assert "torch" not in Path(f"/proc/{fresh.pid}/maps").read_text(), "the agent loaded torch"


def _rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def test_stalled_client_keeps_memory_bounded_while_another_receives(
    make_agent: Any, models_dir: Path
) -> None:
    # The synthetic worker streams 40,000 samples/s through the real pipe: far more
    # telemetry (about 3 MB of JSON) than one queue and the socket buffers hold.
    agent = make_agent(
        "--model-dir",
        str(models_dir),
        "--client-queue-samples",
        str(QUEUE_SAMPLES),
        "--worker-command",
        f"{sys.executable} -m tests.service.synthetic_worker",
        env={"BACKBENCH_SYNTHETIC_RATE": "40000"},
    ).start()
    stalled = socket.socket(socket.AF_UNIX)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(str(agent.socket))
    _send_lines(
        stalled,
        [
            b'{"jsonrpc":"2.0","id":1,"method":"hello","params":{"protocol_version":"1.0","client":"stalled"}}',
            b'{"jsonrpc":"2.0","id":2,"method":"subscribe","params":{"topics":["jobs","telemetry"]}}',
        ],
    )
    received = dropped = 0
    peak: list[float] = []
    stop = threading.Event()

    def sample_rss() -> None:
        while not stop.wait(0.05):
            peak.append(_rss_mb(agent.pid))

    stopping = {
        "min_iters": 5,
        "max_time_s": 3.0,
        "target_ci": 0.5,
        "warmup_iters": 1,
        "warmup_time_s": 0,
    }
    with agent.client() as c:
        c.call("subscribe", topics=["jobs", "telemetry"])
        c.call(
            "submit", spec=ort_spec([1], stopping), client_request_id="warm-up"
        )  # probe, first worker
        until(c, 1)
        before = _rss_mb(agent.pid)
        sampler = threading.Thread(target=sample_rss)
        sampler.start()
        try:
            job_id = submit(c, ort_spec([2], stopping), "stalled-client")
            notes = until(c, job_id)
        finally:
            stop.set()
            sampler.join()
        for note in notes:
            if note["method"] == "telemetry" and note["params"]["job_id"] == job_id:
                received += len(note["params"].get("samples") or [])
            elif note["method"] == "gap":
                dropped += note["params"]["dropped"]
        n = next(
            e["params"]["measurement"]["stats"]["n"]
            for e in notes
            if e["method"] == "job.case_finished"
        )
        clients = c.call("status")["clients"]
    stuck = next(cl for cl in clients if cl["name"] == "stalled")["queue"]
    stalled.close()
    print(
        f"n={n} live received={received} dropped={dropped} stalled={stuck} rss {before:.0f}->{max(peak):.0f} MB"
    )
    assert n > 25 * QUEUE_SAMPLES, "the case must produce far more than one queue's worth"
    assert received + dropped == n, "the live client: every sample delivered or counted in a gap"
    assert received > n // 2
    first_job_samples = stuck["produced"] - n
    assert first_job_samples > 0 and stuck["dropped"] > n // 2
    assert stuck["pending"] <= QUEUE_SAMPLES
    assert stuck["delivered"] + stuck["dropped"] + stuck["pending"] == stuck["produced"]
    assert max(peak) - before < 50, f"agent RSS grew from {before:.0f} to {max(peak):.0f} MB"


def test_a_profiled_job_carries_its_layers_to_the_client(agent: Agent) -> None:
    with agent.client() as c:
        c.call("subscribe", topics=["jobs"])
        job_id = submit(c, ort_spec(profile_layers=True), "profiled-1")
        events = job_events(until(c, job_id), job_id)
        finished = [e["params"] for e in events if e["method"] == "job.case_finished"]
        assert len(finished) == 1, [e["method"] for e in events]
        profile = finished[0]["measurement"]["layer_profile"]
        assert profile["source"] == "onnxruntime profiling" and profile["iterations"] >= 3
        assert any(layer["type"] in ("Conv", "FusedConv") for layer in profile["layers"])
        run_id = next(e["params"]["run_id"] for e in events if e["method"] == "job.started")
        stored = c.call("get_results", run=run_id)["measurements"][0]
        assert stored["layer_profile"]["layers"] == profile["layers"]
