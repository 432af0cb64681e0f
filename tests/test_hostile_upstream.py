"""A hostile Gemini: whatever the upstream sends, the client gets a clear `error` or a sane response, valid
against the SDK's schema, and the session goes on (issue 15, item 4, Gemini's side).

The fake upstream below answers `setup` as Gemini does, then plays one misbehaviour per session, chosen by
the API key of the model the client asked for (AI Studio puts the key in the URL).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.sync.server import Server, ServerConnection, serve

from tests.clients import raw
from tests.schemas import validate_openai
from tests.stack import Stack

SETUP_COMPLETE = json.dumps({"setupComplete": {}})


def _content(**fields: Any) -> str:
    return json.dumps({"serverContent": fields})


def _text(text: str) -> str:
    return _content(modelTurn={"role": "model", "parts": [{"text": text}]})


def _audio(data: bytes, mime: str) -> str:
    return _content(modelTurn={"parts": [{"inlineData": {"mimeType": mime, "data": base64.b64encode(data).decode()}}]})


DONE = _content(turnComplete=True)

# What each misbehaving upstream sends for a user turn (after answering setup correctly).
PLAYS: dict[str, list[str | bytes]] = {
    "malformed": ["{not json"],
    "not_an_object": ["[1, 2, 3]", "42"],
    "binary_garbage": [bytes(range(256)) * 4],
    "unknown_fields": [
        json.dumps({"serverContent": {"modelTurn": {"parts": [{"text": "Hel", "futurePart": {"x": 1}}]},
                                      "someNewFlag": True}, "brandNewMessage": {"a": [1, 2]}}),
        _content(modelTurn={"parts": [{"executableCode": {"language": "PYTHON", "code": "print(1)"}},
                                      {"text": "lo"}]}),
        json.dumps({"totallyUnknown": {}}),
        DONE,
    ],
    "odd_audio": [
        _audio(b"\x01\x02\x03", "audio/pcm;rate=24000"),  # an odd number of bytes
        _audio(b"\x00\x10" * 801, "audio/pcm;rate=16000"),  # another rate
        _audio(b"\x00\x10" * 11, "audio/pcm"),  # no rate
        _audio(b"\x05" * 7, "audio/pcm;rate=8000"),
        _content(modelTurn={"parts": [{"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": "not base64!"}}]}),
        DONE,
    ],
    "out_of_order": [
        DONE,  # a turn that never started
        json.dumps({"toolCallCancellation": {"ids": ["never-called"]}}),
        json.dumps({"sessionResumptionUpdate": {"resumable": True}}),  # no handle
        _content(interrupted=True),
        json.dumps({"setupComplete": {}}),  # a second one
        _content(outputTranscription={"text": "words"}),
        _text("late text"),
        DONE,
        DONE,
    ],
    "wrong_types": [
        _content(modelTurn={"parts": "not a list"}),
        _content(turnComplete="yes"),
        json.dumps({"usageMetadata": {"promptTokenCount": "many"}}),
        json.dumps({"toolCall": {"functionCalls": [{"name": 5, "args": "x"}]}}),
        json.dumps({"goAway": {"timeLeft": 12}}),
        DONE,
    ],
    "huge": ["x" * (50 * 1024 * 1024)],  # past the relay's largest message
}


ENDED: dict[str, str] = {}  # per play, how its connection ended: "timeout" if a send waited 10 s on the relay


def _play(ws: ServerConnection) -> None:
    # A send the relay no longer reads (the 50 MiB frame it refused) must end, not hold the server's shutdown.
    ws.socket.settimeout(10)
    key = ""
    try:
        first = json.loads(ws.recv())
        assert "setup" in first
        ws.send(SETUP_COMPLETE)
        key = ws.request.headers.get("x-goog-api-key") or ws.request.path.partition("key=")[2].partition("&")[0]
        for message in ws:
            data = json.loads(message)
            asks = "clientContent" in data or "text" in data.get("realtimeInput", {})
            if asks:
                for frame in PLAYS[key]:
                    ws.send(frame)
        ENDED[key] = "closed"
    except TimeoutError:
        ENDED[key] = "timeout"
    except Exception:  # the relay may close at any point; the test judges the client's side
        ENDED[key] = "closed"


@pytest.fixture(scope="module")
def hostile() -> Iterator[Server]:
    server = serve(_play, "127.0.0.1", 0, max_size=None)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    thread.join(10)


def _models(port: int) -> list[dict[str, Any]]:
    return [{"model_name": f"hostile_{name}",
             "litellm_params": {"model": "gemini/gemini-live-2.5-flash-preview", "api_key": name,
                                "api_base": f"ws://127.0.0.1:{port}"}} for name in PLAYS]


@pytest.fixture(scope="module", params=["trio-websocket", "websockets"])
def stack(hostile: Server, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("hostile"), transport=request.param,
              extra_models=_models(hostile.socket.getsockname()[1])).start()
    yield s
    s.stop()


def _turn(c: Any, text: str) -> list[dict[str, Any]]:
    """One text turn; every event up to its end (response.done), or up to an `error` and 2 s of whatever
    follows it (a failed response's done, for instance)."""
    c.send({"type": "conversation.item.create",
            "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}})
    c.send({"type": "response.create"})
    events: list[dict[str, Any]] = []
    while True:
        event = c.recv()
        validate_openai(event, "ga")
        events.append(event)
        if event["type"] == "response.done":
            return events


@pytest.mark.parametrize("play", list(PLAYS))
def test_a_misbehaving_gemini_gives_a_clear_answer_and_the_session_goes_on(stack: Stack, play: str) -> None:
    with raw(stack, model=f"hostile_{play}", dialect="ga") as c:
        modality = "audio" if play == "odd_audio" else "text"
        c.send({"type": "session.update", "session": {"type": "realtime", "output_modalities": [modality]}})
        events = _turn(c, "hello")
        done = events[-1]["response"]
        errors = [e["error"] for e in events if e["type"] == "error"]
        if play in ("malformed", "not_an_object", "binary_garbage", "huge"):
            # A broken upstream: the response fails with a reason, and the relay drops that connection.
            assert done["status"] == "failed", events
            assert errors and errors[0]["type"] == "server_error"
            assert errors[0]["code"] in ("upstream_protocol_error", "upstream_closed"), errors
        else:
            assert done["status"] == "completed", events
        if play == "odd_audio":
            # Whole pcm16 samples of valid base64 only: the odd byte is carried into the next chunk, the other
            # rates resampled, and the chunk that is not base64 dropped with an error (it crashed the session).
            deltas = [base64.b64decode(e["delta"], validate=True) for e in events
                      if e["type"] == "response.output_audio.delta"]
            assert deltas and all(len(d) % 2 == 0 for d in deltas)
            assert [e["code"] for e in errors] == ["upstream_protocol_error"]
        if play == "unknown_fields":
            text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
            assert text == "Hello"
        if play == "huge":
            # The relay stopped reading the frame it refused: it must also end that TCP connection (after its close
            # frame goes unanswered), not leave Gemini's send hanging until Gemini gives up.
            deadline = time.monotonic() + 9
            while play not in ENDED and time.monotonic() < deadline:
                time.sleep(0.1)
            assert ENDED.pop(play, None) == "closed", "the refused upstream connection was left open"
        # The session is alive: it still answers.
        c.send({"type": "session.update", "event_id": "alive", "session": {"type": "realtime", "instructions": "x"}})
        while (event := c.recv())["type"] != "session.updated":
            validate_openai(event, "ga")
