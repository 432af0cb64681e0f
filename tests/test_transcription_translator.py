"""Transcription sessions in the sans-IO translator: every event it emits validated against the SDK's types."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from relay.ids import SessionIds
from relay.models import GeminiOptions, caps_for
from relay.translate import Output, Translator
from tests.schemas import validate_gemini, validate_openai

STT = caps_for("gemini-3.5-transcribe-live-preview", "vertex", None)
LIVE = caps_for("gemini-3.8-live", "vertex", None)
TRANSCRIBERS = {"stt": (STT, GeminiOptions()), "live": (LIVE, GeminiOptions())}
PCM_200MS = base64.b64encode(b"\x10\x27" * 4800).decode()  # 200 ms of 24 kHz PCM16


class Run:
    def __init__(self, model: str = "stt", dialect: str | None = "beta", kind: str = "transcription") -> None:
        caps = TRANSCRIBERS[model][0]
        self.dialect = dialect
        self.t = Translator(SessionIds(), caps, dialect=dialect, kind=kind, model=model, transcribers=TRANSCRIBERS)
        self.events: list[dict[str, Any]] = []
        self.upstream: list[dict[str, Any]] = []
        self.connects: list[Any] = []
        self._take(self.t.start())

    def _take(self, out: Output) -> list[dict[str, Any]]:
        events = [orjson.loads(b) for b in out.client]
        for event in events:
            validate_openai(event, self.t.dialect or "both")
        for message in out.upstream:
            validate_gemini(message)
        if out.connect is not None:
            validate_gemini(out.connect.setup)
            self.connects.append(out.connect)
        self.events += events
        self.upstream += out.upstream
        return events

    def client(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        return self._take(self.t.client_frame(orjson.dumps(event)))

    def gemini(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        return self._take(self.t.upstream_frame(orjson.dumps(message)))


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def test_beta_intent_session_manual_commit_with_model_text_and_token_usage() -> None:
    run = Run()
    assert types(run.events) == ["transcription_session.created"]
    updated = run.client({"type": "transcription_session.update", "session": {
        "input_audio_transcription": {"model": "gpt-4o-transcribe", "language": "en"}, "turn_detection": None}})
    assert types(updated) == ["transcription_session.updated"]
    assert updated[0]["session"]["turn_detection"] is None
    assert run.client({"type": "input_audio_buffer.append", "audio": PCM_200MS}) == []
    setup = run.connects[0].setup["setup"]
    assert run.connects[0].model == "stt"  # gpt-4o-transcribe is not configured: the session's own model
    assert setup["generationConfig"] == {"responseModalities": ["TEXT"]}
    assert setup["inputAudioTranscription"] == {"languageCodes": ["en"]}
    assert "systemInstruction" not in setup and "tools" not in setup
    run.gemini({"setupComplete": {}})
    committed = run.client({"type": "input_audio_buffer.commit"})
    assert types(committed) == ["input_audio_buffer.committed", "conversation.item.created"]
    assert run.upstream[-1] == {"realtimeInput": {"activityEnd": {}}}
    assert run.t.awaiting_model  # the transcript is owed
    item = committed[0]["item_id"]
    run.gemini({"serverContent": {"modelTurn": {"parts": [{"text": "hello "}]}}})
    run.gemini({"serverContent": {"modelTurn": {"parts": [{"text": "world"}]}}})
    done = run.gemini({"serverContent": {"turnComplete": True}, "usageMetadata": {
        "promptTokenCount": 5, "responseTokenCount": 2, "totalTokenCount": 7,
        "promptTokensDetails": [{"modality": "AUDIO", "tokenCount": 5}]}})
    deltas = [e["delta"] for e in run.events if e["type"].endswith("transcription.delta")]
    assert deltas == ["hello ", "world"]
    assert types(done) == ["conversation.item.input_audio_transcription.completed"]
    assert done[0]["item_id"] == item and done[0]["transcript"] == "hello world"
    assert done[0]["usage"] == {"type": "tokens", "input_tokens": 5, "output_tokens": 2, "total_tokens": 7,
                                "input_token_details": {"audio_tokens": 5, "text_tokens": 0}}
    assert not run.t.awaiting_model
    assert not any(e["type"].startswith("response.") for e in run.events)
    assert run.t.turns == 1 and run.t.responses == 0  # the session end line counts the utterance


def test_ga_session_update_turns_a_fresh_session_into_transcription_under_vad() -> None:
    run = Run(model="live", dialect="ga", kind="realtime")
    assert run.events[0]["session"]["type"] == "realtime"
    updated = run.client({"type": "session.update", "session": {
        "type": "transcription", "audio": {"input": {"transcription": {"model": "stt", "prompt": "names"},
                                                     "noise_reduction": {"type": "near_field"}}}}})
    assert types(updated) == ["session.updated"] and updated[0]["session"]["type"] == "transcription"
    run.client({"type": "input_audio_buffer.append", "audio": PCM_200MS})
    assert run.connects[0].model == "stt"  # transcription.model names a configured model: it serves
    run.gemini({"setupComplete": {}})
    # Gemini's VAD: the first words are the first sign of the utterance
    first = run.gemini({"serverContent": {"modelTurn": {"parts": [{"text": "audio 200 ms"}]}}})
    assert types(first) == ["input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                            "input_audio_buffer.committed", "conversation.item.added", "conversation.item.done",
                            "conversation.item.input_audio_transcription.delta"]
    done = run.gemini({"serverContent": {"turnComplete": True}})
    assert done[0]["usage"] == {"type": "duration", "seconds": 0.2}  # no usageMetadata: the audio's duration


def test_a_live_model_transcribes_through_input_transcription_and_its_reply_is_dropped() -> None:
    run = Run(model="live", dialect="ga")
    run.client({"type": "input_audio_buffer.append", "audio": PCM_200MS})
    setup = run.connects[0].setup["setup"]
    assert setup["generationConfig"]["responseModalities"] == ["AUDIO"]  # 3.8 answers in audio only
    assert "systemInstruction" in setup  # asked to stay silent
    run.gemini({"setupComplete": {}})
    run.gemini({"serverContent": {"inputTranscription": {"text": "good "}}})
    run.gemini({"serverContent": {"modelTurn": {"parts": [{"text": "I am a reply"}]},
                                  "outputTranscription": {"text": "I am a reply"}}})
    done = run.gemini({"serverContent": {"inputTranscription": {"text": "morning", "finished": True}}})
    assert types(done)[-1] == "conversation.item.input_audio_transcription.completed"
    assert done[-1]["transcript"] == "good morning"
    assert run.gemini({"serverContent": {"turnComplete": True}}) == []  # the reply's end: nothing more to say
    assert run.t._stt.replies_dropped == 1


def test_response_and_conversation_events_are_refused_and_the_session_goes_on() -> None:
    run = Run()
    for event in ({"type": "response.create", "event_id": "r1"}, {"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}},
            {"type": "session.update", "session": {"instructions": "x"}}):
        errors = run.client(event)
        assert types(errors) == ["error"]
    assert run.events[1]["error"]["code"] == "unsupported_event"
    assert run.events[1]["error"]["event_id"] == "r1"
    assert "transcription session" in run.events[3]["error"]["message"]
    assert run.client({"type": "input_audio_buffer.append", "audio": PCM_200MS}) == []


def test_kind_is_fixed_once_something_happened() -> None:
    run = Run(model="live", dialect="beta", kind="realtime")
    run.client({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}})
    errors = run.client({"type": "transcription_session.update", "session": {}})
    assert types(errors) == ["error"] and "not allowed" in errors[0]["error"]["message"]


@pytest.mark.parametrize("bad", [{"language": "english please"}, {"model": 7}])
def test_bad_transcription_settings_get_a_precise_error(bad: dict[str, Any]) -> None:
    run = Run()
    errors = run.client({"type": "transcription_session.update", "session": {"input_audio_transcription": bad}})
    assert types(errors) == ["error"] and errors[0]["error"]["param"].startswith("session.input_audio_transcription")


def test_a_lost_connection_fails_the_utterances_it_owed() -> None:
    run = Run()
    run.client({"type": "transcription_session.update", "session": {"turn_detection": None}})
    run.client({"type": "input_audio_buffer.append", "audio": PCM_200MS})
    run.gemini({"setupComplete": {}})
    item = run.client({"type": "input_audio_buffer.commit"})[0]["item_id"]
    events = run._take(run.t.upstream_closed(1011, "internal"))
    failed = [e for e in events if e["type"].endswith("transcription.failed")]
    assert failed and failed[0]["item_id"] == item and failed[0]["error"]["code"] == "upstream_closed"
    assert not run.t.awaiting_model
