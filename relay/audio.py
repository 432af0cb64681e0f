"""Audio format conversion between OpenAI Realtime clients and Gemini Live (sans-IO).

OpenAI carries audio as base64 of `pcm16` (16-bit LE mono 24 kHz) or G.711 μ-law/A-law (8 kHz, one byte a
sample).  Gemini takes PCM16 at any declared rate and answers PCM16 at the rate named in each chunk's mimeType.

The common case (pcm16 both ways at 24 kHz) never decodes base64: strings are forwarded or sliced as they are.
G.711 is done with lookup tables built once at import from the ITU-T G.191 (STL) reference rules, because
`audioop` is gone from Python 3.13.  Rate conversion uses soxr's streaming resampler so that the anti-alias
filter keeps its history across Gemini's chunk boundaries.
"""

from __future__ import annotations

import base64
import binascii
import re

import numpy as np
import soxr

FORMATS = ("pcm16", "g711_ulaw", "g711_alaw")
PCM16_RATE = 24000
G711_RATE = 8000
# Client-format bytes per millisecond: 24 kHz * 2 bytes, or 8 kHz * 1 byte.
BYTES_PER_MS = {"pcm16": 48, "g711_ulaw": 8, "g711_alaw": 8}

_LE16 = np.dtype("<i2")
_B64_BODY = re.compile(r"[A-Za-z0-9+/]*")
_RATE_PARAM = re.compile(r";\s*rate\s*=\s*\"?\s*(\d+)", re.IGNORECASE)


def _check_format(fmt: str) -> str:
    if fmt not in BYTES_PER_MS:
        raise ValueError(f"unknown audio format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return fmt


def parse_pcm_rate(mime_type: str | None, default: int = 24000) -> int:
    """The `rate=` parameter of a PCM mime type ("audio/pcm;rate=16000", "audio/L16; rate=16000"), else `default`."""
    if not mime_type:
        return default
    m = _RATE_PARAM.search(mime_type)
    if m is None:
        return default
    rate = int(m.group(1))
    # A zero rate would divide by zero in the resampler; treat it as absent rather than failing the response.
    return rate if rate > 0 else default


# ---------------------------------------------------------------- base64 without decoding


def _canonical_b64(b64: str) -> str:
    """Check `b64` is standard base64 and return it padded; raises ValueError otherwise.

    A regex over the alphabet is about three times faster than a strict decode, and we only need validity:
    the pcm16 path forwards the string itself.  Missing padding is tolerated (some encoders drop it) and added,
    because Gemini's JSON bytes parser and our own slicing both want whole 4-char groups.
    """
    body = b64.rstrip("=")
    pad = len(b64) - len(body)
    if not _B64_BODY.fullmatch(body):
        bad = next(c for c in body if not (c.isascii() and (c.isalnum() or c in "+/")))
        raise ValueError(f"audio is not valid base64: unexpected character {bad!r}")
    need = -len(body) % 4
    if need == 3 or pad > 2 or (pad and pad != need):
        raise ValueError(f"audio is not valid base64: bad length or padding ({len(b64)} characters)")
    # Hand back the caller's own object whenever it is already canonical: the pcm16 path forwards it.
    return b64 if pad or not need else body + "=" * need


def _b64_nbytes(b64: str) -> int:
    """Decoded length of base64 text, from its length and padding alone."""
    n = len(b64)
    pad = 2 if b64.endswith("==") else 1 if b64.endswith("=") else 0
    if pad:
        return n // 4 * 3 - pad
    # Unpadded tails: 2 chars carry 1 byte, 3 chars carry 2.
    return n // 4 * 3 + max(0, n % 4 - 1)


def _decode(b64: str) -> bytes:
    return binascii.a2b_base64(_canonical_b64(b64))


def _encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# ---------------------------------------------------------------- G.711 (ITU-T G.711, rules as in G.191 STL)


def _ulaw_compress(x: np.ndarray) -> np.ndarray:
    """int16 samples -> μ-law bytes, vectorized.

    Negative values use the one's complement (~x = -x-1) like the STL, so the quantizer is symmetric about -0.5
    and the full int16 range maps without overflow; then 14-bit magnitude + bias 33, clipped to 13 bits.
    """
    x = x.astype(np.int32)
    mag = np.where(x < 0, ~x, x) >> 2
    absno = np.minimum(mag + 33, 0x1FFF)
    # segno = 1 + bit length of absno >> 6: 33..63 -> 1, 64..127 -> 2, ..., 4096..8191 -> 8
    segno = np.searchsorted(np.array([64, 128, 256, 512, 1024, 2048, 4096]), absno, side="right") + 1
    high = 8 - segno
    low = 15 - ((absno >> segno) & 0x0F)
    out = (high << 4) | low
    return np.where(x >= 0, out | 0x80, out).astype(np.uint8)


def _ulaw_expand(codes: np.ndarray) -> np.ndarray:
    c = codes.astype(np.int32)
    inv = ~c & 0xFF
    exponent = (inv >> 4) & 0x07
    mantissa = inv & 0x0F
    step = 4 << (exponent + 1)
    mag = (0x80 << exponent) + step * mantissa + step // 2 - 4 * 33
    return np.where(c < 0x80, -mag, mag).astype(np.int16)


def _alaw_compress(x: np.ndarray) -> np.ndarray:
    """int16 samples -> A-law bytes, vectorized: 12-bit magnitude (one's complement for negatives), 8 segments."""
    x = x.astype(np.int32)
    ix = np.where(x < 0, ~x, x) >> 4
    # Segment 0 is linear (ix 0..15); segment s >= 1 covers 16 << (s-1) .. (32 << (s-1)) - 1.
    seg = np.searchsorted(np.array([16, 32, 64, 128, 256, 512, 1024]), ix, side="right")
    mant = np.where(seg == 0, ix, (ix >> np.maximum(seg - 1, 0)) - 16)
    out = (seg << 4) | mant
    out = np.where(x >= 0, out | 0x80, out)
    return (out ^ 0x55).astype(np.uint8)


def _alaw_expand(codes: np.ndarray) -> np.ndarray:
    c = codes.astype(np.int32)
    ix = (c ^ 0x55) & 0x7F
    exponent = ix >> 4
    mant = ix & 0x0F
    mant = np.where(exponent > 0, mant + 16, mant)
    mag = ((mant << 4) + 8) << np.maximum(exponent - 1, 0)
    return np.where(c >= 0x80, mag, -mag).astype(np.int16)


# Whole-domain tables: a 256-entry decode and a 65536-entry encode make every call a single numpy gather.
_ALL_CODES = np.arange(256, dtype=np.uint8)
_ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)
_ULAW_DEC = _ulaw_expand(_ALL_CODES).astype(_LE16)
_ALAW_DEC = _alaw_expand(_ALL_CODES).astype(_LE16)
# Indexed by the sample's bit pattern as uint16, so the table is ordered 0..32767, -32768..-1.
_ULAW_ENC = np.roll(_ulaw_compress(_ALL_SAMPLES), -32768)
_ALAW_ENC = np.roll(_alaw_compress(_ALL_SAMPLES), -32768)


