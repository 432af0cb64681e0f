"""The relay as a new user runs it: `python -m relay serve` in a subprocess, on its embedded default
(the built-in emulator) or a config file, with real clients (node's `ws`, the openai SDK)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.clients import squash


def stop_process(proc: subprocess.Popen) -> None:
    """End a relay started by a test: SIGTERM (it drains), SIGKILL if it has not gone 10 s later."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()

ROOT = Path(__file__).resolve().parent.parent
NODE_DIR = ROOT / "tests" / "node"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def relay_process(*args: str, env: dict[str, str] | None = None) -> Iterator[tuple[subprocess.Popen, int, str]]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "relay", "serve", "--host", "127.0.0.1", "--port", str(port), *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, **(env or {})},
    )
    banner = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            banner.append(line)
            if "listening on" in line:
                break
        else:
            raise AssertionError("relay did not start: " + "".join(banner))
        assert proc.poll() is None, "".join(banner)
        yield proc, port, "".join(banner)
    finally:
        stop_process(proc)


@pytest.fixture(scope="session")
def node_ws() -> Path:
    node = shutil.which("node")
    npm = shutil.which("npm")
    assert node and npm, "node and npm are needed for the seed client test"
    if not (NODE_DIR / "node_modules" / "ws").is_dir():
        subprocess.run([npm, "install", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True, timeout=300)
    return NODE_DIR


def assert_seed_client_gets_an_echo(node_ws: Path, port: int) -> None:
    """LiteLLM's documented node `ws` client against the embedded emulator: the full event sequence."""
    url = f"ws://0.0.0.0:{port}/v1/realtime?model=vertex_gemini_live_text"
    out = subprocess.run(["node", "seed.js"], cwd=node_ws, env={**os.environ, "RELAY_URL": url},
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    printed = out.stdout
    types = re.findall(r"^  type: '([a-z_.]+)'", printed, re.M)
    assert squash(types) == [
        "session.created", "conversation.item.created", "response.created", "response.output_item.added",
        "conversation.item.created", "response.content_part.added", "response.text.delta", "response.text.done",
        "response.content_part.done", "response.output_item.done", "response.done",
    ]
    deltas = re.findall(r"^  delta: '(.*)'", printed, re.M)
    assert "".join(deltas) == "Echo: hey there!"


def test_default_serve_answers_litellms_documented_node_client(node_ws):
    with relay_process() as (_, port, banner):
        assert "built-in Gemini Live emulator" in banner
        assert f"ws://127.0.0.1:{port}/v1/realtime" in banner
        assert "transport trio-websocket" in banner
        assert_seed_client_gets_an_echo(node_ws, port)


def test_serve_on_the_websockets_transport_answers_the_node_client(node_ws):
    with relay_process("--transport", "websockets") as (_, port, banner):
        assert "transport websockets" in banner
        assert_seed_client_gets_an_echo(node_ws, port)


def test_default_serve_with_the_openai_sdk_and_a_master_key():
    from openai import OpenAI

    with relay_process(env={"RELAY_MASTER_KEY": "sk-cli"}) as (_, port, banner):
        assert "WARNING" not in banner
        client = OpenAI(api_key="sk-cli", base_url=f"http://127.0.0.1:{port}/v1")
        with client.realtime.connect(model="vertex_gemini_live_text") as conn:
            conn.send({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}})
            conn.send({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                       "content": [{"type": "input_text", "text": "from the sdk"}]}})
            conn.send({"type": "response.create"})
            text = ""
            for event in conn:
                if event.type == "response.output_text.delta":
                    text += event.delta
                if event.type == "response.done":
                    break
        assert text == "Echo: from the sdk"
        bad = OpenAI(api_key="sk-wrong", base_url=f"http://127.0.0.1:{port}/v1")
        with pytest.raises(Exception, match="401"), bad.realtime.connect(model="vertex_gemini_live_text") as conn:
            conn.recv()


def test_open_relay_warns_loudly():
    env = {k: v for k, v in os.environ.items() if k != "RELAY_MASTER_KEY"}
    with relay_process(env=env) as (_, _port, banner):
        assert "WARNING: no master_key" in banner


