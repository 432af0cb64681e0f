"""``EmulatorOptions``: everything a Gemini Live emulator is configured with.

Its own module so that sessions (``session.py``) can read the options without importing the
server that owns them.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

__all__ = ["DEFAULT_OPTIONS", "EmulatorOptions"]


@attrs.frozen
class EmulatorOptions:
    """How the emulator authenticates, paces its replies, detects speech and ages its sessions."""

    #: If set, Vertex-path requests must carry ``Authorization: Bearer <token>``; a function instead of a string
    #: decides which tokens are good (an embedding test whose token endpoint issues a fresh one per request).
    bearer_token: str | Callable[[str], bool] | None = None
    #: If set, AI-Studio-path requests must carry ``x-goog-api-key`` or ``?key=`` equal to it.
    api_key: str | None = None
    #: Words per streamed text or transcription chunk.
    chunk_words: int = 3
    #: Seconds between reply chunks (0 = back to back).
    chunk_delay: float = 0.0
    #: Milliseconds of 24 kHz PCM per ``inlineData`` chunk in AUDIO replies.
    audio_chunk_ms: int = 100
    #: Pace AUDIO replies in real time: after each chunk, wait as long as it plays.
    audio_realtime: bool = False
    #: An input audio chunk is speech when the RMS of its 16-bit samples exceeds this.
    vad_threshold: float = 500.0
    #: Quiet audio that ends speech unless setup's ``silenceDurationMs`` says otherwise.
    vad_silence_ms: int = 500
    #: Speech is cut into a turn once it lasts this long (0 = no limit).
    vad_max_speech_ms: int = 0
    #: What the emulator "hears" in every spoken turn, instead of ``"audio <N> ms"`` (so a voice
    #: turn can name a tool, e.g. ``"get_time please"``).
    audio_transcript: str | None = None
    #: Benchmark mode: send every input audio chunk straight back as a ``modelTurn`` ``inlineData``
    #: part (same mimeType, same base64 string) instead of detecting speech and answering turns.
    echo_audio: bool = False
    #: Benchmark: every AUDIO reply is exactly this many ``audio_chunk_ms`` chunks of tone, whatever
    #: its text (0 = ``MS_PER_WORD`` per word); the transcript is spread evenly over that audio.
    reply_audio_chunks: int = 0
    #: The WebSocket implementation serving connections: ``trio-websocket``, or ``websockets``
    #: (the relay's sans-IO transport, ``relay.transport.sansio``) so that a benchmark's load side
    #: costs less per message than the relay it measures.
    transport: str = "trio-websocket"
    #: Send ``goAway`` right after the Nth completed reply of a connection (0 = never).
    goaway_after_turns: int = 0
    #: Send ``goAway`` this many seconds after ``setupComplete`` (0 = never).
    goaway_after_seconds: float = 0.0
    #: The ``timeLeft`` of every ``goAway``; a connection still open after it closes with 1011.
    goaway_time_left: float = 50.0
    #: Seconds a resumption handle stays valid after it was issued.
    handle_ttl: float = 7200.0
    #: Prompt tokens a reply may start with (0 = unlimited); more closes 1007 unless compressed.
    context_limit_tokens: int = 0
    #: Models (a regex searched in ``setup.model``) that accept ``contextUpdate``.
    context_update_models: str = r"gemini-3\.8"


DEFAULT_OPTIONS = EmulatorOptions()
