"""The agent wire protocol: framing, validation, version check and the per-client queue."""

from __future__ import annotations

import base64
import json
import math
import random
from typing import Any

import pytest

from core.errors import ProtocolError, UnknownModelError
from core.protocol.catalogue import metric_catalogue
from core.protocol.codes import (
    BUSY,
    INTERNAL_ERROR,
    INTERNAL_ERROR_MESSAGE,
    INVALID_PARAMS,
    INVALID_REQUEST,
    MAX_FRAME_BYTES,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    PAYLOAD_TOO_LARGE,
    PROTOCOL_VERSION,
    VERSION_MISMATCH,
)
from core.protocol.events import TELEMETRY, JobEvent
from core.protocol.framing import FrameError, LineDecoder, encode
from core.protocol.messages import (
    MessageError,
    Notification,
    Request,
    Response,
    make_error,
    make_error_from,
    make_gap,
    make_internal_error,
    make_job_event,
    make_request,
    make_result,
    make_telemetry,
    parse_message,
)
from core.protocol.methods import METHODS, check_version, make_hello_result, validate_params
from core.results import RunSpec
from tests.jsonfuzz import random_json as fuzz_json

SPEC = {"models": ["resnet18"], "batch_sizes": [1, 4], "stopping": {"min_iters": 5}}
VALID_PARAMS: dict[str, dict[str, Any]] = {
    "hello": {"protocol_version": "1.0", "client": "pytest"},
    "list_devices": {},
    "list_models": {"suite": "paper", "filter": "resnet*"},
    "submit": {"spec": SPEC, "client_request_id": "abc-1", "model_upload_ids": {"m": "u1"}},
    "cancel": {"job_id": 3},
    "status": {},
    "list_runs": {"limit": 10},
    "get_results": {"run": "sweep-1", "offset": 0, "limit": 1000, "include_samples": True},
    "get_samples": {"measurement_id": 7, "offset": 100, "limit": 50},
    "resume": {"job_id": 2},
    "subscribe": {"topics": ["telemetry", "jobs", "jobs"], "job_id": 2},
    "unsubscribe": {"topics": ["telemetry"]},
    "upload_begin": {"name": "model.onnx", "size": 1234, "sha256": "ab" * 32},
    "upload_chunk": {"upload_id": "u1", "offset": 0, "data": base64.b64encode(b"xyz").decode()},
    "upload_end": {"upload_id": "u1"},
}


def decode_all(data: bytes) -> list[Any]:
    return [
        item if isinstance(item, FrameError) else parse_message(item)
        for item in LineDecoder().feed(data)
    ]


def raises_code(code: int, fn: Any, *args: Any, **kwargs: Any) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        fn(*args, **kwargs)
    assert info.value.code == code, info.value.message
    return info.value


# ---------------------------------------------------------------- framing


def test_encode_is_one_compact_ascii_line_with_nan_as_null() -> None:
    frame = encode({"a": [1.5, math.nan, {"b": math.inf, "c": -math.inf}], "s": "é\ud800"})
    assert frame.endswith(b"\n") and frame.count(b"\n") == 1
    assert b" " not in frame and frame.isascii()
    back = json.loads(frame)
    assert back == {"a": [1.5, None, {"b": None, "c": None}], "s": "é\ud800"}


def test_encode_refuses_a_frame_over_the_limit() -> None:
    err = raises_code(PAYLOAD_TOO_LARGE, encode, {"x": "a" * MAX_FRAME_BYTES})
    assert "frame limit" in err.message


def test_frames_at_the_limit_pass_and_one_byte_more_does_not() -> None:
    content = b"x" * (MAX_FRAME_BYTES - 1)  # plus the newline: exactly the limit
    assert LineDecoder().feed(content + b"\n") == [content]
    assert LineDecoder().feed(content + b"\r\n") == [content]
    items = LineDecoder().feed(content + b"yy\n")
    assert len(items) == 1 and isinstance(items[0], FrameError)


