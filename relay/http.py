"""Plain HTTP beside the WebSocket route, on the same port: probes, metrics, and a JSON 404 for the rest.

Both transports serve WebSocket upgrades only, so the server looks at each new connection's request head
first, without consuming it (MSG_PEEK): an upgrade goes on to the transport untouched, anything else is
answered here and the connection closed.  Routes (LiteLLM's probe paths answer the same, so a LiteLLM
deployment's probes work unchanged):

    GET /health, /health/liveliness, /health/liveness   200 while the event loop runs
    GET /ready, /health/readiness                       200 when serving; 503 while starting or draining
    GET /metrics                                         Prometheus text exposition
    GET /v1/models, /v1/models/{id}                      OpenAI's model list (and one model), each with the session
                                                         kind it serves (a client key is needed where the relay
                                                         has keys)
    GET /, /playground/*                                 the browser playground (relay.playground), unless turned off
"""

from __future__ import annotations

import json
import logging
import socket
import urllib.parse
from collections.abc import Callable
from typing import Any

import trio

from relay import playground as playground_files

log = logging.getLogger("relay.http")

MAX_HEAD = 16 * 1024  # bytes of request line and headers; a larger head is not a request we answer
HEAD_TIMEOUT = 10.0  # seconds for a request head to arrive in full
_PEEK_WAIT = 0.005  # seconds between peeks while a head is incomplete (peeking never consumes, so never blocks)

LIVE = ("/health", "/health/liveliness", "/health/liveness")
READY = ("/ready", "/health/readiness")
METRICS = "/metrics"
MODELS = "/v1/models"

Headers = tuple[tuple[str, str], ...]
Response = tuple[int, str, bytes, Headers]  # status, content type, body, other response headers
_REASONS = {200: "OK", 304: "Not Modified", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
            503: "Service Unavailable"}
NO_STORE: Headers = (("cache-control", "no-store"),)


class HttpApp:
    """What the plain HTTP routes answer, from the server's state: `ready()` and `metrics()` are its callbacks.
    `playground`: serve the browser playground at `/` (general_settings.playground, `serve --no-playground`)."""

    def __init__(self, ready: Callable[[], bool], metrics: Callable[[], tuple[str, bytes]],
                 models: Callable[[Headers], tuple[int, dict[str, Any]]] | None = None, *,
                 playground: bool = True) -> None:
        self._ready = ready
        self._metrics = metrics
        self._models = models
        self.playground = playground

    def _auth_required(self) -> bool:
        """Whether listing models needs a client key, i.e. whether the relay has keys."""
        return self._models is not None and self._models(())[0] == 401

    def _static(self, path: str, headers: Headers) -> Response | None:
        found = playground_files.asset(path, self._auth_required()) if self.playground else None
        if found is None:
            return None
        tags = next((value for name, value in headers if name.lower() == "if-none-match"), None)
        if tags is not None and (tags.strip() == "*" or found.etag in (t.strip() for t in tags.split(","))):
            return 304, found.content_type, b"", found.headers()
        return 200, found.content_type, found.body, found.headers()

    def respond(self, method: str, target: str, headers: Headers = ()) -> Response:
        path = target.split("?", 1)[0].rstrip("/") or "/"
        if method not in ("GET", "HEAD"):
            return _json(405, {"error": {"message": f"{method} is not supported here", "type": "invalid_request_error",
                                         "code": "method_not_allowed"}})
        if path in LIVE:
            return _json(200, {"status": "ok"})
        if path in READY:
            ready = self._ready()
            return _json(200 if ready else 503, {"status": "ready" if ready else "not ready"})
        if path == METRICS:
            content_type, body = self._metrics()
            return 200, content_type, body, NO_STORE
        if path == MODELS and self._models is not None:
            return _json(*self._models(headers))
        if path.startswith(MODELS + "/") and self._models is not None:
            return _json(*_one_model(self._models(headers), path[len(MODELS) + 1:]))
        static = self._static(path, headers)
        if static is not None:
            return static
        routes = "WebSocket clients: /v1/realtime?model=NAME, /v1/realtime/translations?model=NAME; probes: /health, " \
            "/ready; metrics: /metrics; models: /v1/models" + ("; playground: /" if self.playground else "")
        return _json(404, {"error": {"message": f"No route for {path}. {routes}.", "type": "invalid_request_error",
                                     "code": "not_found"}})


