"""Heavy fits off the GUI thread: analyze(), the predictor's fit and its evaluation.

``FitRunner.submit(df)`` starts a job on a worker thread. Results come back by signal on
the GUI thread, in stages: the analysis first (seconds), then the fitted predictor, then
its leave-one-model-out evaluation (the slow part: one fit per held-out model). Each job carries a generation number; a
result whose generation is not the latest (the data changed meanwhile) is discarded.
While a job runs, newer submissions wait as one pending job (the latest wins), so typing
in a filter does not queue a fit per keystroke.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from PySide6.QtCore import QObject, Signal

from core.errors import BackbenchError
from gui.memory_choice import MemoryChoices, memory_choices

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AnalysisResult:
    generation: int
    analysis: dict[str, Any] | None
    error: str | None
    thread_id: int  # threading.get_ident() of the thread that computed it
    memory: MemoryChoices = field(default_factory=MemoryChoices)  # the memory view's choices


@dataclass(frozen=True, slots=True)
class PredictionResult:
    generation: int
    evaluation: dict[str, Any] | None
    predictor: Any  # core.predict.LatencyPredictor, fitted; None on error
    error: str | None
    thread_id: int
    evaluation_pending: bool = False  # the predictor is ready, its evaluation still runs


def _message(exc: BaseException) -> str:
    if isinstance(exc, BackbenchError):
        return str(exc)
    return f"{type(exc).__name__}: {exc} (this is a bug in backbench; the log has the details)"


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """BLAS on one thread while fitting. The fits solve many tiny systems (an SVD of a
    30 x 15 matrix per least-squares step); a multi-threaded OpenBLAS spends more on
    waking threads than on the maths, and on a busy 2-core machine it measured 15x
    slower (47 s against 2 s for one predictor fit)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # threadpoolctl comes with scikit-learn; without it, no limit
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def run_analysis(frame: pd.DataFrame) -> tuple[dict[str, Any] | None, str | None, MemoryChoices]:
    """analyze() of ``frame``, and the memory view's fit for each memory figure."""
    from core.analysis import analyze
    from core.analysis.data import prepare

    try:
        inp = prepare(frame)
        analysis = analyze(inp)
    except BackbenchError as exc:
        return None, str(exc), MemoryChoices()
    except Exception as exc:  # noqa: BLE001 - the thread boundary: report, never crash the GUI
        log.exception("analysis failed")
        return None, _message(exc), MemoryChoices()
    try:
        memory = memory_choices(inp)
    except Exception:  # noqa: BLE001 - the memory switch is lost, never the analysis
        log.exception("memory fits per memory figure failed")
        memory = MemoryChoices()
    return analysis, None, memory


def run_predictor_fit(frame: pd.DataFrame) -> tuple[Any, str | None]:
    from core.predict.predictor import LatencyPredictor

    try:
        return LatencyPredictor().fit(frame), None
    except BackbenchError as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - the thread boundary: report, never crash the GUI
        log.exception("predictor fit failed")
        return None, _message(exc)


def run_evaluation(frame: pd.DataFrame) -> tuple[dict[str, Any] | None, str | None]:
    """Leave-one-model-out check of the predictor: the slowest stage (one fit per model
    per platform; tens of seconds for a 30-model suite)."""
    from core.predict.evaluate import evaluate

    try:
        return evaluate(frame), None
    except BackbenchError as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - the thread boundary: report, never crash the GUI
        log.exception("predictor evaluation failed")
        return None, _message(exc)


class _Signals(QObject):
    analysis_done = Signal(object)
    prediction_done = Signal(object)
    finished = Signal(int)


def _emit(signal: Any, value: Any) -> None:
    try:
        signal.emit(value)
    except RuntimeError as exc:  # the receiver is gone: the window closed mid-fit
        log.debug("fit result not delivered: %s", exc)


class _FitTask:
    """One job, run on a daemon thread: quitting the app never waits for a fit."""

    def __init__(
        self, generation: int, frame: pd.DataFrame, signals: _Signals, runner: FitRunner,
        with_prediction: bool,
    ) -> None:  # fmt: skip
        self._generation = generation
        self._frame = frame
        self._signals = signals
        self._runner = runner
        self._with_prediction = with_prediction

    def run(self) -> None:
        with single_threaded_blas():
            self._run()

    def _run(self) -> None:
        thread_id = threading.get_ident()
        generation = self._generation
        try:
            analysis, error, memory = run_analysis(self._frame)
            _emit(
                self._signals.analysis_done,
                AnalysisResult(generation, analysis, error, thread_id, memory),
            )
            # Later stages are skipped once newer data wait: their results would be dropped.
            if not (self._with_prediction and self._runner.is_current(generation)):
                return
            predictor, perror = run_predictor_fit(self._frame)
            _emit(
                self._signals.prediction_done,
                PredictionResult(generation, None, predictor, perror, thread_id, perror is None),
            )
            if predictor is None or not self._runner.is_current(generation):
                return
            evaluation, eerror = run_evaluation(self._frame)
            _emit(
                self._signals.prediction_done,
                PredictionResult(generation, evaluation, predictor, eerror, thread_id, False),
            )
        finally:
            _emit(self._signals.finished, generation)


