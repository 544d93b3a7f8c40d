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
