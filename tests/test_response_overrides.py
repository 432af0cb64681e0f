"""Per-response overrides in response.create: applied where Gemini can take them for one response, refused
precisely where it cannot (its setup is fixed per connection), never silently ignored."""

from __future__ import annotations

import pytest

from tests.test_tools_translator import TIME, Session


def talked_once() -> Session:
    """A GA text session whose Gemini connection is set up: one turn done."""
    s = Session("ga", "gemini-2.0-flash-live-001", "gemini")
    s.send({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"],
                                                   "instructions": "Be brief."}})
    s.send({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                                                          "content": [{"type": "input_text", "text": "hi"}]}})
    s.send({"type": "response.create"})
    s.gemini({"setupComplete": {}})
    s.gemini({"serverContent": {"modelTurn": {"parts": [{"text": "Hello."}]}, "turnComplete": True}})
    s.send({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                                                          "content": [{"type": "input_text", "text": "again"}]}})
    s.upstream.clear()
    return s


def test_instructions_for_one_response_reach_gemini_as_a_note_after_the_turn():
    s = talked_once()
    events = s.send({"type": "response.create", "response": {"instructions": "Answer in French."}})
    assert [e["type"] for e in events] == ["response.created"]
    turns = s.upstream[-1]["clientContent"]["turns"]
    assert turns[-2] == {"role": "user", "parts": [{"text": "again"}]}
    assert turns[-1] == {"role": "user", "parts": [{"text": "Instructions for this reply only: Answer in French."}]}


@pytest.mark.parametrize(("override", "param"), [
    ({"tools": [TIME]}, "response.tools"),
    ({"tool_choice": "none"}, "response.tool_choice"),
    ({"audio": {"output": {"voice": "ash"}}}, "response.voice"),
    ({"output_modalities": ["audio"]}, "response.output_modalities"),  # the connection was set up for text
    ({"max_output_tokens": 20}, "response.max_output_tokens"),
    ({"reasoning": {"effort": "high"}}, "response.reasoning"),
    ({"conversation": "none"}, "response.conversation"),
    ({"input": [{"type": "item_reference", "id": "item_x"}]}, "response.input"),
])
def test_what_gemini_fixes_per_connection_is_refused_with_its_param_and_the_session_goes_on(override, param):
    s = talked_once()
    events = s.send({"type": "response.create", "event_id": "ev_r", "response": override})
    assert [e["type"] for e in events] == ["error"]
    error = events[0]["error"]
    assert (error["code"], error["param"], error["event_id"]) == ("unsupported_parameter", param, "ev_r")
    assert [e["type"] for e in s.send({"type": "response.create"})] == ["response.created"]


def test_values_equal_to_the_session_and_text_only_on_an_audio_session_are_taken():
    s = talked_once()
    events = s.send({"type": "response.create", "response": {"output_modalities": ["text"], "tool_choice": "auto",
                                                            "metadata": {"k": "v"}}})
    assert [e["type"] for e in events] == ["response.created"]
    assert events[0]["response"]["metadata"] == {"k": "v"}


def test_the_first_response_before_any_connection_shapes_the_setup_instead():
    s = Session("ga", "gemini-2.0-flash-live-001", "gemini")
    s.send({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                                                          "content": [{"type": "input_text", "text": "hi"}]}})
    events = s.send({"type": "response.create", "response": {"output_modalities": ["text"],
                                                            "instructions": "Be terse."}})
    assert [e["type"] for e in events] == ["response.created"]
    assert s.setup["setup"]["systemInstruction"]["parts"][0]["text"] == "Be terse."
    assert s.setup["setup"]["generationConfig"]["responseModalities"] == ["TEXT"]
