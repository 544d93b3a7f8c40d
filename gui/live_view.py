"""The live view: the running case of each agent, drawn as it is measured.

Telemetry slots only append to numpy ring buffers and set a dirty flag; one QTimer
(about 30 Hz) redraws the panels that changed, with ``skipFiniteCheck``, peak
downsampling and clip-to-view, so the cost of a redraw does not grow with the message
rate and the UI thread never waits. Rolling percentiles are computed at redraw time over
the last ``ROLLING_WINDOW`` samples, on at most ``ROLLING_POINTS`` positions.

One ``LivePanel`` per agent, side by side, so an edge device and a cloud GPU can be
watched at once.

An accuracy case reports how many of its images are done (``job.case_progress``, at most
twice a second); a second bar shows "1,234 / 5,000 images" while one runs. Its telemetry
is one latency per batch, drawn like a latency case's.

A case that ends disturbed (other processes used more CPU than the run's threshold while
it warmed up and was timed) is flagged: counted in the progress bar, named with its
interference in a warning line, and shaded on the memory plot's job timeline.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QSplitter, QVBoxLayout, QWidget

from core.protocol.events import ENDING_STATE, JOB_ENDING_EVENTS, JobEvent
from core.text import as_real, significant
from gui.agent_client import images_progress, images_text
from gui.agents import AgentConnection, AgentRegistry
from gui.ring_buffer import RingBuffer

logger = logging.getLogger(__name__)

REDRAW_MS = 33  # ~30 Hz
LATENCY_CAPACITY = 20_000
MEMORY_CAPACITY = 4096
ROLLING_WINDOW = 500
ROLLING_POINTS = 120
SLOW_PARTS_HZ = 8
HISTOGRAM_SAMPLES = 5000
HISTOGRAM_BINS = 40
SCROLL_ITERATIONS = 1000
ROLLING_STYLE = (("median", 50, "#2ca02c"), ("p90", 90, "#ff7f0e"), ("p99", 99, "#d62728"))
TRACE_COLOR = "#1f77b4"
RSS_COLOR = "#9467bd"
DEVICE_COLOR = "#8c564b"
DISTURBED_COLOR = "#8a4b00"
DISTURBED_SHADE = (230, 159, 0, 60)
NS_PER_S = 1e9
DISTURBED_NAMED = 4  # cases named in the warning line; the tool tip names them all
DISTURBED_MARKS = 200  # shaded spans on the memory plot, newest kept


@dataclass(frozen=True, slots=True)
class DisturbedCase:
    """A case that other processes disturbed, as its job event reported it."""

    label: str
    interference: float | None  # cores' worth of other processes' CPU
    attempt: int | None

    def detail(self) -> str:
        cores = (
            f"{significant(self.interference, 2)} cores of other work"
            if self.interference is not None
            else "other work above the threshold"
        )
        again = f", attempt {self.attempt}" if self.attempt and self.attempt > 1 else ""
        return cores + again

    def text(self) -> str:
        return f"{self.label} ({self.detail()})"


def case_outcome(params: dict[str, Any]) -> tuple[bool | None, float | None, int | None]:
    """(disturbed, interference in cores, attempt) from a case's end event; None each where
    the event does not say (an older agent, or a value of the wrong type)."""
    measurement = params.get("measurement")
    if not isinstance(measurement, dict):
        return None, None, None
    disturbed = measurement.get("disturbed")
    attempt = measurement.get("attempt")
    return (
        disturbed if isinstance(disturbed, bool) else None,
        as_real(measurement.get("interference")),
        attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else None,
    )


def rolling_percentiles(
    values: np.ndarray, window: int = ROLLING_WINDOW, points: int = ROLLING_POINTS,
    percentiles: tuple[float, ...] = (50, 90, 99), start: int = 0,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Percentiles of the trailing ``window`` values, at up to ``points`` positions
    spread over [start, len(values)) (the part on screen).

    Returns (positions, table) with table[j, k] the percentile k over values[max(0,
    i-window+1) : i+1] for i = positions[j]; the first positions use what exists so far.
    """
    n = len(values)
    start = min(max(0, start), n)
    if n == start:
        return np.zeros(0, dtype=np.int64), np.zeros((0, len(percentiles)))
    positions = np.unique(np.linspace(start, n - 1, min(n - start, points)).astype(np.int64))
    table = np.empty((len(positions), len(percentiles)))
    full = positions >= window - 1
    for j in np.flatnonzero(~full):  # the ramp-up: expanding windows, few of them
        table[j] = np.percentile(values[: positions[j] + 1], percentiles)
    if full.any():
        windows = np.lib.stride_tricks.sliding_window_view(values, window)
        chosen = windows[positions[full] - window + 1]
        table[full] = np.percentile(chosen, percentiles, axis=1).T
    return positions, table


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min {seconds % 60:02.0f} s"
    return f"{seconds // 3600:.0f} h {seconds % 3600 // 60:02.0f} min"


