"""The translation socket's sans-IO state machine: events validated against the SDK's translation union."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from relay.ids import SessionIds
from relay.models import caps_for
from relay.translate import LiveTranslation, Output
from tests.schemas import validate_gemini, validate_openai

CAPS = caps_for("gemini-3.5-live-translate-preview", "gemini", None)
PCM_200MS = base64.b64encode(b"\x10\x27" * 4800).decode()  # 200 ms of 24 kHz PCM16
QUIET_100MS = base64.b64encode(bytes(4800)).decode()
OUT_100MS = {"mimeType": "audio/pcm;rate=24000", "data": base64.b64encode(b"\x01\x00" * 2400).decode()}


class Run:
    def __init__(self) -> None:
        self.t = LiveTranslation(SessionIds(), CAPS, model="translate", expires_at=1_900_000_000)
        self.events: list[dict[str, Any]] = []
        self.upstream: list[dict[str, Any]] = []
        self.connects: list[Any] = []
        self.closed = None
        self.take(self.t.start())

    def take(self, out: Output) -> list[dict[str, Any]]:
        events = [orjson.loads(b) for b in out.client]
        for event in events:
            validate_openai(event, "translation")
        for message in out.upstream:
            validate_gemini(message)
        if out.connect is not None:
            validate_gemini(out.connect.setup)
            self.connects.append(out.connect)
        self.closed = out.close or self.closed
        self.events += events
        self.upstream += out.upstream
        return events

    def client(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        return self.take(self.t.client_frame(orjson.dumps(event)))

    def gemini(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        return self.take(self.t.upstream_frame(orjson.dumps(message)))


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def start(transcribe: bool = True) -> Run:
    run = Run()
    audio: dict[str, Any] = {"output": {"language": "es"}}
    if transcribe:
        audio["input"] = {"transcription": {"model": "gpt-realtime-whisper"}}
    run.client({"type": "session.update", "session": {"audio": audio}})
    run.client({"type": "session.input_audio_buffer.append", "audio": PCM_200MS})
    run.gemini({"setupComplete": {}})
    return run


def test_a_segment_is_translated_with_both_transcripts_and_audio() -> None:
    run = start()
    assert types(run.events) == ["session.created", "session.updated"]
    assert run.events[1]["session"]["audio"]["output"]["language"] == "es"
    setup = run.connects[0].setup["setup"]
    assert setup["generationConfig"] == {"responseModalities": ["AUDIO"],
                                         "translationConfig": {"targetLanguageCode": "es"}}
    assert "inputAudioTranscription" in setup and "outputAudioTranscription" in setup
    assert [m["realtimeInput"]["audio"]["mimeType"] for m in run.upstream] == ["audio/pcm;rate=24000"] * 2
    run.gemini({"serverContent": {"inputTranscription": {"text": "hello"}}})
    run.gemini({"serverContent": {"outputTranscription": {"text": "hola"}, "modelTurn": {"parts": [
        {"inlineData": OUT_100MS}]}}})
    run.gemini({"serverContent": {"modelTurn": {"parts": [{"inlineData": OUT_100MS}]}}})
    run.gemini({"serverContent": {"turnComplete": True}})
    got = types(run.events[2:])
    assert got == ["session.input_transcript.delta", "session.output_transcript.delta", "session.output_audio.delta",
                   "session.output_audio.delta"]
    audio = [e for e in run.events if e["type"] == "session.output_audio.delta"]
    assert [a["elapsed_ms"] for a in audio] == [0, 100]
    assert audio[0]["sample_rate"] == 24000 and audio[0]["channels"] == 1 and audio[0]["format"] == "pcm16"
    assert run.t.responses == 1


def test_without_input_transcription_no_source_transcript_is_sent() -> None:
    run = start(transcribe=False)
    assert "inputAudioTranscription" not in run.connects[0].setup["setup"]
    assert run.gemini({"serverContent": {"inputTranscription": {"text": "hello"}}}) == []


def test_audio_before_a_language_is_refused_and_bad_languages_get_a_clear_error() -> None:
    run = Run()
    refused = run.client({"type": "session.input_audio_buffer.append", "audio": PCM_200MS, "event_id": "a1"})
    assert types(refused) == ["error"] and refused[0]["error"]["param"] == "session.audio.output.language"
    assert refused[0]["error"]["event_id"] == "a1" and not run.connects
    for bad in ("xx", "spanish", 5):
        errors = run.client({"type": "session.update", "session": {"audio": {"output": {"language": bad}}}})
        assert types(errors) == ["error"]
        assert errors[0]["error"]["param"] == "session.audio.output.language"
    assert types(run.client({"type": "session.update", "session": {"audio": {"output": {"language": "pt-BR"}}}})) \
        == ["session.updated"]


@pytest.mark.parametrize("frame", [b"{", b"[]", b'{"type": "response.create"}',
                                   b'{"type": "session.update", "session": {"instructions": "x"}}'])
def test_bad_input_gets_an_error_and_the_session_goes_on(frame: bytes) -> None:
    run = start()
    events = run.take(run.t.client_frame(frame))
    assert types(events) == ["error"]
    assert run.closed is None


def test_goaway_switches_between_segments_and_resends_the_speech_no_finished_segment_covers() -> None:
    run = start()  # 200 ms of speech
    run.gemini({"sessionResumptionUpdate": {"newHandle": "h1", "resumable": True}})
    for audio in (QUIET_100MS, QUIET_100MS, QUIET_100MS, PCM_200MS):  # a pause, then the next segment begins
        run.client({"type": "session.input_audio_buffer.append", "audio": audio})
    run.gemini({"serverContent": {"outputTranscription": {"text": "hola"}}})
    run.gemini({"goAway": {"timeLeft": "5s"}})
    assert len(run.connects) == 1  # a segment is being translated
    run.gemini({"serverContent": {"turnComplete": True}})
    assert len(run.connects) == 2 and run.connects[1].resume
    assert run.connects[1].setup["setup"]["sessionResumption"] == {"handle": "h1"}
    sent = len(run.upstream)
    run.gemini({"setupComplete": {}})
    # the finished segment's speech and the 200 ms that ended it are not sent again; the rest of the pause and
    # the next segment's beginning are (a handle restores what was translated, not what was being heard)
    resent = run.upstream[sent:]
    assert [base64.b64decode(m["realtimeInput"]["audio"]["data"]) for m in resent] == \
        [base64.b64decode(QUIET_100MS)] + [b"\x10\x27" * 2400] * 2


def test_a_dropped_connection_is_resumed_and_close_waits_for_the_segment() -> None:
    run = start()
    run.gemini({"sessionResumptionUpdate": {"newHandle": "h1", "resumable": True}})
    run.take(run.t.upstream_closed(1006, ""))
    assert run.connects[-1].resume and not any(e["type"] == "error" for e in run.events)
    run.gemini({"setupComplete": {}})
    run.gemini({"serverContent": {"outputTranscription": {"text": "hola"}}})
    assert run.client({"type": "session.close"}) == []
    assert run.t.awaiting_model and run.closed is None
    run.gemini({"serverContent": {"turnComplete": True}})
    assert types(run.events)[-1] == "session.closed" and run.closed is not None
