"""Screenshots of the GUI's main views, taken offscreen from a real run.

Starts two real agents on private sockets (named "local" and "local-2": both run on this
machine), connects the main window to them, submits a small real job to each (PyTorch on
one, ONNX Runtime on the other, so the live view shows two agents side by side), grabs
the live view mid-run and the other views once the jobs are done, and writes PNGs into
docs/screenshots/. Not a test; nothing is asserted.

    python bench/screenshots.py [--out docs/screenshots] [--one-agent]

Add a view by appending to ``TAB_SHOTS`` (tab name, file name, when) or ``WIDGET_SHOTS``
(attribute of the main window, file name).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from PySide6.QtCore import QSettings  # noqa: E402
from PySide6.QtWidgets import QApplication, QWidget  # noqa: E402

WINDOW_SIZE = (1400, 900)
MODEL = "squeezenet1_1"
# A few seconds per case, so the live view has something to show mid-run.
STOPPING = {"min_iters": 60, "target_ci": 0.01, "max_time_s": 6.0}
BATCH_SIZES = (1, 2)
# (tab name, file name, "live" = grabbed mid-run | "done" = after the jobs end)
TAB_SHOTS: list[tuple[str, str, str]] = [
    ("Live", "live.png", "live"),
    ("Queue", "queue.png", "done"),
    ("Results", "results.png", "done"),
]
# (analysis view key, file name): grabbed after importing --import FILE (a store or CSV with
# enough models for the analyses; the small live job alone is too little to cluster or fit).
ANALYSIS_SHOTS: list[tuple[str, str]] = [
    ("accuracy", "analysis-accuracy.png"),
    ("latency", "analysis-latency.png"),
    ("pareto", "analysis-pareto.png"),
    ("memory", "analysis-memory.png"),
    ("speedup", "analysis-speedup.png"),
    ("prediction", "analysis-prediction.png"),
]
# (main-window attribute of a docked panel, file name)
WIDGET_SHOTS: list[tuple[str, str]] = [("agents_dock", "agents.png"), ("launcher_dock", "launcher.png")]


def start_agent(folder: Path) -> subprocess.Popen[bytes]:
    sock = folder / "agent.sock"
    log = open(folder / "agent.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.agent", "--socket", str(sock), "--db", str(folder / "results.db")],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=log, stderr=log,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(sock))
            return proc
        except OSError:
            time.sleep(0.1)
        finally:
            probe.close()
    proc.kill()
    raise SystemExit(f"the agent in {folder} did not start; see {folder / 'agent.log'}")


def pump_until(app: QApplication, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        app.processEvents()
        time.sleep(0.01)


def pump_for(app: QApplication, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)


def save(widget: QWidget, path: Path) -> None:
    widget.grab().save(str(path))
    print(f"wrote {path} ({widget.width()}x{widget.height()})")


def grab_analysis(app: QApplication, window: QWidget, data: Path, out: Path) -> None:
    tab_names = [window.tabs.tabText(i) for i in range(window.tabs.count())]
    if not window.results_view.import_file(data, append=True):
        raise SystemExit(f"could not import {data}")
    window.tabs.setCurrentIndex(tab_names.index("Results"))
    pump_for(app, 1.0)
    save(window, out / "results.png")
    window.tabs.setCurrentIndex(tab_names.index("Analysis"))
    view = window.analysis_view
    pump_for(app, 1.0)
    pump_until(app, lambda: not view.is_busy(), 600, "the analysis and the predictor check")
    for key, filename in ANALYSIS_SHOTS:
        view.show_view(key)
        pump_for(app, 0.5)
        save(window, out / filename)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "screenshots"))
    parser.add_argument("--one-agent", action="store_true", help="one agent only (faster)")
    parser.add_argument("--import", dest="import_file", help="a store or CSV to import for the analysis shots")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bb-shots-"))
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(work / "settings"))
    os.environ["XDG_RUNTIME_DIR"] = str(work)

    names_backends = [("local", "torch"), ("local-2", "onnxruntime")][: 1 if args.one_agent else 2]
    agents = []
    for name, _backend in names_backends:
        folder = work / name
        folder.mkdir()
        agents.append((name, folder / "agent.sock", start_agent(folder)))

    app = QApplication([sys.argv[0]])
    from gui.agents import AgentRegistry
    from gui.main_window import MainWindow
    from gui.settings import AgentSpec

    registry = AgentRegistry(persist=False)
    window = MainWindow(registry, restore=False)
    window.resize(*WINDOW_SIZE)
    window.show()
    try:
        for name, sock, _proc in agents:
            registry.add(AgentSpec(name=name, socket_path=str(sock)))
        connections = [registry.get(name) for name, *_ in agents]
        pump_until(app, lambda: all(c.is_connected and c.devices and c.models for c in connections), 90,
                   "the agents to report devices and models")  # fmt: skip
        launcher = window.launcher
        for connection, (_name, backend) in zip(connections, names_backends, strict=True):
            launcher.agent_combo.setCurrentIndex(launcher.agent_combo.findData(connection.name))
            launcher.search.setText("squeeze")
            launcher.set_checked_models([MODEL])
            launcher.backend_combo.setCurrentText(backend)
            for size, box in launcher.batch_boxes.items():
                box.setChecked(size in BATCH_SIZES)
            launcher.target_ci.setValue(STOPPING["target_ci"] * 100)
            launcher.min_iters.setValue(STOPPING["min_iters"])
            launcher.max_time.setValue(STOPPING["max_time_s"])
            launcher.run_name.setText(f"screenshot-{backend}")
            launcher.submit()
            pump_until(app, lambda: launcher.submit_button.isEnabled(), 120, "the submit reply")
            if "queued" not in launcher.status.text():
                raise SystemExit(f"submit failed: {launcher.status.text()}")
        panels = list(window.live_view.panels.values())
        window.tabs.setCurrentIndex(0)
        pump_until(app, lambda: all(p.samples_received >= 25 and p.memory_received >= 5 for p in panels), 240,
                   "live samples from every agent")  # fmt: skip
        pump_for(app, 0.5)
        for tab, filename, when in TAB_SHOTS:
            if when == "live":
                window.tabs.setCurrentIndex([window.tabs.tabText(i) for i in range(window.tabs.count())].index(tab))
                pump_for(app, 0.3)
                save(window, out / filename)
        queue = window.queue_view
        pump_until(app, lambda: len(queue.jobs) == len(agents)
                   and all(j.get("state") == "finished" for j in queue.jobs.values()), 600, "the jobs to finish")  # fmt: skip
        pump_for(app, 2.0)  # the results fetch
        for tab, filename, when in TAB_SHOTS:
            if when == "done":
                window.tabs.setCurrentIndex([window.tabs.tabText(i) for i in range(window.tabs.count())].index(tab))
                pump_for(app, 0.5)
                save(window, out / filename)
        if args.import_file:
            grab_analysis(app, window, Path(args.import_file), out)
        window.tabs.setCurrentIndex(0)
        window.agents_panel.select(connections[0].name)
        pump_for(app, 0.3)
        for attribute, filename in WIDGET_SHOTS:
            save(getattr(window, attribute), out / filename)
    finally:
        window.close()
        for _name, _sock, proc in agents:
            proc.send_signal(signal.SIGTERM)
        for _name, _sock, proc in agents:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
