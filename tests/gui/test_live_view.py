"""The live view without an agent: ring buffers, rolling percentiles, a panel fed by
hand-made events and telemetry, units from the metric catalogue, panels side by side."""

from __future__ import annotations

import numpy as np
import pytest

from core.protocol.events import JobEvent
from gui.agent_client import memory_array, samples_array
from gui.agents import AgentRegistry
from gui.live_view import (
    LATENCY_CAPACITY,
    LivePanel,
    LiveView,
    format_duration,
    rolling_percentiles,
)
from gui.ring_buffer import RingBuffer
from gui.settings import AgentSpec

# -- ring buffer ------------------------------------------------------------------------------


def test_ring_buffer_keeps_the_newest_rows_in_order() -> None:
    ring = RingBuffer(5, 2)
    ring.append([[0, 0], [1, 10], [2, 20]])
    assert ring.latest().tolist() == [[0, 0], [1, 10], [2, 20]]
    ring.append([[3, 30], [4, 40], [5, 50], [6, 60]])  # wraps around
    assert len(ring) == 5 and ring.total == 7
    assert ring.column(0).tolist() == [2, 3, 4, 5, 6]
    assert ring.latest(2).tolist() == [[5, 50], [6, 60]]


def test_ring_buffer_matches_a_list_over_random_appends() -> None:
    rng = np.random.default_rng(3)
    ring, reference, counter = RingBuffer(37, 1), [], 0
    for _ in range(300):
        k = int(rng.integers(0, 60))
        block = np.arange(counter, counter + k, dtype=float)
        counter += k
        ring.append(block)
        reference.extend(block.tolist())
        assert ring.latest()[:, 0].tolist() == reference[-37:]
    assert ring.total == counter


def test_ring_buffer_latest_is_a_view_not_a_copy() -> None:
    ring = RingBuffer(4, 1)
    ring.append(np.arange(3.0))
    assert np.shares_memory(ring.latest(), ring._data)


def test_ring_buffer_rejects_the_wrong_width() -> None:
    with pytest.raises(ValueError, match="width 2"):
        RingBuffer(4, 2).append([[1, 2, 3]])


# -- rolling percentiles ----------------------------------------------------------------------


def test_rolling_percentiles_match_brute_force() -> None:
    values = np.random.default_rng(1).lognormal(size=2000)
    positions, table = rolling_percentiles(values, window=100, points=50)
    assert len(positions) == 50 and positions[-1] == 1999
    for j, i in enumerate(positions):
        window = values[max(0, i - 99) : i + 1]
        assert table[j] == pytest.approx(np.percentile(window, [50, 90, 99]))


def test_rolling_percentiles_over_the_part_on_screen() -> None:
    values = np.arange(5000, dtype=float)
    positions, table = rolling_percentiles(values, window=500, points=100, start=4000)
    assert positions[0] == 4000 and positions[-1] == 4999 and len(positions) == 100
    assert table[0, 0] == pytest.approx(np.median(values[3501:4001]))


def test_rolling_percentiles_of_nothing_and_of_few() -> None:
    positions, table = rolling_percentiles(np.zeros(0))
    assert len(positions) == 0 and table.shape == (0, 3)
    positions, table = rolling_percentiles(np.array([5.0, 1.0, 3.0]))
    assert positions.tolist() == [0, 1, 2]
    assert table[-1, 0] == 3.0  # the median of all three so far


def test_format_duration() -> None:
    assert format_duration(42) == "42 s"
    assert format_duration(125) == "2 min 05 s"
    assert format_duration(3 * 3600 + 60) == "3 h 01 min"
    assert format_duration(float("nan")) == "?"


# -- telemetry parsing -----------------------------------------------------------------------


