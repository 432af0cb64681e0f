"""The OpenAI Agents SDK's realtime agent (a strict client: it validates every server event and
retrieves items after transcripts) runs a tool-using voice turn through the relay."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from agents import function_tool
from agents.realtime import RealtimeAgent, RealtimeRunner

from tests.stack import MASTER_KEY, Stack


@pytest.fixture(scope="module")
def voice_stack(tmp_path_factory: pytest.TempPathFactory):
    # The emulator "hears" a request for the tool in every spoken turn.
    s = Stack(tmp_path_factory.mktemp("agents"), emulator_options={"audio_transcript": "get_time in UTC please"})
    s.start()
    yield s
    s.stop()


def test_realtime_agent_runs_a_tool_using_voice_turn(voice_stack):
    calls: list[str] = []

    @function_tool
    def get_time(zone: str) -> str:
        """The current time in a time zone."""
        calls.append(zone)
        return "12:00"

    agent = RealtimeAgent(name="clock", instructions="Tell the time.", tools=[get_time])
    runner = RealtimeRunner(starting_agent=agent, config={"model_settings": {
        "model_name": "gpt-realtime", "modalities": ["audio"],
        "input_audio_transcription": {"model": "whisper-1"},
        "turn_detection": {"type": "server_vad", "silence_duration_ms": 300},
    }})
    t = np.arange(24000 // 2) / 24000
    speech = (8000 * np.sin(2 * np.pi * 500 * t)).astype("<i2").tobytes() + bytes(24000)  # 0.5 s + 0.5 s

    async def main() -> tuple[list[str], list[str], list[str]]:
        session = await runner.run(model_config={"url": voice_stack.url(), "api_key": MASTER_KEY})
        seen: list[str] = []
        errors: list[str] = []
        transcripts: list[str] = []
        async with session:
            for i in range(0, len(speech), 960):
                await session.send_audio(speech[i:i + 960])
            responses = 0
            async for event in session:
                seen.append(event.type)
                if event.type == "error":
                    errors.append(str(event.error))
                if event.type == "raw_model_event" and event.data.type == "error":
                    errors.append(str(event.data))
                if event.type == "raw_model_event" and event.data.type == "transcript_delta":
                    transcripts.append(event.data.delta)
                if event.type == "raw_model_event" and event.data.type == "turn_ended":
                    responses += 1
                    if responses == 2:  # the tool call, then the reply after the tool output
                        break
        return seen, errors, transcripts

    seen, errors, transcripts = asyncio.run(asyncio.wait_for(main(), 60))
    assert errors == []
    assert calls == ["example"]  # the emulator's deterministic argument for a required string
    assert "tool_start" in seen and "tool_end" in seen
    assert "audio" in seen
    assert "".join(transcripts) == 'Result: get_time {"output":"12:00"}'
