"""Sessions that outlive one Gemini connection, end to end: goAway switches, live session.update, resumable
closes and the fallback to a fresh session, all invisible to the OpenAI client."""

from __future__ import annotations

import time

from tests.clients import sdk_beta, sdk_ga
from tests.stack import Stack, stack_fixture
from tests.test_e2e_audio import sine, speak
from tests.test_e2e_text import reply_text, text_turn

long_stack = stack_fixture("long_stack")


def _connections_since(stack: Stack, start: int) -> list[list[dict]]:
    assert stack.emulator is not None
    return [list(c) for c in stack.emulator.by_connection[start:]]


def _user_turns(messages: list[dict]) -> list[str]:
    """What Gemini was asked on one connection: user text turns, and 'audio' for each manual audio turn."""
    turns: list[str] = []
    for m in messages:
        for turn in m.get("clientContent", {}).get("turns", []):
            if turn.get("role") == "user":
                turns += [p["text"] for p in turn["parts"] if "text" in p]
        if "activityEnd" in m.get("realtimeInput", {}):
            turns.append("audio")
    return turns


def _manual_audio_turn(c, ms: int = 300) -> list[dict]:
    speak(c, sine(ms).tobytes())
    c.send({"type": "input_audio_buffer.commit"})
    c.until("input_audio_buffer.committed")
    c.send({"type": "response.create"})
    return c.until("response.done")


def test_thirty_turns_through_three_go_aways_and_a_live_instructions_update(long_stack):
    stack = long_stack
    start = len(stack.emulator.by_connection)
    goaway_turns = {5, 11, 22}  # text turns (every third turn is audio)
    update_after = 15
    asked: list[str] = []
    with sdk_ga(stack) as c:
        c.recv()
        c.send({"type": "session.update", "session": {
            "type": "realtime", "output_modalities": ["text"], "instructions": "Old rules.",
            "audio": {"input": {"turn_detection": None}}}})
        c.until("session.updated")
        for n in range(1, 31):
            if n % 3 == 0:
                events = _manual_audio_turn(c)
                asked.append("audio")
            else:
                text = f"turn {n}" + (" [fault:goaway]" if n in goaway_turns else "")
                events = text_turn(c, text)
                asked.append(text)
                assert reply_text(events) == f"Echo: {text}"
            assert not [e for e in events if e["type"] == "error"], (n, events)
            assert events[-1]["response"]["status"] == "completed", (n, events[-1])
            if n == update_after:
                c.send({"type": "session.update", "session": {"type": "realtime", "instructions": "New rules."}})
                updated = c.until("session.updated")[-1]
                assert updated["session"]["instructions"] == "New rules." and "notice" not in updated
    connections = _connections_since(stack, start)
    # One connection, then one per goAway and one for the update, each resumed (never a fresh fallback).
    assert len(connections) == 5, [c[0] for c in connections]
    setups = [c[0]["setup"] for c in connections]
    assert "handle" not in setups[0]["sessionResumption"]
    session_id = None
    for setup in setups[1:]:
        handle = setup["sessionResumption"]["handle"]
        logical = handle.split("-c")[0]
        session_id = session_id or logical
        assert logical == session_id  # the same logical Gemini session throughout
    instructions = [s["systemInstruction"]["parts"][0]["text"] for s in setups]
    assert instructions[:-1].count("Old rules.") == 3 and instructions[-1] == "New rules."
    # Every turn reached Gemini exactly once, in order, across the connections.
    assert [t for conn in connections for t in _user_turns(conn)] == asked


def wait_for_handles(stack: Stack, count: int) -> None:
    """Until the emulator has issued `count` resumption handles in all (at most 5 s)."""
    deadline = time.monotonic() + 5
    while stack.emulator.handles_issued < count and time.monotonic() < deadline:
        time.sleep(0.005)


def test_resumable_close_between_turns_is_invisible(long_stack):
    """Gemini ends the connection (1000) right after a turn: the next turn runs on a resumed connection."""
    stack = long_stack
    start = len(stack.emulator.by_connection)
    with sdk_beta(stack) as c:
        c.recv()
        c.send({"type": "session.update", "session": {"modalities": ["text"]}})
        c.recv()
        issued = stack.emulator.handles_issued
        assert reply_text(text_turn(c, "first")) == "Echo: first"
        # The handle that covers "first" follows its turnComplete; this test is about a close after the relay has
        # it (a turn sent before the handle arrives leaves the resend context when it does).
        wait_for_handles(stack, issued + 2)
        time.sleep(0.1)  # the emulator has sent it; let the relay read it
        events = text_turn(c, "bye [fault:close-1000]")
        # The connection closed instead of answering: that turn fails, precisely; the session goes on.
        err = [e for e in events if e["type"] == "error"]
        assert err and err[0]["error"]["code"] == "upstream_closed" and "1000" in err[0]["error"]["message"]
        assert events[-1]["response"]["status"] == "failed"
        events = text_turn(c, "still there")
        assert reply_text(events) == "Echo: still there"
        assert not [e for e in events if e["type"] == "error"]
    connections = _connections_since(stack, start)
    assert len(connections) == 2
    assert connections[1][0]["setup"]["sessionResumption"]["handle"]
    # The failed turn was not in the resumed state: it comes once more, as context, with the next turn.
    assert _user_turns(connections[1]) == ["bye [fault:close-1000]", "still there"]


def test_a_rejected_handle_falls_back_to_a_fresh_session_with_the_conversation_replayed(long_stack):
    stack = long_stack
    start = len(stack.emulator.by_connection)
    with sdk_ga(stack) as c:
        c.recv()
        c.send({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}})
        c.recv()
        issued = stack.emulator.handles_issued
        assert reply_text(text_turn(c, "remember me")) == "Echo: remember me"
        # The first connection gets a handle at setup and one after the turn, which follows its turnComplete:
        # expire that one too, not just the older one.
        wait_for_handles(stack, issued + 2)
        stack.emulator.expire_handles()
        events = text_turn(c, "bye [fault:close-1000]")
        assert events[-1]["response"]["status"] == "failed"  # the turn Gemini dropped, as above
        events = text_turn(c, "after the fallback")
        assert reply_text(events) == "Echo: after the fallback"
        assert not [e for e in events if e["type"] == "error"]
    connections = _connections_since(stack, start)
    setups = [conn[0]["setup"] for conn in connections]
    # The resume was refused (1008, session not found), then a fresh session got the whole conversation.
    assert len(connections) == 3
    assert setups[1]["sessionResumption"].get("handle") and "handle" not in setups[2]["sessionResumption"]
    assert _user_turns(connections[2]) == ["remember me", "bye [fault:close-1000]", "after the fallback"]
