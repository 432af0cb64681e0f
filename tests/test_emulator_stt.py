"""Tests of the emulator's listening models (relay/emulator/models.py ``kind``): gemini-3.5-transcribe-live,
which answers each spoken turn with its transcript as text, and gemini-3.5-live-translate-preview, which
answers it with translated speech.

Raw trio_websocket clients over real sockets, 16 kHz PCM in as their clients send it; every server
message is validated as a google.genai LiveServerMessage by ``recv`` from test_emulator, and one test
drives the real SDK (whose ``translation_config`` is what the translation model is set up with).
"""

from __future__ import annotations

import base64
import ssl
from typing import Any

import pytest
import trio
from google.genai import types
from trio_websocket import WebSocketConnection, open_websocket_url

from relay.emulator.models import (
    AUDIO_INPUT_ONLY,
    AUTOMATIC_DETECTION_ONLY,
    NO_SYSTEM_INSTRUCTION,
    NO_TOOLS,
    TRANSCRIPTION_TEXT_ONLY,
    TRANSLATION_AUDIO_ONLY,
)
from relay.emulator.wire import tone_pcm
from tests import test_emulator
from tests.test_emulator import (
    STUDIO,
    VERTEX,
    Starter,
    expect_close,
    recv,
    recv_turn,
    reply_text,
    run_sdk,
    sdk_client,
    send,
    session,
    transcript,
    user_turn,
)
from tests.test_emulator_audio import audio_of, content, input_pieces, nothing_within, send_audio, silence, sine

# test_emulator's fixtures: an emulator on an ephemeral port, and TLS contexts for the SDK.
start = test_emulator.start
tls = test_emulator.tls

INVALID = "Request contains an invalid argument."
TRANSCRIBE = {STUDIO: "gemini-3.5-transcribe-live", VERTEX: "gemini-3.5-transcribe-live-preview"}
TRANSLATE = "gemini-3.5-live-translate-preview"
RATE = 16_000  # what their clients send
MIME = f"audio/pcm;rate={RATE}"
SPANISH = {"targetLanguageCode": "es"}
TOOLS = [{"functionDeclarations": [{"name": "get_time", "parameters": {"type": "OBJECT"}}]}]
INSTRUCTION = {"parts": [{"text": "Be terse."}]}
BYTES_PER_MS = 24 * 2  # 24 kHz 16-bit mono out


def setup_of(
    model: str, path: str, modality: str | None, generation: dict[str, Any] | None = None, **fields: Any
) -> dict[str, Any]:
    """A setup for ``model`` spelled the way ``path``'s backend names models (no modality: the default)."""
    name = f"projects/p/locations/us-central1/publishers/google/models/{model}" if path == VERTEX else f"models/{model}"
    gen = {**({"responseModalities": [modality]} if modality else {}), **(generation or {})}
    return {"setup": {"model": name, "generationConfig": gen, **fields}}


def transcribe_setup(path: str, **fields: Any) -> dict[str, Any]:
    return setup_of(TRANSCRIBE[path], path, "TEXT", **fields)


def translate_setup(path: str, translation: dict[str, Any] | None = SPANISH, **fields: Any) -> dict[str, Any]:
    return setup_of(TRANSLATE, path, "AUDIO", {"translationConfig": translation} if translation else None, **fields)


async def speak(ws: WebSocketConnection, ms: int, pause_ms: int = 600) -> None:
    """``ms`` of a loud tone, then enough silence for automatic detection to end the turn."""
    await send_audio(ws, sine(ms, RATE) + silence(pause_ms, RATE), RATE, mime=MIME)


async def drain(ws: WebSocketConnection, vertex: bool, seconds: float = 0.3) -> list[dict[str, Any]]:
    """Every message until nothing has come for ``seconds``."""
    messages = []
    while True:
        with trio.move_on_after(seconds) as waited:
            message = await recv(ws, vertex)
        if waited.cancelled_caught:
            return messages
        messages.append(message)


def kinds(messages: list[dict[str, Any]]) -> list[str]:
    """What each message is: its serverContent field (one per message here) or its own key."""
    return [next(iter(content(m))) if "serverContent" in m else next(iter(m)) for m in messages]


def usage(path: str, prompt: int, said: int, modality: str) -> dict[str, Any]:
    """The usageMetadata of a turn of ``prompt`` audio tokens answered with ``said`` tokens."""
    out = "candidates" if path == VERTEX else "response"
    return {
        "promptTokenCount": prompt,
        f"{out}TokenCount": said,
        "totalTokenCount": prompt + said,
        "promptTokensDetails": [{"modality": "AUDIO", "tokenCount": prompt}],
        f"{out}TokensDetails": [{"modality": modality, "tokenCount": said}],
    }