def test_bad_config_exits_2_naming_file_entry_and_field(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("model_list:\n  - model_name: m1\n    litellm_params:\n      model: vertex_ai/x\n"
                   "      vertex_location: 5\n")
    out = subprocess.run([sys.executable, "-m", "relay", "serve", "--config", str(cfg)], cwd=ROOT,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert str(cfg) in out.stderr and "model_list[0]" in out.stderr and "vertex_location" in out.stderr


def test_config_file_with_unknown_keys_warns_and_serves(tmp_path):
    cfg = tmp_path / "relay.yaml"
    cfg.write_text(
        "model_list:\n"
        "  - model_name: studio\n"
        "    litellm_params:\n"
        "      model: gemini/gemini-live-2.5-flash-preview\n"
        "      api_key: os.environ/TEST_STUDIO_KEY\n"
        "      rpm: 10\n"
        "    model_info:\n"
        "      mode: realtime\n"
        "litellm_settings:\n"
        "  drop_params: true\n"
    )
    with relay_process("--config", str(cfg), env={"TEST_STUDIO_KEY": "secret-studio-key"}) as (_, _port, banner):
        assert "rpm" in banner and "litellm_settings" in banner
        assert "secret-studio-key" not in banner
        assert "model studio" in banner


def test_unknown_model_is_404_with_the_valid_names():
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    with relay_process() as (_, port, _banner):
        with pytest.raises(InvalidStatus) as info:
            connect(f"ws://127.0.0.1:{port}/v1/realtime?model=gpt-4o-realtime-preview", open_timeout=10)
        response = info.value.response
        assert response.status_code == 404
        body = json.loads(response.body)
        assert body["error"]["code"] == "model_not_found"
        assert body["error"]["valid_models"] == ["vertex_gemini_live_text", "gemini_transcribe", "gemini_translate"]
        assert "gpt-4o-realtime-preview" in body["error"]["message"]


def run_relay(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m relay ARGS` to completion (for commands that are expected to stop by themselves)."""
    return subprocess.run([sys.executable, "-m", "relay", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=30, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("command", ["serve", "emulator"])
def test_port_in_use_is_one_line_and_exit_2(command):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # No master key: the open-relay warning must not add a line when the relay never starts.
        env = {k: v for k, v in os.environ.items() if k != "RELAY_MASTER_KEY"}
        out = subprocess.run([sys.executable, "-m", "relay", command, "--host", "127.0.0.1", "--port", str(port)],
                             cwd=ROOT, capture_output=True, text=True, timeout=30, env=env)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("relay: error: ")
    assert f"port {port}" in lines[0] and "already in use" in lines[0]
    assert "Traceback" not in out.stderr


def test_unknown_host_is_one_line_and_exit_2():
    out = run_relay("serve", "--host", "no-such-host.invalid", "--port", "0")
    assert out.returncode == 2
    assert len(out.stderr.splitlines()) == 1, out.stderr
    assert out.stderr.startswith("relay: error: cannot listen on no-such-host.invalid port 0")


def test_bad_log_level_is_one_line_and_exit_2():
    out = run_relay("serve", "--port", "0", env={"RELAY_LOG_LEVEL": "loud"})
    assert out.returncode == 2
    assert out.stderr == (
        "relay: error: RELAY_LOG_LEVEL: unknown level 'LOUD'; use DEBUG, INFO, WARNING, ERROR or CRITICAL\n"
    )


def test_missing_credentials_file_is_one_line_and_exit_2(tmp_path):
    cfg = tmp_path / "relay.yaml"
    cfg.write_text("model_list:\n  - model_name: m\n    litellm_params:\n      model: vertex_ai/gemini-live-2.5-flash\n"
                   f"      vertex_project: p\n      vertex_credentials: {tmp_path / 'nope.json'}\n")
    out = run_relay("serve", "--config", str(cfg), "--port", "0")
    assert out.returncode == 2
    assert len(out.stderr.splitlines()) == 1, out.stderr
    assert out.stderr.startswith("relay: config error: ") and "credentials file not found" in out.stderr


def test_version_prints_the_package_version():
    import importlib.metadata

    out = run_relay("--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"relay {importlib.metadata.version('relay')}\n"


def vertex_config(tmp_path: Path, token_uri: str) -> Path:
    from tests.tokenserver import write_service_account

    sa = write_service_account(tmp_path / "sa.json", token_uri)
    cfg = tmp_path / "relay.yaml"
    cfg.write_text("model_list:\n  - model_name: m\n    litellm_params:\n      model: vertex_ai/gemini-live-2.5-flash\n"
                   f"      vertex_project: p\n      vertex_credentials: {sa}\n")
    return cfg


def test_credentials_are_checked_at_start_by_minting_a_token(tmp_path):
    from tests.tokenserver import TokenServer

    with TokenServer() as ts, relay_process("--config", str(vertex_config(tmp_path, ts.url))) as (_, _, banner):
        assert ts.requests == 1
    assert ("  credentials: a Google access token was minted for m "
            "(relay-test@test-project.iam.gserviceaccount.com)\n") in banner
    assert "ya29" not in banner


def test_refused_credentials_stop_the_start_in_one_line_with_exit_2(tmp_path):
    from tests.tokenserver import TokenServer

    with TokenServer() as ts:
        ts.fail = True
        out = run_relay("serve", "--config", str(vertex_config(tmp_path, ts.url)), "--port", "0")
    assert out.returncode == 2
    assert len(out.stderr.splitlines()) == 1, out.stderr
    assert out.stderr.startswith("relay: error: could not get a Google access token for model m: RefreshError")


def test_an_unreachable_token_endpoint_warns_and_serves(tmp_path):
    with relay_process("--config", str(vertex_config(tmp_path, f"http://127.0.0.1:{free_port()}/token"))) as (
            _, _, banner):
        assert "WARNING: could not check the Google credentials (could not get a Google access token for model m: " \
               "TransportError" in banner
        assert "serving anyway" in banner and "listening on" in banner


def test_the_standalone_emulator_on_a_port_in_use_is_one_line_and_exit_2():
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        out = subprocess.run([sys.executable, "-m", "relay.emulator", "--port", str(port)], cwd=ROOT,
                             capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert out.stderr == f"relay.emulator: error: cannot listen on 127.0.0.1 port {port}: Address already in use\n"
