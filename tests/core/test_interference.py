"""The interference window's accounting of backbench's own CPU time."""

from __future__ import annotations

import subprocess
import sys

from core.measure.interference import process_ticks, snapshot


def test_a_worker_gone_before_its_result_is_read_counts_through_its_reported_cpu() -> None:
    """A forked worker can be reaped by its fork server before the supervisor reads its
    result: /proc no longer has it, and its CPU time would count as other processes'
    work (profiled vgg cases at batch 8 read as 1.99 cores disturbed). Its own figure,
    sent with the result, stands in for it."""
    worker = subprocess.Popen([sys.executable, "-c", "pass"])
    worker.wait()  # reaped, as a forked worker is by its server
    assert process_ticks(worker.pid) == 0
    blind = snapshot([worker.pid])
    told = snapshot([worker.pid], {worker.pid: 1234})
    assert blind is not None and told is not None
    assert told.own - blind.own >= 1234 - 2  # os.times() of this process may tick between the two


def test_a_live_process_is_read_from_proc_not_from_a_lower_report() -> None:
    worker = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        live = process_ticks(worker.pid)
        told = snapshot([worker.pid], {worker.pid: 0})
        assert told is not None and told.own >= live
    finally:
        worker.communicate(b"")
