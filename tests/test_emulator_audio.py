"""Tests of the emulator's audio input: activity detection, manual activity, barge-in, voices.

Raw trio_websocket clients; every server message is validated as a google.genai LiveServerMessage
by ``recv`` from test_emulator.
"""

from __future__ import annotations

import base64
import math
import struct
import zlib
from functools import partial
from typing import Any

import orjson
import pytest
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from relay.emulator import Emulator, EmulatorOptions
from relay.emulator.audio import InputAudio, InputSettings, audio_tokens, parse_rate, turn_ms
from tests.test_emulator import (
    STUDIO,
    VERTEX,
    VERTEX_MODEL,
    Starter,
    expect_close,
    recv,
    recv_turn,
    reply_text,
    send,
    session,
    user_turn,
)

RATE = 24_000


@pytest.fixture
def start(nursery: trio.Nursery) -> Starter:
    """Start an emulator on an ephemeral port inside the test's nursery."""

    async def _start(**options: Any) -> tuple[Emulator, int]:
        emulator = Emulator(EmulatorOptions(**options))
        port = await nursery.start(partial(emulator.serve, "127.0.0.1", 0))
        return emulator, port

    return _start


# -- signals and helpers -----------------------------------------------------------------------


def sine(ms: int, rate: int = RATE, hz: int = 1000, amplitude: int = 8000) -> bytes:
    count = rate * ms // 1000
    return struct.pack(f"<{count}h", *(round(amplitude * math.sin(2 * math.pi * hz * n / rate)) for n in range(count)))


def silence(ms: int, rate: int = RATE) -> bytes:
    return bytes(rate * ms // 1000 * 2)


def speech(rate: int = RATE) -> bytes:
    """The reference utterance: 500 ms of a 1 kHz sine at amplitude 8000, then 600 ms of silence."""
    return sine(500, rate) + silence(600, rate)


def audio_message(pcm: bytes, mime: str, deprecated: bool = False) -> dict[str, Any]:
    blob = {"mimeType": mime, "data": base64.b64encode(pcm).decode()}
    return {"realtimeInput": {"mediaChunks": [blob]} if deprecated else {"audio": blob}}


async def send_audio(
    ws: WebSocketConnection,
    pcm: bytes,
    rate: int = RATE,
    chunk_ms: int = 20,
    mime: str | None = None,
    deprecated: bool = False,
) -> None:
    step = rate * chunk_ms // 1000 * 2
    for offset in range(0, len(pcm), step):
        await send(ws, audio_message(pcm[offset : offset + step], mime or f"audio/pcm;rate={rate}", deprecated))


def make_setup(
    modality: str = "TEXT",
    model: str = VERTEX_MODEL,
    detection: dict[str, Any] | None = None,
    handling: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "generationConfig": {"responseModalities": [modality]}, **extra}
    ric: dict[str, Any] = {}
    if detection is not None:
        ric["automaticActivityDetection"] = detection
    if handling is not None:
        ric["activityHandling"] = handling
    if ric:
        body["realtimeInputConfig"] = ric
    return {"setup": body}


MANUAL = {"disabled": True}


async def nothing_within(ws: WebSocketConnection, seconds: float) -> None:
    with trio.move_on_after(seconds):
        message = await ws.get_message()
        pytest.fail(f"unexpected message {message!r}")


def content(message: dict[str, Any]) -> dict[str, Any]:
    return message.get("serverContent", {})


def input_pieces(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [content(m)["inputTranscription"] for m in messages if "inputTranscription" in content(m)]


def audio_of(messages: list[dict[str, Any]]) -> bytes:
    return b"".join(
        base64.b64decode(part["inlineData"]["data"])
        for m in messages
        for part in content(m).get("modelTurn", {}).get("parts", [])
        if "inlineData" in part
    )


def index_of(messages: list[dict[str, Any]], key: str) -> int:
    return next(i for i, m in enumerate(messages) if key in content(m))


# -- automatic activity detection --------------------------------------------------------------


async def test_vad_turn_text_reply(start: Starter) -> None:
    emulator, port = await start()
    async with session(port, setup=make_setup(inputAudioTranscription={})) as ws:
        await send_audio(ws, speech())
        messages = await recv_turn(ws)
    assert messages[:2] == [
        {"serverContent": {"inputTranscription": {"text": "audio 500 ms"}}},
        {"serverContent": {"inputTranscription": {"finished": True}}},
    ]
    assert reply_text(messages) == "Echo: audio 500 ms"
    assert messages[-2] == {"serverContent": {"generationComplete": True}}
    assert messages[-1]["usageMetadata"] == {
        "promptTokenCount": 13,  # ceil(500 / 40)
        "candidatesTokenCount": 4,
        "totalTokenCount": 17,
        "promptTokensDetails": [{"modality": "AUDIO", "tokenCount": 13}],
        "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": 4}],
    }
    assert len(emulator.received) == 1 + 55  # setup + 1100 ms in 20 ms chunks


