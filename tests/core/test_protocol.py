"""The agent wire protocol: framing, validation, version check and the per-client queue."""

from __future__ import annotations

import base64
import json
import math
import random
from typing import Any

import numpy as np
import pytest

from core import protocol as p
from core.errors import ProtocolError, UnknownModelError
from core.results import RunSpec

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
        item if isinstance(item, p.FrameError) else p.parse_message(item)
        for item in p.LineDecoder().feed(data)
    ]


def raises_code(code: int, fn: Any, *args: Any, **kwargs: Any) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        fn(*args, **kwargs)
    assert info.value.code == code, info.value.message
    return info.value


# ---------------------------------------------------------------- framing


def test_encode_is_one_compact_ascii_line_with_nan_as_null() -> None:
    frame = p.encode({"a": [1.5, math.nan, {"b": math.inf, "c": -math.inf}], "s": "é\ud800"})
    assert frame.endswith(b"\n") and frame.count(b"\n") == 1
    assert b" " not in frame and frame.isascii()
    back = json.loads(frame)
    assert back == {"a": [1.5, None, {"b": None, "c": None}], "s": "é\ud800"}


def test_encode_refuses_a_frame_over_the_limit() -> None:
    err = raises_code(p.PAYLOAD_TOO_LARGE, p.encode, {"x": "a" * p.MAX_FRAME_BYTES})
    assert "frame limit" in err.message


def test_frames_at_the_limit_pass_and_one_byte_more_does_not() -> None:
    content = b"x" * (p.MAX_FRAME_BYTES - 1)  # plus the newline: exactly the limit
    assert p.LineDecoder().feed(content + b"\n") == [content]
    assert p.LineDecoder().feed(content + b"\r\n") == [content]
    items = p.LineDecoder().feed(content + b"yy\n")
    assert len(items) == 1 and isinstance(items[0], p.FrameError)


def test_decoder_splits_lines_across_chunks_and_skips_blank_ones() -> None:
    stream = b'{"a":1}\r\n\n  \r\n{"b":2}\n{"c":'
    decoder = p.LineDecoder()
    lines = [line for i in range(len(stream)) for line in decoder.feed(stream[i : i + 1])]
    assert lines == [b'{"a":1}', b'{"b":2}']
    assert decoder.buffered_bytes == len(b'{"c":')
    assert decoder.feed(b"3}\n") == [b'{"c":3}']
    assert decoder.buffered_bytes == 0


def test_oversized_line_is_reported_once_and_the_next_line_still_parses() -> None:
    decoder = p.LineDecoder()
    chunk = b"z" * (64 * 1024)
    items: list[Any] = []
    for _ in range(32):  # 2 MiB without a newline
        items += decoder.feed(chunk)
        assert decoder.buffered_bytes <= p.MAX_FRAME_BYTES
    valid = p.encode(p.make_request(1, "list_devices"))
    items += decoder.feed(b"tail\n" + valid)
    assert len(items) == 2
    assert isinstance(items[0], p.FrameError) and items[0].code == p.PAYLOAD_TOO_LARGE
    assert p.parse_message(items[1]) == p.Request(1, "list_devices", {})


def test_decoder_memory_stays_bounded_for_100_mb_without_newline() -> None:
    decoder = p.LineDecoder()
    chunk = b"[" * (1 << 20)
    errors = 0
    for _ in range(100):
        errors += len(decoder.feed(chunk))
        assert decoder.buffered_bytes <= p.MAX_FRAME_BYTES
    assert errors == 1
    assert decoder.feed(b'\n{"jsonrpc":"2.0","method":"x"}\n') == [
        b'{"jsonrpc":"2.0","method":"x"}'
    ]


def test_oversized_complete_line_in_one_chunk() -> None:
    big = b"q" * (p.MAX_FRAME_BYTES + 10)
    items = p.LineDecoder().feed(big + b"\n" + b'{"x":1}\n')
    assert isinstance(items[0], p.FrameError) and items[1:] == [b'{"x":1}']


# ---------------------------------------------------------------- messages