def _pcm_array(pcm: bytes) -> np.ndarray:
    if len(pcm) % 2:
        raise ValueError(f"PCM16 data must have an even number of bytes, got {len(pcm)}")
    return np.frombuffer(pcm, dtype=_LE16)


def ulaw_decode(data: bytes) -> bytes:
    """G.711 μ-law bytes -> PCM16 LE bytes."""
    return _ULAW_DEC[np.frombuffer(data, dtype=np.uint8)].tobytes()


def ulaw_encode(pcm: bytes) -> bytes:
    """PCM16 LE bytes -> G.711 μ-law bytes."""
    return _ULAW_ENC[_pcm_array(pcm).view(np.uint16)].tobytes()


def alaw_decode(data: bytes) -> bytes:
    """G.711 A-law bytes -> PCM16 LE bytes."""
    return _ALAW_DEC[np.frombuffer(data, dtype=np.uint8)].tobytes()


def alaw_encode(pcm: bytes) -> bytes:
    """PCM16 LE bytes -> G.711 A-law bytes."""
    return _ALAW_ENC[_pcm_array(pcm).view(np.uint16)].tobytes()


_DEC_TABLES = {"g711_ulaw": _ULAW_DEC, "g711_alaw": _ALAW_DEC}
_ENC_TABLES = {"g711_ulaw": _ULAW_ENC, "g711_alaw": _ALAW_ENC}


# ---------------------------------------------------------------- client -> Gemini


class InputConverter:
    """Client input audio (base64 in the client's format) -> base64 chunks for Gemini `realtimeInput.audio`,
    each at most `max_chunk_ms` long; all chunks carry `mime_type`."""

    def __init__(self, fmt: str, max_chunk_ms: int = 100) -> None:
        self.fmt = _check_format(fmt)
        if max_chunk_ms < 1:
            raise ValueError(f"max_chunk_ms must be at least 1, got {max_chunk_ms}")
        self.max_chunk_ms = int(max_chunk_ms)
        # G.711 is table-decoded but left at 8 kHz: Gemini resamples declared rates itself, and upsampling here
        # would only triple the bytes on the wire.
        rate = PCM16_RATE if fmt == "pcm16" else G711_RATE
        self.mime_type = f"audio/pcm;rate={rate}"
        # 48 bytes/ms is a multiple of 6 (3-byte base64 groups, 2-byte samples), so a slice of 64 chars a
        # millisecond decodes to whole samples and needs no padding.
        self._pcm16_chars = 64 * self.max_chunk_ms
        self._g711_bytes = 8 * self.max_chunk_ms

    def convert(self, b64: str) -> list[str]:
        """Base64 chunks to send, in order; raises ValueError on invalid base64."""
        if self.fmt == "pcm16":
            text = _canonical_b64(b64)
            if len(text) <= self._pcm16_chars:
                return [text] if text else []
            step = self._pcm16_chars
            return [text[i : i + step] for i in range(0, len(text), step)]
        codes = np.frombuffer(_decode(b64), dtype=np.uint8)
        table = _DEC_TABLES[self.fmt]
        step = self._g711_bytes
        return [_encode(table[codes[i : i + step]].tobytes()) for i in range(0, len(codes), step)]

    def duration_ms(self, b64: str) -> float:
        """Duration of a client chunk in the client's format, from the base64 length alone."""
        return _b64_nbytes(b64) / BYTES_PER_MS[self.fmt]


