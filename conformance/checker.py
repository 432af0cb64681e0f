"""An observer of one translator session that checks every Output against the protocol.

Per event: the SDK schema of the dialect, unique event ids, well-formed errors echoing the client's
event_id, and the response lifecycle (protocols.md 1.9): at most one response active, each
`response.created` answered by exactly one `response.done`, output items and content parts opened
before their deltas and closed before `response.done`, `*.done` texts equal to their deltas.
Per Output: upstream messages only on a ready upstream, every message (and the setup, with a model
path) a valid Gemini LiveClientMessage, and one upstream turn for every requested response.
Across connections (`Ledger`): what each logical Gemini session holds, so that a switch or a resumed
close neither loses nor repeats client input, and a resume uses the newest resumable handle.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import attrs
import orjson

from relay.translate.base import Connect
from relay.translate.translator import Output
from tests.schemas import validate_gemini, validate_openai

MODEL = "projects/p/locations/l/publishers/google/models/m"
NO_ECHO = object()  # feed(echo=NO_ECHO): the Output does not answer a client frame

# GA names → beta names, so the lifecycle checks read one vocabulary.
CANON = {
    "conversation.item.added": "conversation.item.created",
    "response.output_text.delta": "response.text.delta",
    "response.output_text.done": "response.text.done",
    "response.output_audio.delta": "response.audio.delta",
    "response.output_audio.done": "response.audio.done",
    "response.output_audio_transcript.delta": "response.audio_transcript.delta",
    "response.output_audio_transcript.done": "response.audio_transcript.done",
}
UPSTREAM_FAULTS = ("upstream_closed", "upstream_connection_failed", "upstream_protocol_error", "upstream_timeout")
PART_EVENTS = {
    "response.content_part.added", "response.content_part.done", "response.text.delta", "response.text.done",
    "response.audio.delta", "response.audio.done", "response.audio_transcript.delta",
    "response.audio_transcript.done",
}


def name_of(event: dict[str, Any]) -> str:
    return CANON.get(event["type"], event["type"])


@attrs.define
class PartLog:
    kind: str  # "text" | "audio"
    text: list[str] = attrs.Factory(list)
    audio: list[str] = attrs.Factory(list)
    transcript: list[str] = attrs.Factory(list)
    dones: set[str] = attrs.Factory(set)
    closed: bool = False


Key = tuple[str, str]


def _canon(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def is_trigger(message: dict[str, Any]) -> bool:
    """A message that makes Gemini generate (written here, not imported: the checker's own reading)."""
    if "clientContent" in message:
        return bool(message["clientContent"].get("turnComplete"))
    ri = message.get("realtimeInput", {})
    return "toolResponse" in message or "text" in ri or "activityEnd" in ri


class Ledger:
    """What the logical Gemini session behind the current connection holds, across connection switches.

    A logical session starts at a fresh Connect (resume=False) and goes on through every resumed Connect;
    Gemini's state at a resume is what the handle covered, taken to be everything sent on that session
    before the handle arrived.  Audio reaches a session as realtime input or, once it became a turn, as
    the inlineData parts of a user turn (`clientContent`, the context a resumed session is given again).
    Checked:
    - a resume Connect carries the newest resumable handle of the session, a fresh one none;
    - no audio chunk reaches the session twice (so never twice on one connection), no user turn more
      often than the client created it, no toolResponse twice;
    - while a connection is ready, the session holds every audio chunk the client appended, except what
      an upstream fault discarded (the client got an error) and, on a fresh session, what had already
      become a turn or was covered by the old session's handle (the replay from the item store stands for
      those: committed audio carries no data to replay).
    """

    def __init__(self) -> None:
        self.sessions = 0  # logical sessions opened (fresh Connects)
        self.resumes = 0
        self.history: list[Key] = []  # what the current logical session holds, in order
        self.snapshot = 0  # len(history) when the newest handle arrived
        self.last_trigger = 0  # len(history) after the newest generation trigger
        self.newest: str | None = None  # the newest resumable handle of this session
        # A trigger went out and Gemini has answered nothing since: a handle now may have been made before Gemini
        # read it, so a planned switch waits for the next one (`stale`), which follows the answer.
        self.unanswered = False
        self.stale = False
        self.owed: dict[str, None] = {}  # appended audio chunks (base64) the session must hold
        self.appended_ever: set[str] = set()  # every appended chunk, to tell the client's audio in a turn
        # Chunks that became a turn in this logical session.  A resume takes them out of `history` (the resumed
        # session must be given them again), but a fresh session still owes none of them.
        self.turned: set[str] = set()
        self.created: Counter[str] = Counter()  # turns the client created (canonical JSON), an upper bound
        self.count_turns = False  # the driver reports created turns (`created`): user turns are bounded
        self.unique_audio = False  # the driver appends audio whose chunks all differ (frames.tagged_pcm16)

    @property
    def covered(self) -> bool:
        """The newest handle arrived after the newest trigger's answer began: a switch here loses no turn."""
        return self.last_trigger <= self.snapshot and not self.stale

    def appended(self, chunks: list[str]) -> None:
        for chunk in chunks:
            self.owed[chunk] = None
            self.appended_ever.add(chunk)

    def answered(self) -> None:
        self.unanswered = False

    def handle(self, handle: str) -> None:
        self.stale = self.unanswered
        self.newest = handle
        self.snapshot = len(self.history)

    def discard(self) -> None:
        """An upstream fault told the client its turn failed: input not yet in Gemini is gone with it."""
        self.owed.clear()

    def connect(self, connect: Connect) -> None:
        self.unanswered = self.stale = False
        body = connect.setup["setup"]
        assert isinstance(body.get("sessionResumption"), dict), "every setup asks for session resumption"
        handle = body["sessionResumption"].get("handle")
        assert connect.resume == (handle is not None), f"resume={connect.resume} with handle {handle!r}"
        if connect.resume:
            assert self.newest is not None, "resumed without a resumable handle"
            assert handle == self.newest, f"resumed with {handle!r}, the newest handle is {self.newest!r}"
            # Gemini goes on from the handle: what was sent after it never happened for the resumed session.
            del self.history[self.snapshot:]
            self.last_trigger = min(self.last_trigger, self.snapshot)
            self.resumes += 1
            return
        # A new logical session: it still needs the input that was neither a turn nor covered by a handle.
        where = {key: i for i, key in enumerate(self.history)}
        settled = max(self.snapshot, self.last_trigger)
        self.owed = {c: None for c in self.owed
                     if c not in self.turned and where.get(("audio", c), settled) >= settled}
        self.history, self.snapshot, self.last_trigger, self.newest = [], 0, 0, None
        self.turned = set()
        self.sessions += 1

    def _audio(self, chunk: str) -> Key:
        key = ("audio", chunk)
        assert not self.unique_audio or key not in self.history, "an audio chunk reached one Gemini session twice"
        return key

    def _audio_turn(self, turn: dict[str, Any]) -> list[str] | None:
        """The chunks of a user turn made of the client's appended audio (inlineData parts), else None."""
        parts = turn.get("parts") or ()
        if turn.get("role") != "user" or not parts:
            return None
        chunks = [p.get("inlineData", {}).get("data") for p in parts]
        return chunks if all(c in self.appended_ever for c in chunks) else None

    def sent(self, message: dict[str, Any]) -> None:
        ri = message.get("realtimeInput", {})
        keys: list[Key] = []
        if "audio" in ri:
            keys.append(self._audio(ri["audio"]["data"]))
        for turn in message.get("clientContent", {}).get("turns", ()):
            chunks = self._audio_turn(turn)
            if chunks is not None:
                keys += [self._audio(c) for c in chunks]
                continue
            key = ("turn", _canon(turn))
            if turn.get("role") == "user" and self.count_turns:
                n = 1 + self.history.count(key)
                assert n <= self.created[key[1]], f"user turn sent {n} times to one Gemini session: {turn}"
            keys.append(key)
        if "toolResponse" in message:
            key = ("tool", _canon(message["toolResponse"]))
            assert key not in self.history, "a toolResponse reached the same Gemini session twice"
            keys.append(key)
        self.history.extend(keys)
        if is_trigger(message):
            self.history.append(("trigger", ""))
            self.last_trigger = len(self.history)
            self.unanswered = True
            self.turned.update(key[1] for key in self.history if key[0] == "audio")

    def check_owed(self) -> None:
        held = {key[1] for key in self.history if key[0] == "audio"}
        lost = [c for c in self.owed if c not in held]
        assert not lost, f"{len(lost)} appended audio chunk(s) never reached the ready Gemini session"


class Checker:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.event_ids: set[str] = set()
        self.active: dict[str, Any] | None = None  # the response between created and done
        self.responses: dict[str, str] = {}  # id → "active" | final status
        self.outputs: dict[str, list[str]] = {}  # response id → output item ids
        self.call_args: dict[str, list[str]] = {}  # call_id → argument deltas
        self.parts: dict[tuple[str, str, int], PartLog] = {}
        self.items: dict[str, dict[str, Any]] = {}  # the conversation, in order
        self.upstream = "none"  # none | setup_sent | ready, as seen from Outputs
        self.setups: list[dict[str, Any]] = []
        self.queued_turns = 0  # turns requested while the setup was in flight
        self.activity_open = False  # realtimeInput.activityStart sent on this connection, activityEnd not yet
        # toolResponses sent whose continuation no response has claimed yet: Gemini answers a toolResponse by
        # itself, so the response.create after function_call_output opens a response without sending a turn.
        self.continuations = 0
        self.speech_item: str | None = None
        self.input_transcripts: dict[str, list[str]] = {}
        self.ledger = Ledger()
        self.connects: list[Connect] = []

    # ------------------------------------------------------------ per Output

    def feed(self, out: Output, dialect: str | None, echo: Any = NO_ECHO, requested: bool = True,
             flush: bool = False) -> list[dict[str, Any]]:
        """Check one Output and return its client events (parsed).  `requested`: a response.created
        here asks Gemini for a turn (not output Gemini volunteered); `flush`: this Output answers
        setupComplete and releases the queued turns."""
        events = []
        active_before = self.active
        for frame in out.client:
            assert isinstance(frame, bytes)
            event = orjson.loads(frame)
            validate_openai(event, dialect or "both")
            self._event(event, echo)
            events.append(event)
        turns = 0
        for message in out.upstream:
            assert self.upstream == "ready", f"upstream message before setupComplete: {message}"
            validate_gemini(message)
            turns += self._upstream_message(message)
            self.ledger.sent(message)
        # The shell sends these to the current connection before it opens the next one.  A switch leaves a ready
        # connection; a Connect while one is being set up (a failed resume) may keep a requested response
        # waiting, its turn owed to the next connection (queued_turns).
        switched = out.connect is not None and self.upstream == "ready"
        if out.connect is not None:
            # A Connect while a connection is open is a switch (goAway, live session.update, resumable close):
            # the shell closes the old connection first.
            setup = out.connect.setup
            assert set(setup) == {"setup"} and "model" not in setup["setup"]
            validate_gemini({"setup": {**setup["setup"], "model": MODEL}})
            self.setups.append(setup["setup"])
            self.ledger.connect(out.connect)
            self.connects.append(out.connect)
            self.upstream = "setup_sent"
            # queued_turns stay: turns requested but not yet sent are owed to whichever connection comes next
            self.activity_open = False
        created = sum(1 for e in events if e["type"] == "response.created")
        if flush:
            assert turns == self.queued_turns, (turns, self.queued_turns)
            self.queued_turns = 0
        elif requested and created and self.upstream == "setup_sent":
            assert turns == 0
            self.queued_turns += created
        elif requested:
            claimed = created - turns  # responses that adopt Gemini's continuation of a toolResponse
            assert 0 <= claimed <= self.continuations, f"{created} responses, {turns} turns sent"
            self.continuations -= claimed
        else:
            assert turns == 0, f"{turns} turns sent with no response asked for"
            self.continuations = max(0, self.continuations - created)  # Gemini's continuation opened its own
        assert self.active is None or self.upstream != "none", "a response is active with no upstream"
        # A response created in the Output that switches is the next connection's (its turn is queued, see above).
        assert not switched or self.active is None or self.active is not active_before, (
            "switched connections under an active response")
        if self.upstream == "ready":
            self.ledger.check_owed()
        return events

    def _upstream_message(self, message: dict[str, Any]) -> int:
        """Check one message sent upstream; 1 if it makes Gemini take a turn (protocols.md 2.2, 3.6)."""
        assert len(message) == 1, message
        cc = message.get("clientContent")
        if cc is not None:
            return int(bool(cc.get("turnComplete")))
        if "contextUpdate" in message:
            return 0  # a live instructions/tools change: no generation
        if "toolResponse" in message:
            responses = message["toolResponse"]["functionResponses"]
            assert responses and all(r["name"] and isinstance(r["response"], dict) for r in responses), message
            self.continuations += 1
            return 0
        ri = message.get("realtimeInput")
        assert ri is not None and len(ri) == 1, f"one field per realtimeInput: {message}"
        if "activityStart" in ri or "activityEnd" in ri:
            aad = self.setups[-1].get("realtimeInputConfig", {}).get("automaticActivityDetection", {})
            assert aad.get("disabled") is True, f"{message} on a connection with automatic activity detection"
            assert self.activity_open == ("activityEnd" in ri), f"{message}: activityStart/End must alternate"
            self.activity_open = "activityStart" in ri
        return int("text" in ri or "activityEnd" in ri)

    def upstream_ready(self) -> None:
        assert self.upstream == "setup_sent"
        self.upstream = "ready"

    # ------------------------------------------------------------ per event

    def _event(self, ev: dict[str, Any], echo: Any) -> None:
        name = name_of(ev)
        eid = ev["event_id"]
        assert isinstance(eid, str) and eid.startswith("event_") and eid not in self.event_ids, eid
        self.event_ids.add(eid)
        if name == "session.created":
            assert not self.events, "session.created is the first event, and only once"
        self.events.append(ev)
        handler = getattr(self, "_on_" + name.replace(".", "_"), None)
        if name in PART_EVENTS:
            self._part_event(name, ev)
        elif name == "error":
            self._on_error(ev, echo)
        elif handler is not None:
            handler(ev)

    def _on_error(self, ev: dict[str, Any], echo: Any) -> None:
        err = ev["error"]
        for key in ("type", "code", "message"):
            assert isinstance(err[key], str) and err[key], f"error.{key}: {err}"
        if echo is not NO_ECHO:
            assert err["event_id"] == echo, f"error.event_id {err['event_id']!r}, the frame had {echo!r}"
        if err["code"] in UPSTREAM_FAULTS:
            self.ledger.discard()
            self.upstream = "none"
            self.queued_turns = 0
            self.continuations = 0  # the relay forgets a dead connection's tool calls

    def _on_response_created(self, ev: dict[str, Any]) -> None:
        r = ev["response"]
        assert self.active is None, f"response {r['id']} created while {self.active and self.active['id']} is active"
        assert r["id"] not in self.responses, "response ids are unique"
        assert r["status"] == "in_progress" and r["output"] == [] and r["usage"] is None
        self.active = r
        self.responses[r["id"]] = "active"
        self.outputs[r["id"]] = []

    def _on_response_done(self, ev: dict[str, Any]) -> None:
        r = ev["response"]
        assert self.active is not None and r["id"] == self.active["id"], f"response.done for {r['id']} not active"
        assert r["status"] in ("completed", "cancelled", "incomplete", "failed")
        assert (r["status_details"] is None) == (r["status"] == "completed")
        assert [i["id"] for i in r["output"]] == self.outputs[r["id"]]
        for (resp, item_id, _), part in self.parts.items():
            if resp == r["id"]:
                assert part.closed, f"content part of {item_id} still open at response.done"
        for item in r["output"]:
            if item["type"] != "function_call":
                self._check_final_item(r["id"], item)
        usage = r["usage"]
        assert usage is not None and usage["total_tokens"] >= 0
        self.responses[r["id"]] = r["status"]
        self.active = None

    def _check_final_item(self, resp: str, item: dict[str, Any]) -> None:
        assert item["status"] in ("completed", "incomplete")
        for i, part in enumerate(item["content"]):
            log = self.parts[(resp, item["id"], i)]
            if log.kind == "text":
                assert part["type"] in ("text", "output_text") and part["text"] == "".join(log.text)
            else:
                assert part["type"] in ("audio", "output_audio") and part["transcript"] == "".join(log.transcript)

    def _on_response_output_item_added(self, ev: dict[str, Any]) -> None:
        resp = self._active_id(ev)
        item = ev["item"]
        if item["type"] == "function_call":
            assert item["status"] == "in_progress" and item["arguments"] == "" and item["call_id"] and item["name"]
            self.call_args[item["call_id"]] = []
        else:
            assert item["status"] == "in_progress" and item["role"] == "assistant" and item["content"] == []
        assert ev["output_index"] == len(self.outputs[resp])
        self.outputs[resp].append(item["id"])

    def _on_response_function_call_arguments_delta(self, ev: dict[str, Any]) -> None:
        resp = self._active_id(ev)
        assert self.outputs[resp][ev["output_index"]] == ev["item_id"]
        self.call_args[ev["call_id"]].append(ev["delta"])

    def _on_response_function_call_arguments_done(self, ev: dict[str, Any]) -> None:
        self._active_id(ev)
        assert ev["arguments"] == "".join(self.call_args[ev["call_id"]])
        assert isinstance(orjson.loads(ev["arguments"]), dict), "Gemini arguments are an object"

    def _on_response_output_item_done(self, ev: dict[str, Any]) -> None:
        resp = self._active_id(ev)
        item = ev["item"]
        assert self.outputs[resp].index(item["id"]) == ev["output_index"]
        if item["type"] == "function_call":
            assert item["status"] == "completed" and item["arguments"] == "".join(self.call_args[item["call_id"]])
            if item["id"] in self.items:
                self.items[item["id"]] = item
            return
        assert item["content"], "an output item is done with its content"
        self._check_final_item(resp, item)
        if item["id"] in self.items:
            self.items[item["id"]] = item

    def _active_id(self, ev: dict[str, Any]) -> str:
        assert self.active is not None and ev["response_id"] == self.active["id"], (
            f"{ev['type']} for {ev['response_id']}, active: {self.active and self.active['id']}")
        return ev["response_id"]

    def _part_event(self, name: str, ev: dict[str, Any]) -> None:
        resp = self._active_id(ev)
        key = (resp, ev["item_id"], ev["content_index"])
        assert ev["item_id"] in self.outputs[resp] and self.outputs[resp].index(ev["item_id"]) == ev["output_index"]
        if name == "response.content_part.added":
            assert key not in self.parts, "content part added twice"
            kind = ev["part"]["type"]
            assert kind in ("text", "audio")
            self.parts[key] = PartLog(kind)
            if ev["item_id"] in self.items:
                self.items[ev["item_id"]]["content"] = [ev["part"]]
            return
        assert key in self.parts, f"{ev['type']} before response.content_part.added"
        log = self.parts[key]
        assert not log.closed, f"{ev['type']} after response.content_part.done"
        kind, _, step = name.removeprefix("response.").partition(".")
        if name == "response.content_part.done":
            part = ev["part"]
            assert part["type"] == log.kind
            if log.kind == "text":
                assert log.dones == {"text"} and part["text"] == "".join(log.text)
            else:
                assert log.dones == {"audio", "audio_transcript"} and part["transcript"] == "".join(log.transcript)
            log.closed = True
            return
        assert kind not in log.dones, f"{ev['type']} after its done"
        assert (log.kind == "text") == (kind == "text"), f"{ev['type']} in a {log.kind} part"
        if step == "delta":
            assert isinstance(ev["delta"], str) and ev["delta"]
            {"text": log.text, "audio": log.audio, "audio_transcript": log.transcript}[kind].append(ev["delta"])
            return
        log.dones.add(kind)
        if kind == "text":
            assert ev["text"] == "".join(log.text)
        elif kind == "audio_transcript":
            assert "audio" in log.dones, "audio.done precedes audio_transcript.done"
            assert ev["transcript"] == "".join(log.transcript)

    def _on_conversation_item_created(self, ev: dict[str, Any]) -> None:
        item = ev["item"]
        assert item["id"] not in self.items, f"item {item['id']} added twice"
        assert ev["previous_item_id"] == next(reversed(self.items), None), "items are appended"
        if item.get("role", "assistant") == "assistant" and item["status"] == "in_progress":
            assert self.active is not None and item["id"] in self.outputs[self.active["id"]]
        self.items[item["id"]] = item

    def _on_conversation_item_done(self, ev: dict[str, Any]) -> None:
        item = ev["item"]
        if item["id"] not in self.items:
            return  # deleted while the response was streaming
        keys = list(self.items)
        at = keys.index(item["id"])
        assert ev["previous_item_id"] == (keys[at - 1] if at else None)
        self.items[item["id"]] = item

    def _on_input_audio_buffer_committed(self, ev: dict[str, Any]) -> None:
        assert ev["item_id"] not in self.items
        assert ev["previous_item_id"] == next(reversed(self.items), None)

    def _on_input_audio_buffer_cleared(self, ev: dict[str, Any]) -> None:
        self.speech_item = None  # an announced speech item is dropped with the buffer

    def _on_input_audio_buffer_speech_started(self, ev: dict[str, Any]) -> None:
        assert self.speech_item is None, "speech_started twice"
        self.speech_item = ev["item_id"]
        self.speech_start = ev["audio_start_ms"]

    def _on_input_audio_buffer_speech_stopped(self, ev: dict[str, Any]) -> None:
        assert ev["item_id"] == self.speech_item, "speech_stopped without its speech_started"
        assert ev["audio_end_ms"] >= self.speech_start
        self.speech_item = None

    def _on_conversation_item_input_audio_transcription_delta(self, ev: dict[str, Any]) -> None:
        self.input_transcripts.setdefault(ev["item_id"], []).append(ev["delta"])

    def _on_conversation_item_input_audio_transcription_completed(self, ev: dict[str, Any]) -> None:
        if ev["transcript"]:
            # the audio item now replays as this text turn (a fresh connection's conversation)
            turn = {"role": "user", "parts": [{"text": ev["transcript"]}]}
            self.ledger.created[_canon(turn)] += 1
        deltas = self.input_transcripts.pop(ev["item_id"], None)
        assert deltas is not None, "input transcription completed without deltas (or twice)"
        assert ev["transcript"] == "".join(deltas).strip()

    def _on_conversation_item_deleted(self, ev: dict[str, Any]) -> None:
        assert self.items.pop(ev["item_id"], None) is not None, "deleted an unknown item"

    def _on_conversation_item_retrieved(self, ev: dict[str, Any]) -> None:
        assert ev["item"]["id"] in self.items

    # ------------------------------------------------------------ end of session

    def check_closed(self) -> None:
        """After the session is over: every response.created got its response.done."""
        assert self.active is None
        assert "active" not in self.responses.values()
