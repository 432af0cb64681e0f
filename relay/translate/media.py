"""Images and recorded audio inside conversation items, as the Gemini blobs they become (issue 12, item 3).

An `input_image` part carries a `data:` URL (OpenAI: PNG and JPEG; Gemini also takes WebP).  The relay does
not fetch remote URLs for clients: an `http(s)` URL is refused, as is a malformed or oversized image.  An
`input_audio` part is a whole recorded utterance in the session's input format; it goes to Gemini as one
PCM blob labelled with its true rate, as appended audio does.
"""

from __future__ import annotations

import binascii
import re
from typing import Any

from relay.audio import InputConverter
from relay.errors import ClientError

IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp")
# Decoded bytes per image.  Gemini takes inline data up to about 20 MB per request; a frame of a live session
# is far smaller, and the relay keeps every image of the conversation for resumption and replay.
MAX_IMAGE_BYTES = 10 * 1024 * 1024
_DATA_URL = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)(?:;[\w-]+=[^;,]*)*;base64,(?P<data>.*)", re.DOTALL)


def image_blob(url: Any, param: str) -> dict[str, str]:
    """The Gemini blob (`mimeType`, base64 `data`) of an `input_image` part's `image_url`; ClientError if unusable."""
    if not isinstance(url, str) or not url:
        raise ClientError("missing_required_parameter", f"Missing required parameter: '{param}'.", param)
    if url[:8].lower().startswith(("http://", "https://")):
        raise ClientError(
            "unsupported_image_url",
            "Remote image URLs are not supported by this relay (it does not fetch URLs for clients); send the "
            "image as a data URL, e.g. 'data:image/png;base64,...'.", param)
    match = _DATA_URL.fullmatch(url.strip())
    if match is None:
        raise ClientError("invalid_value", "Invalid image_url: expected a base64 data URL such as "
                          "'data:image/png;base64,...'.", param)
    mime = match["mime"].lower()
    if mime == "image/jpg":
        mime = "image/jpeg"
    if mime not in IMAGE_TYPES:
        raise ClientError("invalid_value", f"Unsupported image type '{mime}'. Supported types are: "
                          + ", ".join(f"'{t}'" for t in IMAGE_TYPES) + ".", param)
    data = re.sub(r"\s+", "", match["data"])
    if len(data) // 4 * 3 > MAX_IMAGE_BYTES + 3:  # before decoding: no need to decode what is refused anyway
        raise _too_large(len(data) // 4 * 3, param)
    try:
        raw = binascii.a2b_base64(data, strict_mode=True)
    except binascii.Error:
        raise ClientError("invalid_value", "Invalid image_url: the data is not valid base64.", param) from None
    if not raw:
        raise ClientError("invalid_value", "Invalid image_url: the image is empty.", param)
    if len(raw) > MAX_IMAGE_BYTES:
        raise _too_large(len(raw), param)
    return {"mimeType": mime, "data": data}


def _too_large(size: int, param: str) -> ClientError:
    return ClientError("image_too_large", f"The image is {size} bytes; the limit is {MAX_IMAGE_BYTES} bytes "
                       f"({MAX_IMAGE_BYTES // (1024 * 1024)} MiB).", param)


def audio_blob(audio: str, fmt: str, param: str) -> dict[str, str] | None:
    """The Gemini blob of an `input_audio` part's base64 audio in the session's input format (None if empty)."""
    try:
        chunks = InputConverter(fmt, max_chunk_ms=10**9).convert(audio)
    except ValueError as exc:
        raise ClientError("invalid_value", f"Invalid audio: {exc}.", param) from None
    if not chunks:
        return None
    return {"mimeType": InputConverter(fmt).mime_type, "data": chunks[0]}
