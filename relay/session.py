"""One client connection: a trio nursery that owns the client socket, the upstream socket and the
tasks between them, around a sans-IO `Translator`.

    client ws ─► client reader ─► Translator ─► upstream channel ─► upstream writer ─► Gemini
    client ws ◄─ client writer ◄─ client channel ◄─ Translator ◄─ upstream reader ◄─ Gemini

Bounded memory channels are the only flow control.  When the client leaves, the nursery's cancel
scope ends everything, upstream included.  An upstream that fails becomes an `error` event; the
next thing that needs the model opens a fresh upstream (the translator replays the conversation).
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
import trio

from relay.translate import Output, Translator
from relay.transport import HandshakeFailed, MessageSocket, OpenConnection, SocketClosed, open_connection
from relay.upstream import Upstream, UpstreamAuthError

log = logging.getLogger("relay.session")

CLIENT_QUEUE = 256  # events; a slow client holds the upstream reader back past this
UPSTREAM_QUEUE = 256
SETUP_TIMEOUT = 20.0  # seconds for Gemini to answer `setup`


class _Link:
    """One upstream connection; replaced after a fault."""

    def __init__(self) -> None:
        self.send, self.recv = trio.open_memory_channel[dict[str, Any]](UPSTREAM_QUEUE)
        self.closing = False
        self.socket: MessageSocket | None = None


class Session:
    def __init__(
        self,
        client: MessageSocket,
        translator: Translator,
        upstream: Upstream,
        label: str,
        open_upstream: OpenConnection = open_connection,
    ) -> None:
        self._client = client
        self._open_upstream = open_upstream  # the configured transport's client side
        self._t = translator
        self._upstream = upstream
        self._label = label
        self._to_client, self._client_out = trio.open_memory_channel[bytes](CLIENT_QUEUE)
        self._link: _Link | None = None
        self._nursery: trio.Nursery | None = None
        # Two tasks feed the translator; its outputs must reach the channels in the order it made
        # them, even when one task blocks on a full channel (backpressure) mid-dispatch.
        self._dispatching = trio.StrictFIFOLock()

    async def run(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._client_writer)
                await self._dispatch(self._t.start())
                await self._client_reader()
                await self._close_upstream()
                nursery.cancel_scope.cancel()
        finally:
            if self._link is not None:
                self._link.closing = True

    async def _close_upstream(self) -> None:
        """Close the upstream before cancelling the session: the close handshake needs the
        connection's reader still running, or it waits out its whole timeout."""
        link = self._link
        if link is None or link.socket is None or link.closing:
            return
        link.closing = True
        await link.socket.close(1000, "client session ended")

    # ------------------------------------------------------------ dispatch

    async def _dispatch(self, out: Output) -> None:
        async with self._dispatching:
            await self._deliver(out)

    async def _deliver(self, out: Output) -> None:
        for frame in out.client:
            await self._to_client.send(frame)
        if out.connect is not None:
            link = _Link()
            self._link = link
            assert self._nursery is not None
            self._nursery.start_soon(self._run_link, link, out.connect.setup)
        if out.upstream:
            link = self._link
            if link is not None and not link.closing:
                for message in out.upstream:
                    try:
                        await link.send.send(message)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        break  # that link died; the translator has heard of it
        if out.close is not None:
            await self._client.close(out.close.code, out.close.reason)

    # ------------------------------------------------------------ client side

    async def _client_reader(self) -> None:
        try:
            while True:
                frame = await self._client.get_message()
                await self._dispatch(self._t.client_frame(frame))
        except SocketClosed as exc:
            log.info("%s client left (%s)", self._label, exc.code)

    async def _client_writer(self) -> None:
        try:
            async for frame in self._client_out:
                await self._client.send_message(frame.decode())
        except SocketClosed:
            assert self._nursery is not None
            self._nursery.cancel_scope.cancel()

    # ------------------------------------------------------------ upstream side

    async def _run_link(self, link: _Link, setup: dict[str, Any]) -> None:
        try:
            target = await self._upstream.target()
        except UpstreamAuthError as exc:
            log.warning("%s upstream credentials failed: %s", self._label, exc)
            await self._dispatch(self._t.upstream_failed(None, str(exc)))
            return
        setup["setup"]["model"] = target.model_path
        try:
            async with self._open_upstream(target.url, list(target.headers)) as sock:
                link.socket = sock
                try:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._link_writer, link, sock)
                        await self._link_reader(link, sock, setup)
                        nursery.cancel_scope.cancel()
                finally:
                    link.closing = True
                    link.send.close()
                    with trio.CancelScope(shield=True):
                        await sock.close(1000, "client session ended")
        except HandshakeFailed as exc:
            log.warning("%s upstream connect failed: %s", self._label, exc.message)
            await self._dispatch(self._t.upstream_failed(exc.status, exc.message))

    async def _link_reader(self, link: _Link, sock: MessageSocket, setup: dict[str, Any]) -> None:
        try:
            await sock.send_message(orjson.dumps(setup).decode())
            with trio.move_on_after(SETUP_TIMEOUT) as waiting:
                frame = await sock.get_message()
            if waiting.cancelled_caught:
                link.closing = True
                message = f"Gemini did not answer the session setup within {SETUP_TIMEOUT:.0f} s"
                await self._dispatch(self._t.upstream_failed(None, message))
                return
            while True:
                await self._dispatch(self._t.upstream_frame(frame))
                frame = await sock.get_message()
        except SocketClosed as exc:
            if not link.closing:
                log.warning("%s upstream closed: %s %s", self._label, exc.code, exc.reason)
                link.closing = True
                await self._dispatch(self._t.upstream_closed(exc.code, exc.reason))

    async def _link_writer(self, link: _Link, sock: MessageSocket) -> None:
        try:
            async for message in link.recv:
                await sock.send_message(orjson.dumps(message).decode())
        except SocketClosed:
            pass  # the reader hears the close and reports it
