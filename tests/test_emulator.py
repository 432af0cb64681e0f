"""Tests of the Gemini Live emulator: the real google-genai SDK as a client, then raw WebSockets."""

from __future__ import annotations

import asyncio
import base64
import math
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import orjson
import pytest
import trio
from google import genai
from google.genai import _live_converters as live_converters
from google.genai import types
from google.oauth2.credentials import Credentials
from hypothesis import given
from hypothesis import strategies as st
from trio_websocket import ConnectionClosed, ConnectionRejected, WebSocketConnection, open_websocket_url

from relay.emulator import Emulator, EmulatorOptions, run_emulator
from relay.emulator.wire import audio_reply_frames, cap_words, chunk_text, count_words, tone_pcm
from tests.tls import localhost_contexts

VERTEX = "/ws/google.cloud.aiplatform.v1beta1.LlmBidiService/BidiGenerateContent"
STUDIO = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
VERTEX_MODEL = "projects/p/locations/us-central1/publishers/google/models/gemini-live-2.5-flash"
TEXT_SETUP = {"setup": {"model": VERTEX_MODEL, "generationConfig": {"responseModalities": ["TEXT"]}}}
BYTES_PER_WORD = 60 * 24 * 2  # 60 ms of 24 kHz 16-bit mono

Starter = Callable[..., Awaitable[tuple[Emulator, int]]]


# -- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture
def start(nursery: trio.Nursery) -> Starter:
    """Start an emulator on an ephemeral port inside the test's nursery."""

    async def _start(ssl_context: ssl.SSLContext | None = None, **options: Any) -> tuple[Emulator, int]:
        emulator = Emulator(EmulatorOptions(**options))
        port = await nursery.start(partial(emulator.serve, "127.0.0.1", 0, ssl_context=ssl_context))
        return emulator, port

    return _start


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) TLS contexts for 127.0.0.1: the SDK always connects with wss://."""
    return localhost_contexts(tmp_path_factory.mktemp("tls"))


def validate(message: dict[str, Any], vertex: bool = True) -> types.LiveServerMessage:
    """Check a server message the way the SDK reads it, but strictly (unknown fields fail)."""
    known = {
        "setupComplete", "serverContent", "toolCall", "toolCallCancellation", "usageMetadata",
        "goAway", "sessionResumptionUpdate", "voiceActivityDetectionSignal", "voiceActivity",
    }  # fmt: skip
    assert set(message) <= known, message
    if vertex:
        converted = live_converters._LiveServerMessage_from_vertex(message)
    else:
        converted = live_converters._LiveServerMessage_from_mldev(message)
    return types.LiveServerMessage.model_validate(converted)


async def send(ws: WebSocketConnection, message: dict[str, Any], binary: bool = False) -> None:
    data = orjson.dumps(message)
    await ws.send_message(data if binary else data.decode())


async def recv(ws: WebSocketConnection, vertex: bool = True) -> dict[str, Any]:
    with trio.fail_after(5):
        message = orjson.loads(await ws.get_message())
    validate(message, vertex)
    return message


async def recv_turn(ws: WebSocketConnection, vertex: bool = True) -> list[dict[str, Any]]:
    """Messages up to and including the one carrying turnComplete."""
    messages = []
    while True:
        message = await recv(ws, vertex)
        messages.append(message)
        if message.get("serverContent", {}).get("turnComplete"):
            return messages


def reply_text(messages: list[dict[str, Any]]) -> str:
    """The text of a TEXT reply (a thinking model's thought parts are not the reply)."""
    return "".join(
        part.get("text", "")
        for m in messages
        for part in m.get("serverContent", {}).get("modelTurn", {}).get("parts", [])
        if not part.get("thought")
    )


def transcript(messages: list[dict[str, Any]]) -> str:
    """The output transcription of an AUDIO reply."""
    return "".join(m.get("serverContent", {}).get("outputTranscription", {}).get("text", "") for m in messages)


async def expect_close(ws: WebSocketConnection, code: int, reason: str) -> None:
    with trio.fail_after(5), pytest.raises(ConnectionClosed) as info:
        while True:
            await ws.get_message()
    assert info.value.reason is not None
    assert (info.value.reason.code, info.value.reason.reason) == (code, reason)


