"""One OpenAI response being built from Gemini output (protocols.md 1.9 B/C, 3.5).

Gemini sends bare deltas; OpenAI clients expect the whole frame around them: `response.created`,
the output item, the content part, deltas, the `.done` events in order, `response.done`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from relay.audio import OutputConverter
from relay.events import gemini as gm
from relay.events import openai as oa
from relay.ids import IdFactory
from relay.translate.items import ItemStore

Emit = Callable[[Any], None]


class Meter:
    """Milliseconds of audio put out, summed over a session's responses (for the operator's metrics)."""

    __slots__ = ("ms",)

    def __init__(self) -> None:
        self.ms = 0.0


class ResponseBuilder:
    """Emits the lifecycle of one response.  Events are serialized as they are emitted, so they
    may carry the live item."""

    def __init__(
        self,
        response: oa.Response,
        ids: IdFactory,
        items: ItemStore,
        emit: Emit,
        meter: Meter | None = None,
    ) -> None:
        self.response = response
        self._meter = meter if meter is not None else Meter()
        self.has_output = False  # its first content (text, audio or a call) went out: for time-to-first-token
        self._ids = ids
        self._items = items
        self._emit = emit
        self._item: oa.Item | None = None
        self._part: oa.ContentPart | None = None
        self._text: list[str] = []
        self._transcript: list[str] = []
        # G.711 output keeps resampler state across chunks; pcm16 at 24 kHz passes through untouched.
        self._converter = OutputConverter(response.output_audio_format) if self.audio_out else None
        self.had_output = False
        self.finished = False

    @property
    def id(self) -> str:
        return self.response.id

    @property
    def audio_out(self) -> bool:
        return "audio" in self.response.modalities

    # ------------------------------------------------------------ opening

    def _open_message(self) -> tuple[oa.Item, oa.ContentPart]:
        if self._item is not None and self._part is not None:
            return self._item, self._part
        self.has_output = True
        r = self.response
        item = oa.Item(
            type="message", id=self._items.new_id(self._ids), object="realtime.item", status="in_progress",
            role="assistant", content=[],
        )
        previous = self._items.last_id()
        self._items.add(item)
        r.output.append(item)
        output_index = len(r.output) - 1
        self._emit(oa.OutputItemAdded(r.id, output_index, item))
        self._emit(oa.ConversationItemAdded(item, previous))
        if self.audio_out:
            part = oa.ContentPart(type="audio", transcript="")
        else:
            part = oa.ContentPart(type="text", text="")
        self._emit(oa.ContentPartAdded(r.id, item.id, output_index, 0, part))
        item.content = [part]
        self._item, self._part = item, part
        self.had_output = True
        return item, part

    def _where(self) -> tuple[str, str, int, int]:
        assert self._item is not None
        return self.response.id, self._item.id, self.response.output.index(self._item), 0

    # ------------------------------------------------------------ deltas

    def text(self, delta: str) -> None:
        if not delta:
            return
        self._open_message()
        if self.audio_out:
            # An AUDIO session that answers in text (e.g. a TEXT-capable model asked for both):
            # it belongs to the transcript.
            self.transcript(delta)
            return
        self._text.append(delta)
        self._emit(oa.TextDelta(*self._where(), delta))

    def audio(self, blob: gm.Blob) -> None:
        if self._converter is None or not blob.data:
            return  # a text-only response on an audio session: the transcript carries the answer
        _, part = self._open_message()
        data = self._converter.convert(blob.data, blob.mime_type)
        if data:
            ms = self._converter.duration_ms(data)
            part.audio_ms += ms
            self._meter.ms += ms
            self._emit(oa.AudioDelta(*self._where(), data))

    def transcript(self, delta: str) -> None:
        if not delta:
            return
        self._open_message()
        if not self.audio_out:
            self._text.append(delta)
            self._emit(oa.TextDelta(*self._where(), delta))
            return
        self._transcript.append(delta)
        self._emit(oa.AudioTranscriptDelta(*self._where(), delta))

    def function_call(self, call_id: str, name: str, arguments: str) -> None:
        """One function call as its own output item (protocols.md 1.9 D); Gemini gives whole
        arguments, so there is one delta with all of them."""
        self.has_output = True
        self._close_message("completed")
        self._item = self._part = None
        self._text, self._transcript = [], []
        r = self.response
        item = oa.Item(
            type="function_call", id=self._items.new_id(self._ids), object="realtime.item", status="in_progress",
            call_id=call_id, name=name, arguments="",
        )
        previous = self._items.last_id()
        self._items.add(item)
        r.output.append(item)
        index = len(r.output) - 1
        self._emit(oa.OutputItemAdded(r.id, index, item))
        self._emit(oa.ConversationItemAdded(item, previous))
        self._emit(oa.FunctionCallArgumentsDelta(r.id, item.id, index, call_id, arguments))
        self._emit(oa.FunctionCallArgumentsDone(r.id, item.id, index, call_id, name, arguments))
        item.arguments = arguments
        item.status = "completed"
        self._emit(oa.OutputItemDone(r.id, index, item))
        self._emit(oa.ConversationItemDone(item, previous))
        self.had_output = True

    # ------------------------------------------------------------ closing

    def _close_message(self, item_status: str) -> None:
        if self._item is None or self._part is None:
            return
        where = self._where()
        part = self._part
        if self.audio_out:
            tail = self._converter.flush() if self._converter is not None else ""
            if tail:
                ms = self._converter.duration_ms(tail)
                part.audio_ms += ms
                self._meter.ms += ms
                self._emit(oa.AudioDelta(*where, tail))
            part.transcript = "".join(self._transcript)
            self._emit(oa.AudioDone(*where))
            self._emit(oa.AudioTranscriptDone(*where, part.transcript))
        else:
            part.text = "".join(self._text)
            self._emit(oa.TextDone(*where, part.text))
        self._emit(oa.ContentPartDone(*where, part))
        self._item.status = item_status
        self._emit(oa.OutputItemDone(where[0], where[2], self._item))
        self._emit(oa.ConversationItemDone(self._item, self._items.previous_id(self._item.id)))

    def finish(
        self,
        status: str,
        reason: str | None = None,
        usage: oa.Usage | None = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        if self.finished:
            return
        self.finished = True
        self._close_message("completed" if status == "completed" else "incomplete")
        r = self.response
        r.status = status  # type: ignore[assignment]
        r.status_reason = reason
        r.error = error
        r.usage = usage if usage is not None else oa.Usage()
        self._emit(oa.ResponseDone(r))


def usage_from_gemini(u: gm.UsageMetadata | None) -> oa.Usage:
    """protocols.md 3.7; Vertex spells output tokens `candidatesTokenCount`."""
    if u is None:
        return oa.Usage()

    def by_modality(details: list[gm.ModalityTokenCount] | None) -> dict[str, int]:
        out: dict[str, int] = {}
        for d in details or ():
            if d.modality:
                out[d.modality] = out.get(d.modality, 0) + (d.token_count or 0)
        return out

    prompt = (u.prompt_token_count or 0) + (u.tool_use_prompt_token_count or 0)
    output = (u.response_token_count or u.candidates_token_count or 0) + (u.thoughts_token_count or 0)
    inp = by_modality(u.prompt_tokens_details)
    outp = by_modality(u.response_tokens_details or u.candidates_tokens_details)
    return oa.Usage(
        total_tokens=u.total_token_count or (prompt + output),
        input_tokens=prompt,
        output_tokens=output,
        input_text_tokens=inp.get("TEXT", 0),
        input_audio_tokens=inp.get("AUDIO", 0),
        input_image_tokens=inp.get("IMAGE", 0) + inp.get("VIDEO", 0),
        cached_tokens=u.cached_content_token_count or 0,
        output_text_tokens=outp.get("TEXT", 0),
        output_audio_tokens=outp.get("AUDIO", 0),
    )