def test_round_trips_of_every_message_kind() -> None:
    req = p.make_request("r-1", "get_results", run=3, limit=10)
    note = p.make_job_event(p.JOB_CASE_FAILED, 4, case_index=1, reason="oom")
    ok = p.make_result(7, {"runs": [1, 2]})
    err = p.make_error(None, p.PARSE_ERROR, "Malformed JSON.", hint="Send one object per line.")
    got = decode_all(b"".join(p.encode(m) for m in (req, note, ok, err)))
    assert got[0] == p.Request("r-1", "get_results", {"run": 3, "limit": 10})
    assert got[1] == p.Notification(
        p.JOB_CASE_FAILED, {"job_id": 4, "case_index": 1, "reason": "oom"}
    )
    assert got[2] == p.Response(7, {"runs": [1, 2]})
    assert got[3].id is None and got[3].error.code == p.PARSE_ERROR
    assert got[3].error.hint == "Send one object per line."
    exc = got[3].error.to_exception()
    assert isinstance(exc, ProtocolError) and exc.code == p.PARSE_ERROR


def test_notification_builders() -> None:
    tel = p.make_telemetry(1, 2, samples=[[10, 20]], memory=[{"t_ns": 1, "rss_mb": 3.0}])
    assert tel["method"] == p.TELEMETRY and "id" not in tel
    assert tel["params"] == {
        "job_id": 1,
        "case_index": 2,
        "samples": [[10, 20]],
        "memory": [{"t_ns": 1, "rss_mb": 3.0}],
    }
    assert p.make_gap(5)["params"] == {"topic": "telemetry", "dropped": 5}
    with pytest.raises(ValueError):
        p.make_job_event("job.exploded", 1)
    assert len(set(p.JOB_EVENTS)) == 8 and all(e.startswith("job.") for e in p.JOB_EVENTS)


def test_error_replies_carry_user_facing_text_only() -> None:
    reply = p.make_error_from(5, UnknownModelError("resnet19", ["resnet18"]))
    assert reply["error"]["code"] == p.INVALID_PARAMS
    assert reply["error"]["message"] == "Unknown model 'resnet19'."
    assert reply["error"]["data"] == {"hint": "Did you mean: resnet18?"}
    internal = p.make_internal_error(6)
    assert internal["error"] == {"code": p.INTERNAL_ERROR, "message": p.INTERNAL_ERROR_MESSAGE}
    assert p.make_error_from(1, ProtocolError(p.BUSY, "Queue full."))["error"]["code"] == p.BUSY


@pytest.mark.parametrize(
    ("line", "code", "words"),
    [
        (b"\xff\xfe{}", p.PARSE_ERROR, "UTF-8"),
        (b'{"jsonrpc": "2.0", "method": ', p.PARSE_ERROR, "Malformed JSON"),
        (b"[" * 100_000, p.PARSE_ERROR, "nesting"),
        (b'{"a":' * 100_000, p.PARSE_ERROR, "nesting"),
        (
            b'{"jsonrpc":"2.0","id":1,"method":"x","params":{"n":' + b"9" * 5000 + b"}}",
            p.PARSE_ERROR,
            "too large",
        ),
        (b'{"jsonrpc":"2.0","method":"x","params":{"n":1e999}}', p.PARSE_ERROR, "Malformed"),
        (b'{"jsonrpc":"2.0","method":"x","params":{"n":NaN}}', p.PARSE_ERROR, "Malformed"),
        (b"[1, 2]", p.INVALID_REQUEST, "Batch"),
        (b'"hello"', p.INVALID_REQUEST, "object"),
        (b'{"jsonrpc":"1.0","id":1,"method":"x"}', p.INVALID_REQUEST, "jsonrpc"),
        (b'{"id":1,"method":"x"}', p.INVALID_REQUEST, "jsonrpc"),
        (b'{"jsonrpc":"2.0","id":true,"method":"x"}', p.INVALID_REQUEST, '"id"'),
        (b'{"jsonrpc":"2.0","id":1.5,"method":"x"}', p.INVALID_REQUEST, '"id"'),
        (b'{"jsonrpc":"2.0","id":null,"method":"x"}', p.INVALID_REQUEST, '"id"'),
        (b'{"jsonrpc":"2.0","id":"","method":"x"}', p.INVALID_REQUEST, '"id"'),
        (b'{"jsonrpc":"2.0","id":1,"method":5}', p.INVALID_REQUEST, '"method"'),
        (b'{"jsonrpc":"2.0","id":1,"method":""}', p.INVALID_REQUEST, '"method"'),
        (b'{"jsonrpc":"2.0","id":1,"method":"x","params":[1]}', p.INVALID_PARAMS, "Positional"),
        (b'{"jsonrpc":"2.0","id":1,"method":"x","params":"a"}', p.INVALID_REQUEST, '"params"'),
        (b'{"jsonrpc":"2.0","id":1,"method":"x","extra":1}', p.INVALID_REQUEST, "'extra'"),
        (b'{"jsonrpc":"2.0","id":1}', p.INVALID_REQUEST, '"method"'),
        (b'{"jsonrpc":"2.0","id":1,"result":1,"error":{}}', p.INVALID_REQUEST, "exactly one"),
        (b'{"jsonrpc":"2.0","result":1}', p.INVALID_REQUEST, '"id"'),
        (b'{"jsonrpc":"2.0","id":1,"error":{"code":"x","message":"m"}}', p.INVALID_REQUEST, "code"),
    ],
)
def test_parse_message_errors(line: bytes, code: int, words: str) -> None:
    err = raises_code(code, p.parse_message, line)
    assert words in err.message
    assert isinstance(err, p.MessageError)