async def wait_live(emulator: Emulator, count: int) -> None:
    """Wait until exactly ``count`` connections are open on the emulator side."""
    with trio.fail_after(5):
        while emulator.live != count:
            await trio.sleep(0.01)


def user_turn(text: str) -> dict[str, Any]:
    return {"clientContent": {"turns": [{"role": "user", "parts": [{"text": text}]}], "turnComplete": True}}


@asynccontextmanager
async def session(
    port: int, path: str = VERTEX, setup: dict[str, Any] = TEXT_SETUP
) -> AsyncIterator[WebSocketConnection]:
    """A raw WebSocket that has completed setup."""
    async with open_websocket_url(f"ws://127.0.0.1:{port}{path}") as ws:
        await send(ws, setup)
        assert await recv(ws, path == VERTEX) == {"setupComplete": {}}
        yield ws


def run_sdk(coroutine_fn: Callable[[], Awaitable[Any]]) -> Awaitable[Any]:
    """Run an asyncio coroutine (the SDK) in a worker thread, with a deadline."""

    async def bounded() -> Any:
        return await asyncio.wait_for(coroutine_fn(), 20)

    return trio.to_thread.run_sync(asyncio.run, bounded())


async def sdk_turn(client: genai.Client, model: str, config: dict[str, Any], text: str) -> list[Any]:
    async with client.aio.live.connect(model=model, config=config) as session:
        turn = types.Content(role="user", parts=[types.Part(text=text)])
        await session.send_client_content(turns=turn, turn_complete=True)
        return [message async for message in session.receive()]


# -- the real google-genai SDK as client -------------------------------------------------------


def sdk_http_options(port: int, client_ctx: ssl.SSLContext) -> types.HttpOptions:
    # The SDK turns base_url into wss://HOST:PORT/ whatever the scheme; the trailing slash makes it
    # request "//ws/...", exactly like production.
    return types.HttpOptions(base_url=f"https://127.0.0.1:{port}/", async_client_args={"ssl": client_ctx})


def sdk_client(port: int, client_ctx: ssl.SSLContext, vertex: bool) -> genai.Client:
    """The google-genai client of the emulator on `port`, on the Vertex path or AI Studio's."""
    if vertex:
        return genai.Client(
            vertexai=True, project="p", location="us-central1", credentials=Credentials(token="t"),
            http_options=sdk_http_options(port, client_ctx),
        )  # fmt: skip
    return genai.Client(api_key="k", http_options=sdk_http_options(port, client_ctx))