def handle_of(message: dict[str, Any]) -> str:
    update = message["sessionResumptionUpdate"]
    assert update["resumable"] is True
    return update["newHandle"]


async def refused(port: int, setup: dict[str, Any], path: str, reason: str) -> None:
    async with open_websocket_url(f"ws://127.0.0.1:{port}{path}") as ws:
        await send(ws, setup)
        await expect_close(ws, 1007, reason)


# -- transcription -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", [STUDIO, VERTEX])
async def test_transcribe_answers_each_spoken_turn_in_order(start: Starter, path: str) -> None:
    # Paced, so the second turn ends while the first answer still streams: it waits, nothing is cut.
    _, port = await start(chunk_words=1, chunk_delay=0.1)
    vertex = path == VERTEX
    # Everything a client may set up is accepted; what means nothing to a transcriber is ignored.
    setup = transcribe_setup(
        path,
        systemInstruction=INSTRUCTION,
        inputAudioTranscription={},
        outputAudioTranscription={},
        contextWindowCompression={"triggerTokens": 5},
        realtimeInputConfig={"automaticActivityDetection": {"silenceDurationMs": 300}},
        sessionResumption={},
    )
    setup["setup"]["generationConfig"]["speechConfig"] = {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": "Puck"}}}
    async with session(port, path, setup) as ws:
        first_handle = handle_of(await recv(ws, vertex))
        await speak(ws, 500, pause_ms=300)
        await speak(ws, 300, pause_ms=300)
        first = await recv_turn(ws, vertex)
        handle = handle_of(await recv(ws, vertex))
        second = await recv_turn(ws, vertex)
        assert handle_of(await recv(ws, vertex)) not in (first_handle, handle)
        await nothing_within(ws, 0.2)
    for messages, ms, tokens in ((first, 500, 13), (second, 300, 8)):
        assert [content(m)["modelTurn"]["parts"] for m in messages[:-1]] == [
            [{"text": "audio "}], [{"text": f"{ms} "}], [{"text": "ms"}],
        ]  # fmt: skip
        assert reply_text(messages) == f"audio {ms} ms"
        ending = {"serverContent": {"turnComplete": True}, "usageMetadata": usage(path, tokens, 3, "TEXT")}
        assert messages[-1] == ending
    assert audio_of(first + second) == b""
    assert set(kinds(first + second)) == {"modelTurn", "turnComplete"}  # no transcriptions, never interrupted


async def test_transcribe_manual_activity(start: Starter) -> None:
    _, port = await start(chunk_words=1, chunk_delay=0.05)
    setup = transcribe_setup(STUDIO, realtimeInputConfig={"automaticActivityDetection": {"disabled": True}})
    async with session(port, STUDIO, setup) as ws:
        await send_audio(ws, sine(300, RATE), RATE, mime=MIME)  # outside an activity: not heard
        await send(ws, {"realtimeInput": {"activityStart": {}}})
        await send_audio(ws, silence(200, RATE) + sine(400, RATE), RATE, mime=MIME)
        await nothing_within(ws, 0.2)  # the turn ends at activityEnd, whatever the silence
        await send(ws, {"realtimeInput": {"activityEnd": {}}})
        # Speaking again while the first answer streams interrupts nothing: it is answered next.
        await send(ws, {"realtimeInput": {"activityStart": {}}})
        await send_audio(ws, silence(100, RATE), RATE, mime=MIME)  # quiet, yet said inside an activity
        await send(ws, {"realtimeInput": {"activityEnd": {}}})
        first = await recv_turn(ws, vertex=False)
        second = await recv_turn(ws, vertex=False)
    assert "interrupted" not in kinds(first + second)
    assert reply_text(first) == "audio 600 ms"
    assert first[-1]["usageMetadata"] == usage(STUDIO, 15, 3, "TEXT")
    assert reply_text(second) == "audio 100 ms"
    assert second[-1]["usageMetadata"] == usage(STUDIO, 3, 3, "TEXT")


async def test_transcribe_says_the_configured_transcript_and_ignores_the_context_limit(start: Starter) -> None:
    # A 500 ms turn is 13 prompt tokens, over the limit: each turn stands alone, so it does not matter.
    _, port = await start(audio_transcript="what time is it in Paris", chunk_words=2, context_limit_tokens=10)
    async with session(port, VERTEX, transcribe_setup(VERTEX)) as ws:
        await speak(ws, 500)
        messages = await recv_turn(ws)
        await speak(ws, 500)
        again = await recv_turn(ws)
    assert [content(m)["modelTurn"]["parts"][0]["text"] for m in messages[:-1]] == [
        "what time ", "is it ", "in Paris",
    ]  # fmt: skip
    assert messages[-1]["usageMetadata"] == usage(VERTEX, 13, 6, "TEXT")
    assert again[-1]["usageMetadata"] == usage(VERTEX, 13, 6, "TEXT")  # the prompt never grows


@pytest.mark.parametrize("path", [STUDIO, VERTEX])
@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"modality": "AUDIO"}, TRANSCRIPTION_TEXT_ONLY[1]),
        ({"modality": None}, TRANSCRIPTION_TEXT_ONLY[1]),  # no modality is AUDIO
        ({"tools": TOOLS}, NO_TOOLS[1]),
    ],
)
async def test_transcribe_setup_refusals(start: Starter, path: str, fields: dict[str, Any], reason: str) -> None:
    _, port = await start()
    fields = {"modality": "TEXT", **fields}
    await refused(port, setup_of(TRANSCRIBE[path], path, **fields), path, reason)
    assert len(reason.encode()) <= 123  # it fits a close frame


