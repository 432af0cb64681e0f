"""The two directions of a session never block each other, and a client that does not read is bounded.

The clients here open their TCP socket themselves with a small receive buffer, so that a client that stops
reading pushes back on the relay within a few kilobytes instead of the megabytes loopback would absorb.
"""

from __future__ import annotations

import base64
import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.stack import MASTER_KEY, Stack, stack_fixture
from tests.test_e2e_audio import sine

REPLY_CHUNKS = 200  # 100 ms audio chunks per reply: 20 s of 24 kHz audio, about 1.3 MB of base64 deltas
SESSION = {"type": "session.update", "session": {"type": "realtime", "output_modalities": ["audio"],
                                                 "audio": {"input": {"turn_detection": None}}}}
ASK = [{"type": "conversation.item.create",
        "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "talk a while"}]}},
       {"type": "response.create"}]


@contextmanager
def narrow_client(stack: Stack, rcvbuf: int = 8192) -> Iterator[tuple[ClientConnection, socket.socket]]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: it sets the TCP window
    sock.connect(("127.0.0.1", stack.port))
    # max_queue: the client library stops reading the socket once a few frames wait unread.
    with connect(stack.url(), sock=sock, additional_headers={"Authorization": f"Bearer {MASTER_KEY}"},
                 max_size=None, max_queue=4, open_timeout=10, close_timeout=2) as ws:
        yield ws, sock


def send(ws: ClientConnection, *events: dict) -> None:
    for event in events:
        ws.send(json.dumps(event))


def recv(ws: ClientConnection, timeout: float = 15) -> dict:
    return json.loads(ws.recv(timeout=timeout))


def audio_count(messages: list[dict]) -> int:
    return sum("audio" in m.get("realtimeInput", {}) for m in messages)


def wait_for(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


# Every audio reply is 20 s of audio sent at once; clients may leave 4 MiB unread.
loud_stack = stack_fixture("loud_stack", emulator_options={"reply_audio_chunks": REPLY_CHUNKS},
                           general_settings={"client_send_buffer": 4 * 1024 * 1024})
# The same replies against the default client_send_buffer (512 KiB): one reply is more than it holds.
strict_stack = stack_fixture("strict_stack", emulator_options={"reply_audio_chunks": REPLY_CHUNKS})


def test_audio_keeps_reaching_gemini_while_the_client_does_not_read_and_every_delta_arrives_after(loud_stack):
    stack = loud_stack
    with narrow_client(stack) as (ws, _):
        assert recv(ws)["type"] == "session.created"
        send(ws, SESSION)
        assert recv(ws)["type"] == "session.updated"
        send(ws, *ASK)
        time.sleep(0.5)  # the whole reply is on its way; the client reads none of it
        upstream = stack.emulator.by_connection[-1]
        before = audio_count(upstream)
        seen: list[float] = []  # when the emulator had received the (i+1)th chunk
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                count = audio_count(upstream) - before
                now = time.monotonic()
                while len(seen) < count:
                    seen.append(now)
                time.sleep(0.002)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        chunk = base64.b64encode(sine(20).tobytes()).decode()
        sent: list[float] = []
        start = time.monotonic()
        for i in range(150):  # 3 s of 20 ms chunks, in real time
            time.sleep(max(0.0, start + i * 0.02 - time.monotonic()))
            sent.append(time.monotonic())
            send(ws, {"type": "input_audio_buffer.append", "audio": chunk})
            if i == 50:
                ws.ping()  # as the openai SDK does every 20 s: the pong is due while the relay cannot write
        assert wait_for(lambda: len(seen) >= len(sent), 2.0), f"{len(seen)} of {len(sent)} chunks reached Gemini"
        stop.set()
        watcher.join()
        lags = [arrived - left for left, arrived in zip(sent, seen, strict=False)]
        assert max(lags) < 0.5, f"slowest chunk took {max(lags):.3f} s"

        events = []
        while not events or events[-1]["type"] != "response.done":
            events.append(recv(ws))
    deltas = [e for e in events if e["type"] == "response.output_audio.delta"]
    assert events[-1]["response"]["status"] == "completed"
    assert sum(len(base64.b64decode(d["delta"])) for d in deltas) == REPLY_CHUNKS * 100 * 48  # 24 kHz pcm16
    # In order: one item, and each event of it where the protocol puts it.
    assert {d["item_id"] for d in deltas} == {events[-1]["response"]["output"][0]["id"]}
    kinds = [e["type"] for e in events]
    assert kinds.index("response.created") < kinds.index("response.output_audio.delta")
    assert kinds.index("response.output_audio.done") > max(i for i, k in enumerate(kinds)
                                                            if k == "response.output_audio.delta")


@contextmanager
def overflowing_client(stack: Stack) -> Iterator[ClientConnection]:
    """A client that asked for a long audio reply and read none of it until the relay gave up on it."""
    stats = stack.server.stats
    overflows = stats.client_send_overflows
    with narrow_client(stack) as (ws, _):
        assert recv(ws)["type"] == "session.created"
        send(ws, SESSION)
        assert recv(ws)["type"] == "session.updated"
        send(ws, *ASK)
        assert wait_for(lambda: stats.client_send_overflows > overflows, 10), "the relay never gave up on the client"
        yield ws


def test_a_client_that_falls_behind_is_closed_with_1008_and_its_backlog_stays_bounded(strict_stack):
    stack, stats = strict_stack, strict_stack.server.stats
    with overflowing_client(stack) as ws:
        with pytest.raises(ConnectionClosed) as closed:  # reading again within the grace period: a clean 1008
            while True:
                ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert "unread" in closed.value.rcvd.reason
    assert wait_for(lambda: stack.server.active_sessions == 0, 10)
    # What the relay held for the client: never more than the buffer (one reply alone is 2.5 times that).
    assert stats.client_backlog_peak <= 512 * 1024


def test_a_client_that_never_reads_is_dropped_and_its_upstream_closed(strict_stack):
    stack, stats = strict_stack, strict_stack.server.stats
    with overflowing_client(stack):
        # Never reading again: the relay waits a grace period for the write in progress, then drops the socket.
        assert wait_for(lambda: stack.server.active_sessions == 0, 20), "the session outlived its client"
        assert wait_for(lambda: stack.emulator.live == 0, 5)
    assert stats.client_backlog_peak <= 512 * 1024


paced_stack = stack_fixture("paced_stack", emulator_options={"chunk_delay": 0.05})


def test_abrupt_disconnects_mid_response_leave_no_upstream_open(paced_stack):
    stack = paced_stack
    text = {"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}}
    ask = [{"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": " ".join(["word"] * 60)}]}}, {"type": "response.create"}]
    for _ in range(100):
        with narrow_client(stack, rcvbuf=65536) as (ws, sock):
            assert recv(ws)["type"] == "session.created"
            send(ws, text)
            assert recv(ws)["type"] == "session.updated"
            send(ws, *ask)
            while recv(ws)["type"] != "response.output_text.delta":
                pass
            # A reset, no close frame: the way a client on a dropped network or a killed process leaves.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
    assert wait_for(lambda: stack.emulator.live == 0, 5), f"{stack.emulator.live} upstream connections left open"
    assert wait_for(lambda: stack.server.active_sessions == 0, 5)
