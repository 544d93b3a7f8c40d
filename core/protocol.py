"""The agent wire protocol: JSON-RPC 2.0, one message per line (newline-delimited JSON).

Pure data: framing, validation, message builders, the version check, the metric catalogue
and the per-client outbound queue. No sockets, no asyncio and no Qt, so that the agent
(service/) and the GUI (QLocalSocket) share it, and it imports on Python 3.10.

Everything a peer sends is untrusted: ``LineDecoder`` bounds memory per line,
``parse_message`` checks the envelope and ``validate_params`` checks each method's named
parameters. They raise only ``ProtocolError`` (with a JSON-RPC code), never crash, and
their messages never echo internal exception text.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import re
import sys
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.errors import (
    BackbenchError,
    BackendUnavailableError,
    DeviceUnavailableError,
    PrecisionUnsupportedError,
    ProtocolError,
    RunNotFoundError,
    UnknownModelError,
    UnknownSuiteError,
    UsageError,
)
from core.results import RunSpec, StoppingRule

logger = logging.getLogger(__name__)

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

# Notification names pushed by the agent.
JOB_QUEUED = "job.queued"
JOB_STARTED = "job.started"
JOB_CASE_STARTED = "job.case_started"
JOB_CASE_FINISHED = "job.case_finished"  # carries the Measurement dict
JOB_CASE_FAILED = "job.case_failed"  # carries the reason
JOB_FINISHED = "job.finished"
JOB_CANCELLED = "job.cancelled"
JOB_INTERRUPTED = "job.interrupted"
JOB_EVENTS = (
    JOB_QUEUED, JOB_STARTED, JOB_CASE_STARTED, JOB_CASE_FINISHED,
    JOB_CASE_FAILED, JOB_FINISHED, JOB_CANCELLED, JOB_INTERRUPTED,
)  # fmt: skip
TELEMETRY = "telemetry"
GAP = "gap"
TOPIC_JOBS = "jobs"
TOPIC_TELEMETRY = "telemetry"
TOPICS = (TOPIC_JOBS, TOPIC_TELEMETRY)


@dataclass(frozen=True, slots=True)
class Metric:
    """One self-describing metric; clients build axes and legends from the catalogue."""

    name: str
    unit: str
    description: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "unit": self.unit, "description": self.description}


METRICS: tuple[Metric, ...] = (
    Metric("latency_ns", "ns", "Latency of one timed iteration (one whole batch)."),
    Metric("per_image_ms", "ms", "Median iteration latency divided by the batch size."),
    Metric("throughput_ips", "images/s", "Images per second over the timed loop."),
    Metric("first_inference_ms", "ms", "Latency of the very first inference (cold)."),
    Metric("rss_mb", "MB", "Resident memory of the worker process."),
    Metric("peak_rss_mb", "MB", "Peak resident memory of the worker during the case."),
    Metric("device_mem_mb", "MB", "Accelerator memory in use by the worker."),
    Metric("peak_device_mem_mb", "MB", "Peak accelerator memory during the case."),
    Metric("params", "count", "Number of model parameters."),
    Metric("flops", "FLOP/image", "Floating-point operations per image (2 x MACs)."),
    Metric("ci95_rel", "fraction", "Relative half-width of the 95% CI of the median."),
)


def metric_catalogue() -> list[dict[str, str]]:
    return [m.to_dict() for m in METRICS]


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


# ---------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class Request:
    id: str | int
    method: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Notification:
    method: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RpcError:
    code: int
    message: str
    data: Any = None

    @property
    def hint(self) -> str | None:
        hint = self.data.get("hint") if isinstance(self.data, dict) else None
        return hint if isinstance(hint, str) else None

    def to_exception(self) -> ProtocolError:
        return ProtocolError(self.code, self.message, self.hint)


@dataclass(frozen=True, slots=True)
class Response:
    id: str | int | None
    result: Any = None
    error: RpcError | None = None


Message = Request | Notification | Response


class MessageError(ProtocolError):
    """A frame that breaks the envelope; ``request_id`` is set when it could be read,
    so the error reply can carry it (JSON-RPC asks for null otherwise)."""

    def __init__(
        self, code: int, message: str, hint: str | None = None, request_id: str | int | None = None
    ) -> None:
        super().__init__(code, message, hint)
        self.request_id = request_id


def _shown(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def _parse_int(text: str) -> int:
    if len(text) > 64:  # Python 3.10 has no int digit limit; big ints parse in quadratic time
        raise ValueError("integer too long")
    return int(text)


# 3.11+ bounds integer parsing itself; keep the C fast path there.
_INT_PARSER: Callable[[str], int] | None = (
    None if getattr(sys, "get_int_max_str_digits", lambda: 0)() else _parse_int
)


def _valid_id(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -(2**53) < value < 2**53  # exact in every JSON implementation
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_CHARS


def parse_message(line: bytes | str) -> Message:
    """Parse and check one frame. Raises MessageError (a ProtocolError) on anything wrong."""
    if len(line) > MAX_FRAME_BYTES:
        raise MessageError(PAYLOAD_TOO_LARGE, f"A message is larger than {MAX_FRAME_BYTES} bytes.")
    try:
        text = line.decode("utf-8") if isinstance(line, (bytes, bytearray)) else line
    except UnicodeDecodeError:
        raise MessageError(PARSE_ERROR, "The message is not valid UTF-8.") from None
    try:
        obj = json.loads(
            text, parse_constant=_reject_constant, parse_float=_parse_float, parse_int=_INT_PARSER
        )
    except json.JSONDecodeError as exc:
        raise MessageError(
            PARSE_ERROR, f"Malformed JSON: {exc.msg} at character {exc.pos}."
        ) from None
    except (ValueError, RecursionError):
        raise MessageError(
            PARSE_ERROR, "Malformed JSON: a number too large or nesting too deep."
        ) from None
    if not isinstance(obj, dict):
        what = "Batch requests are not supported" if isinstance(obj, list) else "Not a JSON object"
        raise MessageError(INVALID_REQUEST, f"{what}: send one JSON-RPC object per line.")
    raw_id = obj.get("id")
    request_id = raw_id if _valid_id(raw_id) else None

    def bad(message: str, code: int = INVALID_REQUEST) -> MessageError:
        return MessageError(code, message, None, request_id)

    if obj.get("jsonrpc") != JSONRPC:
        raise bad(f'"jsonrpc" must be "2.0", got {_shown(obj.get("jsonrpc"))}.')
    if "method" in obj:
        extra = sorted(set(obj) - {"jsonrpc", "method", "params", "id"})
        if extra:
            raise bad(f"Unknown member {_shown(extra[0])} in a request.")
        method = obj["method"]
        if not isinstance(method, str) or not method:
            raise bad(f'"method" must be a non-empty string, got {_json_type(method)}.')
        params = obj.get("params", {})
        if isinstance(params, list):
            raise bad(
                "Positional params are not supported: pass params as an object.", INVALID_PARAMS
            )
        if not isinstance(params, dict):
            raise bad(f'"params" must be an object, got {_json_type(params)}.')
        if "id" not in obj:
            return Notification(method, params)
        if request_id is None:
            what = f"a string (1..{MAX_ID_CHARS} chars) or an integer"
            raise bad(f'"id" must be {what}, got {_json_type(raw_id)}.')
        return Request(request_id, method, params)
    if "result" in obj or "error" in obj:
        extra = sorted(set(obj) - {"jsonrpc", "result", "error", "id"})
        if extra or ("result" in obj and "error" in obj):
            raise bad("A reply has exactly one of result or error, and an id.")
        if "id" not in obj or (raw_id is not None and request_id is None):
            raise bad('A reply needs an "id": a string, an integer, or null.')
        if "result" in obj:
            return Response(request_id, obj["result"])
        err = obj["error"]
        code, message = (
            (err.get("code"), err.get("message")) if isinstance(err, dict) else (None, None)
        )
        if not isinstance(code, int) or isinstance(code, bool) or not isinstance(message, str):
            raise bad('"error" must be an object with an integer "code" and a string "message".')
        return Response(request_id, None, RpcError(code, message, err.get("data")))
    raise bad('A message needs a "method" (request or notification) or a "result"/"error" (reply).')


def make_request(id: str | int, method: str, **params: Any) -> dict[str, Any]:
    if not _valid_id(id):
        raise ValueError(f"invalid request id {id!r}")
    return {"jsonrpc": JSONRPC, "id": id, "method": method, "params": params}


def make_notification(method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"jsonrpc": JSONRPC, "method": method, "params": dict(params or {})}


def make_result(id: str | int | None, result: Any) -> dict[str, Any]:
    return {"jsonrpc": JSONRPC, "id": id, "result": result}


def make_error(
    id: str | int | None,
    code: int,
    message: str,
    data: Mapping[str, Any] | None = None,
    *,
    hint: str | None = None,
) -> dict[str, Any]:
    """An error reply. ``message`` and ``hint`` must be user-facing text, never str(exc)
    of an internal exception: use ``make_error_from`` for BackbenchErrors and
    ``INTERNAL_ERROR_MESSAGE`` for bugs."""
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None or hint:
        error["data"] = {**(data or {}), **({"hint": hint} if hint else {})}
    return {"jsonrpc": JSONRPC, "id": id, "error": error}


def error_code_for(error: BackbenchError) -> int:
    if isinstance(error, ProtocolError):
        return error.code
    if isinstance(error, RunNotFoundError):
        return NOT_FOUND
    if isinstance(
        error, (UsageError, UnknownModelError, UnknownSuiteError, PrecisionUnsupportedError)
    ):
        return INVALID_PARAMS
    if isinstance(error, (BackendUnavailableError, DeviceUnavailableError)):
        return UNAVAILABLE
    return REQUEST_FAILED


def make_error_from(id: str | int | None, error: BackbenchError) -> dict[str, Any]:
    """The reply for an expected error: its own message and hint, which are user-facing."""
    return make_error(id, error_code_for(error), error.message, hint=error.hint)


def make_internal_error(id: str | int | None) -> dict[str, Any]:
    return make_error(id, INTERNAL_ERROR, INTERNAL_ERROR_MESSAGE)


def make_job_event(event: str, job_id: int, **fields: Any) -> dict[str, Any]:
    """A job event notification, e.g. ``make_job_event(JOB_CASE_FINISHED, 3, case_index=0,
    measurement=m.to_dict())`` or ``(JOB_CASE_FAILED, 3, case_index=1, reason=...)``."""
    if event not in JOB_EVENTS:
        raise ValueError(f"unknown job event {event!r}")
    return make_notification(event, {"job_id": job_id, **fields})


def make_telemetry(
    job_id: int,
    case_index: int,
    samples: Sequence[Sequence[int]] | None = None,
    memory: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """``samples`` are [t_ns, latency_ns] pairs; ``memory`` readings are
    {t_ns, rss_mb, device_memory}."""
    params: dict[str, Any] = {"job_id": job_id, "case_index": case_index}
    if samples is not None:
        params["samples"] = samples
    if memory is not None:
        params["memory"] = memory
    return make_notification(TELEMETRY, params)


def make_gap(dropped: int, dropped_memory: int = 0, topic: str = TOPIC_TELEMETRY) -> dict[str, Any]:
    params: dict[str, Any] = {"topic": topic, "dropped": dropped}
    if dropped_memory:
        params["dropped_memory"] = dropped_memory
    return make_notification(GAP, params)


def make_hello_result(
    *, agent_version: str, boot_id: str, host: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        "agent_version": agent_version,
        "protocol_version": PROTOCOL_VERSION,
        "boot_id": boot_id,
        "host": dict(host),
        "metrics": metric_catalogue(),
        "methods": sorted(METHODS),
        "topics": list(TOPICS),
    }


# ---------------------------------------------------------------- version check

_VERSION_RE = re.compile(r"(\d{1,4})\.(\d{1,4})")


def parse_version(text: str) -> tuple[int, int]:
    match = _VERSION_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ProtocolError(
            VERSION_MISMATCH,
            f"Unreadable protocol version {_shown(text)}.",
            "Send protocol_version as 'MAJOR.MINOR', e.g. '1.0'.",
        )
    return int(match.group(1)), int(match.group(2))


def check_version(
    peer_version: str, local_version: str = PROTOCOL_VERSION, *, peer_role: str
) -> None:
    """Refuse a peer whose MAJOR version differs, saying which side to upgrade (the older).

    ``peer_role`` is what the peer is: "client" when the agent checks a hello, "agent"
    when a client checks the hello reply. Minor differences are fine.
    """
    if peer_role not in ("client", "agent"):
        raise ValueError(f"peer_role must be 'client' or 'agent', not {peer_role!r}")
    peer_major = parse_version(peer_version)[0]
    local_major = parse_version(local_version)[0]
    if peer_major == local_major:
        return
    agent, client = (
        (local_major, peer_major) if peer_role == "client" else (peer_major, local_major)
    )
    if client < agent:
        side, where = "client", "backbench on this machine"
    else:
        side, where = "agent", "backbench on the host that runs the agent, then restart it"
    raise ProtocolError(
        VERSION_MISMATCH,
        f"The agent speaks protocol {agent}.x and this client {client}.x: "
        f"upgrade the {side} ({where}).",
        "Minor versions mix freely; only the major version must match.",
    )


# ---------------------------------------------------------------- params

Check = Callable[[str, Any], Any]  # (param name, value) -> normalised value


def invalid_params(message: str, hint: str | None = None) -> ProtocolError:
    return ProtocolError(INVALID_PARAMS, message, hint)


def _expect(name: str, value: Any, ok: bool, what: str) -> None:
    if not ok:
        raise invalid_params(f"Parameter {name!r} must be {what}, got {_json_type(value)}.")


def _str(min_len: int = 0, max_len: int = 256, pattern: str | None = None, what: str = "") -> Check:
    regex = re.compile(pattern) if pattern else None

    def check(name: str, value: Any) -> str:
        _expect(name, value, isinstance(value, str), "a string")
        if not min_len <= len(value) <= max_len or (regex and not regex.fullmatch(value)):
            raise invalid_params(
                f"Parameter {name!r} must be {what or f'{min_len}..{max_len} characters'}."
            )
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise invalid_params(f"Parameter {name!r} is not valid Unicode text.") from None
        return value

    return check


def _int(min_value: int = 0, max_value: int = 2**53 - 1) -> Check:
    def check(name: str, value: Any) -> int:
        _expect(name, value, isinstance(value, int) and not isinstance(value, bool), "an integer")
        if not min_value <= value <= max_value:
            raise invalid_params(f"Parameter {name!r} must be between {min_value} and {max_value}.")
        return value

    return check


def _bool(name: str, value: Any) -> bool:
    _expect(name, value, isinstance(value, bool), "a boolean")
    return value


def _run_ref(name: str, value: Any) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool):
        return _int(1)(name, value)
    _expect(name, value, isinstance(value, str), "a run id (integer) or run name (string)")
    return _str(1, 256)(name, value)


def _topics(name: str, value: Any) -> list[str]:
    _expect(name, value, isinstance(value, list), "an array of topics")
    if not value or not all(isinstance(t, str) and t in TOPICS for t in value):
        raise invalid_params(f"Parameter {name!r} must list topics from: {', '.join(TOPICS)}.")
    return sorted(set(value), key=TOPICS.index)


def _upload_ids(name: str, value: Any) -> dict[str, str]:
    _expect(name, value, isinstance(value, dict), "an object mapping model names to upload ids")
    ids, model = _str(1, MAX_ID_CHARS), _str(1, 256)
    return {model(name, k): ids(name, v) for k, v in value.items()}


def _base64(name: str, value: Any) -> bytes:
    _expect(name, value, isinstance(value, str), "a base64 string")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise invalid_params(f"Parameter {name!r} is not valid base64.") from None


_SPEC_FIELDS = tuple(RunSpec.__dataclass_fields__)  # type: ignore[attr-defined]
_STOPPING_TYPES = {k: type(f.default) for k, f in StoppingRule.__dataclass_fields__.items()}  # type: ignore[attr-defined]


def _is_text(value: Any, max_len: int) -> bool:
    return isinstance(value, str) and 0 < len(value) <= max_len


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _stopping_ok(key: Any, value: Any) -> bool:
    kind = _STOPPING_TYPES.get(key)
    if kind is None or isinstance(value, bool):
        return False
    return isinstance(value, int) if kind is int else isinstance(value, (int, float))


def _run_spec(name: str, value: Any) -> RunSpec:
    _expect(name, value, isinstance(value, dict), "an object (a run spec)")
    extra = sorted(set(value) - set(_SPEC_FIELDS))
    if extra:
        raise invalid_params(
            f"Parameter {name!r} has an unknown field {_shown(extra[0])}.",
            f"A run spec has: {', '.join(_SPEC_FIELDS)}.",
        )
    stopping, weights = value.get("stopping") or {}, value.get("weights") or {}
    models, sizes = value.get("models", []), value.get("batch_sizes", [1])
    sizes = sizes if isinstance(sizes, list) else [sizes]
    for key, ok in (
        (
            "models",
            isinstance(models, list)
            and len(models) <= 1000
            and all(_is_text(m, 256) for m in models),
        ),
        ("batch_sizes", 0 < len(sizes) <= 64 and all(_is_int(b) for b in sizes)),
        ("backend", _is_text(value.get("backend", "torch"), 32)),
        ("precision", _is_text(value.get("precision", "fp32"), 32)),
        ("mode", _is_text(value.get("mode", "latency"), 32)),
        (
            "stopping",
            isinstance(stopping, dict) and all(_stopping_ok(*kv) for kv in stopping.items()),
        ),
        ("name", value.get("name") is None or _is_text(value.get("name"), 256)),
        ("device", _is_text(value.get("device", "cpu"), 64)),
        ("isolate", isinstance(value.get("isolate", True), bool)),
        ("weights", isinstance(weights, dict) and all(_is_text(v, 4096) for v in weights.values())),
    ):
        if not ok:
            raise invalid_params(f"Parameter {name!r} has an invalid {key!r} field.")
    try:
        return RunSpec.from_dict(value)
    except UsageError as exc:
        # Its messages quote the value: keep an error reply small whatever was sent.
        raise invalid_params(f"Parameter {name!r}: {exc.message[:200]}", exc.hint) from None
    except (TypeError, ValueError, KeyError):  # odd shapes the RunSpec parser does not name
        raise invalid_params(f"Parameter {name!r} is not a valid run spec.") from None


@dataclass(frozen=True, slots=True)
class Param:
    check: Check
    required: bool = False
    default: Any = None  # filled in when absent; None leaves it absent


_JOB_ID = Param(_int(1), required=True)
_OFFSET = Param(_int(0), default=0)
_SHA256 = _str(64, 64, r"[0-9a-f]{64}", "64 lowercase hex digits")
_FILE_NAME = _str(1, 255, r"(?!\.\.?$)[^/\\\x00]+", "a plain file name (no path)")

METHODS: dict[str, dict[str, Param]] = {
    "hello": {"protocol_version": Param(_str(1, 16), required=True), "client": Param(_str(0, 200))},
    "list_devices": {},
    "list_models": {"suite": Param(_str(1, 128)), "filter": Param(_str(1, 256))},
    "submit": {
        "spec": Param(_run_spec, required=True),
        "client_request_id": Param(_str(1, MAX_ID_CHARS), required=True),
        "model_upload_ids": Param(_upload_ids),
    },
    "cancel": {"job_id": _JOB_ID},
    "status": {"job_id": Param(_int(1))},
    "list_runs": {"limit": Param(_int(1, MAX_RESULTS_PAGE), default=100), "offset": _OFFSET},
    "get_results": {
        "run": Param(_run_ref, required=True),
        "offset": _OFFSET,
        "limit": Param(_int(1, MAX_RESULTS_PAGE), default=100),
        "include_samples": Param(_bool, default=False),
    },
    "get_samples": {
        "measurement_id": Param(_int(1), required=True),
        "offset": _OFFSET,
        "limit": Param(_int(1, MAX_SAMPLES_PAGE), default=MAX_SAMPLES_PAGE),
    },
    "resume": {"job_id": _JOB_ID},
    "subscribe": {"topics": Param(_topics, required=True), "job_id": Param(_int(1))},
    "unsubscribe": {"topics": Param(_topics)},
    "upload_begin": {
        "name": Param(_FILE_NAME, required=True),
        "size": Param(_int(1, MAX_UPLOAD_BYTES), required=True),
        "sha256": Param(_SHA256, required=True),
    },
    "upload_chunk": {
        "upload_id": Param(_str(1, MAX_ID_CHARS), required=True),
        "offset": Param(_int(0, MAX_UPLOAD_BYTES), required=True),
        "data": Param(_base64, required=True),
    },
    "upload_end": {"upload_id": Param(_str(1, MAX_ID_CHARS), required=True)},
}


def validate_params(method: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Check a request's named params against ``METHODS``; return a normalised copy.

    Defaults are filled in, submit's ``spec`` becomes a RunSpec, upload_chunk's ``data``
    becomes bytes and topics are de-duplicated. Raises ProtocolError: METHOD_NOT_FOUND
    for an unknown method, INVALID_PARAMS naming the parameter otherwise.
    """
    schema = METHODS.get(method) if isinstance(method, str) else None
    if schema is None:
        raise ProtocolError(
            METHOD_NOT_FOUND, f"Unknown method {_shown(method)}.", f"Methods: {', '.join(METHODS)}."
        )
    if not isinstance(params, Mapping):
        raise invalid_params("Params must be an object.")
    unknown = sorted(set(params) - set(schema))
    if unknown:
        allowed = ", ".join(schema) or "none"
        raise invalid_params(
            f"Unknown parameter {_shown(unknown[0])} for {method}.", f"Parameters: {allowed}."
        )
    out: dict[str, Any] = {}
    for name, spec in schema.items():
        if name in params:
            out[name] = spec.check(name, params[name])
        elif spec.required:
            raise invalid_params(f"Missing required parameter {name!r} for {method}.")
        elif spec.default is not None:
            out[name] = spec.default
    return out


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
    nothing more is queued and the agent should disconnect it. Telemetry keeps at most
    ``max_telemetry_samples`` samples (and ``max_memory_readings`` memory readings),
    dropping the oldest; the next telemetry delivered is preceded by a ``gap``
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
