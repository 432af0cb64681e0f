"""Named client keys and the relay's limits over real sockets: each limit answers the OpenAI way (HTTP 429 at the
handshake, or an `error` event, then a close where it must), is counted in the metrics, and leaves others alone."""

from __future__ import annotations

import base64
import time

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.clients import raw
from tests.stack import Stack, stack_fixture
from tests.test_http import metrics

KEYS = [{"name": "alice", "key": "sk-alice-1", "max_sessions": 1}, {"name": "bob", "key": "sk-bob-2"}]


limited = stack_fixture("limited", general_settings={
    "keys": KEYS, "max_sessions": 3, "max_events_per_second": 20, "max_session_seconds": 2})


def as_key(stack: Stack, key: str):
    return raw(stack, headers={"Authorization": f"Bearer {key}"}, dialect="ga")


def refused_with(stack: Stack, key: str) -> int:
    with pytest.raises(InvalidStatus) as refused, as_key(stack, key):
        pass
    return refused.value.response.status_code


def quiet(stack: Stack) -> None:
    deadline = time.monotonic() + 5
    while stack.server.active_sessions and time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_key_over_its_session_limit_gets_429_and_the_others_go_on(limited):
    quiet(limited)
    with as_key(limited, "sk-alice-1") as alice:
        alice.recv()
        assert refused_with(limited, "sk-alice-1") == 429
        with as_key(limited, "sk-bob-2") as bob:
            assert bob.recv()["type"] == "session.created"
            seen = metrics(limited)
            assert seen[("relay_sessions_open_by_key", (("key", "alice"),))] == 1
            assert seen[("relay_sessions_open_by_key", (("key", "bob"),))] == 1
            assert seen[("relay_limit_rejections_total", (("limit", "key_sessions"),))] >= 1
    assert refused_with(limited, "sk-nobody") == 401


def test_the_relay_over_its_session_limit_gets_429(limited):
    quiet(limited)
    with as_key(limited, "sk-bob-2") as a, as_key(limited, "sk-bob-2") as b, as_key(limited, "sk-alice-1") as c:
        for conn in (a, b, c):
            conn.recv()
        assert refused_with(limited, "sk-bob-2") == 429
        assert metrics(limited)[("relay_limit_rejections_total", (("limit", "sessions"),))] >= 1


def test_events_over_the_rate_get_rate_limit_exceeded_and_the_session_goes_on(limited):
    quiet(limited)
    chunk = base64.b64encode(bytes(960)).decode()
    with as_key(limited, "sk-bob-2") as c:
        c.recv()
        for i in range(30):  # in well under a second: 20 are taken, 10 refused
            c.send({"type": "input_audio_buffer.append", "event_id": f"ev{i}", "audio": chunk})
        errors = [c.recv() for _ in range(10)]
        assert {e["type"] for e in errors} == {"error"}
        assert {e["error"]["code"] for e in errors} == {"rate_limit_exceeded"}
        assert [e["error"]["event_id"] for e in errors] == [f"ev{i}" for i in range(20, 30)]
        time.sleep(1.0)
        c.send({"type": "input_audio_buffer.clear"})
        assert c.recv()["type"] == "input_audio_buffer.cleared"
    assert metrics(limited)[("relay_limit_rejections_total", (("limit", "events_per_second"),))] >= 10


def test_a_session_over_its_duration_gets_session_expired_then_a_close(limited):
    quiet(limited)
    with as_key(limited, "sk-bob-2") as c:
        c.recv()
        started = time.monotonic()
        error = c.recv()
        assert (error["type"], error["error"]["code"]) == ("error", "session_expired")
        with pytest.raises(ConnectionClosed) as closed:
            c.recv()
        assert closed.value.rcvd.code == 1000 and 1.5 < time.monotonic() - started < 4
    assert metrics(limited)[("relay_limit_rejections_total", (("limit", "session_seconds"),))] >= 1


buffered = stack_fixture("buffered", general_settings={"resume_buffer_seconds": 0.3})


def test_audio_past_the_resume_buffer_is_dropped_counted_and_the_turn_goes_on(buffered):
    from tests.clients import sdk_beta
    from tests.test_e2e_audio import sine, speak
    from tests.test_e2e_long import wait_for_handles
    from tests.test_e2e_text import reply_text, text_turn

    stack = buffered
    counted = ("relay_limit_rejections_total", (("limit", "resume_buffer"),))
    before = metrics(stack).get(counted, 0)
    with sdk_beta(stack) as c:
        c.recv()
        c.send({"type": "session.update", "session": {"modalities": ["text"], "turn_detection": None}})
        c.recv()
        issued = stack.emulator.handles_issued
        assert reply_text(text_turn(c, "first")) == "Echo: first"
        wait_for_handles(stack, issued + 2)
        time.sleep(0.1)
        # Gemini closes (resumable) and refuses the next two connects: the relay holds the audio meanwhile.
        stack.emulator.handshake_faults.extend([503, 503])
        text_turn(c, "bye [fault:close-1000]")
        speak(c, sine(1000).tobytes())
        c.send({"type": "input_audio_buffer.commit"})
        c.send({"type": "response.create"})
        events = c.until("response.done")
    assert events[-1]["response"]["status"] == "completed", events[-1]
    (dropped,) = [e for e in events if e["type"] == "error"]  # said once, however many chunks went
    assert (dropped["error"]["type"], dropped["error"]["code"]) == ("server_error", "audio_dropped")
    assert "0.3 s" in dropped["error"]["message"]
    heard = int(reply_text(events).removeprefix("Echo: audio ").removesuffix(" ms"))
    assert 200 <= heard <= 400  # the newest 0.3 s of the second: the rest was dropped
    assert metrics(stack)[counted] > before
