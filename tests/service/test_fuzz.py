"""Hostile input: 10,000+ malformed, oversized, random and wrong-version frames on a real
agent. Each gets an error reply (or none, for a notification) and the agent goes on."""

from __future__ import annotations

import json
import random
import socket
import threading
import time

from core.protocol.codes import INTERNAL_ERROR, INTERNAL_ERROR_MESSAGE, MAX_FRAME_BYTES
from core.protocol.methods import METHODS
from tests.service.agentlib import Agent

N_FRAMES = 10_000
SAFE_METHODS = sorted(set(METHODS) - {"submit", "cancel", "resume"})  # never touch real jobs


def _junk(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(8 if depth < 3 else 5)
    if kind == 0:
        return rng.randrange(10**9, 10**12) * rng.choice((1, -1))
    if kind == 1:
        return rng.random() * 10 ** rng.randrange(-5, 300)
    if kind == 2:
        return "".join(chr(rng.randrange(1, 0x2FFF)) for _ in range(rng.randrange(0, 30)))
    if kind == 3:
        return rng.choice((True, False, None))
    if kind == 4:
        return ""
    if kind == 5:
        return [_junk(rng, depth + 1) for _ in range(rng.randrange(0, 5))]
    return {str(_junk(rng, 3))[:20]: _junk(rng, depth + 1) for _ in range(rng.randrange(0, 5))}


def _frame(rng: random.Random, i: int) -> bytes:
    kind = rng.randrange(12)
    if kind == 0:  # raw bytes, NULs and invalid UTF-8 included
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 120))).replace(b"\n", b"")
    if kind == 1:  # truncated JSON
        text = json.dumps({"jsonrpc": "2.0", "id": i, "method": "status", "params": {}})
        return text[: rng.randrange(1, len(text))].encode()
    if kind == 2:  # valid JSON, not an object
        return json.dumps(_junk(rng, 2)).encode()
    if kind == 3:  # wrong version or envelope
        return json.dumps(
            {"jsonrpc": rng.choice(["1.0", 2, None, "2.1"]), "id": i, "method": "status"}
        ).encode()
    if kind == 4:  # a known method with junk params
        params = {str(k)[:10]: _junk(rng) for k in range(rng.randrange(0, 4))}
        return json.dumps(
            {"jsonrpc": "2.0", "id": i, "method": rng.choice(SAFE_METHODS), "params": params}
        ).encode()
    if kind == 5:  # a known method with junk in each named param
        method = rng.choice(SAFE_METHODS)
        params = {name: _junk(rng) for name in METHODS[method]}
        return json.dumps({"jsonrpc": "2.0", "id": i, "method": method, "params": params}).encode()
    if kind == 6:  # unknown method, odd ids
        ident = rng.choice([i, str(i), 1.5, True, [1], {"a": 1}, "x" * 300])
        return json.dumps(
            {"jsonrpc": "2.0", "id": ident, "method": "m" + str(rng.random())}
        ).encode()
    if kind == 7:  # nesting far too deep
        depth = rng.randrange(1000, 5000)
        return (
            b'{"jsonrpc":"2.0","id":1,"method":"status","params":{"a":'
            + b"[" * depth
            + b"]" * depth
            + b"}}"
        )
    if kind == 8:  # huge numbers and non-JSON constants
        return rng.choice(
            [
                b'{"jsonrpc":"2.0","id":' + b"9" * 5000 + b',"method":"status"}',
                b'{"jsonrpc":"2.0","id":1,"method":"status","params":{"x":NaN}}',
                b'{"jsonrpc":"2.0","id":1,"method":"list_runs","params":{"limit":1e999}}',
            ]
        )
    if kind == 9:  # notifications and stray replies: no answer expected
        return rng.choice(
            [
                b'{"jsonrpc":"2.0","method":"status"}',
                b'{"jsonrpc":"2.0","id":5,"result":{}}',
                b'{"jsonrpc":"2.0","id":null,"error":{"code":1,"message":"x"}}',
            ]
        )
    if kind == 10:  # blank and carriage-return lines
        return rng.choice([b"", b"   ", b"\r", b"{}\r"])
    return json.dumps({"jsonrpc": "2.0", "id": i, "method": "status", "params": {}}).encode()


def test_fuzzed_frames_get_errors_and_the_agent_still_answers(agent: Agent) -> None:
    rng = random.Random(20240611)
    frames = [_frame(rng, i) for i in range(N_FRAMES)]
    oversized = [
        b"x" * (MAX_FRAME_BYTES + 10),
        b'{"jsonrpc":"2.0","id":1,"method":"hello","params":{"c":"'
        + b"a" * MAX_FRAME_BYTES
        + b'"}}',
    ]
    lines = [b'{"jsonrpc":"2.0","id":"hello","method":"hello","params":{"protocol_version":"1.0"}}']
    lines += (
        frames[:5000]
        + oversized
        + frames[5000:]
        + [b'{"jsonrpc":"2.0","id":"last","method":"status"}']
    )
    replies: list[dict[str, object]] = []
    done = threading.Event()

    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(agent.socket))
        sock.settimeout(120)

        def read() -> None:
            buffer = b""
            while not done.is_set():
                data = sock.recv(1 << 16)
                if not data:
                    break
                buffer += data
                *complete, buffer = buffer.split(b"\n")
                for line in complete:
                    reply = json.loads(line)
                    replies.append(reply)
                    if reply.get("id") == "last":
                        done.set()

        reader = threading.Thread(target=read)
        reader.start()
        started = time.monotonic()
        sock.sendall(b"".join(line + b"\n" for line in lines))
        reader.join(120)
        elapsed = time.monotonic() - started
    assert done.is_set(), f"the agent stopped answering after {len(replies)} replies"
    assert len(replies) > N_FRAMES // 2
    assert replies[0].get("result"), "hello first"
    assert replies[-1]["result"]["agent_pid"] == agent.pid  # type: ignore[index]
    errors = [r["error"] for r in replies if "error" in r]
    assert all(e["code"] != INTERNAL_ERROR for e in errors), "no frame may reach an internal error"  # type: ignore[index]
    assert sum(e["code"] == -32003 for e in errors) == 2  # type: ignore[index]  # both oversized frames
    assert not any(
        "Traceback" in json.dumps(r) or INTERNAL_ERROR_MESSAGE in json.dumps(r) for r in replies
    )
    assert "Traceback" not in agent.log()
    with agent.client() as c:
        assert c.call("status")["agent_pid"] == agent.pid
    print(f"{len(lines)} frames, {len(replies)} replies in {elapsed:.1f} s")
