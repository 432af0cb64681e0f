"""The audio streaming client, run inside the load generator processes.

One `_Session` streams real-time 24 kHz pcm16 in 20 ms chunks on a fixed schedule and times each
chunk's echo. It speaks either the OpenAI GA protocol to the relay or Gemini Live straight to the
emulator; only the framing differs, so the two paths measure the same client logic and the
difference is what the relay adds.

Every chunk starts with (session id, sequence number) as two little-endian uint32s, so an echo is
matched to its send by decoding its first 12 base64 characters; the relay forwards pcm16 base64
untouched, so the echoed string must also equal the sent one (anything else counts as corrupted).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import math
import os
import struct
import time
from array import array
from typing import Any

import attrs
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from relay.bench.loadgen import Ready

RATE = 24_000
CHUNK_MS = 20
_HEADER = struct.Struct("<II")
_WARMUP = 0xFFFFFFFF  # sequence number of the one chunk echoed before the clock starts
_OPEN_TIMEOUT = 30.0
_CLOSE_TIMEOUT = 2.0
_MIME = f"audio/pcm;rate={RATE}"

RELAY_SESSION_UPDATE = {
    "type": "session.update",
    "session": {"type": "realtime", "output_modalities": ["audio"], "audio": {"input": {"turn_detection": None}}},
}
DIRECT_SETUP = {
    "setup": {
        "model": "projects/bench/locations/us-central1/publishers/google/models/x",
        "generationConfig": {"responseModalities": ["AUDIO"]},
        "realtimeInputConfig": {"automaticActivityDetection": {"disabled": True}},
    }
}


def tone(ms: int, hz: float = 440.0, amplitude: int = 6000) -> bytes:
    """A sine: real-looking (loud, non-repeating bytes) pcm16 rather than silence."""
    count = RATE * ms // 1000
    return struct.pack(f"<{count}h", *(round(amplitude * math.sin(2 * math.pi * hz * n / RATE)) for n in range(count)))


class ChunkMaker:
    """Base64 chunks with the header spliced in, without encoding the whole chunk every 20 ms.

    Base64 maps 3 bytes to 4 characters, so the first 9 bytes (8 header + 1 audio) encode on their own
    and the other 951 bytes are encoded once; the concatenation is the chunk's exact base64.
    """

    def __init__(self, chunk_ms: int = CHUNK_MS) -> None:
        pcm = tone(chunk_ms)
        if len(pcm) < 9 or (len(pcm) - 9) % 3:
            raise ValueError(f"{chunk_ms} ms chunks do not split at a base64 group boundary")
        self._byte8 = pcm[8:9]
        self._tail = base64.b64encode(pcm[9:]).decode("ascii")

    def __call__(self, sid: int, seq: int) -> str:
        return base64.b64encode(_HEADER.pack(sid, seq) + self._byte8).decode("ascii") + self._tail


def chunk_id(data: str) -> tuple[int, int]:
    """(session id, sequence number) of a chunk's base64."""
    sid, seq = _HEADER.unpack(binascii.a2b_base64(data[:12])[:8])
    return sid, seq


@attrs.frozen
class AudioJob:
    """What one load generator runs in one phase."""

    path: str  # "relay" (OpenAI GA through the relay) or "direct" (Gemini Live to the emulator)
    url: str
    key: str
    session_ids: tuple[int, ...]
    sessions_total: int  # all sessions of the phase, over every generator: spreads the send times
    seconds: float
    grace: float
    chunk_ms: int = CHUNK_MS


