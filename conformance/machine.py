"""The client half of the translator state machine: plumbing, the session model, and the rules that
send OpenAI client events (test_translator.py adds the Gemini half and runs it).

`Checker` validates every Output (schemas, errors, response lifecycle, upstream gating); the rules add
what each input must produce, from a small model of the session: whether a cancelled turn is being
discarded, whether a turnComplete belongs to an interrupted turn, whether user input was seen.
"""

from __future__ import annotations

from typing import Any

import attrs
import orjson
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from conformance import frames as fr
from conformance import strategies as cs
from conformance.checker import NO_ECHO, Checker
from conformance.frames import response_side, types, with_id
from relay.audio import InputConverter
from relay.codec_gemini import server_message_to_dict
from relay.errors import ClientError
from relay.events import gemini as gm
from relay.events import openai as oa
from relay.ids import counting_ids
from relay.models import caps_for
from relay.translate.conversation import turn_of
from relay.translate.media import audio_blob
from relay.translate.responding import instructions_note
from relay.translate.translator import Output, Translator

CAPS = caps_for("gemini-2.0-flash-live-preview-04-09")


# response.create fields Gemini cannot change for one response once the connection is set up.
PER_CONNECTION = frozenset({"tools", "tool_choice", "voice", "audio", "temperature", "max_output_tokens",
                            "max_response_output_tokens", "reasoning", "modalities", "output_modalities",
                            "conversation", "input"})


