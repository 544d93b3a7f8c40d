"""Protocol version, frame and page limits, and error codes.

JSON-RPC's standard codes and the application codes of the -32000..-32099 server range.
"""

from __future__ import annotations

PROTOCOL_VERSION = "1.0"  # MAJOR.MINOR: only the major must match between peers
JSONRPC = "2.0"
MAX_FRAME_BYTES = 1 << 20  # one encoded message, newline included
MAX_ID_CHARS = 128
MAX_RESULTS_PAGE = 1000
MAX_SAMPLES_PAGE = 20_000  # 20k [t_ns, latency_ns] pairs stay well under a frame
UPLOAD_CHUNK_BYTES = 512 * 1024  # raw bytes per upload_chunk: base64 of it fits a frame
MAX_UPLOAD_BYTES = 8 << 30

# Standard JSON-RPC codes.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# Application codes (the -32000..-32099 server range).
VERSION_MISMATCH = -32000
NOT_FOUND = -32001  # job, run, measurement or upload
BUSY = -32002  # queue full
PAYLOAD_TOO_LARGE = -32003
UPLOAD_ERROR = -32004
NOT_SUBSCRIBED = -32005
HANDSHAKE_REQUIRED = -32006  # a method before hello
UNAVAILABLE = -32007  # backend or device not available on the agent's host
REQUEST_FAILED = -32010  # any other user-facing error (it carries message and hint)

INTERNAL_ERROR_MESSAGE = "Internal error in the agent; its log has the details."


# ---------------------------------------------------------------- version check
