"""Realtime input of an emulated Gemini Live session: text, audio, activity signals, barge-in.

A mixin of ``Session`` (``session.py``), kept apart because audio turns are a concept of their
own: activity detection (``audio.py``) decides when a spoken turn ends, and this part decides
what the session does about it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .audio import InputAudio, audio_blobs, decode_data, parse_rate, transcript_text, turn_ms
from .history import spoken_turn
from .images import Image, image_blob
from .models import AUDIO_INPUT_ONLY
from .wire import INVALID_ARGUMENT, Backend, Endpoint, ProtocolError

if TYPE_CHECKING:
    from .options import EmulatorOptions
    from .replies import Reply
    from .setup import SessionConfig

__all__ = ["RealtimeInput"]


class RealtimeInput:
    """``realtimeInput`` handling; the session provides the state and the reply machinery."""

    _options: EmulatorOptions
    _endpoint: Endpoint
    _config: SessionConfig | None
    _input: InputAudio | None
    _history: list[dict[str, Any]]
    _reply: Reply | None
    _images: list[Image]

    if TYPE_CHECKING:  # implemented by Session and Replies; declared here only, so nothing shadows them

        async def _send(self, message: dict[str, Any], *, binary: bool = False) -> None: ...

        async def _interrupt(self) -> None: ...

        def _start_reply(
            self,
            user_text: str,
            *,
            audio_turn: dict[str, Any] | None = None,
            after: Reply | None = None,
            text: str | None = None,
        ) -> None: ...

    async def _on_realtime_input(self, body: dict[str, Any]) -> None:
        assert self._config is not None
        if not self._config.rules.conversation and ("text" in body or "video" in body):
            raise ProtocolError.of(AUDIO_INPUT_ONLY)  # a transcription or translation model hears nothing else
        # One field per message is the norm; should several come together they are handled in
        # this fixed order, which keeps the outcome deterministic.
        if "activityStart" in body:
            await self._on_activity_start()
        for blob in audio_blobs(body):
            await self._on_audio(blob)
        if "activityEnd" in body:
            await self._on_activity_end()
        if "audioStreamEnd" in body:
            await self._on_audio_stream_end(body["audioStreamEnd"])
        if "video" in body:
            self._on_video(body["video"])
        text = body.get("text")
        if isinstance(text, str):
            await self._interrupt()
            self._history.append({"role": "user", "parts": [{"text": text}]})
            self._start_reply(text)

    def _on_video(self, blob: Any) -> None:
        """A video frame is an image the model sees: it joins the conversation and the next reply
        acknowledges it."""
        self._images.append(image_blob(blob))
        self._history.append({"role": "user", "parts": [{"inlineData": blob}]})

    async def _on_audio(self, blob: dict[str, Any]) -> None:
        assert self._config is not None and self._input is not None
        mime_type = blob.get("mimeType", "audio/pcm")
        rate = parse_rate(mime_type)
        if rate is None:
            return
        if self._options.echo_audio:
            # Validated like any chunk (bad base64 still closes 1007), then returned untouched so a
            # client can match the echo to what it sent by the string alone.
            data = blob.get("data")
            decode_data(data)
            part = {"inlineData": {"mimeType": mime_type, "data": data}}
            await self._send({"serverContent": {"modelTurn": {"parts": [part]}}})
            return
        result = self._input.audio(decode_data(blob.get("data")), rate)
        if result.loud and self._config.input_settings.interrupts:
            await self._interrupt()  # barge-in
        if result.ended_us is not None:
            await self._end_audio_turn(result.ended_us)

    async def _on_activity_start(self) -> None:
        assert self._config is not None and self._input is not None
        # The service only takes explicit activity signals with automatic detection disabled.
        if self._input.automatic:
            raise ProtocolError.of(INVALID_ARGUMENT)
        if self._input.activity_start() and self._config.input_settings.interrupts:
            await self._interrupt()

    async def _on_activity_end(self) -> None:
        assert self._input is not None
        if self._input.automatic:
            raise ProtocolError.of(INVALID_ARGUMENT)
        duration = self._input.activity_end()
        if duration is not None:
            await self._end_audio_turn(duration)

    async def _on_audio_stream_end(self, value: Any) -> None:
        assert self._input is not None
        # Vertex has no audioStreamEnd (the SDK refuses to send it there); the service rejects it.
        if self._endpoint.backend is Backend.VERTEX:
            raise ProtocolError.of(INVALID_ARGUMENT)
        if value is True:
            duration = self._input.stream_end()
            if duration is not None:
                await self._end_audio_turn(duration)

    async def _end_audio_turn(self, duration_us: int) -> None:
        assert self._config is not None
        if self._options.echo_audio:
            return  # echo mode never answers audio (an activityEnd in manual mode lands here)
        ms = turn_ms(duration_us)
        transcript = self._options.audio_transcript or transcript_text(ms)
        after = None
        if self._config.input_settings.interrupts:
            await self._interrupt()
        elif self._reply is not None and not self._reply.done.is_set():
            after = self._reply
        self._start_reply(transcript, audio_turn=spoken_turn(ms, transcript), after=after)

