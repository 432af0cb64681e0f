"""The relay's JSON log: one object per line, each session's lines carrying its id and model, a start and an end
line with the session's totals, and nothing secret or private (keys, tokens, audio, user text) at INFO level."""

from __future__ import annotations

import base64
import io
import json
import logging
import time

from relay.logs import JsonFormatter
from tests.clients import sdk_ga
from tests.stack import MASTER_KEY
from tests.test_e2e_audio import sine, speak
from tests.test_e2e_text import reply_text
from tests.test_e2e_tools import TIME, answer, ask

PRIVATE = "my private sentence about the sea"


def test_a_full_session_logs_its_totals_and_nothing_secret_or_private(stack):
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    relay_log = logging.getLogger("relay")
    level = relay_log.level
    relay_log.addHandler(handler)
    relay_log.setLevel(logging.INFO)
    audio = base64.b64encode(sine(400).tobytes()).decode()
    try:
        with sdk_ga(stack) as c:
            session_id = c.recv()["session"]["id"]
            c.send({"type": "session.update", "session": {
                "type": "realtime", "output_modalities": ["text"], "tools": [TIME],
                "audio": {"input": {"turn_detection": None}}}})
            c.until("session.updated")
            assert reply_text(ask(c, PRIVATE)) == f"Echo: {PRIVATE}"
            speak(c, sine(400).tobytes())
            c.send({"type": "input_audio_buffer.commit"})
            c.send({"type": "response.create"})
            c.until("response.done")
            events = ask(c, 'what does get_time {"zone": "UTC"} say')
            (call,) = [e for e in events if e["type"] == "response.function_call_arguments.done"]
            answer(c, call["call_id"], '{"time": "12:00"}')
            c.until("conversation.item.done")
            c.send({"type": "response.create"})
            c.until("response.done")
        for _ in range(200):
            if '"session_end"' in buffer.getvalue():
                break
            time.sleep(0.01)
    finally:
        relay_log.removeHandler(handler)
        relay_log.setLevel(level)
    text = buffer.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]  # every line is one JSON object
    mine = [line for line in lines if line.get("session") == session_id]
    assert mine and all(line["model"] == "vertex_gemini_live_text" for line in mine)
    start = next(line for line in mine if line.get("event") == "session_start")
    end = next(line for line in mine if line.get("event") == "session_end")
    assert start["dialect"] in ("ga", "auto") and start["client"].startswith("127.0.0.1:") and start["key"] == "master"
    assert end["end_reason"] == "client_closed" and end["turns"] == 4 and end["duration_s"] > 0
    assert end["audio_in_s"] == 0.4 and end["audio_out_s"] == 0 and end["tokens_in"] > 0 and end["tokens_out"] > 0
    for secret in (MASTER_KEY, stack.tokens.token, "studio-test-key", PRIVATE, audio[:64], "12:00"):
        assert secret not in text, f"the log holds {secret[:20]!r}"


def test_serve_logs_json_lines_when_asked():
    import signal

    from tests.test_cli import relay_process
    from tests.test_drain import open_session

    with relay_process("--log-format", "json") as (proc, port, _banner):
        open_session(port, "hello", "response.done").close()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    logged = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert {"session_start", "session_end"} <= {line.get("event") for line in logged}
    assert all({"time", "level", "logger", "message"} <= set(line) for line in logged)