# ---------------------------------------------------------------- Gemini -> client


class OutputConverter:
    """Gemini output PCM16 chunks (base64 + mimeType) -> base64 in the client's output format.

    One instance per session; call `flush()` when a response ends (or `reset()` when it is cancelled) so the
    next response does not inherit the resampler's history.
    """

    def __init__(self, fmt: str) -> None:
        self.fmt = _check_format(fmt)
        self._target = PCM16_RATE if fmt == "pcm16" else G711_RATE
        self._table = _ENC_TABLES.get(fmt)
        self._stream: soxr.ResampleStream | None = None
        self._stream_rate = 0
        # A trailing half sample is held until its other byte arrives, so later samples stay aligned.
        self._carry = b""

    def convert(self, b64: str, mime_type: str | None) -> str:
        """Client-format base64 for one Gemini chunk; "" when the resampler holds everything back.  Raises
        ValueError for data that is not base64 (nothing of it is kept)."""
        rate = parse_pcm_rate(mime_type, PCM16_RATE)
        if rate == self._target and self._stream is None and not self._carry and self._table is None:
            # Identical format: the client gets Gemini's string itself, once it is known to be base64 of whole
            # samples (an odd byte would shift every later sample; it takes the path below, which carries it).
            text = _canonical_b64(b64)
            if not _b64_nbytes(text) & 1:
                return text
        try:
            raw = self._carry + binascii.a2b_base64(b64, strict_mode=True)
        except binascii.Error as exc:
            raise ValueError(f"audio is not valid base64: {exc}") from None
        whole = len(raw) & ~1
        self._carry = raw[whole:]
        samples = np.frombuffer(raw, dtype=_LE16, count=whole // 2).astype(np.int16, copy=False)
        parts = []
        if self._stream is not None and self._stream_rate != rate:
            # The rate changed mid-response: finish the old filter so its tail is not lost.
            parts.append(self._drain())
        if rate == self._target:
            parts.append(samples)
        else:
            if self._stream is None:
                self._stream = soxr.ResampleStream(rate, self._target, 1, dtype="int16", quality="HQ")
                self._stream_rate = rate
            parts.append(self._stream.resample_chunk(samples))
        return self._emit(parts[0] if len(parts) == 1 else np.concatenate(parts))

    def flush(self) -> str:
        """Drain the resampler's delay line at the end of a response; the final base64 (may be "")."""
        self._carry = b""
        return self._emit(self._drain())

    def reset(self) -> None:
        """Forget buffered audio (a new or cancelled response)."""
        self._stream = None
        self._stream_rate = 0
        self._carry = b""

    def duration_ms(self, b64_out: str) -> float:
        """Duration of client-format output base64, from its length alone (for audio_end_ms)."""
        return _b64_nbytes(b64_out) / BYTES_PER_MS[self.fmt]

    def _drain(self) -> np.ndarray:
        if self._stream is None:
            return np.zeros(0, dtype=np.int16)
        tail = self._stream.resample_chunk(np.zeros(0, dtype=np.int16), last=True)
        # A finished soxr stream cannot take more input, so the next chunk starts a fresh one.
        self._stream = None
        self._stream_rate = 0
        return tail

    def _emit(self, samples: np.ndarray) -> str:
        if samples.size == 0:
            return ""
        if self._table is not None:
            return _encode(self._table[samples.view(np.uint16)].tobytes())
        return _encode(samples.astype(_LE16, copy=False).tobytes())


def truncate_b64(b64: str, fmt: str, ms: int) -> str:
    """The first `ms` milliseconds of client-format base64 audio (conversation.item.truncate)."""
    bpm = BYTES_PER_MS[_check_format(fmt)]
    text = _canonical_b64(b64)
    keep = max(0, int(ms * bpm))
    if fmt == "pcm16":
        keep &= ~1
    if keep >= _b64_nbytes(text):
        return text
    if keep % 3 == 0:
        # Whole base64 groups: cut the string; always the case for pcm16 at integral milliseconds.
        return text[: keep // 3 * 4]
    return _encode(binascii.a2b_base64(text)[:keep])