def test_samples_and_memory_arrays_from_wire_data() -> None:
    assert samples_array([[1, 10], [2, 20]]).tolist() == [[1, 10], [2, 20]]
    assert samples_array([[1, 2, 3]]).shape == (0, 2)  # malformed: nothing, never a crash
    assert samples_array("junk").shape == (0, 2)
    memory = memory_array([{"t_ns": 5, "rss_mb": 100.5, "device_memory": {"cuda:0": 30, "cuda:1": 12}},
                           {"t_ns": 6, "rss_mb": None, "device_memory": {}}, "junk"])  # fmt: skip
    assert memory.shape == (2, 3)
    assert memory[0].tolist() == [5.0, 100.5, 42.0]
    assert np.isnan(memory[1, 1]) and np.isnan(memory[1, 2])


# -- a panel fed by hand ----------------------------------------------------------------------


def _points(curve) -> int:
    x, _y = curve.getData()
    return 0 if x is None else len(x)


def _samples(start: int, k: int, latency_ns: int) -> np.ndarray:
    return np.column_stack([np.arange(start, start + k), np.full(k, latency_ns)]).astype(np.int64)


def test_panel_follows_a_job_and_draws(qtbot) -> None:
    panel = LivePanel(title="edge")
    qtbot.addWidget(panel)
    panel.show()
    panel.on_job_event(JobEvent.STARTED, {"job_id": 7, "cases_total": 2, "run_id": 1})
    panel.on_job_event(JobEvent.CASE_STARTED, {"job_id": 7, "case_index": 0, "cases_total": 2, "label": "resnet18 b1"})
    panel.on_telemetry(7, _samples(0, 600, 2_000_000), memory_array([{"t_ns": 10**9, "rss_mb": 300.0,
                                                                       "device_memory": {}}]))  # fmt: skip
    panel.on_telemetry(7, _samples(600, 100, 4_000_000), memory_array([]))
    assert panel.redraw() is True
    assert panel.redraw() is False  # nothing new: no redraw
    x, y = panel.latency_curve.getData()
    assert len(x) == 700 and y[-1] == pytest.approx(4e-3)  # seconds, shown with an SI prefix (ms)
    _x, p99 = panel.rolling_curves["p99"].getData()
    assert p99[-1] == pytest.approx(4e-3)
    _x, median = panel.rolling_curves["median"].getData()
    assert median[-1] == pytest.approx(2e-3)  # 400 of the last 500 are 2 ms
    edges, counts = panel.hist_curve.getData()
    assert counts.sum() == 700
    assert "median 2.00 ms" in panel.stats.text() and "p99 4.00 ms" in panel.stats.text()
    assert "RSS 300 MB" in panel.stats.text()
    assert "job 7 running: resnet18 b1" in panel.heading.text()
    assert panel.eta.text() == "ETA after the first case"
    panel.on_job_event(JobEvent.CASE_FINISHED, {"job_id": 7, "case_index": 0})
    assert panel.progress.value() == 1 and panel.progress.maximum() == 2
    assert panel.eta.text().startswith("ETA ") and "first" not in panel.eta.text()
    # The next case starts from an empty latency trace; memory keeps the job's history.
    panel.on_job_event(JobEvent.CASE_STARTED, {"job_id": 7, "case_index": 1, "cases_total": 2, "label": "resnet18 b2"})
    panel.redraw()
    assert _points(panel.latency_curve) == 0
    assert len(panel.memory) == 1
    panel.on_gap(250)
    panel.on_telemetry(7, _samples(0, 10, 1_000_000), memory_array([]))
    panel.redraw()
    panel.flush()  # the text is refreshed a few times a second; flush draws it now
    assert "250 samples dropped" in panel.stats.text()
    assert not panel.slow_parts_pending
    panel.on_job_event(JobEvent.FINISHED, {"job_id": 7, "state": "finished"})
    assert panel.eta.text() == "finished"


def test_panel_caps_memory_whatever_arrives(qtbot) -> None:
    panel = LivePanel(title="x")
    qtbot.addWidget(panel)
    for start in range(0, 3 * LATENCY_CAPACITY, 5000):
        panel.on_telemetry(1, _samples(start, 5000, 1000), memory_array([]))
    assert len(panel.latency) == LATENCY_CAPACITY
    assert panel.latency.total == panel.samples_received == 3 * LATENCY_CAPACITY
    panel.redraw()
    x, _y = panel.latency_curve.getData()
    assert x[-1] == 3 * LATENCY_CAPACITY - 1  # iterations keep counting across the ring


