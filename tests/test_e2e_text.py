"""Text sessions end to end: openai SDK (GA and beta) and raw websockets → relay → emulator, with
google-auth fetching a real token from a local token endpoint."""

from __future__ import annotations

import asyncio
import json

import pytest
from openai import AsyncOpenAI

from tests.clients import raw, sdk_beta, sdk_ga, squash, types
from tests.schemas import validate_gemini, validate_openai
from tests.stack import MASTER_KEY

GA_TEXT_TURN = [
    "response.created",
    "response.output_item.added",
    "conversation.item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "conversation.item.done",
    "response.done",
]
BETA_TEXT_TURN = [
    "response.created",
    "response.output_item.added",
    "conversation.item.created",
    "response.content_part.added",
    "response.text.delta",
    "response.text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.done",
]


def user_text(text: str) -> dict:
    return {
        "type": "conversation.item.create",
        "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]},
    }


def text_turn(c, text: str) -> list[dict]:
    """A user text item and response.create; the events from response.created to response.done."""
    c.send(user_text(text))
    for _ in range(2 if c.dialect == "ga" else 1):  # conversation.item.added/.done, or .created
        c.recv()
    c.send({"type": "response.create"})
    return c.until("response.done")


def reply_text(events: list[dict]) -> str:
    return "".join(e["delta"] for e in events if e["type"] in ("response.output_text.delta", "response.text.delta"))


def assert_upstream_valid(stack) -> None:
    for message in stack.upstream_messages():
        validate_gemini(message)


def test_ga_sdk_text_turn_has_full_lifecycle_and_mapped_usage(stack):
    with sdk_ga(stack) as c:
        assert c.recv()["type"] == "session.created"
        # The SDK's own first frame (protocols.md appendix B), then the app's.
        c.send({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"],
                "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}, "turn_detection": None}}}})
        c.send({"type": "session.update", "session": {"type": "realtime", "instructions": "Be brief.",
                                                       "max_output_tokens": 200}})
        first, second = c.recv(), c.recv()
        assert first["type"] == second["type"] == "session.updated"
        assert second["session"]["output_modalities"] == ["text"]
        assert second["session"]["instructions"] == "Be brief."
        assert second["session"]["audio"]["input"]["turn_detection"] is None
        c.send(user_text("what is the weather like today in Paris"))
        assert types([c.recv(), c.recv()]) == ["conversation.item.added", "conversation.item.done"]
        c.send({"type": "response.create"})
        events = c.until("response.done")
    assert squash(types(events)) == GA_TEXT_TURN
    deltas = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    assert len(deltas) > 1, "the reply streams in several chunks"
    text = "".join(deltas)
    assert text == "Echo: what is the weather like today in Paris"
    done = events[-1]["response"]
    assert done["status"] == "completed"
    assert done["output"][0]["content"][0] == {"type": "output_text", "text": text}
    assert done["usage"]["output_tokens"] == len(text.split())
    assert done["usage"]["input_tokens"] > 0
    assert done["usage"]["total_tokens"] == done["usage"]["input_tokens"] + done["usage"]["output_tokens"]
    assert_upstream_valid(stack)


def test_setup_is_sent_once_with_the_effective_session(stack):
    before = len(stack.upstream_messages())
    with sdk_ga(stack) as c:
        c.recv()
        c.send({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["audio"]}})
        c.send({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"],
                                                       "instructions": "You are terse.", "max_output_tokens": 50}})
        c.until("session.updated")
        c.until("session.updated")
        c.send(user_text("hello"))
        c.send({"type": "response.create"})
        c.until("response.done")
    sent = stack.upstream_messages()[before:]
    setups = [m["setup"] for m in sent if "setup" in m]
    assert len(setups) == 1
    setup = setups[0]
    assert setup["model"] == "projects/test-project/locations/us-central1/publishers/google/models/" \
                             "gemini-2.0-flash-live-preview-04-09"
    assert setup["generationConfig"]["responseModalities"] == ["TEXT"]
    assert setup["generationConfig"]["maxOutputTokens"] == 50
    assert setup["systemInstruction"]["parts"][0]["text"] == "You are terse."
    assert sent[1] == {"clientContent": {"turns": [{"role": "user", "parts": [{"text": "hello"}]}],
                                         "turnComplete": True}}
    for message in sent:
        validate_gemini(message)


