"""The relay as a library: an OpenAI Realtime session inside your own trio program, with no WebSocket between
you and the relay (`connect`), and the server started from Python (`serve`).

A session made by `connect` is the server's own: the same route table, translator, upstream connections,
resumption, limits and metrics as a WebSocket client gets, with an in-memory socket (`_MemorySocket`) where the
client's WebSocket would be.  Its tasks run in a nursery inside the `async with` block, so they live in the
caller's scope: cancelling that scope ends the session and closes its Gemini connection, and an error in the
session's own machinery propagates out of the block as trio does.  asyncio programs use `relay.aio`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal
from urllib.parse import urlencode

import attrs
import orjson
import trio

from relay import codec
from relay.config import ClientKey, Config, ConfigError, default_config
from relay.config import load_config as _read_config
from relay.emulator import Emulator, EmulatorOptions
from relay.server import RelayServer
from relay.transport import CLOSE_TIMEOUT, HandshakeRequest, MessageSocket, SocketClosed

__all__ = ["ConfigError", "RelaySession", "SessionClosed", "SessionRefused", "connect", "load_config", "serve"]
log = logging.getLogger("relay.config")

ConfigSource = Config | str | os.PathLike[str] | None
Kind = Literal["realtime", "transcription", "translation"]
# Events the relay may hold for a caller that is not reading yet; past this the session's own client buffer
# (`client_send_buffer`) fills, and then the session is closed (1008), as for a WebSocket client.
EVENT_BUFFER = 256
LIBRARY_KEY = ClientKey("library", "")  # the caller is trusted: it holds the configuration


class SessionRefused(Exception):
    """The relay would not open the session (an unknown model, a model of another kind, a limit): what a WebSocket
    client gets as an HTTP error at the handshake.  `status` is that HTTP status, `code` OpenAI's error code."""

    def __init__(self, status: int, code: str | None, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class SessionClosed(Exception):
    """The session has ended: `code` and `reason` are the close the relay gave (1000 when it ended normally)."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"the session is closed ({code}{': ' + reason if reason else ''})")
        self.code = code
        self.reason = reason


class _MemorySocket:
    """The server's side of an in-memory client connection (a `relay.transport.MessageSocket`)."""

    def __init__(self) -> None:
        self.to_client, self.from_server = trio.open_memory_channel[bytes](EVENT_BUFFER)
        self.to_server, self.from_client = trio.open_memory_channel[str | bytes](EVENT_BUFFER)
        self.close_info: tuple[int | None, str] | None = None

    async def get_message(self) -> str | bytes:
        try:
            return await self.from_client.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise SocketClosed(1000, "the caller closed the session") from None

    async def get_messages(self) -> list[str | bytes]:
        messages = [await self.get_message()]
        while True:
            try:
                messages.append(self.from_client.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return messages

    async def send_message(self, message: str | bytes) -> None:
        await self.send_texts([message.encode() if isinstance(message, str) else message])

    async def send_texts(self, messages: Sequence[bytes]) -> None:
        for message in messages:
            try:
                await self.to_client.send(bytes(message))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                raise SocketClosed(1000, "the caller closed the session") from None

    def send_now(self, messages: Sequence[bytes]) -> int:
        stats = self.to_client.statistics()
        if self.close_info is not None or stats.current_buffer_used + len(messages) > stats.max_buffer_size:
            return -1
        try:
            for message in messages:
                self.to_client.send_nowait(bytes(message))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return -1
        return 0

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.close_info is None:
            self.close_info = (code, reason)
        self.to_client.close()
        self.from_client.close()  # the caller's next send says the session is closed


class _MemoryConnection:
    """An upgrade request handed straight to `RelayServer.handle` (a `relay.transport.IncomingConnection`)."""

    def __init__(self, request: HandshakeRequest) -> None:
        self.request = request
        self.socket: _MemorySocket | None = None
        self.refusal: SessionRefused | None = None
        self.decided = trio.Event()

    async def accept(self, subprotocol: str | None = None) -> MessageSocket:
        self.socket = _MemorySocket()
        self.decided.set()
        return self.socket

    async def reject(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        try:
            error = orjson.loads(body)["error"]
            code, message = error.get("code"), error.get("message", "")
        except (orjson.JSONDecodeError, KeyError, TypeError):
            code, message = None, body.decode(errors="replace")
        self.refusal = SessionRefused(status, code, message)
        self.decided.set()


class RelaySession:
    """One session: `send` client events, iterate (or `recv`) server events.  Made by `connect`."""

    def __init__(self, socket: _MemorySocket, model: str) -> None:
        self._socket = socket
        self.model = model

    async def send(self, event: dict[str, Any] | Any) -> None:
        """Send one client event: a dict as OpenAI's docs write it, an event class of `relay.events.openai`, or
        JSON text (str, or UTF-8 bytes).  `SessionClosed` once the session has ended."""
        if isinstance(event, (str, bytes)):
            frame: str | bytes = event
        elif isinstance(event, dict):
            frame = orjson.dumps(event)
        elif attrs.has(type(event)) and hasattr(event, "TYPE"):
            frame = orjson.dumps(codec.unstructure_client_event(event))
        else:
            raise TypeError(f"expected a dict, a relay.events.openai client event or JSON text, got {type(event)}")
        try:
            await self._socket.to_server.send(frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise self._closed() from None

    async def recv(self) -> dict[str, Any]:
        """The next server event, as a dict; `SessionClosed` once the session has ended and every event was read."""
        try:
            return orjson.loads(await self._socket.from_server.receive())
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise self._closed() from None

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return until_closed(self.recv)

    @property
    def close_info(self) -> tuple[int | None, str] | None:
        """(code, reason) once the relay has closed the session, else None."""
        return self._socket.close_info

    async def close(self) -> None:
        """End the session (as a client closing its WebSocket); `connect`'s block does it on leaving."""
        await self._socket.to_server.aclose()

    def _closed(self) -> SessionClosed:
        code, reason = self._socket.close_info or (1000, "")
        return SessionClosed(code, reason)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read a LiteLLM-style YAML configuration (as `python -m relay serve --config` does); `ConfigError` says where
    and why one cannot be used.  Keys the relay ignores are logged as warnings (logger "relay.config")."""
    config, warnings = _read_config(os.fspath(path))
    for warning in warnings:
        log.warning("%s", warning)
    return config


async def until_closed(recv: Callable[[], Awaitable[dict[str, Any]]]) -> AsyncIterator[dict[str, Any]]:
    """A session's events for `async for`: `recv` until it says the session is closed."""
    while True:
        try:
            yield await recv()
        except SessionClosed:
            return


def _load(config: ConfigSource) -> Config | None:
    if config is None or isinstance(config, Config):
        return config
    if not isinstance(config, (str, os.PathLike)):
        raise TypeError(f"config must be a relay.Config, a path or None, got {type(config).__name__}")
    return load_config(config)


async def _embedded(nursery: trio.Nursery) -> Config:
    """The configuration of `python -m relay serve` without a file: the built-in emulator, started here."""
    emulator = Emulator(EmulatorOptions())
    port = await nursery.start(emulator.serve, "127.0.0.1", 0)
    return default_config(f"ws://127.0.0.1:{port}", env={})


@asynccontextmanager
async def connect(
    config: ConfigSource = None,
    model: str | None = None,
    dialect: Literal["ga", "beta"] = "ga",
    *,
    kind: Kind = "realtime",
) -> AsyncIterator[RelaySession]:
    """Open a session on `model` (a configured `model_name`; None: the first model of the kind, as a client that
    names none) speaking OpenAI's `dialect`, and yield it; it ends when the block does.

    `config`: a `relay.Config`, the path of a LiteLLM-style YAML file, or None for the built-in emulator (started
    for the session).  `kind`: "realtime" (a conversation), "transcription" (as `?intent=transcription`) or
    "translation" (the translation socket; its dialect is GA's).  Raises `ConfigError` for a configuration that
    cannot be used and `SessionRefused` for a session the relay would not open."""
    if model is not None and not isinstance(model, str):
        raise TypeError(f"model must be a configured model_name (a string) or None, got {type(model).__name__}")
    if dialect not in ("ga", "beta"):
        raise ValueError(f"dialect must be 'ga' or 'beta', got {dialect!r}")
    if kind not in ("realtime", "transcription", "translation"):
        raise ValueError(f"kind must be 'realtime', 'transcription' or 'translation', got {kind!r}")
    loaded = _load(config)
    query = {"model": model} if model is not None else {}
    if kind == "transcription":
        query["intent"] = "transcription"
    path = ("/v1/realtime/translations" if kind == "translation" else "/v1/realtime") + (
        "?" + urlencode(query) if query else "")
    headers = (("openai-beta", "realtime=v1"),) if dialect == "beta" and kind != "translation" else ()
    connection = _MemoryConnection(HandshakeRequest(path=path, headers=headers, subprotocols=(), remote="library"))
    failure: BaseException | None = None
    # The caller's exceptions and the refusal are raised outside the nursery, so that they reach the caller as
    # they are rather than inside an exception group.
    async with trio.open_nursery() as nursery:
        if loaded is None:
            loaded = await _embedded(nursery)
        server = RelayServer(loaded)
        nursery.start_soon(server.run_timers)
        nursery.start_soon(server.handle, connection, LIBRARY_KEY, dialect)
        await connection.decided.wait()
        if connection.socket is not None:
            chosen = model or server._default_model("translation" if kind == "translation" else "realtime",
                                                     kind == "transcription")
            session = RelaySession(connection.socket, chosen or "")
            try:
                yield session
            except BaseException as exc:
                failure = exc
            try:
                if not isinstance(failure, trio.Cancelled):
                    await _wind_down(session, server)
            finally:
                nursery.cancel_scope.cancel()
        else:
            nursery.cancel_scope.cancel()
    if connection.refusal is not None:
        raise connection.refusal
    if failure is not None:
        raise failure


async def _wind_down(session: RelaySession, server: RelayServer) -> None:
    """Close the session as a client's leaving does, and let it close its Gemini connection (bounded)."""
    await session.close()
    with trio.move_on_after(2 * CLOSE_TIMEOUT):
        while server.active_sessions:
            await trio.sleep(0.01)


async def serve(
    config: ConfigSource = None,
    host: str = "127.0.0.1",
    port: int = 4000,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the relay on host:port until cancelled, as `python -m relay serve` does (without its signal handling:
    the caller's scope decides when it ends).  `task_status.started` gets the bound port (port 0: any free one).
    `config` as in `connect`; None serves the built-in emulator."""
    loaded = _load(config)
    async with trio.open_nursery() as nursery:
        if loaded is None:
            loaded = await _embedded(nursery)
        server = RelayServer(loaded)
        bound = await nursery.start(server.serve, host, port)
        task_status.started(bound)