async def test_vad_without_input_transcription_still_replies(start: Starter) -> None:
    _, port = await start(chunk_words=1)
    async with session(port, setup=make_setup()) as ws:
        await send_audio(ws, speech())
        messages = await recv_turn(ws)
    assert input_pieces(messages) == []
    assert [content(m)["modelTurn"]["parts"][0]["text"] for m in messages[:4]] == ["Echo: ", "audio ", "500 ", "ms"]


@pytest.mark.parametrize(
    ("silence_setting", "silence_ms"),
    [(None, 500), (200, 200), ("300", 300)],  # proto3 JSON allows int32 as a string
)
async def test_silence_duration_is_honoured(start: Starter, silence_setting: Any, silence_ms: int) -> None:
    _, port = await start()
    detection = {} if silence_setting is None else {"silenceDurationMs": silence_setting}
    async with session(port, setup=make_setup(detection=detection, inputAudioTranscription={})) as ws:
        await send_audio(ws, sine(400) + silence(silence_ms - 20))
        await nothing_within(ws, 0.3)  # 20 ms short of the silence that ends speech
        await send_audio(ws, silence(20))
        messages = await recv_turn(ws)
    assert input_pieces(messages)[0] == {"text": "audio 400 ms"}


async def test_vad_option_silence_and_threshold(start: Starter) -> None:
    _, port = await start(vad_silence_ms=100, vad_threshold=6000.0)
    async with session(port, setup=make_setup(inputAudioTranscription={})) as ws:
        # RMS of a sine at amplitude A is A / sqrt(2): 7000 -> 4950, below the threshold.
        await send_audio(ws, sine(300, amplitude=7000) + silence(200))
        await nothing_within(ws, 0.2)
        await send_audio(ws, sine(300, amplitude=9000) + silence(100))  # RMS 6364
        messages = await recv_turn(ws)
    assert input_pieces(messages)[0] == {"text": "audio 300 ms"}


async def test_quiet_gaps_inside_speech_count(start: Starter) -> None:
    _, port = await start()
    async with session(port, setup=make_setup(inputAudioTranscription={})) as ws:
        await send_audio(ws, sine(200) + silence(300) + sine(100) + silence(500))
        messages = await recv_turn(ws)
    assert input_pieces(messages)[0] == {"text": "audio 600 ms"}


@pytest.mark.parametrize(
    ("rate", "mime", "deprecated", "chunk_ms", "expected"),
    [
        (16_000, "audio/pcm", True, 20, "audio 500 ms"),  # no rate: 16 kHz
        (16_000, "audio/pcm;rate=16000", False, 30, "audio 510 ms"),  # 17 chunks of 30 ms are loud
        (44_100, "audio/pcm; rate=44100", True, 20, "audio 500 ms"),
        (8_000, "audio/pcm;rate=8000", False, 7, "audio 500 ms"),  # 72 loud chunks of 7 ms: 504 ms
    ],
)
async def test_input_rates(
    start: Starter, rate: int, mime: str, deprecated: bool, chunk_ms: int, expected: str
) -> None:
    _, port = await start()
    async with session(port, setup=make_setup(inputAudioTranscription={})) as ws:
        await send_audio(ws, speech(rate), rate, chunk_ms, mime, deprecated)
        messages = await recv_turn(ws)
    assert input_pieces(messages)[0] == {"text": expected}


