"""Wire-level helpers of the Gemini Live emulator: endpoints, casing, text and audio synthesis, usage.

Everything here is pure (no I/O) so that the session logic stays small and these helpers can be
property-tested on their own.
"""

from __future__ import annotations

import base64
import enum
import math
import re
import struct
import zlib
from collections.abc import Iterator
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs

import attrs

__all__ = [
    "AUDIO_MIME_TYPE",
    "DEFAULT_TONE_HZ",
    "INTERNAL_ERROR",
    "INVALID_ARGUMENT",
    "INVALID_JSON",
    "MS_PER_WORD",
    "NOT_FOUND",
    "SAMPLE_RATE",
    "VOICE_TONES",
    "Backend",
    "Endpoint",
    "Fault",
    "ProtocolError",
    "audio_frame_seconds",
    "audio_reply_frames",
    "audio_reply_ms",
    "camel_key",
    "cap_words",
    "chunk_text",
    "count_words",
    "duration_text",
    "find_faults",
    "normalize",
    "parse_target",
    "silent_audio_frames",
    "split_words",
    "text_reply_frames",
    "thought_frame",
    "tone_pcm",
    "usage_metadata",
    "voice_tone_hz",
]

# Close codes and reasons copied from what the real services send (protocols.md 2.6), so that
# the relay's error mapping is exercised with realistic values.
INVALID_ARGUMENT = (1007, "Request contains an invalid argument.")
INVALID_JSON = (1007, "Invalid JSON payload received.")
NOT_FOUND = (1008, "Requested entity was not found.")
INTERNAL_ERROR = (1011, "Internal error occurred.")

SAMPLE_RATE = 24_000
AUDIO_MIME_TYPE = f"audio/pcm;rate={SAMPLE_RATE}"
MS_PER_WORD = 60
SAMPLES_PER_WORD = SAMPLE_RATE * MS_PER_WORD // 1000
DEFAULT_TONE_HZ = 440
_AMPLITUDE = 8000

# Prebuilt voice -> reply tone, so a test can tell from the audio alone which voice applied. The
# names are the voices the relay maps OpenAI voices to; matching is case-insensitive.
VOICE_TONES = {
    "puck": 520,
    "charon": 600,
    "kore": 660,
    "fenrir": 720,
    "aoede": 780,
    "leda": 840,
    "orus": 900,
    "zephyr": 960,
}
_OTHER_TONES = sorted(set(VOICE_TONES.values()))