def _one_model(listed: tuple[int, dict[str, Any]], model_id: str) -> tuple[int, dict[str, Any]]:
    """GET /v1/models/{id} (the SDK's `client.models.retrieve`), from the list's answer."""
    status, body = listed
    if status != 200:
        return status, body
    model_id = urllib.parse.unquote(model_id)
    found = next((m for m in body["data"] if m["id"] == model_id), None)
    if found is None:
        return 404, {"error": {"message": f"The model '{model_id}' does not exist on this relay.",
                               "type": "invalid_request_error", "param": "model", "code": "model_not_found"}}
    return 200, found


def _json(status: int, body: dict[str, Any]) -> Response:
    return status, "application/json", json.dumps(body).encode(), NO_STORE


async def peek_head(stream: trio.SocketStream) -> bytes | None:
    """The request head waiting on `stream` (through its blank line), read without consuming it; None if the
    connection ends first, the head is too large or does not arrive in time."""
    sock = stream.socket
    with trio.move_on_after(HEAD_TIMEOUT):
        while True:
            await trio.lowlevel.wait_readable(sock)
            try:
                data = await sock.recv(MAX_HEAD, socket.MSG_PEEK)
            except OSError:
                return None
            if not data:
                return None
            end = data.find(b"\r\n\r\n")
            if end >= 0:
                return data[: end + 4]
            if len(data) >= MAX_HEAD:
                return None
            await trio.sleep(_PEEK_WAIT)  # readable stays true while data waits: wait for more to come
    return None


def is_upgrade(head: bytes) -> bool:
    """Whether the request head asks for a WebSocket (the transport then answers it, refusals included)."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"upgrade" and b"websocket" in value.lower():
            return True
    return False


async def answer(stream: trio.SocketStream, head: bytes, app: HttpApp) -> None:
    """Consume the request head, answer it from `app`, and close (no keep-alive: probes open a connection each)."""
    left = len(head)
    while left:
        data = await stream.receive_some(left)
        if not data:
            return
        left -= len(data)
    request_line, *lines = head.decode("latin-1").split("\r\n")
    method, _, rest = request_line.partition(" ")
    target = rest.split(" ", 1)[0]
    headers = tuple((name.strip(), value.strip()) for name, sep, value in (line.partition(":") for line in lines)
                    if sep)
    try:
        status, content_type, body, extra = app.respond(method, target, headers)
    except Exception:
        log.exception("HTTP %s %s failed", method, target)
        status, content_type, body, extra = _json(500, {"error": {"message": "internal error", "type": "server_error"}})
    # A 304 has no body, and no content-length (that would have to be the length of the body it stands for).
    length = "" if status == 304 else f"content-length: {len(body)}\r\n"
    lines = "".join(f"{name}: {value}\r\n" for name, value in extra)
    head_out = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\ncontent-type: {content_type}\r\n"
                f"{length}{lines}connection: close\r\n\r\n").encode()
    await stream.send_all(head_out + (b"" if method == "HEAD" else body))
    log.debug("HTTP %s %s -> %d", method, target, status)


async def answered_as_http(stream: trio.SocketStream, app: HttpApp) -> bool:
    """Look at a new connection's request: plain HTTP is answered here and the stream closed (True); a WebSocket
    upgrade, or anything that is not a whole request head, is left to the transport (False)."""
    head = await peek_head(stream)
    if head is None or is_upgrade(head):
        return False
    try:
        await answer(stream, head, app)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    finally:
        await trio.aclose_forcefully(stream)
    return True
