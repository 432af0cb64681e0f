"""Image input of the Gemini Live emulator: ``realtimeInput.video`` frames and ``inlineData`` image parts.

Every model takes them. They stay in the conversation (and cost ``IMAGE_TOKENS`` each in every
prompt that includes them), and the next reply acknowledges each image received since the previous
one with `` [image <mimeType> <bytes> bytes]``, so a test can see that an image arrived intact.
"""

from __future__ import annotations

from typing import Any

import attrs

from .audio import decode_data
from .wire import INVALID_ARGUMENT, ProtocolError

__all__ = ["IMAGE_MIME_TYPES", "IMAGE_TOKENS", "Image", "acknowledgement", "image_blob", "is_image_part", "turn_images"]

IMAGE_MIME_TYPES = frozenset({"image/jpeg", "image/png", "image/webp"})
# What Gemini charges for an image of at most 384 px a side.
IMAGE_TOKENS = 258


@attrs.frozen
class Image:
    """An image received: its MIME type and decoded size."""

    mime_type: str
    size: int


def image_blob(blob: Any) -> Image:
    """Validate a ``{"mimeType", "data"}`` image blob: 1007 for another MIME type or bad base64."""
    if not isinstance(blob, dict) or blob.get("mimeType") not in IMAGE_MIME_TYPES:
        raise ProtocolError.of(INVALID_ARGUMENT)
    return Image(blob["mimeType"], len(decode_data(blob.get("data"))))


def is_image_part(part: Any) -> bool:
    """A ``Part`` carrying ``inlineData`` whose mimeType is ``image/*``."""
    blob = part.get("inlineData") if isinstance(part, dict) else None
    return isinstance(blob, dict) and isinstance(blob.get("mimeType"), str) and blob["mimeType"].startswith("image/")


def turn_images(turns: list[Any]) -> list[Image]:
    """The images in ``clientContent`` turns, validated, in order."""
    images = []
    for turn in turns:
        parts = turn.get("parts") if isinstance(turn, dict) else None
        for part in parts if isinstance(parts, list) else ():
            if is_image_part(part):
                images.append(image_blob(part["inlineData"]))
    return images


def acknowledgement(images: list[Image]) -> str:
    """What a reply appends for the images received since the previous reply."""
    return "".join(f" [image {image.mime_type} {image.size} bytes]" for image in images)