async def test_sdk_vertex_text(start: Starter, tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    emulator, port = await start(ssl_context=tls[0], bearer_token="tok")
    client = genai.Client(
        vertexai=True,
        project="p",
        location="us-central1",
        credentials=Credentials(token="tok"),
        http_options=sdk_http_options(port, tls[1]),
    )
    config = {"response_modalities": ["TEXT"]}
    messages = await run_sdk(lambda: sdk_turn(client, "gemini-live-2.5-flash", config, "hello there my friend"))
    text = "".join(m.text or "" for m in messages if m.server_content and m.server_content.model_turn)
    assert text == "Echo: hello there my friend"
    last = messages[-1]
    assert last.server_content.turn_complete
    assert last.usage_metadata.response_token_count == 5
    assert last.usage_metadata.prompt_token_count == 4
    assert last.usage_metadata.total_token_count == 9
    assert any(m.server_content and m.server_content.generation_complete for m in messages)
    assert emulator.received[0]["setup"]["model"] == VERTEX_MODEL
    assert "client_content" in emulator.received[1]  # the SDK's own snake_case spelling


async def test_sdk_studio_text(start: Starter, tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    emulator, port = await start(ssl_context=tls[0], api_key="k", chunk_words=1)
    client = genai.Client(api_key="k", http_options=sdk_http_options(port, tls[1]))
    config = {"response_modalities": ["TEXT"], "system_instruction": "Be terse."}
    messages = await run_sdk(lambda: sdk_turn(client, "gemini-live-2.5-flash-preview", config, "one two"))
    chunks = [m.text for m in messages if m.server_content and m.server_content.model_turn]
    assert chunks == ["Echo: ", "one ", "two"]
    usage = messages[-1].usage_metadata
    assert (usage.prompt_token_count, usage.response_token_count) == (2, 3)
    assert usage.response_tokens_details[0].modality == types.MediaModality.TEXT
    assert emulator.received[0]["setup"]["model"] == "models/gemini-live-2.5-flash-preview"


@pytest.mark.parametrize("vertex", [True, False])
async def test_sdk_audio_with_transcription(
    start: Starter, tls: tuple[ssl.SSLContext, ssl.SSLContext], vertex: bool
) -> None:
    _, port = await start(ssl_context=tls[0], audio_chunk_ms=50)
    client = sdk_client(port, tls[1], vertex)
    config = {"response_modalities": ["AUDIO"], "output_audio_transcription": {}}
    messages = await run_sdk(lambda: sdk_turn(client, "gemini-live-2.5-flash", config, "say this please"))
    audio = b"".join(
        part.inline_data.data
        for m in messages
        if m.server_content and m.server_content.model_turn
        for part in m.server_content.model_turn.parts
    )
    assert len(audio) == 4 * BYTES_PER_WORD
    assert audio == tone_pcm(0, 4 * 60 * 24)
    expected = [round(8000 * math.sin(2 * math.pi * 440 * n / 24000)) for n in (0, 1, 2, 1439, 1440, 5759)]
    samples = struct.unpack(f"<{len(audio) // 2}h", audio)
    assert [samples[n] for n in (0, 1, 2, 1439, 1440, 5759)] == expected
    transcript = "".join(
        m.server_content.output_transcription.text
        for m in messages
        if m.server_content and m.server_content.output_transcription
    )
    assert transcript == "Echo: say this please"
    usage = messages[-1].usage_metadata
    assert usage.response_token_count == 4
    assert usage.response_tokens_details[0].modality == types.MediaModality.AUDIO


@pytest.mark.parametrize("vertex", [True, False])
async def test_sdk_realtime_audio_turn(
    start: Starter, tls: tuple[ssl.SSLContext, ssl.SSLContext], vertex: bool
) -> None:
    """The SDK's own realtime audio (snake_case, its VAD config spelling) makes a spoken turn."""
    emulator, port = await start(ssl_context=tls[0])
    client = sdk_client(port, tls[1], vertex)
    config = {
        "response_modalities": ["AUDIO"],
        "input_audio_transcription": {},
        "speech_config": {"voice_config": {"prebuilt_voice_config": {"voice_name": "Puck"}}},
        "realtime_input_config": {"automatic_activity_detection": {"silence_duration_ms": 300}},
    }
    rate = 16_000
    count = rate // 2  # 500 ms of a 1 kHz sine, then 400 ms of silence, in 20 ms chunks
    pcm = struct.pack(f"<{count}h", *(round(8000 * math.sin(2 * math.pi * 1000 * n / rate)) for n in range(count)))
    pcm += bytes(rate * 2 * 400 // 1000)

    async def speak() -> list[Any]:
        async with client.aio.live.connect(model="gemini-live-2.5-flash", config=config) as live:
            for offset in range(0, len(pcm), 640):
                await live.send_realtime_input(audio=types.Blob(data=pcm[offset : offset + 640], mime_type="audio/pcm"))
            return [message async for message in live.receive()]

    messages = await run_sdk(speak)
    heard = [m.server_content.input_transcription for m in messages if m.server_content.input_transcription]
    assert [(t.text, t.finished) for t in heard] == [("audio 500 ms", None), (None, True)]
    audio = b"".join(
        part.inline_data.data
        for m in messages
        if m.server_content.model_turn
        for part in m.server_content.model_turn.parts
    )
    assert audio == tone_pcm(0, 4 * 60 * 24, 520)  # "Echo: audio 500 ms" in Puck's tone
    usage = messages[-1].usage_metadata
    assert usage.prompt_token_count == 13
    assert usage.prompt_tokens_details[0].modality == types.MediaModality.AUDIO
    assert "realtime_input" in emulator.received[1]


# -- raw WebSocket: handshake ------------------------------------------------------------------


async def test_unknown_path_is_404(start: Starter) -> None:
    _, port = await start()
    with pytest.raises(ConnectionRejected) as info:
        async with open_websocket_url(f"ws://127.0.0.1:{port}/ws/nope"):
            pass
    assert info.value.status_code == 404
    assert info.value.body


@pytest.mark.parametrize(
    "path",
    [
        VERTEX,
        "/" + VERTEX,
        "/ws/google.cloud.aiplatform.v1.LlmBidiService/BidiGenerateContent",
        STUDIO + "?alt=json",
        "/ws/google.ai.generativelanguage.v1.GenerativeService.BidiGenerateContent",
        "/ws/google.ai.generativelanguage.v1alpha.GenerativeService.BidiGenerateContent",
    ],
)
async def test_known_paths_accepted(start: Starter, path: str) -> None:
    emulator, port = await start()
    async with open_websocket_url(f"ws://127.0.0.1:{port}{path}") as ws:
        await send(ws, TEXT_SETUP)
        assert await recv(ws) == {"setupComplete": {}}
    assert emulator.connections == 1


@pytest.mark.parametrize("headers", [[], [("Authorization", "Bearer wrong")], [("x-goog-api-key", "tok")]])
async def test_bearer_required_on_vertex(start: Starter, headers: list[tuple[str, str]]) -> None:
    emulator, port = await start(bearer_token="tok")
    with pytest.raises(ConnectionRejected) as info:
        async with open_websocket_url(f"ws://127.0.0.1:{port}{VERTEX}", extra_headers=headers):
            pass
    assert info.value.status_code == 401
    assert emulator.connections == 0
    async with open_websocket_url(f"ws://127.0.0.1:{port}{VERTEX}", extra_headers=[("Authorization", "Bearer tok")]):
        pass
    assert emulator.connections == 1


async def test_api_key_required_on_studio(start: Starter) -> None:
    emulator, port = await start(api_key="k")
    for suffix, headers in [("", []), ("?key=bad", []), ("", [("x-goog-api-key", "bad")])]:
        with pytest.raises(ConnectionRejected) as info:
            async with open_websocket_url(f"ws://127.0.0.1:{port}{STUDIO}{suffix}", extra_headers=headers):
                pass
        assert info.value.status_code == 401
    async with open_websocket_url(f"ws://127.0.0.1:{port}{STUDIO}?key=k"):
        pass
    async with open_websocket_url(f"ws://127.0.0.1:{port}{STUDIO}", extra_headers=[("x-goog-api-key", "k")]):
        pass
    assert emulator.connections == 2


# -- raw WebSocket: protocol errors ------------------------------------------------------------


@pytest.mark.parametrize(
    ("frames", "reason"),
    [
        ([TEXT_SETUP, TEXT_SETUP], "Request contains an invalid argument."),
        ([user_turn("hi")], "Request contains an invalid argument."),
        (["{not json"], "Invalid JSON payload received."),
        ([TEXT_SETUP, "[1, 2]"], "Invalid JSON payload received."),
        ([{"setup": {"generationConfig": {}}}], "Request contains an invalid argument."),
        ([{"setup": {"model": "m", "generationConfig": {"responseModalities": ["TEXT", "AUDIO"]}}}],
         "Request contains an invalid argument."),
        ([TEXT_SETUP, {"clientContent": {}, "toolResponse": {}}], "Request contains an invalid argument."),
        ([TEXT_SETUP, {"clientContent": {"turns": [{"role": "system", "parts": []}]}}],
         "Request contains an invalid argument."),
        ([TEXT_SETUP, {"bogus": {}}], 'Invalid JSON payload received. Unknown name "bogus": Cannot find field.'),
    ],
)  # fmt: skip
async def test_protocol_errors_close_1007(start: Starter, frames: list[Any], reason: str) -> None:
    _, port = await start()
    async with open_websocket_url(f"ws://127.0.0.1:{port}{VERTEX}") as ws:
        for frame in frames:
            await ws.send_message(frame if isinstance(frame, str) else orjson.dumps(frame).decode())
        await expect_close(ws, 1007, reason)


# -- raw WebSocket: replies --------------------------------------------------------------------


async def test_text_reply_stream_shape(start: Starter) -> None:
    emulator, port = await start(chunk_words=2)
    async with session(port) as ws:
        await send(ws, user_turn("a b c d"))
        messages = await recv_turn(ws)
    assert [m["serverContent"]["modelTurn"]["parts"][0]["text"] for m in messages[:3]] == ["Echo: a ", "b c ", "d"]
    assert messages[0]["serverContent"]["modelTurn"]["role"] == "model"
    assert messages[3] == {"serverContent": {"generationComplete": True}}
    assert messages[4] == {
        "serverContent": {"turnComplete": True},
        "usageMetadata": {
            "promptTokenCount": 4,
            "candidatesTokenCount": 5,
            "totalTokenCount": 9,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 4}],
            "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": 5}],
        },
    }
    assert len(messages) == 5
    assert emulator.received == [TEXT_SETUP, user_turn("a b c d")]