class _Session:
    def __init__(self, sid: int, job: AudioJob, make: ChunkMaker) -> None:
        self.sid = sid
        self.job = job
        self._make = make
        self._relay = job.path == "relay"
        # Base64 needs no JSON escaping, so a frame is a prefix, the chunk, and a suffix.
        if self._relay:
            self._prefix, self._suffix = '{"type":"input_audio_buffer.append","audio":"', '"}'
        else:
            self._prefix = '{"realtimeInput":{"audio":{"mimeType":"' + _MIME + '","data":"'
            self._suffix = '"}}}'
        self.ws: ClientConnection | None = None
        self.pending: dict[int, tuple[float, str]] = {}  # seq -> (send time, base64 sent)
        self.latencies = array("d")
        self.lag = array("d")  # how late each send was against its schedule
        self.sent = 0
        self.foreign = 0  # echoes that match nothing pending (another session's, a duplicate, garbage)
        self.corrupted = 0  # matched by header but not equal to what was sent
        self.errors: list[str] = []
        self._configured = asyncio.Event()
        self._warm = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Connect, configure, and see one chunk come back, so the measured window starts on a ready upstream
        (the relay opens its upstream lazily, with the first append)."""
        headers = {"Authorization": f"Bearer {self.job.key}"} if self._relay else None
        # No compression (browsers offer it; base64 audio gains little and it costs both ends CPU), no pings.
        self.ws = await connect(
            self.job.url, additional_headers=headers, compression=None, ping_interval=None,
            close_timeout=_CLOSE_TIMEOUT, max_size=None,
        )
        self._reader = asyncio.create_task(self._read())
        await self.ws.send(orjson.dumps(RELAY_SESSION_UPDATE if self._relay else DIRECT_SETUP).decode())
        await self._until(self._configured, "session.updated" if self._relay else "setupComplete")
        await self.ws.send(self._prefix + self._make(self.sid, _WARMUP) + self._suffix)
        await self._until(self._warm, "the warm-up echo")

    async def _until(self, event: asyncio.Event, what: str) -> None:
        """Wait for `event`, but fail at once, with the reason, if the connection ends first."""
        assert self._reader is not None
        waiter = asyncio.ensure_future(event.wait())
        await asyncio.wait([waiter, self._reader], return_when=asyncio.FIRST_COMPLETED)
        if not event.is_set():
            waiter.cancel()
            raise RuntimeError(f"session {self.sid}: connection ended before {what}: {'; '.join(self.errors)}")

    async def stream(self, t0: float, count: int) -> None:
        """Send `count` chunks, chunk k at t0 + k * period whatever the previous sends cost (no drift)."""
        assert self.ws is not None
        period = self.job.chunk_ms / 1000
        send, make, now_fn = self.ws.send, self._make, time.monotonic
        prefix, suffix, pending, lag = self._prefix, self._suffix, self.pending, self.lag
        try:
            for seq in range(count):
                due = t0 + seq * period
                delay = due - now_fn()
                if delay > 0:
                    await asyncio.sleep(delay)
                data = make(self.sid, seq)
                now = now_fn()
                lag.append(now - due)
                pending[seq] = (now, data)
                await send(prefix + data + suffix)
                self.sent += 1
        except ConnectionClosed as exc:
            self.errors.append(f"session {self.sid}: closed while sending: {exc}")

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()

    async def _read(self) -> None:
        assert self.ws is not None
        on_message = self._on_relay if self._relay else self._on_direct
        try:
            async for raw in self.ws:
                on_message(raw)
        except ConnectionClosed as exc:
            self.errors.append(f"session {self.sid}: connection closed: {exc}")

    def _on_relay(self, raw: str | bytes) -> None:
        event = orjson.loads(raw)
        kind = event.get("type")
        if kind == "response.output_audio.delta":
            self._echo(event["delta"])
        elif kind == "session.updated":
            self._configured.set()
        elif kind == "error":
            self.errors.append(f"session {self.sid}: error event: {event.get('error', {}).get('message')}")

    def _on_direct(self, raw: str | bytes) -> None:
        message = orjson.loads(raw)
        content = message.get("serverContent")
        if content is not None:
            for part in (content.get("modelTurn") or {}).get("parts") or ():
                blob = part.get("inlineData")
                if blob is not None:
                    self._echo(blob["data"])
        elif "setupComplete" in message:
            self._configured.set()

    def _echo(self, data: str) -> None:
        now = time.monotonic()
        try:
            sid, seq = chunk_id(data)
        except (binascii.Error, struct.error):
            self.foreign += 1
            return
        if sid != self.sid:
            self.foreign += 1
            return
        if seq == _WARMUP:
            self._warm.set()
            return
        entry = self.pending.pop(seq, None)
        if entry is None:
            self.foreign += 1
            return
        sent_at, sent = entry
        if data != sent:
            self.corrupted += 1
        self.latencies.append(now - sent_at)


async def audio_job(job: AudioJob, ready: Ready) -> dict[str, Any]:
    """One generator's share of a phase: open its sessions, stream for `job.seconds`, wait out the echoes."""
    make = ChunkMaker(job.chunk_ms)
    sessions = [_Session(sid, job, make) for sid in job.session_ids]
    period = job.chunk_ms / 1000
    count = round(job.seconds * 1000 / job.chunk_ms)
    try:
        try:
            async with asyncio.timeout(_OPEN_TIMEOUT):
                await asyncio.gather(*(s.open() for s in sessions))
        except TimeoutError:
            errors = "; ".join(e for s in sessions for e in s.errors[:1]) or "no error reported"
            raise RuntimeError(f"{job.path}: sessions not ready after {_OPEN_TIMEOUT:.0f} s ({errors})") from None
        start_at = await ready()
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        cpu0, wall0 = os.times(), time.monotonic()
        # Sessions are spread evenly over the 20 ms period, like independent clients, not in lockstep bursts.
        await asyncio.gather(
            *(s.stream(start_at + period * s.sid / job.sessions_total, count) for s in sessions)
        )
        deadline = time.monotonic() + job.grace
        while any(s.pending for s in sessions) and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        cpu1, wall1 = os.times(), time.monotonic()
        latencies = array("d")
        lag = array("d")
        for s in sessions:
            latencies.extend(s.latencies)
            lag.extend(s.lag)
        errors = [e for s in sessions for e in s.errors]
        return {
            "sessions": len(sessions),
            "sent": sum(s.sent for s in sessions),
            "echoed": len(latencies),
            "dropped": sum(len(s.pending) for s in sessions),
            "foreign": sum(s.foreign for s in sessions),
            "corrupted": sum(s.corrupted for s in sessions),
            "errors": errors[:5],
            "error_count": len(errors),
            "latencies": latencies,
            "lag": lag,
            "cpu_s": (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system),
            "wall_s": wall1 - wall0,
        }
    finally:
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
