"""Input audio of the Gemini Live emulator: PCM decoding, per-connection totals and activity detection.

Everything here is pure state (no I/O): the session feeds in audio chunks and activity signals and
acts on what comes back (barge in, end a turn). Durations are kept in integer microseconds,
``samples * 1_000_000 // rate`` per chunk, so that any input rate adds up exactly for common
chunk sizes and the results are reproducible.
"""

from __future__ import annotations

import base64
import binascii
import math
import operator
import sys
from array import array
from typing import Any

import attrs

from .wire import INVALID_ARGUMENT, INVALID_JSON, ProtocolError

__all__ = [
    "DEFAULT_INPUT_RATE",
    "AudioResult",
    "InputAudio",
    "InputSettings",
    "audio_blobs",
    "audio_tokens",
    "decode_data",
    "parse_input_settings",
    "parse_rate",
    "rms",
    "transcript_text",
    "turn_ms",
]

DEFAULT_INPUT_RATE = 16_000  # Gemini's native input rate, assumed when the mimeType names none
_US_PER_MS = 1000
_US_PER_S = 1_000_000
_MS_PER_AUDIO_TOKEN = 40  # 25 tokens per second of input audio

# proto3 JSON enums may be spelled by name or by number.
_ACTIVITY_HANDLING_INTERRUPTS = {
    "ACTIVITY_HANDLING_UNSPECIFIED": True,
    "START_OF_ACTIVITY_INTERRUPTS": True,
    "NO_INTERRUPTION": False,
    0: True,
    1: True,
    2: False,
}


@attrs.frozen
class InputSettings:
    """What ``setup.realtimeInputConfig`` asks of input handling."""

    #: Automatic activity detection (the default); False means activityStart/activityEnd drive turns.
    automatic: bool = True
    #: Whether new user activity interrupts a streaming reply (``activityHandling``).
    interrupts: bool = True
    #: ``automaticActivityDetection.silenceDurationMs``; None (or 0, proto3's "unset") = emulator default.
    silence_ms: int | None = None


def _ms_field(value: Any) -> int | None:
    # proto3 JSON allows int32 as a number or a decimal string.
    if value is None:
        return None
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ProtocolError.of(INVALID_ARGUMENT)


def parse_input_settings(config: Any) -> InputSettings:
    """Read a normalized ``realtimeInputConfig``; malformed values close 1007 like the service."""
    if not isinstance(config, dict):
        raise ProtocolError.of(INVALID_ARGUMENT)
    detection = config.get("automaticActivityDetection") or {}
    if not isinstance(detection, dict):
        raise ProtocolError.of(INVALID_ARGUMENT)
    disabled = detection.get("disabled", False)
    handling = config.get("activityHandling", "ACTIVITY_HANDLING_UNSPECIFIED")
    if not isinstance(disabled, bool) or isinstance(handling, bool) or handling not in _ACTIVITY_HANDLING_INTERRUPTS:
        raise ProtocolError.of(INVALID_ARGUMENT)
    silence = _ms_field(detection.get("silenceDurationMs"))
    return InputSettings(
        automatic=not disabled,
        interrupts=_ACTIVITY_HANDLING_INTERRUPTS[handling],
        silence_ms=silence or None,
    )