def test_parse_error_keeps_a_readable_request_id_for_the_reply() -> None:
    with pytest.raises(p.MessageError) as info:
        p.parse_message(b'{"jsonrpc":"2.0","id":"q9","method":7}')
    assert info.value.request_id == "q9"


# ---------------------------------------------------------------- params


@pytest.mark.parametrize("method", sorted(VALID_PARAMS))
def test_every_method_accepts_its_example(method: str) -> None:
    assert set(VALID_PARAMS) == set(p.METHODS)
    out = p.validate_params(method, VALID_PARAMS[method])
    assert set(VALID_PARAMS[method]) <= set(out)


def test_params_are_normalised() -> None:
    submit = p.validate_params("submit", VALID_PARAMS["submit"])
    assert isinstance(submit["spec"], RunSpec) and submit["spec"].batch_sizes == (1, 4)
    assert p.validate_params("upload_chunk", VALID_PARAMS["upload_chunk"])["data"] == b"xyz"
    assert p.validate_params("subscribe", VALID_PARAMS["subscribe"])["topics"] == [
        "jobs",
        "telemetry",
    ]
    page = p.validate_params("get_results", {"run": 4})
    assert page == {"run": 4, "offset": 0, "limit": 100, "include_samples": False}


@pytest.mark.parametrize(
    ("method", "params", "code", "words"),
    [
        ("shutdown", {}, p.METHOD_NOT_FOUND, "'shutdown'"),
        ("__init__", {}, p.METHOD_NOT_FOUND, "Unknown method"),
        ("cancel", {}, p.INVALID_PARAMS, "'job_id'"),
        ("cancel", {"job_id": "3"}, p.INVALID_PARAMS, "'job_id' must be an integer, got a string"),
        ("cancel", {"job_id": True}, p.INVALID_PARAMS, "'job_id'"),
        ("cancel", {"job_id": 0}, p.INVALID_PARAMS, "'job_id'"),
        ("cancel", {"job_id": 1, "force": True}, p.INVALID_PARAMS, "'force'"),
        ("list_devices", {"x": 1}, p.INVALID_PARAMS, "'x'"),
        ("hello", {}, p.INVALID_PARAMS, "'protocol_version'"),
        ("get_results", {"run": 1, "limit": 1001}, p.INVALID_PARAMS, "'limit'"),
        ("get_results", {"run": 1.5}, p.INVALID_PARAMS, "'run'"),
        ("get_results", {"run": 1, "include_samples": 1}, p.INVALID_PARAMS, "'include_samples'"),
        ("get_samples", {"measurement_id": 1, "offset": -1}, p.INVALID_PARAMS, "'offset'"),
        ("submit", {"spec": SPEC}, p.INVALID_PARAMS, "'client_request_id'"),
        (
            "submit",
            {"spec": SPEC, "client_request_id": ""},
            p.INVALID_PARAMS,
            "'client_request_id'",
        ),
        (
            "submit",
            {"spec": SPEC, "client_request_id": "x" * 129},
            p.INVALID_PARAMS,
            "'client_request_id'",
        ),
        ("submit", {"spec": [], "client_request_id": "a"}, p.INVALID_PARAMS, "'spec'"),
        (
            "submit",
            {"spec": {"models": []}, "client_request_id": "a"},
            p.INVALID_PARAMS,
            "No model",
        ),
        (
            "submit",
            {"spec": {**SPEC, "evil": 1}, "client_request_id": "a"},
            p.INVALID_PARAMS,
            "'evil'",
        ),
        (
            "submit",
            {"spec": {**SPEC, "backend": "tf"}, "client_request_id": "a"},
            p.INVALID_PARAMS,
            "backend",
        ),
        (
            "submit",
            {"spec": {**SPEC, "stopping": {"min_iters": "5"}}, "client_request_id": "a"},
            p.INVALID_PARAMS,
            "'stopping'",
        ),
        (
            "submit",
            {"spec": {**SPEC, "stopping": {"target_ci": 5.0}}, "client_request_id": "a"},
            p.INVALID_PARAMS,
            "target-ci",
        ),
        (
            "submit",
            {"spec": {**SPEC, "name": 5}, "client_request_id": "a"},
            p.INVALID_PARAMS,
            "'name'",
        ),
        (
            "submit",
            {"spec": SPEC, "client_request_id": "a", "model_upload_ids": []},
            p.INVALID_PARAMS,
            "'model_upload_ids'",
        ),
        ("subscribe", {"topics": ["logs"]}, p.INVALID_PARAMS, "'topics'"),
        ("subscribe", {"topics": []}, p.INVALID_PARAMS, "'topics'"),
        ("subscribe", {"topics": "jobs"}, p.INVALID_PARAMS, "'topics'"),
        (
            "upload_begin",
            {"name": "../x", "size": 1, "sha256": "a" * 64},
            p.INVALID_PARAMS,
            "'name'",
        ),
        ("upload_begin", {"name": "..", "size": 1, "sha256": "a" * 64}, p.INVALID_PARAMS, "'name'"),
        (
            "upload_begin",
            {"name": "m", "size": 1, "sha256": "A" * 64},
            p.INVALID_PARAMS,
            "'sha256'",
        ),
        ("upload_begin", {"name": "m", "size": 0, "sha256": "a" * 64}, p.INVALID_PARAMS, "'size'"),
        ("upload_chunk", {"upload_id": "u", "offset": 0, "data": "!!"}, p.INVALID_PARAMS, "base64"),
        ("hello", {"protocol_version": "1.0", "client": "\ud800"}, p.INVALID_PARAMS, "Unicode"),
    ],
)
def test_validate_params_errors_name_the_problem(
    method: str, params: dict[str, Any], code: int, words: str
) -> None:
    err = raises_code(code, p.validate_params, method, params)
    assert words in err.message