def _unit_scale(unit: str) -> tuple[str, float]:
    """A catalogue unit -> (the unit pyqtgraph shows, factor from the raw value)."""
    return {"ns": ("s", 1e-9), "us": ("s", 1e-6), "ms": ("s", 1e-3)}.get(unit, (unit, 1.0))


class LivePanel(QWidget):
    """One agent's running case: latency, rolling percentiles, histogram, memory, progress."""

    def __init__(self, connection: AgentConnection | None = None, title: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.connection = connection
        self.title = title or (connection.name if connection else "agent")
        self.latency = RingBuffer(LATENCY_CAPACITY, 2)  # [iteration, latency (display unit)]
        self.memory = RingBuffer(MEMORY_CAPACITY, 3)  # [t_s since the job began, rss_mb, device_mb]
        self.samples_received = 0
        self.memory_received = 0
        self.dropped = 0
        self.redraw_count = 0
        self.job_id: int | None = None
        self.case_label = ""  # the heading's words for the case: its name and how it ended
        self.case_name = ""  # the case's name as its start event gave it
        self.case_index: int | None = None
        self.cases_total = 0
        self.cases_done = 0
        self.job_state = ""
        self.images: tuple[int, int] | None = None  # an accuracy case's (done, total)
        self._images_first: tuple[float, int] | None = None  # (monotonic s, done) of its first report
        # Disturbed cases of this job by case index (a retried case keeps its last attempt).
        self.disturbed: dict[int, DisturbedCase] = {}
        self._disturbed_marks: list[pg.LinearRegionItem] = []
        # The case's first memory sample, on the memory plot's clock: where its span starts.
        self._case_started_t: float | None = None
        self._iterations = 0  # in the current case
        self._memory_origin_ns: float | None = None
        self._job_started = 0.0
        self._dirty = False
        self._dirty_slow = False
        self._slow_drawn_s = -math.inf
        self._latency_scale = 1e-9
        self._latency_unit = "s"
        self._build()
        if connection is not None:
            client = connection.client
            client.telemetry.connect(self.on_telemetry)
            client.job_event.connect(self.on_job_event)
            client.gap.connect(self.on_gap)
            client.subscribed.connect(self.on_subscribed)
            client.connected.connect(lambda _hello: self.apply_units(connection.metric_units()))
            client.state_changed.connect(lambda _s: self._update_header())
            if connection.hello:
                self.apply_units(connection.metric_units())

    # -- widgets ---------------------------------------------------------------------------

    def _build(self) -> None:
        self.heading = QLabel()
        self.heading.setStyleSheet("font-weight: bold;")
        self.heading.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m cases")
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.eta = QLabel("ETA -")
        self.stats = QLabel("No samples yet.")
        self.stats.setWordWrap(True)
        self.disturbed_label = QLabel()
        self.disturbed_label.setWordWrap(True)
        self.disturbed_label.setStyleSheet(f"color: {DISTURBED_COLOR}; font-weight: bold;")
        self.disturbed_label.setVisible(False)
        self.images_bar = QProgressBar()
        self.images_bar.setVisible(False)
        self.images_bar.setToolTip("The running accuracy case's images")
        progress_row = QHBoxLayout()
        progress_row.addWidget(self.progress, 1)
        progress_row.addWidget(self.images_bar, 1)
        progress_row.addWidget(self.eta)

        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground("w")
        self.latency_plot = self.graphics.addPlot(row=0, col=0, colspan=2)
        # The title doubles as the legend: a legend box would sit on the newest points.
        self.latency_plot.setTitle(
            f'Latency per <span style="color:{TRACE_COLOR}">iteration</span>; rolling '
            + ", ".join(f'<span style="color:{color}">{name}</span>' for name, _q, color in ROLLING_STYLE)
            + f" of the last {ROLLING_WINDOW}",
            size="10pt",
        )
        self.latency_plot.setLabel("bottom", "Iteration")
        # no grid: alpha-blended grid lines cost ~8 ms an axis per frame at this size
        self.latency_plot.setDownsampling(mode="peak")
        self.latency_plot.setClipToView(True)
        self.latency_plot.enableAutoRange(axis="y")
        self.latency_plot.setAutoVisible(y=True)
        self.latency_curve = self.latency_plot.plot(pen=pg.mkPen(TRACE_COLOR, width=1))
        self.rolling_curves = {
            name: self.latency_plot.plot(pen=pg.mkPen(color, width=2)) for name, _q, color in ROLLING_STYLE
        }
        self.hist_plot = self.graphics.addPlot(row=1, col=0)
        self.hist_plot.setTitle("Latency histogram (this case)", size="10pt")
        self.hist_plot.setLabel("left", "Iterations")
        self.hist_curve = self.hist_plot.plot(stepMode="center", fillLevel=0, brush=(31, 119, 180, 120),
                                              pen=pg.mkPen("#1f77b4"))  # fmt: skip
        self.memory_plot = self.graphics.addPlot(row=1, col=1)
        self.memory_plot.setTitle(f'Worker memory: <span style="color:{RSS_COLOR}">process RSS</span>', size="10pt")
        self.memory_plot.setLabel("bottom", "Time since the job began", units="s")
        self.memory_plot.setDownsampling(mode="peak")
        self.memory_plot.setClipToView(True)

        self.rss_curve = self.memory_plot.plot(pen=pg.mkPen(RSS_COLOR, width=2))
        self.device_curve = self.memory_plot.plot(pen=pg.mkPen(DEVICE_COLOR, width=2), connect="finite")
        self._device_titled = False
        self.apply_units({})

        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.heading)
        layout.addLayout(progress_row)
        layout.addWidget(self.stats)
        layout.addWidget(self.disturbed_label)
        layout.addWidget(self.graphics, 1)
        self._update_header()

    def apply_units(self, units: dict[str, str]) -> None:
        """Axis units from the agent's metric catalogue (latency_ns, rss_mb)."""
        self._latency_unit, self._latency_scale = _unit_scale(units.get("latency_ns", "ns"))
        self.latency_plot.setLabel("left", "Latency", units=self._latency_unit)
        self.hist_plot.setLabel("bottom", "Latency", units=self._latency_unit)
        memory_unit = units.get("rss_mb", "MB")
        self.memory_plot.setLabel("left", "Memory", units=memory_unit)
        # "MB" is already scaled: an SI prefix on top would read "kMB".
        self.memory_plot.getAxis("left").enableAutoSIPrefix(False)

    # -- incoming (cheap: append and mark dirty) --------------------------------------------

    def on_telemetry(self, job_id: int, samples: np.ndarray, memory: np.ndarray) -> None:
        if job_id != self.job_id:
            self._adopt_job(job_id)
        k = len(samples)
        if k:
            rows = np.empty((k, 2))
            rows[:, 0] = np.arange(self._iterations, self._iterations + k)
            rows[:, 1] = samples[:, 1] * self._latency_scale
            self._iterations += k
            self.latency.append(rows)
            self.samples_received += k
        m = len(memory)
        if m:
            if self._memory_origin_ns is None:
                self._memory_origin_ns = float(memory[0, 0])
            rows = memory.copy()
            rows[:, 0] = (rows[:, 0] - self._memory_origin_ns) / NS_PER_S
            if self._case_started_t is None:
                self._case_started_t = float(rows[0, 0])
            self.memory.append(rows)
            self.memory_received += m
        self._dirty = True

    def on_gap(self, dropped: int) -> None:
        self.dropped += dropped
        self._dirty = True

    def on_subscribed(self, result: dict[str, Any]) -> None:
        running = result.get("running")
        if isinstance(running, dict) and isinstance(running.get("job_id"), int):
            self._adopt_job(running["job_id"])
            self.cases_total = int(running.get("cases_total") or 0)
            self.case_index = running.get("case_index")
            self.cases_done = int(self.case_index or 0)
            self.case_label = self.case_name = str(running.get("case") or "")
            self.job_state = "running"
            self._set_images(images_progress(running))
            self._update_header()

    def on_job_event(self, name: str, params: dict[str, Any]) -> None:
        job_id = params.get("job_id")
        if not isinstance(job_id, int) or name == JobEvent.QUEUED:
            return
        if name == JobEvent.STARTED:
            self._adopt_job(job_id)
            self.cases_total = int(params.get("cases_total") or 0)
            self.job_state = "running"
        elif job_id != self.job_id:
            if name != JobEvent.CASE_STARTED:
                return  # an event of a job we are not watching
            self._adopt_job(job_id)
        if name == JobEvent.CASE_STARTED:
            self.case_index = params.get("case_index")
            self.cases_total = int(params.get("cases_total") or self.cases_total)
            self.case_label = self.case_name = str(params.get("label") or "")
            self.job_state = "running"
            self.latency.clear()
            self._iterations = 0
            self._case_started_t = None
            self._set_images(None)
        elif name == JobEvent.CASE_PROGRESS:
            self._set_images(images_progress(params))
        elif name in (JobEvent.CASE_FINISHED, JobEvent.CASE_FAILED):
            self.cases_done += 1
            if name == JobEvent.CASE_FAILED:
                self.case_label += f" - failed: {params.get('reason') or 'see the queue'}"
            self._note_outcome(params)
        elif name in JOB_ENDING_EVENTS:
            self.job_state = str(params.get("state") or ENDING_STATE[JobEvent(name)])
        self._update_header()
        self._dirty = True

    def _note_outcome(self, params: dict[str, Any]) -> None:
        disturbed, interference, attempt = case_outcome(params)
        index = params.get("case_index")
        key = index if isinstance(index, int) and not isinstance(index, bool) else -1 - len(self.disturbed)
        if not disturbed:
            if disturbed is False:
                self.disturbed.pop(key, None)  # a retry that ran undisturbed
            self._update_disturbed()
            return
        case = DisturbedCase(self.case_name or f"case {key + 1}", interference, attempt)
        self.disturbed[key] = case
        self.case_label += f" - disturbed: {case.detail()}"
        if self._case_started_t is not None:
            self._mark_disturbed(self._case_started_t, self._memory_clock(), case)
        self._update_disturbed()

    def _memory_clock(self) -> float:
        """Now on the memory plot's clock: the time of the newest memory sample."""
        last = self.memory.latest(1)
        return float(last[0, 0]) if len(last) else 0.0

    def _mark_disturbed(self, start: float, end: float, case: DisturbedCase) -> None:
        if not end > start:
            return  # no memory samples over the case: named in the text only
        region = pg.LinearRegionItem(
            values=(start, end), movable=False, brush=pg.mkBrush(*DISTURBED_SHADE),
            pen=pg.mkPen(None),
        )  # fmt: skip
        region.setToolTip(f"Disturbed: {case.text()}")
        region.setZValue(-10)
        self.memory_plot.addItem(region)
        self._disturbed_marks.append(region)
        if len(self._disturbed_marks) > DISTURBED_MARKS:
            self.memory_plot.removeItem(self._disturbed_marks.pop(0))
        if len(self._disturbed_marks) == 1:
            self._title_memory_plot()

    def _title_memory_plot(self) -> None:
        """The title doubles as the legend: device memory and disturbed spans are named
        once there are any."""
        parts = [f'<span style="color:{RSS_COLOR}">process RSS</span>']
        if self._device_titled:
            parts.append(f'<span style="color:{DEVICE_COLOR}">device</span>')
        if self._disturbed_marks:
            parts.append(f'<span style="color:{DISTURBED_COLOR}">shaded: disturbed case</span>')
        self.memory_plot.setTitle("Worker memory: " + ", ".join(parts), size="10pt")

    def _update_disturbed(self) -> None:
        cases = list(self.disturbed.values())
        self.disturbed_label.setVisible(bool(cases))
        if not cases:
            self.disturbed_label.clear()
            self.disturbed_label.setToolTip("")
            return
        named = "; ".join(c.text() for c in cases[-DISTURBED_NAMED:])
        more = f"{len(cases) - DISTURBED_NAMED} more; latest: " if len(cases) > DISTURBED_NAMED else ""
        self.disturbed_label.setText(
            f"⚠ {len(cases)} disturbed case(s), other processes busy while measuring: {more}{named}"
        )
        self.disturbed_label.setToolTip("\n".join(c.text() for c in cases))

    def _set_images(self, progress: tuple[int, int] | None) -> None:
        """Show an accuracy case's images (None: hide the bar, a new case or none)."""
        self.images = progress
        if progress is None:
            self._images_first = None
            self.images_bar.setVisible(False)
            return
        done, total = progress
        now = time.monotonic()
        if self._images_first is None or done < self._images_first[1]:
            self._images_first = (now, done)
        self.images_bar.setRange(0, total)
        self.images_bar.setValue(done)
        self.images_bar.setFormat(images_text(done, total))
        started, done_then = self._images_first
        rate = (done - done_then) / (now - started) if now > started and done > done_then else None
        tip = "The running accuracy case's images"
        if rate:
            tip += f": {significant(rate, 3)} images/s, about {format_duration((total - done) / rate)} left"
        self.images_bar.setToolTip(tip)
        self.images_bar.setVisible(True)

    def _adopt_job(self, job_id: int) -> None:
        self.job_id = job_id
        self.cases_done = 0
        self.disturbed.clear()
        for region in self._disturbed_marks:
            self.memory_plot.removeItem(region)
        if self._disturbed_marks:
            self._disturbed_marks.clear()
            self._title_memory_plot()
        self._case_started_t = None
        self._update_disturbed()
        self.case_index = None
        self.case_label = self.case_name = ""
        self._set_images(None)
        self._job_started = time.monotonic()
        self._iterations = 0
        self._memory_origin_ns = None
        self.latency.clear()
        self.memory.clear()

    # -- drawing ---------------------------------------------------------------------------

    def _update_header(self) -> None:
        status = ""
        if self.connection is not None and not self.connection.is_connected:
            status = f" - {self.connection.status_text}"
        if self.job_id is None:
            self.heading.setText(f"{self.title}: waiting for a job{status}")
        else:
            case = f": {self.case_label}" if self.case_label else ""
            self.heading.setText(f"{self.title} - job {self.job_id} {self.job_state}{case}{status}")
        self.progress.setRange(0, max(1, self.cases_total))
        self.progress.setValue(min(self.cases_done, max(1, self.cases_total)))
        disturbed = f", {len(self.disturbed)} disturbed" if self.disturbed else ""
        self.progress.setFormat(f"%v / %m cases{disturbed}" if self.cases_total else "no job")
        self.eta.setText(self._eta_text())

    def _eta_text(self) -> str:
        if self.job_id is None or not self.cases_total:
            return "ETA -"
        if self.job_state in ENDING_STATE.values():
            return self.job_state
        remaining = self.cases_total - self.cases_done
        if self.cases_done == 0:
            return "ETA after the first case"
        elapsed = time.monotonic() - self._job_started
        return f"ETA {format_duration(elapsed / self.cases_done * remaining)}"

    def redraw(self, force_slow: bool = False) -> bool:
        """Draw what arrived since the last draw; True when anything was drawn.

        The trace and rolling lines follow every frame; the histogram, the memory plot
        and the text change slowly, so they are refreshed at most ``SLOW_PARTS_HZ``.
        """
        if not self._dirty:
            return False
        self._dirty = False
        self.redraw_count += 1
        now_s = time.monotonic()
        slow_parts = force_slow or now_s - self._slow_drawn_s >= 1.0 / SLOW_PARTS_HZ
        data = self.latency.latest()
        n = len(data)
        x, y = data[:, 0], data[:, 1]
        self.latency_curve.setData(x, y, skipFiniteCheck=True)
        # Only the scrolled-in part is on screen: spend the rolling points there.
        positions, table = rolling_percentiles(y, start=max(0, n - SCROLL_ITERATIONS))
        for k, (name, _q, _color) in enumerate(ROLLING_STYLE):
            self.rolling_curves[name].setData(x[positions], table[:, k], skipFiniteCheck=True)
        if n:
            last = x[-1]
            self.latency_plot.setXRange(max(0.0, last - SCROLL_ITERATIONS), max(last, 10.0), padding=0.02)
        if slow_parts or n <= 1:
            self._slow_drawn_s = now_s
            self._draw_slow_parts(y)
        else:
            self._dirty_slow = True
        return True

    def invalidate(self) -> None:
        """Redraw at the next tick even if no data arrived (e.g. a forced refresh)."""
        self._dirty = True

    @property
    def slow_parts_pending(self) -> bool:
        """Histogram, memory or text lag behind the data and are due for a refresh."""
        return self._dirty_slow and time.monotonic() - self._slow_drawn_s >= 1.0 / SLOW_PARTS_HZ

    def draw_slow_parts(self) -> None:
        self._slow_drawn_s = time.monotonic()
        self._draw_slow_parts(self.latency.latest()[:, 1])

    def flush(self) -> None:
        """Draw everything now, the slow parts included (before a screenshot or export)."""
        self._dirty = True
        self.redraw(force_slow=True)

    def _draw_slow_parts(self, y: np.ndarray) -> None:
        self._dirty_slow = False
        if len(y):
            counts, edges = np.histogram(y[-HISTOGRAM_SAMPLES:], bins=min(HISTOGRAM_BINS, len(y)))
            self.hist_curve.setData(edges, counts, skipFiniteCheck=True)
        else:
            self.hist_curve.setData([], [])
        memory = self.memory.latest()
        self.rss_curve.setData(memory[:, 0], memory[:, 1], skipFiniteCheck=True)
        device = memory[:, 2]
        if len(device) and np.isfinite(device).any():
            if not self._device_titled:  # named only once a device reports memory
                self._device_titled = True
                self._title_memory_plot()
            self.device_curve.setData(memory[:, 0], device)
        else:
            self.device_curve.setData([], [])
        self.stats.setText(self._stats_text(y))
        self.eta.setText(self._eta_text())

    def _fmt_latency(self, value: float) -> str:
        if self._latency_unit == "s":
            return f"{value * 1e3:.2f} ms"
        return f"{value:.3g} {self._latency_unit}"

    def _stats_text(self, y: np.ndarray) -> str:
        if not len(y):
            return "No samples yet for this case."
        last = np.percentile(y[-ROLLING_WINDOW:], [q for _name, q, _color in ROLLING_STYLE])
        median, p90, p99 = (self._fmt_latency(v) for v in last)
        text = (f"{len(y)} iterations shown, {self.samples_received} received  |  last "
                f"{min(len(y), ROLLING_WINDOW)}: median {median}, p90 {p90}, p99 {p99}")  # fmt: skip
        memory = self.memory.latest(1)
        if len(memory) and math.isfinite(memory[0, 1]):
            text += f"  |  RSS {memory[0, 1]:.0f} MB"
        if len(memory) and math.isfinite(memory[0, 2]):
            text += f", device {memory[0, 2]:.0f} MB"
        if self.dropped:
            text += f"  |  {self.dropped} samples dropped on a slow link (all are kept on the agent)"
        return text