async def test_studio_usage_spelling_and_history(start: Starter) -> None:
    _, port = await start()
    setup = {"setup": {"model": "models/m", "generationConfig": {"responseModalities": ["TEXT"]}}}
    async with session(port, STUDIO, setup) as ws:
        await send(ws, {"clientContent": {"turns": [{"role": "user", "parts": [{"text": "first turn"}]}]}})
        await send(ws, user_turn("second"))
        messages = await recv_turn(ws, vertex=False)
    assert reply_text(messages) == "Echo: second"
    usage = messages[-1]["usageMetadata"]
    assert usage["promptTokenCount"] == 3 and usage["responseTokenCount"] == 2
    assert usage["responseTokensDetails"] == [{"modality": "TEXT", "tokenCount": 2}]
    assert "candidatesTokenCount" not in usage


async def test_snake_case_input_and_binary_client_frames(start: Starter) -> None:
    emulator, port = await start()
    # activity_start is only legal with automatic detection disabled, spelled snake_case here too.
    setup = {"setup": {"model": VERTEX_MODEL, "generation_config": {"response_modalities": ["TEXT"]},
                       "realtime_input_config": {"automatic_activity_detection": {"disabled": True}}}}  # fmt: skip
    async with session(port, setup=setup) as ws:
        await send(ws, {"realtime_input": {"audio": {"data": "AAAA", "mime_type": "audio/pcm;rate=16000"}}})
        await send(ws, {"realtime_input": {"activity_start": {}}}, binary=True)
        await send(ws, {"tool_response": {"function_responses": [{"name": "f", "response": {"a_b": 1}}]}})
        await send(ws, {"client_content": {"turns": [{"role": "user", "parts": [{"text": "snake"}]}],
                                           "turn_complete": True}}, binary=True)  # fmt: skip
        messages = await recv_turn(ws)
    assert reply_text(messages) == "Echo: snake"
    assert len(emulator.received) == 5
    assert emulator.received[3]["tool_response"]["function_responses"][0]["response"] == {"a_b": 1}