async def test_vad_turn_audio_reply_order(start: Starter) -> None:
    _, port = await start(chunk_words=2, audio_chunk_ms=50)
    setup = make_setup("AUDIO", "models/m", inputAudioTranscription={}, outputAudioTranscription={})
    async with session(port, STUDIO, setup) as ws:
        await send_audio(ws, speech())
        messages = await recv_turn(ws, vertex=False)
    assert input_pieces(messages) == [{"text": "audio 500 "}, {"text": "ms"}, {"finished": True}]
    first_output = min(index_of(messages, "modelTurn"), index_of(messages, "outputTranscription"))
    assert first_output == 3  # the whole input transcription comes first
    output = "".join(content(m)["outputTranscription"]["text"] for m in messages if "outputTranscription" in content(m))
    assert output == "Echo: audio 500 ms"
    assert len(audio_of(messages)) == 4 * 60 * 24 * 2
    complete = index_of(messages, "generationComplete")
    assert all("modelTurn" not in content(m) and "outputTranscription" not in content(m) for m in messages[complete:])
    assert complete == len(messages) - 2
    usage = messages[-1]["usageMetadata"]
    assert usage["promptTokensDetails"] == [{"modality": "AUDIO", "tokenCount": 13}]
    assert usage["responseTokensDetails"] == [{"modality": "AUDIO", "tokenCount": 4}]


async def test_max_speech_cuts_turns(start: Starter) -> None:
    _, port = await start(vad_max_speech_ms=300)
    # NO_INTERRUPTION keeps the second turn from barging into the first reply, so the order is fixed.
    setup = make_setup(handling="NO_INTERRUPTION", inputAudioTranscription={})
    async with session(port, setup=setup) as ws:
        await send_audio(ws, speech())
        first = await recv_turn(ws)
        second = await recv_turn(ws)
    assert input_pieces(first)[0] == {"text": "audio 300 ms"}
    assert reply_text(first) == "Echo: audio 300 ms"
    assert input_pieces(second)[0] == {"text": "audio 200 ms"}
    assert reply_text(second) == "Echo: audio 200 ms"
    assert second[-1]["usageMetadata"]["promptTokenCount"] == 8 + 5  # both audio turns are history


async def test_text_turn_after_audio_turn_counts_both(start: Starter) -> None:
    _, port = await start()
    async with session(port, setup=make_setup()) as ws:
        await send_audio(ws, speech())
        await recv_turn(ws)
        await send(ws, user_turn("two words"))
        messages = await recv_turn(ws)
        await send(ws, {"clientContent": {"turnComplete": True}})
        again = await recv_turn(ws)
    assert messages[-1]["usageMetadata"]["promptTokensDetails"] == [
        {"modality": "TEXT", "tokenCount": 2},
        {"modality": "AUDIO", "tokenCount": 13},
    ]
    assert messages[-1]["usageMetadata"]["promptTokenCount"] == 15
    assert reply_text(again) == "Echo: two words"


# -- manual activity ---------------------------------------------------------------------------


async def test_manual_activity_replies_only_after_activity_end(start: Starter) -> None:
    _, port = await start()
    setup = make_setup(model="models/m", detection=MANUAL, inputAudioTranscription={})
    async with session(port, STUDIO, setup) as ws:
        await send_audio(ws, sine(1000, 16_000), 16_000)  # outside an activity: ignored
        await send(ws, {"realtimeInput": {"activityStart": {}}})
        await send_audio(ws, silence(300, 16_000) + sine(200, 16_000) + silence(700, 16_000), 16_000)
        await send(ws, {"realtimeInput": {"audioStreamEnd": True}})  # no effect without detection
        await nothing_within(ws, 0.3)
        await send(ws, {"realtime_input": {"activity_end": {}}})
        messages = await recv_turn(ws, vertex=False)
        await send(ws, {"realtimeInput": {"activityEnd": {}}})  # nothing open: ignored
        await nothing_within(ws, 0.1)
    assert input_pieces(messages) == [{"text": "audio 1200 ms"}, {"finished": True}]
    assert reply_text(messages) == "Echo: audio 1200 ms"
    assert messages[-1]["usageMetadata"]["promptTokenCount"] == 30


