"""The other two session kinds end to end: transcription and translation sessions, from the official `openai`
SDK (GA, beta, and `client.realtime.translations`) and raw websockets, through the relay, to the emulator's
transcription and translation models; every event validated against the SDK's types."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from openai import OpenAI
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from tests.clients import Conn, types
from tests.schemas import validate_gemini
from tests.stack import MASTER_KEY, TRANSPORTS, Stack
from tests.test_e2e_audio import silence, sine

CHUNK = 20 * 48  # bytes of 20 ms of 24 kHz pcm16


@pytest.fixture(scope="module", params=TRANSPORTS)
def kinds_stack(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("kinds")
    vertex = {"vertex_project": "test-project", "vertex_credentials": str(tmp / "sa.json"), "api_base": "EMULATOR"}
    studio = {"api_key": "studio-test-key", "api_base": "EMULATOR"}
    extra = [
        {"model_name": "stt", "litellm_params": {"model": "vertex_ai/gemini-3.5-transcribe-live-preview", **vertex}},
        {"model_name": "stt_studio", "litellm_params": {"model": "gemini/gemini-3.5-transcribe-live", **studio}},
        {"model_name": "translate", "litellm_params": {"model": "gemini/gemini-3.5-live-translate-preview",
                                                       **studio}},
        {"model_name": "live38", "litellm_params": {"model": "vertex_ai/gemini-3.8-live", **vertex}},
    ]
    s = Stack(tmp, transport=request.param, extra_models=extra, emulator_options={"bearer_token": None}).start()
    yield s
    s.stop()
    for message in s.upstream_messages():
        validate_gemini(message)


def utterance(ms: int = 600, quiet_ms: int = 800) -> bytes:
    """A spoken turn for the emulator's VAD: tone, then enough silence to end it."""
    return np.concatenate([sine(ms), silence(quiet_ms)]).tobytes()


def stream(c: Conn, pcm: bytes, kind: str = "input_audio_buffer.append") -> None:
    for i in range(0, len(pcm), CHUNK):
        c.send({"type": kind, "audio": base64.b64encode(pcm[i:i + CHUNK]).decode()})


def deltas(events: list[dict[str, Any]], kind: str) -> str:
    return "".join(e["delta"] for e in events if e["type"] == kind)


def bounded(conn: Any) -> Any:
    """The SDK connection's next message, failing after 15 s rather than hanging the suite."""
    return lambda: conn._connection.recv(timeout=15, decode=False)


@contextmanager
def ga(stack: Stack, **query: str) -> Iterator[Conn]:
    client = OpenAI(api_key=MASTER_KEY, base_url=stack.http_base)
    with client.realtime.connect(**({"model": query.pop("model")} if "model" in query else {}),
                                 extra_query=query) as conn:
        yield Conn(conn.send, bounded(conn), "ga")


@contextmanager
def beta(stack: Stack, model: str) -> Iterator[Conn]:
    client = OpenAI(api_key=MASTER_KEY, base_url=stack.http_base, websocket_base_url=stack.ws_base)
    with client.beta.realtime.connect(model=model, extra_query={"intent": "transcription"}) as conn:
        yield Conn(conn.send, bounded(conn), "beta")


@contextmanager
def translation(stack: Stack, model: str = "translate") -> Iterator[Conn]:
    client = OpenAI(api_key=MASTER_KEY, base_url=stack.http_base)
    with client.realtime.translations.connect(model=model) as conn:
        yield Conn(conn.send, bounded(conn), "translation")


def no_responses(events: list[dict[str, Any]]) -> None:
    assert not [e["type"] for e in events if e["type"].startswith("response.")]


# ---------------------------------------------------------------- transcription sessions