def audio_blobs(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The media blobs of a normalized realtimeInput: deprecated ``mediaChunks`` first, then ``audio``."""
    chunks = body.get("mediaChunks") or []
    audio = body.get("audio")
    if not isinstance(chunks, list):
        raise ProtocolError.of(INVALID_ARGUMENT)
    blobs = [*chunks, audio] if audio is not None else list(chunks)
    if not all(isinstance(blob, dict) for blob in blobs):
        raise ProtocolError.of(INVALID_ARGUMENT)
    return blobs


def parse_rate(mime_type: Any) -> int | None:
    """Sample rate of an ``audio/pcm[;rate=N]`` mimeType (16000 without ``rate``); None for other media."""
    if not isinstance(mime_type, str):
        raise ProtocolError.of(INVALID_ARGUMENT)
    kind, *params = (item.strip() for item in mime_type.split(";"))
    if kind.lower() != "audio/pcm":
        return None  # video frames and other media are only recorded
    rate = DEFAULT_INPUT_RATE
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "rate":
            value = value.strip()
            if not value.isdigit() or int(value) <= 0:
                raise ProtocolError.of(INVALID_ARGUMENT)
            rate = int(value)
    return rate


def decode_data(data: Any) -> bytes:
    """Decode a proto3 JSON ``bytes`` field: standard or URL-safe base64, padding optional."""
    if data is None:
        return b""
    if not isinstance(data, str):
        raise ProtocolError.of(INVALID_JSON)
    text = data.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error:
        raise ProtocolError.of(INVALID_JSON) from None


def rms(pcm: bytes) -> float:
    """Root mean square of 16-bit little-endian samples (0 for no samples)."""
    samples = array("h")
    samples.frombytes(pcm[: len(pcm) // 2 * 2])
    if not samples:
        return 0.0
    if sys.byteorder == "big":
        samples.byteswap()
    return math.sqrt(sum(map(operator.mul, samples, samples)) / len(samples))


def turn_ms(duration_us: int) -> int:
    """A turn's duration in ms, rounded to the nearest 10 ms (halves round up)."""
    return (duration_us + 5 * _US_PER_MS) // (10 * _US_PER_MS) * 10


def transcript_text(ms: int) -> str:
    """The deterministic "recognised" text of an audio turn of ``ms`` (already rounded) milliseconds."""
    return f"audio {ms} ms"


def audio_tokens(ms: int) -> int:
    """Prompt tokens of an audio turn: 25 per second, i.e. one per started 40 ms."""
    return -(-ms // _MS_PER_AUDIO_TOKEN)


@attrs.frozen
class AudioResult:
    """What one input audio chunk did."""

    #: Automatic detection only: the chunk counts as speech (the session may barge in).
    loud: bool = False
    #: A turn ended with this chunk: its audio duration in microseconds.
    ended_us: int | None = None


class InputAudio:
    """Input-audio state of one connection.

    Automatic detection classifies each chunk as a whole: it is speech when the RMS of its samples
    exceeds ``threshold``. Speech starts with the first loud chunk; the turn's duration runs from
    the start of the first loud chunk to the end of the last one (quiet gaps inside count, the
    trailing silence does not). Speech ends once ``silence_ms`` of quiet audio followed it, once
    the duration reaches ``max_speech_ms`` (0 = no limit), or on ``audioStreamEnd``.

    With detection disabled, a turn is every byte of audio between activityStart and activityEnd;
    audio outside such a pair only counts towards ``total_us``.
    """

    def __init__(self, settings: InputSettings, *, threshold: float, silence_ms: int, max_speech_ms: int) -> None:
        self.automatic = settings.automatic
        self.total_us = 0  # all PCM audio received on the connection
        self.turns_us: list[int] = []  # the duration of every turn ended so far
        self._threshold = threshold
        self._silence_us = (settings.silence_ms or silence_ms) * _US_PER_MS
        self._max_us = max_speech_ms * _US_PER_MS
        self._odd = b""  # a chunk may split a sample; its first byte waits for the next chunk
        self._in_turn = False
        self._turn_us = 0
        self._quiet_us = 0  # automatic: quiet audio since the last loud chunk

    @property
    def in_turn(self) -> bool:
        """Speech is under way (automatic) or an activity is open (manual)."""
        return self._in_turn

    def audio(self, pcm: bytes, rate: int) -> AudioResult:
        """Account for one chunk of 16-bit PCM at ``rate`` Hz."""
        pcm = self._odd + pcm
        cut = len(pcm) // 2 * 2
        pcm, self._odd = pcm[:cut], pcm[cut:]
        duration = len(pcm) // 2 * _US_PER_S // rate
        self.total_us += duration
        if not self.automatic:
            if self._in_turn:
                self._turn_us += duration
            return AudioResult()
        if not pcm:
            return AudioResult()
        if rms(pcm) > self._threshold:
            self._in_turn = True
            self._turn_us += self._quiet_us + duration
            self._quiet_us = 0
            if self._max_us and self._turn_us >= self._max_us:
                return AudioResult(loud=True, ended_us=self._end())
            return AudioResult(loud=True)
        if self._in_turn:
            self._quiet_us += duration
            if self._quiet_us >= self._silence_us:
                return AudioResult(ended_us=self._end())
        return AudioResult()

    def activity_start(self) -> bool:
        """Manual mode: open a turn; False if one is already open (the repeated signal is ignored)."""
        if self._in_turn:
            return False
        self._in_turn = True
        self._turn_us = 0
        return True

    def activity_end(self) -> int | None:
        """Manual mode: close the open turn and return its duration; None if none was open."""
        return self._end() if self._in_turn else None

    def stream_end(self) -> int | None:
        """``audioStreamEnd``: in automatic mode end the current speech now; None if there was none."""
        self._odd = b""
        if not self.automatic or not self._in_turn:
            return None
        return self._end()

    def _end(self) -> int:
        duration = self._turn_us
        self._in_turn = False
        self._turn_us = 0
        self._quiet_us = 0
        self.turns_us.append(duration)
        return duration