def test_beta_sdk_text_turn_and_multi_turn_history(stack):
    with sdk_beta(stack) as c:
        created = c.recv()
        assert created["type"] == "session.created"
        c.send({"type": "session.update", "session": {"modalities": ["text"], "input_audio_format": "pcm16",
                                                       "turn_detection": None, "temperature": 0.6}})
        updated = c.recv()
        assert updated["session"]["modalities"] == ["text"] and updated["session"]["temperature"] == 0.6
        assert "model" not in updated["session"]
        for question in ["first question", "second question"]:
            c.send(user_text(question))
            assert c.recv()["type"] == "conversation.item.created"
            c.send({"type": "response.create"})
            events = c.until("response.done")
            assert squash(types(events)) == BETA_TEXT_TURN
            assert "".join(e["delta"] for e in events if e["type"] == "response.text.delta") == f"Echo: {question}"
            item = events[-1]["response"]["output"][0]
            assert item["content"][0]["type"] == "text"
            # the assistant item follows the user item of this turn
            added = next(e for e in events if e["type"] == "conversation.item.created")
            assert added["previous_item_id"] is not None
    assert_upstream_valid(stack)


def test_retrieve_delete_and_unknown_item(stack):
    with sdk_ga(stack) as c:
        c.recv()
        c.send({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}})
        c.recv()
        c.send(user_text("keep me"))
        item = c.recv()["item"]
        c.recv()
        c.send({"type": "conversation.item.retrieve", "item_id": item["id"], "event_id": "r1"})
        got = c.recv()
        assert got["type"] == "conversation.item.retrieved" and got["item"]["id"] == item["id"]
        assert got["item"]["content"] == [{"type": "input_text", "text": "keep me"}]
        c.send({"type": "conversation.item.delete", "item_id": item["id"]})
        assert c.recv() == {**c.events[-1], "type": "conversation.item.deleted", "item_id": item["id"]}
        c.send({"type": "conversation.item.retrieve", "item_id": item["id"], "event_id": "r2"})
        err = c.recv()
        assert err["type"] == "error" and err["error"]["code"] == "item_not_found"
        assert err["error"]["event_id"] == "r2"


def test_response_cancel_gives_cancelled_done_and_next_turn_works(stack):
    with sdk_beta(stack) as c:
        c.recv()
        c.send({"type": "session.update", "session": {"modalities": ["text"]}})
        c.recv()
        c.send(user_text("[fault:slow] please take your time with this long answer"))
        c.recv()
        c.send({"type": "response.create"})
        c.until("response.text.delta")
        c.send({"type": "response.cancel", "event_id": "cancel-1"})
        events = c.until("response.done")
        done = events[-1]["response"]
        assert done["status"] == "cancelled"
        assert done["status_details"]["reason"] == "client_cancelled"
        assert done["output"][0]["status"] == "incomplete"
        assert "response.text.done" in types(events)
        c.send({"type": "response.cancel", "event_id": "cancel-2"})
        err = c.recv()
        assert err["error"]["code"] == "response_cancel_not_active" and err["error"]["event_id"] == "cancel-2"
        # The cancelled turn's tail is dropped; the next turn is answered normally.
        c.send(user_text("after cancel"))
        c.recv()
        c.send({"type": "response.create"})
        events = c.until("response.done")
        assert "".join(e["delta"] for e in events if e["type"] == "response.text.delta") == "Echo: after cancel"
        assert events[-1]["response"]["status"] == "completed"


def test_second_response_create_while_active_is_an_error(stack):
    with sdk_ga(stack) as c:
        c.recv()
        c.send({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}})
        c.recv()
        c.send(user_text("[fault:slow] one at a time"))
        c.recv(), c.recv()
        c.send({"type": "response.create"})
        c.until("response.created")
        c.send({"type": "response.create", "event_id": "dup"})
        events = c.until("response.done")
        errors = [e for e in events if e["type"] == "error"]
        assert [e["error"]["code"] for e in errors] == ["conversation_already_has_active_response"]
        assert errors[0]["error"]["event_id"] == "dup"
        assert events[-1]["response"]["status"] == "completed"


