"""The run launcher starts from the run options' defaults (core/cli/run_options.py), and
what it can send is within the bounds the agent checks."""

from __future__ import annotations

from core.cli.run_options import option, spec_from_remote
from gui.agents import AgentRegistry
from gui.launcher import LauncherPanel


def _panel(qtbot) -> LauncherPanel:
    panel = LauncherPanel(AgentRegistry(persist=False))
    qtbot.addWidget(panel)
    return panel


def test_the_launcher_starts_from_the_run_defaults(qtbot) -> None:
    spec = _panel(qtbot).spec_dict()
    assert spec["models"] == []
    spec["models"] = ["resnet18"]
    # The same spec as `backbench run -m resnet18` and a client that sends only the model.
    assert spec_from_remote(spec) == spec_from_remote({"models": ["resnet18"]})


def test_the_launcher_widgets_stay_within_the_agent_bounds(qtbot) -> None:
    panel = _panel(qtbot)
    for box, field, scale in (
        (panel.target_ci, "stopping.target_ci", 100.0),
        (panel.min_iters, "stopping.min_iters", 1),
        (panel.max_time, "stopping.max_time_s", 1.0),
    ):
        declared = option(field)
        assert declared.minimum is not None and declared.maximum is not None
        assert box.minimum() / scale >= declared.minimum, field
        assert box.maximum() / scale <= declared.maximum, field
    for edge in ("minimum", "maximum"):
        panel.target_ci.setValue(getattr(panel.target_ci, edge)())
        panel.min_iters.setValue(getattr(panel.min_iters, edge)())
        panel.max_time.setValue(getattr(panel.max_time, edge)())
        spec = {**panel.spec_dict(), "models": ["resnet18"]}
        spec_from_remote(spec)  # the agent takes either end of every range
    assert max(panel.batch_boxes) <= option("batch_sizes").maximum  # type: ignore[operator]


def test_disturbed_and_worker_options_are_offered_and_sent_only_when_changed(qtbot) -> None:
    from gui.launcher import OPTIONAL_FIELDS

    panel = _panel(qtbot)
    spec = panel.spec_dict()
    # Defaults are not sent: an agent that predates these options still takes the run.
    assert not set(OPTIONAL_FIELDS) & set(spec)
    assert panel.disturbed_threshold.value() == option("disturbed_threshold").default
    assert panel.retry_disturbed.value() == option("retry_disturbed").default
    for box, field in ((panel.disturbed_threshold, "disturbed_threshold"),
                       (panel.retry_disturbed, "retry_disturbed"), (panel.max_mem, "max_mem_mb"),
                       (panel.measure_timeout, "measure_timeout_s")):  # fmt: skip
        declared = option(field)
        assert declared.maximum is not None and box.maximum() <= declared.maximum, field
    assert panel.disturbed_threshold.minimum() > 0  # the agent refuses a threshold of 0
    panel.disturbed_threshold.setValue(0.5)
    panel.retry_disturbed.setValue(2)
    panel.max_mem.setValue(2048)
    panel.measure_timeout.setValue(900)
    panel.worker_start.setCurrentText("exec")
    spec = {**panel.spec_dict(), "models": ["resnet18"]}
    assert spec["disturbed_threshold"] == 0.5 and spec["retry_disturbed"] == 2
    run = spec_from_remote(spec)
    assert (run.disturbed_threshold, run.retry_disturbed, run.max_mem_mb, run.measure_timeout_s,
            run.worker_start) == (0.5, 2, 2048, 900.0, "exec")  # fmt: skip
    for box in (panel.disturbed_threshold, panel.retry_disturbed, panel.max_mem, panel.measure_timeout):
        box.setValue(box.maximum())
    spec_from_remote({**panel.spec_dict(), "models": ["resnet18"]})  # the far end is taken too
    # The choices come back in a new launcher.
    panel.save_choices()
    again = _panel(qtbot)
    assert again.worker_start.currentText() == "exec"
    assert again.retry_disturbed.value() == panel.retry_disturbed.maximum()


def test_a_worker_runtime_is_named_never_a_path(qtbot) -> None:
    panel = _panel(qtbot)
    assert "runtime" not in panel.spec_dict()  # the agent's own interpreter
    qtbot.keyClicks(panel.runtime, "/usr/bin/python3")
    assert "/" not in panel.runtime.text()  # the validator takes no path
    panel.runtime.clear()
    qtbot.keyClicks(panel.runtime, "openvino-2022.3")
    spec = {**panel.spec_dict(), "models": ["resnet18"]}
    assert spec["runtime"] == "openvino-2022.3"
    assert spec_from_remote(spec).runtime == "openvino-2022.3"
    panel.save_choices()
    assert _panel(qtbot).runtime.text() == "openvino-2022.3"


# -- accuracy runs ----------------------------------------------------------------------------

REFERENCE_NOTE = "Evaluate the fp32 reference first"
RESNET_WEIGHTS = "/srv/models/resnet18.pth"
DATASET = "/srv/data/imagenet-val"


