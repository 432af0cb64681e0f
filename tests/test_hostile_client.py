"""Hostile input at the socket (issue 15, item 4, the client's side): generated garbage and the classic
attacks, over real sockets against a running relay.  Each gets the right `error` event or a documented close
code, every event the relay sends is valid against the SDK schema of the connection's dialect, and the
session (or, after a close, the relay) goes on serving.
"""

from __future__ import annotations

import base64
import json
import socket
import struct
import threading
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from conformance.strategies import json_paths
from tests.clients import raw
from tests.schemas import validate_openai
from tests.stack import MASTER_KEY, Stack, stack_fixture

hostile = stack_fixture("hostile")

# A valid event of every client type: the seeds the generator breaks.
VALID: list[dict[str, Any]] = [
    {"type": "session.update", "session": {"instructions": "be brief", "temperature": 0.8, "voice": "alloy",
                                           "turn_detection": {"type": "server_vad", "silence_duration_ms": 300},
                                           "tools": [{"type": "function", "name": "f", "parameters": {}}]}},
    {"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"],
                                           "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}}}}},
    {"type": "input_audio_buffer.append", "audio": base64.b64encode(bytes(480)).decode()},
    {"type": "input_audio_buffer.commit"},
    {"type": "input_audio_buffer.clear"},
    {"type": "output_audio_buffer.clear"},
    {"type": "conversation.item.create", "previous_item_id": None,
     "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}},
    {"type": "conversation.item.create",
     "item": {"type": "function_call_output", "call_id": "c1", "output": "{\"a\": 1}"}},
    {"type": "conversation.item.retrieve", "item_id": "item_x"},
    {"type": "conversation.item.truncate", "item_id": "item_x", "content_index": 0, "audio_end_ms": 10},
    {"type": "conversation.item.delete", "item_id": "item_x"},
    {"type": "response.create", "response": {"instructions": "short", "modalities": ["text"]}},
    {"type": "response.cancel"},
    {"type": "transcription_session.update", "session": {}},
]

WRONG = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20),
                  st.just(10**400), st.just(-1e308), st.lists(st.integers(), max_size=3),
                  st.dictionaries(st.text(max_size=5), st.integers(), max_size=3), st.just("x" * 5000))


@st.composite
def broken_events(draw: st.DrawFn) -> str:
    """A valid event with one field replaced by a value of another type, removed, or joined by an unknown one."""
    event = json.loads(json.dumps(draw(st.sampled_from(VALID))))
    path = draw(st.sampled_from(json_paths(event)))
    parent = event
    for key in path[:-1]:
        parent = parent[key]
    how = draw(st.sampled_from(["replace", "delete", "extra"]))
    if how == "replace":
        parent[path[-1]] = draw(WRONG)
    elif how == "delete" and isinstance(parent, dict):
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent[draw(st.text(min_size=1, max_size=8))] = draw(WRONG)
    if draw(st.booleans()):
        event["event_id"] = draw(st.one_of(st.text(max_size=30), WRONG))
    return json.dumps(event)


def _append(audio: str) -> str:
    return json.dumps({"type": "input_audio_buffer.append", "event_id": "bad-audio", "audio": audio})


FRAMES = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"]), max_size=300),
    st.binary(max_size=300),
    broken_events(),
    st.builds(_append, st.text(max_size=40)),  # invalid base64, mostly
    st.builds(lambda n: _append(base64.b64encode(bytes(n)).decode()), st.integers(0, 99)),  # odd lengths too
    st.builds(lambda depth: "[" * depth + "]" * depth, st.integers(1, 3000)),
)


def _probe_until_answered(c: Any) -> list[dict[str, Any]]:
    """Ask something with a known answer; every event up to that answer (each validated by Conn.recv)."""
    c.send({"type": "conversation.item.retrieve", "event_id": "probe", "item_id": "probe-missing"})
    events = []
    while True:
        event = c.recv()
        events.append(event)
        if event["type"] == "error" and event["error"].get("event_id") == "probe":
            assert event["error"]["code"] == "item_not_found"
            return events


def _headers(dialect: str) -> dict[str, str]:
    extra = {"OpenAI-Beta": "realtime=v1"} if dialect == "beta" else {"X-Stainless-Lang": "python"}
    return {"Authorization": f"Bearer {MASTER_KEY}", **extra}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frame=FRAMES, dialect=st.sampled_from(["beta", "ga"]))
