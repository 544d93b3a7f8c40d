"""Run leases: one process at a time measures a run.

A sweep (a fresh run or a resume, from the CLI or the agent) claims its run in the
``run_leases`` table before it measures, renews the claim's heartbeat while it runs and
releases it when it ends, however it ends. A second claim of the run is refused while
the holder lives. A holder is taken for dead, and its claim taken over, when it is on
this host and its process is gone (the pid exited, or now belongs to another process, or
the host restarted), or when its heartbeat is older than the staleness bound (a holder
on another host, or one stopped or hung).

The functions here run inside the store's write transaction (``Store.acquire_run_lease``
and the others), so a check and the claim that follows it are one atomic step.
"""

from __future__ import annotations

import logging
import os
import platform
import shlex
import sqlite3
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from core.errors import StoreError

log = logging.getLogger(__name__)

# A holder renews every few seconds (LEASE_HEARTBEAT_S); a claim unrenewed for
# LEASE_STALE_S is abandoned, whoever holds it.
LEASE_HEARTBEAT_S = 5.0
LEASE_STALE_S = 60.0
_COMMAND_CHARS = 200


class RunBusyError(StoreError):
    """Another live process is measuring the run."""


class RunLeaseLostError(StoreError):
    """The run was taken over by another process while this one held it but was silent."""


@dataclass(frozen=True, slots=True)
class LeaseHolder:
    """A process that measures a run: where it runs and how to tell it from a successor
    that got the same pid."""

    host: str
    pid: int
    pid_start: int | None = None  # the process's start time in clock ticks since boot
    boot_id: str | None = None
    command: str = ""

    @classmethod
    def this_process(cls) -> LeaseHolder:
        pid = os.getpid()
        return cls(
            host=platform.node(),
            pid=pid,
            pid_start=process_start(pid),
            boot_id=boot_id(),
            command=_command_line(),
        )

    def describe(self) -> str:
        where = "this host" if self.host == platform.node() else f"host {self.host}"
        what = f" ({self.command})" if self.command else ""
        return f"pid {self.pid} on {where}{what}"


@dataclass(frozen=True, slots=True)
class RunLease:
    """A claim on a run. ``taken_over`` is the claim this one replaced, and
    ``taken_over_why`` why its holder counted as gone."""

    run_id: int
    token: str
    holder: LeaseHolder
    acquired_at: float
    heartbeat_at: float
    taken_over: RunLease | None = None
    taken_over_why: str | None = None

    def takeover_line(self, run_name: str) -> str | None:
        """One line saying whose claim this one took over, or None."""
        if self.taken_over is None:
            return None
        return (
            f"Run {run_name!r} (id {self.run_id}) was claimed by "
            f"{self.taken_over.holder.describe()}, but {self.taken_over_why}; this process "
            "takes it over."
        )


def _command_line() -> str:
    """This process's command line, shortened, to tell a user which process holds a run:
    ``backbench run --resume dres``, ``backbench agent``, ``python -m core.cli run ...``."""
    if not sys.argv or not sys.argv[0]:
        return ""
    program = Path(sys.argv[0])
    name = shlex.quote(program.name)
    if program.name == "__main__.py":  # python -m package.subpackage
        name = f"python -m {program.parent.parent.name}.{program.parent.name}"
    return " ".join([name, shlex.join(sys.argv[1:])]).strip()[:_COMMAND_CHARS]


def boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first), or None."""
    try:
        text = Path(f"/proc/{int(pid)}/stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()


def process_start(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (Linux), or None where unknown."""
    fields = _proc_stat(pid)
    if fields is None or len(fields) < 20:
        return None
    try:
        return int(fields[19])  # field 22 of stat; the list starts at field 3
    except ValueError:
        return None


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs here (an exited one awaiting its parent does not)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, and belongs to another user
        return True
    fields = _proc_stat(pid)
    return not (fields and fields[0] == "Z")


def why_gone(lease: RunLease, now: float, stale_after_s: float) -> str | None:
    """Why ``lease``'s holder counts as gone, or None while it lives."""
    holder = lease.holder
    if holder.host == platform.node():
        here_boot = boot_id()
        if holder.boot_id and here_boot and holder.boot_id != here_boot:
            return "this host has restarted since"
        if not pid_alive(holder.pid):
            return "that process has exited"
        if holder.pid_start is not None:
            start = process_start(holder.pid)
            if start is not None and start != holder.pid_start:
                return "that process has exited (its pid now belongs to another process)"
    silent_s = now - lease.heartbeat_at
    if silent_s > stale_after_s:
        return (
            f"it has not renewed its claim for {silent_s:.0f} s (the bound is {stale_after_s:g} s)"
        )
    return None


