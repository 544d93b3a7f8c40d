"""Accuracy through a real agent: the job runs in workers, streams its progress, and
stores exact figures; datasets are read only inside the agent's --data-dir."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.errors import ProtocolError
from tests.core.accuracylib import colour_imagefolder, colour_model_onnx
from tests.service.agentlib import job_events, submit, until


def accuracy_spec(dataset: str, model: str = "colour3.onnx", **extra: Any) -> dict[str, Any]:
    return {
        "models": [model], "backend": "onnxruntime", "device": "cpu", "batch_sizes": [2],
        "mode": "accuracy", "accuracy": {"dataset": dataset}, **extra,
    }  # fmt: skip


@pytest.fixture
def folders(tmp_path: Path) -> dict[str, Path]:
    models, data = tmp_path / "models", tmp_path / "data"
    colour_model_onnx(models / "colour3.onnx", 3)
    expected = colour_imagefolder(data / "colours")
    assert expected == {"images": 15, "top1": 12, "skipped": 1}
    (tmp_path / "elsewhere").mkdir()
    return {"models": models, "data": data, "elsewhere": tmp_path / "elsewhere"}


def test_an_accuracy_job_streams_progress_and_stores_exact_figures(make_agent: Any, folders: dict[str, Path]) -> None:
    agent = make_agent("--model-dir", str(folders["models"]), "--data-dir", str(folders["data"]))
    agent.start()
    with agent.client() as c:
        c.call("subscribe", topics=["jobs", "telemetry"])
        job_id = submit(c, accuracy_spec("colours"), "acc-1")  # relative to the --data-dir
        events = job_events(until(c, job_id, timeout_s=120), job_id)
    methods = [e["method"] for e in events]
    assert methods[-1] == "job.finished" and events[-1]["params"]["state"] == "finished", events[-1]
    progress = [e["params"] for e in events if e["method"] == "job.case_progress"]
    assert progress and progress[-1]["images_done"] == progress[-1]["images_total"] == 16
    assert all(p["case_index"] == 0 for p in progress)
    (finished,) = [e["params"] for e in events if e["method"] == "job.case_finished"]
    accuracy = finished["measurement"]["accuracy"]
    assert (accuracy["n_images"], accuracy["top1_correct"], accuracy["skipped"]) == (15, 12, 1)
    assert accuracy["skipped_files"] == ["a_red/corrupt.jpg"]
    assert accuracy["dataset"]["path"] == str((folders["data"] / "colours").resolve())
    assert agent.stop() == 0
    assert "Traceback" not in agent.log()


def test_datasets_outside_the_data_dir_and_agents_without_one_are_refused(
    make_agent: Any, folders: dict[str, Path]
) -> None:
    agent = make_agent("--model-dir", str(folders["models"]), "--data-dir", str(folders["data"]))
    agent.start()
    with agent.client() as c:
        for outside in (str(folders["elsewhere"]), "../elsewhere", str(folders["data"] / "colours" / ".." / "..")):
            with pytest.raises(ProtocolError) as info:
                submit(c, accuracy_spec(outside), f"out-{outside}")
            assert "--data-dir" in info.value.message
        with pytest.raises(ProtocolError) as info:  # a zoo model needs trained weights
            submit(c, accuracy_spec("colours", model="resnet18", backend="torch"), "random")
        assert "random weights" in info.value.message
    agent.stop()
    bare = make_agent("--model-dir", str(folders["models"]))
    bare.start()
    with bare.client() as c, pytest.raises(ProtocolError) as info:
        submit(c, accuracy_spec(str(folders["data"] / "colours")), "no-data-dir")
    assert "started without --data-dir" in info.value.message
    bare.stop()