def test_decoder_splits_lines_across_chunks_and_skips_blank_ones() -> None:
    stream = b'{"a":1}\r\n\n  \r\n{"b":2}\n{"c":'
    decoder = LineDecoder()
    lines = [line for i in range(len(stream)) for line in decoder.feed(stream[i : i + 1])]
    assert lines == [b'{"a":1}', b'{"b":2}']
    assert decoder.buffered_bytes == len(b'{"c":')
    assert decoder.feed(b"3}\n") == [b'{"c":3}']
    assert decoder.buffered_bytes == 0


def test_oversized_line_is_reported_once_and_the_next_line_still_parses() -> None:
    decoder = LineDecoder()
    chunk = b"z" * (64 * 1024)
    items: list[Any] = []
    for _ in range(32):  # 2 MiB without a newline
        items += decoder.feed(chunk)
        assert decoder.buffered_bytes <= MAX_FRAME_BYTES
    valid = encode(make_request(1, "list_devices"))
    items += decoder.feed(b"tail\n" + valid)
    assert len(items) == 2
    assert isinstance(items[0], FrameError) and items[0].code == PAYLOAD_TOO_LARGE
    assert parse_message(items[1]) == Request(1, "list_devices", {})


def test_decoder_memory_stays_bounded_for_100_mb_without_newline() -> None:
    decoder = LineDecoder()
    chunk = b"[" * (1 << 20)
    errors = 0
    for _ in range(100):
        errors += len(decoder.feed(chunk))
        assert decoder.buffered_bytes <= MAX_FRAME_BYTES
    assert errors == 1
    assert decoder.feed(b'\n{"jsonrpc":"2.0","method":"x"}\n') == [
        b'{"jsonrpc":"2.0","method":"x"}'
    ]


def test_oversized_complete_line_in_one_chunk() -> None:
    big = b"q" * (MAX_FRAME_BYTES + 10)
    items = LineDecoder().feed(big + b"\n" + b'{"x":1}\n')
    assert isinstance(items[0], FrameError) and items[1:] == [b'{"x":1}']


# ---------------------------------------------------------------- messages


def test_round_trips_of_every_message_kind() -> None:
    req = make_request("r-1", "get_results", run=3, limit=10)
    note = make_job_event(JobEvent.CASE_FAILED, 4, case_index=1, reason="oom")
    ok = make_result(7, {"runs": [1, 2]})
    err = make_error(None, PARSE_ERROR, "Malformed JSON.", hint="Send one object per line.")
    got = decode_all(b"".join(encode(m) for m in (req, note, ok, err)))
    assert got[0] == Request("r-1", "get_results", {"run": 3, "limit": 10})
    assert got[1] == Notification(
        JobEvent.CASE_FAILED, {"job_id": 4, "case_index": 1, "reason": "oom"}
    )
    assert got[2] == Response(7, {"runs": [1, 2]})
    assert got[3].id is None and got[3].error.code == PARSE_ERROR
    assert got[3].error.hint == "Send one object per line."
    exc = got[3].error.to_exception()
    assert isinstance(exc, ProtocolError) and exc.code == PARSE_ERROR


def test_notification_builders() -> None:
    tel = make_telemetry(1, 2, samples=[[10, 20]], memory=[{"t_ns": 1, "rss_mb": 3.0}])
    assert tel["method"] == TELEMETRY and "id" not in tel
    assert tel["params"] == {
        "job_id": 1,
        "case_index": 2,
        "samples": [[10, 20]],
        "memory": [{"t_ns": 1, "rss_mb": 3.0}],
    }
    assert make_gap(5)["params"] == {"topic": "telemetry", "dropped": 5}
    with pytest.raises(ValueError):
        make_job_event("job.exploded", 1)
    assert len(set(JobEvent)) == 9 and all(e.value.startswith("job.") for e in JobEvent)


