"""Context window compression end to end: the emulator's context limit, scaled down to CONTEXT_LIMIT tokens (one per
word of user text, 25 per second of speech), closes a session without compression with 1007 "The input token count
exceeds the maximum number of tokens allowed.", as Gemini does; the same turns with compression all complete.

`context_stack` and the helpers here are also used by test_e2e_faults.py (a 1007 for an exhausted context is
reported once and never retried in a loop).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from relay.emulator.context import CONTEXT_EXCEEDED
from tests.clients import Conn, raw
from tests.stack import TRANSPORTS, Stack
from tests.test_e2e_audio import sine, speak
from tests.test_e2e_text import text_turn

CONTEXT_LIMIT = 30  # tokens the emulator takes in a reply's prompt
TRIGGER, TARGET = 20, 10  # the configured compression: past TRIGGER tokens, slide the window down to TARGET
TURN_WORDS = 5  # f"turn {n} of the conversation"
TURNS = 12  # twice what fits without compression
FITS = CONTEXT_LIMIT // TURN_WORDS  # text turns that fit in the limit; the next one is refused
STUDIO = {"model": "gemini/gemini-live-2.5-flash-preview", "api_key": "studio-test-key", "api_base": "EMULATOR"}
TEXT_MANUAL = {"output_modalities": ["text"], "audio": {"input": {"turn_detection": None}}}


def context_stack(tmp: Path, transport: str) -> Stack:
    """A relay whose emulator has a context limit of CONTEXT_LIMIT tokens, with a model configured without
    compression ("uncompressed"), one configured with TRIGGER/TARGET ("compressed"), and the stack's default
    Vertex model, which leaves compression to the relay's default (on for audio and server VAD)."""
    return Stack(tmp, transport=transport, emulator_options={"context_limit_tokens": CONTEXT_LIMIT}, extra_models=[
        {"model_name": "uncompressed", "litellm_params": {**STUDIO, "context_window_compression": False}},
        {"model_name": "compressed", "litellm_params": {
            **STUDIO, "context_window_compression": {"trigger_tokens": TRIGGER, "target_tokens": TARGET}}},
    ])


@pytest.fixture(scope="module", params=TRANSPORTS)
def limited_stack(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Stack]:
    s = context_stack(tmp_path_factory.mktemp("context"), request.param).start()
    yield s
    s.stop()


@contextmanager
def ga_session(stack: Stack, model: str, session: dict[str, Any]) -> Iterator[Conn]:
    """A raw GA connection (every event validated, 15 s at most per event) after its session.update."""
    with raw(stack, model=model, dialect="ga") as c:
        assert c.recv()["type"] == "session.created"
        c.send({"type": "session.update", "session": {"type": "realtime", **session}})
        assert c.recv()["type"] == "session.updated"
        yield c


def said(events: list[dict]) -> str:
    """What the model said in a response: its text, or the transcript of its audio (GA or beta events)."""
    kinds = ("response.output_text.delta", "response.output_audio_transcript.delta", "response.text.delta",
             "response.audio_transcript.delta")
    return "".join(e["delta"] for e in events if e["type"] in kinds)


def manual_audio_turn(c: Conn, ms: int) -> list[dict]:
    speak(c, sine(ms).tobytes())
    c.send({"type": "input_audio_buffer.commit"})
    c.until("input_audio_buffer.committed")
    c.send({"type": "response.create"})
    return c.until("response.done")


def turn(c: Conn, n: int, audio_ms: int = 0) -> list[dict]:
    """Turn `n`: TURN_WORDS words of text, or `audio_ms` of speech."""
    if audio_ms:
        return manual_audio_turn(c, audio_ms)
    return text_turn(c, f"turn {n} of the conversation")


def errors_in(events: list[dict]) -> list[dict]:
    return [e["error"] for e in events if e["type"] == "error"]


def run_until_refused(c: Conn, turns: int, audio_ms: int = 0) -> int | None:
    """Up to `turns` turns, each checked to complete with the right reply; the number of the first that fails
    (checked to fail with the context error), or None when all complete."""
    for n in range(1, turns + 1):
        events = turn(c, n, audio_ms)
        if events[-1]["response"]["status"] == "failed":
            assert_context_exceeded(events)
            return n
        assert not errors_in(events), (n, events)
        assert events[-1]["response"]["status"] == "completed", (n, events[-1])
        expected = f"Echo: audio {audio_ms} ms" if audio_ms else f"Echo: turn {n} of the conversation"
        assert said(events) == expected, n
        usage = events[-1]["response"]["usage"]
        assert usage["input_tokens"] <= CONTEXT_LIMIT, (n, usage)
    return None


def assert_context_exceeded(events: list[dict]) -> None:
    """One `error` naming Gemini's 1007 for an exhausted context, then the response failed with it."""
    code, reason = CONTEXT_EXCEEDED
    (error,) = errors_in(events)
    assert (error["type"], error["code"]) == ("invalid_request_error", "upstream_closed"), error
    assert str(code) in error["message"] and reason in error["message"], error
    done = events[-1]["response"]
    assert done["status"] == "failed" and done["status_details"]["error"]["code"] == "upstream_closed"


def setups_since(stack: Stack, start: int) -> list[dict]:
    """The setup of each upstream connection opened since connection number `start`."""
    assert stack.emulator is not None
    return [conn[0]["setup"] for conn in stack.emulator.by_connection[start:]]


def test_configured_compression_carries_a_session_past_the_context_limit(limited_stack):
    stack = limited_stack
    assert stack.emulator is not None
    # Without compression the context is exhausted after FITS turns: Gemini closes the session with 1007.
    start = len(stack.emulator.by_connection)
    with ga_session(stack, "uncompressed", TEXT_MANUAL) as c:
        assert run_until_refused(c, TURNS) == FITS + 1
    (setup,) = setups_since(stack, start)
    assert "contextWindowCompression" not in setup
    # With the configured compression the very same TURNS turns all complete, on one connection.
    start, compressions = len(stack.emulator.by_connection), stack.emulator.compressions
    with ga_session(stack, "compressed", TEXT_MANUAL) as c:
        assert run_until_refused(c, TURNS) is None
    (setup,) = setups_since(stack, start)
    assert setup["contextWindowCompression"] == {"triggerTokens": TRIGGER, "slidingWindow": {"targetTokens": TARGET}}
    # The window slid each time the history passed TRIGGER: at turn 5 (25 tokens, down to 10), then at 8 and 11.
    assert stack.emulator.compressions - compressions == 3


@pytest.mark.parametrize(("session", "audio_ms", "compressed"), [
    pytest.param({"output_modalities": ["text"]}, 0, True, id="text-server-vad"),
    pytest.param({"output_modalities": ["audio"], "audio": {"input": {"turn_detection": None}}}, 400, True,
                 id="audio-manual-turns"),
    pytest.param(TEXT_MANUAL, 0, False, id="text-manual-turns"),
])
def test_default_compression_is_on_for_audio_and_server_vad_sessions(limited_stack, session, audio_ms, compressed):
    """Without a config entry, audio output or server VAD turn compression on (Gemini's own thresholds: the emulator
    slides at 80 % of its limit); a text session with manual turns goes without and is cut at the limit."""
    stack = limited_stack
    start = len(stack.emulator.by_connection)
    with ga_session(stack, "vertex_gemini_live_text", session) as c:
        refused = run_until_refused(c, TURNS, audio_ms)
    (setup,) = setups_since(stack, start)
    if compressed:
        assert refused is None
        assert setup["contextWindowCompression"] == {"slidingWindow": {}}
    else:
        assert refused == FITS + 1
        assert "contextWindowCompression" not in setup