class FakeAgent:
    """An agent connection that answers submit at once, recording each spec sent."""

    def __init__(self, qtbot, tmp_path, devices: dict[str, list[str]] | None = None) -> None:
        from gui.agent_client import ClientState
        from gui.settings import AgentSpec

        self.registry = AgentRegistry(persist=False)
        self.connection = self.registry.add(AgentSpec(name="edge", socket_path=str(tmp_path / "a.sock")), start=False)
        self.connection.client.state = ClientState.CONNECTED
        self.connection.client.request = self.request  # type: ignore[method-assign]
        self.submitted: list[dict] = []
        self.request_ids: list[str] = []
        self.panel = LauncherPanel(self.registry)
        qtbot.addWidget(self.panel)
        self.connection.devices = devices or {"torch": ["cpu"], "openvino": ["CPU", "GPU"], "onnxruntime": ["cpu"]}
        self.connection.models = [
            {"name": "resnet18", "source": "torchvision", "params": 11_689_512},
            {"name": "mobilenet_v3_small", "source": "torchvision"},
        ]
        self.connection.changed.emit()

    def request(self, method: str, params: dict, callback) -> int:
        assert method == "submit"
        self.submitted.append(params["spec"])
        self.request_ids.append(params["client_request_id"])
        callback({"job": {"job_id": len(self.submitted), "state": "queued"}}, None)
        return len(self.submitted)


def _accuracy_launcher(qtbot, tmp_path, **kwargs) -> FakeAgent:
    agent = FakeAgent(qtbot, tmp_path, **kwargs)
    panel = agent.panel
    panel.set_checked_models(["resnet18"])
    panel.backend_combo.setCurrentText("openvino")
    panel.device_combo.setCurrentText("CPU")
    panel.precision_combo.setCurrentText("bf16")
    panel.mode_combo.setCurrentText("accuracy")
    qtbot.keyClicks(panel.accuracy.dataset, DATASET)
    panel.accuracy.layout_combo.setCurrentText("imagenet-val")
    panel.accuracy.limit.setValue(5000)
    panel.accuracy.seed.setValue(0)
    panel.accuracy.batch.setValue(8)
    panel.accuracy.set_weights_path("resnet18", RESNET_WEIGHTS)
    return agent


ASKED = {
    "models": ["resnet18"], "backend": "openvino", "device": "CPU", "precision": "bf16",
    "batch_sizes": [8], "mode": "accuracy", "weights": {"resnet18": RESNET_WEIGHTS},
    "accuracy": {"dataset": DATASET, "layout": "imagenet-val", "limit": 5000, "seed": 0},
}  # fmt: skip
REFERENCE = {**ASKED, "backend": "torch", "device": "cpu", "precision": "fp32"}


def test_accuracy_mode_hides_the_timing_options_and_shows_its_own(qtbot, tmp_path) -> None:
    panel = FakeAgent(qtbot, tmp_path).panel
    panel.show()
    assert panel.accuracy.isHidden() and panel.target_ci.isVisible()
    panel.mode_combo.setCurrentText("accuracy")
    assert panel.accuracy.isVisible()
    for widget in (panel.target_ci, panel.min_iters, panel.disturbed_threshold, panel.batch_boxes[1]):
        assert not widget.isVisible()
    assert not panel.max_time.isEnabled() and panel.measure_timeout.isEnabled()
    assert panel.accuracy.reference_first.isChecked()  # checked by default
    assert "inside the agent's --data-dir" in panel.accuracy.dataset.placeholderText()
    assert [panel.accuracy.layout_combo.itemText(i) for i in range(panel.accuracy.layout_combo.count())] == [
        "auto", "imagefolder", "imagenet-val", "cifar10"]  # fmt: skip
    panel.mode_combo.setCurrentText("latency")
    assert panel.accuracy.isHidden() and panel.target_ci.isVisible()


def test_an_accuracy_run_queues_the_fp32_reference_first(qtbot, tmp_path) -> None:
    agent = _accuracy_launcher(qtbot, tmp_path)
    panel = agent.panel
    assert "torch/cpu/fp32" in panel.accuracy.reference_note.text()
    assert "after 1 reference case(s)" in panel.summary.text()
    jobs: list[dict] = []
    panel.submitted.connect(lambda _connection, job: jobs.append(job))
    panel.submit()
    # The reference first (the agent's queue is FIFO), then the asked platform, exactly.
    assert agent.submitted == [REFERENCE, ASKED]
    assert len(set(agent.request_ids)) == 2
    assert [job["job_id"] for job in jobs] == [1, 2]
    assert "job 1 (reference torch/cpu/fp32) then job 2 (accuracy) queued on edge" in panel.status.text().lower()
    for spec in agent.submitted:  # what the agent checks a spec with takes both
        run = spec_from_remote(spec)
        assert run.accuracy is not None and run.accuracy.limit == 5000 and run.batch_sizes == (8,)


