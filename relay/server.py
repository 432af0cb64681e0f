"""The relay's WebSocket server: handshake → authenticate, choose model and dialect → run a session."""

from __future__ import annotations

import hmac
import logging
import time
from functools import partial
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import trio

from relay.config import ClientKey, Config, ModelEntry
from relay.deadlines import Deadlines
from relay.http import HttpApp
from relay.ids import SessionIds
from relay.logs import SESSION
from relay.metrics import SHARE_INTERVAL, Source, Totals, exposition, registry_for
from relay.session import Session
from relay.session_config import Dialect
from relay.stats import Stats
from relay.translate import LiveTranslation, Translator
from relay.transport import CLOSE_TIMEOUT, MAX_EVENT_SIZE, HandshakeRequest, IncomingConnection
from relay.transport.registry import get_transport
from relay.upstream import Upstream

log = logging.getLogger("relay.server")
# The key of every session on a relay configured without keys.
ANONYMOUS = ClientKey("anonymous", "")

KEY_SUBPROTOCOL = "openai-insecure-api-key."
BETA_SUBPROTOCOL = "openai-beta.realtime-v1"


def client_key(req: HandshakeRequest) -> str | None:
    """The key from `api-key`, `Authorization: Bearer`, or the browser subprotocol."""
    key = req.header("api-key")
    if key:
        return key.strip()
    auth = req.header("authorization")
    if auth and auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    for proto in req.subprotocols:
        if proto.startswith(KEY_SUBPROTOCOL):
            return proto[len(KEY_SUBPROTOCOL):]
    return None


def dialect_of(req: HandshakeRequest) -> Dialect | None:
    """beta iff `OpenAI-Beta: realtime=v1` or the beta subprotocol.  An official OpenAI SDK that
    sends neither (it marks itself with `X-Stainless-*` headers) speaks GA.  Otherwise the first
    event decides."""
    beta = req.header("openai-beta")
    if (beta and "realtime=v1" in beta) or BETA_SUBPROTOCOL in req.subprotocols:
        return "beta"
    if any(name.lower().startswith("x-stainless-") for name, _ in req.headers):
        return "ga"
    return None


MODELS_PATH = "/v1/models"


def _error_body(message: str, kind: str, code: str, **extra: object) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": kind, "code": code, **extra}})