async def test_manual_activity_without_audio(start: Starter) -> None:
    _, port = await start()
    async with session(port, setup=make_setup(detection=MANUAL)) as ws:
        await send(ws, {"realtimeInput": {"activityStart": {}}})
        await send(ws, {"realtimeInput": {"activityStart": {}}})  # already open: ignored
        await send(ws, {"realtimeInput": {"activityEnd": {}}})
        messages = await recv_turn(ws)
    assert reply_text(messages) == "Echo: audio 0 ms"


@pytest.mark.parametrize("path", [VERTEX, STUDIO])
@pytest.mark.parametrize("signal", [{"activityStart": {}}, {"activityEnd": {}}, {"activity_start": {}}])
async def test_activity_signals_need_detection_disabled(start: Starter, path: str, signal: dict[str, Any]) -> None:
    _, port = await start()
    detection = {"disabled": False, "silenceDurationMs": 100}
    async with session(port, path, make_setup(detection=detection)) as ws:
        await send(ws, {"realtimeInput": signal})
        await expect_close(ws, 1007, "Request contains an invalid argument.")


# -- audioStreamEnd ----------------------------------------------------------------------------


async def test_audio_stream_end_ends_speech_on_studio(start: Starter) -> None:
    _, port = await start()
    setup = make_setup(model="models/m", inputAudioTranscription={})
    async with session(port, STUDIO, setup) as ws:
        await send_audio(ws, sine(300) + silence(100))
        await nothing_within(ws, 0.2)
        await send(ws, {"realtimeInput": {"audioStreamEnd": True}})
        messages = await recv_turn(ws, vertex=False)
    assert input_pieces(messages)[0] == {"text": "audio 300 ms"}
    assert reply_text(messages) == "Echo: audio 300 ms"


async def test_audio_stream_end_closes_vertex(start: Starter) -> None:
    _, port = await start()
    async with session(port, setup=make_setup()) as ws:
        await send_audio(ws, sine(300))
        await send(ws, {"realtime_input": {"audio_stream_end": True}})
        await expect_close(ws, 1007, "Request contains an invalid argument.")


# -- barge-in ----------------------------------------------------------------------------------

LONG_TEXT = " ".join(f"w{i}" for i in range(20))  # "Echo: " + 20 words = 1260 ms of audio


async def _barge_in(ws: WebSocketConnection, manual: bool, interrupts: bool) -> list[dict[str, Any]]:
    """Start a long AUDIO reply, speak into it a little later, return everything up to the next
    turnComplete. With ``interrupts`` the interruption must come as speech starts, not as it ends."""
    await send(ws, user_turn(LONG_TEXT))
    messages = [await recv(ws)]
    assert "modelTurn" in content(messages[0])
    await trio.sleep(0.25)  # a non-realtime reply would be complete by now
    if manual:
        await send(ws, {"realtimeInput": {"activityStart": {}}})
    else:
        await send_audio(ws, sine(200))
    while interrupts and not content(messages[-1]).get("interrupted"):
        messages.append(await recv(ws))
    if manual:
        await send_audio(ws, sine(200))
        await send(ws, {"realtimeInput": {"activityEnd": {}}})
    else:
        await send_audio(ws, silence(500))
    messages += await recv_turn(ws)
    return messages


@pytest.mark.parametrize("manual", [False, True])
async def test_barge_in_interrupts_realtime_audio(start: Starter, manual: bool) -> None:
    _, port = await start(audio_realtime=True)
    setup = make_setup("AUDIO", detection=MANUAL if manual else None, inputAudioTranscription={})
    async with session(port, setup=setup) as ws:
        before = trio.current_time()
        messages = await _barge_in(ws, manual, interrupts=True)
    assert trio.current_time() - before < 1.2  # the 1260 ms reply did not play out
    interrupted = messages.index({"serverContent": {"interrupted": True}})
    assert sum(1 for m in messages if content(m).get("interrupted")) == 1
    assert interrupted < index_of(messages, "inputTranscription")
    # Nothing of the first reply follows the interruption, and it never completed.
    assert all("generationComplete" not in content(m) for m in messages[:interrupted])
    second = messages[interrupted + 1 :]
    assert input_pieces(second) == [{"text": "audio 200 ms"}, {"finished": True}]
    assert len(audio_of(second)) == 4 * 60 * 24 * 2
    assert 2 * 4800 <= len(audio_of(messages[:interrupted])) < 21 * 60 * 24 * 2  # 100 ms chunks
    usage = messages[-1]["usageMetadata"]
    assert usage["promptTokensDetails"] == [
        {"modality": "TEXT", "tokenCount": 20},
        {"modality": "AUDIO", "tokenCount": 5},
    ]


