"""relay.audio: G.711 against ITU values, base64 pass-through and slicing, resampling quality across chunks."""

from __future__ import annotations

import base64
import binascii
import itertools
import os
import warnings

import numpy as np
import pytest
import soxr

from relay.audio import (
    InputConverter,
    OutputConverter,
    alaw_decode,
    alaw_encode,
    parse_pcm_rate,
    truncate_b64,
    ulaw_decode,
    ulaw_encode,
)

ALL_INT16 = np.arange(-32768, 32768)
CODECS = {"g711_ulaw": (ulaw_encode, ulaw_decode), "g711_alaw": (alaw_encode, alaw_decode)}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def pcm(samples: np.ndarray) -> bytes:
    return np.asarray(samples).astype("<i2").tobytes()


def samples_of(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<i2").astype(np.int64)


def sine(freq: float, rate: int, seconds: float, amplitude: float = 16000.0) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return np.round(np.sin(2 * np.pi * freq * t) * amplitude).astype(np.int16)


def dominant_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[spectrum.argmax()])


def quant_step(codes: np.ndarray, fmt: str) -> np.ndarray:
    """Width of the G.711 quantization interval each code stands for, in 16-bit units."""
    c = codes.astype(np.int64)
    if fmt == "g711_ulaw":
        return 8 << ((~c >> 4) & 7)
    return 16 << np.maximum((((c ^ 0x55) & 0x7F) >> 4) - 1, 0)


# ---------------------------------------------------------------- G.711 tables


@pytest.mark.parametrize(
    ("fmt", "code", "value"),
    [
        ("g711_ulaw", 0xFF, 0),
        ("g711_ulaw", 0x7F, 0),
        ("g711_ulaw", 0x00, -32124),
        ("g711_ulaw", 0x80, 32124),
        ("g711_ulaw", 0xFE, 8),
        ("g711_ulaw", 0x7E, -8),
        ("g711_alaw", 0xD5, 8),
        ("g711_alaw", 0x55, -8),
        ("g711_alaw", 0x2A, -32256),
        ("g711_alaw", 0xAA, 32256),
    ],
)
def test_g711_known_values(fmt: str, code: int, value: int) -> None:
    encode, decode = CODECS[fmt]
    assert samples_of(decode(bytes([code])))[0] == value
    # μ-law has two zeros; the encoder emits the positive one (0xFF), as G.191 does.
    expected = 0xFF if code == 0x7F else code
    assert encode(pcm([value])) == bytes([expected])


def test_encoder_extremes() -> None:
    assert ulaw_encode(pcm([32767, -32768, 0, -1])) == bytes([0x80, 0x00, 0xFF, 0x7F])
    assert alaw_encode(pcm([32767, -32768, 0, -1])) == bytes([0xAA, 0x2A, 0xD5, 0x55])


