"""Every row of the capability table end to end: the relay configured with each current Live model, against the
emulator behaving as that model (it closes with 1007 on what the model refuses), with a text turn, a spoken turn
and a tool call; every event checked against the SDK schemas, every upstream message against google-genai."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from relay.models import caps_for
from tests.clients import raw, sdk_beta, sdk_ga, types
from tests.schemas import validate_gemini
from tests.stack import MASTER_KEY, TRANSPORTS, Stack
from tests.test_cli import node_ws  # noqa: F401 -- the fixture
from tests.test_e2e_audio import sine, speak
from tests.test_e2e_text import reply_text
from tests.test_e2e_tools import TIME, answer, ask, text_of

# relay model name → upstream model, one per row of relay.models (both backends among them).
ROWS = {
    "m_38": "vertex_ai/gemini-3.8-live",
    "m_38_studio": "gemini/gemini-3.8-live",
    "m_38x": "gemini/gemini-3.8-live-extended-thinking",
    "m_31": "gemini/gemini-3.1-flash-live-preview",
    "m_25na": "vertex_ai/gemini-live-2.5-flash-native-audio",
    "m_25na_studio": "gemini/gemini-2.5-flash-native-audio-preview-12-2025",
    "m_25": "vertex_ai/gemini-live-2.5-flash",
    "m_20": "vertex_ai/gemini-2.0-flash-live-001",
}
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))


def caps_of(name: str):
    provider, _, model = ROWS[name].partition("/")
    return caps_for(model, "vertex" if provider == "vertex_ai" else "gemini")


@pytest.fixture(scope="module", params=TRANSPORTS)
def models_stack(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    tmp = tmp_path_factory.mktemp("models")
    extra = []
    for name, model in ROWS.items():
        params = {"model": model, "api_base": "EMULATOR"}
        if model.startswith("vertex_ai/"):
            params |= {"vertex_project": "test-project", "vertex_credentials": str(tmp / "sa.json")}
        else:
            params["api_key"] = "studio-test-key"
        extra.append({"model_name": name, "litellm_params": params})
    extra.append({"model_name": "m_translate", "litellm_params": {
        "model": "gemini/gemini-3.5-live-translate-preview", "api_base": "EMULATOR", "api_key": "studio-test-key"}})
    # Each Vertex model fetches its own token and the emulator knows one: the bearer check is test_upstream's.
    s = Stack(tmp, transport=request.param, extra_models=extra, emulator_options={"bearer_token": None}).start()
    yield s
    s.stop()
    for message in s.upstream_messages():
        validate_gemini(message)


@pytest.mark.parametrize("name", list(ROWS))
def test_a_text_turn(models_stack, name):
    with sdk_ga(models_stack, name) as c:
        c.recv()
        c.send({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}})
        c.until("session.updated")
        c.send({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                                                              "content": [{"type": "input_text", "text": "hi"}]}})
        c.send({"type": "response.create"})
        events = c.until("response.done")
    assert not [e for e in events if e["type"] == "error"], events
    assert events[-1]["response"]["status"] == "completed"
    assert reply_text(events) == "Echo: hi"  # audio-only models: from the transcript; thoughts never shown
    assert not [t for t in types(events) if "audio" in t], "a text client gets no audio"
    setup = models_stack.latest_upstream()[0]["setup"]
    assert setup["generationConfig"]["responseModalities"] == (["TEXT"] if caps_of(name).text_output else ["AUDIO"])


@pytest.mark.parametrize("name", list(ROWS))
def test_a_spoken_manual_turn(models_stack, name):
    with sdk_ga(models_stack, name) as c:
        c.recv()
        c.send({"type": "session.update", "session": {
            "type": "realtime", "output_modalities": ["audio"], "audio": {"input": {"turn_detection": None}}}})
        c.until("session.updated")
        speak(c, sine(400).tobytes())
        c.send({"type": "input_audio_buffer.commit"})
        c.send({"type": "response.create"})
        events = c.until("response.done")
    assert not [e for e in events if e["type"] == "error"], events
    assert events[-1]["response"]["status"] == "completed"
    transcript = "".join(e["delta"] for e in events if e["type"] == "response.output_audio_transcript.delta")
    assert transcript == "Echo: audio 400 ms"
    assert sum(len(base64.b64decode(e["delta"])) for e in events if e["type"] == "response.output_audio.delta")


@pytest.mark.parametrize("name", list(ROWS))
def test_a_tool_call(models_stack, name):
    caps = caps_of(name)
    with sdk_ga(models_stack, name) as c:
        c.recv()
        c.send({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}})
        c.until("session.updated")
        c.send({"type": "session.update", "event_id": "ev_tools", "session": {"type": "realtime", "tools": [TIME]}})
        first = c.recv()
        if caps.function_behavior == "non_blocking_only":
            assert first["type"] == "error" and first["error"]["code"] == "invalid_value"
            assert (first["error"]["param"], first["error"]["event_id"]) == ("session.tools", "ev_tools")
            assert reply_text(ask(c, "still fine")) == "Echo: still fine"  # the session goes on, without tools
            return
        assert first["type"] == "session.updated"
        events = ask(c, 'what does get_time {"zone": "UTC"} say')
        (call,) = [e for e in events if e["type"] == "response.function_call_arguments.done"]
        assert call["name"] == "get_time" and json.loads(call["arguments"]) == {"zone": "UTC"}
        answer(c, call["call_id"], '{"time": "12:00"}')
        c.until("conversation.item.done")
        c.send({"type": "response.create"})
        reply = c.until("response.done")
    assert text_of(reply) == 'Result: get_time {"time":"12:00"}'
    decl = models_stack.latest_upstream()[0]["setup"]["tools"][0]["functionDeclarations"][0]
    assert decl.get("behavior") == ("BLOCKING" if caps.function_behavior == "non_blocking_default" else None)


@pytest.mark.parametrize("dialect", ["ga", "beta"])
def test_an_image_turn_reaches_gemini_unchanged_and_bad_images_get_their_errors(models_stack, dialect):
    connect = sdk_ga if dialect == "ga" else sdk_beta
    url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    with connect(models_stack, "m_20") as c:
        c.recv()
        session = {"type": "realtime", "output_modalities": ["text"]} if dialect == "ga" else {"modalities": ["text"]}
        c.send({"type": "session.update", "session": session})
        c.until("session.updated")
        for bad, code in (("https://example.com/a.png", "unsupported_image_url"),
                          ("data:image/png;base64," + "A" * (11 * 1024 * 1024 // 3 * 4), "image_too_large")):
            c.send({"type": "conversation.item.create", "event_id": "ev_bad", "item": {
                "type": "message", "role": "user", "content": [{"type": "input_image", "image_url": bad}]}})
            error = c.recv()
            assert (error["type"], error["error"]["code"], error["error"]["event_id"]) == ("error", code, "ev_bad")
        c.send({"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [
            {"type": "input_image", "image_url": url}, {"type": "input_text", "text": "what is it"}]}})
        c.send({"type": "response.create"})
        events = c.until("response.done")
    assert reply_text(events) == f"Echo: what is it [image image/png {len(PNG)} bytes]"
    if dialect == "ga":  # beta's usage has no image tokens
        usage = events[-1]["response"]["usage"]
        assert usage["input_token_details"]["image_tokens"] == 258  # the emulator's figure per image, as Gemini's
    turns = [m["clientContent"]["turns"] for m in models_stack.latest_upstream() if "clientContent" in m][-1]
    image = turns[-1]["parts"][0]["inlineData"]
    assert image["mimeType"] == "image/png" and base64.b64decode(image["data"]) == PNG


def test_litellms_documented_client_gets_its_text_reply_from_a_native_audio_model(models_stack, node_ws: Path):  # noqa: F811
    url = f"ws://127.0.0.1:{models_stack.port}/v1/realtime?model=m_25na"
    out = subprocess.run(["node", "seed.js"], cwd=node_ws, capture_output=True, text=True, timeout=30,
                         env={**os.environ, "RELAY_URL": url, "LITELLM_API_KEY": MASTER_KEY})
    assert out.returncode == 0, out.stderr
    assert "".join(re.findall(r"^  delta: '(.*)'", out.stdout, re.M)) == "Echo: hey there!"
    assert "response.audio" not in out.stdout  # text only, from the transcript
    setup = models_stack.latest_upstream()[0]["setup"]
    assert setup["generationConfig"]["responseModalities"] == ["AUDIO"] and "outputAudioTranscription" in setup


def test_a_translation_model_is_refused_on_the_conversation_route_with_where_to_go(models_stack):
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as info, raw(models_stack, model="m_translate"):
        pass
    assert info.value.response.status_code == 400
    error = json.loads(info.value.response.body)["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "unsupported_model"
    assert "/v1/realtime/translations?model=m_translate" in error["message"]