class RelayServer:
    """`worker`, `metrics_dir`: this server is worker number `worker` of `serve --workers N` (relay.workers): it
    shares its port with the others and its metrics through `metrics_dir`."""

    def __init__(self, config: Config, worker: int | None = None, metrics_dir: str | None = None) -> None:
        self.config = config
        self.worker = worker
        self._started = int(time.time())  # `created` of every model in GET /v1/models
        self.upstreams = {m.model_name: Upstream(m) for m in config.models}
        # Each model's capability row, and what routing reads of them, worked out once: the config is fixed.
        self._caps = {m.model_name: m.caps() for m in config.models}
        self._first_of_kind: dict[str, str] = {}
        for name, caps in self._caps.items():
            self._first_of_kind.setdefault(caps.kind, name)
        self._transcribers = {m.model_name: (self._caps[m.model_name], m.options) for m in config.models
                              if self._caps[m.model_name].kind in ("transcription", "realtime")}
        self.active_sessions = 0
        self.stats = Stats()
        self.totals = Totals()
        self.serving = False  # listening, and not draining: what /ready reports
        self.draining = False
        self._sessions: set[Session] = set()
        self._all_ended = trio.Event()
        self._deadlines = Deadlines()  # every session's max_session_seconds
        registry, self._timers = registry_for(self.totals, self.stats)
        self.metrics = Source(registry, worker, metrics_dir)
        self.http = HttpApp(lambda: self.serving, lambda: exposition(self.metrics), self._model_list,
                            playground=config.playground)
        # One WebSocket implementation for both sides: clients here, Gemini in each Session.
        self.transport = get_transport(config.transport)
        self._open_upstream = self.transport.open_connection
        if self.transport.name == "websockets":
            # Gemini has been seen answering pings after 8-30 s: a short pong deadline kills healthy connections.
            ping = config.upstream_ping_timeout
            self._open_upstream = partial(self.transport.open_connection, ping_interval=ping or None,
                                          ping_timeout=ping or 1.0)

    async def serve(
        self, host: str, port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        async with trio.open_nursery() as nursery:
            bound = await nursery.start(partial(self.transport.serve, self.handle, host, port, http_app=self.http,
                                                reuse_port=self.worker is not None,
                                                keepalive=self.config.client_keepalive_seconds or None))
            nursery.start_soon(self._deadlines.run)
            if self.metrics.shared:
                nursery.start_soon(self._share_metrics)
            self.serving = True
            task_status.started(bound)

    async def run_timers(self) -> None:
        """The server-wide timers (every session's max_session_seconds), for a server used without `serve`
        (relay.library); `serve` runs them itself."""
        await self._deadlines.run()

    async def _share_metrics(self) -> None:
        while True:
            try:
                self.metrics.share()
            except OSError as exc:  # the directory is the supervisor's; a failed write costs one interval
                log.warning("could not share this worker's metrics: %s", exc)
            await trio.sleep(SHARE_INTERVAL)

    def _over_limit(self, key: ClientKey) -> str | None:
        """Why a new session on `key` would pass a concurrency limit (counted and logged), or None."""
        if self.active_sessions >= self.config.max_sessions:
            limit, why = "sessions", f"The relay serves at most {self.config.max_sessions} sessions at once."
        elif key.max_sessions is not None and self.totals.by_key[key.name] >= key.max_sessions:
            limit, why = "key_sessions", f"The key {key.name!r} may open at most {key.max_sessions} sessions at once."
        else:
            return None
        self.stats.limits[limit] += 1
        self.totals.refused[limit] += 1
        log.info("refused a handshake: %s", why)
        return why + " Try again later."

    async def drain(self, timeout: float) -> None:
        """Graceful shutdown: /ready turns 503 and new handshakes get 503; each open session ends (1001, going
        away) once its response in flight is done; after `timeout` seconds the rest are closed as they are."""
        self.serving = False
        self.draining = True
        sessions = list(self._sessions)
        log.info("draining: %d open session(s), up to %g s", len(sessions), timeout)
        for session in sessions:
            session.drain()
        with trio.move_on_after(timeout):
            while self._sessions:
                self._all_ended = trio.Event()
                await self._all_ended.wait()
        for session in list(self._sessions):
            session.go_away()
        with trio.move_on_after(CLOSE_TIMEOUT * 2):
            while self._sessions:
                self._all_ended = trio.Event()
                await self._all_ended.wait()

    def _key_of(self, req: HandshakeRequest) -> ClientKey | None:
        """The configured key the client presented (ANONYMOUS on a relay without keys), else None."""
        keys = self.config.client_keys()
        if not keys:
            return ANONYMOUS
        given = (client_key(req) or "").encode()
        found = None
        for key in keys:  # every key compared, in constant time each: the time taken says nothing of which
            if hmac.compare_digest(given, key.key.encode()):
                found = key
        return found

    def _model_list(self, headers: tuple[tuple[str, str], ...]) -> tuple[int, dict[str, Any]]:
        """GET /v1/models: OpenAI's list shape, each model with the session kind it serves (`kind`)."""
        if self._key_of(HandshakeRequest(path=MODELS_PATH, headers=headers, subprotocols=())) is None:
            return 401, orjson.loads(_error_body("Incorrect API key provided.", "invalid_request_error",
                                                 "invalid_api_key"))
        data = [{"id": e.model_name, "object": "model", "created": self._started, "owned_by": "relay",
                 "kind": self._caps[e.model_name].kind} for e in self.config.models]
        return 200, {"object": "list", "data": data}

    def _default_model(self, route: str, transcription: bool) -> str | None:
        """The model of a handshake that names none: the first configured model of the kind asked for (for a
        transcription session, a transcription model, else the first realtime model)."""
        if route == "translation":
            wanted = ["translation"]
        else:
            wanted = ["transcription", "realtime"] if transcription else ["realtime"]
        return next((self._first_of_kind[kind] for kind in wanted if kind in self._first_of_kind), None)

    def _route_refusal(self, route: str, model: str | None, transcription: bool) -> tuple[int, str, bytes] | None:
        """(HTTP status, metric reason, body) if the handshake's route and model do not go together."""
        names = self.config.model_names
        if model is None:
            if self._default_model(route, transcription) is not None:
                return None
            kind = route if route == "translation" else "transcription or realtime" if transcription else "realtime"
            return 404, "model_not_found", _error_body(
                f"Missing required query parameter 'model', and no {kind} model is configured on this relay. Valid "
                "models: " + ", ".join(names) + ".", "invalid_request_error", "model_not_found", valid_models=names)
        entry = self.config.model(model)
        if entry is None:
            return 404, "model_not_found", _error_body(
                f"The model '{model}' does not exist on this relay. Valid models: " + ", ".join(names) + ".",
                "invalid_request_error", "model_not_found", model=model, valid_models=names)
        kind = self._caps[model].kind
        if route == "translation" and kind != "translation":
            where = "/v1/realtime?intent=transcription&model=" if kind == "transcription" else "/v1/realtime?model="
            return 400, "wrong_session_kind", _error_body(
                f"The model '{model}' serves {kind} sessions, not translation: connect to {where}{model}.",
                "invalid_request_error", "unsupported_model", model=model)
        if route == "realtime" and kind == "translation":
            return 400, "wrong_session_kind", _error_body(
                f"The model '{model}' serves translation sessions: connect to /v1/realtime/translations?model="
                f"{model}.", "invalid_request_error", "unsupported_model", model=model)
        return None

    def _translator(self, entry: ModelEntry, route: str, transcription: bool, dialect: Dialect | None,
                    named: bool) -> Translator | LiveTranslation:
        """The session's state machine: a translation socket's, or a conversation's (started as a transcription
        session when the handshake asked for one or named a transcription model)."""
        ids = SessionIds()
        caps = self._caps[entry.model_name]
        switch_ms = self.config.resume_buffer_seconds * 1000
        if route == "translation":
            lifetime = self.config.max_session_seconds or 3600
            return LiveTranslation(ids, caps, model=entry.model_name, expires_at=int(time.time() + lifetime),
                                   max_frame_bytes=MAX_EVENT_SIZE, switch_buffer_ms=switch_ms, options=entry.options)
        kind = "transcription" if transcription or caps.kind == "transcription" else "realtime"
        # A handshake that named no model gets the first transcription model for its transcription sessions.
        default = entry.model_name if named else self._default_model("realtime", True)
        return Translator(ids, caps, dialect=dialect, max_frame_bytes=MAX_EVENT_SIZE,
                          compression=entry.context_window_compression, switch_buffer_ms=switch_ms,
                          options=entry.options, kind=kind, model=entry.model_name, transcribers=self._transcribers,
                          default_transcriber=default)

    async def handle(self, conn: IncomingConnection, key: ClientKey | None = None,
                     dialect: Dialect | None = None) -> None:
        """Serve one upgrade request to its end.  `key`: the client is already trusted as this key (relay.library,
        in-process); `dialect`: stated by the caller rather than read from the request."""
        req = conn.request
        url = urlsplit(req.path)
        if self.draining:
            self.totals.refused["draining"] += 1
            await conn.reject(503, _error_body("The relay is shutting down; connect again to reach another instance.",
                                               "server_error", "service_unavailable"))
            return
        path = url.path.rstrip("/")
        route = "translation" if path.endswith("/realtime/translations") else "realtime" \
            if path.endswith("/realtime") else None
        if route is None:
            self.totals.refused["not_found"] += 1
            log.info("refused a handshake for %s: no such route", url.path)
            await conn.reject(404, _error_body(f"No route for {url.path}; use /v1/realtime?model=NAME or "
                                               "/v1/realtime/translations?model=NAME.",
                                               "invalid_request_error", "not_found"))
            return
        key = key or self._key_of(req)
        if key is None:
            self.totals.refused["invalid_api_key"] += 1
            log.info("refused a handshake: %s API key", "wrong" if client_key(req) else "no")
            await conn.reject(401, _error_body("Incorrect API key provided.", "invalid_request_error",
                                               "invalid_api_key"))
            return
        query = parse_qs(url.query)
        model = (query.get("model") or [None])[0]
        transcription = (query.get("intent") or [None])[0] == "transcription"
        refused = self._route_refusal(route, model, transcription)
        if refused is not None:
            status, why, body = refused
            self.totals.refused[why] += 1
            log.info("refused a handshake: %s", orjson.loads(body)["error"]["message"])
            await conn.reject(status, body)
            return
        named = model is not None
        if model is None:
            model = self._default_model(route, transcription)
        assert model is not None
        refusal = self._over_limit(key)
        if refusal is not None:
            await conn.reject(429, _error_body(refusal, "invalid_request_error", "rate_limit_exceeded"))
            return
        # Browsers fail a handshake whose offered subprotocols get no answer; never echo the key entry.
        subprotocol = "realtime" if "realtime" in req.subprotocols else None
        client = await conn.accept(subprotocol)
        dialect, remote = dialect or dialect_of(req), req.remote
        # The request (its headers, decoded) is not needed past here; the session may live for hours.
        del conn, req
        entry = self.config.model(model)
        assert entry is not None
        translator = self._translator(entry, route, transcription, dialect, named)
        label = f"[{translator.session.id} {model}]"
        SESSION.set({"session": translator.session.id, "model": model, "key": key.name})
        started = trio.current_time()
        self.active_sessions += 1
        opened = (model, translator.dialect or "auto")
        self.totals.open[opened] += 1
        self.totals.started[opened] += 1
        self.totals.live[id(translator)] = (model, translator)
        self.totals.by_key[key.name] += 1
        reason = "relay_error"
        session: Session | None = None
        log.info("%s connected (dialect %s) from %s", label, translator.dialect or "from first event", remote,
                 extra={"fields": {"event": "session_start", "client": remote,
                                   "dialect": translator.dialect or "auto"}})
        try:
            session = Session(
                client, translator, self.upstreams[model], label, self._open_upstream, self.config.response_timeout,
                self.config.client_send_buffer, self.stats, model=model,
                max_events_per_second=self.config.max_events_per_second,
                max_seconds=self.config.max_session_seconds, deadlines=self._deadlines, upstreams=self.upstreams,
                **self._timers.for_model(model),
            )
            self._sessions.add(session)
            if self.draining:
                session.drain()
            await session.run()
            reason = session.end_reason
        except Exception:
            # A relay bug must not pass silently; the client sees the socket close with 1011.
            log.exception("%s session failed", label)
            with trio.CancelScope(shield=True):
                await client.close(1011, "relay internal error")
        finally:
            if session is not None:
                self._sessions.discard(session)
                if not self._sessions:
                    self._all_ended.set()
            self.active_sessions -= 1
            self.totals.open[opened] -= 1
            self.totals.by_key[key.name] -= 1
            self.totals.session_ended(id(translator), reason)
            with trio.CancelScope(shield=True):
                await client.close(1000, "")
            totals = {"event": "session_end", "end_reason": reason,
                      "duration_s": round(trio.current_time() - started, 3), "turns": translator.turns,
                      "audio_in_s": round(translator.audio_in_seconds, 3),
                      "audio_out_s": round(translator.audio_out_seconds, 3), "tokens_in": translator.tokens_in,
                      "tokens_out": translator.tokens_out}
            log.info("%s closed (%s, %.1f s, %d turns)", label, reason, totals["duration_s"], translator.turns,
                     extra={"fields": totals})
