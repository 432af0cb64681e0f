"""Graceful drain over real sockets, on both transports: readiness flips, new handshakes are refused with 503, a
streaming response completes, then the client is closed with 1001 and its upstream with it."""

from __future__ import annotations

import threading
import time

import pytest
import trio
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.clients import raw
from tests.stack import TRANSPORTS, Stack
from tests.test_http import get


@pytest.fixture(params=TRANSPORTS)
def drain_stack(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    s = Stack(tmp_path_factory.mktemp("drain"), transport=request.param).start()
    yield s
    s.stop()


def start_drain(stack: Stack, timeout: float) -> threading.Thread:
    thread = threading.Thread(target=trio.from_thread.run, args=(stack.server.drain, timeout),
                              kwargs={"trio_token": stack._token}, daemon=True)
    thread.start()
    return thread


def test_a_drain_finishes_the_streaming_response_then_closes_with_1001(drain_stack):
    stack = drain_stack
    assert get(stack, "/ready")[0] == 200
    with raw(stack, dialect="ga") as c:
        c.recv()
        c.send({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}})
        c.until("session.updated")
        c.send({"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "a slow story of six words [fault:slow]"}]}})
        c.send({"type": "response.create"})
        c.until("response.output_text.delta")  # streaming, about 0.5 s a chunk
        drain = start_drain(stack, 20)
        deadline = time.monotonic() + 5
        while get(stack, "/ready")[0] != 503 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert get(stack, "/ready")[0] == 503 and get(stack, "/health")[0] == 200
        with pytest.raises(InvalidStatus) as refused, raw(stack):
            pass
        assert refused.value.response.status_code == 503
        done = c.until("response.done")
        assert done[-1]["response"]["status"] == "completed"
        with pytest.raises(ConnectionClosed) as closed:
            c.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    drain.join(timeout=20)
    assert not drain.is_alive(), "drain did not return"
    assert stack.server.active_sessions == 0
    deadline = time.monotonic() + 5
    while stack.emulator.live and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stack.emulator.live == 0, "the upstream outlived its session"


def test_a_drain_closes_an_idle_session_at_once_and_a_stuck_one_at_the_timeout(drain_stack):
    stack = drain_stack
    with raw(stack, dialect="ga") as idle, raw(stack, dialect="ga") as stuck:
        idle.recv()
        stuck.recv()
        stuck.send({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}})
        stuck.until("session.updated")
        stuck.send({"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "never answered [fault:silent]"}]}})
        stuck.send({"type": "response.create"})
        stuck.until("response.created")
        started = time.monotonic()
        drain = start_drain(stack, 1.0)
        with pytest.raises(ConnectionClosed) as closed:
            idle.recv()
        assert closed.value.rcvd.code == 1001 and time.monotonic() - started < 1.0
        with pytest.raises(ConnectionClosed) as closed:
            stuck.until("never")
        assert closed.value.rcvd.code == 1001 and time.monotonic() - started >= 1.0
    drain.join(timeout=20)
    assert not drain.is_alive()



def open_session(port: int, text: str, until: str):
    """A raw GA client on the relay at `port` that asked for a text response to `text`, once it saw `until`."""
    import json

    from websockets.sync.client import connect

    ws = connect(f"ws://127.0.0.1:{port}/v1/realtime?model=vertex_gemini_live_text", open_timeout=10)
    assert json.loads(ws.recv(timeout=10))["type"] == "session.created"
    for event in ({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}},
                  {"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                                                                 "content": [{"type": "input_text", "text": text}]}},
                  {"type": "response.create"}):
        ws.send(json.dumps(event))
    while json.loads(ws.recv(timeout=10))["type"] != until:
        pass
    return ws


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sigterm_drains_the_streaming_response_closes_1001_and_exits_0(transport):
    import json
    import signal

    from tests.test_cli import relay_process

    words = " ".join(f"word{i}" for i in range(40))  # the demo emulator streams a word each 20 ms
    with relay_process("--transport", transport) as (proc, port, _banner):
        ws = open_session(port, words, "response.output_text.delta")
        proc.send_signal(signal.SIGTERM)
        kinds = []
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                kinds.append(json.loads(ws.recv(timeout=10))["type"])
        assert kinds[-1] == "response.done", kinds
        assert closed.value.rcvd.code == 1001
        assert proc.wait(15) == 0


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_second_signal_stops_at_once(transport):

    from tests.test_cli import relay_process

    with relay_process("--transport", transport) as (proc, port, _banner):
        open_session(port, "never answered [fault:silent]", "response.created")
        assert_second_signal_stops_at_once(proc)


def assert_second_signal_stops_at_once(proc) -> None:
    """SIGTERM starts a drain that waits for a response that never ends; SIGINT then stops the relay within 1.5 s."""
    import signal

    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert proc.poll() is None
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(5) == 0
    assert time.monotonic() - started < 1.5
