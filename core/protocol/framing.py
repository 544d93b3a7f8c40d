"""Framing: one compact JSON message per line, at most ``MAX_FRAME_BYTES`` long.

``encode`` writes a frame; ``LineDecoder`` splits a byte stream into lines with bounded
memory whatever a peer sends.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from core.errors import (
    ProtocolError,
)
from core.protocol.codes import MAX_FRAME_BYTES, PAYLOAD_TOO_LARGE

# ---------------------------------------------------------------- framing


class FrameError(ProtocolError):
    """A line over ``MAX_FRAME_BYTES``; the decoder dropped it and reports it once."""

    def __init__(self, size_bytes: int) -> None:
        super().__init__(
            PAYLOAD_TOO_LARGE,
            f"A message of more than {MAX_FRAME_BYTES} bytes was discarded "
            f"({size_bytes} bytes seen).",
            "Send smaller messages: page results with offset/limit and upload files in chunks.",
        )
        self.size_bytes = size_bytes


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def encode(msg: Mapping[str, Any]) -> bytes:
    """One compact ASCII JSON line ending in a newline; NaN and infinities become null.

    ASCII escapes keep lone surrogates (which JSON allows) encodable. Raises
    ProtocolError(PAYLOAD_TOO_LARGE) when the frame would exceed ``MAX_FRAME_BYTES``.
    """
    try:
        text = json.dumps(msg, separators=(",", ":"), allow_nan=False)
    except ValueError:  # a non-finite float somewhere: the slow path only then
        text = json.dumps(_finite(msg), separators=(",", ":"), allow_nan=False)
    frame = text.encode("ascii") + b"\n"
    if len(frame) > MAX_FRAME_BYTES:
        raise ProtocolError(
            PAYLOAD_TOO_LARGE,
            f"A message of {len(frame)} bytes exceeds the {MAX_FRAME_BYTES}-byte frame limit.",
            "Ask for a smaller page (a lower limit) or send the data in chunks.",
        )
    return frame


class LineDecoder:
    """Splits a byte stream into lines, holding at most ``MAX_FRAME_BYTES`` of a partial line.

    ``feed`` returns the complete non-blank lines (without the newline and an optional
    carriage return) and a ``FrameError`` for each line over the limit. An oversized line
    is reported as soon as it is detected and then skipped up to its newline without
    being buffered, so memory stays bounded whatever a peer sends.
    """

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self._limit = max_frame_bytes  # newline included, as for encode()
        self._buf = bytearray()
        self._discarding = False

    @property
    def buffered_bytes(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes | FrameError]:
        out: list[bytes | FrameError] = []
        pos, end = 0, len(data)
        while pos < end:
            nl = data.find(b"\n", pos)
            if self._discarding:
                if nl < 0:
                    break
                self._discarding = False
                pos = nl + 1
                continue
            held = len(self._buf) + (end if nl < 0 else nl) - pos  # newline excluded
            if nl < 0:
                too_big = held > self._limit  # it may still end in \r before its \n
            else:
                last = data[nl - 1 : nl] if nl > pos else bytes(self._buf[-1:])
                too_big = held - (last == b"\r") > self._limit - 1
            if too_big:
                out.append(FrameError(held))
                self._buf.clear()
                self._discarding = nl < 0
                pos = end if nl < 0 else nl + 1
                continue
            if nl < 0:
                self._buf += data[pos:]
                break
            if self._buf:
                self._buf += data[pos:nl]
                line = bytes(self._buf)
                self._buf.clear()
            else:
                line = data[pos:nl]
            pos = nl + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if line.strip():
                out.append(line)
        return out
