"""Audio codec properties: G.711 tables are stable under re-encoding, quantization error stays within half a
step, the streaming resampler does not care how Gemini chunks its audio, and pcm16 input slicing loses nothing."""

from __future__ import annotations

import base64
import binascii
import itertools

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from relay.audio import (
    InputConverter,
    OutputConverter,
    alaw_decode,
    alaw_encode,
    ulaw_decode,
    ulaw_encode,
)

CODECS = {"g711_ulaw": (ulaw_encode, ulaw_decode), "g711_alaw": (alaw_encode, alaw_decode)}


def _samples(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<i2").astype(np.int64)


def _step(codes: np.ndarray, fmt: str) -> np.ndarray:
    """Quantization interval of each G.711 code in 16-bit units (μ-law 8..1024, A-law 16..1024)."""
    c = codes.astype(np.int64)
    if fmt == "g711_ulaw":
        return 8 << ((~c >> 4) & 7)
    return 16 << np.maximum((((c ^ 0x55) & 0x7F) >> 4) - 1, 0)


# ---------------------------------------------------------------- G.711


@pytest.mark.parametrize("fmt", CODECS)
def test_every_code_survives_decode_then_encode(fmt: str) -> None:
    encode, decode = CODECS[fmt]
    codes = bytes(range(256))
    again = encode(decode(codes))
    if fmt == "g711_ulaw":
        # μ-law has a negative zero (0x7F) that decodes to 0 like 0xFF; G.711 encoders only emit 0xFF for it.
        assert again == codes.replace(b"\x7f", b"\xff")
    else:
        assert again == codes
    assert decode(again) == decode(codes)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=4096))
def test_decode_encode_is_stable_on_byte_strings(data: bytes) -> None:
    assert ulaw_encode(ulaw_decode(data)) == data.replace(b"\x7f", b"\xff")
    assert alaw_encode(alaw_decode(data)) == data


@settings(max_examples=200, deadline=None)
@given(x=hnp.arrays(np.int16, st.integers(0, 2048)), fmt=st.sampled_from(sorted(CODECS)))
@example(x=np.array([-32768, 32767, -1, 0, 1, 32635, 32636, -32636, -32637], dtype=np.int16), fmt="g711_ulaw")
def test_encode_error_is_within_half_a_step(x: np.ndarray, fmt: str) -> None:
    encode, decode = CODECS[fmt]
    codes = np.frombuffer(encode(x.astype("<i2").tobytes()), dtype=np.uint8)
    assert len(codes) == len(x)
    xs = x.astype(np.int64)
    err = np.abs(_samples(decode(codes.tobytes())) - xs)
    # Past μ-law's top decision level (32635) the top code is still the nearest one; only overload remains.
    bound = _step(codes, fmt) // 2
    if fmt == "g711_ulaw":
        bound = np.where(np.abs(xs) > 32635, np.abs(xs) - 32124, bound)
    assert (err <= bound).all()


# ---------------------------------------------------------------- streaming resampler

# A fixed 0.3 s test signal per input rate: a chirp near full scale plus noise, so clipping and high
# frequencies (which the low-pass must remove) are both present.
_RNG = np.random.default_rng(20240611)


def _signal(rate: int) -> bytes:
    t = np.arange(int(rate * 0.3)) / rate
    chirp = np.sin(2 * np.pi * (200 + 6000 * t) * t) * 30000
    noise = _RNG.normal(0, 2000, len(t))
    return np.clip(np.round(chirp + noise), -32768, 32767).astype("<i2").tobytes()


# (client format, Gemini rate): the usual 24 kHz -> G.711 case, and rates Gemini might announce instead.
CASES = [("g711_ulaw", 24000), ("g711_alaw", 24000), ("g711_ulaw", 16000), ("g711_alaw", 22050),
         ("pcm16", 16000), ("pcm16", 48000)]
SIGNALS = {rate: _signal(rate) for _, rate in CASES}


def _run(fmt: str, rate: int, sizes: list[int]) -> bytes:
    data = SIGNALS[rate]
    if not any(sizes):
        sizes = [*sizes, len(data)]
    conv = OutputConverter(fmt)
    mime = f"audio/pcm;rate={rate}"
    outs, pos = [], 0
    for size in itertools.cycle(sizes):
        if pos >= len(data):
            break
        outs.append(conv.convert(base64.b64encode(data[pos : pos + size]).decode(), mime))
        pos += size
    outs.append(conv.flush())
    # Decode each piece on its own: every chunk is separately padded base64.
    return b"".join(base64.b64decode(o) for o in outs)


