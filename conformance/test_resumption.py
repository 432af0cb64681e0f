"""Sessions across Gemini connections (relay/translate/resumption.py): explicit sequences the state machine
reaches rarely, and regressions for the bugs found here and by the state machine.  Every Output goes through
`Checker`, whose `Ledger` checks handles, lost and repeated input, and silence between a Connect and its
setupComplete.
"""

from __future__ import annotations

from typing import Any

import attrs
import orjson
import pytest

from conformance.checker import NO_ECHO, Checker
from conformance.frames import tagged_pcm16, types
from conformance.test_regressions import TEXT_MODEL, Session
from relay.audio import InputConverter
from relay.ids import counting_ids
from relay.models import caps_for
from relay.translate.translator import Translator
from tests.schemas import validate_gemini


class Resuming(Session):
    """`Session` with a ledger that tells appended audio apart, and helpers for handles and closes."""

    def __init__(self, manual: bool = False, context_update: bool = False) -> None:
        # Session.__init__ with these caps (it takes none)
        self.t = Translator(counting_ids(), attrs.evolve(caps_for(TEXT_MODEL), context_update=context_update),
                            dialect="beta")
        self.check = Checker()
        self.check.ledger.unique_audio = True
        self.events = self.check.feed(self.t.start(), "beta", echo=NO_ECHO)
        self.send({"type": "session.update", "session": {"modalities": ["text"]}})
        # (server VAD is the session default: manual turns must be asked for)
        self.send({"type": "session.update", "session": {"turn_detection": None if manual else {"type": "server_vad"}}})
        self.tag = 0

    def handle(self, handle: str) -> list[dict[str, Any]]:
        return self.gemini({"sessionResumptionUpdate": {"newHandle": handle, "resumable": True}})

    def append(self, ms: int = 60) -> str:
        self.tag += 1
        audio = tagged_pcm16(ms, self.tag)
        self.check.ledger.appended(InputConverter("pcm16").convert(audio))
        assert self.send({"type": "input_audio_buffer.append", "audio": audio}) == []
        return audio

    def closed(self, code: int = 1000) -> list[dict[str, Any]]:
        self.out = self.t.upstream_closed(code, "")
        return self.check.feed(self.out, "beta", requested=False)

    def first_turn(self, handle: str = "h1") -> None:
        self.send({"type": "input_text", "text": "one"})
        self.gemini({"setupComplete": {}})
        self.say("a")
        self.turn_complete()
        self.handle(handle)


# ---------------------------------------------------------------- correct sequences


def test_go_away_waits_for_the_handle_after_the_turn_then_resumes_with_it() -> None:
    s = Resuming()
    s.first_turn("h1")
    s.send({"type": "input_text", "text": "two"})
    assert s.gemini({"goAway": {"timeLeft": "30s"}}) == [] and s.out.connect is None  # a response is active
    s.say("b")
    s.turn_complete()
    assert s.out.connect is None, "the newest handle does not cover the second turn yet"
    s.handle("h2")
    assert s.out.connect is not None and s.out.connect.resume
    assert s.out.connect.setup["setup"]["sessionResumption"] == {"handle": "h2"}
    s.append()  # held until setupComplete
    assert s.out.upstream == []
    s.gemini({"setupComplete": {}})
    assert [m for m in s.out.upstream if "clientContent" in m] == [], "the handle covers both turns"


def test_go_away_between_turns_switches_at_once_and_resends_the_audio_since_the_handle() -> None:
    s = Resuming()
    s.first_turn("h1")
    audio = s.append()
    s.gemini({"goAway": {"timeLeft": "30s"}})
    assert s.out.connect.resume and s.out.connect.setup["setup"]["sessionResumption"] == {"handle": "h1"}
    s.gemini({"setupComplete": {}})
    assert [m["realtimeInput"]["audio"]["data"] for m in s.out.upstream] == InputConverter("pcm16").convert(audio)


def test_resumable_close_mid_turn_fails_the_response_and_the_turn_comes_once_more_as_context() -> None:
    s = Resuming()
    s.first_turn("h1")
    s.send({"type": "input_text", "text": "two"})
    s.say("b")
    events = s.closed(1011)
    assert types(events)[0] == "error" and events[0]["error"]["code"] == "upstream_closed"
    assert events[-1]["type"] == "response.done" and events[-1]["response"]["status"] == "failed"
    assert s.out.connect.resume and s.out.connect.setup["setup"]["sessionResumption"] == {"handle": "h1"}
    s.gemini({"setupComplete": {}})
    # The failed turn comes first, as context without turnComplete (the resumed model must not answer it).
    assert s.out.upstream == [{"clientContent": {"turns": [{"role": "user", "parts": [{"text": "two"}]}],
                                                 "turnComplete": False}}]
    s.send({"type": "input_text", "text": "three"})
    turns = s.out.upstream[-1]["clientContent"]["turns"]
    assert [t["parts"][0]["text"] for t in turns] == ["three"]