def test_units_come_from_the_metric_catalogue(qtbot) -> None:
    panel = LivePanel(title="x")
    qtbot.addWidget(panel)
    panel.apply_units({"latency_ns": "ns", "rss_mb": "MiB"})
    assert panel.latency_plot.getAxis("left").labelUnits == "s"
    assert panel.memory_plot.getAxis("left").labelUnits == "MiB"
    panel.apply_units({"latency_ns": "ticks"})
    panel.on_telemetry(1, _samples(0, 3, 5), memory_array([]))
    panel.redraw()
    assert panel.latency_plot.getAxis("left").labelUnits == "ticks"
    assert "median 5 ticks" in panel.stats.text()


def test_events_of_another_job_are_ignored(qtbot) -> None:
    panel = LivePanel(title="x")
    qtbot.addWidget(panel)
    panel.on_job_event(JobEvent.STARTED, {"job_id": 1, "cases_total": 3})
    panel.on_job_event(JobEvent.CASE_FINISHED, {"job_id": 2, "case_index": 0})
    assert panel.cases_done == 0
    panel.on_subscribed({"running": {"job_id": 4, "case_index": 2, "cases_total": 5, "case": "vgg16 b8"}})
    assert panel.job_id == 4 and panel.cases_done == 2 and "vgg16 b8" in panel.heading.text()


def test_one_panel_per_agent_side_by_side(qtbot, tmp_path) -> None:
    registry = AgentRegistry(persist=False)
    view = LiveView(registry)
    qtbot.addWidget(view)
    assert view.placeholder.isVisibleTo(view)
    for name in ("edge", "cloud"):
        registry.add(AgentSpec(name=name, socket_path=str(tmp_path / f"{name}.sock")))
    assert list(view.panels) == ["edge", "cloud"]
    assert view.splitter.count() == 2 and not view.placeholder.isVisibleTo(view)
    edge = view.panels["edge"]
    registry.get("edge").client.telemetry.emit(3, _samples(0, 5, 1000), memory_array([]))
    assert edge.samples_received == 5 and view.panels["cloud"].samples_received == 0
    assert "No agent at" in edge.heading.text()  # nothing listens on that socket
    registry.remove("cloud")
    assert list(view.panels) == ["edge"]
    registry.stop_all()


def test_the_view_timer_draws_and_catches_up_the_slow_parts(qtbot) -> None:
    view = LiveView(None)
    panel = LivePanel(title="timer")
    view.add_panel(panel)
    qtbot.addWidget(view)
    view.show()
    panel.on_telemetry(1, _samples(0, 10, 2_000_000), memory_array([]))
    qtbot.waitUntil(lambda: _points(panel.latency_curve) == 10, timeout=5000)  # no explicit redraw
    panel.on_telemetry(1, _samples(10, 10, 3_000_000), memory_array([]))
    qtbot.waitUntil(lambda: "20 iterations shown" in panel.stats.text(), timeout=5000)
    assert panel.redraw_count >= 2


# -- disturbed cases (issue 9) ------------------------------------------------------------------


def _case_end(job_id: int, index: int, *, disturbed, interference, attempt: int = 1) -> dict:
    measurement = {"case": {"model": "resnet18", "backend": "torch", "device": "cpu",
                            "precision": "fp32", "batch_size": 1}, "status": "ok",
                   "disturbed": disturbed, "interference": interference, "attempt": attempt}  # fmt: skip
    return {"job_id": job_id, "case_index": index, "measurement": measurement}


def _start_case(panel: LivePanel, job_id: int, index: int, label: str) -> None:
    panel.on_job_event(JobEvent.CASE_STARTED, {"job_id": job_id, "case_index": index, "cases_total": 3, "label": label})


