"""Tool turns (relay/translate/tools.py): the bugs the state machine found once it played Gemini's toolCall and
toolCallCancellation and the client's function_call_output, each kept as the sequence that showed it.

Every Output goes through `Checker`, which also counts the continuation a toolResponse owes.
"""

from __future__ import annotations

from typing import Any

import pytest

from conformance.frames import types
from conformance.test_regressions import Session
from conformance.test_resumption import Resuming

TOOL = {"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {}}}


def tool_session(dialect: str = "beta") -> Session:
    s = Session(dialect)
    shape = {"type": "realtime"} if dialect == "ga" else {}
    s.send({"type": "session.update", "session": {**shape, "tools": [TOOL]}})
    s.send({"type": "input_text", "text": "look it up"})
    s.gemini({"setupComplete": {}})
    return s


def call(s: Session, *ids: str) -> list[str]:
    """Gemini calls `lookup` once per id; the call_ids the client was given."""
    calls = [{"id": i, "name": "lookup", "args": {"n": n}} for n, i in enumerate(ids)]
    events = s.gemini({"toolCall": {"functionCalls": calls}})
    assert events[-1]["type"] == "response.done"
    return [i["call_id"] for i in events[-1]["response"]["output"] if i["type"] == "function_call"]


def answer(s: Session, call_id: str, output: str = '{"ok": true}') -> list[dict[str, Any]]:
    return s.send({"type": "conversation.item.create",
                   "item": {"type": "function_call_output", "call_id": call_id, "output": output}})


def tool_responses(s: Session) -> list[dict[str, Any]]:
    return [m["toolResponse"] for m in s.out.upstream if "toolResponse" in m]


def test_a_response_create_with_bad_params_after_tool_outputs_is_refused_not_adopted() -> None:
    """It used to be taken as the continuation before its params were read: no error, a response instead."""
    s = tool_session()
    [c] = call(s, "g1")
    answer(s, c)
    assert tool_responses(s)
    events = s.send({"type": "response.create", "response": {"modalities": "text"}, "event_id": "bad"})
    assert types(events) == ["error"] and events[0]["error"]["event_id"] == "bad"
    # the valid one that follows still adopts Gemini's continuation, with no second generation asked for
    assert types(s.send({"type": "response.create"})) == ["response.created"] and s.out.upstream == []


@pytest.mark.parametrize("how", ["response.create", "input_text"])
def test_a_create_adopting_the_continuation_never_opens_a_second_active_response(how: str) -> None:
    """A response the client made before answering the calls is the one the continuation streams into; the
    create after the outputs used to open a second response beside it (two active at once)."""
    s = tool_session()
    [c] = call(s, "g1")
    assert types(s.send({"type": "input_text", "text": "and?"}))[-1] == "response.created"
    answer(s, c)
    event = {"type": "response.create"} if how == "response.create" else {"type": "input_text", "text": ""}
    assert [t for t in types(s.send(event)) if t.startswith("response.")] == []
    s.say("found it")
    assert s.turn_complete()[-1]["response"]["status"] == "completed"
    assert s.check.active is None


def test_a_continuation_into_an_open_response_leaves_gemini_owing_nothing() -> None:
    """Gemini's output after the toolResponse went into an open response: the relay used to go on believing a
    continuation was owed, and its stall deadline would have failed the idle session."""
    s = tool_session()
    [c] = call(s, "g1")
    s.send({"type": "input_text", "text": "and?"})
    answer(s, c)
    s.say("found it")
    s.turn_complete()
    assert not s.t.awaiting_model and s.t.at_rest


def test_a_continuation_that_ends_with_nothing_lets_the_next_response_create_ask_gemini() -> None:
    """Gemini closed its turn without output after the toolResponse: a response.create used to wait for a
    continuation that could no longer come (until the stall deadline failed it)."""
    s = tool_session()
    [c] = call(s, "g1")
    answer(s, c)
    s.turn_complete()
    assert not s.t.awaiting_model
    events = s.send({"type": "response.create"})
    assert types(events) == ["response.created"]
    assert [m for m in s.out.upstream if "clientContent" in m or "realtimeInput" in m], "a new generation is asked"


def test_a_tool_turn_whose_calls_gemini_withdraws_is_over() -> None:
    """Every call cancelled and no output: the tool turn used to stay open for ever, so a goAway's switch
    waited for a boundary that never came."""
    s = Resuming()
    s.send({"type": "session.update", "session": {"tools": [TOOL]}})
    s.send({"type": "input_text", "text": "look it up"})
    s.gemini({"setupComplete": {}})
    call(s, "g1", "g2")
    s.gemini({"toolCallCancellation": {"ids": ["g1", "g2"]}})
    s.handle("h1")
    s.gemini({"goAway": {"timeLeft": "10s"}})
    assert s.out.connect is not None and s.out.connect.resume, "switched at once: nothing is owed"


def test_an_output_for_a_withdrawn_call_is_acknowledged_and_not_sent() -> None:
    s = tool_session()
    [c1, c2] = call(s, "g1", "g2")
    s.gemini({"toolCallCancellation": {"ids": ["g1"]}})
    answer(s, c2)
    assert [r["functionResponses"][0]["name"] for r in tool_responses(s)] == ["lookup"]
    s.say("ok")
    s.turn_complete()
    events = answer(s, c1)  # late, after the tool turn ended
    assert types(events) == ["conversation.item.created"] and s.out.upstream == []


def test_the_calls_of_finished_tool_turns_are_forgotten() -> None:
    """The relay kept every call of the session: a long agent session's state grew with each tool turn."""
    s = tool_session()
    for n in range(300):
        calls = call(s, f"g{n}a", f"g{n}b")
        s.gemini({"toolCallCancellation": {"ids": [f"g{n}b"]}})
        answer(s, calls[0], f'{{"n": {n}}}')
        s.send({"type": "response.create"})
        s.say("ok")
        s.turn_complete()
        for item_id in [i for i in list(s.check.items)]:
            s.send({"type": "conversation.item.delete", "item_id": item_id})
    tools = s.t._tools
    assert len(tools.calls) == 0 and len(tools.withdrawn) <= 64 and not tools.turn_keys and not tools.outputs


def test_audio_streamed_in_a_tool_turn_reaches_the_fresh_session_after_a_close() -> None:
    """A close in a tool turn opens a fresh session (the calls cannot be answered on a resumed one); the audio
    the client had streamed since the last handle used to be dropped there without a word."""
    s = Resuming()
    s.send({"type": "session.update", "session": {"tools": [TOOL]}})
    s.first_turn("h1")
    audio = s.append(60)
    call(s, "g1")
    s.closed(1000)
    assert s.out.connect is not None and not s.out.connect.resume
    s.gemini({"setupComplete": {}})  # the checker's ledger fails here if the appended chunks are missing
    sent = [m["realtimeInput"]["audio"]["data"] for m in s.out.upstream if "audio" in m.get("realtimeInput", {})]
    assert sent and audio


def test_only_the_first_response_create_after_tool_outputs_adopts_the_continuation() -> None:
    """Once the continuation has come and another turn has passed, a bare response.create asks Gemini for a new
    generation rather than waiting for a continuation."""
    s = tool_session()
    [c] = call(s, "g1")
    answer(s, c)
    s.say("done")  # Gemini's continuation opens its own response
    s.turn_complete()
    assert types(s.send({"type": "input_text", "text": "next"}))[-1] == "response.created"
    s.say("two")
    s.turn_complete()
    assert types(s.send({"type": "response.create"})) == ["response.created"]  # once more, please
    assert [m for m in s.out.upstream if "clientContent" in m or "realtimeInput" in m], "a new generation is asked"