async def test_realtime_text_and_media_do_not_close(start: Starter) -> None:
    # Quiet audio, video and (on AI Studio, with nothing spoken) audioStreamEnd produce nothing
    # (the next reply acknowledges the video frame, test_emulator_models.py); activity signals are
    # covered in test_emulator_audio.py since they need detection disabled.
    emulator, port = await start()
    setup = {"setup": {"model": "models/m", "generationConfig": {"responseModalities": ["TEXT"]}}}
    async with session(port, STUDIO, setup) as ws:
        for body in [
            {"audio": {"data": "AAAA", "mimeType": "audio/pcm;rate=16000"}},
            {"mediaChunks": [{"data": "AAAA", "mimeType": "audio/pcm;rate=16000"}]},
            {"video": {"data": "AAAA", "mimeType": "image/jpeg"}},
            {"audioStreamEnd": True},
        ]:
            await send(ws, {"realtimeInput": body})
        await send(ws, {"toolResponse": {"functionResponses": [{"id": "1", "name": "f", "response": {}}]}})
        await send(ws, {"realtimeInput": {"text": "typed"}})
        messages = await recv_turn(ws, vertex=False)
    assert reply_text(messages) == "Echo: typed [image image/jpeg 3 bytes]"
    assert len(emulator.received) == 7


