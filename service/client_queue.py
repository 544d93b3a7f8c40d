"""One client's bounded outbound queue, with exact accounting of dropped telemetry.

Pure data: the agent's server does the I/O. Events and replies are never dropped;
telemetry drops its oldest items and announces each drop with a ``gap``.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.errors import (
    ProtocolError,
)
from core.protocol.codes import MAX_FRAME_BYTES
from core.protocol.framing import encode
from core.protocol.messages import make_gap, make_telemetry

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------- per-client queue


@dataclass(slots=True)
class _Chunk:
    key: tuple[int, int]  # (job_id, case_index)
    items: list[Any]


class _Stream:
    """Pending telemetry items of one kind; keeps at most ``bound``, dropping the oldest.

    Item i (counted from 0 over the stream's life) is pending iff
    ``head_index <= i < produced``, so produced == delivered + dropped + pending.
    """

    def __init__(self, bound: int) -> None:
        self.bound = bound
        self.chunks: deque[_Chunk] = deque()
        self.pending = self.produced = self.delivered = self.dropped = self.unreported = 0

    @property
    def head_index(self) -> int:
        return self.produced - self.pending

    def push(self, key: tuple[int, int], items: list[Any]) -> None:
        self.produced += len(items)
        if len(items) > self.bound:  # only the newest ones could survive anyway
            self._dropped(len(items) - self.bound)
            items = items[-self.bound :]
        if not items:
            return
        if self.chunks and self.chunks[-1].key == key:
            self.chunks[-1].items.extend(items)
        else:
            self.chunks.append(_Chunk(key, items))
        self.pending += len(items)
        excess = self.pending - self.bound
        while excess > 0:
            head = self.chunks[0]
            n = min(excess, len(head.items))
            del head.items[:n]
            if not head.items:
                self.chunks.popleft()
            self.pending -= n
            self._dropped(n)
            excess -= n

    def _dropped(self, n: int) -> None:
        self.dropped += n
        self.unreported += n

    def take(self, n: int) -> None:
        head = self.chunks[0]
        del head.items[:n]
        if not head.items:
            self.chunks.popleft()
        self.pending -= n
        self.delivered += n

    def discard(self) -> int:
        n = self.pending
        self.chunks.clear()
        self.pending = 0
        self._dropped(n)
        self.unreported = 0  # nobody is listening for a gap any more
        return n


@dataclass(slots=True)
class _Event:
    frame: bytes
    watermarks: tuple[int, int]  # telemetry produced before it, per stream


class ClientQueue:
    """One client's bounded outbound queue; pure data, the agent does the I/O.

    Events and replies are never dropped: past ``max_events`` (or ``max_event_bytes``)
    pending, the client is too slow to keep and ``overflowed`` turns true, after which
    nothing more is queued and the agent should disconnect it; replies stay well below
    that bound, as the agent reads no requests while ``replies_backlogged``. Telemetry
    keeps at most ``max_telemetry_samples`` samples (and ``max_memory_readings`` memory
    readings), dropping the oldest; the next telemetry delivered is preceded by a ``gap``
    notification with the exact counts dropped since the last gap, so that
    delivered + dropped == produced. Order is kept: telemetry produced before an event
    is delivered (or dropped) before it.
    """

    def __init__(
        self,
        max_telemetry_samples: int,
        *,
        max_events: int = 1024,
        max_event_bytes: int = 16 * MAX_FRAME_BYTES,
        max_memory_readings: int = 256,
        max_batch_samples: int = 4096,
        max_batch_readings: int = 64,
    ) -> None:
        limits = (max_telemetry_samples, max_events, max_event_bytes, max_memory_readings,
                  max_batch_samples, max_batch_readings)  # fmt: skip
        if min(limits) < 1:
            raise ValueError("ClientQueue limits must be at least 1")
        self._samples = _Stream(max_telemetry_samples)
        self._memory = _Stream(max_memory_readings)
        self._batch = (max_batch_samples, max_batch_readings)
        self._events: deque[_Event] = deque()
        self._max_events, self._max_event_bytes = max_events, max_event_bytes
        self._event_bytes = 0
        self.overflowed = False

    produced = property(lambda self: self._samples.produced, doc="Samples pushed.")
    delivered = property(lambda self: self._samples.delivered, doc="Samples popped as frames.")
    dropped = property(lambda self: self._samples.dropped, doc="Samples dropped, oldest first.")
    pending_samples = property(lambda self: self._samples.pending)
    pending_events = property(lambda self: len(self._events))

    def replies_backlogged(self) -> bool:
        """True while a quarter of the event bounds is pending: the agent then reads no
        more requests from this client until its queue drains. One request makes one
        reply, so pipelined replies stay within that quarter and never overflow the
        queue; the rest is room for job events, which only a client that does not read
        them at all can overflow."""
        return len(self._events) >= max(1, self._max_events // 4) or (
            self._event_bytes >= max(1, self._max_event_bytes // 4)
        )

    def stats(self) -> dict[str, int]:
        s, m = self._samples, self._memory
        return {
            "produced": s.produced, "delivered": s.delivered, "dropped": s.dropped,
            "pending": s.pending, "memory_produced": m.produced,
            "memory_delivered": m.delivered, "memory_dropped": m.dropped,
            "memory_pending": m.pending, "events_pending": len(self._events),
            "event_bytes_pending": self._event_bytes,
        }  # fmt: skip

    def push_event(self, msg: Mapping[str, Any]) -> bool:
        """Queue a job event (or a reply). False once the client has overflowed."""
        if self.overflowed:
            return False
        frame = encode(msg)
        if len(self._events) >= self._max_events or (
            self._event_bytes + len(frame) > self._max_event_bytes
        ):
            logger.warning("A client has %d events pending; it is too slow", len(self._events))
            self.overflowed = True
            return False
        self._events.append(_Event(frame, (self._samples.produced, self._memory.produced)))
        self._event_bytes += len(frame)
        return True

    push_reply = push_event

    def push_telemetry(
        self, job_id: int, samples: Iterable[Sequence[int]], case_index: int = 0
    ) -> None:
        """Queue [t_ns, latency_ns] pairs; the oldest pending ones go past the bound."""
        if hasattr(samples, "tolist"):  # a numpy (n, 2) array: plain ints for json
            samples = samples.tolist()
        self._samples.push((job_id, case_index), list(samples))

    def push_memory(
        self,
        job_id: int,
        t_ns: int,
        rss_mb: float | None,
        device_memory: Mapping[str, Any] | None = None,
        case_index: int = 0,
    ) -> None:
        reading = {"t_ns": t_ns, "rss_mb": rss_mb, "device_memory": dict(device_memory or {})}
        if len(encode(reading)) > MAX_FRAME_BYTES // (4 * self._batch[1]):
            raise ValueError("memory reading too large for a telemetry batch")
        self._memory.push((job_id, case_index), [reading])

    def discard_telemetry(self) -> int:
        """Drop all pending telemetry (the client unsubscribed); counted as dropped."""
        self._memory.discard()
        return self._samples.discard()

    def pop_frames(self, max_bytes: int = 256 * 1024) -> list[bytes]:
        """Encoded frames to write next, about ``max_bytes`` in all (at least one frame
        when anything is pending). What is returned counts as delivered."""
        frames: list[bytes] = []
        used = 0

        def fits(frame: bytes) -> bool:
            nonlocal used
            if frames and used + len(frame) > max_bytes:
                return False
            frames.append(frame)
            used += len(frame)
            return True

        streams = (self._samples, self._memory)
        while self._events or self._samples.pending or self._memory.pending:
            if self._events:
                event = self._events[0]
                before = [
                    max(0, w - s.head_index) for w, s in zip(event.watermarks, streams, strict=True)
                ]
            else:
                before = [s.pending for s in streams]
            index = next((i for i, n in enumerate(before) if n > 0), None)
            if index is None:
                if not fits(event.frame):
                    break
                self._events.popleft()
                self._event_bytes -= len(event.frame)
            elif not self._pop_telemetry(index, before[index], fits):
                break
        return frames

    def _pop_telemetry(self, index: int, limit: int, fits: Callable[[bytes], bool]) -> bool:
        samples, memory = self._samples, self._memory
        if samples.unreported or memory.unreported:
            if not fits(encode(make_gap(samples.unreported, memory.unreported))):
                return False
            samples.unreported = memory.unreported = 0
        stream = (samples, memory)[index]
        head = stream.chunks[0]
        n = min(limit, len(head.items), self._batch[index])
        while n > 0:
            batch = head.items[:n]
            msg = make_telemetry(*head.key, **{("samples", "memory")[index]: batch})
            try:
                frame: bytes | None = encode(msg)
            except ProtocolError:  # a batch over one frame (a generous max_batch): halve it
                frame = None
            if frame is not None and fits(frame):
                stream.take(n)
                return True
            n //= 2
        return False