@pytest.mark.parametrize(
    "message",
    [
        user_turn("hello"),
        {"clientContent": {"turnComplete": True}},
        {"realtimeInput": {"text": "hello"}},
        {"realtimeInput": {"video": {"mimeType": "image/jpeg", "data": base64.b64encode(b"\xff\xd8").decode()}}},
        {"toolResponse": {"functionResponses": [{"name": "get_time", "response": {}}]}},
    ],
)
async def test_transcribe_hears_only_audio(start: Starter, message: dict[str, Any]) -> None:
    _, port = await start()
    async with session(port, STUDIO, transcribe_setup(STUDIO, tools=[])) as ws:  # no tools is fine
        await send(ws, message)
        await expect_close(ws, *AUDIO_INPUT_ONLY)


# -- translation -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [STUDIO, VERTEX])
@pytest.mark.parametrize("heard", [True, False])
async def test_translate_speaks_each_turn(start: Starter, path: str, heard: bool) -> None:
    _, port = await start(chunk_words=2, audio_chunk_ms=50)
    vertex = path == VERTEX
    translation = {"targetLanguageCode": "es", "echoTargetLanguage": True}
    setup = translate_setup(path, translation, sessionResumption={})
    if heard:
        setup["setup"]["inputAudioTranscription"] = {}
    async with session(port, path, setup) as ws:
        handle_of(await recv(ws, vertex))
        await speak(ws, 500)
        first = await recv_turn(ws, vertex)
        handle_of(await recv(ws, vertex))
        await speak(ws, 1000)  # the stream goes on: so do the turns
        second = await recv_turn(ws, vertex)
        handle_of(await recv(ws, vertex))
    source = ["inputTranscription"] * 3 if heard else []
    # "[es] audio 500 ms" is 4 words, 240 ms: five 50 ms chunks; "500 ms" starts at 120 ms, in the third.
    said, audio = "outputTranscription", "modelTurn"
    assert kinds(first) == [*source, said, audio, audio, said, audio, audio, audio, "turnComplete"]
    assert input_pieces(first) == ([{"text": "audio 500 "}, {"text": "ms"}, {"finished": True}] if heard else [])
    assert transcript(first) == "[es] audio 500 ms"
    assert audio_of(first) == tone_pcm(0, 240 * 24)
    mimes = {p["inlineData"]["mimeType"] for m in first for p in content(m).get("modelTurn", {}).get("parts", [])}
    assert mimes == {"audio/pcm;rate=24000"}
    assert first[-1] == {"serverContent": {"turnComplete": True}, "usageMetadata": usage(path, 13, 6, "AUDIO")}
    assert transcript(second) == "[es] audio 1000 ms"
    assert len(audio_of(second)) == 240 * BYTES_PER_MS
    assert second[-1]["usageMetadata"] == usage(path, 25, 6, "AUDIO")  # the prompt is the turn's audio only


