"""The worker -> parent pipe format.

A frame is a 1-byte kind, a 4-byte little-endian payload length, and the payload.
Samples travel as packed little-endian int64 pairs (timestamp_ns, latency_ns), at most
``SAMPLES_PER_FRAME`` a frame, so a sample frame fits in one PIPE_BUF-sized write (4 KiB)
and is written atomically. Everything else is a small JSON object.

End-of-file on the pipe means the worker has exited (or died).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from typing import Any

import numpy as np

HEADER = struct.Struct("<cI")
SAMPLES_PER_FRAME = 255  # 255 * 16 + 5 = 4085 bytes <= PIPE_BUF (4096)
SAMPLE_DTYPE = np.dtype("<i8")

KIND_SAMPLES = b"S"
KIND_PHASE = b"P"  # entering a phase: {"phase": "load" | "compile" | "warmup" | "measure"}
KIND_HEARTBEAT = b"H"  # {"device_memory": {...}} at ~10 Hz
KIND_RESULT = b"R"  # the harness result and the backend's effective config
KIND_ERROR = b"E"  # {"kind": FailureKind value, "message": ..., "hint": ...}

MAX_PAYLOAD = 1 << 20


def encode_json(kind: bytes, obj: dict[str, Any]) -> bytes:
    payload = json.dumps(obj, separators=(",", ":"), allow_nan=True, default=str).encode()
    return HEADER.pack(kind, len(payload)) + payload


def encode_samples(pairs: bytes) -> bytes:
    return HEADER.pack(KIND_SAMPLES, len(pairs)) + pairs


class FrameDecoder:
    """Incremental decoder: ``feed`` bytes as they arrive, iterate complete frames."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> Iterator[tuple[bytes, Any]]:
        self._buf += data
        while len(self._buf) >= HEADER.size:
            kind, length = HEADER.unpack_from(self._buf, 0)
            if length > MAX_PAYLOAD:
                raise ValueError(f"worker frame of {length} bytes exceeds the limit")
            end = HEADER.size + length
            if len(self._buf) < end:
                return
            payload = bytes(self._buf[HEADER.size : end])
            del self._buf[:end]
            if kind == KIND_SAMPLES:
                yield kind, np.frombuffer(payload, dtype=SAMPLE_DTYPE).reshape(-1, 2)
            else:
                yield kind, json.loads(payload)

    @property
    def pending(self) -> int:
        return len(self._buf)