async def test_max_output_tokens_caps_reply(start: Starter) -> None:
    _, port = await start()
    setup = {"setup": {"model": "m", "generationConfig": {"responseModalities": ["TEXT"], "maxOutputTokens": 3}}}
    async with session(port, setup=setup) as ws:
        await send(ws, user_turn("one two three four"))
        messages = await recv_turn(ws)
    assert reply_text(messages) == "Echo: one two"
    assert messages[-1]["usageMetadata"]["candidatesTokenCount"] == 3


async def test_audio_default_modality_without_transcription(start: Starter) -> None:
    _, port = await start(audio_chunk_ms=100)
    async with session(port, setup={"setup": {"model": "m"}}) as ws:
        await send(ws, user_turn("x y z"))  # 4 words -> 240 ms -> chunks of 100, 100, 40 ms
        messages = await recv_turn(ws)
    chunks = [
        base64.b64decode(m["serverContent"]["modelTurn"]["parts"][0]["inlineData"]["data"])
        for m in messages
        if "modelTurn" in m.get("serverContent", {})
    ]
    assert [len(c) for c in chunks] == [4800, 4800, 1920]
    assert b"".join(chunks) == tone_pcm(0, 4 * 1440)
    assert not any("outputTranscription" in m.get("serverContent", {}) for m in messages)
    assert messages[-1]["usageMetadata"]["candidatesTokensDetails"][0]["modality"] == "AUDIO"


async def test_session_resumption(start: Starter) -> None:
    emulator, port = await start()
    setup = {"setup": {**TEXT_SETUP["setup"], "sessionResumption": {}}}
    async with session(port, setup=setup) as ws:
        assert await recv(ws) == {"sessionResumptionUpdate": {"newHandle": "emu-1-c1-h1", "resumable": True}}
        await send(ws, user_turn("remember me"))
        await recv_turn(ws)
        first = await recv(ws)
        await send(ws, user_turn("again"))
        await recv_turn(ws)
        second = await recv(ws)
    assert first == {"sessionResumptionUpdate": {"newHandle": "emu-1-c1-h2", "resumable": True}}
    assert second["sessionResumptionUpdate"]["newHandle"] == "emu-1-c1-h3"
    await wait_live(emulator, 0)  # a resume while the old socket is open would be refused
    resumed = {"setup": {**TEXT_SETUP["setup"], "sessionResumption": {"handle": "emu-1-c1-h3"}}}
    async with session(port, setup=resumed) as ws:
        assert (await recv(ws))["sessionResumptionUpdate"]["newHandle"] == "emu-1-c2-h4"
        await send(ws, user_turn("more"))
        messages = await recv_turn(ws)
        assert (await recv(ws))["sessionResumptionUpdate"]["newHandle"] == "emu-1-c2-h5"
    assert messages[-1]["usageMetadata"]["promptTokenCount"] == 4  # history came back
    for stale in ("emu-1-c1-h1", "emu-1-c2-h4", "nope"):
        async with open_websocket_url(f"ws://127.0.0.1:{port}{VERTEX}") as ws:
            await send(ws, {"setup": {"model": "m", "sessionResumption": {"handle": stale}}})
            await expect_close(ws, 1008, "BidiGenerateContent session not found.")
    assert emulator.connections == 5


# -- raw WebSocket: faults ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("marker", "code", "reason"),
    [
        ("close-1011", 1011, "Internal error occurred."),
        ("close-1007", 1007, "Request contains an invalid argument."),
        ("close-1008", 1008, "Requested entity was not found."),
    ],
)
async def test_close_faults(start: Starter, marker: str, code: int, reason: str) -> None:
    _, port = await start()
    async with session(port) as ws:
        await send(ws, user_turn(f"please [fault:{marker}] now"))
        await expect_close(ws, code, reason)


async def test_mid_stream_1011(start: Starter) -> None:
    _, port = await start(chunk_words=1)
    async with session(port) as ws:
        await send(ws, user_turn("[fault:mid-1011] a b c"))
        first = await recv(ws)
        assert first["serverContent"]["modelTurn"]["parts"][0]["text"] == "Echo: "
        await expect_close(ws, 1011, "Internal error occurred.")


