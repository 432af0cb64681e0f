"""A deterministic Gemini Live (BidiGenerateContent) server.

It is the relay's test upstream, its embedded demo upstream and the benchmark target, so it
speaks the real wire protocol (see ``protocols.md`` section 2) but answers predictably.

Endpoints (a query string is allowed, and so is a leading ``//`` which the google-genai SDK
sends); anything else is refused with HTTP 404:

* Vertex AI: ``/ws/google.cloud.aiplatform.{v1,v1beta1}.LlmBidiService/BidiGenerateContent``;
  with ``EmulatorOptions.bearer_token`` set, ``Authorization: Bearer <token>`` is required.
* AI Studio: ``/ws/google.ai.generativelanguage.{v1,v1beta,v1alpha}.GenerativeService.BidiGenerateContent``;
  with ``EmulatorOptions.api_key`` set, header ``x-goog-api-key`` or query ``?key=`` must match.

Authentication failures are refused with HTTP 401.

Session behaviour:

* The first message must be ``setup`` (with a ``model``); the answer is ``{"setupComplete": {}}``.
  Anything before it, a second ``setup``, an unknown message or a malformed body closes with
  1007; unparseable JSON closes with 1007 "Invalid JSON payload received.". Both camelCase and
  snake_case keys are accepted, in text or binary frames.
* ``clientContent`` appends its turns to the history and, with ``turnComplete``, replies to the
  last user text; ``realtimeInput.text`` is a user turn that is answered at once. Video and
  ``toolResponse`` are only recorded.
* The reply is ``"Echo: <user text>"``, cut to ``generationConfig.maxOutputTokens`` words. In
  TEXT modality it streams as ``modelTurn`` text parts of ``chunk_words`` words; in AUDIO
  modality as 24 kHz 16-bit PCM of a tone, 60 ms per word, in ``audio_chunk_ms`` chunks,
  interleaved with ``outputTranscription`` pieces when ``outputAudioTranscription`` was set up
  (each piece just before the audio chunk in which its first word starts).
  Then ``generationComplete``, then ``turnComplete`` with ``usageMetadata`` (one token per
  word; Vertex spells the output ``candidates*``, AI Studio ``response*``), then, if
  ``sessionResumption`` was set up, ``sessionResumptionUpdate`` with handle
  ``emu-<session>-h<turn>``. Setting up with that (newest) handle restores the history;
  an unknown handle closes with 1008.
* The tone is 440 Hz without ``generationConfig.speechConfig.voiceConfig.prebuiltVoiceConfig
  .voiceName``; a voice picks (case-insensitively) Puck 520, Charon 600, Kore 660, Fenrir 720,
  Aoede 780, Leda 840, Orus 900, Zephyr 960 Hz; any other name gets
  ``[520, 600, 660, 720, 780, 840, 900, 960][crc32(name.lower()) % 8]`` (``wire.voice_tone_hz``).
* Any ``clientContent`` or ``realtimeInput.text`` arriving while a reply streams stops it and
  sends ``{"serverContent": {"interrupted": true}}`` before anything else.

Echo mode (``EmulatorOptions.echo_audio``, the benchmark upstream): every ``realtimeInput`` audio
chunk (``audio`` or ``mediaChunks``, ``audio/pcm`` only) after setup goes straight back as
``{"serverContent": {"modelTurn": {"parts": [{"inlineData": {"mimeType": M, "data": D}}]}}}`` with
the chunk's own mimeType and base64 string. There is no activity detection, no barge-in and no
reply to audio (``activityStart``/``activityEnd`` are accepted in manual mode but end no turn), and
no ``turnComplete`` follows; text turns are answered as usual. Echoed audio messages are not kept
in ``Emulator.received``, since a benchmark streams tens of thousands of them.

Fixed-length audio replies (``EmulatorOptions.reply_audio_chunks`` = N, the benchmark's long
reply): every AUDIO reply is exactly N chunks of ``audio_chunk_ms`` of tone (N x 4,800 bytes at the
default 100 ms), whatever its text; the reply text and its usage are unchanged, and the
``outputTranscription`` pieces are spread evenly over the N chunks (piece k of the reply's words
goes just before the chunk in which word k's share of the audio starts). Text replies are not
affected, and neither is echo mode, so one emulator serves every benchmark scenario.

Transport (``EmulatorOptions.transport``): ``trio-websocket`` (the default) or ``websockets``, the
relay's own sans-IO transport (``relay.transport_ws``), which a benchmark uses so that the emulator
costs less per message than the relay it measures. The behaviour on the wire is the same.

Audio input (``realtimeInput.audio`` or the deprecated ``realtimeInput.mediaChunks``):

* ``audio/pcm;rate=N`` is 16-bit little-endian mono PCM at N Hz (16000 without ``rate``); other
  media types are only recorded; bad base64 closes 1007 "Invalid JSON payload received.".
  Durations are ``samples * 1e6 // N`` microseconds per chunk.
* Automatic activity detection (unless ``realtimeInputConfig.automaticActivityDetection
  .disabled`` is true) judges every chunk whole: it is speech when the RMS of its samples exceeds
  ``vad_threshold``. Speech starts at the first loud chunk and lasts until the end of the last
  loud one. It ends once ``silenceDurationMs`` (else ``vad_silence_ms``) of quiet audio followed
  it, once it reached ``vad_max_speech_ms`` (0 = never; speech that goes on starts a new turn at
  its next loud chunk, which barges in on the reply to the cut one), or on ``audioStreamEnd``.
* With detection disabled, a turn is all audio (loud or not) between ``activityStart`` and
  ``activityEnd``; audio outside such a pair is ignored, a repeated ``activityStart`` or an
  ``activityEnd`` with no open turn does nothing; a turn without audio is "audio 0 ms".
  ``activityStart``/``activityEnd`` with detection on close 1007 "Request contains an invalid
  argument.".
* ``audioStreamEnd`` ends speech at once on AI Studio (it does nothing with detection disabled);
  on Vertex, which has no such field, it closes 1007 "Request contains an invalid argument.".
* A turn of D microseconds lasts ``N = round(D / 10 ms) * 10`` ms (halves up) and its transcript is
  ``"audio <N> ms"``. With ``inputAudioTranscription`` set up, it is sent as ``inputTranscription``
  pieces of ``chunk_words`` words and then ``{"inputTranscription": {"finished": true}}``; then it
  is answered like a text turn (``"Echo: audio <N> ms"``) in the session's modality.
* Prompt tokens: one per word of user text (TEXT) plus ``ceil(N / 40)`` per audio turn (AUDIO,
  25 per second). ``promptTokensDetails`` lists AUDIO when there is some and TEXT unless the
  prompt is audio only.
* Barge-in: unless ``activityHandling`` is ``NO_INTERRUPTION``, a loud chunk (detection on) or an
  ``activityStart`` (detection off) stops a streaming reply: ``interrupted`` is sent and what was
  already sent stays in the history. With ``NO_INTERRUPTION`` such a reply goes on, and a turn
  that ends meanwhile is transcribed and answered once it has completed. A text turn stops both
  the reply and such a waiting turn; the spoken turn still enters the history and is transcribed
  (before ``interrupted``), but gets no answer of its own.
* Pacing: replies go out back to back unless ``chunk_delay`` is set or the turn has
  ``[fault:slow]``, which waits between chunks (an ``outputTranscription`` piece never waits for
  its audio chunk). With ``audio_realtime`` each AUDIO chunk is followed by a wait of its own
  playback time (at least), so speech can barge in mid-reply.

Fault triggers, written anywhere in the user text of a turn:

* ``[fault:close-1011]``: close 1011 "Internal error occurred." instead of replying.
* ``[fault:close-1007]``: close 1007 "Request contains an invalid argument.".
* ``[fault:close-1008]``: close 1008 "Requested entity was not found.".
* ``[fault:mid-1011]``: send the first reply chunk, then close 1011 "Internal error occurred.".
* ``[fault:binary]``: send every frame of this turn as a binary WebSocket message (UTF-8 JSON).
* ``[fault:goaway]``: send ``{"goAway": {"timeLeft": "50s"}}`` before the reply.
* ``[fault:slow]``: wait 0.5 s between the reply chunks of this turn.
* ``[fault:cancel-tools]``: send ``toolCallCancellation`` right after this turn's tool calls.
* ``[fault:silent]``: take the turn and never answer it (the connection stays up).

Function calling (``relay/emulator/tools.py``): a user text turn that names a function declared in
``setup.tools`` is answered with a ``toolCall`` (deterministic arguments); once a ``toolResponse``
answers every call, the model continues by itself with ``Result: <name> <response JSON>``.
"""

