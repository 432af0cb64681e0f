"""Sessions that outlive one Gemini connection: resumption handles, switching connections at a turn
boundary, and what is sent again on the next connection (protocols.md 2.5, pitfalls 1-3;
gemini-openai-2026-12.md section 4).

Gemini ends every connection after about ten minutes (`goAway`, then a close) and fixes its
configuration at `setup`.  The relay asks every `setup` for `sessionResumption` and keeps the newest
handle Gemini marks resumable.  A *switch* (after `goAway`, or to apply a `session.update`) waits for
a turn boundary, where nothing is owed and the newest handle covers every turn sent, and then asks
the shell to close the connection and open the next one with that handle (break-then-make: Gemini
refuses a resume while the old socket is open).  A connection that dies first is resumed at once.

What the handle does not cover is tracked here, and given to every connection that resumes it:
- `log`: realtime input (audio, activity signals) sent since the newest handle that is not yet a turn;
  it is sent again as realtime input, so speech that was not yet a turn is not lost.
- `context`: the user and model turns sent or received since the newest handle, the user's audio
  among them once it became a turn (as inlineData parts: sent as live audio again, it would be
  answered twice); it is sent again at once, as `clientContent` without `turnComplete`, so the
  resumed model neither loses them nor gets any of them twice.
The audio in both is bounded; what a bound drops is counted and logged.
"""

from __future__ import annotations

import logging
from typing import Any

from relay.translate.base import UPSTREAM_NONE, UPSTREAM_READY, UPSTREAM_SETUP_SENT, Connect
from relay.translate.conversation import turn_of
from relay.translate.tools import ToolState

log = logging.getLogger("relay.translate")

# Audio kept for resending (the log) and held while a connection is being switched (the queue).
DEFAULT_SWITCH_BUFFER_MS = 30_000.0
# Close codes after which the same logical Gemini session can go on (protocols.md 2.6).
RESUMABLE_CLOSES = frozenset({1000, 1001, 1006, 1011})
def is_trigger(message: dict[str, Any]) -> bool:
    """A message that makes the model generate: the newest handle stops covering the conversation."""
    if "clientContent" in message:
        return bool(message["clientContent"].get("turnComplete"))
    if "toolResponse" in message:
        return True
    body = message.get("realtimeInput")
    return isinstance(body, dict) and ("text" in body or "activityEnd" in body)


def audio_ms_of(message: dict[str, Any]) -> float:
    """Milliseconds of 16-bit mono PCM in a `realtimeInput.audio` message (0 for anything else)."""
    body = message.get("realtimeInput")
    if not isinstance(body, dict) or "audio" not in body:
        return 0.0
    return blob_ms(body["audio"])


def blob_ms(blob: dict[str, Any]) -> float:
    """Milliseconds of 16-bit mono PCM in a Gemini blob (`mimeType`, base64 `data`)."""
    _, _, rate = blob.get("mimeType", "").partition("rate=")
    bytes_per_ms = int(rate) * 2 / 1000 if rate.isdigit() else 32.0
    return len(blob.get("data", "")) * 0.75 / bytes_per_ms  # base64: 4 characters for 3 bytes


def is_activity_signal(message: dict[str, Any]) -> bool:
    body = message.get("realtimeInput")
    return isinstance(body, dict) and ("activityStart" in body or "activityEnd" in body)


def _audio_turn_ms(turn: dict[str, Any]) -> float:
    return sum(blob_ms(p["inlineData"]) for p in turn["parts"] if "inlineData" in p)


# A buffered audio chunk: (base64 data, MIME type).  A tuple of strings is not tracked by the garbage collector,
# where the message's three nested dicts are: 30 s of 20 ms chunks on 100 sessions held 450,000 tracked objects,
# and every full collection scanned them all (80 ms, a stall on every session at once).
Chunk = tuple[str, str]


def _compact(message: dict[str, Any]) -> dict[str, Any] | Chunk:
    body = message.get("realtimeInput")
    if len(message) == 1 and type(body) is dict and len(body) == 1:
        audio = body.get("audio")
        if type(audio) is dict and len(audio) == 2 and "data" in audio and "mimeType" in audio:
            return (audio["data"], audio["mimeType"])
    return message


