"""The 2026 GA session fields: each accepted, mapped where Gemini has an equivalent, echoed schema-valid."""

from __future__ import annotations

import pytest

from tests.test_models import setup_for
from tests.test_tools_translator import Session

FIELDS_2026 = {
    "type": "realtime", "model": "gpt-realtime-2.1", "reasoning": {"effort": "low"}, "parallel_tool_calls": True,
    "truncation": {"type": "retention_ratio", "retention_ratio": 0.5, "token_limits": {"post_instructions": 20000}},
    "audio": {"input": {"noise_reduction": {"type": "near_field", "strength": 0.5},
                        "transcription": {"model": "gpt-realtime-whisper", "delay": "minimal"},
                        "turn_detection": {"type": "server_vad", "idle_timeout_ms": 6000}},
              "output": {"voice": {"id": "voice_123"}}},
}


def test_every_2026_field_is_accepted_and_echoed_as_sent():
    s = Session("ga", "gemini-live-2.5-flash-native-audio", "gemini")
    (updated,) = s.send({"type": "session.update", "session": FIELDS_2026})  # schema-checked by Session
    session = updated["session"]
    assert session["audio"]["output"]["voice"] == {"id": "voice_123"}
    assert session["audio"]["input"]["noise_reduction"]["strength"] == 0.5
    assert session["audio"]["input"]["transcription"] == {"model": "gpt-realtime-whisper", "delay": "minimal"}
    assert session["audio"]["input"]["turn_detection"]["idle_timeout_ms"] == 6000
    assert (session["reasoning"], session["parallel_tool_calls"]) == ({"effort": "low"}, True)


def test_the_2026_fields_reach_gemini_where_it_has_an_equivalent():
    setup = setup_for("gemini-live-2.5-flash-native-audio", {k: v for k, v in FIELDS_2026.items() if k != "type"})
    assert setup["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 1024}
    assert setup["contextWindowCompression"] == {"triggerTokens": 20000, "slidingWindow": {"targetTokens": 10000}}
    assert "inputAudioTranscription" in setup  # any transcription model name turns it on
    # A custom OpenAI voice has no Gemini twin: the default voice; a Gemini name in the object is used.
    assert setup["generationConfig"]["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"]["voiceName"] == "Zephyr"
    named = setup_for("gemini-live-2.5-flash-native-audio", {"audio": {"output": {"voice": {"id": "Puck"}}}})
    assert named["generationConfig"]["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"]["voiceName"] == "Puck"


@pytest.mark.parametrize(("truncation", "expected"), [
    ("disabled", None),
    ("auto", {"slidingWindow": {}}),
    ({"type": "retention_ratio", "retention_ratio": 0.8}, {"slidingWindow": {}}),
])
def test_truncation_maps_to_compression_on_a_text_session(truncation, expected):
    setup = setup_for("gemini-2.0-flash-live-001", {"output_modalities": ["text"], "truncation": truncation,
                                                    "audio": {"input": {"turn_detection": None}}})
    assert setup.get("contextWindowCompression") == expected


def test_a_voice_object_shows_as_its_id_to_beta_clients():
    s = Session("beta", "gemini-live-2.5-flash-native-audio", "gemini")
    (updated,) = s.send({"type": "session.update", "session": {"voice": {"id": "voice_9"}}})
    assert updated["session"]["voice"] == "voice_9"