def test_error_replies_carry_user_facing_text_only() -> None:
    reply = make_error_from(5, UnknownModelError("resnet19", ["resnet18"]))
    assert reply["error"]["code"] == INVALID_PARAMS
    assert reply["error"]["message"] == "Unknown model 'resnet19'."
    assert reply["error"]["data"] == {"hint": "Did you mean: resnet18?"}
    internal = make_internal_error(6)
    assert internal["error"] == {"code": INTERNAL_ERROR, "message": INTERNAL_ERROR_MESSAGE}
    assert make_error_from(1, ProtocolError(BUSY, "Queue full."))["error"]["code"] == BUSY


@pytest.mark.parametrize(
    ("line", "code", "words"),
    [
        (b"\xff\xfe{}", PARSE_ERROR, "UTF-8"),
        (b'{"jsonrpc": "2.0", "method": ', PARSE_ERROR, "Malformed JSON"),
        (b"[" * 100_000, PARSE_ERROR, "nesting"),
        (b'{"a":' * 100_000, PARSE_ERROR, "nesting"),
        (
            b'{"jsonrpc":"2.0","id":1,"method":"x","params":{"n":' + b"9" * 5000 + b"}}",
            PARSE_ERROR,
            "too large",
        ),
        (b'{"jsonrpc":"2.0","method":"x","params":{"n":1e999}}', PARSE_ERROR, "Malformed"),
        (b'{"jsonrpc":"2.0","method":"x","params":{"n":NaN}}', PARSE_ERROR, "Malformed"),
        (b"[1, 2]", INVALID_REQUEST, "Batch"),
        (b'"hello"', INVALID_REQUEST, "object"),
        (b'{"jsonrpc":"1.0","id":1,"method":"x"}', INVALID_REQUEST, "jsonrpc"),
        (b'{"id":1,"method":"x"}', INVALID_REQUEST, "jsonrpc"),
        (b'{"jsonrpc":"2.0","id":true,"method":"x"}', INVALID_REQUEST, '"id"'),
        (b'{"jsonrpc":"2.0","id":1.5,"method":"x"}', INVALID_REQUEST, '"id"'),
        (b'{"jsonrpc":"2.0","id":null,"method":"x"}', INVALID_REQUEST, '"id"'),
        (b'{"jsonrpc":"2.0","id":"","method":"x"}', INVALID_REQUEST, '"id"'),
        (b'{"jsonrpc":"2.0","id":1,"method":5}', INVALID_REQUEST, '"method"'),
        (b'{"jsonrpc":"2.0","id":1,"method":""}', INVALID_REQUEST, '"method"'),
        (b'{"jsonrpc":"2.0","id":1,"method":"x","params":[1]}', INVALID_PARAMS, "Positional"),
        (b'{"jsonrpc":"2.0","id":1,"method":"x","params":"a"}', INVALID_REQUEST, '"params"'),
        (b'{"jsonrpc":"2.0","id":1,"method":"x","extra":1}', INVALID_REQUEST, "'extra'"),
        (b'{"jsonrpc":"2.0","id":1}', INVALID_REQUEST, '"method"'),
        (b'{"jsonrpc":"2.0","id":1,"result":1,"error":{}}', INVALID_REQUEST, "exactly one"),
        (b'{"jsonrpc":"2.0","result":1}', INVALID_REQUEST, '"id"'),
        (b'{"jsonrpc":"2.0","id":1,"error":{"code":"x","message":"m"}}', INVALID_REQUEST, "code"),
    ],
)
def test_parse_message_errors(line: bytes, code: int, words: str) -> None:
    err = raises_code(code, parse_message, line)
    assert words in err.message
    assert isinstance(err, MessageError)


def test_parse_error_keeps_a_readable_request_id_for_the_reply() -> None:
    with pytest.raises(MessageError) as info:
        parse_message(b'{"jsonrpc":"2.0","id":"q9","method":7}')
    assert info.value.request_id == "q9"


# ---------------------------------------------------------------- params


