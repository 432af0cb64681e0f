"""Conversation history of the Gemini Live emulator: what a reply echoes and what the prompt costs.

The history is a list of ``Content`` dicts (camelCase) as clients send them (``realtimeInput.video``
frames become user turns of one ``inlineData`` part), plus audio turns,
which carry one internal ``emulatorAudio`` part. That part is not a real ``Part``; the history
never leaves the emulator (resumption keeps it in memory), so it only has to be understood here.
"""

from __future__ import annotations

from typing import Any

from .audio import audio_tokens
from .images import IMAGE_TOKENS, is_image_part
from .wire import count_words

__all__ = ["audio_turn_transcript", "last_user_text", "model_turn", "prompt_tokens", "spoken_ms", "spoken_turn"]

_AUDIO_PART = "emulatorAudio"


def _user_parts(content: Any) -> list[dict[str, Any]]:
    if not isinstance(content, dict) or content.get("role", "user") != "user":
        return []
    parts = content.get("parts") or []
    return [p for p in parts if isinstance(p, dict)] if isinstance(parts, list) else []


def _user_texts(content: Any) -> list[str]:
    return [p["text"] for p in _user_parts(content) if isinstance(p.get("text"), str)]


def _audio_parts(content: Any) -> list[dict[str, Any]]:
    return [p[_AUDIO_PART] for p in _user_parts(content) if _AUDIO_PART in p]


def spoken_turn(ms: int, transcript: str) -> dict[str, Any]:
    """The history entry of a spoken user turn of ``ms`` milliseconds."""
    return {"role": "user", "parts": [{_AUDIO_PART: {"ms": ms, "transcript": transcript}}]}


def audio_turn_transcript(turn: dict[str, Any]) -> str:
    """The transcript of an entry made by ``spoken_turn``."""
    return " ".join(part["transcript"] for part in _audio_parts(turn))


def spoken_ms(turn: dict[str, Any]) -> int:
    """How long the speech of an entry made by ``spoken_turn`` lasted, in milliseconds."""
    return sum(part["ms"] for part in _audio_parts(turn))


def model_turn(text: str) -> dict[str, Any]:
    """The history entry of (the sent part of) a reply."""
    return {"role": "model", "parts": [{"text": text}]}


def last_user_text(history: list[dict[str, Any]]) -> str:
    """The newest user text, or the transcript of the newest spoken turn if that came later."""
    for content in reversed(history):
        texts = _user_texts(content) or [part["transcript"] for part in _audio_parts(content)]
        if texts:
            return " ".join(texts)
    return ""


def prompt_tokens(history: list[dict[str, Any]]) -> tuple[int, int, int]:
    """(TEXT, AUDIO, IMAGE) prompt tokens: one per word of user text, ``audio_tokens`` per spoken turn,
    ``IMAGE_TOKENS`` per image.

    Model turns are not counted, and neither are the transcripts of spoken turns (their audio is).
    """
    text = sum(count_words(t) for content in history for t in _user_texts(content))
    audio = sum(audio_tokens(part["ms"]) for content in history for part in _audio_parts(content))
    images = sum(1 for content in history for part in _user_parts(content) if is_image_part(part))
    return text, audio, images * IMAGE_TOKENS
