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
