"""Translation sessions under generated streams: appends of any size, language and transcription changes,
Gemini's transcripts and audio in any order, handles, goAway, lost connections, bad events and a close.

What must hold at every step: each event validates against the SDK's translation union; every byte of Gemini's
audio reaches the client as 24 kHz pcm16, in order, with `elapsed_ms` the output audio before it; the
transcripts are Gemini's, source text only when asked for; audio appended reaches Gemini (bytes in = bytes out,
with the silence a close appends) while no connection was switched or lost; after `session.closed` the socket
closes and nothing follows.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from conformance.frames import pcm16
from relay.ids import counting_ids
from relay.models import caps_for
from relay.translate import LiveTranslation, Output
from relay.translate.translation import FLUSH_SILENCE
from tests.schemas import validate_gemini, validate_openai

CAPS = caps_for("gemini-3.5-live-translate-preview", "vertex", None)
texts = st.text(alphabet="abc xyz", min_size=1, max_size=8)
out_audio = st.integers(1, 30).map(lambda n: base64.b64encode(bytes(range(n)) * 2).decode())

steps = st.lists(st.one_of(
    st.tuples(st.just("append"), st.sampled_from([10, 60, 150, 250])),
    st.tuples(st.just("language"), st.sampled_from(["es", "fr", "pt-BR", "xx", "", "de-DE"])),
    st.tuples(st.just("transcribe"), st.booleans()),
    st.tuples(st.just("bad"), st.sampled_from([b"{", b"[1]", b'{"type": "response.create"}',
                                               b'{"type": "session.update", "session": {"voice": "x"}}',
                                               b'{"type": "session.input_audio_buffer.append", "audio": 5}'])),
    st.tuples(st.just("input"), texts),
    st.tuples(st.just("output"), st.tuples(st.none() | texts, st.lists(out_audio, max_size=3))),
    st.tuples(st.just("turn_complete"), st.none()),
    st.tuples(st.just("handle"), st.integers(0, 9)),
    st.tuples(st.just("go_away"), st.none()),
    st.tuples(st.just("closed"), st.sampled_from([1000, 1006, 1008, 1011])),
    st.tuples(st.just("close"), st.none()),
), max_size=40)


class Stream:
    def __init__(self) -> None:
        self.t = LiveTranslation(counting_ids(), CAPS, model="translate", expires_at=2_000_000_000)
        self.closed = False
        self.ready = False
        self.switched = False
        self.flushed = False
        self.bytes_in = self.bytes_up = 0
        self.audio_out = b""  # what Gemini sent
        self.audio_client = b""  # what the client got
        self.output_ms = 0.0
        self.take(self.t.start())

    def take(self, out: Output) -> list[dict[str, Any]]:
        events = [orjson.loads(b) for b in out.client]
        assert not (self.closed and events), "nothing follows session.closed"
        for event in events:
            validate_openai(event, "translation")
            if event["type"] == "session.output_audio.delta":
                assert event["elapsed_ms"] == int(self.output_ms)
                data = base64.b64decode(event["delta"])
                self.audio_client += data
                self.output_ms += len(data) / 48
            elif event["type"] == "session.input_transcript.delta":
                assert self.t.session.transcription is not None
        if events and events[-1]["type"] == "session.closed":
            assert out.close is not None
            self.closed = True
        for message in out.upstream:
            validate_gemini(message)
            self.bytes_up += len(base64.b64decode(message["realtimeInput"]["audio"]["data"]))
        if out.connect is not None:
            setup = out.connect.setup["setup"]
            validate_gemini(out.connect.setup)
            assert setup["generationConfig"]["translationConfig"]["targetLanguageCode"] == self.t.session.language
            self.switched = self.switched or self.ready or out.connect.resume
            self.ready = False
        return events

    def client(self, frame: bytes) -> list[dict[str, Any]]:
        return self.take(self.t.client_frame(frame))

    def gemini(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        return self.take(self.t.upstream_frame(orjson.dumps(message)))


@given(steps=steps)
def test_generated_translation_streams_keep_their_invariants(steps: list[tuple[str, Any]]) -> None:
    s = Stream()
    for op, arg in steps:
        if s.closed:
            break
        if op == "append":
            audio = pcm16(arg)
            events = s.client(orjson.dumps({"type": "session.input_audio_buffer.append", "audio": audio}))
            if s.t.session.language is None:
                assert [e["type"] for e in events] == ["error"]
            else:
                s.bytes_in += len(base64.b64decode(audio))
        elif op == "language":
            events = s.client(orjson.dumps({"type": "session.update",
                                            "session": {"audio": {"output": {"language": arg}}}}))
            assert [e["type"] for e in events] == (["error"] if arg in ("xx", "") else ["session.updated"])
        elif op == "transcribe":
            value = {"model": "whisper"} if arg else None
            events = s.client(orjson.dumps({"type": "session.update",
                                            "session": {"audio": {"input": {"transcription": value}}}}))
            assert [e["type"] for e in events] == ["session.updated"]
        elif op == "bad":
            assert [e["type"] for e in s.client(arg)] == ["error"]
        elif op == "close":
            s.client(b'{"type": "session.close"}')
            if not s.closed and not s.flushed:  # it waits for Gemini, having appended silence to end the speech
                s.flushed = True
                s.bytes_in += len(base64.b64decode(FLUSH_SILENCE))
        elif s.t._upstream == "none":
            continue
        elif not s.ready:
            s.ready = True
            s.gemini({"setupComplete": {}})
        elif op == "input":
            s.gemini({"serverContent": {"inputTranscription": {"text": arg}}})
        elif op == "output":
            text, chunks = arg
            content: dict[str, Any] = {}
            if text:
                content["outputTranscription"] = {"text": text}
            if chunks:
                content["modelTurn"] = {"parts": [{"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": c}}
                                                  for c in chunks]}
                s.audio_out += b"".join(base64.b64decode(c) for c in chunks)
            s.gemini({"serverContent": content})
        elif op == "turn_complete":
            s.gemini({"serverContent": {"turnComplete": True}})
        elif op == "handle":
            s.gemini({"sessionResumptionUpdate": {"newHandle": f"h{arg}", "resumable": True}})
        elif op == "go_away":
            s.gemini({"goAway": {"timeLeft": "10s"}})
        elif op == "closed":
            s.switched = True
            s.take(s.t.upstream_closed(arg, ""))
    assert s.audio_client == s.audio_out, "Gemini's audio reaches the client, every byte, in order"
    if not s.closed and s.t._upstream != "none" and not s.switched:
        if not s.ready:
            s.ready = True
            s.gemini({"setupComplete": {}})
        if not s.switched:
            assert s.bytes_up == s.bytes_in, "every appended byte reaches Gemini"
