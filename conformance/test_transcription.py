"""Transcription sessions under generated sessions: any order of appends, commits, Gemini's transcript pieces,
turn ends, voice activity, usage, refused events and lost connections, in both dialects, on a transcription
model and on a conversation model.

What must hold at every step: each event validates against the dialect's SDK types; no `response.*` event is
ever sent; every utterance (committed item) ends exactly once, completed or failed, and only after it was
committed; a completed transcript is its deltas joined; the audio Gemini is sent is the audio appended (bytes
in = bytes out) while no connection was lost or switched.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from conformance.frames import pcm16
from relay.ids import counting_ids
from relay.models import GeminiOptions, caps_for
from relay.translate import Output, Translator
from tests.schemas import validate_gemini, validate_openai

MODELS = {"stt": caps_for("gemini-3.5-transcribe-live-preview", "vertex", None),
          "live": caps_for("gemini-3.8-live", "vertex", None)}
TRANSCRIBERS = {name: (caps, GeminiOptions()) for name, caps in MODELS.items()}
words = st.text(alphabet="abc xyz", min_size=1, max_size=8)

steps = st.lists(st.one_of(
    st.tuples(st.just("append"), st.sampled_from([10, 60, 150, 250])),
    st.tuples(st.just("commit"), st.none()),
    st.tuples(st.just("clear"), st.none()),
    st.tuples(st.just("piece"), st.tuples(st.sampled_from(["input", "model"]), words, st.booleans())),
    st.tuples(st.just("turn_complete"), st.booleans()),
    st.tuples(st.just("activity"), st.sampled_from(["ACTIVITY_START", "ACTIVITY_END"])),
    st.tuples(st.just("handle"), st.integers(0, 9)),
    st.tuples(st.just("refused"), st.sampled_from(["response.create", "response.cancel", "conversation.item.create",
                                                   "conversation.item.truncate"])),
    st.tuples(st.just("closed"), st.sampled_from([1000, 1006, 1007, 1011])),
    st.tuples(st.just("update"), st.sampled_from([None, {"type": "server_vad"}])),
), max_size=40)


class Session:
    def __init__(self, model: str, dialect: str, manual: bool) -> None:
        self.dialect = dialect
        self.t = Translator(counting_ids(), MODELS[model], dialect=dialect, kind="transcription", model=model,
                            transcribers=TRANSCRIBERS)
        self.open: dict[str, list[str]] = {}  # committed utterance -> deltas so far
        self.ended: set[str] = set()
        self.bytes_in = self.bytes_up = 0
        self.lost = False  # a connection was lost: audio may be dropped or resent
        self.ready = False
        self.take(self.t.start())
        patch = {"turn_detection": None} if manual else {}
        if dialect == "ga":
            self.client({"type": "session.update", "session": {
                "type": "transcription", "audio": {"input": {"turn_detection": None} if manual else {}}}})
        else:
            self.client({"type": "transcription_session.update", "session": patch})

    def client(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        return self.take(self.t.client_frame(orjson.dumps(event)))

    def gemini(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        return self.take(self.t.upstream_frame(orjson.dumps(message)))

    def take(self, out: Output) -> list[dict[str, Any]]:
        events = [orjson.loads(b) for b in out.client]
        for event in events:
            validate_openai(event, self.dialect)
            self.check(event)
        for message in out.upstream:
            validate_gemini(message)
            audio = message.get("realtimeInput", {}).get("audio")
            if audio is not None:
                self.bytes_up += len(base64.b64decode(audio["data"]))
        if out.connect is not None:
            setup = out.connect.setup["setup"]
            validate_gemini(out.connect.setup)
            assert "inputAudioTranscription" in setup and "tools" not in setup
            self.ready = False
        return events

    def check(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        assert not kind.startswith("response."), "a transcription session never responds"
        if kind == "input_audio_buffer.committed":
            assert event["item_id"] not in self.open and event["item_id"] not in self.ended
            self.open[event["item_id"]] = []
        elif kind.startswith("conversation.item.input_audio_transcription."):
            item = event["item_id"]
            assert item in self.open, f"{kind} for {item}, which is not a committed utterance still open"
            if kind.endswith(".delta"):
                self.open[item].append(event["delta"])
            else:
                deltas = self.open.pop(item)
                self.ended.add(item)
                if kind.endswith(".completed"):
                    assert event["transcript"] == "".join(deltas).strip()
                    assert event["usage"]["type"] in ("tokens", "duration")


@given(model=st.sampled_from(list(MODELS)), dialect=st.sampled_from(["beta", "ga"]), manual=st.booleans(),
       steps=steps)
def test_generated_transcription_sessions_keep_their_invariants(model: str, dialect: str, manual: bool,
                                                                 steps: list[tuple[str, Any]]) -> None:
    s = Session(model, dialect, manual)
    tag = 0
    for op, arg in steps:
        if op == "append":
            tag += 1
            audio = pcm16(arg)
            events = s.client({"type": "input_audio_buffer.append", "audio": audio})
            assert events == []
            s.bytes_in += len(base64.b64decode(audio))
        elif op in ("commit", "clear"):
            events = s.client({"type": f"input_audio_buffer.{op}"})
            assert {e["type"] for e in events} <= {"input_audio_buffer.committed", "conversation.item.created",
                                                   "conversation.item.added", "conversation.item.done",
                                                   "input_audio_buffer.speech_stopped", "input_audio_buffer.cleared",
                                                   "error"}
        elif op == "refused":
            events = s.client({"type": arg, "event_id": "evt"})
            assert [e["type"] for e in events] == ["error"] and events[0]["error"]["event_id"] == "evt"
        elif op == "update":
            key = "transcription_session.update" if dialect == "beta" else "session.update"
            session = {"turn_detection": arg} if dialect == "beta" else {
                "type": "transcription", "audio": {"input": {"turn_detection": arg}}}
            assert [e["type"] for e in s.client({"type": key, "session": session})][-1].endswith("updated")
        elif s.t._upstream == "none":
            continue  # Gemini speaks only on a connection
        elif not s.ready:
            s.ready = True  # (before: a switch waiting for it asks for the next connection)
            s.gemini({"setupComplete": {}})
        elif op == "piece":
            source, text, finished = arg
            content = {"inputTranscription": {"text": text, "finished": finished}} if source == "input" \
                else {"modelTurn": {"parts": [{"text": text}]}}
            s.gemini({"serverContent": content})
        elif op == "turn_complete":
            usage = {"usageMetadata": {"promptTokenCount": 3, "responseTokenCount": 1, "totalTokenCount": 4}}
            s.gemini({"serverContent": {"turnComplete": True}, **(usage if arg else {})})
        elif op == "activity":
            s.gemini({"voiceActivity": {"voiceActivityType": arg}})
        elif op == "handle":
            s.gemini({"sessionResumptionUpdate": {"newHandle": f"h{arg}", "resumable": True}})
        elif op == "closed":
            s.lost = True
            s.take(s.t.upstream_closed(arg, ""))
            assert not s.t._transcripts_owed, "a lost connection owes no transcript"
    if not s.lost and s.t._upstream != "none":
        for _ in range(3):  # a switch waiting for the connection may ask for the next one at its setupComplete
            if not s.ready:
                s.ready = True
                s.gemini({"setupComplete": {}})
        assert s.ready
        # every appended byte reaches Gemini; a switch gives the next connection what no handle covered again
        assert s.bytes_up == s.bytes_in if not s.t.switches else s.bytes_up >= s.bytes_in
