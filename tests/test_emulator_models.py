"""Tests of the emulator's per-model behaviour (relay/emulator/models.py): what each Gemini Live model
refuses at setup, NON_BLOCKING function calls, interactionStatus, thought parts, image input, and the
fields only one backend has.

Raw trio_websocket clients over real sockets; every server message is validated as a google.genai
LiveServerMessage by ``recv`` from test_emulator, and one test drives the real SDK.
"""

from __future__ import annotations

import base64
import ssl
from typing import Any

import pytest
import trio
from google import genai
from google.genai import types
from trio_websocket import WebSocketConnection, open_websocket_url

from relay.emulator.models import (
    AUDIO_ONLY,
    EXTENDED_THINKING,
    LEGACY,
    NATIVE_AUDIO,
    THREE_EIGHT,
    THREE_PREVIEW,
    TRANSCRIPTION,
    TRANSLATION,
    ModelRules,
    interaction_status,
    rules_for,
)
from tests import test_emulator
from tests.test_emulator import (
    STUDIO,
    VERTEX,
    Starter,
    expect_close,
    recv,
    recv_turn,
    reply_text,
    run_sdk,
    sdk_http_options,
    sdk_turn,
    send,
    session,
    transcript,
    user_turn,
    validate,
)

# test_emulator's fixtures: an emulator on an ephemeral port, and TLS contexts for the SDK.
start = test_emulator.start
tls = test_emulator.tls

INVALID = "Request contains an invalid argument."
BAD_DATA = "Invalid JSON payload received."  # what a bytes field that is not base64 gets
EXTENDED = "gemini-3.8-live-extended-thinking"
NATIVE = "gemini-live-2.5-flash-native-audio"
TOOLS = [{"functionDeclarations": [{"name": "get_time", "parameters": {"type": "OBJECT"}}]}]
NOON = {"name": "get_time", "response": {"output": "noon"}}
RESULT = 'Result: get_time {"output":"noon"}'
JPEG = b"\xff\xd8\xff\xe0" + bytes(96)


def tools(behavior: str | None) -> list[dict[str, Any]]:
    declaration = {**TOOLS[0]["functionDeclarations"][0], **({"behavior": behavior} if behavior else {})}
    return [{"functionDeclarations": [declaration]}]


def setup_of(
    model: str, path: str = STUDIO, modality: str = "AUDIO", generation: dict[str, Any] | None = None, **fields: Any
) -> dict[str, Any]:
    """A setup for ``model`` spelled the way ``path``'s backend names models; AUDIO with output transcription."""
    name = f"projects/p/locations/us-central1/publishers/google/models/{model}" if path == VERTEX else f"models/{model}"
    body: dict[str, Any] = {"model": name, "generationConfig": {"responseModalities": [modality], **(generation or {})}}
    if modality == "AUDIO":
        body["outputAudioTranscription"] = {}
    return {"setup": {**body, **fields}}


def required_generation(model: str) -> dict[str, Any]:
    """What a model requires in generationConfig to be set up at all."""
    return {"thinkingConfig": {"thinkingLevel": "LOW"}} if model == EXTENDED else {}


def answer(messages: list[dict[str, Any]]) -> str:
    """What a reply says, in either modality."""
    return reply_text(messages) + transcript(messages)


def thoughts(messages: list[dict[str, Any]]) -> list[str]:
    return [
        part["text"]
        for m in messages
        for part in m.get("serverContent", {}).get("modelTurn", {}).get("parts", [])
        if part.get("thought")
    ]


