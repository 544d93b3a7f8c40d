"""systemd integration in plain stdlib: sd_notify, the watchdog interval, journald logs.

``notify("READY=1")`` sends a datagram to ``$NOTIFY_SOCKET`` (a path, or an abstract
name starting with '@'); outside systemd it does nothing. Logs go to stderr; under
journald (``$JOURNAL_STREAM`` set) they carry a ``<N>`` syslog priority prefix and no
timestamp, since the journal stamps each line itself.
"""

from __future__ import annotations

import logging
import os
import socket
import sys

log = logging.getLogger(__name__)

_SYSLOG_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


def _notify_address() -> str | None:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return None
    if address.startswith("@"):
        return "\0" + address[1:]  # abstract namespace
    return address


def notify(state: str) -> bool:
    """Send one sd_notify message (e.g. "READY=1"); True when it was sent."""
    address = _notify_address()
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode("utf-8", "replace"))
    except OSError as exc:
        log.warning("Could not notify systemd (%s): %s", state.split("=")[0], exc)
        return False
    return True


def watchdog_interval_s() -> float | None:
    """Half of ``WatchdogSec`` when systemd asks this process for pings, else None."""
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = os.environ.get("WATCHDOG_PID")
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None  # meant for another process (we were exec'ed by a wrapper)
    try:
        value = int(usec)
    except ValueError:
        log.warning("Ignoring WATCHDOG_USEC=%r: not a number", usec)
        return None
    return value / 2e6 if value > 0 else None


def under_journald() -> bool:
    return bool(os.environ.get("JOURNAL_STREAM"))


class _JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        priority = _SYSLOG_PRIORITY.get(record.levelno, 6)
        text = super().format(record)
        # A multi-line message (a traceback) keeps its priority on every line.
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines() or [""])


def setup_logging(verbose: bool = False) -> None:
    """Root logging to stderr, journald-friendly when run by systemd."""
    handler = logging.StreamHandler(sys.stderr)
    if under_journald():
        handler.setFormatter(_JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
        )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
