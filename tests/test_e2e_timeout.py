"""A Gemini that takes a turn and never answers: after `general_settings.response_timeout` the client gets
an `error` event and a failed `response.done`, and the next turn works on a fresh upstream connection."""

from __future__ import annotations

import time

from tests.clients import sdk_beta, sdk_ga
from tests.stack import Stack, stack_fixture
from tests.test_e2e_text import reply_text, text_turn


def _setups(stack: Stack) -> int:
    return sum("setup" in m for m in stack.upstream_messages())


quick_stack = stack_fixture("quick_stack", general_settings={"response_timeout": 0.5})


def test_silent_upstream_fails_the_response_and_the_next_turn_reconnects(quick_stack):
    with sdk_ga(quick_stack) as c:
        c.recv()
        c.send({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}})
        c.recv()
        events = text_turn(c, "[fault:silent] anyone there")
        err = next(e for e in events if e["type"] == "error")
        assert err["error"]["type"] == "server_error" and err["error"]["code"] == "upstream_timeout"
        assert "0.5 s" in err["error"]["message"]
        assert events[-1]["response"]["status"] == "failed"
        events = text_turn(c, "are you back")
        assert events[-1]["response"]["status"] == "completed" and reply_text(events) == "Echo: are you back"
    assert _setups(quick_stack) >= 2


def test_a_quiet_session_without_a_response_is_left_alone(quick_stack):
    """The deadline runs only while Gemini owes output: an idle session longer than it stays connected."""
    with sdk_beta(quick_stack) as c:
        c.recv()
        c.send({"type": "session.update", "session": {"modalities": ["text"]}})
        c.recv()
        assert text_turn(c, "first")[-1]["response"]["status"] == "completed"
        before = _setups(quick_stack)
        time.sleep(1.2)
        events = text_turn(c, "second")
        assert events[-1]["response"]["status"] == "completed"
        assert not [e for e in events if e["type"] == "error"]
        assert _setups(quick_stack) == before  # same upstream connection


# Replies in 3-word chunks 0.3 s apart: each gap is under the 0.5 s timeout, the whole reply well over it.
steady_stack = stack_fixture("steady_stack", emulator_options={"chunk_delay": 0.3},
                             general_settings={"response_timeout": 0.5})


def test_silence_counts_from_the_last_message_not_from_the_start_of_the_reply(steady_stack):
    with sdk_ga(steady_stack) as c:
        c.recv()
        c.send({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}})
        c.recv()
        text = "one two three four five six seven eight nine ten"
        started = time.monotonic()
        events = text_turn(c, text)
        assert time.monotonic() - started > 0.5  # the reply outlasted the timeout (a precondition, not a timing)
        assert not [e for e in events if e["type"] == "error"], events
        assert events[-1]["response"]["status"] == "completed" and reply_text(events) == f"Echo: {text}"