def completion(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The serverContent carrying turnComplete."""
    return next(m["serverContent"] for m in messages if m.get("serverContent", {}).get("turnComplete"))


async def refused(port: int, setup: dict[str, Any], path: str = STUDIO, reason: str = INVALID) -> None:
    async with open_websocket_url(f"ws://127.0.0.1:{port}{path}") as ws:
        await send(ws, setup)
        await expect_close(ws, 1007, reason)


async def accepted(port: int, setup: dict[str, Any], path: str = STUDIO) -> list[dict[str, Any]]:
    """Set up, take one turn; its messages."""
    async with session(port, path, setup) as ws:
        await send(ws, user_turn("hello"))
        return await recv_turn(ws, path == VERTEX)


async def quiet(ws: WebSocketConnection, seconds: float = 0.3) -> None:
    """Nothing arrives for ``seconds``."""
    with trio.move_on_after(seconds) as waited:
        message = await ws.get_message()
    assert waited.cancelled_caught, message


# -- the table ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "row"),
    [
        ("projects/p/locations/l/publishers/google/models/gemini-3.8-live-extended-thinking", EXTENDED_THINKING),
        ("models/gemini-3.8-live", THREE_EIGHT),
        ("gemini-3.8-live-preview-2026", THREE_EIGHT),
        ("models/gemini-2.5-flash-native-audio-preview-12-2025", NATIVE_AUDIO),
        ("projects/p/locations/l/publishers/google/models/gemini-live-2.5-flash-native-audio", NATIVE_AUDIO),
        ("models/gemini-3.1-flash-live-preview", THREE_PREVIEW),
        ("gemini-3.5-live-translate-preview", TRANSLATION),
        ("projects/p/locations/l/publishers/google/models/gemini-3.5-live-translate-preview", TRANSLATION),
        ("models/gemini-3.5-transcribe-live", TRANSCRIPTION),
        ("projects/p/locations/l/publishers/google/models/gemini-3.5-transcribe-live-preview", TRANSCRIPTION),
        ("models/gemini-3.5-live-preview", THREE_PREVIEW),
        ("gemini-live-2.5-flash", LEGACY),
        ("models/gemini-live-2.5-flash-preview", LEGACY),
        ("models/gemini-2.0-flash-live-preview-04-09", LEGACY),
        ("models/whatever", LEGACY),
    ],
)
def test_rows_match_the_model_id(model: str, row: ModelRules) -> None:
    assert rules_for(model) is row


def test_interaction_status_values() -> None:
    # REQUIRES_ACTION needs a call the model waits on, which extended thinking refuses to declare
    # (see test_extended_thinking_refusals), so only the function shows it.
    assert interaction_status(waits_on_call=True, calls_running=True) == "REQUIRES_ACTION"
    assert interaction_status(waits_on_call=False, calls_running=True) == "IN_PROGRESS"
    assert interaction_status(waits_on_call=False, calls_running=False) == "IDLE"


# -- response modality -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "path", "reason"),
    [
        (NATIVE, VERTEX, INVALID),
        ("gemini-2.5-flash-native-audio-preview-12-2025", STUDIO, INVALID),
        ("gemini-3.8-live", STUDIO, AUDIO_ONLY[1]),
        ("gemini-3.8-live", VERTEX, AUDIO_ONLY[1]),
        (EXTENDED, STUDIO, AUDIO_ONLY[1]),
    ],
)
async def test_audio_only_models_refuse_text(start: Starter, model: str, path: str, reason: str) -> None:
    _, port = await start()
    await refused(port, setup_of(model, path, "TEXT"), path, reason)
    assert len(AUDIO_ONLY[1].encode()) <= 123  # it fits a close frame
    audio = setup_of(model, path, generation=required_generation(model))
    assert answer(await accepted(port, audio, path)) == "Echo: hello"


# -- 3.8 Live ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"generationConfig": {"responseModalities": ["AUDIO"], "thinkingConfig": {}}},
        {"generationConfig": {"responseModalities": ["AUDIO"], "thinkingConfig": {"thinkingLevel": "LOW"}}},
        {"generationConfig": {"responseModalities": ["AUDIO"], "enableAffectiveDialog": False}},
        {"generationConfig": {"responseModalities": ["AUDIO"], "enableAffectiveDialog": True}},
        {"proactivity": {"proactiveAudio": False}},
    ],
)
async def test_three_eight_refusals(start: Starter, fields: dict[str, Any]) -> None:
    _, port = await start()
    await refused(port, setup_of("gemini-3.8-live", **fields))


async def test_three_eight_takes_proactive_audio_on_and_blocking_calls(start: Starter) -> None:
    _, port = await start()
    setup = setup_of("gemini-3.8-live", proactivity={"proactiveAudio": True}, tools=tools("BLOCKING"))
    async with session(port, STUDIO, setup) as ws:
        await send(ws, user_turn("get_time please"))
        call = await recv(ws, vertex=False)
        assert call["toolCall"]["functionCalls"][0]["name"] == "get_time"
        await quiet(ws)  # BLOCKING: the model waits for the result and says nothing meanwhile
        await send(ws, {"toolResponse": {"functionResponses": [NOON]}})
        assert transcript(await recv_turn(ws, vertex=False)) == RESULT


@pytest.mark.parametrize("behavior", [None, "NON_BLOCKING"])
@pytest.mark.parametrize("path", [STUDIO, VERTEX])
async def test_three_eight_calls_are_non_blocking_and_it_talks_on(
    start: Starter, behavior: str | None, path: str
) -> None:
    _, port = await start()
    vertex = path == VERTEX
    async with session(port, path, setup_of("gemini-3.8-live", path, tools=tools(behavior))) as ws:
        await send(ws, user_turn("get_time please"))
        talk = await recv_turn(ws, vertex)
        assert talk[0]["toolCall"]["functionCalls"][0]["name"] == "get_time"
        assert transcript(talk) == "Let me check that."
        parts = [p for m in talk for p in m.get("serverContent", {}).get("modelTurn", {}).get("parts", [])]
        assert any("inlineData" in p for p in parts)
        assert "interactionStatus" not in completion(talk)  # 3.8's idle signal is turnComplete
        await send(ws, {"toolResponse": {"functionResponses": [NOON]}})
        result = await recv_turn(ws, vertex)
    assert transcript(result) == RESULT
    assert "toolCall" not in result[0]


# -- 3.8 Live extended thinking ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("generation", "fields"),
    [
        ({}, {}),
        ({"thinkingConfig": {}}, {}),
        ({"thinkingConfig": {"includeThoughts": True}}, {}),
        ({"thinkingConfig": {"thinkingLevel": "MINIMAL"}}, {}),
        ({"thinkingConfig": {"thinkingLevel": "XHIGH"}}, {}),
        ({"thinkingConfig": {"thinkingBudget": 1024}}, {}),
        ({"thinkingConfig": {"thinkingLevel": "LOW", "thinkingBudget": 1024}}, {}),
        (required_generation(EXTENDED), {"tools": tools("BLOCKING")}),
        ({**required_generation(EXTENDED), "enableAffectiveDialog": True}, {}),
        (required_generation(EXTENDED), {"proactivity": {"proactiveAudio": False}}),
    ],
)
async def test_extended_thinking_refusals(start: Starter, generation: dict[str, Any], fields: dict[str, Any]) -> None:
    _, port = await start()
    await refused(port, setup_of(EXTENDED, generation=generation, **fields))


@pytest.mark.parametrize("level", ["LOW", "medium", "High"])
async def test_extended_thinking_takes_low_medium_high(start: Starter, level: str) -> None:
    _, port = await start()
    setup = setup_of(EXTENDED, generation={"thinkingConfig": {"thinkingLevel": level}})
    messages = await accepted(port, setup)
    assert answer(messages) == "Echo: hello"
    assert completion(messages)["interactionStatus"] == "IDLE"


async def test_extended_thinking_context_update_refuses_blocking(start: Starter) -> None:
    _, port = await start()
    async with session(port, STUDIO, setup_of(EXTENDED, generation=required_generation(EXTENDED))) as ws:
        await send(ws, {"contextUpdate": {"tools": tools("BLOCKING")}})
        await expect_close(ws, 1007, INVALID)


async def test_extended_thinking_interaction_status(start: Starter) -> None:
    _, port = await start()
    setup = setup_of(EXTENDED, generation=required_generation(EXTENDED), tools=TOOLS, sessionResumption={})
    async with session(port, STUDIO, setup) as ws:
        assert (await recv(ws, vertex=False))["sessionResumptionUpdate"]["resumable"]
        await send(ws, user_turn("get_time please"))
        talk = await recv_turn(ws, vertex=False)
        # A NON_BLOCKING call still runs: the turn is complete, the model is not idle.
        assert completion(talk)["interactionStatus"] == "IN_PROGRESS"
        assert transcript(talk) == "Let me check that."
        # It thinks, calls, says it cannot be resumed now, and talks on.
        assert thoughts(talk[:1]) == ["Thinking about 'get_time please'."]
        assert "toolCall" in talk[1]
        assert talk[2] == {"sessionResumptionUpdate": {"resumable": False}}
        await quiet(ws, 0.1)  # no handle while the call runs
        await send(ws, {"toolResponse": {"functionResponses": [NOON]}})
        result = await recv_turn(ws, vertex=False)
        assert completion(result)["interactionStatus"] == "IDLE"
        assert transcript(result) == RESULT
        assert (await recv(ws, vertex=False))["sessionResumptionUpdate"]["resumable"]
    # What the SDK makes of it.
    statuses = [
        content.interaction_status
        for content in (validate(m, vertex=False).server_content for m in talk + result)
        if content is not None and content.turn_complete
    ]
    assert statuses == [types.InteractionStatus.IN_PROGRESS, types.InteractionStatus.IDLE]


async def test_sdk_reads_extended_thinking(start: Starter, tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    _, port = await start(ssl_context=tls[0], api_key="k")
    client = genai.Client(api_key="k", http_options=sdk_http_options(port, tls[1]))
    config = {
        "response_modalities": ["AUDIO"],
        "output_audio_transcription": {},
        "thinking_config": {"thinking_level": "HIGH"},
    }
    messages = await run_sdk(lambda: sdk_turn(client, EXTENDED, config, "one two"))
    first = messages[0].server_content.model_turn.parts[0]
    assert first.thought is True and first.text == "Thinking about 'one two'."
    last = messages[-1]
    assert last.server_content.turn_complete
    assert last.server_content.interaction_status == types.InteractionStatus.IDLE
    assert last.usage_metadata.thoughts_token_count == 4
    pieces = [m.server_content.output_transcription for m in messages if m.server_content.output_transcription]
    assert "".join(piece.text for piece in pieces) == "Echo: one two"


# -- 3.1 Flash Live and other 3.x previews -----------------------------------------------------

PREVIEW = "gemini-3.1-flash-live-preview"


async def test_preview_refuses_turns_without_role(start: Starter) -> None:
    _, port = await start()
    async with session(port, STUDIO, setup_of(PREVIEW, modality="TEXT")) as ws:
        await send(ws, user_turn("with a role"))
        assert reply_text(await recv_turn(ws, vertex=False)) == "Echo: with a role"
        await send(ws, {"clientContent": {"turns": [{"parts": [{"text": "no role"}]}], "turnComplete": True}})
        await expect_close(ws, 1007, INVALID)


@pytest.mark.parametrize(
    ("generation", "fields"),
    [
        ({"thinkingConfig": {"thinkingBudget": 0}}, {}),
        ({"thinkingConfig": {"thinkingLevel": "XHIGH"}}, {}),
        ({}, {"tools": tools("NON_BLOCKING")}),
        ({"enableAffectiveDialog": False}, {}),
        ({}, {"proactivity": {"proactiveAudio": True}}),
        ({}, {"proactivity": {"proactiveAudio": False}}),
    ],
)
async def test_preview_refusals(start: Starter, generation: dict[str, Any], fields: dict[str, Any]) -> None:
    _, port = await start()
    await refused(port, setup_of(PREVIEW, modality="TEXT", generation=generation, **fields))


async def test_preview_takes_text_thinking_levels_and_blocking_calls(start: Starter) -> None:
    _, port = await start()
    generation = {"thinkingConfig": {"thinkingLevel": "minimal"}}
    setup = setup_of("gemini-3.5-live-preview", modality="TEXT", generation=generation, tools=tools("BLOCKING"))
    async with session(port, STUDIO, setup) as ws:
        await send(ws, user_turn("get_time please"))
        assert "toolCall" in await recv(ws, vertex=False)
        await quiet(ws)
        await send(ws, {"toolResponse": {"functionResponses": [NOON]}})
        assert reply_text(await recv_turn(ws, vertex=False)) == RESULT


# -- 2.5 native audio --------------------------------------------------------------------------


async def test_native_audio_refuses_thinking_level(start: Starter) -> None:
    _, port = await start()
    await refused(port, setup_of(NATIVE, VERTEX, generation={"thinkingConfig": {"thinkingLevel": "LOW"}}), VERTEX)


async def test_native_audio_takes_budget_affective_dialog_and_proactive_audio(start: Starter) -> None:
    _, port = await start()
    generation = {"thinkingConfig": {"thinkingBudget": 0}, "enableAffectiveDialog": True}
    setup = setup_of(NATIVE, VERTEX, generation=generation, proactivity={"proactiveAudio": True})
    messages = await accepted(port, setup, VERTEX)
    assert transcript(messages) == "Echo: hello"
    assert thoughts(messages) == []  # a budget of 0 is no thinking


@pytest.mark.parametrize(("behavior", "talks"), [(None, False), ("BLOCKING", False), ("NON_BLOCKING", True)])
async def test_native_audio_runs_the_declared_behavior(start: Starter, behavior: str | None, talks: bool) -> None:
    _, port = await start()
    async with session(port, VERTEX, setup_of(NATIVE, VERTEX, tools=tools(behavior))) as ws:
        await send(ws, user_turn("get_time please"))
        assert "toolCall" in await recv(ws)
        if talks:
            assert transcript(await recv_turn(ws)) == "Let me check that."
        else:
            await quiet(ws)
        await send(ws, {"toolResponse": {"functionResponses": [NOON]}})
        assert transcript(await recv_turn(ws)) == RESULT


# -- everything else: as before ----------------------------------------------------------------


@pytest.mark.parametrize("model", ["gemini-live-2.5-flash", "gemini-2.0-flash-live-001", "some-future-model"])
async def test_other_models_accept_everything_and_block(start: Starter, model: str) -> None:
    _, port = await start()
    generation = {"thinkingConfig": {"thinkingLevel": "HIGH", "thinkingBudget": 99}, "enableAffectiveDialog": True}
    fields = {"proactivity": {"proactiveAudio": False}, "tools": tools("NON_BLOCKING")}
    setup = setup_of(model, VERTEX, "TEXT", generation, **fields)
    async with session(port, VERTEX, setup) as ws:
        await send(ws, {"clientContent": {"turns": [{"parts": [{"text": "hi"}]}], "turnComplete": True}})
        messages = await recv_turn(ws)
        assert reply_text(messages) == "Echo: hi"
        assert thoughts(messages) == [] and "thoughtsTokenCount" not in messages[-1]["usageMetadata"]
        await send(ws, user_turn("get_time please"))
        assert "toolCall" in await recv(ws)
        await quiet(ws)  # NON_BLOCKING is declared but the model still waits
        await send(ws, {"toolResponse": {"functionResponses": [{**NOON, "scheduling": "SILENT"}]}})
        assert reply_text(await recv_turn(ws)) == RESULT  # scheduling means nothing to it


# -- scheduling --------------------------------------------------------------------------------


@pytest.mark.parametrize("scheduling", ["WHEN_IDLE", None])
async def test_scheduling_when_idle_answers_after_the_talk(start: Starter, scheduling: str | None) -> None:
    _, port = await start(chunk_delay=0.3)
    async with session(port, STUDIO, setup_of("gemini-3.8-live", tools=TOOLS)) as ws:
        await send(ws, user_turn("get_time please"))
        assert "toolCall" in await recv(ws, vertex=False)
        # The model is still saying "Let me check that." when the result comes: it finishes first.
        response = {**NOON, **({"scheduling": scheduling} if scheduling else {})}
        await send(ws, {"toolResponse": {"functionResponses": [response]}})
        talk = await recv_turn(ws, vertex=False)
        result = await recv_turn(ws, vertex=False)
    assert transcript(talk) == "Let me check that."
    assert transcript(result) == RESULT
    assert {"serverContent": {"interrupted": True}} not in talk + result


async def test_scheduling_interrupt_cuts_the_talk(start: Starter) -> None:
    _, port = await start(chunk_delay=0.3)
    async with session(port, STUDIO, setup_of("gemini-3.8-live", tools=TOOLS)) as ws:
        await send(ws, user_turn("get_time please"))
        assert "toolCall" in await recv(ws, vertex=False)
        await send(ws, {"toolResponse": {"functionResponses": [{**NOON, "scheduling": "INTERRUPT"}]}})
        messages = await recv_turn(ws, vertex=False)
    cut = messages.index({"serverContent": {"interrupted": True}})
    said = transcript(messages[:cut])
    assert said != "Let me check that." and "Let me check that.".startswith(said)
    assert not any(m["serverContent"].get("turnComplete") for m in messages[:cut])
    assert transcript(messages[cut:]) == RESULT


async def test_scheduling_silent_adds_no_turn(start: Starter) -> None:
    emulator, port = await start()
    async with session(port, STUDIO, setup_of("gemini-3.8-live", tools=TOOLS)) as ws:
        await send(ws, user_turn("get_time please"))
        assert transcript(await recv_turn(ws, vertex=False)) == "Let me check that."
        await send(ws, {"toolResponse": {"functionResponses": [{**NOON, "scheduling": "SILENT"}]}})
        await quiet(ws)
        await send(ws, user_turn("next"))
        assert transcript(await recv_turn(ws, vertex=False)) == "Echo: next"
    assert any("functionResponse" in p for c in emulator.sessions_history("emu-1") for p in c["parts"])


async def test_scheduling_unknown_value_is_refused(start: Starter) -> None:
    _, port = await start()
    async with session(port, STUDIO, setup_of("gemini-3.8-live", tools=TOOLS)) as ws:
        await send(ws, user_turn("get_time please"))
        await recv_turn(ws, vertex=False)
        await send(ws, {"toolResponse": {"functionResponses": [{**NOON, "scheduling": "SOON"}]}})
        await expect_close(ws, 1007, INVALID)


# -- thinking ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "modality", "thinking", "thinks"),
    [
        (NATIVE, "AUDIO", {"thinkingBudget": 512}, True),
        (NATIVE, "AUDIO", {"thinkingBudget": 0, "includeThoughts": True}, True),
        (NATIVE, "AUDIO", {"thinkingBudget": -1}, False),
        (PREVIEW, "TEXT", {"thinkingLevel": "HIGH"}, True),
        (PREVIEW, "TEXT", {"thinkingLevel": "MINIMAL"}, False),
        (EXTENDED, "AUDIO", {"thinkingLevel": "LOW"}, True),
    ],
)
async def test_thinking_setups_start_replies_with_a_thought(
    start: Starter, model: str, modality: str, thinking: dict[str, Any], thinks: bool
) -> None:
    _, port = await start()
    messages = await accepted(port, setup_of(model, modality=modality, generation={"thinkingConfig": thinking}))
    assert answer(messages) == "Echo: hello"
    usage = messages[-1]["usageMetadata"]
    if not thinks:
        assert thoughts(messages) == [] and "thoughtsTokenCount" not in usage
        return
    assert messages[0]["serverContent"]["modelTurn"]["parts"] == [{"text": "Thinking about 'hello'.", "thought": True}]
    assert thoughts(messages) == ["Thinking about 'hello'."]
    assert usage["thoughtsTokenCount"] == 3
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["responseTokenCount"] + 3
    assert validate(messages[-1], vertex=False).usage_metadata.thoughts_token_count == 3


async def test_thinking_before_a_tool_call_and_its_result(start: Starter) -> None:
    _, port = await start()
    setup = setup_of(NATIVE, generation={"thinkingConfig": {"thinkingBudget": 100}}, tools=TOOLS)
    async with session(port, STUDIO, setup) as ws:
        await send(ws, user_turn("get_time please"))
        assert thoughts([await recv(ws, vertex=False)]) == ["Thinking about 'get_time please'."]
        assert "toolCall" in await recv(ws, vertex=False)
        await send(ws, {"toolResponse": {"functionResponses": [NOON]}})
        result = await recv_turn(ws, vertex=False)
    assert thoughts(result[:1]) == ["Thinking about the function results."]
    assert transcript(result) == RESULT


# -- images ------------------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize("path", [VERTEX, STUDIO])
async def test_video_frame_is_acknowledged_with_image_tokens(start: Starter, path: str) -> None:
    emulator, port = await start()
    vertex = path == VERTEX
    async with session(port, path, setup_of("gemini-live-2.5-flash", path, "TEXT")) as ws:
        await send(ws, {"realtimeInput": {"video": {"mimeType": "image/jpeg", "data": b64(JPEG)}}})
        await send(ws, user_turn("what is this"))
        first = await recv_turn(ws, vertex)
        await send(ws, user_turn("and now"))
        second = await recv_turn(ws, vertex)
    assert reply_text(first) == "Echo: what is this [image image/jpeg 100 bytes]"
    assert reply_text(second) == "Echo: and now"  # acknowledged once; the image stays in the prompt
    for messages in (first, second):
        usage = validate(messages[-1], vertex).usage_metadata
        assert usage.prompt_tokens_details is not None
        details = {d.modality: d.token_count for d in usage.prompt_tokens_details}
        assert details[types.MediaModality.IMAGE] == 258
        assert usage.prompt_token_count == 258 + details[types.MediaModality.TEXT]
    image_turns = [c for c in emulator.sessions_history("emu-1") if "inlineData" in c["parts"][0]]
    assert image_turns == [{"role": "user", "parts": [{"inlineData": {"mimeType": "image/jpeg", "data": b64(JPEG)}}]}]


async def test_inline_images_in_client_content(start: Starter) -> None:
    _, port = await start()
    parts = [
        {"inlineData": {"mimeType": "image/png", "data": b64(bytes(12345))}},
        {"inlineData": {"mimeType": "image/webp", "data": b64(bytes(7))}},
        {"text": "compare"},
    ]
    async with session(port, STUDIO, setup_of(EXTENDED, generation=required_generation(EXTENDED))) as ws:
        await send(ws, {"clientContent": {"turns": [{"role": "user", "parts": parts}], "turnComplete": True}})
        messages = await recv_turn(ws, vertex=False)
    assert transcript(messages) == "Echo: compare [image image/png 12345 bytes] [image image/webp 7 bytes]"
    assert {"modality": "IMAGE", "tokenCount": 516} in messages[-1]["usageMetadata"]["promptTokensDetails"]


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ({"realtimeInput": {"video": {"mimeType": "image/gif", "data": b64(JPEG)}}}, INVALID),
        ({"realtimeInput": {"video": {"mimeType": "video/mp4", "data": b64(JPEG)}}}, INVALID),
        ({"realtimeInput": {"video": {"mimeType": "image/jpeg", "data": "not base64!"}}}, BAD_DATA),
        ({"clientContent": {"turns": [{"role": "user", "parts": [{"inlineData": {"mimeType": "image/bmp",
                                                                                 "data": b64(JPEG)}}]}]}}, INVALID),
        ({"clientContent": {"turns": [{"role": "user", "parts": [{"inlineData": {"mimeType": "image/png",
                                                                                 "data": "%%%"}}]}]}}, BAD_DATA),
    ],
)  # fmt: skip
async def test_bad_images_are_refused(start: Starter, message: dict[str, Any], reason: str) -> None:
    _, port = await start()
    async with session(port, VERTEX, setup_of("gemini-2.0-flash-live-001", VERTEX, "TEXT")) as ws:
        await send(ws, message)
        await expect_close(ws, 1007, reason)


# -- fields only one backend has ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("refused_on", "fields"),
    [
        (VERTEX, {"labels": {"safety_identifier": "u1"}}),
        (STUDIO, {"explicitVadSignal": True}),
        (STUDIO, {"realtimeInputConfig": {"explicitVadSignal": True}}),
        (STUDIO, {"sessionResumption": {"transparent": True}}),
    ],
)
async def test_backend_only_setup_fields(start: Starter, refused_on: str, fields: dict[str, Any]) -> None:
    _, port = await start()
    other = STUDIO if refused_on == VERTEX else VERTEX
    await refused(port, setup_of("gemini-live-2.5-flash", refused_on, "TEXT", **fields), refused_on)
    assert reply_text(await accepted(port, setup_of("gemini-live-2.5-flash", other, "TEXT", **fields), other))


@pytest.mark.parametrize(
    ("refused_on", "message"),
    [
        (VERTEX, {"realtimeInput": {"audioStreamEnd": True}}),
        (VERTEX, {"toolResponse": {"functionResponses": [{**NOON, "willContinue": True}]}}),
    ],
)
async def test_backend_only_messages(start: Starter, refused_on: str, message: dict[str, Any]) -> None:
    _, port = await start()
    for path in (VERTEX, STUDIO):
        async with session(port, path, setup_of("gemini-live-2.5-flash", path, "TEXT", tools=TOOLS)) as ws:
            await send(ws, message)
            if path == refused_on:
                await expect_close(ws, 1007, INVALID)
                continue
            await send(ws, user_turn("still here"))
            assert reply_text(await recv_turn(ws, path == VERTEX)) == "Echo: still here"
