"""Explicit sequences the state machine reaches only rarely, and the bugs it found (strict xfails).

Every Output still goes through `Checker`, so each test also checks schemas and the response lifecycle.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from conformance.checker import NO_ECHO, Checker
from conformance.frames import deltas, pcm16, types
from relay.ids import counting_ids
from relay.models import caps_for
from relay.translate.translator import Translator

TEXT_MODEL = "gemini-2.0-flash-live-preview-04-09"


class Session:
    """One Translator, with every Output checked."""

    def __init__(self, dialect: str | None = "beta", text: bool = True, max_frame_bytes: int = 1 << 24) -> None:
        self.t = Translator(counting_ids(), caps_for(TEXT_MODEL), dialect=dialect,  # type: ignore[arg-type]
                            max_frame_bytes=max_frame_bytes)
        self.check = Checker()
        self.events = self.check.feed(self.t.start(), dialect, echo=NO_ECHO)
        if text:
            patch = {"type": "realtime", "output_modalities": ["text"]} if dialect == "ga" else {"modalities": ["text"]}
            assert types(self.send({"type": "session.update", "session": patch})) == ["session.updated"]

    def send(self, event: dict[str, Any] | bytes) -> list[dict[str, Any]]:
        frame = event if isinstance(event, bytes) else orjson.dumps(event)
        try:
            data = event if isinstance(event, dict) else orjson.loads(event)
        except orjson.JSONDecodeError:
            data = None
        eid = data.get("event_id") if isinstance(data, dict) else None
        self.out = self.t.client_frame(frame)
        return self.check.feed(self.out, self.t.dialect, echo=eid if isinstance(eid, str) else None)

    def gemini(self, message: dict[str, Any], requested: bool = False) -> list[dict[str, Any]]:
        # the ledger learns of answers and handles first, as the state machine tells it (checker.Ledger)
        if ("serverContent" in message or "toolCall" in message) and self.check.upstream == "ready":
            self.check.ledger.answered()
        upd = message.get("sessionResumptionUpdate")
        if upd and upd.get("resumable") and upd.get("newHandle") and self.check.upstream == "ready":
            self.check.ledger.handle(upd["newHandle"])
        flush = "setupComplete" in message and self.check.upstream == "setup_sent"
        if flush:
            self.check.upstream_ready()
        self.out = self.t.upstream_frame(orjson.dumps(message))
        return self.check.feed(self.out, self.t.dialect, requested=requested, flush=flush)

    def say(self, *chunks: str) -> list[dict[str, Any]]:
        return [e for c in chunks for e in self.gemini({"serverContent": {"modelTurn": {"parts": [{"text": c}]}}})]

    def turn_complete(self, requested: bool = False, **extra: Any) -> list[dict[str, Any]]:
        return self.gemini({"serverContent": {"turnComplete": True}, **extra}, requested=requested)


def user(text: str, **extra: Any) -> dict[str, Any]:
    return {"type": "conversation.item.create", **extra,
            "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}}


def texts_of(turns: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(t["role"], "".join(p.get("text", "") for p in t["parts"])) for t in turns]


# ---------------------------------------------------------------- tricky but correct sequences


@pytest.mark.parametrize("dialect", [None, "beta", "ga"])
def test_response_create_before_any_input_then_input_text_gives_exactly_one_response(dialect: str | None) -> None:
    s = Session(dialect, text=False)
    shape = {"output_modalities": ["text"]} if dialect == "ga" else {"modalities": ["text"]}
    assert s.send({"type": "response.create", "response": {**shape, "instructions": "Please assist."}}) == []
    events = s.send({"type": "input_text", "text": "hey there!"})
    assert types(events)[-1] == "response.created" and types(events).count("response.created") == 1
    setup = s.out.connect.setup["setup"]
    assert setup["generationConfig"]["responseModalities"] == ["TEXT"]
    assert setup["systemInstruction"]["parts"][0]["text"] == "Please assist."
    assert s.gemini({"setupComplete": {}}) == []
    assert s.out.upstream == [{"clientContent": {"turns": [{"role": "user", "parts": [{"text": "hey there!"}]}],
                                                 "turnComplete": True}}]
    s.say("Hi", "!")
    done = s.turn_complete()[-1]["response"]
    assert done["status"] == "completed" and done["output"][0]["content"][0]["text"] == "Hi!"
    assert types(s.check.events).count("response.created") == 1


def test_cancel_then_turn_complete_of_the_cancelled_turn_then_a_new_turn() -> None:
    s = Session("ga")
    s.send({"type": "input_text", "text": "one"})
    s.gemini({"setupComplete": {}})
    s.say("par", "tial")
    events = s.send({"type": "response.cancel", "event_id": "c1"})
    done = events[-1]["response"]
    assert done["status"] == "cancelled" and done["status_details"]["reason"] == "client_cancelled"
    assert done["output"][0]["status"] == "incomplete" and done["output"][0]["content"][0]["text"] == "partial"
    assert s.say("the rest of the cancelled turn") == []
    # a new request while the cancelled turn still streams waits for its end
    assert types(s.send({**user("two"), "event_id": "u2"})) == ["conversation.item.added", "conversation.item.done"]
    assert s.send({"type": "response.create"}) == []
    events = s.turn_complete(requested=True)
    assert types(events) == ["response.created"]
    assert texts_of(s.out.upstream[0]["clientContent"]["turns"]) == [("user", "two")]
    assert "".join(deltas(s.say("answer"), "response.text.delta")) == "answer"
    done = s.turn_complete()[-1]["response"]
    assert done["status"] == "completed" and done["output"][0]["content"][0]["text"] == "answer"


def test_cancel_before_setup_complete_drops_that_turn_and_the_next_one_works() -> None:
    s = Session("beta")
    s.send({"type": "input_text", "text": "one"})
    assert s.send({"type": "response.cancel"})[-1]["response"]["status"] == "cancelled"
    s.gemini({"setupComplete": {}})  # the queued turn still goes: Gemini has no cancel
    assert s.say("ignored") == [] and s.turn_complete() == []
    events = s.send({"type": "input_text", "text": "two"})
    assert types(events)[-1] == "response.created"
    assert "".join(deltas(s.say("ok"), "response.text.delta")) == "ok"
    assert s.turn_complete()[-1]["response"]["status"] == "completed"


def test_interrupted_turn_complete_is_swallowed_and_the_next_turn_completes() -> None:
    s = Session("beta")
    s.send({"type": "input_text", "text": "tell me a story"})
    s.gemini({"setupComplete": {}})
    s.say("Once upon")
    done = s.gemini({"serverContent": {"interrupted": True}})[-1]["response"]
    assert done["status"] == "cancelled" and done["status_details"]["reason"] == "turn_detected"
    assert s.turn_complete() == []
    s.send({"type": "input_text", "text": "shorter please"})
    s.say("The end.")
    assert s.turn_complete()[-1]["response"]["output"][0]["content"][0]["text"] == "The end."


def test_upstream_1011_fails_the_response_and_the_next_turn_replays_the_conversation() -> None:
    s = Session("ga")
    s.send({"type": "input_text", "text": "first"})
    s.gemini({"setupComplete": {}})
    s.say("half an ans")
    events = s.check.feed(s.t.upstream_closed(1011, "Internal error occurred."), "ga", requested=False)
    assert events[0]["error"]["type"] == "server_error" and events[0]["error"]["code"] == "upstream_closed"
    assert "1011" in events[0]["error"]["message"] and "Internal error occurred." in events[0]["error"]["message"]
    assert events[-1]["response"]["status"] == "failed"
    s.send({"type": "input_text", "text": "again"})
    assert s.out.connect is not None, "a fresh upstream connection"
    s.gemini({"setupComplete": {}})
    turns = s.out.upstream[0]["clientContent"]["turns"]
    assert texts_of(turns) == [("user", "first"), ("model", "half an ans"), ("user", "again")]


@pytest.mark.parametrize("spelling", ["responseTokenCount", "candidatesTokenCount"])
def test_usage_is_read_in_both_spellings(spelling: str) -> None:
    s = Session("beta")
    s.send({"type": "input_text", "text": "count"})
    s.gemini({"setupComplete": {}})
    s.say("one two")
    usage = {"promptTokenCount": 7, spelling: 5, "thoughtsTokenCount": 2, "totalTokenCount": 14,
             "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 7}]}
    got = s.turn_complete(usageMetadata=usage)[-1]["response"]["usage"]
    assert (got["input_tokens"], got["output_tokens"], got["total_tokens"]) == (7, 7, 14)
    assert got["input_token_details"]["text_tokens"] == 7


@pytest.mark.parametrize(("reason", "status", "why"), [
    ("MAX_TOKENS", "incomplete", "max_output_tokens"), ("GENERATED_AUDIO_SAFETY", "incomplete", "content_filter"),
    ("RESPONSE_REJECTED", "incomplete", "content_filter"), ("MALFORMED_FUNCTION_CALL", "failed", None),
])
def test_turn_complete_reason_sets_the_response_status(reason: str, status: str, why: str | None) -> None:
    s = Session("ga")
    s.send({"type": "input_text", "text": "x"})
    s.gemini({"setupComplete": {}})
    s.say("y")
    done = s.gemini({"serverContent": {"turnComplete": True, "turnCompleteReason": reason}})[-1]["response"]
    assert done["status"] == status and done["status_details"]["reason"] == why


def test_thought_parts_and_generation_complete_send_nothing() -> None:
    s = Session("beta")
    s.send({"type": "input_text", "text": "think"})
    s.gemini({"setupComplete": {}})
    events = s.gemini({"serverContent": {"modelTurn": {"parts": [{"text": "hmm", "thought": True}, {"text": "A"}]}}})
    assert deltas(events, "response.text.delta") == ["A"]
    assert s.gemini({"serverContent": {"generationComplete": True}}) == []
    assert s.turn_complete()[-1]["response"]["output"][0]["content"][0]["text"] == "A"


def test_bad_first_frames_leave_the_dialect_open_until_a_json_object_arrives() -> None:
    s = Session(None, text=False)
    for frame in (b"{not json", b"[1]", b"x" * 200):
        assert types(s.send(frame)) == ["error"] and s.t.dialect is None
    small = Session(None, text=False, max_frame_bytes=100)
    err = small.send(orjson.dumps(user("y" * 200, event_id="big")))[0]["error"]
    assert err["code"] == "message_too_large" and small.t.dialect is None
    assert err["event_id"] == "big"  # found in the frame's head, though the frame is too large to parse
    assert types(s.send({"type": "session.update", "session": {"type": "realtime"}})) == ["session.updated"]
    assert s.t.dialect == "ga"


# ---------------------------------------------------------------- bugs the properties found


def test_held_response_create_is_not_released_while_a_response_is_active() -> None:
    """Found by the state machine (fixed in b2fa471): the held response.create used to be released by the next
    user input even while another response was active: two overlapping responses, one never done."""
    s = Session("beta")
    assert s.send({"type": "response.create"}) == []  # held: nothing to answer yet
    s.send({"type": "conversation.item.create", "item": {"type": "message", "role": "assistant",
                                                         "content": [{"type": "text", "text": "Hi, how can I help?"}]}})
    assert types(s.send({"type": "response.create"})) == ["response.created"]  # answers the assistant turn
    events = s.send(user("hello"))
    assert "response.created" not in types(events)


def test_response_metadata_with_non_string_values_is_rejected() -> None:
    """Found by the schema invariant (fixed in b2fa471): non-string metadata values used to reach
    response.created, which then failed the SDK schema (Metadata is dict[str, str])."""
    s = Session("beta")
    s.send(user("hello"))
    events = s.send({"type": "response.create", "event_id": "m1", "response": {"metadata": {"attempt": 1}}})
    assert types(events) == ["error"] and events[0]["error"]["param"] == "response.metadata"


def test_turn_detection_change_after_setup_does_not_send_activity_signals_to_a_vad_connection() -> None:
    """Found by the state machine (fixed in b2fa471): after turn_detection changed to null on a live VAD
    upstream, append used to send realtimeInput.activityStart, which Gemini rejects with detection on."""
    s = Session("beta")
    s.send({"type": "input_text", "text": "hello"})
    s.gemini({"setupComplete": {}})
    s.say("hi")
    s.turn_complete()
    s.send({"type": "session.update", "session": {"turn_detection": None}})
    assert s.send({"type": "input_audio_buffer.append", "audio": pcm16(20)}) == []


def test_upstream_fault_with_open_activity_starts_clean_on_the_next_connection() -> None:
    """Found by the state machine (fixed in b2fa471): an open manual activity used to outlive an upstream
    fault, so the next connection got activityEnd without activityStart and turnComplete=false."""
    s = Session("beta")
    s.send({"type": "session.update", "session": {"turn_detection": None}})
    s.send({"type": "input_audio_buffer.append", "audio": pcm16(50)})  # opens the upstream, activityStart queued
    s.check.feed(s.t.upstream_closed(1011, "Internal error occurred."), "beta", requested=False)
    s.send({"type": "input_text", "text": "are you there"})
    s.gemini({"setupComplete": {}})
    assert s.out.upstream[-1] == {"clientContent": {"turns": [{"role": "user", "parts": [{"text": "are you there"}]}],
                                                    "turnComplete": True}}


B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def test_generated_item_ids_never_collide_with_client_item_ids() -> None:
    # A client that picks ids in the relay's pattern (visible in every event id) must not get two
    # items with one id.
    s = Session("beta")
    stem, counter = s.check.events[-1]["event_id"][6:19], s.check.events[-1]["event_id"][19:]
    now = sum(B62.index(c) * 62**i for i, c in enumerate(reversed(counter)))

    def future_id(n: int) -> str:
        return "item_" + stem + "".join(B62[(n // 62**i) % 62] for i in reversed(range(8)))

    for n in range(now + 100, now + 150):
        s.send({"type": "conversation.item.create", "item": {"id": future_id(n), "type": "message", "role": "system",
                                                             "content": [{"type": "input_text", "text": "note"}]}})
    for _ in range(20):
        s.send(user("hello"))  # the relay names these items itself


def test_audio_streamed_after_a_transcribed_turn_does_not_become_a_second_turn() -> None:
    """Found by the e2e VAD test once upstream frames were dispatched in batches: the user's turn ended at
    Gemini's input transcription, the microphone kept streaming, and the response's first delta used to
    announce a second speech_started/stopped/committed for the audio streamed meanwhile."""
    s = Session("ga", text=False)
    s.send({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
        "transcription": {"model": "whisper-1"}}}}})
    s.send({"type": "input_audio_buffer.append", "audio": pcm16(500)})
    s.gemini({"setupComplete": {}})
    turn = s.gemini({"serverContent": {"inputTranscription": {"text": "hello"}}})
    assert types(turn)[:3] == ["input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                               "input_audio_buffer.committed"]
    assert s.send({"type": "input_audio_buffer.append", "audio": pcm16(100)}) == []
    reply = s.say("Hi")
    assert not [t for t in types(reply) if t.startswith("input_audio_buffer.")]
    s.gemini({"serverContent": {"inputTranscription": {"finished": True}}})
    s.turn_complete()
    # The next transcribed turn starts from the audio streamed since, as its own user turn.
    s.send({"type": "input_audio_buffer.append", "audio": pcm16(300)})
    nxt = s.gemini({"serverContent": {"inputTranscription": {"text": "again"}}})
    assert types(nxt)[0] == "input_audio_buffer.speech_started" and nxt[0]["audio_start_ms"] == 500


def test_speech_announced_before_an_upstream_fault_is_not_announced_twice() -> None:
    """Found by the state machine: a barge-in's speech_started, an upstream fault, then another barge-in
    used to send a second speech_started with no speech_stopped between them."""
    s = Session("ga", text=False)
    s.send({"type": "input_audio_buffer.append", "audio": pcm16(10)})
    s.gemini({"setupComplete": {}})
    assert types(s.gemini({"serverContent": {"interrupted": True}})) == ["input_audio_buffer.speech_started"]
    s.check.feed(s.t.upstream_closed(1011, ""), "ga", requested=False)
    s.send({"type": "input_audio_buffer.append", "audio": pcm16(10)})
    s.gemini({"setupComplete": {}})
    assert "input_audio_buffer.speech_started" not in types(s.gemini({"serverContent": {"interrupted": True}}))


def test_response_create_held_for_input_is_answered_by_a_committed_audio_item() -> None:
    """Found by the state machine: a response.create held before any input stayed held across an
    input_audio_buffer.commit (which counted as user input) and was released by the next user item, a
    response.created the client had no reason to expect there."""
    s = Session("beta")
    assert s.send({"type": "response.create"}) == []  # held: nothing to answer yet
    s.send({"type": "input_audio_buffer.append", "audio": pcm16(120)})
    events = s.send({"type": "input_audio_buffer.commit"})
    assert types(events)[0] == "input_audio_buffer.committed" and types(events)[-1] == "response.created"
    assert "response.created" not in types(s.send(user("hello")))
    s.gemini({"setupComplete": {}})
    assert s.out.upstream[-1] == {"clientContent": {"turnComplete": True}}  # answers the streamed audio


def test_a_commit_during_announced_speech_stops_it_before_the_next_speech_starts() -> None:
    """Found by the long state machine run: speech_started (a barge-in), then the client's commit, then another
    barge-in sent a second speech_started with no speech_stopped between (the pairing clients rely on)."""
    s = Session("beta", text=False)
    s.send({"type": "input_text", "text": "hi"})
    s.gemini({"setupComplete": {}})
    s.say("hello")
    s.turn_complete()
    s.send({"type": "input_audio_buffer.append", "audio": pcm16(150)})
    assert "input_audio_buffer.speech_started" in types(s.gemini({"serverContent": {"interrupted": True}}))
    events = s.send({"type": "input_audio_buffer.commit"})
    assert types(events)[:2] == ["input_audio_buffer.speech_stopped", "input_audio_buffer.committed"]
    assert events[0]["item_id"] == events[1]["item_id"]
    s.send({"type": "input_audio_buffer.append", "audio": pcm16(10)})
    assert "input_audio_buffer.speech_started" in types(s.gemini({"serverContent": {"interrupted": True}}))
