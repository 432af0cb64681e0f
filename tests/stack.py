"""A whole relay stack on loopback for end-to-end tests: a local Google token endpoint, the Gemini
Live emulator, and the relay configured for Vertex with a service-account key whose `token_uri`
points at the token endpoint.  It runs in its own thread under `trio.run`, so tests can drive it
with asyncio clients (the `openai` SDK) or plain threads (node, subprocesses).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import yaml

from relay.config import load_config
from relay.emulator import Emulator, EmulatorOptions
from relay.server import RelayServer
from tests.tokenserver import TokenServer, write_service_account

MASTER_KEY = "sk-relay-test-master-key"
# The relay's WebSocket transports (general_settings.transport): every end-to-end module runs on each.
TRANSPORTS = ["trio-websocket", "websockets"]


def stack_fixture(name: str, **options: Any) -> Any:
    """A module-scoped fixture called `name`: a Stack built with `options`, once per transport."""

    @pytest.fixture(scope="module", params=TRANSPORTS, name=name)
    def fixture(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Stack]:
        s = Stack(tmp_path_factory.mktemp(name), transport=request.param, **options).start()
        yield s
        s.stop()

    return fixture


class Stack:
    def __init__(
        self,
        tmp: Path,
        *,
        master_key: str | None = MASTER_KEY,
        extra_models: list[dict] = (),
        emulator_options: dict[str, Any] | None = None,
        transport: str = "trio-websocket",
        general_settings: dict[str, Any] | None = None,
    ) -> None:
        self.tmp = tmp
        self.general_settings = dict(general_settings or {})
        # The relay's WebSocket transport (general_settings.transport); the emulator always uses trio-websocket.
        self.transport = transport
        self.emulator_options = emulator_options or {}
        self.master_key = master_key
        self.extra_models = list(extra_models)
        self.tokens = TokenServer()
        self.emulator: Emulator | None = None
        self.server: RelayServer | None = None
        self.port = 0
        self.emulator_port = 0
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._cancel: trio.CancelScope | None = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    @property
    def http_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def ws_base(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1"

    def url(self, model: str = "vertex_gemini_live_text") -> str:
        return f"{self.ws_base}/realtime?model={model}"

    def write_config(self) -> str:
        sa = write_service_account(self.tmp / "sa.json", self.tokens.url, quota_project_id="quota-proj")
        models: list[dict[str, Any]] = [
            {
                "model_name": "vertex_gemini_live_text",
                "litellm_params": {
                    "model": "vertex_ai/gemini-2.0-flash-live-preview-04-09",
                    "vertex_project": "test-project",
                    "vertex_location": "us-central1",
                    "vertex_credentials": sa,
                    "api_base": f"ws://127.0.0.1:{self.emulator_port}",
                },
                "model_info": {"mode": "realtime"},
            },
            {
                "model_name": "gemini_studio",
                "litellm_params": {
                    "model": "gemini/gemini-live-2.5-flash-preview",
                    "api_key": "studio-test-key",
                    "api_base": f"http://127.0.0.1:{self.emulator_port}",
                },
            },
        ]
        for extra in self.extra_models:
            # "EMULATOR" in an extra model's api_base stands for the emulator's address.
            params = dict(extra["litellm_params"])
            if params.get("api_base") == "EMULATOR":
                params["api_base"] = f"ws://127.0.0.1:{self.emulator_port}"
            models.append({**extra, "litellm_params": params})
        settings: dict[str, Any] = {"transport": self.transport, **self.general_settings}
        if self.master_key:
            settings["master_key"] = self.master_key
        doc: dict[str, Any] = {"model_list": models, "general_settings": settings}
        path = self.tmp / "config.yaml"
        path.write_text(yaml.safe_dump(doc))
        return str(path)

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as cancel:
            self._cancel = cancel
            async with trio.open_nursery() as nursery:
                options = EmulatorOptions(
                    **{"bearer_token": self.tokens.issued, "api_key": "studio-test-key", **self.emulator_options}
                )
                self.emulator = Emulator(options)
                self.emulator_port = await nursery.start(self.emulator.serve, "127.0.0.1", 0)
                config, _ = load_config(self.write_config(), env={})
                self.server = RelayServer(config)
                self.port = await nursery.start(self.server.serve, "127.0.0.1", 0)
                self._ready.set()

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._ready.set()

    def start(self) -> Stack:
        self.tokens.__enter__()
        self._thread = threading.Thread(target=self._run, name="relay-stack", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise RuntimeError("relay stack failed to start") from self._error
        return self

    def stop(self) -> None:
        if self._token is not None and self._cancel is not None:
            try:
                trio.from_thread.run_sync(self._cancel.cancel, trio_token=self._token)
            except trio.RunFinishedError:
                pass
        if self._thread is not None:
            self._thread.join(10)
        self.tokens.__exit__(None, None, None)

    def upstream_messages(self) -> list[dict[str, Any]]:
        assert self.emulator is not None
        return list(self.emulator.received)

    def latest_upstream(self) -> list[dict[str, Any]]:
        """The messages of the upstream connection opened last: unlike a slice of `upstream_messages`, free of
        what an earlier test's connection was still delivering."""
        assert self.emulator is not None and self.emulator.by_connection
        return list(self.emulator.by_connection[-1])