async def test_translate_is_never_interrupted(start: Starter) -> None:
    # Realtime audio: the first answer plays 240 ms while the second turn is spoken into it.
    _, port = await start(audio_realtime=True, chunk_words=10, vad_silence_ms=100)
    async with session(port, STUDIO, translate_setup(STUDIO, {"targetLanguageCode": "pt-BR"})) as ws:
        await speak(ws, 200, pause_ms=100)
        head = await recv(ws, vertex=False)
        assert "outputTranscription" in content(head)
        await speak(ws, 300, pause_ms=100)  # ends long before the first answer has played out
        first = [head, *await recv_turn(ws, vertex=False)]
        second = await recv_turn(ws, vertex=False)
    assert transcript(first) == "[pt-BR] audio 200 ms"
    assert transcript(second) == "[pt-BR] audio 300 ms"
    assert "interrupted" not in kinds(first + second)
    assert len(audio_of(first)) == len(audio_of(second)) == 240 * BYTES_PER_MS


async def test_translate_without_translation_config_streams_silence(start: Starter) -> None:
    # LiteLLM PR #41408: all-zero PCM, and never a turnComplete.
    _, port = await start(audio_chunk_ms=100)
    setup = translate_setup(STUDIO, None, sessionResumption={}, inputAudioTranscription={})
    async with session(port, STUDIO, setup) as ws:
        handle_of(await recv(ws, vertex=False))
        await speak(ws, 500)
        first = await drain(ws, vertex=False)
        await speak(ws, 300)
        second = await drain(ws, vertex=False)
    # What it heard is still transcribed; then silence as long as the turn, in 100 ms chunks, and
    # nothing more: no outputTranscription, no turnComplete, no handle.
    assert kinds(first) == ["inputTranscription"] * 2 + ["modelTurn"] * 5
    assert kinds(second) == ["inputTranscription"] * 2 + ["modelTurn"] * 3
    assert input_pieces(second) == [{"text": "audio 300 ms"}, {"finished": True}]
    assert audio_of(first) == bytes(500 * BYTES_PER_MS)
    assert audio_of(second) == bytes(300 * BYTES_PER_MS)


@pytest.mark.parametrize("path", [STUDIO, VERTEX])
@pytest.mark.parametrize(
    "translation",
    [
        {"targetLanguageCode": "Spanish"},
        {"targetLanguageCode": "ES"},
        {"targetLanguageCode": "es_ES"},
        {"targetLanguageCode": "es-"},
        {"targetLanguageCode": "e"},
        {"targetLanguageCode": ""},
        {"targetLanguageCode": "es\n"},
        {"targetLanguageCode": 34},
        {"echoTargetLanguage": True},
        {"targetLanguageCode": "es", "echoTargetLanguage": "yes"},
        "es",
    ],
)
async def test_translate_refuses_a_bad_language_code(start: Starter, path: str, translation: Any) -> None:
    _, port = await start()
    await refused(port, setup_of(TRANSLATE, path, "AUDIO", {"translationConfig": translation}), path, INVALID)


@pytest.mark.parametrize("code", ["es", "yue", "pt-BR", "zh-Hans-CN", "sr-Latn"])
async def test_translate_takes_bcp47_codes(start: Starter, code: str) -> None:
    _, port = await start()
    async with session(port, VERTEX, translate_setup(VERTEX, {"target_language_code": code})) as ws:
        await speak(ws, 200)
        assert transcript(await recv_turn(ws)) == f"[{code}] audio 200 ms"


@pytest.mark.parametrize("path", [STUDIO, VERTEX])
@pytest.mark.parametrize(
    ("modality", "fields", "reason"),
    [
        ("TEXT", {}, TRANSLATION_AUDIO_ONLY[1]),
        ("AUDIO", {"tools": TOOLS}, NO_TOOLS[1]),
        ("AUDIO", {"systemInstruction": INSTRUCTION}, NO_SYSTEM_INSTRUCTION[1]),
        ("AUDIO", {"realtimeInputConfig": {"automaticActivityDetection": {"disabled": True}}},
         AUTOMATIC_DETECTION_ONLY[1]),
    ],
)  # fmt: skip
async def test_translate_setup_refusals(
    start: Starter, path: str, modality: str, fields: dict[str, Any], reason: str
) -> None:
    _, port = await start()
    await refused(port, setup_of(TRANSLATE, path, modality, {"translationConfig": SPANISH}, **fields), path, reason)
    assert len(reason.encode()) <= 123  # it fits a close frame


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (user_turn("hola"), AUDIO_INPUT_ONLY[1]),
        ({"realtimeInput": {"text": "hola"}}, AUDIO_INPUT_ONLY[1]),
        ({"realtimeInput": {"activityStart": {}}}, INVALID),  # it detects speech itself
        ({"realtimeInput": {"activityEnd": {}}}, INVALID),
    ],
)
async def test_translate_hears_only_a_continuous_stream(start: Starter, message: dict[str, Any], reason: str) -> None:
    _, port = await start()
    async with session(port, STUDIO, translate_setup(STUDIO, tools=[])) as ws:
        await send(ws, message)
        await expect_close(ws, 1007, reason)