@example(frame="[" * 100_000 + "]" * 100_000, dialect="ga")
@example(frame='{"type": "session.update", "session": {"temperature": 1e999}}', dialect="beta")
@example(frame='{"type": "input_audio_buffer.append", "audio": "' + "9" * 100_001 + '"}', dialect="ga")
@example(frame=b'{"type": "response.cancel"}', dialect="ga")
def test_any_frame_gets_an_answer_and_the_session_goes_on(hostile: Stack, frame: str | bytes, dialect: str) -> None:
    with raw(hostile, headers=_headers(dialect), dialect=dialect) as c:
        assert c.recv()["type"] == "session.created"
        c.ws.send(frame)  # invalid UTF-8 in a text frame: test_protocol_violations_close_with_the_documented_code
        events = _probe_until_answered(c)
        for event in events:
            if event["type"] == "error" and event["error"].get("event_id") != "probe":
                assert event["error"]["type"] in ("invalid_request_error", "server_error")
                assert event["error"]["code"], event


# ---------------------------------------------------------------- at the WebSocket layer


def _upgrade(port: int, headers: dict[str, str] | None = None,
             path: str = "/v1/realtime?model=vertex_gemini_live_text") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket", "Connection: Upgrade",
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13",
             f"Authorization: Bearer {MASTER_KEY}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def _frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A masked client frame (the mask is zero: masking is then the identity, which RFC 6455 allows)."""
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    if n < 126:
        head = struct.pack("!BB", first, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, n)
    return head + b"\0\0\0\0" + payload


def _close_code(sock: socket.socket) -> int | None:
    """Read server frames until a close frame; its code (None if the TCP connection just ended)."""
    buf = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            return None
        if not chunk:
            return None
        buf += chunk
        while len(buf) >= 2:
            opcode, n = buf[0] & 0x0F, buf[1] & 0x7F
            at = 2
            if n == 126:
                if len(buf) < 4:
                    break
                n, at = struct.unpack("!H", buf[2:4])[0], 4
            elif n == 127:
                if len(buf) < 10:
                    break
                n, at = struct.unpack("!Q", buf[2:10])[0], 10
            if len(buf) < at + n:
                break
            payload, buf = buf[at:at + n], buf[at + n:]
            if opcode == 0x8:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005


def _still_serves(stack: Stack) -> None:
    with raw(stack, dialect="ga") as c:
        assert c.recv()["type"] == "session.created"
        _probe_until_answered(c)


@pytest.mark.parametrize(("what", "frames", "code"), [
    ("invalid UTF-8 in a text frame", [_frame(0x1, b'{"type": "\xff\xfe"}')], 1007),
    ("a continuation with nothing to continue", [_frame(0x0, b"x")], 1002),
    ("a control frame over 125 bytes", [_frame(0x9, b"p" * 200)], 1002),
    ("a reserved opcode", [_frame(0x3, b"x")], 1002),
    ("a frame over the 32 MiB message limit", [_frame(0x1, b" " * (40 * 1024 * 1024))], 1009),
    ("a message in parts over the limit", [_frame(0x1, b" " * (20 * 1024 * 1024), fin=False),
                                           _frame(0x0, b" " * (20 * 1024 * 1024))], 1009),
])
def test_protocol_violations_close_with_the_documented_code(hostile: Stack, what: str, frames: list[bytes],
                                                            code: int) -> None:
    sock = _upgrade(hostile.port)
    try:
        for frame in frames:
            try:
                sock.sendall(frame)
            except (BrokenPipeError, ConnectionResetError):
                break  # closed before we were done sending: the code tells why
        got = _close_code(sock)
        assert got == code or (code == 1009 and got is None), f"{what}: closed with {got}"
    finally:
        sock.close()
    _still_serves(hostile)


def test_a_16_mib_event_is_an_error_and_the_session_goes_on(hostile: Stack) -> None:
    with raw(hostile, dialect="ga") as c:
        assert c.recv()["type"] == "session.created"
        c.send_raw(_append("A" * (16 * 1024 * 1024 + 4)))
        error = c.recv()
        assert error["error"]["code"] == "message_too_large" and error["error"]["event_id"] == "bad-audio"
        _probe_until_answered(c)


@pytest.mark.parametrize("request_bytes", [
    b"\x00\xff\xfe garbage \r\n\r\n",
    b"GET /v1/realtime HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n",  # no key
    b"GET /v1/realtime HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 99\r\n\r\n",
    b"GET /v1/realtime HTTP/1.1\r\n" + b"X-Long: " + b"a" * 70_000 + b"\r\n\r\n",
    b"GET /v1/realtime HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(2000)) + b"\r\n",
    b"GET /v1/realtime HTTP/1.1\r\nHost \xff\xfe: x\r\nUpgrade: websocket\r\n\r\n",
])
def test_garbage_handshakes_are_refused_and_the_relay_goes_on(hostile: Stack, request_bytes: bytes) -> None:
    with socket.create_connection(("127.0.0.1", hostile.port), timeout=20) as sock:
        try:
            sock.sendall(request_bytes)
            answer = sock.recv(4096)
        except (BrokenPipeError, ConnectionResetError):
            answer = b""
        assert not answer.startswith(b"HTTP/1.1 101"), answer
    _still_serves(hostile)


