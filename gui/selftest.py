"""``backbench-gui --self-test``: open the main window, load and analyse data, close it.

What a packaged GUI (a PyInstaller bundle, a .deb) runs to prove it works on this host, and
what the tests run from a checkout. On the real display, or offscreen where there is none
(``QT_QPA_PLATFORM=offscreen``), with its settings and runtime folder in a private
temporary folder (the user's saved layout and agents are neither read nor written):

1. creates the application and the main window, shows it and processes events;
2. checks that every view is the real one (a build that lacks a module shows a placeholder
   instead, which would hide a packaging mistake) and paints the window;
3. imports a small CSV of synthetic measurements of zoo models (the catalogue is package
   data) into the results table, and waits for the analysis and the predictor to fit it
   on their worker thread (numpy, pandas, scipy, statsmodels, scikit-learn, pyqtgraph);
4. visits each tab, closes the window and checks that it closed.

Every check prints one line; the exit status is 0 only when all passed.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from core import __version__

EXIT_OK = 0
EXIT_FAILED = 1
ANALYSIS_TIMEOUT_S = 180.0
N_MODELS = 6
BATCHES = (1, 2, 4, 8)
PLATFORMS = (("torch", "cpu", 1.0), ("openvino", "CPU", 0.45))


class SelfTestFailed(Exception):
    pass


def use_offscreen_without_display(env: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    """Set QT_QPA_PLATFORM=offscreen where there is no display and none is chosen."""
    if env.get("QT_QPA_PLATFORM") or env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"):
        return False
    env["QT_QPA_PLATFORM"] = "offscreen"
    return True


def synthetic_results(path: Path) -> Path:
    """A CSV of the long schema: a few of the paper suite's models on two platforms."""
    import numpy as np
    import pandas as pd

    from core.zoo import get_card, model_complexity, suite_models

    names = list(suite_models("paper"))
    models = names[:: max(1, len(names) // N_MODELS)][:N_MODELS]
    rng = np.random.default_rng(0)
    rows = []
    for backend, device, factor in PLATFORMS:
        for model in models:
            complexity, card = model_complexity(model), get_card(model)
            for batch in BATCHES:
                per_image = factor * (0.9 * complexity.flops / 1e9 + 0.6 + 6.0 / batch)
                per_image *= 1 + 0.03 * rng.standard_normal()
                rows.append(
                    {"model": model, "backend": backend, "device": device, "precision": "fp32",
                     "batch_size": batch, "mode": "latency", "per_image_ms": per_image,
                     "latency_ms_median": per_image * batch, "throughput_ips": 1000 / per_image,
                     "peak_rss_mb": 180 + complexity.params * 4 / 2**20 + 2 * batch,
                     "params": complexity.params, "flops": complexity.flops, "status": "ok",
                     "top1": card.acc1, "top5": card.acc5, "n_eval_images": 5000,
                     "run_name": "self-test"}
                )  # fmt: skip
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


class SelfTest:
    def __init__(self, write: Callable[[str], None] | None = None) -> None:
        self.write = write or (lambda line: print(line, flush=True))
        self.failures = 0

    def ok(self, what: str) -> None:
        self.write(f"ok    {what}")

    def fail(self, what: str) -> None:
        self.failures += 1
        self.write(f"FAIL  {what}")

    def check(self, condition: bool, what: str, otherwise: str) -> None:
        if condition:
            self.ok(what)
        else:
            self.fail(otherwise)

    def run(self, qt_args: Sequence[str] = ()) -> int:
        started = time.monotonic()
        offscreen = use_offscreen_without_display()
        where = "frozen" if getattr(sys, "frozen", False) else f"Python {sys.version.split()[0]}"
        self.write(f"backbench-gui {__version__} self-test ({where}: {sys.executable})")
        root = Path(tempfile.mkdtemp(prefix="bb-gui-selftest-"))
        # Nothing of the user's: no saved agents or layout, no local agent's socket.
        saved_runtime = os.environ.get("XDG_RUNTIME_DIR")
        os.environ["XDG_RUNTIME_DIR"] = str(root / "runtime")
        (root / "runtime").mkdir(mode=0o700)
        try:
            self._run(root, qt_args, offscreen)
        except SelfTestFailed as exc:
            self.fail(str(exc))
        except Exception as exc:  # any surprise is a failed self-test, said in one line
            self.fail(f"{type(exc).__name__}: {exc}")
        finally:
            if saved_runtime is None:
                os.environ.pop("XDG_RUNTIME_DIR", None)
            else:
                os.environ["XDG_RUNTIME_DIR"] = saved_runtime
            shutil.rmtree(root, ignore_errors=True)
        took = time.monotonic() - started
        if self.failures:
            self.write(f"self-test FAILED: {self.failures} check(s) failed in {took:.1f} s")
            return EXIT_FAILED
        self.write(f"self-test passed in {took:.1f} s")
        return EXIT_OK

    def _run(self, root: Path, qt_args: Sequence[str], offscreen: bool) -> None:
        from PySide6.QtCore import QSettings
        from PySide6.QtWidgets import QApplication, QWidget

        QSettings.setPath(
            QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(root / "settings")
        )
        # gui.app creates the application (named, for QSettings) before it calls this.
        app: Any = QApplication.instance() or QApplication([sys.argv[0], *qt_args])
        from gui.analysis_view import AnalysisView
        from gui.main_window import MainWindow
        from gui.results_view import ResultsView

        platform = QApplication.platformName()
        chosen = " (chosen: no display)" if offscreen else ""
        self.ok(f"QApplication on the {platform!r} platform{chosen}")
        window = MainWindow(restore=False, local_socket=str(root / "runtime" / "agent.sock"))
        window.show()
        self._process(app, 0.3)
        self.check(window.isVisible(), f"main window shown: {window.windowTitle()!r}, "
                   f"{window.width()}x{window.height()}", "the main window is not visible")  # fmt: skip
        self.check(
            isinstance(window.results_view, ResultsView)
            and isinstance(window.analysis_view, AnalysisView),
            "results and analysis views are the real ones",
            "a view is a placeholder: its module did not import (see the log)",
        )
        image = window.grab().toImage()
        self.check(not image.isNull() and image.width() > 0,
                   f"window painted: {image.width()}x{image.height()}", "the window did not paint")  # fmt: skip

        csv = synthetic_results(root / "results.csv")
        loaded = window.results_view.import_file(csv)
        rows = len(window.results_view.dataframe())
        if not loaded or rows == 0:
            status = window.results_view.status_label.text()
            raise SelfTestFailed(f"importing a CSV of sample results failed: {status}")
        self.ok(f"imported {rows} measurements from a CSV")
        view = window.analysis_view
        if view.dataframe().empty:  # the table hands its selection to the analysis
            view.set_dataframe(window.results_view.dataframe())
        deadline = time.monotonic() + ANALYSIS_TIMEOUT_S
        while time.monotonic() < deadline:
            self._process(app, 0.05)
            if view.is_busy():
                continue
            if view.analysis() is not None or view.error_label.isVisible():
                break
        if view.analysis() is None:
            error = view.error_label.text() if view.error_label.isVisible() else "timed out"
            raise SelfTestFailed(f"the analysis did not complete: {error}")
        self.ok(f"analysis fitted on its worker thread: {view.summary_label.text()[:100]}")
        for index in range(window.tabs.count()):
            window.tabs.setCurrentIndex(index)
            self._process(app, 0.05)
        for key in view.view_keys():
            view.show_view(key)
            self._process(app, 0.02)
        names = [window.tabs.tabText(i) for i in range(window.tabs.count())]
        self.ok(f"visited tabs {names} and {len(view.view_keys())} analysis views")

        view.shutdown()
        closed = window.close()
        self._process(app, 0.2)
        self.check(closed and not window.isVisible(), "main window closed",
                   "the main window refused to close")  # fmt: skip
        window.deleteLater()
        self._process(app, 0.1)
        left = [
            w for w in QApplication.topLevelWidgets() if isinstance(w, QWidget) and w.isVisible()
        ]
        self.check(not left, "no window left open", f"windows still open: {left}")

    @staticmethod
    def _process(app: Any, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            app.processEvents()
            if time.monotonic() >= end:
                return
            time.sleep(0.01)


def run_self_test(qt_args: Sequence[str] = (), write: Callable[[str], None] | None = None) -> int:
    return SelfTest(write).run(qt_args)