from __future__ import annotations

import logging
import ssl
from functools import partial
from typing import TYPE_CHECKING

import attrs
import orjson
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket

from .seam import SeamWebSocket
from .session import ResumeState, Session
from .wire import INTERNAL_ERROR, Backend, Endpoint, parse_target

if TYPE_CHECKING:
    from relay.transport import IncomingConnection

__all__ = ["Emulator", "EmulatorOptions", "run_emulator"]

log = logging.getLogger(__name__)

_MAX_MESSAGE_SIZE = 16 * 1024 * 1024  # clientContent with long histories is large


@attrs.frozen
class EmulatorOptions:
    """How the emulator authenticates, paces its replies and detects speech in input audio."""

    #: If set, Vertex-path requests must carry ``Authorization: Bearer <token>``.
    bearer_token: str | None = None
    #: If set, AI-Studio-path requests must carry ``x-goog-api-key`` or ``?key=`` equal to it.
    api_key: str | None = None
    #: Words per streamed text or transcription chunk.
    chunk_words: int = 3
    #: Seconds between reply chunks (0 = back to back).
    chunk_delay: float = 0.0
    #: Milliseconds of 24 kHz PCM per ``inlineData`` chunk in AUDIO replies.
    audio_chunk_ms: int = 100
    #: Pace AUDIO replies in real time: after each chunk, wait as long as it plays.
    audio_realtime: bool = False
    #: An input audio chunk is speech when the RMS of its 16-bit samples exceeds this.
    vad_threshold: float = 500.0
    #: Quiet audio that ends speech unless setup's ``silenceDurationMs`` says otherwise.
    vad_silence_ms: int = 500
    #: Speech is cut into a turn once it lasts this long (0 = no limit).
    vad_max_speech_ms: int = 0
    #: What the emulator "hears" in every spoken turn, instead of ``"audio <N> ms"`` (so a voice
    #: turn can name a tool, e.g. ``"get_time please"``).
    audio_transcript: str | None = None
    #: Benchmark mode: send every input audio chunk straight back as a ``modelTurn`` ``inlineData``
    #: part (same mimeType, same base64 string) instead of detecting speech and answering turns.
    echo_audio: bool = False
    #: Benchmark: every AUDIO reply is exactly this many ``audio_chunk_ms`` chunks of tone, whatever
    #: its text (0 = ``MS_PER_WORD`` per word); the transcript is spread evenly over that audio.
    reply_audio_chunks: int = 0
    #: The WebSocket implementation serving connections: ``trio-websocket``, or ``websockets``
    #: (the relay's sans-IO transport, ``relay.transport_ws``) so that a benchmark's load side
    #: costs less per message than the relay it measures.
    transport: str = "trio-websocket"


