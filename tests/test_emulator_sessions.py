"""Tests of the emulator's session lifecycle: live connections, goAway, resumption, context window,
contextUpdate, and the faults that end connections (in a session or at the handshake).

Raw trio_websocket clients over real sockets; every server message is validated as a google.genai
LiveServerMessage by ``recv`` from test_emulator.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import orjson
import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from relay.emulator import Emulator, EmulatorOptions
from relay.emulator.context import Compression
from relay.emulator.network import STALLED_HANDSHAKE
from relay.emulator.wire import duration_text
from tests.test_emulator import (
    STUDIO,
    TEXT_SETUP,
    VERTEX,
    Starter,
    expect_close,
    recv,
    recv_turn,
    reply_text,
    send,
    session,
    transcript,
    user_turn,
    wait_live,
)

# 3.8 answers in AUDIO only; its text is the output transcription.
STUDIO_38 = {"setup": {"model": "models/gemini-3.8-live", "generationConfig": {"responseModalities": ["AUDIO"]},
                       "outputAudioTranscription": {}}}  # fmt: skip
DEADLINE = (1011, "Deadline expired before operation could complete.")
TOOLS = [{"functionDeclarations": [{"name": "get_time", "parameters": {"type": "OBJECT"}}]}]


@pytest.fixture
def start(nursery: trio.Nursery) -> Starter:
    """Start an emulator on an ephemeral port inside the test's nursery."""

    async def _start(**options: Any) -> tuple[Emulator, int]:
        emulator = Emulator(EmulatorOptions(**options))
        port = await nursery.start(partial(emulator.serve, "127.0.0.1", 0))
        return emulator, port

    return _start


def resumable(setup: dict[str, Any] = TEXT_SETUP, **resumption: Any) -> dict[str, Any]:
    return {"setup": {**setup["setup"], "sessionResumption": resumption}}


