"""The methods an agent serves, each with the schema of its named parameters, and the
hello reply that lists them, with the version check it makes.

``validate_params`` checks a request's params at the boundary and returns a normalised
copy; it raises only ProtocolError (INVALID_PARAMS or METHOD_NOT_FOUND).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from core.errors import ProtocolError
from core.protocol.catalogue import metric_catalogue
from core.protocol.codes import (
    INVALID_PARAMS,
    MAX_ID_CHARS,
    MAX_RESULTS_PAGE,
    MAX_SAMPLES_PAGE,
    MAX_UPLOAD_BYTES,
    METHOD_NOT_FOUND,
    PROTOCOL_VERSION,
    VERSION_MISMATCH,
)
from core.protocol.events import TOPICS
from core.text import json_type, shown

# ---------------------------------------------------------------- params

Check = Callable[[str, Any], Any]  # (param name, value) -> normalised value


def invalid_params(message: str, hint: str | None = None) -> ProtocolError:
    return ProtocolError(INVALID_PARAMS, message, hint)


def _expect(name: str, value: Any, ok: bool, what: str) -> None:
    if not ok:
        raise invalid_params(f"Parameter {name!r} must be {what}, got {json_type(value)}.")


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
    ids, model = _str(1, MAX_ID_CHARS), _str(1, 4096)  # a model is a name or a path (PATH_MAX)
    return {model(name, k): ids(name, v) for k, v in value.items()}


def _base64(name: str, value: Any) -> bytes:
    _expect(name, value, isinstance(value, str), "a base64 string")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise invalid_params(f"Parameter {name!r} is not valid base64.") from None


MAX_SPEC_FIELDS = 64  # a run spec has about ten; the agent checks each against the run options


def _spec_object(name: str, value: Any) -> dict[str, Any]:
    """Only the shape: the agent checks a spec's fields against the run options, which
    live above the protocol (core.cli.run_options, ``spec_from_remote``)."""
    _expect(name, value, isinstance(value, dict), "an object (a run spec)")
    if len(value) > MAX_SPEC_FIELDS:
        raise invalid_params(f"Parameter {name!r} has more than {MAX_SPEC_FIELDS} fields.")
    return dict(value)


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
        "spec": Param(_spec_object, required=True),
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

    Defaults are filled in, upload_chunk's ``data`` becomes bytes and topics are
    de-duplicated; submit's ``spec`` stays an object, for the agent to check. Raises
    ProtocolError: METHOD_NOT_FOUND for an unknown method, INVALID_PARAMS naming the
    parameter otherwise.
    """
    schema = METHODS.get(method) if isinstance(method, str) else None
    if schema is None:
        raise ProtocolError(
            METHOD_NOT_FOUND, f"Unknown method {shown(method)}.", f"Methods: {', '.join(METHODS)}."
        )
    if not isinstance(params, Mapping):
        raise invalid_params("Params must be an object.")
    unknown = sorted(set(params) - set(schema))
    if unknown:
        allowed = ", ".join(schema) or "none"
        raise invalid_params(
            f"Unknown parameter {shown(unknown[0])} for {method}.", f"Parameters: {allowed}."
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
            f"Unreadable protocol version {shown(text)}.",
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