def test_one_job_when_the_platform_is_the_reference_or_the_box_is_unchecked(qtbot, tmp_path) -> None:
    agent = _accuracy_launcher(qtbot, tmp_path)
    panel = agent.panel
    panel.accuracy.reference_first.setChecked(False)
    panel.submit()
    assert agent.submitted == [ASKED]
    assert "No agreement figures unless" in panel.accuracy.reference_note.text()

    agent.submitted.clear()
    panel.accuracy.reference_first.setChecked(True)
    panel.backend_combo.setCurrentText("torch")
    panel.precision_combo.setCurrentText("fp32")
    assert "is the reference platform" in panel.accuracy.reference_note.text()
    panel.submit()
    assert agent.submitted == [REFERENCE]


def test_a_missing_dataset_or_weights_blocks_the_submission_with_a_message(qtbot, tmp_path) -> None:
    agent = _accuracy_launcher(qtbot, tmp_path)
    panel = agent.panel
    panel.accuracy.dataset.clear()
    panel.submit()
    assert agent.submitted == []
    assert "Give the dataset" in panel.status.text() and "#b00020" in panel.status.styleSheet()
    assert "b00020" in panel.accuracy.dataset.styleSheet()  # the field is marked...
    qtbot.keyClicks(panel.accuracy.dataset, DATASET)
    assert panel.accuracy.dataset.styleSheet() == ""  # ...until it is edited

    panel.accuracy.set_weights_path("resnet18", "")
    panel.submit()
    assert agent.submitted == []
    assert "resnet18 would be scored with random weights" in panel.status.text()
    panel.accuracy.set_weights_path("resnet18", RESNET_WEIGHTS)
    panel.submit()
    assert agent.submitted == [REFERENCE, ASKED]


def test_a_reference_the_agent_cannot_run_blocks_until_unticked(qtbot, tmp_path) -> None:
    agent = _accuracy_launcher(qtbot, tmp_path, devices={"openvino": ["CPU", "MYRIAD"]})
    panel = agent.panel
    panel.submit()
    assert agent.submitted == []
    assert "offers no torch cpu" in panel.status.text() and REFERENCE_NOTE in panel.status.text()
    panel.accuracy.reference_first.setChecked(False)
    panel.submit()
    assert agent.submitted == [ASKED]


def test_accuracy_choices_come_back_and_keep_the_timed_ones(qtbot, tmp_path) -> None:
    agent = _accuracy_launcher(qtbot, tmp_path)
    agent.panel.batch_boxes[4].setChecked(True)
    agent.panel.save_choices()
    again = FakeAgent(qtbot, tmp_path).panel
    assert again.is_accuracy()
    assert again.accuracy.accuracy_dict() == ASKED["accuracy"]
    assert again.accuracy.batch.value() == 8
    assert 4 in again.batch_sizes()  # the latency batch sizes are not the accuracy one
    again.set_checked_models(["resnet18"])
    assert again.spec_dict()["weights"] == {"resnet18": RESNET_WEIGHTS}


def test_a_resubmission_after_a_lost_reply_reuses_each_jobs_request_id(qtbot, tmp_path) -> None:
    from core.errors import ProtocolError
    from gui.agent_client import CONNECTION_LOST

    agent = _accuracy_launcher(qtbot, tmp_path)
    answer = agent.request

    def lose_the_second(method: str, params: dict, callback) -> int:
        if len(agent.submitted) == 1:  # the reference was queued; the asked job's reply is lost
            agent.submitted.append(params["spec"])
            agent.request_ids.append(params["client_request_id"])
            callback(None, ProtocolError(CONNECTION_LOST, "Lost the agent."))
            return 2
        return answer(method, params, callback)

    agent.connection.client.request = lose_the_second  # type: ignore[method-assign]
    agent.panel.submit()
    assert "Not submitted, the accuracy job (job 1 (reference torch/cpu/fp32) queued)" in agent.panel.status.text()
    agent.connection.client.request = answer  # type: ignore[method-assign]
    agent.panel.submit()
    # The same ids again: the agent answers the reference as a duplicate, queues nothing twice.
    assert agent.request_ids[2:] == agent.request_ids[:2]


def test_the_reference_runs_on_the_agents_own_interpreter_and_is_named_as_such(qtbot, tmp_path) -> None:
    agent = _accuracy_launcher(qtbot, tmp_path)
    panel = agent.panel
    qtbot.keyClicks(panel.runtime, "openvino-2022.3")
    qtbot.keyClicks(panel.run_name, "nuc imagenet")
    panel.max_mem.setValue(4096)
    panel.submit()
    reference, asked = agent.submitted
    assert asked == {**ASKED, "runtime": "openvino-2022.3", "name": "nuc imagenet", "max_mem_mb": 4096}
    # A named runtime (an NCS2's OpenVINO 2022.3) has no torch: the reference uses the agent's own.
    assert reference == {**REFERENCE, "name": "nuc imagenet (reference torch/cpu/fp32)", "max_mem_mb": 4096}
