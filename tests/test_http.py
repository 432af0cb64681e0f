"""Plain HTTP on the relay's port, beside the WebSocket route, on both transports: probes, metrics, 404s."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.clients import sdk_ga
from tests.test_e2e_text import reply_text, text_turn


def get(stack, path: str, method: str = "GET") -> tuple[int, str, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{stack.port}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers["content-type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["content-type"], exc.read()


def metrics(stack) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, content_type, body = get(stack, "/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode()) for s in family.samples}


@pytest.mark.parametrize("path", ["/health", "/health/liveliness", "/health/liveness", "/ready",
                                  "/health/readiness", "/ready?verbose=1"])
def test_probes_answer_200_with_json(stack, path):
    status, content_type, body = get(stack, path)
    assert (status, content_type) == (200, "application/json")
    assert json.loads(body)["status"] in ("ok", "ready")


def test_other_requests_get_a_small_json_404_or_405_and_websockets_still_work(stack):
    status, content_type, body = get(stack, "/v1/chat/completions")
    assert (status, content_type) == (404, "application/json")
    assert json.loads(body)["error"]["code"] == "not_found"
    assert get(stack, "/health", "POST")[0] == 405
    with sdk_ga(stack) as c:
        c.recv()
        c.send({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}})
        c.recv()
        assert reply_text(text_turn(c, "still a websocket")) == "Echo: still a websocket"


def test_metrics_change_as_sessions_run(stack):
    model = (("model", "vertex_gemini_live_text"),)
    for _ in range(500):  # an earlier test's session may still be closing: count from a quiet relay
        if stack.server.active_sessions == 0:
            break
        time.sleep(0.01)
    before = metrics(stack)
    ended = ("relay_sessions_ended_total", (("end_reason", "client_closed"), *model))
    with sdk_ga(stack) as c:
        c.recv()
        c.send({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}})
        c.recv()
        text_turn(c, "count me")
        during = metrics(stack)
        assert during[("relay_sessions_open", (("dialect", "ga"), *model))] >= 1
        started = ("relay_sessions_started_total", (("dialect", "ga"), *model))
        assert during[started] == before.get(started, 0) + 1
        tokens = ("relay_gen_ai_client_token_usage_total",
                  (("gen_ai_request_model", "vertex_gemini_live_text"), ("gen_ai_token_type", "output")))
        assert during[tokens] > before.get(tokens, 0)
        fresh = ("relay_upstream_connections_total",
                 (("kind", "fresh"), ("model", "vertex_gemini_live_text"), ("outcome", "ok")))
        assert during[fresh] >= before.get(fresh, 0) + 1
        created = ("relay_client_events_total", (("model", "vertex_gemini_live_text"), ("type", "response.create")))
        assert during[created] >= before.get(created, 0) + 1
        content = ("relay_upstream_messages_total", (("model", "vertex_gemini_live_text"), ("type", "serverContent")))
        assert during[content] > before.get(content, 0)
        ttft = ("gen_ai_server_time_to_first_token_seconds_count",
                (("gen_ai_request_model", "vertex_gemini_live_text"),))
        assert during[ttft] >= before.get(ttft, 0) + 1
        turn = ("relay_turn_latency_seconds_count", model)
        assert during[turn] >= before.get(turn, 0) + 1
        for direction in ("to_client", "to_gemini"):
            added = ("relay_added_latency_seconds_count", (("direction", direction), *model))
            assert during[added] >= before.get(added, 0) + 1
    with pytest.raises(Exception):  # noqa: B017 -- the SDK's handshake error type varies with its version
        with sdk_ga(stack, key="sk-wrong") as c:
            c.recv()
    after = metrics(stack)
    for _ in range(50):
        if after.get(ended, 0) > before.get(ended, 0):
            break
        after = metrics(stack)
    assert after[ended] == before.get(ended, 0) + 1
    refused = ("relay_handshakes_refused_total", (("reason", "invalid_api_key"),))
    assert after[refused] == before.get(refused, 0) + 1


def test_audio_seconds_in_and_out_are_counted(stack):
    from tests.test_e2e_audio import silence, sine, speak

    model = (("model", "vertex_gemini_live_text"),)
    before = metrics(stack)
    with sdk_ga(stack) as c:
        c.recv()
        c.send({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["audio"],
                "audio": {"input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 300}}}}})
        c.recv()
        speak(c, sine(500).tobytes() + silence(600).tobytes())
        events = c.until("response.done")
        sent = sum(len(base64.b64decode(e["delta"])) for e in events if e["type"] == "response.output_audio.delta")
        during = metrics(stack)
    heard, said = (during[(name, model)] - before.get((name, model), 0)
                   for name in ("relay_audio_input_seconds_total", "relay_audio_output_seconds_total"))
    assert heard == pytest.approx(1.1, abs=0.05)
    assert said == pytest.approx(sent / 48000, abs=0.001) and said > 0  # pcm16 at 24 kHz: 48 bytes a millisecond


def test_v1_models_lists_every_model_with_its_session_kind_to_a_client_with_a_key(stack):
    status, _, body = get(stack, "/v1/models")
    assert status == 401 and json.loads(body)["error"]["code"] == "invalid_api_key"
    request = urllib.request.Request(f"http://127.0.0.1:{stack.port}/v1/models",
                                     headers={"Authorization": f"Bearer {stack.master_key}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        listing = json.loads(response.read())
    assert listing["object"] == "list"
    names = [m["id"] for m in listing["data"]]
    assert names == stack.server.config.model_names
    assert all(m["object"] == "model" and m["kind"] == "realtime" and isinstance(m["created"], int)
               for m in listing["data"])
