"""The terminal client (`backbench remote ...`), uploads and the file-path policy, and
the SSH tunnel (against a stand-in `ssh` that forwards a Unix socket like `ssh -L`)."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import pytest

from core.errors import AgentUnavailableError, ProtocolError
from core.protocol.codes import INTERNAL_ERROR, INVALID_PARAMS, NOT_FOUND, UPLOAD_ERROR
from service.client import AgentClient, SshTunnel
from service.uploads import MAX_PARTIAL_UPLOADS, MAX_PARTIAL_UPLOADS_PER_CLIENT
from tests.service.agentlib import REPO, Agent, make_tiny_onnx, ort_spec


def backbench(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "core.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=REPO,
        env=env,
    )


def test_remote_submit_uploads_a_local_file_watches_and_shows_results(
    agent: Agent, tmp_path: Path
) -> None:
    local = make_tiny_onnx(tmp_path / "mine.onnx", channels=4)  # not in any --model-dir
    sock = str(agent.socket)
    done = backbench(
        "remote",
        "--socket",
        sock,
        "submit",
        "-m",
        str(local),
        "--backend",
        "onnxruntime",
        "--device",
        "cpu",
        "--batch",
        "1,2",
        "--min-iters",
        "5",
        "--max-time",
        "0.3",
        "--target-ci",
        "0.5",
        "--watch",
    )
    assert done.returncode == 0, done.stderr
    assert "Uploading" in done.stderr and "finished" in done.stderr
    job_id = int(done.stdout.split("Job ", 1)[1].split(":", 1)[0])

    table = backbench(
        "remote", "--socket", sock, "results", "--job", str(job_id), "--format", "csv"
    )
    assert table.returncode == 0, table.stderr
    rows = list(csv.DictReader(io.StringIO(table.stdout)))
    assert [(r["batch_size"], r["status"]) for r in rows] == [("1", "ok"), ("2", "ok")]
    assert rows[0]["model"].endswith("/uploads/mine.onnx")

    jobs = backbench("remote", "--socket", sock, "jobs", "--format", "json")
    assert job_id in [j["job_id"] for j in json.loads(jobs.stdout)]
    devices = backbench("remote", "--socket", sock, "devices", "--format", "json")
    assert "onnxruntime" in json.loads(devices.stdout)


def test_missing_agent_says_how_to_start_it(tmp_path: Path) -> None:
    with pytest.raises(AgentUnavailableError) as err:
        AgentClient(tmp_path / "none.sock")
    assert "start it with `backbench agent` or `systemctl start backbench-agent`" in str(err.value)
    done = backbench("remote", "--socket", str(tmp_path / "none.sock"), "jobs")
    assert done.returncode == 2 and "No agent at" in done.stderr


def _upload(c: AgentClient, name: str, data: bytes, sha: str | None = None) -> dict[str, Any]:
    begun = c.call(
        "upload_begin", name=name, size=len(data), sha256=sha or hashlib.sha256(data).hexdigest()
    )
    c.call(
        "upload_chunk", upload_id=begun["upload_id"], offset=0, data=base64.b64encode(data).decode()
    )
    return dict(c.call("upload_end", upload_id=begun["upload_id"]))


def test_uploads_are_checked_and_confined(agent: Agent, models_dir: Path, tmp_path: Path) -> None:
    data = (models_dir / "tiny.onnx").read_bytes()
    uploads = agent.db.parent / "uploads"
    with agent.client() as c:
        for name in ("../evil.onnx", "..", "a/b.onnx", "..\\evil.onnx"):
            with pytest.raises(ProtocolError) as err:
                c.call("upload_begin", name=name, size=10, sha256="0" * 64)
            assert err.value.code == INVALID_PARAMS, name
        with pytest.raises(ProtocolError) as err:
            c.call("upload_begin", name="run.sh", size=10, sha256="0" * 64)
        assert err.value.code == UPLOAD_ERROR
        with pytest.raises(ProtocolError) as err:
            _upload(c, "bad-sum.onnx", data, sha="1" * 64)
        assert err.value.code == UPLOAD_ERROR and "sha256" in err.value.message
        assert not (uploads / "bad-sum.onnx").exists()

        stored = _upload(c, ".hidden up.onnx", data)
        assert Path(stored["path"]) == uploads / "hidden_up.onnx"
        assert Path(stored["path"]).read_bytes() == data
        again = c.call(
            "upload_begin",
            name="hidden up.onnx",
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        )
        assert again["complete"] and again["upload_id"] == stored["upload_id"]
        with pytest.raises(ProtocolError) as err:
            _upload(c, "hidden up.onnx", data + b"x")
        assert "other content" in err.value.message
        assert sorted(p.name for p in agent.root.rglob("*.onnx") if "uploads" not in p.parts) == []

        outside = make_tiny_onnx(tmp_path / "outside.onnx")
        (models_dir / "link.onnx").symlink_to(outside)
        try:
            for model in (str(outside), "../outside.onnx", "link.onnx", "/etc/passwd.onnx"):
                with pytest.raises(ProtocolError) as err:
                    c.call(
                        "submit", spec=ort_spec(models=[model]), client_request_id=f"path-{model}"
                    )
                assert "--model-dir" in err.value.message, model
        finally:
            (models_dir / "link.onnx").unlink()
        spec = {"models": ["squeezenet1_1"], "weights": {"squeezenet1_1": "/etc/passwd"}}
        with pytest.raises(ProtocolError) as err:
            c.call("submit", spec=spec, client_request_id="weights-outside")
        assert "weights file" in err.value.message and "--model-dir" in err.value.message
        job = c.call(
            "submit",
            spec=ort_spec(models=["up"]),
            client_request_id="by-upload-id",
            model_upload_ids={"up": stored["upload_id"]},
        )["job"]
        assert job["spec"]["models"] == [str(uploads / "hidden_up.onnx")]
        c.call("cancel", job_id=job["job_id"])


def test_one_client_cannot_hold_every_upload(agent: Agent) -> None:
    # Issue 10's L9: uploads left open on one connection locked every other client out.
    data = b"model bytes"
    sha = hashlib.sha256(data).hexdigest()
    refusals: list[ProtocolError] = []
    with agent.client() as hog, agent.client() as other:
        opened = 0
        for i in range(MAX_PARTIAL_UPLOADS):
            try:
                hog.call("upload_begin", name=f"hog-{i}.onnx", size=len(data), sha256=sha)
                opened += 1
            except ProtocolError as exc:
                refusals.append(exc)
        assert opened == MAX_PARTIAL_UPLOADS_PER_CLIENT < MAX_PARTIAL_UPLOADS
        assert refusals and all(e.code == UPLOAD_ERROR for e in refusals)
        refused = str(refusals[0])
        assert f"has {MAX_PARTIAL_UPLOADS_PER_CLIENT} uploads in progress" in refused, refused
        assert "Finish or abort an upload first" in refused and "\n" not in refused
        stored = _upload(other, "not-locked-out.onnx", data)
        assert stored["complete"] and Path(stored["path"]).read_bytes() == data


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_while_writing_an_upload_drops_it_with_one_line(agent: Agent) -> None:
    # Issue 10's L8: a full disk mid-upload answered -32603 "Internal error". The
    # partial file is pointed at /dev/full, where every write fails with ENOSPC.
    data = b"weights" * 100
    sha = hashlib.sha256(data).hexdigest()
    with agent.client() as c:
        begun = c.call("upload_begin", name="disk-full.onnx", size=len(data), sha256=sha)
        partial = agent.db.parent / "uploads" / ".partial" / begun["upload_id"]
        assert partial.is_file()
        partial.unlink()
        partial.symlink_to("/dev/full")
        with pytest.raises(ProtocolError) as err:
            c.call(
                "upload_chunk",
                upload_id=begun["upload_id"],
                offset=0,
                data=base64.b64encode(data).decode(),
            )
        assert err.value.code == UPLOAD_ERROR != INTERNAL_ERROR
        assert "disk is full" in err.value.message and "was dropped" in err.value.message
        assert "Free some space" in (err.value.hint or "") and "\n" not in str(err.value)
        assert not partial.exists() and not partial.is_symlink(), "the partial file stays"
        with pytest.raises(ProtocolError) as err:
            c.call("upload_end", upload_id=begun["upload_id"])
        assert err.value.code == NOT_FOUND
        stored = _upload(c, "disk-full.onnx", data)  # the name is free, the agent goes on
        assert Path(stored["path"]).read_bytes() == data
    assert "Traceback" not in agent.log()


FAKE_SSH = textwrap.dedent('''
    """Stands in for `ssh -N -L local:remote host`: forwards one Unix socket to another."""
    import os, signal, socket, sys, threading
    if os.environ.get("FAKE_SSH_FAIL"):
        sys.stderr.write("ssh: Could not resolve hostname nowhere: Name or service not known\\n")
        sys.exit(255)
    local, remote = sys.argv[sys.argv.index("-L") + 1].split(":", 1)
    server = socket.socket(socket.AF_UNIX)
    server.bind(local)
    server.listen()
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
    def pump(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            dst.close()
    while True:
        conn, _ = server.accept()
        up = socket.socket(socket.AF_UNIX)
        up.connect(remote)
        threading.Thread(target=pump, args=(conn, up), daemon=True).start()
        threading.Thread(target=pump, args=(up, conn), daemon=True).start()
''')


@pytest.fixture
def fake_ssh(tmp_path: Path) -> str:
    path = tmp_path / "ssh"
    path.write_text(f"#!{sys.executable}\n{FAKE_SSH}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_ssh_tunnel_reaches_the_agent_and_closes(agent: Agent, fake_ssh: str) -> None:
    tunnel = SshTunnel("lab-gpu", str(agent.socket), ssh=fake_ssh)
    with tunnel as local, AgentClient(local) as c:
        folder = local.parent
        assert c.call("status")["agent_pid"] == agent.pid
        proc = tunnel.proc
    assert proc is not None and proc.poll() is not None, "the tunnel must be closed on exit"
    assert not folder.exists()


def test_ssh_failure_reports_ssh_own_message(
    fake_ssh: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_SSH_FAIL", "1")
    before = set(Path(tempfile.gettempdir()).glob("backbench-ssh-*"))
    with pytest.raises(AgentUnavailableError) as err:
        SshTunnel("nowhere", ssh=fake_ssh).open()
    assert "Could not resolve hostname nowhere" in str(err.value)
    assert set(Path(tempfile.gettempdir()).glob("backbench-ssh-*")) <= before