def test_unknown_method_lists_the_public_methods_only() -> None:
    err = raises_code(p.METHOD_NOT_FOUND, p.validate_params, "_private", {})
    assert err.hint is not None and "submit" in err.hint and "_" + "private" not in err.hint


# ---------------------------------------------------------------- version and metrics


def test_version_check_says_which_side_to_upgrade() -> None:
    p.check_version("1.7", "1.0", peer_role="client")  # minor differences are fine
    p.check_version("1.0", "1.3", peer_role="agent")
    # The agent checks a client's hello.
    old_client = raises_code(p.VERSION_MISMATCH, p.check_version, "1.0", "2.0", peer_role="client")
    assert old_client.message.startswith("The agent speaks protocol 2.x and this client 1.x")
    assert "upgrade the client (backbench on this machine)" in old_client.message
    new_client = raises_code(p.VERSION_MISMATCH, p.check_version, "3.1", "2.0", peer_role="client")
    assert "agent speaks protocol 2.x and this client 3.x: upgrade the agent" in new_client.message
    # The client checks the agent's hello reply.
    new_agent = raises_code(p.VERSION_MISMATCH, p.check_version, "2.0", "1.0", peer_role="agent")
    assert new_agent.message == (
        "The agent speaks protocol 2.x and this client 1.x: upgrade the client "
        "(backbench on this machine)."
    )
    old_agent = raises_code(p.VERSION_MISMATCH, p.check_version, "0.9", "1.0", peer_role="agent")
    assert "upgrade the agent" in old_agent.message
    bad = raises_code(p.VERSION_MISMATCH, p.check_version, "one", peer_role="agent")
    assert "'one'" in bad.message and bad.hint