def _memory_at(t_s: float, rss_mb: float = 300.0) -> np.ndarray:
    return memory_array([{"t_ns": int(t_s * 1e9), "rss_mb": rss_mb, "device_memory": {}}])


def _regions(panel: LivePanel) -> list:
    import pyqtgraph as pg

    return [item for item in panel.memory_plot.items if isinstance(item, pg.LinearRegionItem)]


def test_a_disturbed_case_is_flagged_with_its_interference(qtbot) -> None:
    panel = LivePanel(title="edge")
    qtbot.addWidget(panel)
    panel.on_job_event(JobEvent.STARTED, {"job_id": 5, "cases_total": 3})
    _start_case(panel, 5, 0, "resnet18 b1")
    panel.on_telemetry(5, _samples(0, 20, 1_000_000), _memory_at(0.0))
    panel.on_job_event(JobEvent.CASE_FINISHED, _case_end(5, 0, disturbed=False, interference=0.02))
    assert not panel.disturbed_label.isVisibleTo(panel)  # a clean case raises no flag
    assert "disturbed" not in panel.progress.format()
    _start_case(panel, 5, 1, "resnet18 b8")
    panel.on_telemetry(5, _samples(0, 20, 1_000_000), _memory_at(2.0))
    panel.on_telemetry(5, _samples(20, 20, 1_000_000), _memory_at(5.0))
    panel.on_job_event(JobEvent.CASE_FINISHED, _case_end(5, 1, disturbed=True, interference=0.4213))
    assert panel.disturbed_label.isVisibleTo(panel)
    assert "1 disturbed case" in panel.disturbed_label.text()
    assert "resnet18 b8 (0.42 cores of other work)" in panel.disturbed_label.text()
    assert "resnet18 b1" not in panel.disturbed_label.text()
    assert panel.progress.format() == "%v / %m cases, 1 disturbed"
    assert "resnet18 b8 - disturbed: 0.42 cores of other work" in panel.heading.text()
    # The case's span is shaded on the job's memory timeline.
    (region,) = _regions(panel)
    assert region.getRegion() == pytest.approx((2.0, 5.0))
    # A retry of the same case that ran undisturbed takes the flag away.
    _start_case(panel, 5, 1, "resnet18 b8")
    panel.on_job_event(JobEvent.CASE_FINISHED, _case_end(5, 1, disturbed=False, interference=0.01, attempt=2))
    assert not panel.disturbed_label.isVisibleTo(panel) and not panel.disturbed
    # A new job starts clean.
    _start_case(panel, 5, 2, "vgg16 b1")
    panel.on_job_event(JobEvent.CASE_FAILED, _case_end(5, 2, disturbed=True, interference=1.5, attempt=3))
    assert "vgg16 b1 (1.5 cores of other work, attempt 3)" in panel.disturbed_label.text()
    panel.on_job_event(JobEvent.STARTED, {"job_id": 6, "cases_total": 1})
    assert not panel.disturbed and not _regions(panel)
    assert not panel.disturbed_label.isVisibleTo(panel)


def test_case_events_from_an_older_agent_flag_nothing(qtbot) -> None:
    panel = LivePanel(title="old")
    qtbot.addWidget(panel)
    panel.on_job_event(JobEvent.STARTED, {"job_id": 1, "cases_total": 2})
    _start_case(panel, 1, 0, "alexnet b1")
    panel.on_job_event(JobEvent.CASE_FINISHED, {"job_id": 1, "case_index": 0})  # no measurement
    _start_case(panel, 1, 1, "alexnet b2")
    bad = _case_end(1, 1, disturbed="yes", interference="lots")  # wrong types: not trusted
    panel.on_job_event(JobEvent.CASE_FINISHED, bad)
    assert panel.cases_done == 2 and not panel.disturbed
    assert not panel.disturbed_label.isVisibleTo(panel)
    assert panel.progress.format() == "%v / %m cases"


# -- accuracy progress (issue 12) ---------------------------------------------------------------


