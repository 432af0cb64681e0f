"""The audio streaming client, run inside the load generator processes.

Each session streams real-time 24 kHz pcm16 in 20 ms chunks on a fixed schedule and times each
chunk's echo. It speaks OpenAI GA (to the relay or LiteLLM) or Gemini Live (straight to the emulator,
or through the bare forwarder); only the framing differs, so every path measures the same client logic
and the difference is what the server in between adds.

One task per generator sends for all its sessions, in the order of their offsets within the 20 ms
period, and echoes are matched in the connection's `data_received` callback (`rawws`): a few µs of
client CPU per chunk, so a single load CPU can drive a few hundred sessions and the server is what
saturates first.

Every chunk starts with (session id, sequence number) as two little-endian uint32s, so an echo is
matched to its send by decoding its first 12 base64 characters; the relay forwards pcm16 base64
untouched, so the echoed string must also equal the sent one (anything else counts as corrupted).
Only those 12 characters change from one chunk to the next, so a session's frame is built once,
masked, and per send only the 12 bytes are encoded and masked (`rawws.Spliced`); an echo is checked
in place, without copying its 1,280 characters out.
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

from bench import rawws
from bench.dialects import Endpoint, configure, open_session
from bench.loadgen import Ready

RATE = 24_000
CHUNK_MS = 20
_HEADER = struct.Struct("<II")
_WINDOW = struct.Struct("<IIB")  # the id header and the chunk's 9th byte: 12 base64 characters of their own
_WIDTH = 12
_WARMUP = 0xFFFFFFFF  # sequence number of the one chunk echoed before the clock starts
_OPEN_TIMEOUT = 60.0
_OPEN_CONCURRENCY = 50
_TICK = 0.001  # the send loop's wake-up period
_MIME = f"audio/pcm;rate={RATE}"


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
        self._byte8 = pcm[8]
        self.tail = base64.b64encode(pcm[9:])  # the same in every chunk

    def window(self, sid: int, seq: int) -> bytes:
        """The first 12 base64 characters of chunk (sid, seq): all that differs from one chunk to another."""
        return binascii.b2a_base64(_WINDOW.pack(sid, seq, self._byte8), newline=False)

    def __call__(self, sid: int, seq: int) -> str:
        return (self.window(sid, seq) + self.tail).decode("ascii")


def chunk_id(data: str | bytes) -> tuple[int, int]:
    """(session id, sequence number) of a chunk's base64."""
    sid, seq = _HEADER.unpack(binascii.a2b_base64(data[:12])[:8])
    return sid, seq


@attrs.frozen
class AudioJob:
    """What one load generator runs in one phase."""

    endpoint: Endpoint
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
        # Base64 needs no JSON escaping, so a frame is a prefix, the chunk, and a suffix; the echo is found by
        # its key (with or without a space after the colon: LiteLLM writes `"delta": "`).
        if job.endpoint.protocol == "openai":
            self._prefix, self._suffix = b'{"type":"input_audio_buffer.append","audio":"', b'"}'
            self._key, self._marker = b'"delta"', b'audio.delta"'
        else:
            self._prefix = b'{"realtimeInput":{"audio":{"mimeType":"' + _MIME.encode() + b'","data":"'
            self._suffix = b'"}}}'
            self._key, self._marker = b'"data"', b'"inlineData"'
        self._rest = make.tail + b'"'  # what an unaltered echo holds after its 12-character window
        self.client: rawws.Client | None = None
        self._frame: rawws.Spliced | None = None  # built once the connection (and so its masking key) exists
        self.pending: dict[int, tuple[float, bytes]] = {}  # seq -> (send time, the 12-character window sent)
        self.latencies = array("d")
        self.lag = array("d")  # how late each send was against its schedule
        self.sent = 0
        self.foreign = 0  # echoes that match nothing pending (another session's, a duplicate, garbage)
        self.corrupted = 0  # matched by header but not equal to what was sent
        self.errors: list[str] = []
        self._warm = asyncio.Event()

    async def open(self) -> None:
        """Connect, configure, and see one chunk come back, so the measured window starts on a ready upstream
        (the relay opens its upstream lazily, with the first append)."""
        protocol = self.job.endpoint.protocol
        self.client, _ = await open_session(self.job.endpoint, configure(protocol, "audio", manual_audio=True))
        self.client.on_message = self._on_message
        template = self._prefix + self._make(self.sid, 0).encode() + self._suffix
        self._frame = rawws.Spliced(template, len(self._prefix), _WIDTH, self.client.mask)
        self.client.send_frame(self._frame(self._make.window(self.sid, _WARMUP)))
        warm, closed = asyncio.ensure_future(self._warm.wait()), asyncio.ensure_future(self.client.wait_closed())
        await asyncio.wait([warm, closed], return_when=asyncio.FIRST_COMPLETED)
        warm.cancel()
        closed.cancel()
        if not self._warm.is_set():
            raise RuntimeError(f"session {self.sid}: closed ({self.client.close_code} {self.client.close_reason}) "
                               f"before the warm-up echo; {'; '.join(self.errors)}")

    def send(self, seq: int, due: float) -> None:
        assert self.client is not None and self._frame is not None
        window = self._make.window(self.sid, seq)
        now = time.monotonic()
        self.lag.append(now - due)
        self.pending[seq] = (now, window)
        try:
            self.client.send_frame(self._frame(window))
        except rawws.Closed as exc:
            del self.pending[seq]
            if not self.errors:
                self.errors.append(f"session {self.sid}: closed while sending: {exc}")
            return
        self.sent += 1

    def close(self) -> None:
        if self.client is not None:
            self.client.close()

    def _on_message(self, raw: bytes) -> None:
        now = time.monotonic()
        if self._marker not in raw:
            if b'"error"' in raw:
                event = orjson.loads(raw)
                self.errors.append(f"session {self.sid}: error event: {(event.get('error') or {}).get('message')}")
            return  # lifecycle events (LiteLLM opens a response around the echoes)
        at = raw.find(self._key)
        start = raw.find(b'"', at + len(self._key)) + 1
        window = raw[start : start + _WIDTH]
        try:
            sid, seq = _HEADER.unpack_from(binascii.a2b_base64(window))
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
        if window != sent or not raw.startswith(self._rest, start + _WIDTH):
            self.corrupted += 1
        self.latencies.append(now - sent_at)


