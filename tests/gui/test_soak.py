"""Signal soak: 200,000 telemetry signals through the client's signal into the live view,
in one process, with redraws in between. PySide6 6.12.0 on CPython 3.11 died of a
refcount bug under this load; the pinned release must survive it."""

from __future__ import annotations

import numpy as np
from PySide6.QtWidgets import QApplication

from gui.agent_client import AgentClient
from gui.live_view import LATENCY_CAPACITY, MEMORY_CAPACITY, LivePanel

SIGNALS = 200_000
CHUNK = 10_000
SAMPLES_PER_SIGNAL = 2


def test_two_hundred_thousand_telemetry_signals(qtbot, tmp_path) -> None:
    client = AgentClient(str(tmp_path / "none.sock"), auto_reconnect=False)
    panel = LivePanel(title="soak")
    qtbot.addWidget(panel)
    panel.show()
    client.telemetry.connect(panel.on_telemetry)
    client.gap.connect(panel.on_gap)
    # Fresh objects per signal, as the socket path creates them: refcounts get exercised.
    base = np.array([[0, 1_000_000], [1, 1_500_000]], dtype=np.int64)
    memory = np.array([[0.0, 100.0, np.nan]])
    emitted = 0
    for start in range(0, SIGNALS, CHUNK):
        for i in range(start, start + CHUNK):
            client.telemetry.emit(1, base + i, memory if i % 100 == 0 else memory[:0])
        client.gap.emit(1)
        emitted += CHUNK
        QApplication.processEvents()
        assert panel.redraw() is True
    assert emitted == SIGNALS
    assert panel.samples_received == SIGNALS * SAMPLES_PER_SIGNAL
    assert panel.latency.total == SIGNALS * SAMPLES_PER_SIGNAL
    assert len(panel.latency) == LATENCY_CAPACITY
    assert panel.memory_received == SIGNALS // 100
    assert len(panel.memory) == min(MEMORY_CAPACITY, SIGNALS // 100)
    assert panel.dropped == SIGNALS // CHUNK
    # The newest sample is the last one emitted, and the trace drew it.
    x, y = panel.latency_curve.getData()
    assert x[-1] == SIGNALS * SAMPLES_PER_SIGNAL - 1
    assert y[-1] == (1_500_000 + SIGNALS - 1) * 1e-9
    client.close()