def test_first_event_decides_dialect_without_header(stack):
    with raw(stack) as c:
        created = c.recv()  # validated against both SDKs at once
        assert "model" not in created["session"]
        c.dialect = "ga"
        c.send({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}})
        assert c.recv()["session"]["type"] == "realtime"
        c.send(user_text("ga please"))
        assert types([c.recv(), c.recv()]) == ["conversation.item.added", "conversation.item.done"]
    with raw(stack) as c:
        c.recv()
        c.dialect = "beta"
        c.send({"type": "session.update", "session": {"modalities": ["text"]}})
        assert c.recv()["session"]["modalities"] == ["text"]
        c.send(user_text("beta please"))
        c.send({"type": "response.create"})
        events = c.until("response.done")
        assert squash(types(events))[1:] == BETA_TEXT_TURN


def test_beta_subprotocol_and_browser_key_select_beta_and_echo_realtime(stack):
    protocols = ["realtime", f"openai-insecure-api-key.{MASTER_KEY}", "openai-beta.realtime-v1"]
    with raw(stack, headers={}, subprotocols=protocols, dialect="beta") as c:
        assert c.ws.subprotocol == "realtime"
        c.recv()
        c.send(user_text("from a browser"))
        assert c.recv()["type"] == "conversation.item.created"


def test_shorthand_input_text_and_held_response_create_shape_setup(stack):
    before = len(stack.upstream_messages())
    with raw(stack, headers={"api-key": MASTER_KEY}, dialect="beta") as c:
        c.send({"type": "response.create", "response": {"modalities": ["text"], "instructions": "Please assist."}})
        c.send({"type": "input_text", "text": "hey there!"})
        events = c.until("response.done")
    names = squash(types(events))
    assert names[:2] == ["session.created", "conversation.item.created"]
    assert names[2:] == BETA_TEXT_TURN
    assert names.count("response.created") == 1
    setup = next(m["setup"] for m in stack.upstream_messages()[before:] if "setup" in m)
    assert setup["generationConfig"]["responseModalities"] == ["TEXT"]
    assert setup["systemInstruction"]["parts"][0]["text"] == "Please assist."


@pytest.mark.parametrize(
    ("frame", "code", "param"),
    [
        ("{not json", "invalid_json", None),
        ('{"type": "no.such.event", "event_id": "bad-1"}', "invalid_value", "type"),
        ('{"event_id": "bad-1"}', "missing_required_parameter", "type"),
        ('{"type": "conversation.item.create", "event_id": "bad-1", "item": {"type": "message", "role": "user",'
         ' "content": [{"type": "input_text", "text": 42}]}}', "invalid_type", "item.content[0].text"),
        ('{"type": "session.update", "event_id": "bad-1", "session": {"temperature": "hot"}}',
         "invalid_type", "session.temperature"),
        ('{"type": "conversation.item.retrieve", "event_id": "bad-1"}', "missing_required_parameter", "item_id"),
        ('[1, 2, 3]', "invalid_event", None),
    ],
)
def test_bad_input_gets_an_error_event_and_the_session_goes_on(stack, frame, code, param):
    with raw(stack, dialect="beta") as c:
        c.recv()
        c.send_raw(frame)
        err = c.recv()
        assert err["type"] == "error"
        assert err["error"]["type"] == "invalid_request_error"
        assert err["error"]["code"] == code
        assert err["error"]["param"] == param
        if "bad-1" in frame:
            assert err["error"]["event_id"] == "bad-1"
        c.send({"type": "session.update", "session": {"modalities": ["text"]}})
        assert c.recv()["type"] == "session.updated"
        c.send(user_text("still alive"))
        c.send({"type": "response.create"})
        events = c.until("response.done")
        assert "".join(e["delta"] for e in events if e["type"] == "response.text.delta") == "Echo: still alive"