def _expand(entry: dict[str, Any] | Chunk) -> dict[str, Any]:
    if type(entry) is tuple:
        return {"realtimeInput": {"audio": {"data": entry[0], "mimeType": entry[1]}}}
    return entry  # type: ignore[return-value]


class Buffer:
    """Upstream messages in order, with the audio among them bounded: past `limit_ms` of audio the
    oldest audio message is dropped (never an item, a signal or a tool answer).  Audio chunks are kept
    compact (see `Chunk`) and given back as messages."""

    def __init__(self, limit_ms: float,
                 dropping: str = "the oldest audio held for the next connection was dropped") -> None:
        self.limit_ms = limit_ms
        self._dropping = dropping  # what a drop means, for the log
        self.messages: list[tuple[dict[str, Any] | Chunk, float]] = []
        self.audio_ms = 0.0
        self.dropped = 0  # audio messages dropped over the bound, this session
        self.dropping = False  # audio was dropped since the buffer was last emptied

    def add(self, message: dict[str, Any], ms: float) -> bool:
        """Keep `message`; True when this began dropping audio (the first drop since the buffer was last emptied)."""
        self.messages.append((_compact(message) if ms > 0 else message, ms))
        self.audio_ms += ms
        began = False
        while self.audio_ms > self.limit_ms:
            began = began or not self.dropping
            self.dropping = True
            index = next(i for i, (_, m) in enumerate(self.messages) if m > 0)
            _, gone = self.messages.pop(index)
            self.audio_ms -= gone
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                log.warning("%.0f ms of audio buffered: %s (%d chunks so far)", self.limit_ms, self._dropping,
                            self.dropped)
        return began

    def take(self) -> list[dict[str, Any]]:
        out = [_expand(m) for m, _ in self.messages]
        self.clear()
        return out

    def clear(self) -> None:
        self.messages = []
        self.audio_ms = 0.0
        self.dropping = False