def test_metric_catalogue_describes_itself() -> None:
    catalogue = p.metric_catalogue()
    names = [m["name"] for m in catalogue]
    assert len(names) == len(set(names))
    assert {"latency_ns", "rss_mb", "device_mem_mb", "throughput_ips", "per_image_ms"} <= set(names)
    assert all(m["unit"] and m["description"] for m in catalogue)
    hello = p.make_hello_result(agent_version="0.1.0", boot_id="b", host={"cpu": "x"})
    assert hello["metrics"] == catalogue and hello["protocol_version"] == p.PROTOCOL_VERSION
    assert "submit" in hello["methods"]
    assert json.loads(p.encode(p.make_result(1, hello)))["result"] == hello


# ---------------------------------------------------------------- fuzz


def random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.choice([0, -1, 1, 2**31, -(2**63), 10**30, 2**53, rng.randrange(-9, 10**6)])
    if kind == 3:
        return rng.choice([0.5, -1e300, 1e-300, rng.uniform(-1e6, 1e6)])
    if kind in (4, 5):
        alphabet = 'abc_.-/\\ é\u2603\ud800\x00\n"{}[]' + "0123456789abcdef"
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 80)))
    if kind == 6:
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = list(VALID_PARAMS["submit"]["spec"]) + ["job_id", "topics", "x", "id", "method"]
    return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randrange(4))}


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
        msg["method"] = rng.choice([*p.METHODS, random_json(rng)])
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
        p.encode(p.make_request(i, m, **params))
        for i, (m, params) in enumerate(VALID_PARAMS.items())
    ]
    decoder = p.LineDecoder()
    outcomes = {"frame_error": 0, "protocol_error": 0, "ok": 0}
    for n in range(12_000):
        frame = random_frame(rng, valid) + b"\n"
        cut = rng.randrange(len(frame) + 1)
        for item in decoder.feed(frame[:cut]) + decoder.feed(frame[cut:]):
            if isinstance(item, p.FrameError):
                outcomes["frame_error"] += 1
                continue
            try:
                msg = p.parse_message(item)
                if isinstance(msg, (p.Request, p.Notification)):
                    p.validate_params(msg.method, msg.params)
                outcomes["ok"] += 1
            except ProtocolError as exc:
                outcomes["protocol_error"] += 1
                assert exc.code in (p.PARSE_ERROR, p.INVALID_REQUEST, p.METHOD_NOT_FOUND,
                                    p.INVALID_PARAMS, p.PAYLOAD_TOO_LARGE), exc.code  # fmt: skip
                assert "Traceback" not in exc.message
                reply = p.make_error(getattr(exc, "request_id", None), exc.code, exc.message)
                assert len(p.encode(reply)) < 2048  # small whatever the client sent
        assert decoder.buffered_bytes <= p.MAX_FRAME_BYTES, n
    assert outcomes["ok"] > 300 and outcomes["protocol_error"] > 5000
    for frame in valid:  # every valid example still validates after the storm
        msg = p.parse_message(frame.rstrip(b"\n"))
        p.validate_params(msg.method, msg.params)


# ---------------------------------------------------------------- ClientQueue


def drain(queue: p.ClientQueue, max_bytes: int = 1 << 20) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while frames := queue.pop_frames(max_bytes):
        out += [json.loads(f) for f in frames]
    return out


def test_telemetry_drops_the_oldest_and_reports_the_gap_first() -> None:
    queue = p.ClientQueue(max_telemetry_samples=10)
    queue.push_telemetry(1, [[i, i] for i in range(60)], case_index=2)
    queue.push_telemetry(
        1, np.array([[i, i] for i in range(60, 100)], dtype=np.int64), case_index=2
    )
    msgs = drain(queue)
    assert [m["method"] for m in msgs] == [p.GAP, p.TELEMETRY]
    assert msgs[0]["params"] == {"topic": "telemetry", "dropped": 90}
    assert msgs[1]["params"] == {
        "job_id": 1,
        "case_index": 2,
        "samples": [[i, i] for i in range(90, 100)],
    }
    assert (queue.produced, queue.delivered, queue.dropped) == (100, 10, 90)


def test_events_are_never_dropped_and_keep_their_place() -> None:
    queue = p.ClientQueue(max_telemetry_samples=5)
    for k in range(50):
        queue.push_telemetry(1, [[k * 10 + i, 0] for i in range(10)])
        assert queue.push_event(p.make_job_event(p.JOB_CASE_STARTED, 1, case_index=k))
    msgs = drain(queue, max_bytes=200)
    events = [m["params"]["case_index"] for m in msgs if m["method"] == p.JOB_CASE_STARTED]
    assert events == list(range(50))
    samples = [s[0] for m in msgs if m["method"] == p.TELEMETRY for s in m["params"]["samples"]]
    assert samples == list(range(495, 500))  # only the newest survive; all before the last event
    assert msgs[-1]["method"] == p.JOB_CASE_STARTED
    assert queue.delivered + queue.dropped == queue.produced == 500


