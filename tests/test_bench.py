"""The benchmark harness: the emulator's echo mode, the chunk framing, and a tiny end-to-end run.

The run is a functional smoke test (every chunk comes back unaltered, the report has its numbers);
timings are never asserted here, they are what the benchmark reports.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
from trio_websocket import open_websocket_url

from relay.__main__ import main as relay_main
from relay.bench.audio_client import CHUNK_MS, ChunkMaker, chunk_id, tone
from relay.emulator import Emulator, EmulatorOptions
from tests.test_emulator import TEXT_SETUP, VERTEX, VERTEX_MODEL, expect_close, recv, send, user_turn

ROOT = Path(__file__).resolve().parent.parent
MIME = "audio/pcm;rate=24000"


async def start_echo(nursery: trio.Nursery) -> tuple[Emulator, int]:
    emulator = Emulator(EmulatorOptions(echo_audio=True))
    port = await nursery.start(partial(emulator.serve, "127.0.0.1", 0))
    return emulator, port


def audio(data: str, mime: str = MIME) -> dict[str, Any]:
    return {"realtimeInput": {"audio": {"mimeType": mime, "data": data}}}


def echo_of(data: str, mime: str = MIME) -> dict[str, Any]:
    return {"serverContent": {"modelTurn": {"parts": [{"inlineData": {"mimeType": mime, "data": data}}]}}}


# -- the emulator's echo mode ------------------------------------------------------------------


@pytest.mark.parametrize("detection_disabled", [False, True])
async def test_echo_mode_returns_each_chunk_and_still_answers_text(
    nursery: trio.Nursery, detection_disabled: bool
) -> None:
    emulator, port = await start_echo(nursery)
    setup = {"setup": {
        "model": VERTEX_MODEL,
        "generationConfig": {"responseModalities": ["TEXT"]},
        "realtimeInputConfig": {"automaticActivityDetection": {"disabled": detection_disabled}},
    }}  # fmt: skip
    make = ChunkMaker()
    async with open_websocket_url(f"ws://127.0.0.1:{port}{VERTEX}") as ws:
        await send(ws, setup)
        assert await recv(ws) == {"setupComplete": {}}
        if detection_disabled:
            await send(ws, {"realtimeInput": {"activityStart": {}}})
        # Loud audio for well over the silence that would end a turn: with VAD on it would be answered.
        chunks = [make(7, seq) for seq in range(60)]
        for data in chunks:
            await send(ws, audio(data))
        for data in chunks:
            assert await recv(ws) == echo_of(data)  # same string, same order, nothing in between
        if detection_disabled:
            await send(ws, {"realtimeInput": {"activityEnd": {}}})  # ends no turn: echo mode never replies to audio
        other = base64.b64encode(b"\x01\x02" * 80).decode()
        await send(ws, audio(other, "audio/pcm"))  # the mimeType goes back as given
        assert await recv(ws) == echo_of(other, "audio/pcm")
        await send(ws, user_turn("hello there"))
        reply = []
        while True:
            message = await recv(ws)
            content = message["serverContent"]
            assert "interrupted" not in content and "inputTranscription" not in content
            reply += [part["text"] for part in content.get("modelTurn", {}).get("parts", [])]
            if content.get("turnComplete"):
                break
        assert "".join(reply) == "Echo: hello there"
    # A benchmark streams tens of thousands of chunks: echoed audio is not kept.
    assert not any(set(m.get("realtimeInput", {})) == {"audio"} for m in emulator.received)
    assert any("clientContent" in m for m in emulator.received)


async def test_echo_mode_still_rejects_bad_base64(nursery: trio.Nursery) -> None:
    _, port = await start_echo(nursery)
    setup = {"setup": {"model": VERTEX_MODEL, "generationConfig": {"responseModalities": ["AUDIO"]}}}
    async with open_websocket_url(f"ws://127.0.0.1:{port}{VERTEX}") as ws:
        await send(ws, setup)
        assert await recv(ws) == {"setupComplete": {}}
        await send(ws, audio("not base64!"))
        await expect_close(ws, 1007, "Invalid JSON payload received.")


async def test_without_echo_mode_audio_is_not_echoed(nursery: trio.Nursery) -> None:
    emulator = Emulator(EmulatorOptions())
    port = await nursery.start(partial(emulator.serve, "127.0.0.1", 0))
    async with open_websocket_url(f"ws://127.0.0.1:{port}{VERTEX}") as ws:
        await send(ws, TEXT_SETUP)
        assert await recv(ws) == {"setupComplete": {}}
        await send(ws, audio(ChunkMaker()(0, 0)))
        await send(ws, user_turn("hi"))
        first = await recv(ws)  # the text reply comes first: the chunk went to activity detection, not back
        assert first["serverContent"]["modelTurn"]["parts"][0]["text"].startswith("Echo")
    assert any(set(m.get("realtimeInput", {})) == {"audio"} for m in emulator.received)


# -- chunk framing -----------------------------------------------------------------------------


def test_chunks_are_real_time_pcm16_with_an_id_header() -> None:
    make = ChunkMaker()
    pcm = tone(CHUNK_MS)
    assert len(pcm) == 960  # 20 ms of 24 kHz 16-bit mono
    data = make(42, 123456)
    raw = base64.b64decode(data, validate=True)
    assert len(raw) == 960 and len(data) == 1280
    assert raw[8:] == pcm[8:]
    assert chunk_id(data) == (42, 123456)
    assert make(42, 123457) != data


# -- the command line --------------------------------------------------------------------------


def test_bench_is_a_relay_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        relay_main(["bench", "audio", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--sessions" in out and "--seconds" in out and "--out" in out


def test_audio_scenario_smoke(tmp_path: Path) -> None:
    """1 and 2 sessions for 1 s, through the relay and direct, in real child processes."""
    out = tmp_path / "results.md"
    proc = subprocess.run(
        [sys.executable, "-m", "relay", "bench", "audio", "--sessions", "1", "2", "--seconds", "1",
         "--grace", "2", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=90, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    markdown = out.read_text()
    assert proc.stdout == markdown
    for heading in ("# relay benchmark results", "## Audio streaming", "### Per-chunk round trip (ms)",
                    "### Load and resources", "**machine**", "**relay commit**", "**software**"):
        assert heading in markdown
    document = json.loads(out.with_suffix(".json").read_text())
    assert document["machine"]["packages"]["websockets"].startswith(("1", "2"))
    scenario = document["scenarios"]["audio"]
    phases = {(p["sessions"], p["path"]): p for p in scenario["phases"]}
    assert set(phases) == {(1, "direct"), (1, "relay"), (2, "direct"), (2, "relay")}
    for (n, path), p in phases.items():
        # Functional: at this load every chunk comes back, unaltered, to the session that sent it.
        assert p["sent"] == 50 * n, p
        assert p["echoed"] == p["sent"] and p["dropped"] == 0, p
        assert p["foreign"] == 0 and p["corrupted"] == 0 and p["error_count"] == 0, p
        assert all(isinstance(p["latency_ms"][q], float) for q in ("p50", "p99", "max")), p
        assert all(isinstance(c, float) for c in p["generator_cpu_percent"]), p
        assert isinstance(p["emulator_cpu_percent"], float), p
        if path == "relay":
            assert isinstance(p["relay_cpu_percent"], float) and isinstance(p["relay_cpu_us_per_chunk"], float)
            assert isinstance(p["relay_wakeups_per_chunk"], float)
            assert p["relay_rss_kib"]["start"] > 0 and p["relay_rss_kib"]["peak"] >= p["relay_rss_kib"]["start"]
            assert all(isinstance(p["added_ms"][q], float) for q in ("p50", "p99"))
    rows = [line for line in markdown.splitlines() if line.startswith(("| 1 |", "| 2 |"))]
    assert len(rows) == 2 + 4  # a latency row per N, a load row per N and path