class ProtocolError(Exception):
    """A client error that ends the session with a WebSocket close frame."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason

    @classmethod
    def of(cls, code_reason: tuple[int, str]) -> ProtocolError:
        return cls(*code_reason)


class Backend(enum.Enum):
    """Which Google API flavour a connection came in on; it decides wire spellings."""

    VERTEX = "vertex"
    STUDIO = "studio"


@attrs.frozen
class Endpoint:
    """A recognised BidiGenerateContent URL."""

    backend: Backend
    version: str
    query: dict[str, list[str]]


# One or two leading slashes: the google-genai SDK joins "https://host/" and "/ws/..." verbatim.
_VERTEX_PATH = re.compile(r"/{1,2}ws/google\.cloud\.aiplatform\.(v1|v1beta1)\.LlmBidiService/BidiGenerateContent")
_STUDIO_PATH = re.compile(
    r"/{1,2}ws/google\.ai\.generativelanguage\.(v1|v1beta|v1alpha)\.GenerativeService\.BidiGenerateContent"
)


def parse_target(target: str) -> Endpoint | None:
    """Map an HTTP request target (path plus optional query) to an endpoint, or None if unknown."""
    path, _, query = target.partition("?")
    for backend, pattern in ((Backend.VERTEX, _VERTEX_PATH), (Backend.STUDIO, _STUDIO_PATH)):
        match = pattern.fullmatch(path)
        if match:
            return Endpoint(backend, match.group(1), parse_qs(query))
    return None


# Values under these keys are user data (function arguments, JSON schemas), whose own keys must
# survive untouched; only the key itself is camelCased.
_OPAQUE_KEYS = frozenset({"args", "response", "parameters", "parametersJsonSchema", "responseJsonSchema"})


def camel_key(key: str) -> str:
    """``snake_case`` to ``lowerCamelCase``; keys without underscores are returned unchanged."""
    if "_" not in key:
        return key
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def normalize(value: Any) -> Any:
    """Return a copy of a proto3-JSON value with every snake_case key turned into lowerCamelCase.

    The real service accepts both spellings (the google-genai SDK itself mixes them), so the
    session logic only ever looks at camelCase.
    """
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            name = camel_key(key) if isinstance(key, str) else key
            out[name] = item if name in _OPAQUE_KEYS else normalize(item)
        return out
    if isinstance(value, list):
        return [normalize(item) for item in value]
    return value


class Fault(enum.Enum):
    """Faults a user text can request with a ``[fault:NAME]`` marker."""

    CLOSE_1011 = "close-1011"
    CLOSE_1007 = "close-1007"
    CLOSE_1008 = "close-1008"
    CLOSE_1000 = "close-1000"
    CLOSE_1001 = "close-1001"
    MID_1011 = "mid-1011"
    MID_1007 = "mid-1007"
    MID_1008 = "mid-1008"
    MID_1006 = "mid-1006"
    BINARY = "binary"
    GOAWAY = "goaway"
    SLOW = "slow"
    CANCEL_TOOLS = "cancel-tools"
    SILENT = "silent"


_FAULT_MARKER = re.compile(r"\[fault:([a-z0-9-]+)\]")
_FAULT_NAMES = {fault.value: fault for fault in Fault}


def find_faults(text: str) -> frozenset[Fault]:
    """Faults requested in ``text``; unknown marker names are ignored."""
    return frozenset(_FAULT_NAMES[name] for name in _FAULT_MARKER.findall(text) if name in _FAULT_NAMES)


def duration_text(seconds: float) -> str:
    """A proto ``Duration`` in its JSON form, shortest at nanosecond precision: "50s", "0.5s"."""
    return f"{seconds:.9f}".rstrip("0").rstrip(".") + "s"


# A token is a word with its trailing whitespace (the first one also keeps leading whitespace), so
# that joining tokens reproduces the text exactly.
_TOKEN = re.compile(r"\s*\S+\s*")


def split_words(text: str) -> list[str]:
    """Split text into word tokens whose concatenation is ``text`` (for text with any word)."""
    return _TOKEN.findall(text)


def count_words(text: str) -> int:
    """Token count used for usage metadata: whitespace-separated words."""
    return len(text.split())


def cap_words(text: str, limit: int | None) -> str:
    """Cut ``text`` to at most ``limit`` words (``maxOutputTokens``); None or <= 0 means no cap."""
    if limit is None or limit <= 0:
        return text
    tokens = split_words(text)
    if len(tokens) <= limit:
        return text
    return "".join(tokens[:limit]).rstrip()


def chunk_text(text: str, words_per_chunk: int) -> list[str]:
    """Split text into pieces of ``words_per_chunk`` words; concatenated they equal ``text``."""
    tokens = split_words(text)
    size = max(1, words_per_chunk)
    return ["".join(tokens[i : i + size]) for i in range(0, len(tokens), size)]


def voice_tone_hz(voice: str | None) -> int:
    """The reply tone for a prebuilt voice name: 440 Hz without a voice, ``VOICE_TONES`` for known
    names, and for any other name ``sorted(VOICE_TONES.values())[crc32(name.lower()) % 8]``."""
    if not voice:
        return DEFAULT_TONE_HZ
    key = voice.lower()
    if key in VOICE_TONES:
        return VOICE_TONES[key]
    return _OTHER_TONES[zlib.crc32(key.encode()) % len(_OTHER_TONES)]


@lru_cache(maxsize=32)
def _tone_table(hz: int) -> tuple[int, bytes]:
    # An integer frequency at 24 kHz repeats exactly every SAMPLE_RATE / gcd samples (600 for
    # 440 Hz: 11 cycles), so one period gives a phase-continuous tone for any offset.
    period = SAMPLE_RATE // math.gcd(SAMPLE_RATE, hz)
    table = struct.pack(
        f"<{period}h", *(round(_AMPLITUDE * math.sin(2 * math.pi * hz * n / SAMPLE_RATE)) for n in range(period))
    )
    return period, table


def tone_pcm(start_sample: int, count: int, hz: int = DEFAULT_TONE_HZ) -> bytes:
    """``count`` samples of the reply tone (16-bit LE mono, 24 kHz) starting at ``start_sample``."""
    period, table = _tone_table(hz)
    out = bytearray()
    pos = start_sample % period
    remaining = count
    while remaining > 0:
        take = min(period - pos, remaining)
        out += table[pos * 2 : (pos + take) * 2]
        remaining -= take
        pos = 0
    return bytes(out)


def thought_frame(thought: str) -> dict[str, Any]:
    """The thought summary a thinking model sends before its answer (clients must not show it as the answer)."""
    return {"serverContent": {"modelTurn": {"role": "model", "parts": [{"text": thought, "thought": True}]}}}


def text_reply_frames(reply: str, words_per_chunk: int) -> Iterator[tuple[dict[str, Any], str]]:
    """TEXT-modality reply messages, each paired with the reply text it carries."""
    for piece in chunk_text(reply, words_per_chunk):
        yield {"serverContent": {"modelTurn": {"role": "model", "parts": [{"text": piece}]}}}, piece


def _chunk_samples(chunk_ms: int) -> int:
    return max(1, SAMPLE_RATE * chunk_ms // 1000)


def _reply_samples(reply: str, step: int, chunks: int) -> int:
    """Samples of an AUDIO reply: ``MS_PER_WORD`` per word, or exactly ``chunks`` chunks of ``step``."""
    return chunks * step if chunks > 0 else count_words(reply) * SAMPLES_PER_WORD


def _audio_message(pcm: bytes) -> dict[str, Any]:
    part = {"inlineData": {"mimeType": AUDIO_MIME_TYPE, "data": base64.b64encode(pcm).decode("ascii")}}
    return {"serverContent": {"modelTurn": {"role": "model", "parts": [part]}}}


def audio_reply_ms(reply: str, chunk_ms: int, chunks: int = 0) -> int:
    """How long the audio of ``audio_reply_frames`` (same arguments) plays, in whole milliseconds."""
    return _reply_samples(reply, _chunk_samples(chunk_ms), chunks) * 1000 // SAMPLE_RATE


def audio_reply_frames(
    reply: str,
    words_per_chunk: int,
    chunk_ms: int,
    transcribe: bool,
    hz: int = DEFAULT_TONE_HZ,
    chunks: int = 0,
) -> Iterator[tuple[dict[str, Any], str]]:
    """AUDIO-modality reply messages, each paired with the reply text it covers.

    Audio lasts ``MS_PER_WORD`` per word, or exactly ``chunks`` chunks when that is positive (the
    words are then spread evenly over it). A transcription piece is sent just before the audio
    chunk in which its first word starts, which keeps transcript and audio in step like the real
    service. Without transcription the covered text rides along with that audio chunk (it is
    only used to record the model turn in the history).
    """
    step = _chunk_samples(chunk_ms)
    words = count_words(reply)
    total = _reply_samples(reply, step, chunks)
    pieces: list[tuple[int, str]] = []
    word = 0
    for piece in chunk_text(reply, words_per_chunk):
        pieces.append((word * total // max(1, words) if chunks > 0 else word * SAMPLES_PER_WORD, piece))
        word += count_words(piece)
    next_piece = 0
    for start in range(0, total, step):
        carried = ""
        while next_piece < len(pieces) and pieces[next_piece][0] < start + step:
            piece = pieces[next_piece][1]
            next_piece += 1
            if transcribe:
                yield {"serverContent": {"outputTranscription": {"text": piece}}}, piece
            else:
                carried += piece
        yield _audio_message(tone_pcm(start, min(step, total - start), hz)), carried


def silent_audio_frames(ms: int, chunk_ms: int) -> Iterator[tuple[dict[str, Any], str]]:
    """``ms`` of all-zero 24 kHz PCM (at least one chunk) as AUDIO reply messages of ``chunk_ms``
    each, covering no text: what the translation model streams without a ``translationConfig``."""
    step = _chunk_samples(chunk_ms)
    total = max(step, SAMPLE_RATE * ms // 1000)
    for start in range(0, total, step):
        yield _audio_message(bytes(2 * min(step, total - start))), ""


def audio_frame_seconds(message: dict[str, Any]) -> float:
    """Playback time of the reply audio in a server message (0 if it carries none)."""
    parts = message.get("serverContent", {}).get("modelTurn", {}).get("parts", [])
    size = sum(len(base64.b64decode(p["inlineData"]["data"])) for p in parts if "inlineData" in p)
    return size / 2 / SAMPLE_RATE


def usage_metadata(
    backend: Backend,
    prompt_tokens: int,
    reply_tokens: int,
    modality: str,
    audio_prompt_tokens: int = 0,
    *,
    image_prompt_tokens: int = 0,
    thoughts_tokens: int = 0,
) -> dict[str, Any]:
    """``usageMetadata`` in the backend's own spelling (Vertex says candidates*, AI Studio response*).

    ``prompt_tokens`` counts TEXT input, ``audio_prompt_tokens`` AUDIO and ``image_prompt_tokens``
    IMAGE input; the prompt details list AUDIO and IMAGE only when there is some, and TEXT unless
    the prompt has none and something else. ``thoughts_tokens`` (a thinking reply) adds
    ``thoughtsTokenCount``, which the total includes as Gemini's does.
    """
    out = "candidates" if backend is Backend.VERTEX else "response"
    details = []
    if prompt_tokens or not (audio_prompt_tokens or image_prompt_tokens):
        details.append({"modality": "TEXT", "tokenCount": prompt_tokens})
    if audio_prompt_tokens:
        details.append({"modality": "AUDIO", "tokenCount": audio_prompt_tokens})
    if image_prompt_tokens:
        details.append({"modality": "IMAGE", "tokenCount": image_prompt_tokens})
    prompt_total = prompt_tokens + audio_prompt_tokens + image_prompt_tokens
    usage: dict[str, Any] = {
        "promptTokenCount": prompt_total,
        f"{out}TokenCount": reply_tokens,
        "totalTokenCount": prompt_total + reply_tokens + thoughts_tokens,
        "promptTokensDetails": details,
        f"{out}TokensDetails": [{"modality": modality, "tokenCount": reply_tokens}],
    }
    if thoughts_tokens:
        usage["thoughtsTokenCount"] = thoughts_tokens
    return usage
