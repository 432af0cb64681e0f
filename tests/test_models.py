"""The capability table (relay.models) and what the translator does with each row: the setup it builds per model
(thinking, function behaviour, modality), what it refuses, and the README's copy of the table."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.models import caps_for, markdown_table, rows
from tests.test_tools_translator import TIME, Session

README = Path(__file__).resolve().parent.parent / "README.md"
MODELS = ["gemini-3.8-live-extended-thinking", "gemini-3.8-live", "gemini-3.1-flash-live-preview",
          "gemini-live-2.5-flash-native-audio", "gemini-2.5-flash-native-audio-preview-12-2025",
          "gemini-live-2.5-flash", "gemini-2.0-flash-live-001", "some-future-live-model"]


def setup_for(model: str, session: dict, backend: str = "gemini") -> dict:
    s = Session("ga", model, backend)
    s.send({"type": "session.update", "session": {"type": "realtime", **session}})
    s.send({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                                                          "content": [{"type": "input_text", "text": "hi"}]}})
    s.send({"type": "response.create"})
    assert s.setup is not None, "the first response opens the upstream"
    return s.setup["setup"]


def test_rows_are_matched_by_model_id_on_either_path_and_vertex_has_its_own_facts():
    path = "projects/p/locations/us-central1/publishers/google/models/gemini-3.8-live"
    assert caps_for(path, "vertex").family == caps_for("models/gemini-3.8-live", "gemini").family
    assert caps_for("gemini-3.8-live-extended-thinking").family != caps_for("gemini-3.8-live").family
    assert caps_for("gemini-3.8-live", "gemini").function_response_id
    assert not caps_for("gemini-3.8-live", "vertex").function_response_id
    native = caps_for("gemini-live-2.5-flash-native-audio", "vertex")
    assert (native.vad_start, native.vad_end) == ("LOW", "HIGH")  # the Vertex GA page's defaults
    assert caps_for("some-future-live-model").family == "Gemini Live (other)"


@pytest.mark.parametrize("model", MODELS)
def test_a_text_session_gets_text_where_the_model_gives_it_and_audio_with_a_transcript_elsewhere(model):
    setup = setup_for(model, {"output_modalities": ["text"]})
    caps = caps_for(model, "gemini")
    modality = setup["generationConfig"]["responseModalities"]
    assert modality == (["TEXT"] if caps.text_output else ["AUDIO"])
    if not caps.text_output:
        assert "outputAudioTranscription" in setup


@pytest.mark.parametrize(("model", "effort", "expected"), [
    ("gemini-3.8-live", None, None),
    ("gemini-3.8-live", "high", None),  # 3.8 rejects any thinkingConfig: reasoning is accepted without effect
    ("gemini-3.8-live-extended-thinking", None, {"thinkingLevel": "LOW"}),  # required: low by default
    ("gemini-3.8-live-extended-thinking", "minimal", {"thinkingLevel": "LOW"}),  # minimal is refused there
    ("gemini-3.8-live-extended-thinking", "xhigh", {"thinkingLevel": "HIGH"}),
    ("gemini-3.1-flash-live-preview", None, None),
    ("gemini-3.1-flash-live-preview", "minimal", {"thinkingLevel": "MINIMAL"}),
    ("gemini-3.1-flash-live-preview", "medium", {"thinkingLevel": "MEDIUM"}),
    ("gemini-live-2.5-flash-native-audio", "low", {"thinkingBudget": 1024}),
    ("gemini-live-2.5-flash-native-audio", None, None),
    ("gemini-2.0-flash-live-001", "high", None),
])
def test_reasoning_effort_becomes_the_thinking_config_the_model_takes(model, effort, expected):
    session: dict = {"output_modalities": ["audio"]}
    if effort is not None:
        session["reasoning"] = {"effort": effort}
    assert setup_for(model, session)["generationConfig"].get("thinkingConfig") == expected


def test_functions_are_declared_blocking_where_the_model_defaults_to_non_blocking():
    decls = setup_for("gemini-3.8-live", {"tools": [TIME]})["tools"][0]["functionDeclarations"]
    assert [d.get("behavior") for d in decls] == ["BLOCKING"]
    for model in ("gemini-2.0-flash-live-001", "gemini-3.1-flash-live-preview", "gemini-live-2.5-flash-native-audio"):
        decls = setup_for(model, {"tools": [TIME]})["tools"][0]["functionDeclarations"]
        assert "behavior" not in decls[0], model  # BLOCKING is their default; 3.1 takes no behavior at all


def test_function_tools_are_refused_where_the_model_runs_calls_only_asynchronously_and_the_session_goes_on():
    s = Session("ga", "gemini-3.8-live-extended-thinking", "gemini")
    events = s.send({"type": "session.update", "event_id": "ev1",
                     "session": {"type": "realtime", "instructions": "be brief", "tools": [TIME]}})
    assert [e["type"] for e in events] == ["error"]
    error = events[0]["error"]
    assert (error["code"], error["param"], error["event_id"]) == ("invalid_value", "session.tools", "ev1")
    assert "NON_BLOCKING" in error["message"]
    # Nothing of the refused update applied; a later one without tools is.
    updated = s.send({"type": "session.update", "session": {"type": "realtime", "instructions": "be kind"}})
    assert updated[-1]["type"] == "session.updated" and updated[-1]["session"]["tools"] == []
    assert updated[-1]["session"]["instructions"] == "be kind"


def test_an_extended_thinking_model_still_working_after_turn_complete_holds_a_switch_until_it_is_idle():
    s = Session("ga", "gemini-3.8-live-extended-thinking", "gemini")
    s.send({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["audio"]}})
    s.send({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                                                          "content": [{"type": "input_text", "text": "hi"}]}})
    s.send({"type": "response.create"})
    s.gemini({"setupComplete": {}})
    s.gemini({"serverContent": {"outputTranscription": {"text": "Thinking."}}})
    s.gemini({"serverContent": {"turnComplete": True, "interactionStatus": "IN_PROGRESS"}})
    s.gemini({"sessionResumptionUpdate": {"newHandle": "h1", "resumable": True}})
    connects = []
    s.t.upstream_frame(b'{"goAway": {"timeLeft": "50s"}}')  # no switch yet: the model is still at work
    out = s.t.upstream_frame(b'{"serverContent": {"turnComplete": true, "interactionStatus": "IDLE"}}')
    connects.append(out.connect)
    assert connects[-1] is not None and connects[-1].resume, "the switch waits for IDLE, then happens"


def test_the_readme_carries_the_capability_table_as_the_code_has_it():
    assert markdown_table() in README.read_text(), "README's capability table differs from relay.models"
    assert len(rows()) >= 6


@pytest.mark.parametrize("model", ["gemini-3.8-live", "gemini-live-2.5-flash-native-audio"])
def test_a_text_client_of_an_audio_only_model_gets_text_from_the_transcript_and_no_audio(model):
    s = Session("ga", model, "gemini")
    s.send({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}})
    s.send({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                                                          "content": [{"type": "input_text", "text": "hi"}]}})
    events = s.send({"type": "response.create"})
    assert s.setup["setup"]["generationConfig"]["responseModalities"] == ["AUDIO"]
    s.gemini({"setupComplete": {}})
    pcm = "AAAAAAAAAAAAAAAA"
    for word in ("Hello ", "there."):
        events += s.gemini({"serverContent": {"modelTurn": {"parts": [
            {"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": pcm}}]}}})
        events += s.gemini({"serverContent": {"outputTranscription": {"text": word}}})
    events += s.gemini({"serverContent": {"turnComplete": True}})
    kinds = [e["type"] for e in events]
    assert not [k for k in kinds if "audio" in k], kinds
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == "Hello there."
    assert events[-1]["type"] == "response.done" and events[-1]["response"]["status"] == "completed"


def options_setup(model: str, options, session: dict | None = None) -> dict:
    from relay.ids import counting_ids
    from relay.translate import Translator
    from tests.schemas import validate_gemini

    t = Translator(counting_ids(), caps_for(model, "gemini"), dialect="ga", options=options)
    t.start()
    import orjson
    t.client_frame(orjson.dumps({"type": "session.update", "session": {"type": "realtime", **(session or {})}}))
    t.client_frame(orjson.dumps({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}}))
    out = t.client_frame(orjson.dumps({"type": "response.create"}))
    assert out.connect is not None
    validate_gemini({"setup": {**out.connect.setup["setup"], "model": "models/m"}})
    return out.connect.setup["setup"]


def test_the_operators_gemini_features_reach_the_setup_where_the_model_takes_them():
    from relay.models import GeminiOptions

    native = options_setup("gemini-live-2.5-flash-native-audio", GeminiOptions(
        thinking_budget=512, include_thoughts=True, affective_dialog=True, proactive_audio=True,
        media_resolution="low", language_code="de-DE"), {"output_modalities": ["audio"]})
    gen = native["generationConfig"]
    assert gen["thinkingConfig"] == {"thinkingBudget": 512, "includeThoughts": True}
    assert gen["enableAffectiveDialog"] is True and gen["mediaResolution"] == "MEDIA_RESOLUTION_LOW"
    assert gen["speechConfig"]["languageCode"] == "de-DE"
    assert native["proactivity"] == {"proactiveAudio": True}
    # A session's reasoning.effort wins over the configured budget.
    effort = options_setup("gemini-live-2.5-flash-native-audio", GeminiOptions(thinking_budget=512),
                           {"reasoning": {"effort": "minimal"}})
    assert effort["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 0}
    # 3.8: proactive audio is always on, so `true` sends nothing (false would be refused at start).
    live = options_setup("gemini-3.8-live", GeminiOptions(proactive_audio=True))
    assert "proactivity" not in live and "thinkingConfig" not in live["generationConfig"]
    level = options_setup("gemini-3.8-live-extended-thinking", GeminiOptions(thinking_level="high"))
    assert level["generationConfig"]["thinkingConfig"] == {"thinkingLevel": "HIGH"}


def test_google_search_in_session_tools_becomes_geminis_search_tool_beside_the_functions():
    setup = options_setup("gemini-live-2.5-flash-native-audio", None,
                          {"tools": [TIME, {"type": "google_search"}]})
    assert setup["tools"][0]["functionDeclarations"][0]["name"] == "get_time"
    assert setup["tools"][1] == {"googleSearch": {}}