async def test_slow_fault_paces_audio_and_is_interrupted(start: Starter) -> None:
    _, port = await start()
    async with session(port, setup=make_setup("AUDIO")) as ws:
        await send(ws, user_turn("[fault:slow] a b c d e"))
        first = await recv(ws)
        assert "modelTurn" in content(first)
        before = trio.current_time()
        await send_audio(ws, sine(100) + silence(500))
        assert await recv(ws) == {"serverContent": {"interrupted": True}}
        assert trio.current_time() - before < 0.4  # before the slow reply's next chunk
        messages = await recv_turn(ws)
    assert len(audio_of(messages)) == 4 * 60 * 24 * 2


async def test_slow_fault_audio_timing(start: Starter) -> None:
    _, port = await start(audio_chunk_ms=120)
    async with session(port, setup=make_setup("AUDIO")) as ws:
        before = trio.current_time()
        await send(ws, user_turn("[fault:slow] a b"))  # 4 words: 240 ms in two chunks
        messages = await recv_turn(ws)
    assert trio.current_time() - before >= 0.5
    assert len(audio_of(messages)) == 4 * 60 * 24 * 2


@pytest.mark.parametrize("manual", [False, True])
async def test_no_interruption_queues_the_turn(start: Starter, manual: bool) -> None:
    _, port = await start(audio_realtime=True)
    setup = make_setup(
        "AUDIO", detection=MANUAL if manual else None, handling="NO_INTERRUPTION", inputAudioTranscription={}
    )
    async with session(port, setup=setup) as ws:
        before = trio.current_time()
        messages = await _barge_in(ws, manual, interrupts=False)
        assert trio.current_time() - before >= 1.1  # the first reply played out in real time
        second = await recv_turn(ws)
    assert not any(content(m).get("interrupted") for m in messages + second)
    assert len(audio_of(messages)) == 21 * 60 * 24 * 2
    assert input_pieces(messages) == []  # the spoken turn waited for the first reply
    assert input_pieces(second) == [{"text": "audio 200 ms"}, {"finished": True}]
    assert len(audio_of(second)) == 4 * 60 * 24 * 2


async def test_text_turn_interrupts_reply_and_queued_turn(start: Starter) -> None:
    _, port = await start(audio_realtime=True)
    setup = make_setup("AUDIO", handling="NO_INTERRUPTION", inputAudioTranscription={})
    async with session(port, setup=setup) as ws:
        await send(ws, user_turn(LONG_TEXT))
        assert "modelTurn" in content(await recv(ws))
        await send_audio(ws, sine(200) + silence(500))  # queued behind the first reply
        await trio.sleep(0.1)
        await send(ws, {"realtimeInput": {"text": "stop"}})
        messages = []
        while not content(messages[-1] if messages else {}).get("interrupted"):
            messages.append(await recv(ws))
        rest = await recv_turn(ws)
    # The queued spoken turn is still transcribed (it was said), then the interruption, then "stop".
    assert input_pieces(messages) == [{"text": "audio 200 ms"}, {"finished": True}]
    assert input_pieces(rest) == []
    usage = rest[-1]["usageMetadata"]
    assert usage["promptTokensDetails"] == [
        {"modality": "TEXT", "tokenCount": 21},
        {"modality": "AUDIO", "tokenCount": 5},
    ]


# -- voices ------------------------------------------------------------------------------------


def _dominant_hz(pcm: bytes) -> float:
    np = pytest.importorskip("numpy")
    samples = np.frombuffer(pcm, dtype="<i2").astype(float)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / RATE)[int(np.argmax(spectrum))])


def _other_voice_hz(name: str) -> int:
    return [520, 600, 660, 720, 780, 840, 900, 960][zlib.crc32(name.lower().encode()) % 8]