async def raw_upgrade(port: int) -> bytes:
    """Send a WebSocket upgrade request over plain TCP; everything the server answers until it closes."""
    request = (
        f"GET {VERTEX} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    answer = b""
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(request.encode())
            try:
                while chunk := await stream.receive_some():
                    answer += chunk
            except trio.BrokenResourceError:
                pass  # a reset is a close too
    return answer


def user_texts(history: list[dict[str, Any]]) -> list[str]:
    return [p["text"] for c in history if c.get("role") == "user" for p in c["parts"] if "text" in p]


# -- live connections --------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["trio-websocket", "websockets"])
async def test_live_counts_open_connections_however_they_end(start: Starter, transport: str) -> None:
    emulator, port = await start(transport=transport)
    async with session(port) as first:
        async with session(port) as second:
            await wait_live(emulator, 2)
            if transport == "trio-websocket":
                await send(second, user_turn("[fault:close-1011]"))
                await expect_close(second, 1011, "Internal error occurred.")
            # (else the client closes: after a close of its own, the websockets transport waits up to
            # 5 s for an end of stream that a trio-websocket client, waiting for the server's, never sends.)
        await wait_live(emulator, 1)
        await send(first, user_turn("[fault:mid-1006] dropped"))
        with trio.fail_after(5), pytest.raises(ConnectionClosed):
            while True:
                await first.get_message()
        await wait_live(emulator, 0)
    async with session(port):
        await wait_live(emulator, 1)
    await wait_live(emulator, 0)  # the client closed it
    emulator.handshake_faults.append(503)
    with pytest.raises(ConnectionRejected):
        async with open_websocket_url(f"ws://127.0.0.1:{port}{VERTEX}"):
            pass
    assert (emulator.live, emulator.connections) == (0, 3)
    assert emulator.received.count(TEXT_SETUP) == 3


# -- goAway ------------------------------------------------------------------------------------


def test_duration_text_is_shortest() -> None:
    assert [duration_text(s) for s in (50, 50.0, 0.5, 1.25, 1e-9, 120)] == [
        "50s", "50s", "0.5s", "1.25s", "0.000000001s", "120s",
    ]  # fmt: skip


async def test_goaway_after_turns_follows_the_resumption_update_then_deadline(start: Starter) -> None:
    _, port = await start(goaway_after_turns=2, goaway_time_left=0.3)
    async with session(port, setup=resumable()) as ws:
        await recv(ws)  # the handle after setupComplete
        await send(ws, user_turn("one"))
        await recv_turn(ws)
        assert "newHandle" in (await recv(ws))["sessionResumptionUpdate"]
        await send(ws, user_turn("two"))
        messages = await recv_turn(ws)
        assert all("goAway" not in m for m in messages)
        assert (await recv(ws))["sessionResumptionUpdate"]["newHandle"] == "emu-1-c1-h3"
        assert await recv(ws) == {"goAway": {"timeLeft": "0.3s"}}
        sent = trio.current_time()
        await send(ws, user_turn("three"))  # still answered: the connection lives until the deadline
        assert reply_text(await recv_turn(ws)) == "Echo: three"
        await recv(ws)  # its handle; no second goAway
        await expect_close(ws, *DEADLINE)
        assert trio.current_time() - sent >= 0.25


async def test_goaway_after_seconds_is_sent_once(start: Starter) -> None:
    _, port = await start(goaway_after_seconds=0.1, goaway_time_left=0.5)
    async with session(port) as ws:
        assert await recv(ws) == {"goAway": {"timeLeft": "0.5s"}}
        await send(ws, user_turn("[fault:goaway] again"))
        messages = await recv_turn(ws)
        assert all("goAway" not in m for m in messages)
        await expect_close(ws, *DEADLINE)


async def test_goaway_fault_uses_time_left_and_closes_after_it(start: Starter) -> None:
    _, port = await start(goaway_time_left=0.2)
    async with session(port) as ws:
        await send(ws, user_turn("bye [fault:goaway]"))
        messages = await recv_turn(ws)
        assert messages[0] == {"goAway": {"timeLeft": "0.2s"}}
        await expect_close(ws, *DEADLINE)


# -- resumption --------------------------------------------------------------------------------


async def test_resume_while_the_old_connection_is_open_is_1011(start: Starter) -> None:
    emulator, port = await start()
    async with session(port, setup=resumable()) as old:
        handle = (await recv(old))["sessionResumptionUpdate"]["newHandle"]
        async with open_websocket_url(f"ws://127.0.0.1:{port}{VERTEX}") as ws:
            await send(ws, resumable(handle=handle))
            await expect_close(ws, 1011, "Internal error occurred.")
        await send(old, user_turn("still here"))  # the refused resume did not hurt the old one
        assert reply_text(await recv_turn(old)) == "Echo: still here"
        handle = (await recv(old))["sessionResumptionUpdate"]["newHandle"]
    await wait_live(emulator, 0)
    async with session(port, setup=resumable(handle=handle)) as ws:
        assert (await recv(ws))["sessionResumptionUpdate"]["newHandle"] == "emu-1-c2-h3"


async def test_not_resumable_while_a_tool_call_waits(start: Starter) -> None:
    _, port = await start()
    setup = {"setup": {**TEXT_SETUP["setup"], "tools": TOOLS, "sessionResumption": {}}}
    async with session(port, setup=setup) as ws:
        await recv(ws)
        await send(ws, user_turn("get_time please"))
        call = await recv(ws)
        assert call["toolCall"]["functionCalls"][0]["name"] == "get_time"
        assert await recv(ws) == {"sessionResumptionUpdate": {"resumable": False}}
        call_id = call["toolCall"]["functionCalls"][0]["id"]
        response = {"id": call_id, "name": "get_time", "response": {"output": "noon"}}
        await send(ws, {"toolResponse": {"functionResponses": [response]}})
        assert reply_text(await recv_turn(ws)) == 'Result: get_time {"output":"noon"}'
        assert (await recv(ws))["sessionResumptionUpdate"] == {"newHandle": "emu-1-c1-h2", "resumable": True}


async def test_expired_handle_is_not_found(start: Starter) -> None:
    emulator, port = await start(handle_ttl=0.2)
    async with session(port, setup=resumable()) as ws:
        handle = (await recv(ws))["sessionResumptionUpdate"]["newHandle"]
    await wait_live(emulator, 0)
    await trio.sleep(0.3)
    async with open_websocket_url(f"ws://127.0.0.1:{port}{VERTEX}") as ws:
        await send(ws, resumable(handle=handle))
        await expect_close(ws, 1008, "BidiGenerateContent session not found.")


async def test_resume_restores_history_once_and_takes_the_new_config(start: Starter) -> None:
    emulator, port = await start()
    async with session(port, setup=resumable()) as ws:
        await recv(ws)
        await send(ws, user_turn("first turn"))
        await recv_turn(ws)
        handle = (await recv(ws))["sessionResumptionUpdate"]["newHandle"]
        await send(ws, {"clientContent": {"turns": [{"role": "user", "parts": [{"text": "lost"}]}]}})
        await send(ws, {"realtimeInput": {"text": "[fault:silent] never answered"}})
    await wait_live(emulator, 0)
    instruction = {"parts": [{"text": "Be brief."}]}
    new_setup = {
        "setup": {
            **TEXT_SETUP["setup"],
            "generationConfig": {"responseModalities": ["AUDIO"]},
            "systemInstruction": instruction,
            "tools": TOOLS,
            "sessionResumption": {"handle": handle},
        }
    }
    async with session(port, setup=new_setup) as ws:
        await recv(ws)
        await send(ws, user_turn("second turn"))
        messages = await recv_turn(ws)
    assert any("inlineData" in m["serverContent"].get("modelTurn", {}).get("parts", [{}])[0] for m in messages[:-2])
    assert messages[-1]["usageMetadata"]["promptTokenCount"] == 4  # "first turn" + "second turn"
    # What came after the handle (an unanswered turn) is not part of the resumed history.
    assert user_texts(emulator.sessions_history("emu-1")) == ["first turn", "second turn"]
    config = emulator.session("emu-1").config
    assert config is not None and config.system_instruction == instruction and "get_time" in config.functions
    assert emulator.session_ids() == ["emu-1"]


async def test_transparent_resumption_is_vertex_only_and_counts_messages(start: Starter) -> None:
    _, port = await start()
    studio = {"setup": {"model": "models/m", "sessionResumption": {"transparent": True}}}
    async with open_websocket_url(f"ws://127.0.0.1:{port}{STUDIO}") as ws:
        await send(ws, studio)
        await expect_close(ws, 1007, "Request contains an invalid argument.")
    async with session(port, setup=resumable(transparent=True)) as ws:
        assert (await recv(ws))["sessionResumptionUpdate"]["lastConsumedClientMessageIndex"] == "0"
        await send(ws, user_turn("one"))  # message 1
        await recv_turn(ws)
        assert (await recv(ws))["sessionResumptionUpdate"]["lastConsumedClientMessageIndex"] == "1"
        await send(ws, {"clientContent": {"turns": [{"role": "user", "parts": [{"text": "x"}]}]}})  # 2
        await send(ws, {"realtimeInput": {"video": {"mimeType": "image/jpeg", "data": ""}}})  # 3
        await send(ws, user_turn("two"))  # 4
        await recv_turn(ws)
        update = (await recv(ws))["sessionResumptionUpdate"]
    assert update == {"newHandle": "emu-1-c1-h3", "resumable": True, "lastConsumedClientMessageIndex": "4"}


# -- context window ----------------------------------------------------------------------------


def test_compression_defaults() -> None:
    assert Compression().bounds(0) == (104857, 52428)  # 80 % of 131072, then half
    assert Compression().bounds(10) == (8, 4)
    assert Compression(trigger_tokens=100).bounds(10) == (100, 50)
    assert Compression(5, 1).bounds(0) == (5, 1)


async def test_context_limit_without_compression_closes_1007(start: Starter) -> None:
    emulator, port = await start(context_limit_tokens=5)
    async with session(port) as ws:
        await send(ws, user_turn("a b c"))
        assert (await recv_turn(ws))[-1]["usageMetadata"]["promptTokenCount"] == 3
        await send(ws, user_turn("d e f"))
        await expect_close(ws, 1007, "The input token count exceeds the maximum number of tokens allowed.")
    assert emulator.compressions == 0


async def test_sliding_window_drops_the_oldest_entries(start: Starter) -> None:
    emulator, port = await start()
    compression = {"triggerTokens": "6", "slidingWindow": {"targetTokens": 3}}  # int64 as a string is fine
    setup = {"setup": {**TEXT_SETUP["setup"], "contextWindowCompression": compression}}
    async with session(port, setup=setup) as ws:
        prompts = []
        for text in ("a b c", "d e f", "g h"):
            await send(ws, user_turn(text))
            prompts.append((await recv_turn(ws))[-1]["usageMetadata"]["promptTokenCount"])
    assert prompts == [3, 6, 2]  # 8 > 6: "a b c", its reply and "d e f" went (5, 5, then 2 <= 3)
    history = emulator.sessions_history("emu-1")
    assert history[0] == {"role": "model", "parts": [{"text": "Echo: d e f"}]}
    assert user_texts(history) == ["g h"]
    assert emulator.compressions == 1


async def test_compression_defaults_to_the_limit_and_avoids_the_close(start: Starter) -> None:
    emulator, port = await start(context_limit_tokens=10)
    setup = {"setup": {**TEXT_SETUP["setup"], "contextWindowCompression": {}}}  # trigger 8, target 4
    async with session(port, setup=setup) as ws:
        prompts = []
        for text in ("a b c", "d e f", "g h i", "j k l m"):
            await send(ws, user_turn(text))
            prompts.append((await recv_turn(ws))[-1]["usageMetadata"]["promptTokenCount"])
    assert prompts == [3, 6, 3, 7]
    assert emulator.compressions == 1


# -- contextUpdate -----------------------------------------------------------------------------


@pytest.mark.parametrize("tools", [TOOLS, {"tools": TOOLS}])
async def test_context_update_replaces_instruction_and_tools(start: Starter, tools: Any) -> None:
    emulator, port = await start()
    instruction = {"parts": [{"text": "Now formal."}]}
    update = {"contextUpdate": {"systemInstruction": instruction, "tools": tools}}
    async with session(port, STUDIO, STUDIO_38) as ws:
        await send(ws, user_turn("get_time"))
        assert transcript(await recv_turn(ws, vertex=False)) == "Echo: get_time"  # not declared yet
        await send(ws, update)
        await send(ws, user_turn("get_time now"))
        call = await recv(ws, vertex=False)
    assert call["toolCall"]["functionCalls"][0]["name"] == "get_time"
    config = emulator.session("emu-1").config
    assert config is not None and config.system_instruction == instruction
    assert update in emulator.received


async def test_context_update_on_other_models_is_unknown(start: Starter) -> None:
    emulator, port = await start()
    async with session(port) as ws:  # gemini-live-2.5-flash
        await send(ws, {"contextUpdate": {"systemInstruction": {"parts": [{"text": "x"}]}}})
        await expect_close(ws, 1007, 'Invalid JSON payload received. Unknown name "contextUpdate": Cannot find field.')
    assert "contextUpdate" in emulator.received[-1]


# -- faults ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("marker", "code", "reason"),
    [
        ("mid-1007", 1007, "Request contains an invalid argument."),
        ("mid-1008", 1008, "Requested entity was not found."),
    ],
)
async def test_mid_stream_closes(start: Starter, marker: str, code: int, reason: str) -> None:
    _, port = await start(chunk_words=1)
    async with session(port) as ws:
        await send(ws, user_turn(f"[fault:{marker}] a b c"))
        first = await recv(ws)
        assert first["serverContent"]["modelTurn"]["parts"][0]["text"] == "Echo: "
        await expect_close(ws, code, reason)