def test_accuracy_progress_arrives_through_the_client_and_shows_in_live_and_queue(qtbot, tmp_path) -> None:
    """job.case_progress travels the client's own path (socket, line decoder, dispatch) into
    the live panel's images bar and the queue's progress cell; a notification this GUI does
    not know and a malformed progress are dropped without harm."""
    from core.protocol.framing import encode
    from core.protocol.messages import make_job_event, make_notification
    from gui.queue_view import COLUMNS, QueueView
    from tests.gui.test_client import FakeAgent, _hello

    label = "resnet18 openvino/CPU/bf16 b8 accuracy"
    pushed = [
        make_job_event(JobEvent.STARTED, 3, cases_total=2, run_id=1),
        make_job_event(JobEvent.CASE_STARTED, 3, case_index=0, cases_total=2, label=label),
        make_notification("job.case_phase", {"job_id": 3, "phase": "decode"}),  # a newer agent's event
        make_job_event(JobEvent.CASE_PROGRESS, 3, case_index=0, images_done="many", images_total=5000),
        make_job_event(JobEvent.CASE_PROGRESS, 3, case_index=0, images_done=1234, images_total=5000),
    ]
    path = str(tmp_path / "fake.sock")
    fake = FakeAgent(path, _hello(), pushed)
    registry = AgentRegistry(persist=False)
    view, queue = LiveView(registry), QueueView(registry)
    qtbot.addWidget(view)
    qtbot.addWidget(queue)
    view.show()
    registry.add(AgentSpec(name="edge", socket_path=path))
    panel = view.panels["edge"]
    qtbot.waitUntil(lambda: panel.images == (1234, 5000), timeout=5000)
    assert panel.images_bar.isVisibleTo(panel)
    assert panel.images_bar.format() == "1,234 / 5,000 images"
    assert (panel.images_bar.value(), panel.images_bar.maximum()) == (1234, 5000)
    assert label in panel.heading.text() and panel.progress.value() == 0
    progress_column = COLUMNS.index("Progress")
    qtbot.waitUntil(lambda: queue.table.rowCount() == 1, timeout=5000)
    qtbot.waitUntil(lambda: "1,234 / 5,000 images" in queue.table.item(0, progress_column).text(), timeout=5000)
    assert queue.table.item(0, progress_column).text() == f"0/2  ({label}: 1,234 / 5,000 images)"

    # The case ends, the next starts: its bar goes until its own images are reported.
    peer = fake.peers[0]
    peer.write(encode(make_job_event(JobEvent.CASE_FINISHED, 3, case_index=0, measurement={})))
    peer.write(encode(make_job_event(JobEvent.CASE_STARTED, 3, case_index=1, cases_total=2, label="vgg16 b8")))
    qtbot.waitUntil(lambda: panel.case_index == 1, timeout=5000)
    assert panel.images is None and not panel.images_bar.isVisibleTo(panel)
    qtbot.waitUntil(lambda: queue.table.item(0, progress_column).text() == "1/2  (vgg16 b8)", timeout=5000)
    registry.stop_all()
    fake.close()


def test_a_progress_the_panel_cannot_read_changes_nothing(qtbot) -> None:
    panel = LivePanel(title="x")
    qtbot.addWidget(panel)
    panel.on_job_event(JobEvent.STARTED, {"job_id": 1, "cases_total": 1})
    for params in ({"images_done": 5, "images_total": 0}, {"images_done": True, "images_total": 9},
                   {"images_done": -1, "images_total": 9}, {"images_total": 9}):  # fmt: skip
        panel.on_job_event(JobEvent.CASE_PROGRESS, {"job_id": 1, **params})
        assert panel.images is None and panel.images_bar.isHidden()
    panel.on_job_event(JobEvent.CASE_PROGRESS, {"job_id": 1, "images_done": 12_000, "images_total": 10_000})
    assert panel.images_bar.format() == "10,000 / 10,000 images"  # clipped to the total
    panel.on_job_event(JobEvent.CASE_PROGRESS, {"job_id": 2, "images_done": 1, "images_total": 2})
    assert panel.images == (10_000, 10_000)  # another job's progress is not this one's