@pytest.mark.parametrize(
    ("speech_config", "expected"),
    [
        (None, 440),
        ({"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": "Puck"}}}, 520),
        ({"voice_config": {"prebuilt_voice_config": {"voice_name": "kore"}}}, 660),
        ({"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": "Zephyr"}}}, 960),
        ({"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": "Sulafat"}}}, _other_voice_hz("Sulafat")),
        ({"languageCode": "en-US"}, 440),
    ],
)
async def test_voice_sets_tone_frequency(start: Starter, speech_config: Any, expected: int) -> None:
    _, port = await start()
    setup = make_setup("AUDIO")
    if speech_config is not None:
        setup["setup"]["generationConfig"]["speechConfig"] = speech_config
    async with session(port, setup=setup) as ws:
        await send(ws, user_turn(LONG_TEXT))
        messages = await recv_turn(ws)
    pcm = audio_of(messages)
    assert len(pcm) == 21 * 60 * 24 * 2
    assert abs(_dominant_hz(pcm) - expected) < 2  # 30240 samples: 0.8 Hz bins


# -- malformed input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setup", "frames", "reason"),
    [
        (make_setup(), [{"realtimeInput": {"audio": {"data": "!!", "mimeType": "audio/pcm"}}}],
         "Invalid JSON payload received."),
        (make_setup(), [{"realtimeInput": {"audio": {"data": "AAAA", "mimeType": "audio/pcm;rate=x"}}}],
         "Request contains an invalid argument."),
        (make_setup(), [{"realtimeInput": {"mediaChunks": {"data": "AAAA"}}}], "Request contains an invalid argument."),
        (make_setup(handling="SOMETIMES"), [], "Request contains an invalid argument."),
        (make_setup(detection={"disabled": "yes"}), [], "Request contains an invalid argument."),
        (make_setup(detection={"silenceDurationMs": -5}), [], "Request contains an invalid argument."),
    ],
)  # fmt: skip
async def test_malformed_audio_input_closes_1007(
    start: Starter, setup: dict[str, Any], frames: list[dict[str, Any]], reason: str
) -> None:
    _, port = await start()
    async with open_websocket_url(f"ws://127.0.0.1:{port}{VERTEX}") as ws:
        await ws.send_message(orjson.dumps(setup).decode())
        for frame in frames:
            await send(ws, frame)
        await expect_close(ws, 1007, reason)


async def test_url_safe_unpadded_base64_and_odd_chunks(start: Starter) -> None:
    _, port = await start()
    pcm = speech()
    async with session(port, setup=make_setup(inputAudioTranscription={})) as ws:
        # Chunks of 961 bytes split samples; the odd byte waits for the next chunk.
        for offset in range(0, len(pcm), 961):
            data = base64.urlsafe_b64encode(pcm[offset : offset + 961]).decode().rstrip("=")
            await send(ws, {"realtimeInput": {"audio": {"data": data, "mimeType": "audio/pcm;rate=24000"}}})
        messages = await recv_turn(ws)
    # The last loud chunk ends at sample 12012 (12000 of sine): 500.5 ms, rounded to 500.
    assert input_pieces(messages)[0] == {"text": "audio 500 ms"}
    assert reply_text(messages) == "Echo: audio 500 ms"


# -- pure pieces -------------------------------------------------------------------------------


def test_rounding_tokens_and_rates() -> None:
    assert [turn_ms(us) for us in (0, 4_999, 5_000, 1_194_999, 1_195_000)] == [0, 0, 10, 1190, 1200]
    assert [audio_tokens(ms) for ms in (0, 10, 40, 50, 500, 1000)] == [0, 1, 1, 2, 13, 25]
    assert [parse_rate(m) for m in ("audio/pcm", "audio/pcm;rate=8000", "AUDIO/PCM ; rate=48000")] == [
        16_000, 8_000, 48_000,
    ]  # fmt: skip
    assert parse_rate("image/jpeg") is None


def test_input_audio_totals() -> None:
    state = InputAudio(InputSettings(), threshold=500, silence_ms=500, max_speech_ms=0)
    loud = sine(20)
    results = [state.audio(loud, RATE) for _ in range(10)] + [state.audio(silence(20), RATE) for _ in range(25)]
    assert all(r.loud for r in results[:10]) and not any(r.loud for r in results[10:])
    assert [r.ended_us for r in results if r.ended_us is not None] == [200_000]
    assert state.total_us == 700_000
    assert state.turns_us == [200_000]
    assert not state.in_turn