async def test_binary_fault_sends_binary_frames(start: Starter) -> None:
    _, port = await start()
    async with session(port) as ws:
        await send(ws, user_turn("[fault:binary] bin"))
        raw = []
        while not raw or b"turnComplete" not in raw[-1]:
            with trio.fail_after(5):
                raw.append(await ws.get_message())
        await send(ws, user_turn("plain"))
        after = await ws.get_message()
    assert all(isinstance(frame, bytes) for frame in raw)
    messages = [orjson.loads(frame) for frame in raw]
    for message in messages:
        validate(message)
    assert reply_text(messages) == "Echo: [fault:binary] bin"
    assert isinstance(after, str)


async def test_goaway_fault(start: Starter) -> None:
    _, port = await start()
    async with session(port) as ws:
        await send(ws, user_turn("bye [fault:goaway]"))
        messages = await recv_turn(ws)
    assert messages[0] == {"goAway": {"timeLeft": "50s"}}
    assert validate(messages[0]).go_away.time_left == "50s"
    assert reply_text(messages) == "Echo: bye [fault:goaway]"


@pytest.mark.parametrize("new_turn", [user_turn("next"), {"realtimeInput": {"text": "next"}}])
async def test_slow_reply_is_interrupted_by_new_turn(start: Starter, new_turn: dict[str, Any]) -> None:
    emulator, port = await start(chunk_words=1)
    async with session(port) as ws:
        await send(ws, user_turn("[fault:slow] a b c d e f"))
        first = await recv(ws)
        assert first["serverContent"]["modelTurn"]["parts"][0]["text"] == "Echo: "
        start_time = trio.current_time()
        await send(ws, new_turn)
        assert await recv(ws) == {"serverContent": {"interrupted": True}}
        messages = await recv_turn(ws)
        assert trio.current_time() - start_time < 0.4  # the new reply is not paced
    assert reply_text(messages) == "Echo: next"
    assert messages[-2] == {"serverContent": {"generationComplete": True}}
    assert messages[-1]["usageMetadata"]["promptTokenCount"] == 8  # both user turns are history
    assert emulator.received[-1] == new_turn


async def test_chunk_delay_paces_and_completed_reply_is_not_interrupted(start: Starter) -> None:
    _, port = await start(chunk_delay=0.05, chunk_words=1)
    async with session(port) as ws:
        before = trio.current_time()
        await send(ws, user_turn("a b"))
        await recv_turn(ws)
        assert trio.current_time() - before >= 0.1  # three chunks, two gaps
        await send(ws, user_turn("c"))
        first = await recv(ws)
    assert "interrupted" not in first["serverContent"]


# -- misc --------------------------------------------------------------------------------------


async def test_run_emulator_announces_address(capsys: pytest.CaptureFixture[str]) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_emulator, "127.0.0.1", 0)
        with trio.fail_after(5):
            while "listening" not in (out := capsys.readouterr().out):
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert out.startswith("Gemini Live emulator listening on ws://127.0.0.1:")
    assert int(out.strip().rsplit(":", 1)[1]) > 0


@given(st.text(alphabet=st.sampled_from("ab \n\t"), max_size=40), st.integers(1, 5))
def test_chunks_reassemble(text: str, size: int) -> None:
    if text.strip():
        assert "".join(chunk_text(text, size)) == text
    assert count_words(cap_words(text, size)) == min(size, count_words(text))


@given(st.integers(1, 30), st.integers(1, 4), st.integers(1, 200), st.booleans())
def test_audio_frames_cover_reply(words: int, per_chunk: int, chunk_ms: int, transcribe: bool) -> None:
    text = " ".join(f"w{i}" for i in range(words))
    frames = list(audio_reply_frames(text, per_chunk, chunk_ms, transcribe))
    audio = b"".join(
        base64.b64decode(m["serverContent"]["modelTurn"]["parts"][0]["inlineData"]["data"])
        for m, _ in frames
        if "modelTurn" in m["serverContent"]
    )
    assert audio == tone_pcm(0, words * 1440)
    assert "".join(covered for _, covered in frames) == text