class LiveView(QWidget):
    """One LivePanel per agent, side by side, redrawn by one ~30 Hz timer."""

    def __init__(self, registry: AgentRegistry | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.registry = registry
        self.panels: dict[str, LivePanel] = {}
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.placeholder = QLabel("No agent yet. Add one in the Agents panel; its running case shows here.")
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.placeholder)
        layout.addWidget(self.splitter, 1)
        self.timer = QTimer(self)
        self.timer.setInterval(REDRAW_MS)
        self.timer.timeout.connect(self.tick)
        self.timer.start()
        if registry is not None:
            registry.added.connect(self.add_agent)
            registry.removed.connect(self.remove_agent)
            for connection in registry.connections:
                self.add_agent(connection)
        self._update_placeholder()

    def add_agent(self, connection: AgentConnection) -> LivePanel:
        panel = LivePanel(connection)
        self.panels[connection.name] = panel
        self.splitter.addWidget(panel)
        self._update_placeholder()
        return panel

    def add_panel(self, panel: LivePanel) -> None:
        """A panel fed by hand (benchmarks, tests) rather than by an agent."""
        self.panels[panel.title] = panel
        self.splitter.addWidget(panel)
        self._update_placeholder()

    def remove_agent(self, connection: AgentConnection) -> None:
        panel = self.panels.pop(connection.name, None)
        if panel is not None:
            panel.setParent(None)
            panel.deleteLater()
        self._update_placeholder()

    def _update_placeholder(self) -> None:
        self.placeholder.setVisible(not self.panels)
        self.splitter.setVisible(bool(self.panels))

    def tick(self) -> None:
        if not self.isVisible():
            return  # a hidden tab costs nothing; the buffers keep filling
        for panel in self.panels.values():
            if not panel.redraw() and panel.slow_parts_pending:
                panel.draw_slow_parts()