@pytest.mark.parametrize("transport", ["trio-websocket", "websockets"])
async def test_mid_stream_1006_drops_the_connection(start: Starter, transport: str) -> None:
    emulator, port = await start(chunk_words=1, transport=transport)
    async with session(port) as ws:
        await send(ws, user_turn("[fault:mid-1006] a b c"))
        first = await recv(ws)
        assert first["serverContent"]["modelTurn"]["parts"][0]["text"] == "Echo: "
        with trio.fail_after(5), pytest.raises(ConnectionClosed) as info:
            while True:
                await ws.get_message()
    assert info.value.reason.code == 1006  # no close frame came
    await wait_live(emulator, 0)


@pytest.mark.parametrize(("marker", "code", "reason"), [("close-1000", 1000, ""), ("close-1001", 1001, "going away")])
async def test_normal_close_faults(start: Starter, marker: str, code: int, reason: str) -> None:
    _, port = await start()
    async with session(port) as ws:
        await send(ws, user_turn(f"[fault:{marker}]"))
        with trio.fail_after(5), pytest.raises(ConnectionClosed) as info:
            while True:
                await ws.get_message()
    assert (info.value.reason.code, info.value.reason.reason or "") == (code, reason)


@pytest.mark.parametrize("transport", ["trio-websocket", "websockets"])
async def test_handshake_faults(start: Starter, transport: str) -> None:
    emulator, port = await start(transport=transport)
    statuses = {401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED",
                500: "INTERNAL", 503: "UNAVAILABLE"}  # fmt: skip
    emulator.handshake_faults.extend([*statuses, 0])
    for status, name in statuses.items():
        with pytest.raises(ConnectionRejected) as info:
            async with open_websocket_url(f"ws://127.0.0.1:{port}{VERTEX}"):
                pass
        assert info.value.status_code == status
        error = orjson.loads(info.value.body)["error"]
        assert (error["code"], error["status"]) == (status, name) and error["message"]
    # A dead handshake: TCP accepted, then closed without a byte of answer. (Raw TCP, since
    # trio-websocket's client waits forever on such a server.)
    assert await raw_upgrade(port) == b""
    assert not emulator.handshake_faults
    async with session(port):  # the queue is empty: connections are accepted again
        pass
    assert emulator.connections == 1


@pytest.mark.parametrize("transport", ["trio-websocket", "websockets"])
async def test_stalled_handshake_is_never_answered(start: Starter, transport: str) -> None:
    """handshake_faults -1: the upgrade request is read and left unanswered, its TCP connection open."""
    emulator, port = await start(transport=transport)
    emulator.handshake_faults.append(STALLED_HANDSHAKE)
    request = (
        f"GET {VERTEX} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request.encode())
        # Nothing comes back and nothing closes, however long a client would wait (1 s stands for that).
        with trio.move_on_after(1) as waited:
            await stream.receive_some()
        assert waited.cancelled_caught
        assert not emulator.handshake_faults  # this request took the fault
    async with session(port):  # the queue is empty: the next upgrade is accepted
        pass
    assert emulator.connections == 1
