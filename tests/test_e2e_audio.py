"""Audio sessions end to end: openai SDK (GA and beta) → relay → emulator, asserting exact event
orders, untouched pcm16 bytes, G.711 transcoding quality and schema validity of every event."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from relay.audio import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from relay.emulator.wire import tone_pcm, voice_tone_hz
from tests.clients import sdk_beta, sdk_ga, squash, types
from tests.stack import Stack

RATE = 24000
CHUNK_MS = 20


def sine(ms: int, hz: float = 1000.0, rate: int = RATE, amplitude: int = 8000) -> np.ndarray:
    t = np.arange(rate * ms // 1000) / rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype("<i2")


def silence(ms: int, rate: int = RATE) -> np.ndarray:
    return np.zeros(rate * ms // 1000, dtype="<i2")


def chunks_b64(pcm: bytes, bytes_per_chunk: int) -> list[str]:
    return [base64.b64encode(pcm[i:i + bytes_per_chunk]).decode() for i in range(0, len(pcm), bytes_per_chunk)]


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(float) * np.hanning(len(samples))))
    peak = int(np.argmax(spectrum[1:])) + 1
    # parabolic interpolation around the peak bin for sub-bin accuracy
    a, b, c = spectrum[peak - 1], spectrum[peak], spectrum[peak + 1]
    offset = 0.5 * (a - c) / (a - 2 * b + c)
    return (peak + offset) * rate / len(samples)


def audio_of(events: list[dict], delta_type: str) -> bytes:
    return b"".join(base64.b64decode(e["delta"]) for e in events if e["type"] == delta_type)


def speak(c, pcm: bytes, chunk_ms: int = CHUNK_MS, bytes_per_ms: int = 48) -> None:
    for chunk in chunks_b64(pcm, chunk_ms * bytes_per_ms):
        c.send({"type": "input_audio_buffer.append", "audio": chunk})


@pytest.fixture(scope="module", params=["trio-websocket", "websockets"])
def slow_stack(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    """Replies paced slowly enough that a client can barge in or cancel mid-reply."""
    s = Stack(tmp_path_factory.mktemp("slow"), emulator_options={"chunk_delay": 0.25}, transport=request.param).start()
    yield s
    s.stop()


GA_VAD_TURN = [
    "input_audio_buffer.speech_started",
    "input_audio_buffer.speech_stopped",
    "input_audio_buffer.committed",
    "conversation.item.added",
    "conversation.item.done",
]
GA_AUDIO_RESPONSE_HEAD = [
    "response.created",
    "response.output_item.added",
    "conversation.item.added",
    "response.content_part.added",
]
GA_AUDIO_RESPONSE_TAIL = [
    "response.output_audio.done",
    "response.output_audio_transcript.done",
    "response.content_part.done",
    "response.output_item.done",
    "conversation.item.done",
    "response.done",
]


def test_ga_server_vad_turn_answers_by_itself_with_untouched_pcm16(stack):
    with sdk_ga(stack) as c:
        c.recv()
        c.send({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["audio"],
                "audio": {"input": {"transcription": {"model": "whisper-1", "language": "en"},
                                    "turn_detection": {"type": "server_vad", "silence_duration_ms": 300}},
                          "output": {"voice": "marin"}}}})
        c.recv()
        speak(c, sine(500).tobytes() + silence(600).tobytes())
        events = c.until("response.done")
    names = [n for n in squash(types(events)) if not n.startswith("conversation.item.input_audio_transcription")]
    assert names[:5] == GA_VAD_TURN
    assert names[5:9] == GA_AUDIO_RESPONSE_HEAD
    assert names[-6:] == GA_AUDIO_RESPONSE_TAIL
    started, stopped = events[0], events[1]
    assert started["audio_start_ms"] == 0 and started["item_id"] == stopped["item_id"]
    assert 800 <= stopped["audio_end_ms"] <= 1100
    user_item = events[3]["item"]
    assert user_item["id"] == started["item_id"] and user_item["content"][0]["type"] == "input_audio"
    # input transcription lands on the user item
    completed = next(e for e in events if e["type"] == "conversation.item.input_audio_transcription.completed")
    assert completed["item_id"] == user_item["id"] and completed["transcript"] == "audio 500 ms"
    assert completed["usage"]["type"] == "duration"
    transcript = "".join(e["delta"] for e in events if e["type"] == "response.output_audio_transcript.delta")
    assert transcript == "Echo: audio 500 ms"
    # pcm16 at 24 kHz passes through byte for byte: compare with the emulator's own tone
    pcm = audio_of(events, "response.output_audio.delta")
    words = len(transcript.split())
    assert pcm == tone_pcm(0, words * 60 * RATE // 1000, voice_tone_hz("Aoede"))
    done = events[-1]["response"]
    assert done["status"] == "completed"
    assert done["output"][0]["content"][0] == {"type": "output_audio", "transcript": transcript}
    assert done["usage"]["input_token_details"]["audio_tokens"] > 0


def test_beta_manual_turn_commit_does_not_generate_until_response_create(stack):
    with sdk_beta(stack) as c:
        c.recv()
        c.send({"type": "session.update", "session": {"modalities": ["audio", "text"], "turn_detection": None,
                                                       "voice": "Puck"}})
        c.recv()
        speak(c, sine(40).tobytes())
        c.send({"type": "input_audio_buffer.commit", "event_id": "short"})
        err = c.recv()
        assert err["error"]["code"] == "input_audio_buffer_commit_empty" and err["error"]["event_id"] == "short"
        speak(c, sine(400).tobytes())
        c.send({"type": "input_audio_buffer.commit"})
        committed, created = c.recv(), c.recv()
        assert [committed["type"], created["type"]] == ["input_audio_buffer.committed", "conversation.item.created"]
        assert created["item"]["id"] == committed["item_id"]
        sent = stack.latest_upstream()
        assert not any("activityEnd" in m.get("realtimeInput", {}) for m in sent), "commit alone must not end the turn"
        c.send({"type": "response.create"})
        events = c.until("response.done")
    assert squash(types(events)) == [
        "response.created", "response.output_item.added", "conversation.item.created",
        "response.content_part.added", "response.audio_transcript.delta", "response.audio.delta",
        "response.audio_transcript.delta", "response.audio.delta", "response.audio.done",
        "response.audio_transcript.done", "response.content_part.done", "response.output_item.done",
        "response.done",
    ]
    transcript = "".join(e["delta"] for e in events if e["type"] == "response.audio_transcript.delta")
    assert transcript == "Echo: audio 440 ms"  # the 40 ms that failed to commit stayed in the turn
    pcm = np.frombuffer(audio_of(events, "response.audio.delta"), "<i2")
    assert abs(dominant_hz(pcm, RATE) - voice_tone_hz("Puck")) < 0.01 * voice_tone_hz("Puck")
    sent = stack.latest_upstream()
    realtime = [m["realtimeInput"] for m in sent if "realtimeInput" in m]
    assert "activityStart" in realtime[0] and "activityEnd" in realtime[-1]
    assert all(a["audio"]["mimeType"] == "audio/pcm;rate=24000" for a in realtime[1:-1])


@pytest.mark.parametrize(("fmt", "ga_fmt", "encode", "decode"), [
    ("g711_ulaw", "audio/pcmu", ulaw_encode, ulaw_decode),
    ("g711_alaw", "audio/pcma", alaw_encode, alaw_decode),
])
@pytest.mark.parametrize("dialect", ["beta", "ga"])
def test_g711_round_trip_keeps_frequency_and_duration(stack, fmt, ga_fmt, encode, decode, dialect):
    if dialect == "ga":
        connect, delta = sdk_ga, "response.output_audio.delta"
        update = {"type": "realtime", "output_modalities": ["audio"], "audio": {
            "input": {"format": {"type": ga_fmt}, "turn_detection": None},
            "output": {"format": {"type": ga_fmt}, "voice": "coral"}}}
    else:
        connect, delta = sdk_beta, "response.audio.delta"
        update = {"modalities": ["audio", "text"], "input_audio_format": fmt, "output_audio_format": fmt,
                  "turn_detection": None, "voice": "coral"}
    g711_in = encode(sine(600, hz=440, rate=8000).tobytes())
    with connect(stack) as c:
        c.recv()
        c.send({"type": "session.update", "session": update})
        c.recv()
        speak(c, g711_in, bytes_per_ms=8)
        c.send({"type": "input_audio_buffer.commit"})
        c.send({"type": "response.create"})
        events = c.until("response.done")
    # input: decoded to 8 kHz PCM, labelled with its true rate, same samples
    sent = [m["realtimeInput"]["audio"] for m in stack.latest_upstream()
            if "audio" in m.get("realtimeInput", {})]
    assert {a["mimeType"] for a in sent} == {"audio/pcm;rate=8000"}
    got = b"".join(base64.b64decode(a["data"]) for a in sent)
    assert len(got) == len(decode(g711_in)), (len(got), len(sent))
    assert got == decode(g711_in)
    transcript = "".join(e["delta"] for e in events if e["type"].endswith("audio_transcript.delta"))
    assert transcript == "Echo: audio 600 ms"  # the emulator measured the decoded duration
    # output: 24 kHz tone resampled to 8 kHz G.711; frequency and duration within 1%
    out = np.frombuffer(decode(audio_of(events, delta)), "<i2")
    expected_ms = len(transcript.split()) * 60
    assert abs(len(out) / 8 - expected_ms) <= 0.01 * expected_ms
    hz = voice_tone_hz("Aoede")
    assert abs(dominant_hz(out, 8000) - hz) <= 0.01 * hz


def test_large_append_is_split_into_100ms_chunks_passed_through_unchanged(stack):
    pcm = sine(1050, hz=300).tobytes()
    b64 = base64.b64encode(pcm).decode()
    with sdk_ga(stack) as c:
        c.recv()
        c.send({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"],
                                                       "audio": {"input": {"turn_detection": None}}}})
        c.recv()
        c.send({"type": "input_audio_buffer.append", "audio": b64})
        c.send({"type": "input_audio_buffer.commit"})
        c.send({"type": "response.create"})
        events = c.until("response.done")
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == "Echo: audio 1050 ms"
    sent = [m["realtimeInput"]["audio"]["data"] for m in stack.latest_upstream()
            if "audio" in m.get("realtimeInput", {})]
    assert len(sent) == 11 and all(len(d) <= 6400 for d in sent)
    assert "".join(sent) == b64  # sliced base64, never decoded and re-encoded


def test_text_only_response_on_an_audio_session_comes_from_the_transcript(stack):
    with sdk_beta(stack) as c:
        c.recv()
        c.send({"type": "session.update", "session": {"modalities": ["audio", "text"]}})
        c.recv()
        c.send({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                "content": [{"type": "input_text", "text": "answer in text"}]}})
        c.recv()
        c.send({"type": "response.create", "response": {"modalities": ["text"]}})
        events = c.until("response.done")
    names = types(events)
    assert "response.audio.delta" not in names and "response.text.delta" in names
    assert "".join(e["delta"] for e in events if e["type"] == "response.text.delta") == "Echo: answer in text"
    assert events[-1]["response"]["modalities"] == ["text"]


def test_barge_in_cancels_the_response_and_truncate_cuts_the_item(slow_stack):
    with sdk_ga(slow_stack) as c:
        c.recv()
        c.send({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["audio"],
                "audio": {"input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 200}}}}})
        c.recv()
        speak(c, sine(300).tobytes() + silence(400).tobytes())
        first = c.until("response.output_audio.delta")
        assistant_item = next(e for e in first if e["type"] == "response.output_item.added")["item"]["id"]
        # the user talks over the reply
        speak(c, sine(300).tobytes() + silence(400).tobytes())
        events = c.until("response.done")
        names = squash(types(events))
        # barge-in (protocols.md 1.9 E): speech_started, then the open response closes as cancelled
        i = names.index("input_audio_buffer.speech_started")
        assert set(names[:i]) <= {"response.output_audio.delta", "response.output_audio_transcript.delta"}
        assert names[i + 1:] == GA_AUDIO_RESPONSE_TAIL
        done = events[-1]["response"]
        assert done["status"] == "cancelled"
        assert done["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
        assert done["output"][0]["status"] == "incomplete"
        # the interrupting speech becomes the next turn, answered by itself
        nxt = c.until("response.done")
        assert squash(types(nxt))[:4] == GA_VAD_TURN[1:]
        assert squash(types(nxt))[4:8] == GA_AUDIO_RESPONSE_HEAD
        started = next(e for e in events if e["type"] == "input_audio_buffer.speech_started")
        assert nxt[0]["item_id"] == started["item_id"]  # speech_stopped names the barge-in's item
        assert nxt[-1]["response"]["status"] == "completed"
        c.send({"type": "conversation.item.truncate", "item_id": assistant_item, "content_index": 0,
                "audio_end_ms": 60})
        truncated = c.until("conversation.item.truncated")[-1]
        assert truncated["audio_end_ms"] == 60
        heard = done["output"][0]["content"][0]["transcript"]
        c.send({"type": "conversation.item.retrieve", "item_id": assistant_item})
        item = c.until("conversation.item.retrieved")[-1]["item"]
        kept = item["content"][0]["transcript"]
        # cut by the share of audio played (Gemini gives no word timings): a shorter word prefix
        assert heard.startswith(kept) and len(kept.split()) < len(heard.split())
        c.send({"type": "conversation.item.truncate", "item_id": assistant_item, "content_index": 0,
                "audio_end_ms": 99999, "event_id": "too-far"})
        err = c.until("error")[-1]
        assert err["error"]["param"] == "audio_end_ms" and err["error"]["event_id"] == "too-far"


def test_response_cancel_on_audio_response(slow_stack):
    with sdk_beta(slow_stack) as c:
        c.recv()
        c.send({"type": "session.update", "session": {"modalities": ["audio", "text"], "turn_detection": None}})
        c.recv()
        speak(c, sine(300).tobytes())
        c.send({"type": "input_audio_buffer.commit"})
        c.send({"type": "response.create"})
        c.until("response.audio.delta")
        c.send({"type": "response.cancel"})
        events = c.until("response.done")
        names = squash(types(events))
        assert names[-5:] == ["response.audio.done", "response.audio_transcript.done", "response.content_part.done",
                              "response.output_item.done", "response.done"]
        done = events[-1]["response"]
        assert done["status_details"]["reason"] == "client_cancelled"
        assert done["output"][0]["status"] == "incomplete"
        # the rest of that turn is dropped; the next manual turn is answered normally
        speak(c, sine(200).tobytes())
        c.send({"type": "input_audio_buffer.commit"})
        c.send({"type": "response.create"})
        nxt = c.until("response.done")
        transcript = "".join(e["delta"] for e in nxt if e["type"] == "response.audio_transcript.delta")
        assert transcript.startswith("Echo: audio")
        assert nxt[-1]["response"]["status"] == "completed"


def test_input_audio_buffer_clear_answers_cleared(stack):
    with sdk_ga(stack) as c:
        c.recv()
        speak(c, sine(100).tobytes())
        c.send({"type": "input_audio_buffer.clear"})
        assert c.until("input_audio_buffer.cleared")[-1]["type"] == "input_audio_buffer.cleared"
        c.send({"type": "input_audio_buffer.commit"})
        assert c.until("error")[-1]["error"]["code"] == "input_audio_buffer_commit_empty"


def test_beta_input_transcription_lands_on_the_user_item(stack):
    with sdk_beta(stack) as c:
        c.recv()
        c.send({"type": "session.update", "session": {"modalities": ["text"], "turn_detection": None,
                                                       "input_audio_transcription": {"model": "whisper-1"}}})
        c.recv()
        speak(c, sine(700).tobytes())
        c.send({"type": "input_audio_buffer.commit"})
        committed = c.until("input_audio_buffer.committed")[-1]
        c.send({"type": "response.create"})
        events = c.until("response.done")
        if not any(e["type"] == "conversation.item.input_audio_transcription.completed" for e in events):
            events += c.until("conversation.item.input_audio_transcription.completed")
    deltas = [e for e in events if e["type"] == "conversation.item.input_audio_transcription.delta"]
    completed = next(e for e in events if e["type"] == "conversation.item.input_audio_transcription.completed")
    assert {d["item_id"] for d in deltas} == {committed["item_id"]} == {completed["item_id"]}
    assert "".join(d["delta"] for d in deltas).strip() == completed["transcript"] == "audio 700 ms"
    assert completed["usage"] == {"type": "duration", "seconds": 0.7}
    assert "".join(e["delta"] for e in events if e["type"] == "response.text.delta") == "Echo: audio 700 ms"
