"""JSON-RPC 2.0 envelopes: parsing and checking one frame, and the builders of requests,
replies, errors and notifications.

Everything a peer sends is untrusted: ``parse_message`` raises only ``MessageError`` (a
ProtocolError with a JSON-RPC code), and error replies never carry internal exception text.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
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
from core.protocol.codes import (
    INTERNAL_ERROR,
    INTERNAL_ERROR_MESSAGE,
    INVALID_PARAMS,
    INVALID_REQUEST,
    JSONRPC,
    MAX_FRAME_BYTES,
    MAX_ID_CHARS,
    NOT_FOUND,
    PARSE_ERROR,
    PAYLOAD_TOO_LARGE,
    REQUEST_FAILED,
    UNAVAILABLE,
)
from core.protocol.events import GAP, TELEMETRY, TOPIC_TELEMETRY, JobEvent
from core.text import json_type, shown

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
        raise bad(f'"jsonrpc" must be "2.0", got {shown(obj.get("jsonrpc"))}.')
    if "method" in obj:
        extra = sorted(set(obj) - {"jsonrpc", "method", "params", "id"})
        if extra:
            raise bad(f"Unknown member {shown(extra[0])} in a request.")
        method = obj["method"]
        if not isinstance(method, str) or not method:
            raise bad(f'"method" must be a non-empty string, got {json_type(method)}.')
        params = obj.get("params", {})
        if isinstance(params, list):
            raise bad(
                "Positional params are not supported: pass params as an object.", INVALID_PARAMS
            )
        if not isinstance(params, dict):
            raise bad(f'"params" must be an object, got {json_type(params)}.')
        if "id" not in obj:
            return Notification(method, params)
        if request_id is None:
            what = f"a string (1..{MAX_ID_CHARS} chars) or an integer"
            raise bad(f'"id" must be {what}, got {json_type(raw_id)}.')
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


def make_job_event(event: JobEvent | str, job_id: int, **fields: Any) -> dict[str, Any]:
    """A job event notification, e.g. ``make_job_event(JobEvent.CASE_FINISHED, 3,
    case_index=0, measurement=m.to_dict())`` or ``(JobEvent.CASE_FAILED, 3, case_index=1,
    reason=...)``. Its method is the plain wire string, never the enum member."""
    try:
        method = JobEvent(event).value
    except ValueError:
        raise ValueError(f"unknown job event {event!r}") from None
    return make_notification(method, {"job_id": job_id, **fields})


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
