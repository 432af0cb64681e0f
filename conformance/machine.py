"""The client half of the translator state machine: plumbing, the session model, and the rules that
send OpenAI client events (test_translator.py adds the Gemini half and runs it).

`Checker` validates every Output (schemas, errors, response lifecycle, upstream gating); the rules add
what each input must produce, from a small model of the session: whether a cancelled turn is being
discarded, whether a turnComplete belongs to an interrupted turn, whether user input was seen.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from conformance import frames as fr
from conformance import strategies as cs
from conformance.checker import NO_ECHO, Checker
from conformance.frames import response_side, types, with_id
from relay.codec_gemini import server_message_to_dict
from relay.events import gemini as gm
from relay.events import openai as oa
from relay.ids import counting_ids
from relay.models import caps_for
from relay.translate.translator import Output, Translator

CAPS = caps_for("gemini-2.0-flash-live-preview-04-09")


class ClientSide(RuleBasedStateMachine):
    """One Translator session; the OpenAI client's rules."""

    def __init__(self) -> None:
        super().__init__()
        self.check = Checker()
        self.discarding = False  # a cancelled turn is still streaming upstream
        self.swallow = False  # the next turnComplete ends an interrupted turn
        self.had_user_input = False
        self.maybe_held = False  # a response.create answered by nothing (held or queued)

    # ------------------------------------------------------------ plumbing

    @initialize(dialect=st.sampled_from([None, "beta", "ga"]), text_only=st.sampled_from([None, "beta", "ga"]))
    def open(self, dialect: str | None, text_only: str | None) -> None:
        self.t = Translator(counting_ids(), CAPS, dialect=dialect)  # type: ignore[arg-type]
        assert types(self.feed(self.t.start(), echo=NO_ECHO)) == ["session.created"]
        if text_only is not None:
            # what most text clients send first; the GA SDK's shape, or beta's
            shape = dialect or text_only
            patch = {"type": "realtime", "output_modalities": ["text"]} if shape == "ga" else {"modalities": ["text"]}
            assert types(self.client({"type": "session.update", "session": patch})) == ["session.updated"]

    def feed(self, out: Output, **kw: Any) -> list[dict[str, Any]]:
        for frame in out.client:
            assert cs.THOUGHT_MARK.encode() not in frame, f"a thought part reached the client: {frame!r}"
        self.last_out = out
        kw.setdefault("echo", None)  # errors not caused by a client frame carry no event_id
        return self.check.feed(out, self.t.dialect, **kw)

    def client(self, event: dict[str, Any] | bytes) -> list[dict[str, Any]]:
        frame = event if isinstance(event, bytes) else orjson.dumps(event)
        try:
            data = orjson.loads(frame)
        except orjson.JSONDecodeError:
            data = None
        echo = data.get("event_id") if isinstance(data, dict) else None
        before = self.t.dialect
        out = self.t.client_frame(frame)
        if before is not None:
            assert self.t.dialect == before, "the dialect is fixed for the connection"
        elif isinstance(data, dict):
            assert self.t.dialect == fr.expected_dialect(data)
        else:
            assert self.t.dialect is None
        return self.feed(out, echo=echo if isinstance(echo, str) else None)

    def upstream(self, message: gm.ServerMessage | bytes, **kw: Any) -> list[dict[str, Any]]:
        frame = message if isinstance(message, bytes) else orjson.dumps(server_message_to_dict(message))
        return self.feed(self.t.upstream_frame(frame), **kw)

    def item_events(self) -> list[str]:
        return fr.ITEM_EVENTS[self.t.dialect or "beta"]

    @invariant()
    def at_most_one_active_response(self) -> None:
        active = [r for r, status in self.check.responses.items() if status == "active"]
        assert active == ([self.check.active["id"]] if self.check.active else [])

    # ------------------------------------------------------------ client: session and items

    @rule(data=st.data(), eid=cs.event_ids)
    def session_update(self, data: st.DataObject, eid: str | None) -> None:
        """A patch in the session's dialect shape (either shape while the dialect is open)."""
        shapes = {"beta": cs.beta_session_patches(), "ga": cs.ga_session_patches()}
        patch = data.draw(shapes[self.t.dialect] if self.t.dialect else cs.session_patches())
        events = self.client(with_id({"type": "session.update", "session": patch}, eid))
        assert types(events) == ["session.updated"]
        fr.assert_echoed(patch, events[0]["session"])  # session.updated carries every field just set

    def create_item(self, item: oa.Item, eid: str | None) -> list[dict[str, Any]]:
        duplicate = item.id is not None and item.id in self.check.items
        events = self.client(cs.to_wire(oa.ConversationItemCreate(item=item, event_id=eid)))
        if duplicate:
            assert types(events) == ["error"] and events[0]["error"]["code"] == "duplicate_item_id"
            return []
        n = len(self.item_events())
        assert types(events[:n]) == self.item_events()
        created = events[0]["item"]
        assert created["role"] == item.role and created["status"] == "completed"
        assert item.id is None or created["id"] == item.id
        assert [p.get("text") for p in created["content"]] == [p.text for p in item.content or ()]
        return events[n:]

    @rule(item=cs.message_items("user"), eid=cs.event_ids)
    def user_item(self, item: oa.Item, eid: str | None) -> None:
        rest = response_side(self.create_item(item, eid))
        if self.maybe_held and not self.discarding and not self.had_user_input:
            assert types(rest) in ([], ["response.created"])
        else:
            assert rest == []
        self.had_user_input = True
        self.maybe_held = False

    @rule(item=cs.message_items("system") | cs.message_items("assistant") | cs.message_items("assistant", ga=True),
          eid=cs.event_ids)
    def other_item(self, item: oa.Item, eid: str | None) -> None:
        assert self.create_item(item, eid) == []

    @precondition(lambda self: self.check.items)
    @rule(data=st.data())
    def duplicate_item(self, data: st.DataObject) -> None:
        item = data.draw(cs.message_items("system", client_id=False))
        item.id = data.draw(st.sampled_from(sorted(self.check.items)))
        self.create_item(item, None)

    @rule(text=cs.texts, eid=cs.event_ids)
    def input_text(self, text: str, eid: str | None) -> None:
        active, was_ready = self.check.active, self.check.upstream == "ready"
        events = self.client(with_id({"type": "input_text", "text": text}, eid))
        n = len(self.item_events())
        assert types(events[:n]) == self.item_events()
        assert events[0]["item"]["content"] == [{"type": "input_text", "text": text}]
        rest = response_side(events[n:])
        if active is not None:
            assert types(rest) == ["error"]
            assert rest[0]["error"]["code"] == "conversation_already_has_active_response"
        elif not self.discarding:
            assert types(rest) == ["response.created"], "input_text asks for exactly one response"
        if types(rest) == ["response.created"] and was_ready and text:
            sent = [m["clientContent"] for m in self.last_out.upstream if "clientContent" in m]
            assert sent[-1]["turns"][-1] == {"role": "user", "parts": [{"text": text}]}
        self.had_user_input = True
        self.maybe_held = False

    # ------------------------------------------------------------ client: responses

    @rule(params=st.none() | cs.beta_response_params() | cs.ga_response_params(), eid=cs.event_ids)
    def response_create(self, params: dict[str, Any] | None, eid: str | None) -> None:
        active = self.check.active
        event = {"type": "response.create"} if params is None else {"type": "response.create", "response": params}
        events = response_side(self.client(with_id(event, eid)))
        if active is not None:
            assert types(events) == ["error"]
            assert events[0]["error"]["code"] == "conversation_already_has_active_response"
        elif not self.discarding and self.had_user_input:
            assert types(events) == ["response.created"]
        else:
            assert types(events) in ([], ["response.created"], ["error"])
        if not events:
            self.maybe_held = True
        if types(events) == ["response.created"] and params:
            response = events[0]["response"]
            assert response["metadata"] == params.get("metadata")
            voice = params.get("voice", params.get("audio", {}).get("output", {}).get("voice"))
            if voice is not None:
                assert response.get("voice", response.get("audio", {}).get("output", {}).get("voice")) == voice
            limit = params.get("max_response_output_tokens", params.get("max_output_tokens"))
            if limit is not None:
                assert response["max_output_tokens"] == limit

    @rule(which=st.sampled_from(["none", "active", "other"]), eid=cs.event_ids)
    def response_cancel(self, which: str, eid: str | None) -> None:
        active = self.check.active
        rid = {"none": None, "active": active and active["id"], "other": "resp_not_this_one"}[which]
        event = {"type": "response.cancel"} if rid is None else {"type": "response.cancel", "response_id": rid}
        events = self.client(with_id(event, eid))
        if active is None or which == "other":
            assert types(events) == ["error"] and events[0]["error"]["code"] == "response_cancel_not_active"
            return
        done = events[-1]
        assert done["type"] == "response.done" and done["response"]["id"] == active["id"]
        assert done["response"]["status"] == "cancelled"
        assert done["response"]["status_details"]["reason"] == "client_cancelled"
        self.discarding = True

    # ------------------------------------------------------------ client: retrieve, delete, truncate, misc

    @rule(data=st.data(), known=st.booleans(), op=st.sampled_from(["retrieve", "delete", "truncate"]),
          end_ms=st.sampled_from([0, 40, 10**7]), eid=cs.event_ids)
    def item_op(self, data: st.DataObject, known: bool, op: str, end_ms: int, eid: str | None) -> None:
        if known and self.check.items:
            item_id = data.draw(st.sampled_from(sorted(self.check.items)))
        else:
            item_id = data.draw(cs.client_ids.filter(lambda i: i not in self.check.items))
        item = self.check.items.get(item_id)
        event = {"type": f"conversation.item.{op}", "item_id": item_id}
        if op == "truncate":
            event.update(content_index=0, audio_end_ms=end_ms)
        events = self.client(with_id(event, eid))
        if item is None:
            assert types(events) == ["error"] and events[0]["error"]["code"] == "item_not_found"
            return
        if op == "truncate":
            audio = item.get("role") == "assistant" and [p["type"] for p in item["content"][:1]] in (["audio"],
                                                                                              ["output_audio"])
            if not audio or end_ms == 10**7:
                assert types(events) == ["error"] and events[0]["error"]["code"] == "invalid_value"
            elif end_ms == 0:
                assert types(events) == ["conversation.item.truncated"]
            return
        assert types(events) == [f"conversation.item.{op}d"]
        if op == "retrieve":
            got = events[0]["item"]
            assert got["id"] == item_id
            # an item still streaming has grown since it was announced; a finished one has not
            finished = item.get("status") != "in_progress"
            if finished and all(p["type"] in ("input_text", "text", "output_text") for p in item.get("content", [])):
                assert got["content"] == item["content"], "retrieve returns the item as it was last announced"

    @rule(frame=st.sampled_from(fr.MALFORMED)
          | cs.json_values.filter(lambda v: not isinstance(v, dict)).map(orjson.dumps)
          | cs.texts.map(lambda t: orjson.dumps({"type": "x." + t})))
    def malformed(self, frame: bytes) -> None:
        upstream = self.check.upstream
        events = self.client(frame)
        assert types(events) == ["error"] and events[0]["error"]["type"] == "invalid_request_error"
        assert self.check.upstream == upstream and not self.last_out.upstream

    @rule(event=st.sampled_from([oa.OutputAudioBufferClear, oa.TranscriptionSessionUpdate]).flatmap(
        lambda cls: cs.client_event_strategies()[cls]))
    def misc_client_event(self, event: Any) -> None:
        events = self.client(cs.to_wire(event))
        assert types(events) == ([] if isinstance(event, oa.OutputAudioBufferClear) else ["error"])

    # ------------------------------------------------------------ client: input audio

    @rule(ms=st.sampled_from([0, 10, 60, 150]), eid=cs.event_ids)
    def audio_append(self, ms: int, eid: str | None) -> None:
        events = self.client(with_id({"type": "input_audio_buffer.append", "audio": fr.pcm16(ms)}, eid))
        assert events == [], "append has no acknowledgement"

    @rule(op=st.sampled_from(["commit", "clear"]), eid=cs.event_ids)
    def audio_buffer(self, op: str, eid: str | None) -> None:
        events = self.client(with_id({"type": f"input_audio_buffer.{op}"}, eid))
        if op == "clear":
            assert types(events) == ["input_audio_buffer.cleared"]
        elif events[0]["type"] == "error":
            assert types(events) == ["error"] and events[0]["error"]["code"] == "input_audio_buffer_commit_empty"
        else:
            assert types(events)[:1 + len(self.item_events())] == ["input_audio_buffer.committed", *self.item_events()]
            self.had_user_input = True
