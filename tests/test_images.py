"""Images (and whole recorded utterances) in conversation items, through the translator: what reaches Gemini, what
the client sees, and what is refused."""

from __future__ import annotations

import base64

import pytest

from relay.translate.media import MAX_IMAGE_BYTES
from tests.test_tools_translator import Session

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
PNG_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()


def image_item(url: str, text: str | None = "what is this?", dialect: str = "ga") -> dict:
    content: list[dict] = [{"type": "input_image", "image_url": url}]
    if dialect == "ga":
        content[0]["detail"] = "auto"
    if text is not None:
        content.append({"type": "input_text", "text": text})
    return {"type": "conversation.item.create", "event_id": "ev_img",
            "item": {"type": "message", "role": "user", "content": content}}


def open_session(dialect: str, model: str = "gemini-2.0-flash-live-001") -> Session:
    s = Session(dialect, model, "gemini")
    session = {"type": "realtime", "output_modalities": ["text"]} if dialect == "ga" else {"modalities": ["text"]}
    s.send({"type": "session.update", "session": session})
    return s


@pytest.mark.parametrize("dialect", ["ga", "beta"])
def test_an_image_reaches_gemini_unchanged_as_inline_data_of_the_user_turn(dialect):
    s = open_session(dialect)
    events = s.send(image_item(PNG_URL, dialect=dialect))
    assert [e["type"] for e in events][-1] in ("conversation.item.done", "conversation.item.created")
    echoed = events[0]["item"]["content"]
    if dialect == "ga":
        assert echoed[0] == {"type": "input_image", "image_url": PNG_URL, "detail": "auto"}
    else:
        assert [p["type"] for p in echoed] == ["input_text"]  # beta has no image parts
    s.send({"type": "response.create"})
    s.gemini({"setupComplete": {}})
    turns = [m["clientContent"]["turns"] for m in s.upstream if "clientContent" in m][-1]
    image = turns[-1]["parts"][0]["inlineData"]
    assert image["mimeType"] == "image/png" and base64.b64decode(image["data"]) == PNG
    assert turns[-1]["parts"][1] == {"text": "what is this?"}


def test_on_a_model_whose_text_goes_as_realtime_input_the_image_goes_as_a_video_frame_before_the_text():
    s = open_session("ga", "gemini-3.8-live")
    s.send({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                                                          "content": [{"type": "input_text", "text": "hello"}]}})
    s.send({"type": "response.create"})  # the first turn opens the connection (as initial history)
    s.gemini({"setupComplete": {}})
    s.gemini({"serverContent": {"outputTranscription": {"text": "Hi."}}})
    s.gemini({"serverContent": {"turnComplete": True}})
    s.upstream.clear()
    s.send(image_item(PNG_URL))
    s.send({"type": "response.create"})
    sent = [m["realtimeInput"] for m in s.upstream if "realtimeInput" in m]
    assert [next(iter(m)) for m in sent] == ["video", "text"]
    assert base64.b64decode(sent[0]["video"]["data"]) == PNG and sent[0]["video"]["mimeType"] == "image/png"


@pytest.mark.parametrize(("url", "code"), [
    ("https://example.com/cat.png", "unsupported_image_url"),
    ("http://example.com/cat.png", "unsupported_image_url"),
    ("data:image/gif;base64,R0lGODlh", "invalid_value"),
    ("data:image/png;base64,%%%not-base64", "invalid_value"),
    ("not a url", "invalid_value"),
    ("data:image/png;base64," + "A" * (MAX_IMAGE_BYTES // 3 * 4 + 8), "image_too_large"),
])
def test_an_image_the_relay_cannot_send_gets_a_precise_error_and_the_session_goes_on(url, code):
    s = open_session("ga")
    events = s.send(image_item(url))
    assert [e["type"] for e in events] == ["error"]
    error = events[0]["error"]
    assert (error["code"], error["event_id"], error["param"]) == (code, "ev_img", "item.content[0].image_url")
    assert s.send(image_item(PNG_URL))[-1]["type"] == "conversation.item.done"


def test_a_recorded_utterance_in_g711_goes_to_gemini_as_pcm_at_its_true_rate():
    s = Session("ga", "gemini-2.0-flash-live-001", "gemini")
    s.send({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"],
                                                   "audio": {"input": {"format": {"type": "audio/pcmu"}}}}})
    ulaw = base64.b64encode(b"\xff" * 800).decode()  # 100 ms of G.711 silence
    s.send({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                                                          "content": [{"type": "input_audio", "audio": ulaw}]}})
    s.send({"type": "response.create"})
    s.gemini({"setupComplete": {}})
    part = [m["clientContent"]["turns"] for m in s.upstream if "clientContent" in m][-1][-1]["parts"][0]
    assert part["inlineData"]["mimeType"] == "audio/pcm;rate=8000"
    assert len(base64.b64decode(part["inlineData"]["data"])) == 1600  # 800 samples of 16-bit PCM
