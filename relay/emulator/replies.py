"""The replies of an emulated Gemini Live session: streaming, pacing, interruption, faults, context.

A mixin of ``Session`` (``session.py``). A reply runs as its own task under its own cancel scope,
so that a new turn can interrupt it; the frames it sends are made by ``wire.py``. What a reply says
depends on the model's kind (``models.py``): a conversation echoes the user, a transcription model
answers with the transcript, a translation model with speech of the translated transcript.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import attrs
import trio
from trio_websocket import ConnectionClosed

from .audio import audio_tokens
from .context import CONTEXT_EXCEEDED, slide_window
from .history import audio_turn_transcript, model_turn, prompt_tokens, spoken_ms
from .images import Image, acknowledgement
from .lifetime import Lifetime
from .models import interaction_status
from .network import drop_connection
from .wire import (
    INTERNAL_ERROR,
    INVALID_ARGUMENT,
    NOT_FOUND,
    Endpoint,
    Fault,
    audio_frame_seconds,
    audio_reply_frames,
    audio_reply_ms,
    cap_words,
    chunk_text,
    count_words,
    find_faults,
    silent_audio_frames,
    text_reply_frames,
    thought_frame,
    usage_metadata,
)

__all__ = ["Replies", "Reply"]

# Faults that close instead of replying.
_CLOSE_FAULTS = {
    Fault.CLOSE_1011: INTERNAL_ERROR,
    Fault.CLOSE_1007: INVALID_ARGUMENT,
    Fault.CLOSE_1008: NOT_FOUND,
    Fault.CLOSE_1000: (1000, ""),
    Fault.CLOSE_1001: (1001, "going away"),
}
# Faults that close after the first reply chunk; None drops the TCP connection without a close frame.
_MID_FAULTS: dict[Fault, tuple[int, str] | None] = {
    Fault.MID_1011: INTERNAL_ERROR,
    Fault.MID_1007: INVALID_ARGUMENT,
    Fault.MID_1008: NOT_FOUND,
    Fault.MID_1006: None,
}
_SLOW_DELAY = 0.5
# What a model that calls functions NON_BLOCKING says while they run.
TALK_TEXT = "Let me check that."


def thought_text(user_text: str) -> str:
    """The reasoning a thinking model shows before its answer (deterministic, and never the answer)."""
    return f"Thinking about {user_text!r}." if user_text else "Thinking about the function results."


@attrs.define(eq=False)
class Reply:
    """One reply being streamed (or queued, or done)."""

    scope: trio.CancelScope
    # NO_INTERRUPTION: the reply this one queues behind; it starts once that one is done.
    after: Reply | None = None
    # An audio turn is put into the history (and transcribed) by its reply, after any queueing,
    # so the history keeps the order in which things were said and answered.
    audio_turn: dict[str, Any] | None = None
    turn_recorded: bool = False
    binary: bool = False
    finished: bool = False
    sent_text: str = ""
    done: trio.Event = attrs.Factory(trio.Event)
    # A continuation after a toolResponse says this text instead of echoing the user.
    text: str | None = None


@attrs.frozen
class Plan:
    """What a reply sends once its faults are dealt with: ``lead`` (a thought part) first, then the
    ``frames`` of its text or audio, each paired with the text it covers, then ``ending``. A reply
    that does not ``complete`` never reaches turnComplete: no handle, no goAway counting it."""

    lead: list[dict[str, Any]]
    frames: Iterable[tuple[dict[str, Any], str]]
    ending: list[dict[str, Any]]
    completes: bool = True


class Replies(Lifetime):
    """Starting, streaming and interrupting replies; the session provides the state and I/O."""

    _endpoint: Endpoint
    _history: list[dict[str, Any]]
    _reply: Reply | None
    # (entries counted, text, audio, image tokens): history only grows between compressions,
    # so usage is counted once per entry.
    _counted: tuple[int, int, int, int]
    _completed: int  # replies completed on this connection (goaway_after_turns counts them)
    _running: set[str]  # NON_BLOCKING calls not answered yet
    _images: list[Image]  # received since the previous reply

    if TYPE_CHECKING:  # implemented by Session; declared here only, so nothing shadows them

        async def _send_all(self, messages: list[dict[str, Any]], *, binary: bool = False) -> None: ...

        async def _call_tools(self, reply: Reply, user_text: str, lead: list[dict[str, Any]]) -> str | None: ...

    # -- replies -------------------------------------------------------------------------------

    def _start_reply(
        self,
        user_text: str,
        *,
        audio_turn: dict[str, Any] | None = None,
        after: Reply | None = None,
        text: str | None = None,
    ) -> None:
        assert self._nursery is not None
        reply = Reply(scope=trio.CancelScope(), after=after, audio_turn=audio_turn, text=text)
        self._reply = reply
        self._nursery.start_soon(self._run_reply, reply, user_text)

    async def _interrupt(self) -> None:
        """Stop the streaming reply and any queued behind it; say so if one had not finished."""
        pending: list[Reply] = []
        reply = self._reply
        while reply is not None and not reply.done.is_set():
            pending.append(reply)
            reply = reply.after
        if not pending:
            return
        for reply in pending:
            reply.scope.cancel()
        for reply in pending:
            await reply.done.wait()
        if not all(reply.finished for reply in pending):
            await self._send({"serverContent": {"interrupted": True}}, binary=pending[-1].binary)

    async def _run_reply(self, reply: Reply, user_text: str) -> None:
        try:
            with reply.scope:
                if reply.after is not None:
                    await reply.after.done.wait()
                await self._record_audio_turn(reply)
                await self._stream_reply(reply, user_text)
            # Cancelled while queued: the user still spoke, so the turn is kept and transcribed.
            await self._record_audio_turn(reply)
        except ConnectionClosed:
            pass
        finally:
            reply.after = None
            if reply.sent_text:
                self._history.append(model_turn(reply.sent_text))
            reply.done.set()

    async def _record_audio_turn(self, reply: Reply) -> None:
        assert self._config is not None
        if reply.audio_turn is None or reply.turn_recorded:
            return
        reply.turn_recorded = True
        self._history.append(reply.audio_turn)
        if self._config.input_transcription:
            # Sends are shielded, so the whole transcript goes out even for a cancelled reply.
            for piece in chunk_text(audio_turn_transcript(reply.audio_turn), self._options.chunk_words):
                await self._send({"serverContent": {"inputTranscription": {"text": piece}}})
            await self._send({"serverContent": {"inputTranscription": {"finished": True}}})

    async def _stream_reply(self, reply: Reply, user_text: str) -> None:
        assert self._config is not None
        # A reply interrupted before it started must not leak its first (shielded) frame.
        await trio.lowlevel.checkpoint_if_cancelled()
        if not await self._fit_context():
            return
        faults = find_faults(user_text)
        for fault, code_reason in _CLOSE_FAULTS.items():
            if fault in faults:
                await self._close(*code_reason)
                return
        if Fault.SILENT in faults:
            await trio.sleep_forever()  # a turn taken and never answered (the session itself stays up)
        reply.binary = Fault.BINARY in faults
        delay = _SLOW_DELAY if Fault.SLOW in faults else self._options.chunk_delay
        if Fault.GOAWAY in faults:
            await self._go_away(binary=reply.binary)
        if self._config.rules.conversation:
            plan = await self._conversation_plan(reply, user_text)
        else:
            plan = self._listening_plan(reply, user_text)
        if plan is None:
            return
        mid_fault = next((fault for fault in _MID_FAULTS if fault in faults), None)
        if delay == 0 and not self._options.audio_realtime and mid_fault is None:
            # Unpaced, the whole reply exists at once: one write, as a busy server's TCP stream would carry it.
            frames = list(plan.frames)
            reply.finished = True
            await self._send_all(plan.lead + [m for m, _ in frames] + plan.ending, binary=reply.binary)
            reply.sent_text += "".join(covered for _, covered in frames)
        else:
            if plan.lead:
                await self._send_all(plan.lead, binary=reply.binary)
            wait: float | None = None  # None before the first frame
            for message, covered in plan.frames:
                if wait is not None:
                    if wait > 0:
                        await trio.sleep(wait)
                    else:
                        await trio.lowlevel.checkpoint_if_cancelled()
                await self._send(message, binary=reply.binary)
                reply.sent_text += covered
                if mid_fault is not None:
                    await self._fail_mid_reply(_MID_FAULTS[mid_fault])
                    return
                wait = self._pause_after(message, delay)
            # From here on nothing yields to cancellation: a reply whose generation completed is
            # never reported as interrupted.
            reply.finished = True
            if plan.ending:
                await self._send_all(plan.ending, binary=reply.binary)
        if not plan.completes:
            return
        self._completed += 1
        if not self._running:  # while a NON_BLOCKING call runs the session cannot be resumed
            await self._resumable([*self._history, model_turn(reply.sent_text)], binary=reply.binary)
        if self._completed == self._options.goaway_after_turns:
            await self._go_away(binary=reply.binary)

    async def _conversation_plan(self, reply: Reply, user_text: str) -> Plan | None:
        """The echo of ``user_text`` (after a thought, if thinking), or a toolCall and maybe the talk
        while it runs, or what the model says with the results; None once it waits on a toolCall."""
        assert self._config is not None
        # A thinking model shows its reasoning first, before a toolCall as before an answer.
        thought = thought_text(user_text) if self._config.thinking else ""
        lead = [thought_frame(thought)] if thought else []
        answer = reply.text
        if answer is None:
            made = await self._call_tools(reply, user_text, lead)
            if made == "wait":
                return None
            if made == "talk":  # NON_BLOCKING calls run while the model goes on in this turn
                # Interrupted while the toolCall went out (its sends are shielded): say nothing more.
                await trio.lowlevel.checkpoint_if_cancelled()
                lead, answer, reply.finished = [], TALK_TEXT, False
            else:
                answer = f"Echo: {user_text}"
        images, self._images = self._images, []
        text = cap_words(answer + acknowledgement(images), self._config.max_output_tokens)
        text_tokens, audio_prompt_tokens, image_prompt_tokens = self._prompt_tokens()
        usage = usage_metadata(
            self._endpoint.backend,
            text_tokens,
            count_words(text),
            self._config.modality,
            audio_prompt_tokens,
            image_prompt_tokens=image_prompt_tokens,
            thoughts_tokens=count_words(thought),
        )
        complete: dict[str, Any] = {"turnComplete": True}
        if self._config.rules.interaction_status:
            complete["interactionStatus"] = interaction_status(waits_on_call=False, calls_running=bool(self._running))
        ending = [{"serverContent": {"generationComplete": True}}, {"serverContent": complete, "usageMetadata": usage}]
        return Plan(lead, self._reply_frames(text), ending)

    def _listening_plan(self, reply: Reply, transcript: str) -> Plan:
        """A transcription model answers a spoken turn with its transcript as text, a translation model
        with speech of ``[<target language>] <transcript>`` (and its transcript); without a target it
        streams silence and never completes, as the real one does (LiteLLM PR #41408). Each turn is
        taken on its own, so its prompt is its own audio; there is no generationComplete."""
        assert self._config is not None and reply.audio_turn is not None
        heard_ms = spoken_ms(reply.audio_turn)
        chunk_ms = self._options.audio_chunk_ms
        if self._config.rules.kind == "transcription":
            text, said, modality = transcript, count_words(transcript), "TEXT"
        elif self._config.target_language is None:
            return Plan([], silent_audio_frames(heard_ms, chunk_ms), [], completes=False)
        else:
            text, modality = f"[{self._config.target_language}] {transcript}", "AUDIO"
            said = audio_tokens(audio_reply_ms(text, chunk_ms, self._options.reply_audio_chunks))
        usage = usage_metadata(self._endpoint.backend, 0, said, modality, audio_tokens(heard_ms))
        ending = [{"serverContent": {"turnComplete": True}, "usageMetadata": usage}]
        return Plan([], self._reply_frames(text), ending)

    async def _fail_mid_reply(self, code_reason: tuple[int, str] | None) -> None:
        if code_reason is not None:
            await self._close(*code_reason)
            return
        # Hold the send lock so that no frame is being written while the stream goes away.
        async with self._send_lock:
            await drop_connection(self._ws)
        raise ConnectionClosed(None)

    async def _fit_context(self) -> bool:
        """Before a reply: compress the history if set up and over the trigger; False (the
        connection is closing) if it still exceeds ``context_limit_tokens``."""
        assert self._config is not None
        if not self._config.rules.conversation:
            return True  # each turn is transcribed or translated on its own: no context to outgrow
        limit = self._options.context_limit_tokens
        total = sum(self._prompt_tokens())
        if self._config.compression is not None:
            trigger, target = self._config.compression.bounds(limit)
            if total > trigger:
                slide_window(self._history, total, target)
                self._registry.compressions += 1
                self._counted = (0, 0, 0, 0)  # entries went from the front: count afresh
                total = sum(self._prompt_tokens())
        if limit and total > limit:
            await self._close(*CONTEXT_EXCEEDED)
            return False
        return True

    def _prompt_tokens(self) -> tuple[int, int, int]:
        """(TEXT, AUDIO, IMAGE) tokens of the history: what the next reply's prompt costs."""
        seen, text, audio, image = self._counted
        more_text, more_audio, more_image = prompt_tokens(self._history[seen:])
        text, audio, image = text + more_text, audio + more_audio, image + more_image
        self._counted = (len(self._history), text, audio, image)
        return text, audio, image

    def _pause_after(self, message: dict[str, Any], delay: float) -> float:
        """How long to wait after sending a reply frame before the next one."""
        if "outputTranscription" in message["serverContent"]:
            return 0.0  # a transcription piece goes out together with the audio chunk after it
        if self._options.audio_realtime:
            return max(delay, audio_frame_seconds(message))
        return delay

    def _reply_frames(self, text: str) -> Iterator[tuple[dict[str, Any], str]]:
        assert self._config is not None
        if self._config.modality == "TEXT":
            return text_reply_frames(text, self._options.chunk_words)
        return audio_reply_frames(
            text,
            self._options.chunk_words,
            self._options.audio_chunk_ms,
            self._config.output_transcription,
            self._config.tone_hz,
            self._options.reply_audio_chunks,
        )