@pytest.mark.parametrize("method", sorted(VALID_PARAMS))
def test_every_method_accepts_its_example(method: str) -> None:
    assert set(VALID_PARAMS) == set(METHODS)
    out = validate_params(method, VALID_PARAMS[method])
    assert set(VALID_PARAMS[method]) <= set(out)


def test_params_are_normalised() -> None:
    # The spec stays an object: the agent checks it against the run options
    # (tests/core/test_run_options.py), which sit above the protocol.
    submit = validate_params("submit", VALID_PARAMS["submit"])
    assert submit["spec"] == SPEC and submit["spec"] is not SPEC
    assert validate_params("upload_chunk", VALID_PARAMS["upload_chunk"])["data"] == b"xyz"
    assert validate_params("subscribe", VALID_PARAMS["subscribe"])["topics"] == [
        "jobs",
        "telemetry",
    ]
    page = validate_params("get_results", {"run": 4})
    assert page == {"run": 4, "offset": 0, "limit": 100, "include_samples": False}


@pytest.mark.parametrize(
    ("method", "params", "code", "words"),
    [
        ("shutdown", {}, METHOD_NOT_FOUND, "'shutdown'"),
        ("__init__", {}, METHOD_NOT_FOUND, "Unknown method"),
        ("cancel", {}, INVALID_PARAMS, "'job_id'"),
        ("cancel", {"job_id": "3"}, INVALID_PARAMS, "'job_id' must be an integer, got a string"),
        ("cancel", {"job_id": True}, INVALID_PARAMS, "'job_id'"),
        ("cancel", {"job_id": 0}, INVALID_PARAMS, "'job_id'"),
        ("cancel", {"job_id": 1, "force": True}, INVALID_PARAMS, "'force'"),
        ("list_devices", {"x": 1}, INVALID_PARAMS, "'x'"),
        ("hello", {}, INVALID_PARAMS, "'protocol_version'"),
        ("get_results", {"run": 1, "limit": 1001}, INVALID_PARAMS, "'limit'"),
        ("get_results", {"run": 1.5}, INVALID_PARAMS, "'run'"),
        ("get_results", {"run": 1, "include_samples": 1}, INVALID_PARAMS, "'include_samples'"),
        ("get_samples", {"measurement_id": 1, "offset": -1}, INVALID_PARAMS, "'offset'"),
        ("submit", {"spec": SPEC}, INVALID_PARAMS, "'client_request_id'"),
        (
            "submit",
            {"spec": SPEC, "client_request_id": ""},
            INVALID_PARAMS,
            "'client_request_id'",
        ),
        (
            "submit",
            {"spec": SPEC, "client_request_id": "x" * 129},
            INVALID_PARAMS,
            "'client_request_id'",
        ),
        ("submit", {"spec": [], "client_request_id": "a"}, INVALID_PARAMS, "'spec'"),
        (
            "submit",
            {"spec": {str(i): i for i in range(65)}, "client_request_id": "a"},
            INVALID_PARAMS,
            "'spec' has more than 64 fields",
        ),
        (
            "submit",
            {"spec": SPEC, "client_request_id": "a", "model_upload_ids": []},
            INVALID_PARAMS,
            "'model_upload_ids'",
        ),
        ("subscribe", {"topics": ["logs"]}, INVALID_PARAMS, "'topics'"),
        ("subscribe", {"topics": []}, INVALID_PARAMS, "'topics'"),
        ("subscribe", {"topics": "jobs"}, INVALID_PARAMS, "'topics'"),
        (
            "upload_begin",
            {"name": "../x", "size": 1, "sha256": "a" * 64},
            INVALID_PARAMS,
            "'name'",
        ),
        ("upload_begin", {"name": "..", "size": 1, "sha256": "a" * 64}, INVALID_PARAMS, "'name'"),
        (
            "upload_begin",
            {"name": "m", "size": 1, "sha256": "A" * 64},
            INVALID_PARAMS,
            "'sha256'",
        ),
        ("upload_begin", {"name": "m", "size": 0, "sha256": "a" * 64}, INVALID_PARAMS, "'size'"),
        ("upload_chunk", {"upload_id": "u", "offset": 0, "data": "!!"}, INVALID_PARAMS, "base64"),
        ("hello", {"protocol_version": "1.0", "client": "\ud800"}, INVALID_PARAMS, "Unicode"),
    ],
)
def test_validate_params_errors_name_the_problem(
    method: str, params: dict[str, Any], code: int, words: str
) -> None:
    err = raises_code(code, validate_params, method, params)
    assert words in err.message