class FitRunner(QObject):
    """Runs fits on a worker thread and delivers only current results."""

    analysis_ready = Signal(object)  # AnalysisResult
    prediction_ready = Signal(object)  # PredictionResult
    busy_changed = Signal(bool)

    def __init__(self, parent: QObject | None = None, with_prediction: bool = True) -> None:
        super().__init__(parent)
        self._thread: threading.Thread | None = None
        # No Qt parent: the running task holds a reference, so the emitter outlives a
        # runner deleted mid-fit (queued connections to a deleted receiver just drop).
        self._signals = _Signals()
        self._signals.analysis_done.connect(self._on_analysis)
        self._signals.prediction_done.connect(self._on_prediction)
        self._signals.finished.connect(self._on_finished)
        self._generation = 0
        self._running: int | None = None
        self._pending: pd.DataFrame | None = None
        self.with_prediction = with_prediction
        self.discarded = 0  # stale results dropped, for tests and the log

    @property
    def generation(self) -> int:
        return self._generation

    def is_current(self, generation: int) -> bool:
        return generation == self._generation

    def is_busy(self) -> bool:
        return self._running is not None or self._pending is not None

    def submit(self, frame: pd.DataFrame) -> int:
        """Fit ``frame`` (copied). Returns the job's generation."""
        self._generation += 1
        frame = frame.copy()
        was_busy = self.is_busy()
        if self._running is None:
            self._start(frame)
        else:
            self._pending = frame
        if not was_busy:
            self.busy_changed.emit(True)
        return self._generation

    def cancel(self) -> None:
        """Forget pending work; a running job finishes but its result is dropped."""
        self._generation += 1
        self._pending = None
        if self._running is None:
            self.busy_changed.emit(False)

    def _start(self, frame: pd.DataFrame) -> None:
        self._running = self._generation
        task = _FitTask(self._generation, frame, self._signals, self, self.with_prediction)
        self._thread = threading.Thread(target=task.run, name="backbench-fit", daemon=True)
        self._thread.start()

    def _on_analysis(self, result: AnalysisResult) -> None:
        if not self.is_current(result.generation):
            self.discarded += 1
            log.debug("dropped a stale analysis (generation %d)", result.generation)
            return
        self.analysis_ready.emit(result)

    def _on_prediction(self, result: PredictionResult) -> None:
        if not self.is_current(result.generation):
            self.discarded += 1
            log.debug("dropped a stale prediction (generation %d)", result.generation)
            return
        self.prediction_ready.emit(result)

    def _on_finished(self, generation: int) -> None:
        self._running = None
        if self._pending is not None:
            frame, self._pending = self._pending, None
            self._start(frame)
            return
        self.busy_changed.emit(False)

    def wait(self, timeout_ms: int = 30_000) -> bool:
        """Drop pending work and wait up to ``timeout_ms`` for the running job's thread;
        True when it has ended. Its last signals are still queued for the event loop."""
        self._pending = None
        thread = self._thread
        if thread is not None:
            thread.join(timeout_ms / 1000.0)
            return not thread.is_alive()
        return True


class BackgroundCall(QObject):
    """Run one slow call (e.g. writing the HTML report) on a daemon thread; its value or
    its error message comes back by signal on the GUI thread."""

    done = Signal(object)
    failed = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._thread: threading.Thread | None = None

    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, call: Any) -> bool:
        """Start ``call()``; False (and nothing started) while a previous call runs."""
        if self.is_running():
            return False

        def work() -> None:
            try:
                with single_threaded_blas():
                    value = call()
            except BackbenchError as exc:
                _emit(self.failed, str(exc))
            except Exception as exc:  # noqa: BLE001 - the thread boundary: report, never crash the GUI
                log.exception("background call failed")
                _emit(self.failed, _message(exc))
            else:
                _emit(self.done, value)

        self._thread = threading.Thread(target=work, name="backbench-call", daemon=True)
        self._thread.start()
        return True

    def wait(self, timeout_ms: int = 30_000) -> bool:
        if self._thread is not None:
            self._thread.join(timeout_ms / 1000.0)
            return not self._thread.is_alive()
        return True
