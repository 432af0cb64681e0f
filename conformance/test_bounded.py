"""A long session's translator state stays bounded: a cycle of turns (drawn by hypothesis: text or audio, tool
calls answered or withdrawn, cancels, barge-ins, input transcription, goAway and resumes, items deleted) is
played hundreds of times, and what the translator holds after many cycles is no more than after a few.

"Holds" is measured by walking the translator's objects (attributes, attrs fields, containers) and counting
container entries and string/bytes bytes: whatever a cycle leaves behind shows up as growth.
"""

from __future__ import annotations

import base64
from typing import Any

import attrs
from hypothesis import example, given, settings
from hypothesis import strategies as st

from conformance.frames import tagged_pcm16, types
from conformance.test_regressions import Session

CYCLE_OPS = st.fixed_dictionaries({
    "audio_in": st.booleans(),  # the user speaks (appends and a commit) instead of typing
    "audio_out": st.booleans(),  # Gemini answers in audio
    "odd_chunk": st.booleans(),  # one output chunk of an odd byte count
    "tool": st.sampled_from([None, "answered", "withdrawn", "partly"]),
    "cancel": st.booleans(),
    "barge_in": st.booleans(),
    "transcript": st.booleans(),
    "handle": st.booleans(),
    "go_away": st.booleans(),
    "keep": st.integers(0, 3),  # items kept at the end of the cycle (the rest deleted)
})


def footprint(root: Any) -> tuple[int, dict[str, int]]:
    """Container entries plus str/bytes lengths reachable from `root`, in total and per attribute path."""
    seen: set[int] = set()
    where: dict[str, int] = {}

    def walk(obj: Any, path: str) -> int:
        if isinstance(obj, (str, bytes, bytearray, memoryview)):
            return len(obj)
        if obj is None or isinstance(obj, (int, float, bool, type)) or id(obj) in seen or callable(obj):
            return 0
        seen.add(id(obj))
        if isinstance(obj, dict):
            size = len(obj) + sum(walk(k, path) + walk(v, path) for k, v in obj.items())
        elif isinstance(obj, (list, tuple, set, frozenset)) or type(obj).__name__ == "deque":
            size = len(obj) + sum(walk(v, path) for v in obj)
        else:
            names = [f.name for f in attrs.fields(type(obj))] if attrs.has(type(obj)) else []
            names += list(getattr(obj, "__dict__", {}))
            size = 0
            for name in dict.fromkeys(names):
                size += walk(getattr(obj, name, None), f"{path}.{name}")
        if isinstance(obj, (dict, list, tuple, set, frozenset)) or type(obj).__name__ == "deque":
            where[path] = where.get(path, 0) + size
        return size

    return walk(root, "t"), where


class Cycler:
    def __init__(self) -> None:
        self.s = Session("beta", text=False)
        self.s.send({"type": "session.update", "session": {"input_audio_transcription": {"model": "whisper-1"},
                                                           "turn_detection": None, "tools": [
            {"type": "function", "name": "f", "parameters": {"type": "object", "properties": {}}}]}})
        self.n = 0

    def run(self, ops: dict[str, Any]) -> None:
        s = self.s
        self.n += 1
        n = self.n
        if ops["audio_in"]:
            for k in range(3):
                s.send({"type": "input_audio_buffer.append", "audio": tagged_pcm16(40, n * 3 + k)})
            s.send({"type": "input_audio_buffer.commit"})
            events = s.send({"type": "response.create"})
        else:
            events = s.send({"type": "input_text", "text": f"turn {n}"})
        if s.check.upstream == "setup_sent":
            s.gemini({"setupComplete": {}})
        assert "error" not in types(events), events
        if ops["transcript"]:
            s.gemini({"serverContent": {"inputTranscription": {"text": f"said {n}"}}})
        self.answer(ops, n)
        if ops["cancel"] and s.check.active is not None:
            s.send({"type": "response.cancel"})
        if ops["barge_in"]:
            s.gemini({"serverContent": {"interrupted": True}})
        elif ops["tool"]:
            self.tool(ops["tool"], n)
        s.gemini({"serverContent": {"turnComplete": True}})
        if ops["handle"]:
            s.gemini({"sessionResumptionUpdate": {"newHandle": f"h{n}", "resumable": True}})
        if ops["go_away"]:
            s.gemini({"goAway": {"timeLeft": "5s"}})
            if s.check.upstream == "setup_sent":
                s.gemini({"setupComplete": {}})
        for item_id in list(s.check.items)[:-ops["keep"] or None]:
            s.send({"type": "conversation.item.delete", "item_id": item_id})

    def answer(self, ops: dict[str, Any], n: int) -> None:
        if ops["audio_out"]:
            chunk = b"\x01\x02" * 240 + (b"\x03" if ops["odd_chunk"] else b"")
            part = {"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": base64.b64encode(chunk).decode()}}
            self.s.gemini({"serverContent": {"modelTurn": {"parts": [part]}, "outputTranscription": {"text": "ok"}}})
        else:
            self.s.say(f"answer {n}")

    def tool(self, how: str, n: int) -> None:
        s = self.s
        calls = [{"id": f"g{n}a", "name": "f", "args": {"n": n}}, {"id": f"g{n}b", "name": "f", "args": {}}]
        events = s.gemini({"toolCall": {"functionCalls": calls}})
        ids = [i["call_id"] for e in events if e["type"] == "response.done"
               for i in e["response"]["output"] if i["type"] == "function_call"]
        if not ids:
            return  # a cancelled turn's calls are dropped
        if how in ("withdrawn", "partly"):
            s.gemini({"toolCallCancellation": {"ids": [f"g{n}b"] if how == "partly" else [f"g{n}a", f"g{n}b"]}})
        if how != "withdrawn":
            for call_id in ids[:1] if how == "partly" else ids:
                s.send({"type": "conversation.item.create", "item": {
                    "type": "function_call_output", "call_id": call_id, "output": f'{{"n": {n}}}'}})
            s.send({"type": "response.create"})
            s.say("continued")


NO_HANDLE = {"audio_in": False, "audio_out": False, "odd_chunk": False, "tool": None, "cancel": False,
             "barge_in": False, "transcript": False, "handle": False, "go_away": False, "keep": 0}


@settings(max_examples=max(5, settings().max_examples // 10), deadline=None)
@given(cycle=st.lists(CYCLE_OPS, min_size=1, max_size=4))
# Found: on a model that never gives a resumption handle, every turn was kept as resume context (never sent).
@example(cycle=[NO_HANDLE])
# Found: the calls of every tool turn were kept for the whole session.
@example(cycle=[{**NO_HANDLE, "tool": "answered"}, {**NO_HANDLE, "tool": "partly", "handle": True}])
def test_state_does_not_grow_with_the_length_of_a_session(cycle: list[dict[str, Any]]) -> None:
    c = Cycler()
    for _ in range(40):  # long enough to fill what is bounded by count (withdrawn call ids: 64)
        for ops in cycle:
            c.run(ops)
    early, early_where = footprint(c.s.t)
    for _ in range(80):
        for ops in cycle:
            c.run(ops)
    late, late_where = footprint(c.s.t)
    grown = {k: (early_where.get(k, 0), v) for k, v in late_where.items() if v > early_where.get(k, 0) + 64}
    # counters and ids grow by a few characters over the run; anything that keeps entries grows by thousands
    assert late <= early + 256, f"translator state grew from {early} to {late}: {grown}"
