"""`idle_timeout_ms` (GA server VAD) end to end: after a response, a silent user is prompted, as OpenAI does it."""

from __future__ import annotations

import base64
import time

from tests.clients import sdk_ga
from tests.test_e2e_audio import sine
from tests.test_e2e_text import reply_text, text_turn

IDLE = {"type": "session.update", "session": {
    "type": "realtime", "output_modalities": ["text"],
    "audio": {"input": {"turn_detection": {"type": "server_vad", "idle_timeout_ms": 400}}}}}
SILENCE = base64.b64encode(bytes(960)).decode()  # 20 ms of 24 kHz silence


def test_a_silent_user_is_prompted_after_idle_timeout_ms_with_the_silence_committed(stack):
    with sdk_ga(stack) as c:
        c.recv()
        c.send(IDLE)
        assert c.recv()["type"] == "session.updated"
        assert reply_text(text_turn(c, "hello")) == "Echo: hello"
        started = time.monotonic()
        for _ in range(5):
            c.send({"type": "input_audio_buffer.append", "audio": SILENCE})  # silence does not stop the clock
        events = c.until("response.done")
        waited = time.monotonic() - started
        kinds = [e["type"] for e in events]
        assert kinds[:4] == ["input_audio_buffer.timeout_triggered", "input_audio_buffer.committed",
                             "conversation.item.added", "conversation.item.done"], kinds
        fired = events[0]
        assert fired["item_id"] == events[1]["item_id"] == events[2]["item"]["id"]
        assert fired["audio_end_ms"] - fired["audio_start_ms"] == 100  # the five silent chunks
        assert events[-1]["response"]["status"] == "completed" and reply_text(events)
        assert waited >= 0.35


def test_speech_or_a_new_turn_stops_the_idle_clock(stack):
    with sdk_ga(stack) as c:
        c.recv()
        c.send(IDLE)
        c.recv()
        text_turn(c, "hello")
        loud = base64.b64encode(sine(20).tobytes()).decode()
        deadline = time.monotonic() + 0.8
        while time.monotonic() < deadline:  # loud audio keeps arriving: the user is speaking, no prompt
            c.send({"type": "input_audio_buffer.append", "audio": loud})
            time.sleep(0.02)
        c.send({"type": "input_audio_buffer.clear"})
        kinds = [c.recv()["type"] for _ in range(1)]
        assert kinds == ["input_audio_buffer.cleared"], kinds