def test_oversized_event_is_an_error_not_a_disconnect(stack):
    from tests.test_http import metrics

    counted = ("relay_limit_rejections_total", (("limit", "frame_size"),))
    before = metrics(stack).get(counted, 0)
    with raw(stack, dialect="beta") as c:
        c.recv()
        c.send_raw(json.dumps({"type": "conversation.item.create", "event_id": "big",
                               "item": {"type": "message", "role": "user",
                                        "content": [{"type": "input_text", "text": "x" * (17 * 1024 * 1024)}]}}))
        err = c.recv()
        assert err["error"]["code"] == "message_too_large"
        assert metrics(stack)[counted] == before + 1
        c.send({"type": "session.update", "session": {"modalities": ["text"]}})
        assert c.recv()["type"] == "session.updated"


def test_upstream_1011_is_a_server_error_and_the_next_turn_reconnects(stack):
    with sdk_ga(stack) as c:
        c.recv()
        c.send({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}})
        c.recv()
        events = text_turn(c, "[fault:mid-1011] this will break")
        err = next(e for e in events if e["type"] == "error")
        assert err["error"]["type"] == "server_error"
        assert err["error"]["code"] == "upstream_closed"
        assert "1011" in err["error"]["message"] and "Internal error occurred." in err["error"]["message"]
        assert events[-1]["response"]["status"] == "failed"
        events = text_turn(c, "are you back")
        assert events[-1]["response"]["status"] == "completed" and reply_text(events) == "Echo: are you back"


def test_upstream_1007_is_an_invalid_request_error(stack):
    with sdk_beta(stack) as c:
        c.recv()
        c.send({"type": "session.update", "session": {"modalities": ["text"]}})
        c.recv()
        c.send(user_text("[fault:close-1007]"))
        c.recv()
        c.send({"type": "response.create"})
        events = c.until("response.done")
        err = next(e for e in events if e["type"] == "error")
        assert err["error"]["type"] == "invalid_request_error"
        assert "Request contains an invalid argument." in err["error"]["message"]


def test_upstream_refusing_the_handshake_is_a_clear_error(stack):
    with sdk_beta(stack, model="studio_bad_key") as c:
        c.recv()
        c.send(user_text("hello"))
        c.recv()
        c.send({"type": "response.create"})
        events = c.until("response.done")
        err = next(e for e in events if e["type"] == "error")
        assert err["error"]["type"] == "invalid_request_error"
        assert err["error"]["code"] == "upstream_connection_failed"
        assert "401" in err["error"]["message"]
        assert "wrong-key" not in json.dumps(events)
        # the session is still usable
        c.send({"type": "conversation.item.retrieve", "item_id": "nope"})
        assert c.recv()["type"] == "error"


def test_unreachable_upstream_is_a_server_error(stack):
    with sdk_ga(stack, model="unreachable") as c:
        c.recv()
        c.send(user_text("anyone there"))
        c.recv(), c.recv()
        c.send({"type": "response.create"})
        events = c.until("response.done")
        err = next(e for e in events if e["type"] == "error")
        assert err["error"]["type"] == "server_error"
        assert events[-1]["response"]["status"] == "failed"


def test_ai_studio_model_with_binary_frames(stack):
    before = len(stack.upstream_messages())
    with sdk_beta(stack, model="gemini_studio") as c:
        c.recv()
        c.send({"type": "session.update", "session": {"modalities": ["text"]}})
        c.recv()
        c.send(user_text("[fault:binary] binary frames please"))
        c.recv()
        c.send({"type": "response.create"})
        events = c.until("response.done")
    text = "".join(e["delta"] for e in events if e["type"] == "response.text.delta")
    assert text == "Echo: [fault:binary] binary frames please"
    assert events[-1]["response"]["usage"]["output_tokens"] == len(text.split())
    setup = next(m["setup"] for m in stack.upstream_messages()[before:] if "setup" in m)
    assert setup["model"] == "models/gemini-live-2.5-flash-preview"