def test_ga_sdk_without_a_model_transcribes_under_server_vad_with_the_named_transcription_model(kinds_stack):
    with ga(kinds_stack) as c:
        assert c.recv()["session"]["type"] == "realtime"  # no model, no intent: the default realtime model
        c.send({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
            "transcription": {"model": "stt", "language": "en"}}}}})
        updated = c.until("session.updated")[-1]
        assert updated["session"]["type"] == "transcription"
        assert updated["session"]["audio"]["input"]["turn_detection"]["type"] == "server_vad"
        stream(c, utterance())
        events = c.until("conversation.item.input_audio_transcription.completed")
    assert types(events)[:5] == ["input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                                 "input_audio_buffer.committed", "conversation.item.added", "conversation.item.done"]
    done = events[-1]
    assert done["transcript"] == "audio 600 ms" == deltas(events, "conversation.item.input_audio_transcription.delta")
    assert done["item_id"] == events[2]["item_id"]
    assert done["usage"]["type"] == "tokens" and done["usage"]["input_tokens"] > 0
    no_responses(c.events)
    setup = kinds_stack.latest_upstream()[0]["setup"]
    assert setup["model"].endswith("/gemini-3.5-transcribe-live-preview")
    assert setup["generationConfig"]["responseModalities"] == ["TEXT"]
    assert setup["inputAudioTranscription"] == {"languageCodes": ["en"]}


def test_ga_sdk_manual_commits_each_get_their_transcript_in_order(kinds_stack):
    with ga(kinds_stack, model="stt_studio") as c:
        assert c.recv()["session"]["type"] == "transcription"  # a transcription model opens one
        c.send({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
            "turn_detection": None}}}})
        c.until("session.updated")
        items = []
        for ms in (300, 500):
            stream(c, sine(ms).tobytes())
            c.send({"type": "input_audio_buffer.commit"})
            items.append(c.until("input_audio_buffer.committed")[-1]["item_id"])
        def completed() -> dict[str, str]:  # (a transcript may come while the next commit is awaited)
            return {e["item_id"]: e["transcript"] for e in c.events
                    if e["type"] == "conversation.item.input_audio_transcription.completed"}

        while len(completed()) < 2:
            c.recv()
        got = completed()
        c.send({"type": "response.create", "event_id": "evt_r"})
        error = c.until("error")[-1]["error"]
    assert got == {items[0]: "audio 300 ms", items[1]: "audio 500 ms"}
    assert error["code"] == "unsupported_event" and error["event_id"] == "evt_r"
    no_responses(c.events)


def test_beta_sdk_with_intent_transcription(kinds_stack):
    with beta(kinds_stack, "stt") as c:
        created = c.recv()
        assert created["type"] == "transcription_session.created"
        c.send({"type": "transcription_session.update", "session": {
            "input_audio_transcription": {"model": "gpt-4o-transcribe", "prompt": "", "language": "en"},
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}}})
        updated = c.until("transcription_session.updated")[-1]["session"]
        assert updated["input_audio_transcription"]["model"] == "gpt-4o-transcribe"
        stream(c, utterance(400))
        events = c.until("conversation.item.input_audio_transcription.completed")
    assert "input_audio_buffer.committed" in types(events) and "conversation.item.created" in types(events)
    assert events[-1]["transcript"] == "audio 400 ms"
    no_responses(c.events)


def test_a_conversation_model_transcribes_through_input_transcription_and_says_nothing(kinds_stack):
    url = f"{kinds_stack.ws_base}/realtime?model=live38&intent=transcription"
    with ws_connect(url, additional_headers={"Authorization": f"Bearer {MASTER_KEY}"}, max_size=None) as ws:
        # a raw client without headers: its first event decides the dialect; until then `session.created` carries
        # the transcription session in both shapes, valid for both SDKs
        c = Conn(lambda e: ws.send(json.dumps(e)), lambda: ws.recv(timeout=15), "both")
        created = c.recv()
        assert created["type"] == "session.created" and created["session"]["type"] == "transcription"
        c.dialect = "beta"
        c.send({"type": "transcription_session.update", "session": {
            "input_audio_transcription": {"model": "gpt-4o-mini-transcribe"}}})
        c.until("transcription_session.updated")
        stream(c, utterance(500))
        events = c.until("conversation.item.input_audio_transcription.completed")
    assert events[-1]["transcript"] == "audio 500 ms"
    assert events[-1]["usage"]["type"] == "duration"  # Gemini's usage is its (dropped) reply's: the audio counts
    no_responses(c.events)
    setup = kinds_stack.latest_upstream()[0]["setup"]
    assert setup["model"].endswith("/gemini-3.8-live") and "systemInstruction" in setup


