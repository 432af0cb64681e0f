"""Input audio: the OpenAI input buffer over Gemini's realtime input (protocols.md 1.6, 3.3, 3.6).

Gemini has no buffer, no commit and no VAD events, so the relay keeps the bookkeeping: how many ms
were appended (offsets for `speech_started`/`speech_stopped`), whether an explicit activity is open
(manual turns), and which user item input transcriptions belong to.
"""

from __future__ import annotations

from typing import Any

from relay.audio import InputConverter
from relay.errors import ClientError
from relay.events import gemini as gm
from relay.events import openai as oa

MIN_COMMIT_MS = 100.0


class InputAudioState:
    """Counters of the session's input audio, in ms from the first append of the session."""

    def __init__(self) -> None:
        self.total_ms = 0.0
        self.buffer_ms = 0.0  # appended since the last commit/clear/turn
        self.buffer_start_ms = 0.0
        self.activity_open = False  # manual mode: activityStart sent, activityEnd not yet
        self.speech_item: str | None = None  # VAD: item id announced by speech_started
        self.converter: InputConverter | None = None
        # input transcription of the latest user audio item
        self.transcript_item: str | None = None
        self.transcript: list[str] = []
        self.transcript_ms = 0.0
        # VAD: a transcription already ended the user turn that Gemini is about to answer; audio the client
        # kept streaming meanwhile belongs to the next turn, not to a second one before this answer.
        self.turn_taken = False