@pytest.mark.parametrize("fmt", CODECS)
def test_decode_encode_error_within_half_step(fmt: str) -> None:
    encode, decode = CODECS[fmt]
    codes = np.frombuffer(encode(pcm(ALL_INT16)), dtype=np.uint8)
    err = np.abs(samples_of(decode(codes.tobytes())) - ALL_INT16)
    step = quant_step(codes, fmt)
    # μ-law's top decision level is 32635 (G.191 CLIP); beyond it the error is just the overload distance.
    overload = np.abs(ALL_INT16) > 32635 if fmt == "g711_ulaw" else np.zeros(len(ALL_INT16), bool)
    assert (err[~overload] <= step[~overload] // 2).all()
    assert (err[overload] == np.abs(ALL_INT16[overload]) - 32124).all()
    assert (err <= step).all()


def test_g711_matches_audioop_where_it_follows_g191() -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import audioop
    except ImportError:
        pytest.skip("audioop is gone from this Python")
    codes = bytes(range(256))
    assert ulaw_decode(codes) == audioop.ulaw2lin(codes, 2)
    assert alaw_decode(codes) == audioop.alaw2lin(codes, 2)
    everything = pcm(ALL_INT16)
    assert alaw_encode(everything) == audioop.lin2alaw(everything, 2)
    # audioop's μ-law negates after the 14-bit shift, G.191 takes the one's complement first: they agree on
    # every non-negative sample and differ by one level on a few hundred negative decision boundaries.
    ours = np.frombuffer(ulaw_encode(everything), np.uint8)
    theirs = np.frombuffer(audioop.lin2ulaw(everything, 2), np.uint8)
    assert (ours[ALL_INT16 >= 0] == theirs[ALL_INT16 >= 0]).all()
    assert np.abs(samples_of(ulaw_decode(ours.tobytes())) - samples_of(ulaw_decode(theirs.tobytes()))).max() <= 1024


def test_odd_pcm_length_is_rejected_by_encoders() -> None:
    with pytest.raises(ValueError, match="even"):
        ulaw_encode(b"\x00\x01\x02")


# ---------------------------------------------------------------- mime types


@pytest.mark.parametrize(
    ("mime", "rate"),
    [
        ("audio/pcm;rate=24000", 24000),
        ("audio/pcm;rate=16000", 16000),
        ("audio/L16; rate=16000", 16000),
        ("AUDIO/PCM ; RATE = 22050", 22050),
        ('audio/pcm;rate="8000"', 8000),
        ("audio/pcm;channels=1;rate=44100", 44100),
        ("audio/pcm", 24000),
        ("audio/pcm;rate=0", 24000),
        ("audio/pcm;rate=abc", 24000),
        ("", 24000),
        (None, 24000),
    ],
)
def test_parse_pcm_rate(mime: str | None, rate: int) -> None:
    assert parse_pcm_rate(mime) == rate


def test_parse_pcm_rate_default() -> None:
    assert parse_pcm_rate("audio/pcm", default=16000) == 16000


# ---------------------------------------------------------------- input: client -> Gemini


def test_pcm16_input_passes_the_same_string_through() -> None:
    conv = InputConverter("pcm16")
    assert conv.mime_type == "audio/pcm;rate=24000"
    text = b64(os.urandom(4800))
    out = conv.convert(text)
    assert len(out) == 1 and out[0] is text
    assert conv.convert("") == []


def test_pcm16_input_splits_a_15_mib_append() -> None:
    data = os.urandom(15 * 2**20 * 3 // 4 + 1)  # a base64 event of ~15 MiB, odd byte count included
    text = b64(data)
    conv = InputConverter("pcm16", max_chunk_ms=100)
    chunks = conv.convert(text)
    assert all(len(c) <= 6400 for c in chunks)
    decoded = [binascii.a2b_base64(c, strict_mode=True) for c in chunks]
    assert all(len(d) <= 4800 for d in decoded)
    assert all(len(d) % 2 == 0 for d in decoded[:-1])
    assert b"".join(decoded) == data
    assert "".join(chunks) == text
    assert conv.duration_ms(text) == pytest.approx(len(data) / 48)


def test_pcm16_input_adds_missing_padding() -> None:
    conv = InputConverter("pcm16")
    assert conv.convert("AAE") == ["AAE="]
    assert conv.convert("AA") == ["AA=="]


@pytest.mark.parametrize("bad", ["A", "AAAAA", "A===", "AA=A", "AAA=AAAA", "AB\nCD", "AB-_", "ÄÖÜß", "AAA==", "=AAA"])
@pytest.mark.parametrize("fmt", ["pcm16", "g711_ulaw", "g711_alaw"])
def test_invalid_base64_raises_value_error(fmt: str, bad: str) -> None:
    with pytest.raises(ValueError, match="base64"):
        InputConverter(fmt).convert(bad)


def test_unknown_format_and_bad_chunk_length() -> None:
    with pytest.raises(ValueError, match="unknown audio format"):
        InputConverter("opus")
    with pytest.raises(ValueError, match="unknown audio format"):
        OutputConverter("mp3")
    with pytest.raises(ValueError, match="max_chunk_ms"):
        InputConverter("pcm16", max_chunk_ms=0)


@pytest.mark.parametrize("fmt", CODECS)
def test_g711_input_keeps_frequency_and_duration(fmt: str) -> None:
    encode, _ = CODECS[fmt]
    tone = sine(1000, 8000, 2.0)
    text = b64(encode(pcm(tone)))
    conv = InputConverter(fmt)
    assert conv.mime_type == "audio/pcm;rate=8000"
    assert conv.duration_ms(text) == 2000
    chunks = conv.convert(text)
    decoded = [base64.b64decode(c) for c in chunks]
    assert all(len(d) <= 1600 for d in decoded)  # 100 ms of 8 kHz PCM16
    out = samples_of(b"".join(decoded))
    assert len(out) == 16000
    assert dominant_hz(out, 8000) == pytest.approx(1000, rel=0.01)
    assert np.abs(out - tone).max() <= 512


# ---------------------------------------------------------------- output: Gemini -> client


def test_pcm16_output_at_24k_is_the_same_object() -> None:
    conv = OutputConverter("pcm16")
    text = b64(os.urandom(960))
    assert conv.convert(text, "audio/pcm;rate=24000") is text
    assert conv.convert(text, None) is text
    assert conv.flush() == ""
    assert conv.duration_ms(text) == 20


def _feed(conv: OutputConverter, data: bytes, sizes: list[int], mime: str) -> list[str]:
    outs, pos = [], 0
    for size in itertools.cycle(sizes):
        if pos >= len(data):
            break
        outs.append(conv.convert(b64(data[pos : pos + size]), mime))
        pos += size
    outs.append(conv.flush())
    return outs


def _nbytes(*outs: str) -> int:
    return sum(len(base64.b64decode(o)) for o in outs)


# Byte sizes: 7 ms, 20 ms, 200 ms, 13 ms, and odd counts that split samples (the converter must re-pair them).
IRREGULAR = [336, 960, 9600, 624, 961, 1, 0, 27, 3, 2401, 2]


@pytest.mark.parametrize("fmt", CODECS)
def test_g711_output_quality_over_irregular_chunks(fmt: str) -> None:
    _, decode = CODECS[fmt]
    tone = sine(1000, 24000, 2.0)
    outs = _feed(OutputConverter(fmt), pcm(tone), IRREGULAR, "audio/pcm;rate=24000")
    g711 = b"".join(base64.b64decode(o) for o in outs)
    out = samples_of(decode(g711))
    # (a) duration
    assert len(out) / 8000 == pytest.approx(2.0, rel=0.01)
    assert sum(OutputConverter(fmt).duration_ms(o) for o in outs) == pytest.approx(2000, rel=0.01)
    # (b) frequency
    assert dominant_hz(out, 8000) == pytest.approx(1000, rel=0.01)
    # (c) continuity: against a one-shot float resample, only G.711 quantization (half a step) plus soxr's
    # int16 dither is left; a dropped, repeated or filter-restarted sample at a boundary would be off by thousands.
    ref = soxr.resample(tone.astype(np.float32), 24000, 8000, quality="HQ")
    assert len(ref) == len(out)
    codes = np.frombuffer(g711, np.uint8)
    assert (np.abs(out - ref) <= quant_step(codes, fmt) // 2 + 4).all()
    # and against the same converter fed the whole signal at once: at most one level apart (the dither).
    whole = _feed(OutputConverter(fmt), pcm(tone), [len(tone) * 2], "audio/pcm;rate=24000")
    whole_codes = np.frombuffer(b"".join(base64.b64decode(o) for o in whole), np.uint8)
    diff = np.abs(out - samples_of(decode(whole_codes.tobytes())))
    assert (diff <= np.maximum(quant_step(codes, fmt), quant_step(whole_codes, fmt))).all()


def test_16k_gemini_audio_becomes_24k_pcm16() -> None:
    tone = sine(440, 16000, 1.0)
    conv = OutputConverter("pcm16")
    outs = _feed(conv, pcm(tone), [640, 3200, 322, 1], "audio/pcm;rate=16000")
    out = samples_of(b"".join(base64.b64decode(o) for o in outs))
    assert len(out) == 24000
    assert sum(conv.duration_ms(o) for o in outs) == pytest.approx(1000)
    assert dominant_hz(out, 24000) == pytest.approx(440, rel=0.01)
    ref = soxr.resample(tone.astype(np.float32), 16000, 24000, quality="HQ")
    assert np.abs(out - ref).max() <= 3


def test_output_8k_to_g711_needs_no_resampler() -> None:
    tone = sine(1000, 8000, 0.1)
    conv = OutputConverter("g711_ulaw")
    assert conv.convert(b64(pcm(tone)), "audio/pcm;rate=8000") == b64(ulaw_encode(pcm(tone)))
    assert conv.flush() == ""


def test_rate_change_mid_response_drains_the_old_filter() -> None:
    conv = OutputConverter("pcm16")
    first = conv.convert(b64(pcm(sine(440, 16000, 0.1))), "audio/pcm;rate=16000")
    second = conv.convert(b64(pcm(sine(440, 24000, 0.1))), "audio/pcm;rate=24000")
    assert _nbytes(first, second, conv.flush()) // 2 == 2400 + 2400


def test_reset_and_flush_start_the_next_response_clean() -> None:
    tone = pcm(sine(1000, 24000, 0.1))
    conv = OutputConverter("g711_alaw")
    conv.convert(b64(tone[:1001]), "audio/pcm;rate=24000")
    conv.reset()
    # Nothing of the cancelled response (filter history or the odd byte) leaks into the next one.
    assert _nbytes(conv.convert(b64(tone), "audio/pcm;rate=24000"), conv.flush()) == 800
    conv.convert(b64(tone), "audio/pcm;rate=24000")
    conv.flush()
    assert _nbytes(conv.convert(b64(tone), "audio/pcm;rate=24000"), conv.flush()) == 800


# ---------------------------------------------------------------- truncation


def test_truncate_pcm16_slices_the_string() -> None:
    data = os.urandom(48 * 300)
    text = b64(data)
    assert base64.b64decode(truncate_b64(text, "pcm16", 120)) == data[: 48 * 120]
    assert truncate_b64(text, "pcm16", 120) == text[: 64 * 120]
    assert truncate_b64(text, "pcm16", 500) is text
    assert truncate_b64(text, "pcm16", 0) == ""
    assert truncate_b64(text, "pcm16", -5) == ""


@pytest.mark.parametrize("fmt", CODECS)
def test_truncate_g711(fmt: str) -> None:
    data = os.urandom(8 * 300)
    text = b64(data)
    for ms in (1, 2, 3, 7, 299):
        assert base64.b64decode(truncate_b64(text, fmt, ms)) == data[: 8 * ms]
    assert truncate_b64(text, fmt, 300) is text
    with pytest.raises(ValueError):
        truncate_b64("A", fmt, 1)
