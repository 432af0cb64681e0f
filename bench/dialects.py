"""What the benchmark clients say on each path, so that every path runs the same client logic.

Two protocols: OpenAI Realtime GA (through the relay, or LiteLLM's proxy) and Gemini Live (straight to
the emulator, the floor, or through the bare forwarder). Only the framing differs: a session is
configured (`session.update` → `session.updated`, or `setup` → `setupComplete`), a turn is sent
(`conversation.item.create` + `response.create`, or `clientContent` with `turnComplete`), and the
reply is a run of deltas ended by `response.done` or `turnComplete`.

LiteLLM is spoken to in GA too: its GA events carry the GA names the client looks for (its session
objects and content parts fail the SDK schemas, litellm-peer.md, but the benchmark reads only event
types and deltas). It sends the user turn with `turnComplete` itself and drops `response.create`,
so the same two events work there.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

import attrs
import orjson

from bench import rawws

Protocol = Literal["openai", "gemini"]
Modality = Literal["text", "audio"]

GEMINI_MODEL = "projects/bench/locations/us-central1/publishers/google/models/x"
VERTEX_PATH = "/ws/google.cloud.aiplatform.v1beta1.LlmBidiService/BidiGenerateContent"
# Content deltas (not transcripts) of either OpenAI dialect: the first one is the "first delta".
_CONTENT_DELTAS = frozenset({
    "response.output_text.delta", "response.text.delta", "response.output_audio.delta", "response.audio.delta",
})
_AUDIO_DELTAS = frozenset({"response.output_audio.delta", "response.audio.delta"})


@attrs.frozen
class Endpoint:
    """Where a client connects and how it speaks there (picklable: it travels to the load generators)."""

    label: str  # as reported: "direct", "relay trio-websocket", "bare websockets", "litellm"
    url: str
    protocol: Protocol
    headers: tuple[tuple[str, str], ...] = ()


def configure(protocol: Protocol, modality: Modality, *, manual_audio: bool = False) -> bytes:
    """The configuring message. Gemini's asks for an output transcript with audio because the relay
    always does, so the floor makes the emulator do the same work as on the relay path."""
    if protocol == "openai":
        session: dict[str, Any] = {"type": "realtime", "output_modalities": [modality]}
        if manual_audio:
            session["audio"] = {"input": {"turn_detection": None}}
        return orjson.dumps({"type": "session.update", "session": session})
    setup: dict[str, Any] = {"model": GEMINI_MODEL, "generationConfig": {"responseModalities": [modality.upper()]}}
    if modality == "audio":
        setup["outputAudioTranscription"] = {}
    if manual_audio:
        setup["realtimeInputConfig"] = {"automaticActivityDetection": {"disabled": True}}
    return orjson.dumps({"setup": setup})


def is_configured(protocol: Protocol, event: dict[str, Any]) -> bool:
    return event.get("type") == "session.updated" if protocol == "openai" else "setupComplete" in event


def turn(protocol: Protocol, text: str) -> list[bytes]:
    """The messages of one user text turn that asks for a reply."""
    if protocol == "openai":
        item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
        return [
            orjson.dumps({"type": "conversation.item.create", "item": item}),
            orjson.dumps({"type": "response.create"}),
        ]
    content = {"turns": [{"role": "user", "parts": [{"text": text}]}], "turnComplete": True}
    return [orjson.dumps({"clientContent": content})]


@attrs.define
class ReplyEvent:
    """What a reply message means to a timing client."""

    delta: bool = False  # content (text or audio), not a transcript
    audio_bytes: int = 0  # decoded size of the audio it carries
    done: bool = False  # the reply ended (response.done / turnComplete)
    error: str | None = None


def reply_event(protocol: Protocol, raw: bytes) -> ReplyEvent:
    event = orjson.loads(raw)
    out = ReplyEvent()
    if protocol == "openai":
        kind = event.get("type")
        if kind in _CONTENT_DELTAS:
            out.delta = True
            if kind in _AUDIO_DELTAS:
                out.audio_bytes = _b64_size(event.get("delta", ""))
        elif kind == "response.done":
            out.done = True
        elif kind == "error":
            out.error = str((event.get("error") or {}).get("message"))
        return out
    content = event.get("serverContent")
    if content is not None:
        for part in (content.get("modelTurn") or {}).get("parts") or ():
            out.delta = True
            blob = part.get("inlineData")
            if blob is not None:
                out.audio_bytes += _b64_size(blob.get("data", ""))
        out.done = bool(content.get("turnComplete"))
    return out


def _b64_size(data: str) -> int:
    return len(data) * 3 // 4 - data.count("=", -2)


async def open_session(
    endpoint: Endpoint, configure_with: bytes | None, *, timeout: float = 30.0
) -> tuple[rawws.Client, float]:
    """Connect, wait for `session.created` (OpenAI), then configure if asked; returns the client and the
    seconds from the start of the TCP connect to `session.created` (Gemini: to the upgrade's 101)."""
    client = await rawws.connect(endpoint.url, dict(endpoint.headers), timeout=timeout)
    ready = 0.0
    try:
        if endpoint.protocol == "openai":
            first = orjson.loads(await _recv(client, timeout))
            if first.get("type") != "session.created":
                raise RuntimeError(f"{endpoint.label}: first event {first.get('type')!r}, not session.created")
        ready = time.monotonic() - client.connected_at
        if configure_with is not None:
            client.send(configure_with)
            while not is_configured(endpoint.protocol, event := orjson.loads(await _recv(client, timeout))):
                if event.get("type") == "error":
                    raise RuntimeError(f"{endpoint.label}: error while configuring: {event.get('error')}")
    except BaseException:
        client.close()
        raise
    return client, ready


async def _recv(client: rawws.Client, timeout: float) -> bytes:
    async with asyncio.timeout(timeout):
        return await client.recv()