def test_a_client_with_too_many_pending_events_overflows() -> None:
    queue = p.ClientQueue(max_telemetry_samples=10, max_events=5)
    accepted = [queue.push_event(p.make_job_event(p.JOB_QUEUED, i)) for i in range(8)]
    assert accepted == [True] * 5 + [False] * 3 and queue.overflowed
    assert queue.pending_events == 5
    by_bytes = p.ClientQueue(10, max_event_bytes=1000)
    while by_bytes.push_event(p.make_notification(p.JOB_FINISHED, {"pad": "x" * 100})):
        pass
    assert by_bytes.overflowed and by_bytes.stats()["event_bytes_pending"] <= 1000


def test_discarding_telemetry_counts_it_as_dropped() -> None:
    queue = p.ClientQueue(100)
    queue.push_telemetry(1, [[1, 1]] * 30)
    queue.push_memory(1, 5, 12.5, {"cuda:0": 100.0})
    assert queue.discard_telemetry() == 30
    assert drain(queue) == [] and queue.dropped == 30 and queue.stats()["memory_dropped"] == 1


def test_random_interleaving_accounts_for_every_sample() -> None:
    rng = random.Random(7)
    bound = 300
    queue = p.ClientQueue(max_telemetry_samples=bound, max_memory_readings=8, max_batch_samples=64)
    next_sample = 0
    next_reading = 0
    expected = 0  # the next sample index the client should see
    expected_reading = 0
    seen_events = pushed_events = 0
    event_floor = 0  # samples produced before the last event received
    gap_total = 0
    received = 0
    for _ in range(4000):
        op = rng.random()
        if op < 0.45:
            n = rng.randrange(0, 120)
            job = rng.randrange(3)
            queue.push_telemetry(job, [[next_sample + i, job] for i in range(n)], case_index=job)
            next_sample += n
        elif op < 0.55:
            queue.push_memory(1, next_reading, 10.0, {"gpu": math.nan})
            next_reading += 1
        elif op < 0.65:
            assert queue.push_event(p.make_job_event(p.JOB_STARTED, 1, seq=next_sample))
            pushed_events += 1
        else:
            max_bytes = rng.choice([1, 300, 2000, 50_000])
            frames = queue.pop_frames(max_bytes)
            if len(frames) > 1:
                assert sum(map(len, frames)) <= max_bytes
            for item in p.LineDecoder().feed(b"".join(frames)):
                msg = p.parse_message(item)
                if msg.method == p.GAP:
                    gap_total += msg.params["dropped"]
                    expected += msg.params["dropped"]
                    expected_reading += msg.params.get("dropped_memory", 0)
                elif msg.method == p.TELEMETRY:
                    for t_ns, job in msg.params.get("samples", []):
                        assert t_ns == expected and job == msg.params["job_id"]
                        assert t_ns >= event_floor  # nothing older arrives after an event
                        expected += 1
                        received += 1
                    for reading in msg.params.get("memory", []):
                        assert reading["t_ns"] == expected_reading
                        assert reading["device_memory"] == {"gpu": None}
                        expected_reading += 1
                else:
                    seen_events += 1
                    event_floor = msg.params["seq"]
        stats = queue.stats()
        assert stats["pending"] <= bound and stats["memory_pending"] <= 8
        assert queue.produced == next_sample
        assert queue.delivered + queue.dropped + stats["pending"] == queue.produced
    queue.push_telemetry(0, [[next_sample, 0]])  # so any unreported drop gets its gap
    next_sample += 1
    for msg in drain(queue):
        if msg["method"] == p.GAP:
            gap_total += msg["params"]["dropped"]
        elif msg["method"] == p.TELEMETRY:
            received += len(msg["params"].get("samples", []))
        else:
            seen_events += 1
    assert queue.dropped > 0 and queue.delivered > 0
    assert queue.delivered + queue.dropped == queue.produced == next_sample
    assert received == queue.delivered and gap_total == queue.dropped
    assert seen_events == pushed_events  # job events are never dropped
    assert queue.pending_events == 0
