"""The README's Python examples, run verbatim (but for the port) against `python -m relay serve`."""

from __future__ import annotations

import re
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np

from tests.test_cli import ROOT, relay_process

BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def run_example(code: str, port: int, tmp_path: Path, *args: str) -> str:
    script = tmp_path / "example.py"
    script.write_text(code.replace("127.0.0.1:4000", f"127.0.0.1:{port}"))
    out = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=60,
                         cwd=tmp_path, env={"RELAY_URL": f"http://127.0.0.1:{port}/v1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_readme_has_the_examples_we_run():
    assert len(BLOCKS) == 9


def test_readme_sdk_examples_print_the_reply(tmp_path):
    with relay_process() as (_, port, _banner):
        assert run_example(BLOCKS[0], port, tmp_path).strip() == "Echo: Hello!"
        assert run_example(BLOCKS[1], port, tmp_path).strip() == "Echo: Hello!"


def test_readme_wav_example_saves_the_spoken_reply(tmp_path):
    question, reply = tmp_path / "question.wav", tmp_path / "reply.wav"
    t = np.arange(24000 * 8 // 10) / 24000
    with wave.open(str(question), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(24000)
        w.writeframes((6000 * np.sin(2 * np.pi * 300 * t)).astype("<i2").tobytes())
    with relay_process() as (_, port, _banner):
        out = run_example(BLOCKS[2], port, tmp_path, str(question), str(reply))
    assert "transcript: Echo: audio 800 ms" in out
    with wave.open(str(reply)) as w:
        assert w.getframerate() == 24000
        assert w.getnframes() == 4 * 60 * 24  # four words of 60 ms from the emulator


def test_readme_tool_example_calls_the_tool_and_prints_the_reply(tmp_path):
    with relay_process() as (_, port, _banner):
        out = run_example(BLOCKS[4], port, tmp_path)
    assert out.splitlines() == ["model calls get_time({'zone': 'example'})", 'Result: get_time {"time":"12:00"}']


def test_readme_image_example_sends_the_image_and_prints_the_reply(tmp_path):
    png = b"\x89PNG\r\n\x1a\n" + bytes(100)
    (tmp_path / "chart.png").write_bytes(png)
    with relay_process() as (_, port, _banner):
        out = run_example(BLOCKS[3], port, tmp_path)
    # The emulator answers with the user's text and acknowledges each image with its MIME type and size.
    assert out.strip() == f"Echo: What does this chart show? [image image/png {len(png)} bytes]"


def _tone_wav(path: Path, ms: int) -> None:
    t = np.arange(24 * ms) / 24000
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(24000)
        w.writeframes((6000 * np.sin(2 * np.pi * 300 * t)).astype("<i2").tobytes())


def test_readme_transcription_example_prints_the_transcript(tmp_path):
    _tone_wav(tmp_path / "speech.wav", 700)
    with relay_process() as (_, port, _banner):
        out = run_example(BLOCKS[5], port, tmp_path, str(tmp_path / "speech.wav"))
    lines = out.splitlines()
    assert lines[0].startswith("delta: ")
    assert lines[-2:] == ["transcript: audio 700 ms", "usage: tokens"]


def test_readme_translation_example_prints_both_transcripts_and_saves_the_speech(tmp_path):
    _tone_wav(tmp_path / "speech.wav", 600)
    with relay_process() as (_, port, _banner):
        out = run_example(BLOCKS[6], port, tmp_path, str(tmp_path / "speech.wav"), str(tmp_path / "es.wav"))
    lines = out.splitlines()
    assert lines[:2] == ["heard: audio 600 ms", "said: [es] audio 600 ms"]
    with wave.open(str(tmp_path / "es.wav")) as w:
        assert w.getframerate() == 24000 and w.getnframes() > 0


def test_readme_library_examples_print_the_reply(tmp_path):
    # They run in-process against the built-in emulator: no relay to start.
    assert run_example(BLOCKS[7], 0, tmp_path).strip() == "Echo: Hello!"
    assert run_example(BLOCKS[8], 0, tmp_path).strip() == "Echo: Hello!"


def test_readme_api_reference_names_every_public_name():
    import relay

    reference = (ROOT / "README.md").read_text().split("### API reference", 1)[1].split("\n## ", 1)[0]
    for name in relay.__all__:
        assert f"relay.{name}" in reference or f"`{name}" in reference, name