# ---------------------------------------------------------------- translation sessions


def test_translation_sdk_gets_both_transcripts_and_translated_audio_then_closes(kinds_stack):
    with translation(kinds_stack) as c:
        created = c.recv()
        assert created["type"] == "session.created" and created["session"]["type"] == "translation"
        assert created["session"]["model"] == "translate"
        c.send({"type": "session.update", "session": {"audio": {"output": {"language": "es"},
                                                                "input": {"transcription": {"model": "whisper"}}}}})
        assert c.until("session.updated")[-1]["session"]["audio"]["output"]["language"] == "es"
        stream(c, utterance(600), "session.input_audio_buffer.append")
        events = []
        while "[es] audio 600 ms" != deltas(events, "session.output_transcript.delta"):
            events.append(c.recv())
        c.send({"type": "session.close"})
        events += c.until("session.closed")
    assert deltas(events, "session.input_transcript.delta") == "audio 600 ms"
    audio = [e for e in events if e["type"] == "session.output_audio.delta"]
    assert audio and all(e["sample_rate"] == 24000 and e["format"] == "pcm16" for e in audio)
    assert [e["elapsed_ms"] for e in audio] == sorted(e["elapsed_ms"] for e in audio)
    setup = kinds_stack.latest_upstream()[0]["setup"]
    assert setup["generationConfig"]["translationConfig"] == {"targetLanguageCode": "es"}


def test_translation_languages_are_checked(kinds_stack):
    with translation(kinds_stack) as c:
        c.recv()
        c.send({"type": "session.update", "event_id": "u1", "session": {"audio": {"output": {"language": "klingon"}}}})
        error = c.until("error")[-1]["error"]
        c.send({"type": "session.input_audio_buffer.append", "audio": base64.b64encode(bytes(960)).decode()})
        refused = c.until("error")[-1]["error"]
    assert error["param"] == "session.audio.output.language" and error["event_id"] == "u1"
    assert refused["code"] == "missing_required_parameter"


# ---------------------------------------------------------------- routes


def refused(stack: Stack, path: str) -> tuple[int, dict[str, Any]]:
    with pytest.raises(InvalidStatus) as info, ws_connect(f"ws://127.0.0.1:{stack.port}{path}", additional_headers={
            "Authorization": f"Bearer {MASTER_KEY}"}):
        pass
    return info.value.response.status_code, json.loads(info.value.response.body)["error"]


def test_a_conversation_model_is_refused_on_the_translation_route_with_where_to_go(kinds_stack):
    status, error = refused(kinds_stack, "/v1/realtime/translations?model=live38")
    assert status == 400 and error["code"] == "unsupported_model"
    assert "/v1/realtime?model=live38" in error["message"]
    status, error = refused(kinds_stack, "/v1/realtime/translations?model=nope")
    assert status == 404 and error["code"] == "model_not_found"


def test_the_translation_route_without_a_model_takes_the_translation_model(kinds_stack):
    url = f"ws://127.0.0.1:{kinds_stack.port}/v1/realtime/translations"
    with ws_connect(url, additional_headers={"Authorization": f"Bearer {MASTER_KEY}"}) as ws:
        assert json.loads(ws.recv(timeout=10))["session"]["model"] == "translate"


def test_models_lists_each_kind(kinds_stack):
    import urllib.request

    request = urllib.request.Request(f"{kinds_stack.http_base}/models",
                                     headers={"Authorization": f"Bearer {MASTER_KEY}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        kinds = {m["id"]: m["kind"] for m in json.load(response)["data"]}
    assert kinds["stt"] == kinds["stt_studio"] == "transcription"
    assert kinds["translate"] == "translation" and kinds["live38"] == "realtime"


def test_an_openai_transcription_model_name_gets_the_first_transcription_model(kinds_stack):
    with ga(kinds_stack) as c:
        c.recv()
        c.send({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
            "transcription": {"model": "gpt-4o-transcribe"}, "turn_detection": None}}}})
        c.until("session.updated")
        stream(c, sine(200).tobytes())
        c.send({"type": "input_audio_buffer.commit"})
        assert c.until("conversation.item.input_audio_transcription.completed")[-1]["transcript"] == "audio 200 ms"
    assert kinds_stack.latest_upstream()[0]["setup"]["model"].endswith("/gemini-3.5-transcribe-live-preview")