def test_fifty_concurrent_sessions_complete_their_turns(stack):
    async def one(n: int) -> str:
        client = AsyncOpenAI(api_key=MASTER_KEY, base_url=stack.http_base)
        async with client.realtime.connect(model="vertex_gemini_live_text") as conn:
            await conn.send({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}})
            await conn.send(user_text(f"session number {n}"))
            await conn.send({"type": "response.create"})
            text = []
            while True:
                event = json.loads(await conn.recv_bytes())
                validate_openai(event, "ga")
                if event["type"] == "response.output_text.delta":
                    text.append(event["delta"])
                if event["type"] == "response.done":
                    assert event["response"]["status"] == "completed"
                    return "".join(text)

    async def main() -> list[str]:
        return await asyncio.wait_for(asyncio.gather(*(one(n) for n in range(50))), 60)

    results = asyncio.run(main())
    assert results == [f"Echo: session number {n}" for n in range(50)]
    # one token request served every session: the access token is cached
    assert stack.tokens.requests == 1


def test_ga_sdk_without_session_update_still_gets_ga_events(stack):
    with sdk_ga(stack) as c:
        c.recv()
        c.send(user_text("no session update first"))
        assert types([c.recv(), c.recv()]) == ["conversation.item.added", "conversation.item.done"]
        c.send({"type": "response.create"})
        events = c.until("response.done")
    # The default session is audio; the emulator answers with audio and a transcript.
    assert "response.output_audio_transcript.delta" in types(events)
    transcript = "".join(e["delta"] for e in events if e["type"] == "response.output_audio_transcript.delta")
    assert transcript == "Echo: no session update first"
    audio = [e for e in events if e["type"] == "response.output_audio.delta"]
    assert audio, "audio deltas are forwarded"


def test_session_update_after_setup_reaches_gemini_on_a_resumed_connection(stack):
    with sdk_ga(stack) as c:
        c.recv()
        c.send({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"],
                                                       "tracing": "auto", "truncation": "auto"}})
        first = c.recv()
        assert first["session"]["tracing"] == "auto" and first["session"]["truncation"] == "auto"
        assert "notice" not in first
        assert text_turn(c, "start the model")[-1]["response"]["status"] == "completed"
        before = len(stack.emulator.by_connection)
        c.send({"type": "session.update", "session": {"type": "realtime", "instructions": "New rules."}})
        updated = c.until("session.updated")[-1]
        assert updated["session"]["instructions"] == "New rules."
        assert updated["session"]["tracing"] == "auto"
        assert "notice" not in updated
        events = text_turn(c, "and now")
        assert events[-1]["response"]["status"] == "completed" and reply_text(events) == "Echo: and now"
        assert not [e for e in events if e["type"] == "error"]
        # The switch happened at the turn boundary: a new connection, resumed, with the new instructions, and
        # only the new turn on it.
        assert len(stack.emulator.by_connection) == before + 1
        resumed = stack.latest_upstream()
        setup = resumed[0]["setup"]
        assert setup["sessionResumption"]["handle"]
        assert setup["systemInstruction"]["parts"][0]["text"] == "New rules."
        sent = [m for m in resumed[1:] if "clientContent" in m]
        assert [t["parts"][0]["text"] for m in sent for t in m["clientContent"].get("turns", [])] == ["and now"]


def test_wrong_key_is_refused_with_401_and_other_sessions_are_unaffected(stack):
    from websockets.exceptions import InvalidStatus

    with sdk_ga(stack) as good:
        good.recv()
        good.send({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}})
        good.recv()
        for headers in ({"api-key": "sk-wrong"}, {"Authorization": "Bearer sk-wrong"}, {}):
            with pytest.raises(InvalidStatus) as info, raw(stack, headers=headers):
                pass
            assert info.value.response.status_code == 401
            assert json.loads(info.value.response.body)["error"]["code"] == "invalid_api_key"
        browser = ["realtime", "openai-insecure-api-key.sk-wrong"]
        with pytest.raises(InvalidStatus) as info, raw(stack, headers={}, subprotocols=browser):
            pass
        assert info.value.response.status_code == 401
        with pytest.raises(InvalidStatus) as info, raw(stack, model="no-such-model"):
            pass
        assert info.value.response.status_code == 404
        good.send(user_text("still here"))
        good.recv(), good.recv()
        good.send({"type": "response.create"})
        events = good.until("response.done")
        assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == "Echo: still here"
