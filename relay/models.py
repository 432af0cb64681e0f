"""What each Gemini Live model generation and backend accepts, in one table.

Matched by model name (first matching row wins) and overridable per model in config; the translator
asks this table and nothing else guesses (shared/reference/protocols.md section 4).
"""

from __future__ import annotations

import re

import attrs


@attrs.frozen
class ModelCaps:
    # Native-audio models reject responseModalities TEXT: text is answered from the transcript.
    text_output: bool = True
    # Gemini 3.x rejected mid-session clientContent; text goes as realtimeInput.text there.
    text_via_realtime_input: bool = False
    # Vertex has rejected functionResponses[].id with close 1007.
    function_response_id: bool = True
    # Takes `contextUpdate` (systemInstruction, tools) mid-session, so such a session.update needs no new connection.
    context_update: bool = False


_TABLE: tuple[tuple[str, ModelCaps], ...] = (
    (r"native-audio", ModelCaps(text_output=False)),
    (r"^gemini-3\.8", ModelCaps(text_output=False, text_via_realtime_input=True, context_update=True)),
    (r"^gemini-3", ModelCaps(text_via_realtime_input=True)),
)


def caps_for(model: str, backend: str = "vertex") -> ModelCaps:
    for pattern, caps in _TABLE:
        if re.search(pattern, model):
            base = caps
            break
    else:
        base = ModelCaps()
    if backend == "vertex":
        base = attrs.evolve(base, function_response_id=False)
    return base