@pytest.mark.parametrize("code", [1007, 1008])
def test_non_resumable_close_is_an_upstream_fault_and_the_next_turn_replays_on_a_fresh_session(code: int) -> None:
    s = Resuming()
    s.first_turn("h1")
    events = s.closed(code)
    assert types(events) == ["error"] and events[0]["error"]["type"] == "invalid_request_error"
    assert s.out.connect is None and s.t.resumption_handle is None
    s.send({"type": "input_text", "text": "two"})
    assert not s.out.connect.resume and "handle" not in s.out.connect.setup["setup"]["sessionResumption"]


def test_resume_failed_falls_back_to_a_fresh_session_that_gets_the_conversation_and_the_queued_turn() -> None:
    s = Resuming()
    s.first_turn("h1")
    assert s.closed(1000) == [] and s.out.connect.resume
    s.send({"type": "input_text", "text": "two"})  # queued behind the resume
    out = s.t.resume_failed("handle rejected")
    assert s.check.feed(out, "beta", requested=False) == [] and not out.connect.resume
    s.gemini({"setupComplete": {}})
    turns = s.out.upstream[-1]["clientContent"]["turns"]
    assert [t["parts"][0]["text"] for t in turns] == ["one", "a", "two"]


def test_unresumable_updates_keep_the_handle() -> None:
    s = Resuming()
    s.first_turn("h1")
    for upd in ({"resumable": False}, {"newHandle": "", "resumable": True}, {"newHandle": "x", "resumable": False}):
        assert s.gemini({"sessionResumptionUpdate": upd}) == []
        assert s.t.resumption_handle == "h1"


def test_instructions_go_as_context_update_where_the_model_takes_it_else_by_a_switch() -> None:
    s = Resuming(context_update=True)
    s.first_turn()
    events = s.send({"type": "session.update", "session": {"instructions": "Be terse."}})
    assert types(events) == ["session.updated"] and "notice" not in events[0]
    assert s.out.upstream == [{"contextUpdate": {"systemInstruction": {"role": "user",
                                                                       "parts": [{"text": "Be terse."}]}}}]
    assert s.out.connect is None
    s = Resuming(context_update=False)
    s.first_turn("h1")
    s.send({"type": "session.update", "session": {"instructions": "Be terse."}})
    assert s.out.upstream == [] and s.out.connect.resume
    assert s.out.connect.setup["setup"]["systemInstruction"]["parts"][0]["text"] == "Be terse."


def test_open_manual_activity_is_opened_again_after_a_switch() -> None:
    """Found by the state machine under the ci profile: an activity opened before the newest handle stayed open on
    our side across a goAway switch, so the next connection got an activityEnd without its activityStart."""
    s = Resuming(manual=True)
    s.first_turn("h1")
    s.append()  # activityStart, audio
    s.handle("h2")  # covers both
    s.gemini({"goAway": {"timeLeft": "10s"}})
    assert s.out.connect.resume and s.out.connect.setup["setup"]["sessionResumption"] == {"handle": "h2"}
    s.gemini({"setupComplete": {}})
    assert s.out.upstream == [{"realtimeInput": {"activityStart": {}}}]  # the audio itself the handle covers
    s.send({"type": "input_text", "text": "and this"})  # the Checker: activityStart/End alternate per connection
    assert s.out.upstream[-1] == {"realtimeInput": {"activityEnd": {}}}


# ---------------------------------------------------------------- regressions


def test_context_update_with_tools_is_a_valid_live_client_message() -> None:
    """contextUpdate.tools used to be a bare list; the SDK's LiveClientContextUpdate wants
    {"tools": {"tools": [...]}} (LiveClientContextUpdateTools)."""
    t = Translator(counting_ids(), attrs.evolve(caps_for(TEXT_MODEL), context_update=True), dialect="beta")
    t.client_frame(b'{"type": "input_text", "text": "hi"}')
    t.upstream_frame(b'{"setupComplete": {}}')
    tool = {"type": "function", "name": "f", "parameters": {"type": "object", "properties": {}}}
    out = t.client_frame(orjson.dumps({"type": "session.update", "session": {"tools": [tool]}}))
    updates = [m["contextUpdate"] for m in out.upstream if "contextUpdate" in m]
    assert [u["tools"]["tools"][0]["functionDeclarations"][0]["name"] for u in updates] == ["f"]
    for message in out.upstream:
        validate_gemini(message)
    out = t.client_frame(orjson.dumps({"type": "session.update", "session": {"tools": []}}))
    assert out.upstream == [{"contextUpdate": {"tools": {"tools": []}}}]  # removing every tool
    validate_gemini(out.upstream[0])