class ClientSide(RuleBasedStateMachine):
    """One Translator session; the OpenAI client's rules."""

    def __init__(self) -> None:
        super().__init__()
        self.check = Checker()
        self.discarding = False  # a cancelled turn is still streaming upstream
        self.swallow = False  # the next turnComplete ends an interrupted turn
        self.had_user_input = False
        self.maybe_held = False  # a response.create answered by nothing (held or queued)
        self.appends = 0  # tags of appended audio, so that every chunk is told apart
        self.updates = 0  # live session.updates, so that every instruction differs
        self.touched = False  # a session.update was accepted: every setup follows the session
        self.switch_at: int | None = None  # a switch was asked for while this many Connects had been seen
        self.open_calls: dict[str, str] = {}  # call_id → name of Gemini's function calls the client has not answered
        self.absorbing = False  # a toolResponse went upstream: the next response.create may adopt the continuation
        self.waiting: dict[str, str | None] = {}  # call_id → Gemini id: calls of the open tool turn still unanswered
        self.continuing = False  # a toolResponse went upstream and Gemini has not answered it yet
        self.answers = 0
        self.turn_keys: set[str] = set()  # the open tool turn's calls, by Gemini id (or name and arguments)

    # ------------------------------------------------------------ plumbing

    @initialize(dialect=st.sampled_from([None, "beta", "ga"]), text_only=st.sampled_from([None, "beta", "ga"]),
                context_update=st.booleans())
    def open(self, dialect: str | None, text_only: str | None, context_update: bool) -> None:
        # With context_update an instructions change goes as contextUpdate; without, it needs a switch.
        self.caps = attrs.evolve(CAPS, context_update=context_update)
        self.t = Translator(counting_ids(), self.caps, dialect=dialect)  # type: ignore[arg-type]
        self.check.ledger.count_turns = self.check.ledger.unique_audio = True
        assert types(self.feed(self.t.start(), echo=NO_ECHO)) == ["session.created"]
        if text_only is not None:
            # what most text clients send first; the GA SDK's shape, or beta's
            shape = dialect or text_only
            patch = {"type": "realtime", "output_modalities": ["text"]} if shape == "ga" else {"modalities": ["text"]}
            assert types(self.client({"type": "session.update", "session": patch})) == ["session.updated"]
            self.touched = True

    def feed(self, out: Output, **kw: Any) -> list[dict[str, Any]]:
        for frame in out.client:
            assert cs.THOUGHT_MARK.encode() not in frame, f"a thought part reached the client: {frame!r}"
        self.last_out = out
        if any("toolResponse" in m for m in out.upstream):
            self.absorbing = self.continuing = True
        kw.setdefault("echo", None)  # errors not caused by a client frame carry no event_id
        events = self.check.feed(out, self.t.dialect, **kw)
        if out.connect is not None:
            self.swallow = False  # an interrupted turn's turnComplete never comes on another connection
            if self.touched:
                self.check_setup(out.connect.setup["setup"])
        return events

    def session_view(self) -> dict[str, Any]:
        """The session as the client was last told it (session.created / session.updated)."""
        return next(e["session"] for e in reversed(self.check.events)
                    if e["type"] in ("session.created", "session.updated"))

    def turn_detection(self) -> Any:
        session = self.session_view()
        if "turn_detection" in session:
            return session["turn_detection"]
        return session.get("audio", {}).get("input", {}).get("turn_detection")

    def check_setup(self, setup: dict[str, Any]) -> None:
        """A connection opened after a session.update has the session's turn mode and instructions."""
        aad = setup.get("realtimeInputConfig", {}).get("automaticActivityDetection", {})
        assert (aad.get("disabled") is True) == (self.turn_detection() is None), "setup has a stale turn mode"
        instructions = self.session_view().get("instructions")
        if instructions:
            text = "".join(p.get("text", "") for p in setup.get("systemInstruction", {}).get("parts", ()))
            assert instructions in text, "setup has stale instructions"

    def at_boundary(self) -> bool:
        """The turn boundary of the brief, from the model: ready, nothing owed, every turn covered by a handle."""
        return (self.check.upstream == "ready" and self.check.active is None and not self.discarding
                and self.check.ledger.covered and not self.tool_turn())

    def adopted(self, events: list[str]) -> None:
        """A response.create after tool outputs: Gemini answers the outputs by itself, so the response adopts that
        answer (created now, or nothing when the answer already opened its own response), or it is refused as any
        other.  A refused one may not have been the adopting one: the next may still adopt."""
        assert events in ([], ["response.created"], ["error"]), events
        if events != ["error"]:
            self.absorbing = False
            if events == []:
                self.continuing = False  # adopted by the response Gemini's answer streams (or streamed) into

    def tool_turn(self) -> bool:
        """Gemini waits for the answers to its calls, or has them and owes its continuation."""
        return bool(self.waiting) or self.continuing

    def tools_forgotten(self) -> None:
        """The relay dropped its tool state (the connection failed, or closed in a tool turn)."""
        self.waiting.clear()
        self.turn_keys.clear()
        self.continuing = self.absorbing = False

    def asked_switch(self, connects: int, boundary: bool) -> None:
        """Bookkeeping after an input that asks for a switch (`connects`, `boundary`: as before that input)."""
        if len(self.check.connects) > connects:
            assert boundary, "switched connections before a turn boundary"
            self.switch_at = None
        else:
            assert not boundary, "a switch asked for at a turn boundary did not happen at once"
            self.switch_at = len(self.check.connects)

    @invariant()
    def switch_at_first_boundary(self) -> None:
        if self.switch_at is not None and (self.check.upstream == "none" or len(self.check.connects) > self.switch_at):
            self.switch_at = None  # switched, or an upstream fault dropped the connection (and the switch)
        assert self.switch_at is None or not self.at_boundary(), "a turn boundary passed without the asked switch"

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
        if isinstance(message, gm.ServerMessage) and self.check.upstream == "ready":
            if message.server_content is not None or message.tool_call is not None:
                self.check.ledger.answered()
            upd = message.session_resumption_update
            if upd is not None and upd.resumable and upd.new_handle:
                self.check.ledger.handle(upd.new_handle)  # before the Output: a switch may ride on it
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
        assert "notice" not in events[0] and "notice" not in events[0]["session"]
        self.touched = True

    @precondition(lambda self: self.check.upstream != "none")
    @rule(what=st.sampled_from(["instructions", "turn_detection", "voice"]), data=st.data())
    def live_session_update(self, what: str, data: st.DataObject) -> None:
        """A session.update after setup: contextUpdate where the model takes it, else a switch at a boundary."""
        self.updates += 1
        ga = self.t.dialect == "ga"
        if what == "instructions":
            value: Any = f"Answer in {self.updates} words."
            patch: dict[str, Any] = {"instructions": value}
        elif what == "turn_detection":
            value = {"type": "server_vad"} if self.turn_detection() is None else None
            patch = {"audio": {"input": {"turn_detection": value}}} if ga else {"turn_detection": value}
        else:
            session = self.session_view()
            now = session.get("voice", session.get("audio", {}).get("output", {}).get("voice"))
            value = data.draw(st.sampled_from([v for v in cs.VOICES if v != now]))
            patch = {"audio": {"output": {"voice": value}}} if ga else {"voice": value}
        if ga:
            patch["type"] = "realtime"
        connects, boundary, ready = len(self.check.connects), self.at_boundary(), self.check.upstream == "ready"
        events = self.client({"type": "session.update", "session": patch})
        assert types(events) == ["session.updated"] and "notice" not in events[0]
        self.touched = True
        updates = [m["contextUpdate"] for m in self.last_out.upstream if "contextUpdate" in m]
        if what == "instructions" and self.caps.context_update:
            assert len(self.check.connects) == connects, "contextUpdate needs no switch"
            assert [value in orjson.dumps(u).decode() for u in updates] == ([True] if ready else [])
            return
        assert not updates, "only instructions and tools go as contextUpdate"
        if what != "voice":  # a voice may not reach the setup at all (a text session)
            self.asked_switch(connects, boundary)

    def create_item(self, item: oa.Item, eid: str | None) -> list[dict[str, Any]]:
        duplicate = item.id is not None and item.id in self.check.items
        if not duplicate:
            self.created(item)  # before the frame: its turn may leave for Gemini in this very Output
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

    def created(self, item: oa.Item) -> None:
        # The translator checks recorded audio into a Gemini blob when it takes the item; do the same to a copy.
        parts = []
        for part in item.content or ():
            if part.type == "input_audio" and part.audio:
                try:
                    part = attrs.evolve(part, blob=audio_blob(part.audio, self.t.session.input_audio_format, ""))
                except ClientError:
                    pass  # refused by the translator too: no turn
            parts.append(part)
        turn = turn_of(attrs.evolve(item, content=parts) if item.content is not None else item)
        if turn is not None:
            self.check.ledger.created[orjson.dumps(turn, option=orjson.OPT_SORT_KEYS).decode()] += 1

    @rule(item=cs.message_items("user"), eid=cs.event_ids)
    def user_item(self, item: oa.Item, eid: str | None) -> None:
        rest = response_side(self.create_item(item, eid))
        if self.maybe_held and not self.discarding and not self.had_user_input:
            assert types(rest) in ([], ["response.created"])
        else:
            assert rest == []
        self.had_user_input = True
        self.maybe_held = False

    @precondition(lambda self: self.open_calls)
    @rule(data=st.data(), output=cs.texts | cs.json_objects.map(lambda o: orjson.dumps(o).decode()), eid=cs.event_ids)
    def function_call_output(self, data: st.DataObject, output: str, eid: str | None) -> None:
        """The client answers one of Gemini's calls: live while its connection lives, else history."""
        call_id = data.draw(st.sampled_from(sorted(self.open_calls)))
        # every answer differs, so that the ledger tells a resent toolResponse from an equal answer of another turn
        self.answers += 1
        output = f"{output} #{self.answers}" if not output.startswith("{") else output[:-1] + f', "#": {self.answers}}}'
        output = output.replace("{, ", "{")
        name = self.open_calls.pop(call_id)
        self.waiting.pop(call_id, None)
        if not self.waiting:
            self.turn_keys.clear()  # the tool turn is over
        item = oa.Item(type="function_call_output", call_id=call_id, output=output, name=name)
        known = any(i.get("call_id") == call_id for i in self.check.items.values())
        self.created(item)  # before the frame, as a history turn may leave in this very Output (an upper bound)
        events = self.client(cs.to_wire(oa.ConversationItemCreate(item=attrs.evolve(item, name=None), event_id=eid)))
        if types(events) == ["error"]:
            # only an answer to a call the relay forgot (its connection failed) whose item was deleted
            assert not known and events[0]["error"]["code"] == "invalid_value", events
            return
        n = len(self.item_events())
        assert types(events[:n]) == self.item_events() and response_side(events[n:]) == []
        bodies = [a["response"] for m in self.last_out.upstream for a in m.get("toolResponse", {}).get(
            "functionResponses", ()) if a["name"] == name]
        assert not bodies or fr.function_response_body(output) in bodies, "a toolResponse without this answer"

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
        self.created(oa.Item(type="message", role="user", content=[oa.ContentPart(type="input_text", text=text)]))
        events = self.client(with_id({"type": "input_text", "text": text}, eid))
        n = len(self.item_events())
        assert types(events[:n]) == self.item_events()
        assert events[0]["item"]["content"] == [{"type": "input_text", "text": text}]
        rest = response_side(events[n:])
        if self.absorbing and not text:
            # no turn to send: this response may adopt Gemini's continuation of the tool outputs (see response_create)
            self.adopted(types(rest))
        elif active is not None:
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
        note = (params or {}).get("instructions")
        if isinstance(note, str) and note and self.check.upstream != "none":
            # Per-response instructions reach Gemini as a note turn of the relay's own making.
            self.check.ledger.created[orjson.dumps(instructions_note(note), option=orjson.OPT_SORT_KEYS).decode()] += 1
        events = response_side(self.client(with_id(event, eid)))
        if self.absorbing:
            self.adopted(types(events))
        elif active is not None:
            assert types(events) == ["error"]
            assert events[0]["error"]["code"] == "conversation_already_has_active_response"
        elif types(events) == ["error"] and set(params or ()) & PER_CONNECTION:
            # Gemini fixes these per connection: a response that changes them is refused, precisely.
            assert events[0]["error"]["code"] in ("unsupported_parameter", "conversation_already_has_active_response")
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
            finished = item.get("status") != "in_progress" and "content" in item
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

    @rule(event=cs.client_event_strategies()[oa.OutputAudioBufferClear])
    def output_buffer_clear(self, event: Any) -> None:
        assert self.client(cs.to_wire(event)) == []

    # A fresh session may still become a transcription session (conformance/test_transcription.py plays those);
    # once anything happened, the kind is fixed.
    @precondition(lambda self: not self.t._fresh_session())
    @rule(event=cs.client_event_strategies()[oa.TranscriptionSessionUpdate])
    def transcription_update_on_a_conversation(self, event: Any) -> None:
        events = self.client(cs.to_wire(event))
        assert types(events) == ["error"] and "not allowed" in events[0]["error"]["message"]

    # ------------------------------------------------------------ client: input audio

    @rule(ms=st.sampled_from([0, 10, 60, 150]), eid=cs.event_ids)
    def audio_append(self, ms: int, eid: str | None) -> None:
        self.appends += 1
        audio = fr.tagged_pcm16(ms, self.appends)
        chunks = InputConverter(self.t.session.input_audio_format).convert(audio)
        events = self.client(with_id({"type": "input_audio_buffer.append", "audio": audio}, eid))
        assert events == [], "append has no acknowledgement"
        self.check.ledger.appended(chunks)

    @rule(op=st.sampled_from(["commit", "clear"]), eid=cs.event_ids)
    def audio_buffer(self, op: str, eid: str | None) -> None:
        events = self.client(with_id({"type": f"input_audio_buffer.{op}"}, eid))
        if op == "clear":
            assert types(events) == ["input_audio_buffer.cleared"]
        elif events[0]["type"] == "error":
            assert types(events) == ["error"] and events[0]["error"]["code"] == "input_audio_buffer_commit_empty"
        else:
            if events[0]["type"] == "input_audio_buffer.speech_stopped":
                events = events[1:]  # the commit ends speech a barge-in announced
            assert types(events)[:1 + len(self.item_events())] == ["input_audio_buffer.committed", *self.item_events()]
            self.had_user_input = True