_DEFAULT_OPTIONS = EmulatorOptions()


def _error_body(code: int, status: str, message: str) -> bytes:
    # Same shape as Google's HTTP errors, so clients that print the body show something familiar.
    return orjson.dumps({"error": {"code": code, "message": message, "status": status}})


class Emulator:
    """A Gemini Live server; one instance may serve any number of connections.

    ``received`` holds every parsed client message of every connection in arrival order,
    ``by_connection`` the same per connection (in the order they opened), and ``connections`` counts
    accepted WebSocket connections; tests read them.
    """

    def __init__(self, options: EmulatorOptions = _DEFAULT_OPTIONS) -> None:
        self.options = options
        self.received: list[dict] = []
        self.by_connection: list[list[dict]] = []
        self.connections = 0
        self._sessions = 0
        self._handles: dict[str, ResumeState] = {}
        self._latest_handle: dict[str, str] = {}

    async def serve(
        self,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``host:port`` (0 = ephemeral), report the bound port, serve until cancelled.

        ``ssl_context`` turns on TLS (``wss://``); the google-genai SDK only speaks ``wss``.
        """
        async with trio.open_nursery() as nursery:
            if self.options.transport != "trio-websocket":
                # Imported on demand: the seam and its transports are the relay's, not needed otherwise.
                from relay.transport import get_transport

                transport = get_transport(self.options.transport)
                bound = await nursery.start(
                    partial(transport.serve, self._handle_seam, host, port, ssl_context=ssl_context)
                )
                task_status.started(bound)
                return
            server = await nursery.start(
                partial(
                    serve_websocket,
                    self._handle,
                    host,
                    port,
                    ssl_context,
                    max_message_size=_MAX_MESSAGE_SIZE,
                )
            )
            task_status.started(server.port)

    # -- resumption bookkeeping, used by sessions ----------------------------------------------

    def new_session_id(self) -> str:
        """A deterministic id for a fresh (not resumed) session."""
        self._sessions += 1
        return f"emu-{self._sessions}"

    def remember(self, handle: str, state: ResumeState) -> None:
        """Make ``handle`` the resumable state of its session; older handles of it expire."""
        previous = self._latest_handle.get(state.session_id)
        if previous is not None:
            self._handles.pop(previous, None)
        self._latest_handle[state.session_id] = handle
        self._handles[handle] = state

    def resume(self, handle: str) -> ResumeState | None:
        """The state saved under ``handle``, or None if it is unknown or superseded."""
        return self._handles.get(handle)

    # -- connections ---------------------------------------------------------------------------

    async def _handle(self, request: WebSocketRequest) -> None:
        endpoint = parse_target(request.path)
        try:
            if endpoint is None:
                await request.reject(404, body=_error_body(404, "NOT_FOUND", "Not Found"))
                return
            headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in request.headers}
            if not self._authorized(headers, endpoint):
                body = _error_body(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
                await request.reject(401, body=body)
                return
            ws = await request.accept()
        except ConnectionClosed:
            return
        await self._run_session(ws, endpoint)

    async def _handle_seam(self, conn: IncomingConnection) -> None:
        """The same as ``_handle`` for a connection from a ``relay.transport`` seam server."""
        from relay.transport import SocketClosed

        endpoint = parse_target(conn.request.path)
        try:
            if endpoint is None:
                await conn.reject(404, _error_body(404, "NOT_FOUND", "Not Found"))
                return
            headers = {name.lower(): value for name, value in conn.request.headers}
            if not self._authorized(headers, endpoint):
                body = _error_body(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
                await conn.reject(401, body)
                return
            sock = await conn.accept()
        except SocketClosed:
            return
        await self._run_session(SeamWebSocket(sock), endpoint)

    async def _run_session(self, ws: WebSocketConnection | SeamWebSocket, endpoint: Endpoint) -> None:
        self.connections += 1
        try:
            await Session(self, ws, endpoint).run()  # type: ignore[arg-type]  # SeamWebSocket has the API used
        except Exception:
            # One broken session must not take the whole server (and every other test) down.
            log.exception("emulator: session crashed")
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await ws.aclose(*INTERNAL_ERROR)

    def _authorized(self, headers: dict[str, str], endpoint: Endpoint) -> bool:
        if endpoint.backend is Backend.VERTEX:
            token = self.options.bearer_token
            if token is None:
                return True
            scheme, _, value = headers.get("authorization", "").partition(" ")
            return scheme.lower() == "bearer" and value.strip() == token
        key = self.options.api_key
        if key is None:
            return True
        return headers.get("x-goog-api-key") == key or key in endpoint.query.get("key", [])


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def run_emulator(
    host: str, port: int, options: EmulatorOptions = _DEFAULT_OPTIONS, *, ssl_context: ssl.SSLContext | None = None
) -> None:
    """Serve an emulator forever (``wss://`` with ``ssl_context``), announcing the address on stdout once it is
    listening."""
    emulator = Emulator(options)
    scheme = "ws" if ssl_context is None else "wss"
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(partial(emulator.serve, host, port, ssl_context=ssl_context))
        print(f"Gemini Live emulator listening on {scheme}://{_url_host(host)}:{bound}", flush=True)