def busy_error(lease: RunLease, run_name: str, now: float) -> RunBusyError:
    holder = lease.holder
    stop = (
        f"stop that process (kill {holder.pid})"
        if holder.host == platform.node()
        else f"stop that process (pid {holder.pid} on {holder.host})"
    )
    return RunBusyError(
        f"Run {run_name!r} (id {lease.run_id}) is being measured by {holder.describe()}, "
        f"which renewed its claim {max(0.0, now - lease.heartbeat_at):.0f} s ago.",
        f"Wait for it to finish, or {stop} and resume again.",
    )


def lost_error(run_id: int, run_name: str, now_holder: RunLease | None) -> RunLeaseLostError:
    who = now_holder.holder.describe() if now_holder is not None else "another process"
    return RunLeaseLostError(
        f"Run {run_name!r} (id {run_id}) was taken over by {who} while this process was not "
        "renewing its claim; this process stops measuring it.",
        "The other process goes on with the run; `backbench runs` shows its status.",
    )


# ---- rows ---------------------------------------------------------------------------------

_SELECT = (
    "SELECT run_id, token, host, pid, pid_start, boot_id, command, acquired_at, heartbeat_at "
    "FROM run_leases WHERE run_id = ?"
)


def _from_row(row: sqlite3.Row) -> RunLease:
    return RunLease(
        run_id=int(row["run_id"]),
        token=str(row["token"]),
        holder=LeaseHolder(
            host=str(row["host"]),
            pid=int(row["pid"]),
            pid_start=None if row["pid_start"] is None else int(row["pid_start"]),
            boot_id=row["boot_id"],
            command=str(row["command"] or ""),
        ),  # fmt: skip
        acquired_at=float(row["acquired_at"]),
        heartbeat_at=float(row["heartbeat_at"]),
    )


def read(conn: sqlite3.Connection, run_id: int) -> RunLease | None:
    row = conn.execute(_SELECT, (int(run_id),)).fetchone()
    return None if row is None else _from_row(row)


def claim(
    conn: sqlite3.Connection, run_id: int, run_name: str, stale_after_s: float,
    holder: LeaseHolder | None = None,
) -> RunLease:  # fmt: skip
    """Claim ``run_id`` for ``holder`` (this process by default) inside the caller's write
    transaction. Raises RunBusyError while another holder lives; takes over one that is
    gone."""
    now = time.time()
    holder = holder or LeaseHolder.this_process()
    previous = read(conn, run_id)
    why = None
    if previous is not None:
        why = why_gone(previous, now, stale_after_s)
        if why is None:
            raise busy_error(previous, run_name, now)
        conn.execute("DELETE FROM run_leases WHERE run_id = ?", (int(run_id),))
    lease = RunLease(
        run_id=int(run_id), token=uuid.uuid4().hex, holder=holder, acquired_at=now,
        heartbeat_at=now, taken_over=previous, taken_over_why=why,
    )  # fmt: skip
    conn.execute(
        "INSERT INTO run_leases (run_id, token, host, pid, pid_start, boot_id, command, "
        "acquired_at, heartbeat_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            lease.run_id, lease.token, holder.host, holder.pid, holder.pid_start,
            holder.boot_id, holder.command, now, now,
        ),
    )  # fmt: skip
    if previous is not None:
        log.info("%s", lease.takeover_line(run_name))
    log.debug("Run %d claimed by %s", run_id, holder.describe())
    return lease


def renew(conn: sqlite3.Connection, lease: RunLease) -> bool:
    """Stamp the heartbeat; False when the claim is no longer ``lease``'s (taken over)."""
    cursor = conn.execute(
        "UPDATE run_leases SET heartbeat_at = ? WHERE run_id = ? AND token = ?",
        (time.time(), lease.run_id, lease.token),
    )
    return cursor.rowcount > 0


def release(conn: sqlite3.Connection, lease: RunLease) -> bool:
    """Drop the claim if it is still ``lease``'s; False when it was not (any more)."""
    cursor = conn.execute(
        "DELETE FROM run_leases WHERE run_id = ? AND token = ?", (lease.run_id, lease.token)
    )
    return cursor.rowcount > 0