class AudioInput:
    """Mixin of `Translator`: input_audio_buffer.* handlers and the user side of an audio turn."""

    def _manual_turns(self) -> bool:
        # Once setup is sent, Gemini's turn mode is fixed until the next upstream connection.
        if self._upstream_manual is not None:
            return self._upstream_manual
        return self.session.turn_detection is None

    def _on_InputAudioBufferAppend(self, ev: oa.InputAudioBufferAppend) -> None:
        a = self._audio
        fmt = self.session.input_audio_format
        if a.converter is None or a.converter.fmt != fmt:
            a.converter = InputConverter(fmt)
        try:
            ms = a.converter.duration_ms(ev.audio)
            chunks = a.converter.convert(ev.audio)
        except ValueError as exc:
            raise ClientError("invalid_value", f"Invalid 'audio': {exc}", "audio") from None
        if not chunks:
            return
        self._ensure_upstream()
        if self._manual_turns() and not a.activity_open:
            # Gemini starts generating at activityEnd; OpenAI only at response.create (3.6).
            self._send_upstream({"realtimeInput": {"activityStart": {}}})
            a.activity_open = True
        if a.buffer_ms == 0:
            a.buffer_start_ms = a.total_ms
        a.total_ms += ms
        a.buffer_ms += ms
        self._idle_heard(chunks)
        mime = a.converter.mime_type
        for chunk in chunks:
            self._send_upstream({"realtimeInput": {"audio": {"mimeType": mime, "data": chunk}}})

    def _on_InputAudioBufferCommit(self, ev: oa.InputAudioBufferCommit) -> None:
        a = self._audio
        if a.buffer_ms < MIN_COMMIT_MS:
            raise ClientError(
                "input_audio_buffer_commit_empty",
                "Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, "
                f"but buffer only has {a.buffer_ms:.2f}ms of audio.",
            )
        if self.transcribing:
            self._transcription_commit()
            return
        # Under VAD Gemini decides turns itself: a commit only closes the item on our side.
        self._idle_disarm()
        self._commit_audio_item()
        # The committed item is user input: a response.create held for the first input is answered now, as if
        # it came after the commit (a later item would release it while the client thinks it long answered).
        self._user_input()

    def _on_InputAudioBufferClear(self, ev: oa.InputAudioBufferClear) -> None:
        a = self._audio
        # Audio already streamed cannot be taken back; in manual mode the open activity simply
        # continues with whatever comes next (documented limitation).
        a.buffer_ms = 0.0
        a.speech_item = None
        self._idle_disarm()
        self._emit(oa.InputAudioBufferCleared())

    def _on_OutputAudioBufferClear(self, ev: oa.OutputAudioBufferClear) -> None:
        pass  # WebRTC/SIP only: nothing is buffered on a WebSocket

    # ------------------------------------------------------------ user audio items

    def _commit_audio_item(self, item_id: str | None = None) -> str:
        """input_audio_buffer.committed and the user item for the buffered audio (`item_id`: one already given)."""
        a = self._audio
        if a.speech_item is not None:
            # speech announced is over with its item, however the commit came (VAD, the client, the idle timer)
            self._emit(oa.SpeechStopped(int(a.total_ms), a.speech_item))
        item_id = item_id or a.speech_item or self._items.new_id(self._ids)
        previous = self._items.last_id()
        part = oa.ContentPart(type="input_audio", transcript=None)
        part.audio_ms = a.buffer_ms
        item = oa.Item(type="message", id=item_id, object="realtime.item", status="completed", role="user",
                       content=[part])
        self._items.add(item)
        self._emit(oa.InputAudioBufferCommitted(item_id, previous))
        self._emit(oa.ConversationItemAdded(item, previous))
        self._emit(oa.ConversationItemDone(item, previous))
        self._finish_transcript()
        a.transcript_item = item_id
        a.transcript_ms = a.buffer_ms
        a.buffer_ms = 0.0
        a.speech_item = None
        self._had_user_input = True
        return item_id

    def _speech_started(self) -> None:
        """VAD: the user spoke (Gemini tells us only indirectly, by answering or interrupting)."""
        a = self._audio
        if self._manual_turns() or a.speech_item is not None or a.buffer_ms == 0:
            return
        a.speech_item = self._items.new_id(self._ids)
        self._idle_disarm()
        self._emit(oa.SpeechStarted(int(a.buffer_start_ms), a.speech_item))

    def _vad_turn_ended(self) -> None:
        """VAD: Gemini has taken the user's turn; announce it before the response (1.9 A)."""
        a = self._audio
        if self._manual_turns() or a.buffer_ms == 0 or a.turn_taken:
            return
        self._speech_started()
        assert a.speech_item is not None
        self._commit_audio_item()  # speech_stopped, then the item

    def _reset_input_audio(self) -> None:
        """The upstream connection is gone, and with it any audio it had not answered."""
        a = self._audio
        a.activity_open = False
        a.buffer_ms = 0.0
        # An announced speech_started stays open: the user's speech goes on into the next connection, and
        # a second speech_started without a stopped would break the client's pairing.
        a.turn_taken = False
        self._finish_transcript()

    def _end_manual_activity(self) -> None:
        a = self._audio
        if a.activity_open:
            self._send_upstream({"realtimeInput": {"activityEnd": {}}})
            a.activity_open = False

    # ------------------------------------------------------------ input transcription

    def _input_transcription(self, tr: gm.Transcription) -> None:
        a = self._audio
        if a.transcript_item is None:
            self._vad_turn_ended()
            a.turn_taken = a.transcript_item is not None
        if a.transcript_item is None:
            return
        if tr.text:
            a.transcript.append(tr.text)
            self._emit(oa.InputTranscriptionDelta(a.transcript_item, 0, tr.text))
        if tr.finished:
            self._finish_transcript()

    def _finish_transcript(self) -> None:
        a = self._audio
        if a.transcript_item is None or not a.transcript:
            return
        text = "".join(a.transcript).strip()
        item = self._items.get(a.transcript_item)
        if item is not None and item.content:
            item.content[0].transcript = text
        usage: dict[str, Any] = {"type": "duration", "seconds": round(a.transcript_ms / 1000.0, 3)}
        self._emit(oa.InputTranscriptionCompleted(a.transcript_item, 0, text, usage))
        a.transcript_item = None
        a.transcript = []