_WHOLE = {case: _run(*case, [len(SIGNALS[case[1]])]) for case in CASES}

# Byte sizes, so half samples (odd sizes) as well as 0- and 1-sample chunks occur.
chunk_sizes = st.lists(st.sampled_from([0, 1, 2, 3]) | st.integers(0, 2400), min_size=1, max_size=30)


@pytest.mark.parametrize(("fmt", "rate"), CASES)
@settings(max_examples=40, deadline=None)
@given(sizes=chunk_sizes)
def test_resampled_output_does_not_depend_on_chunking(fmt: str, rate: int, sizes: list[int]) -> None:
    got = _run(fmt, rate, sizes)
    whole = _WHOLE[fmt, rate]
    # soxr's stream emits exactly round-half-up(n * out / in) samples in total once flushed, whatever the
    # chunking (observed over thousands of random chunkings, 0- and 1-sample chunks included), so the length is
    # asserted exactly, not within a sample.
    n_in = len(SIGNALS[rate]) // 2
    target = 24000 if fmt == "pcm16" else 8000
    expected = (2 * n_in * target + rate) // (2 * rate)
    width = 2 if fmt == "pcm16" else 1
    assert len(got) == len(whole) == expected * width
    if fmt == "pcm16":
        # int16 output carries soxr's default TPDF dither (+-1 LSB), whose sequence depends on call sizes.
        assert np.abs(_samples(got) - _samples(whole)).max(initial=0) <= 2
    else:
        # The same +-1 LSB before encoding can tip a sample across one G.711 decision level, never two.
        _, decode = CODECS[fmt]
        a, b = np.frombuffer(got, np.uint8), np.frombuffer(whole, np.uint8)
        diff = np.abs(_samples(decode(got)) - _samples(decode(whole)))
        assert (diff <= np.maximum(_step(a, fmt), _step(b, fmt))).all()


# ---------------------------------------------------------------- input slicing


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=20000), max_ms=st.integers(1, 150))
def test_pcm16_input_slices_lose_nothing(data: bytes, max_ms: int) -> None:
    text = base64.b64encode(data).decode()
    conv = InputConverter("pcm16", max_chunk_ms=max_ms)
    chunks = conv.convert(text)
    decoded = [binascii.a2b_base64(c, strict_mode=True) for c in chunks]
    assert b"".join(decoded) == data
    assert all(0 < len(d) <= 48 * max_ms for d in decoded)
    assert all(conv.duration_ms(c) <= max_ms for c in chunks)
    assert all(len(d) % 2 == 0 for d in decoded[:-1])
    if len(data) <= 48 * max_ms and data:
        assert chunks == [text] and chunks[0] is text
    assert sum(conv.duration_ms(c) for c in chunks) == pytest.approx(conv.duration_ms(text))


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=5000), max_ms=st.integers(1, 150), fmt=st.sampled_from(sorted(CODECS)))
def test_g711_input_chunks_decode_to_the_whole(data: bytes, max_ms: int, fmt: str) -> None:
    _, decode = CODECS[fmt]
    conv = InputConverter(fmt, max_chunk_ms=max_ms)
    chunks = [base64.b64decode(c) for c in conv.convert(base64.b64encode(data).decode())]
    assert b"".join(chunks) == decode(data)
    assert all(0 < len(c) <= 16 * max_ms for c in chunks)


def _strictly_valid(text: str) -> bool:
    # binascii's strict mode still takes a stray "=" after a whole group ("9999="); RFC 4648 does not.
    if len(text) % 4:
        return False
    try:
        binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        return False
    return True


_B64_ISH = st.text(st.sampled_from("AQgw+/=9 \n-_Ä"), max_size=24)


@settings(max_examples=300, deadline=None)
@given(text=_B64_ISH, fmt=st.sampled_from(["pcm16", "g711_ulaw", "g711_alaw"]))
def test_input_accepts_exactly_valid_base64(text: str, fmt: str) -> None:
    # Valid means strict RFC 4648 base64, or the same with its padding left off (which the relay restores).
    unpadded_ok = "=" not in text and len(text) % 4 in (2, 3) and _strictly_valid(text + "=" * (-len(text) % 4))
    valid = _strictly_valid(text) or unpadded_ok
    conv = InputConverter(fmt)
    if valid:
        chunks = conv.convert(text)
        assert all(_strictly_valid(c) for c in chunks)
    else:
        with pytest.raises(ValueError):
            conv.convert(text)