def test_a_stalled_frame_and_a_half_open_handshake_do_not_stop_other_sessions(hostile: Stack) -> None:
    stalled = _upgrade(hostile.port)
    stalled.sendall(_frame(0x1, b"{" * 1000)[:40])  # a frame header and a little of its body, then nothing
    half = socket.create_connection(("127.0.0.1", hostile.port), timeout=10)
    half.sendall(b"GET /v1/realtime HTTP/1.1\r\nHost: x\r\n")  # and never the rest
    try:
        for _ in range(3):
            with raw(hostile, headers=_headers("ga"), dialect="ga") as c:
                assert c.recv()["type"] == "session.created"
                c.send({"type": "conversation.item.create", "item": {
                    "type": "message", "role": "user", "content": [{"type": "input_text", "text": "still here"}]}})
                c.send({"type": "response.create"})
                events = c.until("response.done")
                assert events[-1]["response"]["status"] == "completed"
    finally:
        stalled.close()
        half.close()


def test_a_flood_of_events_is_answered_within_the_rate_and_the_session_goes_on(hostile: Stack) -> None:
    limit = int(hostile.server.config.max_events_per_second)  # type: ignore[union-attr]
    frames = 3 * limit
    with ws_connect(hostile.url(), additional_headers=_headers("ga"), max_size=None) as ws:
        json.loads(ws.recv(timeout=10))
        flood = json.dumps({"type": "input_audio_buffer.clear"})
        sender = threading.Thread(target=lambda: [ws.send(flood) for _ in range(frames)])
        sender.start()
        answers: dict[str, int] = {}
        while sum(answers.values()) < frames:
            event = json.loads(ws.recv(timeout=30))
            validate_openai(event, "ga")
            key = event["type"] if event["type"] != "error" else event["error"]["code"]
            answers[key] = answers.get(key, 0) + 1
        sender.join()
        # Every event is answered: cleared within the rate, rate_limit_exceeded past it; none is lost.
        assert set(answers) <= {"input_audio_buffer.cleared", "rate_limit_exceeded"}, answers
        assert answers.get("rate_limit_exceeded", 0) > 0
        ws.send(json.dumps({"type": "conversation.item.retrieve", "event_id": "probe", "item_id": "x"}))
        while True:
            try:
                event = json.loads(ws.recv(timeout=10))
            except ConnectionClosed as exc:  # pragma: no cover - a failure, said plainly
                raise AssertionError(f"the relay closed the flooded session: {exc}") from None
            if event["type"] == "error" and event["error"].get("event_id") == "probe":
                break


keepalive = stack_fixture("keepalive", general_settings={"client_keepalive_seconds": 1})


def test_a_client_that_vanished_without_closing_is_dropped_and_its_session_ended(keepalive: Stack) -> None:
    """A peer gone without a FIN (pulled cable, NAT timeout) never answers the relay's ping: its session ends
    instead of holding a Gemini connection until max_session_seconds."""
    gone = _upgrade(keepalive.port)  # a raw socket: it reads and sends nothing more, so no pong either
    try:
        deadline = time.monotonic() + 15
        while keepalive.server.active_sessions == 0 and time.monotonic() < deadline:  # type: ignore[union-attr]
            time.sleep(0.05)
        assert keepalive.server.active_sessions == 1  # type: ignore[union-attr]
        while keepalive.server.active_sessions and time.monotonic() < deadline:  # type: ignore[union-attr]
            time.sleep(0.1)
        assert keepalive.server.active_sessions == 0, "the silent client's session is still open"  # type: ignore
        gone.settimeout(5)
        received = b""
        try:
            while chunk := gone.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
        assert b"\x89" in received, "the relay pinged the client first"  # a ping frame's first byte (FIN + 0x9)
    finally:
        gone.close()


def test_a_quiet_client_that_answers_pings_keeps_its_session(keepalive: Stack) -> None:
    with ws_connect(keepalive.url(), additional_headers=_headers("ga"), max_size=None) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "session.created"
        time.sleep(3.5)  # several keepalive periods with nothing to say; the client library answers the pings
        ws.send(json.dumps({"type": "conversation.item.retrieve", "event_id": "probe", "item_id": "x"}))
        event = json.loads(ws.recv(timeout=10))
        assert event["type"] == "error" and event["error"]["event_id"] == "probe"