@pytest.fixture(scope="module")
def goaway_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Gemini says goAway after every translated segment: each next segment is on a resumed connection."""
    extra = [{"model_name": "translate", "litellm_params": {
        "model": "gemini/gemini-3.5-live-translate-preview", "api_key": "studio-test-key", "api_base": "EMULATOR"}}]
    s = Stack(tmp_path_factory.mktemp("goaway"), extra_models=extra,
              emulator_options={"bearer_token": None, "goaway_after_turns": 1}).start()
    yield s
    s.stop()


def test_a_translation_outlives_its_gemini_connections(goaway_stack):
    with translation(goaway_stack) as c:
        c.recv()
        c.send({"type": "session.update", "session": {"audio": {"output": {"language": "fr"}}}})
        c.until("session.updated")
        for ms in (500, 300, 400):
            stream(c, utterance(ms), "session.input_audio_buffer.append")
            said = ""
            while said != f"[fr] audio {ms} ms":
                event = c.recv()
                assert event["type"] != "error", event
                if event["type"] == "session.output_transcript.delta":
                    said += event["delta"]
    connections = [m for conn in goaway_stack.emulator.by_connection for m in conn[:1] if "setup" in m]
    assert len(connections) >= 3
    assert all("handle" in m["setup"]["sessionResumption"] for m in connections[1:])


def test_beta_sdk_manual_commit(kinds_stack):
    with beta(kinds_stack, "stt_studio") as c:
        assert c.recv()["type"] == "transcription_session.created"
        c.send({"type": "transcription_session.update", "session": {"turn_detection": None}})
        assert c.until("transcription_session.updated")[-1]["session"]["turn_detection"] is None
        stream(c, sine(400).tobytes())
        c.send({"type": "input_audio_buffer.commit"})
        events = c.until("conversation.item.input_audio_transcription.completed")
    assert types(events)[:2] == ["input_audio_buffer.committed", "conversation.item.created"]
    assert events[-1]["transcript"] == "audio 400 ms" and events[-1]["usage"]["type"] == "tokens"
    assert events[-1]["item_id"] == events[0]["item_id"]
    no_responses(c.events)


@pytest.mark.parametrize("quiet_ms", [0, 800])
def test_close_translates_every_segment_appended_however_fast_and_however_it_ends(kinds_stack, quiet_ms):
    """session.close flushes: segments appended faster than real time, and speech with no pause after it (the relay
    appends one), are translated before session.closed."""
    with translation(kinds_stack) as c:
        c.recv()
        c.send({"type": "session.update", "session": {"audio": {"output": {"language": "es"}}}})
        c.until("session.updated")
        pcm = np.concatenate([sine(300), silence(800), sine(500), silence(800), sine(400), silence(quiet_ms)])
        stream(c, pcm.tobytes(), "session.input_audio_buffer.append")
        c.send({"type": "session.close"})
        events = c.until("session.closed")
    assert deltas(events, "session.output_transcript.delta") == \
        "[es] audio 300 ms[es] audio 500 ms[es] audio 400 ms"


def test_the_sdk_lists_and_retrieves_models_with_their_kind(kinds_stack):
    import openai

    client = OpenAI(api_key=MASTER_KEY, base_url=kinds_stack.http_base)
    assert {m.id for m in client.models.list()} >= {"stt", "translate", "live38"}
    model = client.models.retrieve("translate")
    assert model.id == "translate" and model.kind == "translation"  # type: ignore[attr-defined]
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")
    with pytest.raises(openai.AuthenticationError):
        OpenAI(api_key="wrong", base_url=kinds_stack.http_base).models.retrieve("stt")