class Resumption:
    """Mixin of `Translator`: handles, planned switches and resumed connections."""

    @property
    def audio_dropped(self) -> int:
        """Audio messages and turns dropped over `resume_buffer_seconds` this session (for the metrics)."""
        return self._log.dropped + self._queued.dropped + self._context_dropped

    def _init_resumption(self, switch_buffer_ms: float) -> None:
        self.resumption_handle: str | None = None
        # realtime input since the newest handle, not yet a turn; past the bound the oldest is only not resent
        self._log = Buffer(switch_buffer_ms, "audio older than that will not be given again to a resumed connection")
        self._queued = Buffer(switch_buffer_ms)  # made while no connection was ready
        self._context: list[dict[str, Any]] = []  # turns since the newest handle
        self._context_audio_ms = 0.0  # of the user audio turns in `_context`
        self._context_dropped = 0  # audio turns dropped from `_context` over the bound
        self._uncovered = False  # a trigger was sent that no handle covers yet
        self._unanswered = False  # a trigger was sent and Gemini has said nothing since
        # Models whose idle signal is interactionStatus (extended thinking) may go on working after turnComplete.
        self._model_busy = False
        self._switch_reason: str | None = None  # a planned switch waits for a turn boundary
        self._switch_fresh = False  # ... and opens a new Gemini session rather than resuming
        self.switches = 0  # connections after the first, resumed or fresh (for logs and tests)

    # ------------------------------------------------------------ what was sent

    def _sent(self, message: dict[str, Any]) -> None:
        """Bookkeeping for a message that leaves for Gemini now (or when the connection is ready)."""
        if is_trigger(message):
            self._uncovered = True
            self._unanswered = True
            # Under manual turns only activityEnd closes the spoken turn; a toolResponse inside an open
            # activity leaves its audio live (and in the log).
            if not self._upstream_manual or is_activity_signal(message):
                self._audio_became_turn()
        elif "realtimeInput" in message:
            self._log.add(message, audio_ms_of(message))

    def _audio_became_turn(self) -> None:
        """The audio in the log is now a user turn Gemini answers: from here on it is context (sent as
        realtime input again, the resumed model would hear it as new speech and answer it twice)."""
        parts = [{"inlineData": dict(m["realtimeInput"]["audio"])} for m in self._log.take() if audio_ms_of(m) > 0]
        if parts:
            self._context_turns([{"role": "user", "parts": parts}])

    def _context_turns(self, turns: list[dict[str, Any]]) -> None:
        if self.resumption_handle is None or self.session.type == "transcription":
            # (a transcription session has no conversation for a resumed model to keep)
            # Only a resume sends the context; with no handle the next connection is fresh and replays the item
            # store.  Kept anyway, it would grow for the whole session on a model that never gives a handle.
            return
        self._context.extend(turns)
        self._context_audio_ms += sum(_audio_turn_ms(t) for t in turns)
        limit = self._log.limit_ms
        while self._context_audio_ms > limit:
            index = next(i for i, t in enumerate(self._context) if _audio_turn_ms(t) > 0)
            self._context_audio_ms -= _audio_turn_ms(self._context.pop(index))
            self._context_dropped += 1
            log.warning("resumption context holds over %.0f ms of user audio: its oldest audio turn dropped", limit)

    def _clear_context(self) -> None:
        self._context = []
        self._context_audio_ms = 0.0

    def _model_reply_done(self, output: list[Any]) -> None:
        self._context_turns([t for t in (turn_of(item) for item in output) if t is not None])

    # ------------------------------------------------------------ what Gemini says

    def _resumption_update(self, handle: str | None, resumable: bool | None) -> None:
        # `resumable: false` with no handle comes while Gemini generates or runs tools: keep the old one.
        if not resumable or not handle:
            return
        self.resumption_handle = handle
        if self._upstream == UPSTREAM_READY:
            self._log.clear()
            self._clear_context()
            # One that comes after a turn was sent and before Gemini said anything about it may have been made
            # before Gemini read that turn (Gemini gives one right after setupComplete, racing the first turn):
            # a planned switch waits for the next one, which follows the answer.
            self._uncovered = self._uncovered and self._unanswered

    def _go_away(self, time_left: str | None) -> None:
        log.info("upstream goAway (time left %s): switching at the next turn boundary", time_left)
        self._switch_reason = "goAway"

    def _want_switch(self, reason: str, fresh: bool = False) -> None:
        """Switch connections at the next turn boundary; `fresh`: to a new Gemini session, not a resumed one
        (another model)."""
        if self._upstream == UPSTREAM_NONE:
            return  # the next setup is built from the new session anyway
        self._switch_reason = reason
        self._switch_fresh = self._switch_fresh or fresh

    # ------------------------------------------------------------ switching

    def _at_boundary(self) -> bool:
        """No response owed, no tool turn open, and the newest handle covers every turn sent."""
        return (
            self._upstream == UPSTREAM_READY
            and not self.awaiting_model
            and not self._responding
            and self._queued_request is None
            and not self._uncovered
            and not self._model_busy
            and not self._tools.turn_calls
        )

    def _maybe_switch(self) -> None:
        if self._switch_reason is None or not self._at_boundary():
            return
        reason, self._switch_reason = self._switch_reason, None
        fresh, self._switch_fresh = self._switch_fresh, False
        log.info("switching the upstream connection (%s)", reason)
        # Input made in this same step has not left yet: it goes to the next connection instead (realtime
        # input is in the log already, turns are in the context).
        unsent = [m for m in self._out.upstream if "realtimeInput" not in m and "clientContent" not in m]
        self._out.upstream = []
        self._open_next([*self._log.take(), *unsent], fresh=reason if fresh else None)

    def _open_next(self, resend: list[dict[str, Any]], fresh: str | None = None) -> None:
        """Ask the shell for the next connection: resumed with the newest handle when there is one (and no
        `fresh` reason), given first what that handle does not cover (the context, then `resend`, realtime
        input not yet a turn); else a fresh session given the conversation, then `resend`."""
        self.switches += 1
        self._uncovered = False
        first: list[dict[str, Any]] = []
        if self.resumption_handle is None or fresh is not None:
            self._fresh_connection(fresh or "no resumption handle yet")  # its replay holds every turn
        else:
            self._connect(self.resumption_handle)
            if self._context:
                # Queued as is, not through `_send_upstream`: it stays context until a handle covers it.
                first.append({"clientContent": {"turns": list(self._context), "turnComplete": False}})
        # Activity signals as the new turn mode wants them: none under automatic detection (1007 otherwise);
        # under manual turns an activity open on our side is opened again first (its activityStart may be
        # older than the handle, and activityEnd alone would be out of alternation).
        resend = [m for m in resend if not is_activity_signal(m)]
        if self._upstream_manual and (self._audio.activity_open or any(audio_ms_of(m) > 0 for m in resend)):
            first.append({"realtimeInput": {"activityStart": {}}})
            self._audio.activity_open = True
        for message in (*first, *resend):
            self._queued.add(message, audio_ms_of(message))

    def _connect(self, handle: str | None) -> None:
        self._upstream = UPSTREAM_SETUP_SENT
        self._unanswered = False
        self._model_busy = False
        # A turnComplete owed by an interrupted turn of the old connection never comes on this one.
        self._swallow_turn_complete = False
        setup = self._next_setup()
        if handle is not None:
            setup["setup"]["sessionResumption"]["handle"] = handle
        self._out.connect = Connect(setup, resume=handle is not None, model=self._model)

    def _fresh_connection(self, why: str) -> None:
        """A new Gemini session, the conversation replayed from the local store (the fallback)."""
        log.info("opening a fresh Gemini session (%s); the conversation is replayed", why)
        self.resumption_handle = None
        self._pending_turns = self._replay_turns()
        self._log.clear()
        self._clear_context()
        self._uncovered = False
        self._connect(None)

    def _replay_turns(self) -> list[dict[str, Any]]:
        """The whole local conversation as Gemini turns, for a session that has none of it."""
        if self.session.type == "transcription":
            return []  # utterances already transcribed are not heard again
        return [t for t in (turn_of(i) for i in self._items) if t is not None]

    def resume_failed(self, why: str) -> Any:
        """The shell could not resume (handle rejected, retries spent): fall back to a fresh session."""
        log.warning("resumption failed (%s); falling back to a fresh session", why)
        queued = self._queued.take()
        self._fresh_connection(why)
        # The fresh session gets the whole conversation first; turns queued for the resumed one (the context
        # among them) are in it already, and a response they asked for is asked for by the replay.  Realtime
        # input keeps its place after it.
        replay, self._pending_turns = self._pending_turns, []
        asked = any(is_trigger(m) for m in queued if "clientContent" in m)
        if replay or asked:
            content: dict[str, Any] = {"turnComplete": asked}
            if replay:
                content["turns"] = replay
            self._queued.add({"clientContent": content}, 0.0)
            self._context_turns(replay)
        for message in queued:
            if "realtimeInput" in message:
                self._queued.add(message, audio_ms_of(message))
        return self._take()

    def _resume_after_close(self, code: int | None, reason: str) -> None:
        """Gemini closed a resumable connection we did not mean to end: reconnect with the handle at once."""
        # A cancelled turn still streaming (`_discarding`) is no response of the client's: its end is simply
        # never seen, and a response.create queued behind it goes to the next connection.
        if self.session.type == "transcription":
            # what the old connection owed is not owed by the resumed one
            self._fail_transcripts("server_error", "upstream_closed", f"Gemini closed the connection ({code}) before "
                                   "this utterance was transcribed; the relay resumed the session.")
        in_flight = self._responding
        tool_turn = bool(self._tools.turn_calls) or self._tools.awaiting_continuation
        queued_request, self._queued_request = self._queued_request, None
        self._discarding = False
        if in_flight:
            kind, text = "server_error", f"Gemini closed the connection ({code})" + (f": {reason}" if reason else ".")
            text += " The relay resumed the session; this response could not continue."
            self._error("upstream_closed", text, kind=kind)
            self._response.finish("failed", None, error={"type": kind, "code": "upstream_closed", "message": text})
            self._response = None
            queued_request = None
        else:
            log.info("upstream closed (%s %s) between turns: resuming", code, reason)
        self._switch_reason = None
        self._switch_fresh = False
        if tool_turn:
            # Calls of the dead connection can no longer be answered there; the local store has them.  Input not
            # yet a turn goes to the fresh session too, unless the client was told its response failed.
            self._tools = ToolState()
            resend = [] if in_flight else self._log.take()
            if in_flight:
                self._log.clear()
                self._reset_input_audio()
            self._open_next(resend, fresh="a tool turn was open when the connection closed")
        elif in_flight:
            # The failed turn comes again as context (it is in `_context`); input that was not yet a turn is
            # dropped with it, as after any upstream fault (the client has been told).
            self._log.clear()
            self._reset_input_audio()
            self._open_next([])
        else:
            self._open_next(self._log.take())
        if queued_request is not None:
            self._request_response(queued_request)
