"""What a streaming session holds between turns must not grow the garbage collector's work: the audio kept for a
resume is held in untracked form, so a full collection does not scan every chunk of every session."""

from __future__ import annotations

import base64
import gc
import json

from relay.ids import SessionIds
from relay.models import caps_for
from relay.translate import Translator


def streaming_translator() -> tuple[Translator, str]:
    t = Translator(SessionIds(), caps_for("gemini-2.0-flash-live-preview-04-09", "vertex"), dialect="ga")
    t.start()
    t.client_frame(json.dumps({"type": "session.update", "session": {"type": "realtime",
                                                                     "output_modalities": ["audio"]}}))
    append = json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(b"\x01\x02" * 480).decode()})
    t.client_frame(append)
    t.upstream_frame(json.dumps({"setupComplete": {}}))
    return t, append


def test_buffered_audio_adds_no_tracked_objects_and_comes_back_as_it_went() -> None:
    t, append = streaming_translator()
    sent = [m for _ in range(20) for m in t.client_frame(append).upstream]
    for _ in range(1000):  # 20 s of 20 ms chunks, all kept for a resume (no handle came)
        t.client_frame(append)
    gc.collect()  # CPython untracks a tuple of strings when a collection looks at it,
    gc.collect()  # and the (chunk, ms) pair around it at the next one
    entries = t._log.messages
    assert len(entries) > 1000 and sum(gc.is_tracked(entry) for entry in entries) == 0
    kept = t._log.take()
    assert kept[:20] == sent and all(m == sent[0] for m in kept)