async def _stream(sessions: list[_Session], t0: float, count: int, job: AudioJob) -> None:
    """Chunk k of a session is due at t0 + k * period + its offset, whatever the previous sends cost (no drift).

    One loop walks every session of this generator in offset order, waking once per TICK and sending every chunk
    due before the next tick: a wake-up per chunk would cost the load CPU more than the chunk itself (each is an
    epoll wait and a context switch on a VM), and the load side shares one core with the upstream. Chunks leave
    up to one tick early; latency is timed from the actual send."""
    period = job.chunk_ms / 1000
    timeline = sorted((period * s.sid / job.sessions_total, s) for s in sessions)
    now = time.monotonic
    due_list = [(seq, offset, session) for seq in range(count) for offset, session in timeline]
    i, total = 0, len(due_list)
    while i < total:
        horizon = now() + _TICK
        while i < total:
            seq, offset, session = due_list[i]
            due = t0 + seq * period + offset
            if due > horizon:
                break
            session.send(seq, due)
            i += 1
        if i < total:
            seq, offset, _ = due_list[i]
            delay = t0 + seq * period + offset - _TICK - now()
            # Never less than a tick: uvloop rounds timers to whole ms, so a 0.3 ms sleep returned at once and the
            # loop spun, burning the load CPU between sends. delay >= 0, so a tick still wakes it before the due time.
            await asyncio.sleep(max(_TICK, delay))


async def audio_job(job: AudioJob, ready: Ready) -> dict[str, Any]:
    """One generator's share of a phase: open its sessions, stream for `job.seconds`, wait out the echoes."""
    make = ChunkMaker(job.chunk_ms)
    sessions = [_Session(sid, job, make) for sid in job.session_ids]
    count = round(job.seconds * 1000 / job.chunk_ms)
    gate = asyncio.Semaphore(_OPEN_CONCURRENCY)

    async def opened(session: _Session) -> None:
        async with gate:
            await session.open()

    try:
        try:
            async with asyncio.timeout(_OPEN_TIMEOUT):
                await asyncio.gather(*(opened(s) for s in sessions))
        except TimeoutError:
            errors = "; ".join(e for s in sessions for e in s.errors[:1]) or "no error reported"
            raise RuntimeError(f"{job.endpoint.label}: sessions not ready after {_OPEN_TIMEOUT:.0f} s ({errors})") \
                from None
        start_at = await ready()
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        cpu0, wall0 = os.times(), time.monotonic()
        # Sessions are spread evenly over the 20 ms period, like independent clients, not in lockstep bursts.
        await _stream(sessions, start_at, count, job)
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
        errors += [f"session {s.sid}: closed {s.client.close_code} {s.client.close_reason}".strip()
                   for s in sessions if s.client is not None and s.client.close_code is not None]
        return {
            "sessions": len(sessions),
            "sent": sum(s.sent for s in sessions),
            "echoed": len(latencies),
            "dropped": sum(len(s.pending) for s in sessions),
            "foreign": sum(s.foreign for s in sessions),
            "corrupted": sum(s.corrupted for s in sessions),
            "errors": errors[:5],
            "error_count": len(errors),
            "latencies": latencies.tobytes(),
            "lag": lag.tobytes(),
            "cpu_s": (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system),
            "wall_s": wall1 - wall0,
        }
    finally:
        for s in sessions:
            s.close()