@pytest.mark.parametrize("manual", [True, False])
def test_audio_turn_after_the_newest_handle_survives_a_resumable_close_between_turns(manual: bool) -> None:
    """The trigger used to clear the resend log without the audio entering the context: a resume between turns
    gave the resumed model its reply as context but never the user's speech.  It comes back as context now (as
    live audio again it would be answered twice), before the model's reply."""
    s = Resuming(manual=manual)
    s.first_turn("h1")
    audio = s.append()
    s.send({"type": "response.create"})  # activityEnd (manual) or clientContent turnComplete (VAD)
    s.say("c")
    s.turn_complete()
    assert s.closed(1000) == [] and s.out.connect.resume  # no handle after this turn yet: resumed with h1
    s.gemini({"setupComplete": {}})  # the Ledger: every appended chunk reaches the resumed session, once
    converter = InputConverter("pcm16")
    parts = [{"inlineData": {"mimeType": converter.mime_type, "data": c}} for c in converter.convert(audio)]
    assert s.out.upstream == [{"clientContent": {"turnComplete": False, "turns": [
        {"role": "user", "parts": parts},
        {"role": "model", "parts": [{"text": "c"}]},
    ]}}]
    # Closed again before any handle: the same context once more, and the next turn works.
    assert s.closed(1000) == [] and s.out.connect.resume
    s.gemini({"setupComplete": {}})
    assert [m["clientContent"]["turnComplete"] for m in s.out.upstream] == [False]
    s.send({"type": "input_text", "text": "two"})
    s.say("d")
    assert types(s.turn_complete())[-1] == "response.done"


def test_interrupted_turn_then_resumable_close_does_not_swallow_the_next_turn_complete() -> None:
    """_swallow_turn_complete used to survive the connection switch: the first bare turnComplete on the resumed
    connection was taken for the interrupted turn's."""
    s = Resuming()
    s.first_turn("h1")
    s.send({"type": "input_text", "text": "two"})
    s.say("b")
    s.gemini({"serverContent": {"interrupted": True}})  # its turnComplete never comes: the connection ends
    assert s.closed(1000) == []
    s.gemini({"setupComplete": {}})
    s.send({"type": "input_text", "text": "three"})
    events = s.turn_complete(turnCompleteReason="PROHIBITED_INPUT_CONTENT")  # a turn with no output
    assert types(events) == ["response.done"]


def test_interrupted_turn_then_upstream_fault_does_not_swallow_the_next_turn_complete() -> None:
    s = Resuming()
    s.first_turn("h1")
    s.send({"type": "input_text", "text": "two"})
    s.say("b")
    s.gemini({"serverContent": {"interrupted": True}})
    assert types(s.closed(1008)) == ["error"]
    s.send({"type": "input_text", "text": "three"})  # a fresh session
    s.gemini({"setupComplete": {}})
    assert types(s.turn_complete(turnCompleteReason="PROHIBITED_INPUT_CONTENT")) == ["response.done"]


def test_resumable_close_after_a_cancel_is_invisible_to_the_client() -> None:
    """A resumable close after response.cancel (no response active, the cancelled turn still streaming) used to
    emit an upstream_closed error for 'this response': `_discarding` counted as a response in flight."""
    s = Resuming()
    s.first_turn("h1")
    s.send({"type": "input_text", "text": "two"})
    s.send({"type": "response.cancel"})
    assert s.closed(1000) == [] and s.out.connect.resume
    s.gemini({"setupComplete": {}})
    assert types(s.send({"type": "input_text", "text": "three"}))[-1] == "response.created"
    s.say("d")
    assert s.turn_complete()[-1]["response"]["status"] == "completed"


def test_response_queued_behind_a_cancelled_turn_goes_to_the_resumed_connection() -> None:
    s = Resuming()
    s.first_turn("h1")
    s.send({"type": "input_text", "text": "two"})
    s.send({"type": "response.cancel"})
    s.send({"type": "input_text", "text": "three"})  # waits for the cancelled turn's end
    out = s.t.upstream_closed(1000, "")
    events = s.check.feed(out, "beta", requested=True)  # the cancelled turn never ends: the queued one starts
    assert types(events) == ["response.created"] and out.connect.resume
    s.gemini({"setupComplete": {}}, requested=True)
    s.say("answer")
    assert s.turn_complete()[-1]["response"]["status"] == "completed"
