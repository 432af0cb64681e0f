"""The relay as a library (relay.connect, relay.aio.connect, relay.serve): the server's sessions in-process, against
the emulator over its real socket; every event validated against the SDK's types."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trio
import yaml

import relay
from relay.config import default_config
from relay.emulator import Emulator, EmulatorOptions
from relay.events import openai as oa
from tests.schemas import validate_openai

HELLO = {"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                                                       "content": [{"type": "input_text", "text": "Hello!"}]}}
TEXT_ONLY = {"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}}


async def until(session: Any, kind: str, dialect: str = "ga") -> list[dict[str, Any]]:
    events = []
    with trio.fail_after(10):
        async for event in session:
            validate_openai(event, dialect)
            events.append(event)
            if event["type"] == kind:
                return events
    raise AssertionError(f"the session ended before {kind}: {[e['type'] for e in events]}")


@pytest.fixture
async def emulator(nursery: trio.Nursery) -> AsyncIterator[tuple[Emulator, relay.Config]]:
    emu = Emulator(EmulatorOptions(goaway_after_turns=1))
    port = await nursery.start(emu.serve, "127.0.0.1", 0)
    yield emu, default_config(f"ws://127.0.0.1:{port}", env={})


async def test_a_text_turn_on_the_embedded_emulator_in_both_dialects() -> None:
    async with relay.connect(model="vertex_gemini_live_text") as session:
        assert session.model == "vertex_gemini_live_text"
        await session.send(TEXT_ONLY)
        await session.send(HELLO)
        await session.send(oa.ResponseCreate())  # an event class works as well as a dict
        events = await until(session, "response.done")
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == "Echo: Hello!"
    async with relay.connect(dialect="beta") as session:
        await session.send(HELLO)
        await session.send('{"type": "response.create"}')  # and JSON text
        events = await until(session, "response.done", "beta")
    assert any(e["type"] == "response.audio_transcript.delta" for e in events)


async def test_audio_tools_and_a_session_that_outlives_its_gemini_connections(emulator) -> None:
    emu, config = emulator
    tone = (8000 * np.sin(2 * np.pi * 440 * np.arange(24 * 400) / 24000)).astype("<i2").tobytes()
    async with relay.connect(config) as session:
        await session.send({"type": "session.update", "session": {
            "type": "realtime", "audio": {"input": {"turn_detection": None}},
            "tools": [{"type": "function", "name": "get_time", "parameters": {"type": "object"}}]}})
        await session.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(tone).decode()})
        await session.send({"type": "input_audio_buffer.commit"})
        await session.send({"type": "response.create"})
        spoken = await until(session, "response.done")
        await session.send({**HELLO, "item": {**HELLO["item"], "content": [
            {"type": "input_text", "text": "what does get_time say?"}]}})
        await session.send({"type": "response.create"})
        call = [e for e in await until(session, "response.done") if e["type"] == "response.output_item.done"][-1]
        await session.send({"type": "conversation.item.create", "item": {
            "type": "function_call_output", "call_id": call["item"]["call_id"], "output": '{"time": "12:00"}'}})
        await session.send({"type": "response.create"})
        answered = await until(session, "response.done")
    assert any(e["type"] == "response.output_audio.delta" for e in spoken)
    assert "Echo: audio 400 ms" in json.dumps(spoken)
    assert call["item"]["type"] == "function_call" and call["item"]["name"] == "get_time"
    assert answered[-1]["response"]["status"] == "completed"
    assert not any(e["type"] == "error" for e in spoken + answered)
    assert emu.connections >= 2  # goAway after every turn: the next turn is on a resumed connection


async def test_cancelling_the_callers_scope_closes_the_gemini_connection(nursery: trio.Nursery) -> None:
    emu = Emulator(EmulatorOptions(chunk_delay=0.2))  # a reply slow enough to be cut
    config = default_config(f"ws://127.0.0.1:{await nursery.start(emu.serve, '127.0.0.1', 0)}", env={})
    with trio.move_on_after(5) as scope:
        async with relay.connect(config) as session:
            await session.send(TEXT_ONLY)
            await session.send(HELLO)
            await session.send({"type": "response.create"})
            await until(session, "response.output_text.delta")
            assert emu.live == 1
            scope.cancel()
            await trio.sleep_forever()
    assert scope.cancelled_caught
    with trio.fail_after(5):
        while emu.live:
            await trio.sleep(0.01)


async def test_an_error_in_the_callers_block_comes_out_as_it_is_and_the_session_ends(emulator) -> None:
    emu, config = emulator
    with pytest.raises(KeyError):
        async with relay.connect(config) as session:
            await session.send(HELLO)
            await session.send({"type": "response.create"})
            await until(session, "response.done")
            raise KeyError("mine")
    with trio.fail_after(5):
        while emu.live:
            await trio.sleep(0.01)


async def test_configuration_errors_are_precise(tmp_path: Path) -> None:
    with pytest.raises(relay.SessionRefused) as refused:
        async with relay.connect(model="gpt-4o-realtime-preview"):
            pass
    assert refused.value.status == 404 and refused.value.code == "model_not_found"
    with pytest.raises(relay.SessionRefused) as wrong_kind:
        async with relay.connect(model="gemini_translate"):
            pass
    assert wrong_kind.value.code == "unsupported_model"
    bad = tmp_path / "config.yaml"
    bad.write_text(yaml.safe_dump({"model_list": [{"model_name": "m", "litellm_params": {"model": "openai/gpt-4o"}}]}))
    with pytest.raises(relay.ConfigError, match=r"config\.yaml"):
        async with relay.connect(bad):
            pass
    with pytest.raises(relay.ConfigError):
        relay.load_config(tmp_path / "missing.yaml")
    with pytest.raises(ValueError, match="dialect"):
        async with relay.connect(dialect="v2"):  # type: ignore[arg-type]
            pass
    async with relay.connect() as session:
        with pytest.raises(TypeError):
            await session.send(42)


async def test_a_config_file_and_the_other_session_kinds(emulator, tmp_path: Path) -> None:
    _emu, config = emulator
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"model_list": [
        {"model_name": "studio", "litellm_params": {"model": "gemini/gemini-3.5-live-translate-preview",
                                                    "api_key": "k", "api_base": config.models[0].api_base}}]}))
    async with relay.connect(path, kind="translation") as session:
        assert session.model == "studio"
        created = await session.recv()
        assert created["type"] == "session.created" and created["session"]["type"] == "translation"
    async with relay.connect(config, kind="transcription") as session:
        assert (await session.recv())["session"]["type"] == "transcription"
        assert session.model == "gemini_transcribe"


async def test_the_session_ends_when_the_relay_closes_it(emulator) -> None:
    _emu, config = emulator
    config = relay.Config(models=config.models, max_session_seconds=0.5)
    async with relay.connect(config) as session:
        events = [event async for event in session]
        with pytest.raises(relay.SessionClosed):
            await session.send(HELLO)
    assert events[-1]["type"] == "error" and events[-1]["error"]["code"] == "session_expired"
    assert session.close_info == (1000, "session expired")


async def test_serve_runs_the_server_as_the_command_does(nursery: trio.Nursery) -> None:
    from websockets.sync.client import connect

    port = await nursery.start(relay.serve, None, "127.0.0.1", 0)

    def talk() -> list[str]:
        with connect(f"ws://127.0.0.1:{port}/v1/realtime?model=vertex_gemini_live_text") as ws:
            ws.send(json.dumps(HELLO))
            ws.send(json.dumps({"type": "response.create"}))
            types = []
            while not types or types[-1] != "response.done":
                types.append(json.loads(ws.recv(timeout=10))["type"])
            return types

    assert "response.created" in await trio.to_thread.run_sync(talk)
    nursery.cancel_scope.cancel()


# ---------------------------------------------------------------- asyncio


def test_asyncio_programs_use_the_same_sessions() -> None:
    async def main() -> tuple[list[dict[str, Any]], Any]:
        async with relay.aio.connect(dialect="beta") as session:
            await session.send(HELLO)
            await session.send({"type": "response.create"})
            events = []
            async for event in session:
                validate_openai(event, "beta")
                events.append(event)
                if event["type"] == "response.done":
                    break
        with pytest.raises(relay.SessionRefused):
            async with relay.aio.connect(model="nope"):
                pass
        with pytest.raises(KeyError):
            async with relay.aio.connect():
                raise KeyError("mine")
        async with relay.aio.connect() as closing:
            assert (await closing.recv())["type"] == "session.created"
            await closing.close()  # as RelaySession.close: the session ends, iteration stops
            assert [event async for event in closing] == []
        with pytest.raises(relay.SessionClosed):
            await session.recv()  # after its block, as a trio session
        return events, session

    events, session = asyncio.run(asyncio.wait_for(main(), 30))
    assert "".join(e["delta"] for e in events if e["type"] == "response.audio_transcript.delta") == "Echo: Hello!"
    assert session.close_info == (1000, "")