def test_unknown_method_lists_the_public_methods_only() -> None:
    err = raises_code(METHOD_NOT_FOUND, validate_params, "_private", {})
    assert err.hint is not None and "submit" in err.hint and "_" + "private" not in err.hint


# ---------------------------------------------------------------- version and metrics


def test_version_check_says_which_side_to_upgrade() -> None:
    check_version("1.7", "1.0", peer_role="client")  # minor differences are fine
    check_version("1.0", "1.3", peer_role="agent")
    # The agent checks a client's hello.
    old_client = raises_code(VERSION_MISMATCH, check_version, "1.0", "2.0", peer_role="client")
    assert old_client.message.startswith("The agent speaks protocol 2.x and this client 1.x")
    assert "upgrade the client (backbench on this machine)" in old_client.message
    new_client = raises_code(VERSION_MISMATCH, check_version, "3.1", "2.0", peer_role="client")
    assert "agent speaks protocol 2.x and this client 3.x: upgrade the agent" in new_client.message
    # The client checks the agent's hello reply.
    new_agent = raises_code(VERSION_MISMATCH, check_version, "2.0", "1.0", peer_role="agent")
    assert new_agent.message == (
        "The agent speaks protocol 2.x and this client 1.x: upgrade the client "
        "(backbench on this machine)."
    )
    old_agent = raises_code(VERSION_MISMATCH, check_version, "0.9", "1.0", peer_role="agent")
    assert "upgrade the agent" in old_agent.message
    bad = raises_code(VERSION_MISMATCH, check_version, "one", peer_role="agent")
    assert "'one'" in bad.message and bad.hint


def test_metric_catalogue_describes_itself() -> None:
    catalogue = metric_catalogue()
    names = [m["name"] for m in catalogue]
    assert len(names) == len(set(names))
    assert {"latency_ns", "rss_mb", "device_mem_mb", "throughput_ips", "per_image_ms"} <= set(names)
    assert all(m["unit"] and m["description"] for m in catalogue)
    hello = make_hello_result(agent_version="0.1.0", boot_id="b", host={"cpu": "x"})
    assert hello["metrics"] == catalogue and hello["protocol_version"] == PROTOCOL_VERSION
    assert "submit" in hello["methods"]
    assert json.loads(encode(make_result(1, hello)))["result"] == hello


# ---------------------------------------------------------------- fuzz


FUZZ_KEYS = [*VALID_PARAMS["submit"]["spec"], "job_id", "topics", "x", "id", "method"]


def random_json(rng: random.Random) -> Any:
    return fuzz_json(rng, FUZZ_KEYS)


