"""Whole sessions through one sans-IO Translator, driven by a hypothesis state machine.

`ClientSide` (machine.py) plays the OpenAI client, beta, GA or undecided until its first event; this
subclass plays Gemini: setupComplete, model text and audio, transcriptions, turnComplete with usage,
interruptions, closes and failures, and whole turns end to end.  Every step's Output is checked by
`Checker` (checker.py); rules check what their input must produce.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule

from conformance import frames as fr
from conformance import strategies as cs
from conformance.checker import name_of
from conformance.frames import deltas, response_side, speaks, types
from conformance.machine import ClientSide
from relay.events import gemini as gm
from relay.translate.resumption import RESUMABLE_CLOSES

ready = precondition(lambda self: self.check.upstream == "ready")


class TranslatorMachine(ClientSide):
    """`ClientSide` plus Gemini's rules."""

    tool_calls = 0  # toolCall messages sent, so that every Gemini call id differs

    def __init__(self) -> None:
        super().__init__()
        self.audio_sent: dict[str, bytes] = {}  # response id → the pcm16 bytes Gemini sent for it

    @invariant()
    def pcm16_bytes_in_are_bytes_out(self) -> None:
        """A pcm16 response's audio deltas decode to the bytes Gemini sent for it, less at most one byte of an
        odd-length chunk held for its sample's other half."""
        for resp in list(self.audio_sent):
            sent = self.audio_sent[resp]
            got = b"".join(base64.b64decode(d) for (r, _, _), log in self.check.parts.items() if r == resp
                           for d in log.audio)
            assert sent.startswith(got) and len(sent) - len(got) <= 1, (len(sent), len(got))
            if self.check.responses.get(resp) != "active":
                del self.audio_sent[resp]

    # ------------------------------------------------------------ upstream: Gemini output

    @precondition(lambda self: self.check.upstream == "setup_sent")
    @rule(message=cs.setup_completes.map(lambda s: gm.ServerMessage(setup_complete=s)))
    def setup_complete(self, message: gm.ServerMessage) -> None:
        self.check.upstream_ready()
        assert self.upstream(message, flush=True) == []

    def model_output(self, content: gm.ServerContent, usage: gm.UsageMetadata | None = None) -> list[dict[str, Any]]:
        active, discarding = self.check.active, self.discarding
        events = self.upstream(gm.ServerMessage(server_content=content, usage_metadata=usage), requested=discarding)
        self.swallow = self.continuing = False
        if discarding:
            assert types(response_side(events)) in ([], ["response.created"]), "a cancelled turn's output is dropped"
            return events
        created = [e["response"] for e in events if e["type"] == "response.created"]
        assert active is not None or created, "output nobody asked for opens a response"
        response = active or created[0]
        text, blobs = fr.visible_output(content)
        if speaks(response):
            assert "".join(deltas(events, "response.audio_transcript.delta")) == text
            if fr.audio_format(response) == "pcm16":
                self.audio_sent[response["id"]] = self.audio_sent.get(response["id"], b"") + b"".join(
                    base64.b64decode(b) for b in blobs)
        else:
            assert "".join(deltas(events, "response.text.delta")) == text
            assert not deltas(events, "response.audio.delta")
        return events

    @ready
    @rule(calls=st.lists(st.tuples(cs.names, st.none() | cs.json_objects), min_size=1, max_size=3),
          gemini_ids=st.booleans())
    def tool_call(self, calls: list[tuple[str, dict[str, Any] | None]], gemini_ids: bool) -> None:
        """Gemini calls functions: they end the response (opened for them if none is active) as function_call
        items, and Gemini's turnComplete, if it sends one, ends nothing more."""
        self.tool_calls += 1
        fcs = [gm.FunctionCall(id=f"fc-{self.tool_calls}-{i}" if gemini_ids else None, name=name, args=args)
               for i, (name, args) in enumerate(calls)]
        discarding = self.discarding
        events = response_side(self.upstream(gm.ServerMessage(tool_call=gm.ToolCall(function_calls=fcs)),
                                             requested=discarding))
        self.continuing = False
        if discarding:
            assert types(events) in ([], ["response.created"]), "a cancelled turn's calls are dropped"
            return
        self.swallow = True
        done = events[-1]
        assert done["type"] == "response.done" and done["response"]["status"] == "completed"
        assert self.check.active is None
        made = [i for i in done["response"]["output"] if i["type"] == "function_call"][-len(calls):]
        # A call that repeats one of the open tool turn (its Gemini id, or with none its name and arguments) is
        # a model's duplicate, and dropped.
        keys = [f.id or f"{f.name}:{orjson.dumps(f.args or {}).decode()}" for f in fcs]
        fresh = [k not in self.turn_keys and k not in keys[:i] for i, k in enumerate(keys)]
        want = [(f.name, f.args or {}) for f, new in zip(fcs, fresh, strict=True) if new]
        self.turn_keys.update(keys)
        made = made[len(made) - len(want):]
        assert [(i["name"], orjson.loads(i["arguments"])) for i in made] == want
        assert len({i["call_id"] for i in made}) == len(made), "call ids are unique"
        self.open_calls.update((i["call_id"], i["name"]) for i in made)
        gemini = {f.id for f in fcs}
        self.waiting.update((i["call_id"], i["call_id"] if i["call_id"] in gemini else None) for i in made)

    @ready
    @rule(data=st.data())
    def tool_call_cancellation(self, data: st.DataObject) -> None:
        """Gemini withdraws calls (the user spoke): nothing for the client to see; an output for them is
        acknowledged as an item and not sent."""
        known = [c for c in self.open_calls if c.startswith("fc-")]
        ids = data.draw(st.lists(st.sampled_from(known) | cs.client_ids, min_size=1, max_size=3) if known
                        else st.lists(cs.client_ids, min_size=1, max_size=2))
        events = self.upstream(gm.ServerMessage(tool_call_cancellation=gm.ToolCallCancellation(ids=ids)),
                               requested=False)
        assert response_side(events) == []
        for call_id, gemini_id in list(self.waiting.items()):
            if gemini_id in ids:
                del self.waiting[call_id]
        if not self.waiting:
            self.turn_keys.clear()

    @ready
    @rule(turn=cs.model_turns)
    def model_text(self, turn: gm.Content) -> None:
        self.model_output(gm.ServerContent(model_turn=turn))

    @ready
    @rule(blobs=st.lists(cs.audio_parts | cs.odd_audio_parts, min_size=1, max_size=3), transcript=cs.gm_transcriptions)
    def model_audio(self, blobs: list[gm.Part], transcript: gm.Transcription) -> None:
        self.model_output(gm.ServerContent(model_turn=gm.Content(role="model", parts=blobs),
                                           output_transcription=transcript))

    @ready
    @rule(reason=st.none() | st.sampled_from(sorted(fr.OUTCOME)), usage=st.none() | cs.usage_metadata,
          final=st.none() | cs.model_turns)
    def turn_complete(self, reason: str | None, usage: gm.UsageMetadata | None, final: gm.Content | None) -> None:
        content = gm.ServerContent(model_turn=final, turn_complete=True, turn_complete_reason=reason)
        discarding = self.discarding
        if self.continuing and final is None:
            self.absorbing = False  # the continuation ended with nothing: a response.create is a new generation
        self.continuing = False
        if final is not None:
            events = self.model_output(content, usage)
        else:
            events = self.upstream(gm.ServerMessage(server_content=content, usage_metadata=usage),
                                   requested=discarding)
        if discarding:
            self.discarding = False
            assert "response.done" not in types(events)
            return
        if self.swallow:
            self.swallow = False
            assert response_side(events) == [], "the turnComplete of an interrupted turn is swallowed"
            return
        assert self.check.active is None, "turnComplete ends the active response"
        done = [e["response"] for e in events if e["type"] == "response.done"]
        if not done:
            assert response_side(events) == []
            return
        status, why = fr.OUTCOME.get(reason or "", ("completed", None))
        assert done[0]["status"] == status
        assert (done[0]["status_details"] or {}).get("reason") == why
        if usage is not None:
            out = (usage.response_token_count or usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0)
            assert done[0]["usage"]["output_tokens"] == out
            assert done[0]["usage"]["input_tokens"] == (usage.prompt_token_count or 0) + (
                usage.tool_use_prompt_token_count or 0)

    @ready
    @rule()
    def interrupted(self) -> None:
        active, discarding = self.check.active, self.discarding
        if self.continuing:
            self.absorbing = self.continuing = False
        events = response_side(self.upstream(gm.ServerMessage(server_content=gm.ServerContent(interrupted=True)),
                                             requested=discarding))
        self.discarding, self.swallow = False, True
        if discarding:
            assert types(events) in ([], ["response.created"])
        elif active is not None:
            done = events[-1]
            assert done["type"] == "response.done" and done["response"]["status"] == "cancelled"
            assert done["response"]["status_details"]["reason"] == "turn_detected"
        else:
            assert events == []

    @ready
    @rule(transcript=cs.gm_transcriptions)
    def input_transcription(self, transcript: gm.Transcription) -> None:
        events = self.upstream(gm.ServerMessage(server_content=gm.ServerContent(input_transcription=transcript)),
                               requested=False)
        assert response_side(events) == [], "input transcription is about the user's turn"

    @ready
    @rule(message=cs.quiet_server_messages)
    def quiet_upstream(self, message: gm.ServerMessage) -> None:
        connects, boundary = len(self.check.connects), self.at_boundary()
        # (a switch this releases may close the transcription of the last audio item: user-side events only)
        assert response_side(self.upstream(message, requested=False)) == []
        upd = message.session_resumption_update
        if upd and upd.resumable and upd.new_handle:
            assert self.t.resumption_handle == upd.new_handle
        if message.go_away is not None:
            self.asked_switch(connects, boundary)

    # ------------------------------------------------------------ upstream: sessions across connections

    @ready
    @rule(seconds=st.integers(0, 600))
    def go_away(self, seconds: int) -> None:
        connects, boundary = len(self.check.connects), self.at_boundary()
        assert response_side(self.upstream(gm.ServerMessage(go_away=gm.GoAway(f"{seconds}s")), requested=False)) == []
        self.asked_switch(connects, boundary)

    @ready
    @rule()
    def resumption_handle(self) -> None:
        """A new resumable handle: it covers everything sent so far, and may release a waiting switch; one that
        comes after a turn was sent and before Gemini answered anything does not release a switch."""
        handle = f"handle-{len(self.check.ledger.created)}-{self.appends}-{len(self.check.events)}"
        upd = gm.SessionResumptionUpdate(new_handle=handle, resumable=True)
        assert response_side(self.upstream(gm.ServerMessage(session_resumption_update=upd), requested=False)) == []
        assert self.t.resumption_handle == handle

    @ready
    @rule(update=st.sampled_from([(None, False), ("", False), ("", True), (None, True), ("not-resumable", False)]))
    def unresumable_update(self, update: tuple[str | None, bool]) -> None:
        """`resumable: false` (Gemini is generating) or no handle: the previous handle stays."""
        handle, before = update[0], self.t.resumption_handle
        upd = gm.SessionResumptionUpdate(new_handle=handle, resumable=update[1])
        assert self.upstream(gm.ServerMessage(session_resumption_update=upd), requested=False) == []
        assert self.t.resumption_handle == before

    @precondition(lambda self: self.check.upstream != "none")
    @rule(code=st.sampled_from([*sorted(RESUMABLE_CLOSES), 1007, 1008]), reason=cs.texts)
    def upstream_close(self, code: int, reason: str) -> None:
        self.upstream_fault(("closed", code, reason))  # resumable or not: `closed` tells them apart

    def closed(self, code: int | None, reason: str) -> list[dict[str, Any]] | None:
        """Gemini ended the connection: a resumable close with a handle on a ready connection resumes at once;
        anything else is an upstream fault (returns None then, for the caller's checks)."""
        active, connects = self.check.active, len(self.check.connects)
        resumes = code in RESUMABLE_CLOSES and self.check.upstream == "ready" and self.check.ledger.newest is not None
        # A resume while a cancelled turn streams releases a response.create queued behind it.
        events = self.feed(self.t.upstream_closed(code, reason), requested=resumes and self.discarding)
        if not resumes:
            self.tools_forgotten()
            return events
        # A tool turn does not outlive its connection: the calls are history on a fresh session.
        fresh = self.tool_turn()
        if fresh:
            self.tools_forgotten()
        assert len(self.check.connects) == connects + 1 and self.check.connects[-1].resume != fresh
        assert self.check.upstream == "setup_sent"
        side = response_side(events)
        if active is None and self.discarding:
            assert types(side) in ([], ["response.created"]), "a cancelled turn ends unseen with its connection"
        elif active is None:
            assert side == [], "a close between turns is invisible to the client"
        else:
            assert side[0]["type"] == "error" and side[0]["error"]["code"] == "upstream_closed"
            assert side[0]["error"]["type"] == "server_error"
            assert types(side)[-1] == "response.done" and side[-1]["response"]["id"] == active["id"]
            assert side[-1]["response"]["status"] == "failed"
        self.discarding = False
        return None

    @precondition(lambda self: self.check.upstream == "setup_sent" and self.check.connects[-1].resume)
    @rule(why=st.sampled_from(["handle rejected (1008)", "retries spent"]))
    def resume_failed(self, why: str) -> None:
        """The shell could not resume: a fresh session, the conversation replayed, no client error."""
        connects = len(self.check.connects)
        events = self.feed(self.t.resume_failed(why), requested=False)
        assert len(self.check.connects) == connects + 1 and not self.check.connects[-1].resume
        assert response_side(events) == []

    # ------------------------------------------------------------ upstream: faults

    @precondition(lambda self: self.check.upstream != "none")
    @rule(fault=cs.upstream_faults(fr.UPSTREAM_GARBAGE))
    def upstream_fault(self, fault: tuple[str, int | None, Any]) -> None:
        how, code, text = fault
        active = self.check.active
        if how == "closed":
            got = self.closed(code, text)
            if got is None:
                return  # resumed (checked there)
            events = got
            kind = "invalid_request_error" if code in (1007, 1008, 4003) else "server_error"
        elif how == "failed" and self.check.upstream == "setup_sent":
            events = self.feed(self.t.upstream_failed(code, text), requested=False)
            kind = "invalid_request_error" if code is not None and code < 500 else "server_error"
        elif how == "garbage":
            events, kind = self.upstream(text, requested=False), "server_error"
        elif how == "stalled" and self.t.awaiting_model:
            # The shell's deadline fires only while Gemini owes output.
            events, kind = self.feed(self.t.upstream_stalled(text), requested=False), "server_error"
        else:
            return
        code = {"closed": "upstream_closed", "failed": "upstream_connection_failed",
                "stalled": "upstream_timeout"}.get(how, "upstream_protocol_error")
        assert (events[0]["type"], events[0]["error"]["type"], events[0]["error"]["code"]) == ("error", kind, code)
        if active is not None:
            done = response_side(events)[-1]
            assert done["type"] == "response.done" and done["response"]["id"] == active["id"]
            assert done["response"]["status"] == "failed"
        assert self.check.active is None and self.check.upstream == "none"
        self.tools_forgotten()
        assert not self.t.awaiting_model
        self.discarding = False

    # ------------------------------------------------------------ a whole turn

    @precondition(lambda self: self.check.active is None and not self.discarding and not self.swallow)
    @rule(text=cs.nonempty_texts, chunks=st.lists(cs.nonempty_texts, min_size=1, max_size=4), audio=st.booleans(),
          reason=st.none() | st.sampled_from(sorted(fr.OUTCOME)), usage=st.none() | cs.usage_metadata)
    def whole_turn(self, text: str, chunks: list[str], audio: bool, reason: str | None,
                   usage: gm.UsageMetadata | None) -> None:
        """input_text, Gemini streams its answer, turnComplete: the full lifecycle of protocols.md 1.9 B/C."""
        start = len(self.check.events)
        self.input_text(text, None)
        if self.check.upstream == "setup_sent":
            self.setup_complete(gm.ServerMessage(setup_complete=gm.SetupComplete()))
        response = self.check.active
        assert response is not None
        for chunk in chunks:
            if audio:
                blob = gm.Part(inline_data=gm.Blob(mime_type="audio/pcm;rate=24000", data=fr.pcm16(5)))
                self.model_output(gm.ServerContent(model_turn=gm.Content(role="model", parts=[blob]),
                                                   output_transcription=gm.Transcription(text=chunk)))
            else:
                self.model_output(gm.ServerContent(model_turn=gm.Content(role="model", parts=[gm.Part(text=chunk)])))
        self.turn_complete(reason, usage, None)
        events = [e for e in response_side(self.check.events[start:]) if name_of(e) != "conversation.item.created"
                  or e["item"].get("role") == "assistant"]
        assert fr.lifecycle(events) == fr.expected_lifecycle(speaks(response), self.t.dialect or "beta")
        part = events[-1]["response"]["output"][0]["content"][0]
        assert part.get("text", part.get("transcript")) == "".join(chunks)


TestTranslatorSessions = TranslatorMachine.TestCase
# Twice the profile's example count (dev 100, ci 400, long 4000) of its step count (40, 40, 100): one session of
# 40 steps costs ~50 ms.
TestTranslatorSessions.settings = settings(max_examples=2 * settings().max_examples,
                                           stateful_step_count=settings().stateful_step_count, deadline=None)