# -- both: resumption, goAway, faults ----------------------------------------------------------


@pytest.mark.parametrize("setup", [transcribe_setup(STUDIO), translate_setup(STUDIO)])
async def test_listening_models_resume_and_go_away_like_the_others(start: Starter, setup: dict[str, Any]) -> None:
    emulator, port = await start(goaway_after_turns=1, goaway_time_left=0.5)
    setup["setup"]["sessionResumption"] = {}
    async with session(port, STUDIO, setup) as ws:
        assert handle_of(await recv(ws, vertex=False)) == "emu-1-c1-h1"
        await speak(ws, 300)
        first = await recv_turn(ws, vertex=False)
        handle = handle_of(await recv(ws, vertex=False))
        assert await recv(ws, vertex=False) == {"goAway": {"timeLeft": "0.5s"}}
        await expect_close(ws, 1011, "Deadline expired before operation could complete.")
    assert handle == "emu-1-c1-h2"
    resumed = {"setup": {**setup["setup"], "sessionResumption": {"handle": handle}}}
    async with session(port, STUDIO, resumed) as ws:
        assert handle_of(await recv(ws, vertex=False)) == "emu-1-c2-h3"
        await speak(ws, 400)
        second = await recv_turn(ws, vertex=False)
        assert handle_of(await recv(ws, vertex=False)) == "emu-1-c2-h4"
    said = reply_text if "TEXT" in setup["setup"]["generationConfig"]["responseModalities"] else transcript
    assert [said(first), said(second)] in (
        ["audio 300 ms", "audio 400 ms"], ["[es] audio 300 ms", "[es] audio 400 ms"],
    )  # fmt: skip
    assert emulator.session_ids() == ["emu-1"]


@pytest.mark.parametrize("setup", [transcribe_setup(VERTEX), translate_setup(VERTEX)])
async def test_fault_markers_in_the_heard_transcript(start: Starter, setup: dict[str, Any]) -> None:
    _, port = await start(audio_transcript="[fault:mid-1011] hello")
    async with session(port, VERTEX, setup) as ws:
        await speak(ws, 300, pause_ms=500)  # the chunk that ends the turn is the last one sent
        first = await recv(ws)
        assert {"modelTurn", "outputTranscription"} & set(content(first))
        await expect_close(ws, 1011, "Internal error occurred.")


# -- the real google-genai SDK -----------------------------------------------------------------


@pytest.mark.parametrize("vertex", [True, False])
async def test_sdk_translation_config(start: Starter, tls: tuple[ssl.SSLContext, ssl.SSLContext], vertex: bool) -> None:
    """The SDK's own ``translation_config`` (its spelling, under generationConfig on both backends)."""
    emulator, port = await start(ssl_context=tls[0])
    client = sdk_client(port, tls[1], vertex)
    config = types.LiveConnectConfig(
        response_modalities=[types.Modality.AUDIO],
        input_audio_transcription=types.AudioTranscriptionConfig(),
        translation_config=types.TranslationConfig(target_language_code="fr", echo_target_language=False),
    )
    pcm = sine(500, RATE) + silence(600, RATE)

    async def listen() -> list[types.LiveServerMessage]:
        async with client.aio.live.connect(model=TRANSLATE, config=config) as live:
            for offset in range(0, len(pcm), 640):
                await live.send_realtime_input(audio=types.Blob(data=pcm[offset : offset + 640], mime_type=MIME))
            return [message async for message in live.receive()]

    messages = await run_sdk(listen)
    contents = [m.server_content for m in messages if m.server_content]
    assert "".join(c.input_transcription.text or "" for c in contents if c.input_transcription) == "audio 500 ms"
    assert "".join(c.output_transcription.text for c in contents if c.output_transcription) == "[fr] audio 500 ms"
    audio = b"".join(p.inline_data.data for c in contents if c.model_turn for p in c.model_turn.parts)
    assert audio == tone_pcm(0, 240 * 24)
    last = messages[-1]
    assert last.server_content.turn_complete
    assert (last.usage_metadata.prompt_token_count, last.usage_metadata.response_token_count) == (13, 6)
    assert last.usage_metadata.response_tokens_details[0].modality == types.MediaModality.AUDIO
    setup = emulator.received[0]["setup"]
    generation = setup.get("generationConfig", setup.get("generation_config"))
    assert generation["translationConfig"] == {"targetLanguageCode": "fr", "echoTargetLanguage": False}