def mutate(rng: random.Random, msg: dict[str, Any]) -> dict[str, Any]:
    msg = json.loads(json.dumps(msg))
    params = msg.setdefault("params", {})
    op = rng.randrange(8)
    if not isinstance(params, dict):  # an earlier mutation replaced it
        params, op = {}, rng.choice([3, 4, 5, 7])
    if op < 6 and "spec" in params and rng.random() < 0.7:
        op = 6
    if op == 0 and params:
        params[rng.choice(list(params))] = random_json(rng)
    elif op == 1 and params:
        del params[rng.choice(list(params))]
    elif op == 2:
        params[rng.choice(["job_id", "limit", "spec", "zzz", "topics", "data"])] = random_json(rng)
    elif op == 3:
        msg["method"] = rng.choice([*METHODS, random_json(rng)])
    elif op == 4:
        msg["id"] = random_json(rng)
    elif op == 5:
        msg[rng.choice(["jsonrpc", "params", "result", "error"])] = random_json(rng)
    elif op == 6 and isinstance(params.get("spec"), dict):
        spec = params["spec"]
        key = rng.choice([*RunSpec.__dataclass_fields__, "extra"])
        spec[key] = random_json(rng)
        if rng.random() < 0.5:  # a near miss: a valid-looking value of the wrong kind
            spec[key] = rng.choice([[], [1], ["x"], "x" * 300, -1, 0, {"min_iters": 0}, True])
    elif op == 7:
        msg.pop(rng.choice(["jsonrpc", "id", "method"]), None)
    return msg


def random_frame(rng: random.Random, valid: list[bytes]) -> bytes:
    kind = rng.randrange(8)
    if kind == 0:
        return rng.randbytes(rng.randrange(0, 200))
    if kind == 1:
        return json.dumps(random_json(rng)).encode()
    if kind in (2, 3):  # kind 3 aims at submit's nested run spec
        msg = json.loads(
            valid[list(VALID_PARAMS).index("submit")] if kind == 3 else rng.choice(valid)
        )
        for _ in range(rng.randrange(1, 3)):
            msg = mutate(rng, msg)
        return json.dumps(msg).encode("utf-8", "surrogatepass")
    if kind == 4:  # a byte-level mutation of a valid request
        frame = bytearray(rng.choice(valid).rstrip(b"\n"))
        for _ in range(rng.randrange(1, 4)):
            i = rng.randrange(len(frame))
            frame[i : i + rng.randrange(3)] = rng.randbytes(rng.randrange(3))
        return bytes(frame)
    if kind == 5:
        depth = rng.choice([10, 900, 1100, 50_000])
        return (
            rng.choice([b"[", b'{"a":', b'{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":'])
            * depth
        )
    if kind == 6:
        digits = rng.choice([20, 400, 4400, 20_000])
        return b'{"jsonrpc":"2.0","id":1,"method":"cancel","params":{"job_id":%s}}' % (
            b"9" * digits
        )
    return rng.choice(valid).rstrip(b"\n") + rng.choice(
        [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80"]
    )


def test_fuzz_frames_only_ever_raise_protocol_errors() -> None:
    rng = random.Random(20240601)
    valid = [
        encode(make_request(i, m, **params))
        for i, (m, params) in enumerate(VALID_PARAMS.items())
    ]
    decoder = LineDecoder()
    outcomes = {"frame_error": 0, "protocol_error": 0, "ok": 0}
    for n in range(12_000):
        frame = random_frame(rng, valid) + b"\n"
        cut = rng.randrange(len(frame) + 1)
        for item in decoder.feed(frame[:cut]) + decoder.feed(frame[cut:]):
            if isinstance(item, FrameError):
                outcomes["frame_error"] += 1
                continue
            try:
                msg = parse_message(item)
                if isinstance(msg, (Request, Notification)):
                    validate_params(msg.method, msg.params)
                outcomes["ok"] += 1
            except ProtocolError as exc:
                outcomes["protocol_error"] += 1
                assert exc.code in (PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND,
                                    INVALID_PARAMS, PAYLOAD_TOO_LARGE), exc.code  # fmt: skip
                assert "Traceback" not in exc.message
                reply = make_error(getattr(exc, "request_id", None), exc.code, exc.message)
                assert len(encode(reply)) < 2048  # small whatever the client sent
        assert decoder.buffered_bytes <= MAX_FRAME_BYTES, n
    assert outcomes["ok"] > 300 and outcomes["protocol_error"] > 5000
    for frame in valid:  # every valid example still validates after the storm
        msg = parse_message(frame.rstrip(b"\n"))
        validate_params(msg.method, msg.params)
