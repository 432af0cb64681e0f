"""A deterministic Gemini Live (BidiGenerateContent) server.

It is the relay's test upstream, its embedded demo upstream and the benchmark target, so it
speaks the real wire protocol (see ``protocols.md`` section 2) but answers predictably. Every
option named below is a field of ``EmulatorOptions`` (``options.py``).

Endpoints (a query string is allowed, and so is a leading ``//`` which the google-genai SDK
sends); anything else is refused with HTTP 404:

* Vertex AI: ``/ws/google.cloud.aiplatform.{v1,v1beta1}.LlmBidiService/BidiGenerateContent``;
  with ``EmulatorOptions.bearer_token`` set, ``Authorization: Bearer <token>`` is required.
* AI Studio: ``/ws/google.ai.generativelanguage.{v1,v1beta,v1alpha}.GenerativeService.BidiGenerateContent``;
  with ``EmulatorOptions.api_key`` set, header ``x-goog-api-key`` or query ``?key=`` must match.

Authentication failures are refused with HTTP 401. All refusals carry a Google-shaped JSON body,
``{"error": {"code": N, "message": M, "status": S}}``.

Connections and handshake faults:

* ``Emulator.connections`` counts accepted WebSocket connections; ``Emulator.live`` those open
  right now: one more when a session starts, one less when it has ended on the emulator side,
  whatever the way (either side's close, a dropped TCP connection, a crashed session, shutdown).
  With ``transport="websockets"`` a close the emulator starts ends once the client's TCP end of
  stream arrives (or 5 s later).
* ``Emulator.handshake_faults`` (a ``collections.deque[int]``, empty by default): while it is not
  empty, every upgrade request, on either transport, pops one HTTP status and is refused with it,
  before its path or credentials are looked at; such requests are not counted as connections.
  401 UNAUTHENTICATED, 403 PERMISSION_DENIED, 404 NOT_FOUND, 429 RESOURCE_EXHAUSTED, 500 INTERNAL
  and 503 UNAVAILABLE get their google.rpc status and message (``network.HANDSHAKE_ERRORS``), any
  other status the status ``UNKNOWN``. Status 0 (``network.DEAD_HANDSHAKE``) is a dead handshake:
  the TCP connection that sent the request is closed at once, without an answer. Status -1
  (``network.STALLED_HANDSHAKE``) is a stalled one: the request is read and never answered, and its
  TCP connection is held open until the emulator stops, so the client's connect timeout runs out.

Session behaviour:

* The first message must be ``setup`` (with a ``model``); the answer is ``{"setupComplete": {}}``.
  Anything before it, a second ``setup``, an unknown message or a malformed body closes with
  1007; unparseable JSON closes with 1007 "Invalid JSON payload received.". Both camelCase and
  snake_case keys are accepted, in text or binary frames. Every parsed client message is kept in
  ``Emulator.received`` and, per connection, in ``Emulator.by_connection``.
* ``clientContent`` appends its turns to the history and, with ``turnComplete``, replies to the
  last user text; ``realtimeInput.text`` is a user turn that is answered at once. Images are under
  Models and images, ``toolResponse`` under Function calling below.
* The reply is ``"Echo: <user text>"``, cut to ``generationConfig.maxOutputTokens`` words. In
  TEXT modality it streams as ``modelTurn`` text parts of ``chunk_words`` words; in AUDIO
  modality as 24 kHz 16-bit PCM of a tone, 60 ms per word, in ``audio_chunk_ms`` chunks,
  interleaved with ``outputTranscription`` pieces when ``outputAudioTranscription`` was set up
  (each piece just before the audio chunk in which its first word starts).
  Then ``generationComplete``, then ``turnComplete`` with ``usageMetadata`` (one token per
  word; Vertex spells the output ``candidates*``, AI Studio ``response*``), then, if
  ``sessionResumption`` was set up, a ``sessionResumptionUpdate`` (see Session resumption), then,
  if this was the connection's ``goaway_after_turns``-th completed reply, ``goAway``.
* The tone is 440 Hz without ``generationConfig.speechConfig.voiceConfig.prebuiltVoiceConfig
  .voiceName``; a voice picks (case-insensitively) Puck 520, Charon 600, Kore 660, Fenrir 720,
  Aoede 780, Leda 840, Orus 900, Zephyr 960 Hz; any other name gets
  ``[520, 600, 660, 720, 780, 840, 900, 960][crc32(name.lower()) % 8]`` (``wire.voice_tone_hz``).
* Any ``clientContent`` or ``realtimeInput.text`` arriving while a reply streams stops it and
  sends ``{"serverContent": {"interrupted": true}}`` before anything else.

Session resumption (``setup.sessionResumption``, even ``{}``):

* A *logical session* is one conversation: it starts with a setup without a handle and goes on
  through every connection that resumes it. Its id is ``emu-<n>`` (``emu-1``, ``emu-2``, ... in the
  order they start); ``Emulator.session_ids()`` lists them, ``Emulator.sessions_history(id)`` gives
  a copy of its current history (its newest connection's) and ``Emulator.session(id)`` its record,
  whose ``config`` is the newest connection's setup as changed by ``contextUpdate``. Sessions
  without ``sessionResumption`` are logical sessions too; they just get no handles.
* ``{"sessionResumptionUpdate": {"newHandle": H, "resumable": true}}`` is sent right after
  ``setupComplete`` and after every completed reply (after its ``turnComplete``). ``H`` is
  ``emu-<n>-c<k>-h<m>``: logical session ``emu-<n>``, its ``k``-th connection (1 for the one that
  started it), its ``m``-th handle (counted over the whole logical session). A handle restores the
  history as it was when the handle was issued; only the newest handle of a logical session is
  valid, and it expires ``handle_ttl`` seconds (default 7200) after it was issued.
* Right after a ``toolCall`` (before any ``toolCallCancellation``) comes
  ``{"sessionResumptionUpdate": {"resumable": false}}``, with no handle; the previous handle stays
  valid. The reply that continues after the ``toolResponse`` issues a new handle when it completes.
* A setup with ``sessionResumption.handle`` resumes: the logical session's history is restored and
  everything else (model, modality, voice, systemInstruction, tools, transcription, activity
  detection, compression) comes from the new setup. An unknown, superseded or expired handle closes
  with 1008 "BidiGenerateContent session not found."; a resume while another connection of the
  same logical session is still open on the emulator side (``Emulator.live`` counts it) closes with
  1011 "Internal error occurred.", as Gemini does.
* ``sessionResumption.transparent: true`` closes with 1007 "Request contains an invalid argument."
  on AI Studio (the Gemini API rejects it); on Vertex every update (with or without a handle) then
  also carries ``"lastConsumedClientMessageIndex"``: the 0-based index, as a string (proto int64),
  of the newest client message received on this connection, setup being 0.

goAway and connection deadline:

* ``goaway_after_turns`` = N (0 = never): ``{"goAway": {"timeLeft": T}}`` right after the N-th
  completed reply (one that reached ``turnComplete``) of a connection, counted per connection (a
  resumed one starts at 0 again), after that reply's ``sessionResumptionUpdate``.
* ``goaway_after_seconds`` = S (0 = never): ``goAway`` S seconds after ``setupComplete``.
* ``[fault:goaway]`` (below) sends one before its reply.
* T is ``goaway_time_left`` (default 50) as a proto Duration in its shortest form ("50s",
  "0.5s"). A connection sends at most one goAway, whatever asked for it. Once T has passed after a
  goAway, a connection still open closes with 1011 "Deadline expired before operation could
  complete."; until then it works as before.

Context window:

* A history entry costs what a reply's prompt is charged for it (Prompt tokens, below): one token
  per word of user text, ``ceil(ms / 40)`` per spoken turn, 258 per image, nothing for model turns. The history's
  tokens are thus the next reply's ``promptTokenCount``.
* When a reply is about to start, with ``setup.contextWindowCompression`` (``{"triggerTokens": N,
  "slidingWindow": {"targetTokens": M}}``, both optional, numbers or int64 strings), a history of
  more than N tokens loses its oldest entries until it has at most M; ``Emulator.compressions``
  counts the times. N defaults to 80 % of ``context_limit_tokens`` (of 131072 when that is 0), M to
  N / 2 (rounded down). Compression applies whether or not a limit is set.
* ``context_limit_tokens`` (0 = unlimited): a reply about to start with a history (compressed, if
  set up) of more tokens closes with 1007 "The input token count exceeds the maximum number of
  tokens allowed.".

``contextUpdate`` (``{"contextUpdate": {"systemInstruction": {...}, "tools": [...]}}``, both keys
optional; ``tools`` may also be the SDK's ``{"tools": [...]}``): for a model matching the regex
``context_update_models`` (searched in ``setup.model``; default ``gemini-3\\.8``) it replaces the
system instruction and/or the declared functions for the turns that follow; for any other model it
closes with 1007 'Invalid JSON payload received. Unknown name "contextUpdate": Cannot find field.'.
It is recorded in ``received`` like every message.

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
relay's own sans-IO transport (``relay.transport.sansio``), which a benchmark uses so that the emulator
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
  25 per second). ``promptTokensDetails`` lists AUDIO (and IMAGE) when there is some and TEXT
  unless the prompt has no text but something else.
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

Fault triggers, written anywhere in the user text of a turn (checked when its reply starts, after
the context window):

* ``[fault:close-1011]``: close 1011 "Internal error occurred." instead of replying.
* ``[fault:close-1007]``: close 1007 "Request contains an invalid argument.".
* ``[fault:close-1008]``: close 1008 "Requested entity was not found.".
* ``[fault:close-1000]``: close 1000 with an empty reason; ``[fault:close-1001]``: close 1001
  "going away".
* ``[fault:mid-1011]``, ``[fault:mid-1007]``, ``[fault:mid-1008]``: send the first reply chunk,
  then close with that code and the reason of the matching ``close-`` fault.
* ``[fault:mid-1006]``: send the first reply chunk, then drop the TCP connection without a close
  frame (the client sees 1006).
* ``[fault:binary]``: send every frame of this turn as a binary WebSocket message (UTF-8 JSON).
* ``[fault:goaway]``: send ``{"goAway": {"timeLeft": T}}`` before the reply, unless this
  connection already sent one (see goAway and connection deadline).
* ``[fault:slow]``: wait 0.5 s between the reply chunks of this turn.
* ``[fault:cancel-tools]``: send ``toolCallCancellation`` right after this turn's tool calls.
* ``[fault:silent]``: take the turn and never answer it (the connection stays up).

Function calling (``relay/emulator/tools.py``): a user text turn that names a function declared in
``setup.tools`` (or by a later ``contextUpdate``) is answered with a ``toolCall`` (deterministic
arguments, ids ``function-call-<session>-<n>`` with ``n`` counted over the logical session); once a
``toolResponse`` answers every call, the model continues by itself with
``Result: <name> <response JSON>``. When every call of a toolCall runs NON_BLOCKING (below), the
model goes on in the same turn ("Let me check that.", ``turnComplete``) and answers the
``toolResponse`` in a new turn: after what it is saying, at once after ``interrupted`` with
``scheduling: INTERRUPT``, not at all with ``SILENT``. Until then no resumption handle is issued.

Models and images (rows in ``models.py``, matched on the model id after the last ``/``; unmatched
models behave as described above and accept every field):

* Refused at setup with 1007 "Request contains an invalid argument.": TEXT on native-audio models
  (on every ``gemini-3.8-live*`` model the reason adds "The supported response modality is AUDIO;
  enable output audio transcription."); on 3.8 any ``thinkingConfig``, ``enableAffectiveDialog`` and
  ``proactiveAudio: false``; on 3.8 extended thinking a ``thinkingLevel`` other than LOW/MEDIUM/HIGH
  (or none, or a ``thinkingBudget``), a BLOCKING declaration (in a ``contextUpdate`` too), affective
  dialog and ``proactiveAudio: false``; on other 3.x previews ``thinkingBudget``, a level outside
  MINIMAL..HIGH, NON_BLOCKING, either affective dialog or proactive audio, and (mid-session) a
  ``clientContent`` turn without ``role``; on 2.5 native audio ``thinkingLevel``.
* Calls run NON_BLOCKING on 3.8 unless declared BLOCKING, on extended thinking always, on 2.5 native
  audio when declared so; only these honour ``scheduling``. Extended thinking puts ``interactionStatus``
  on every ``turnComplete``: IN_PROGRESS while a NON_BLOCKING call runs, REQUIRES_ACTION after a call
  it waits on, else IDLE.
* A setup that turns thinking on (a ``thinkingLevel`` above MINIMAL, a ``thinkingBudget`` > 0 or
  ``includeThoughts``; not on unmatched models) starts every reply with one
  ``{"text": ..., "thought": true}`` part, and its usage gains ``thoughtsTokenCount`` (in the total).
* Images, any model: ``realtimeInput.video`` and ``inlineData`` image parts of ``clientContent`` turns
  (``image/jpeg``, ``image/png`` or ``image/webp``; another type closes 1007, bad base64 1007
  "Invalid JSON payload received.") join the history at 258 prompt tokens each (IMAGE in
  ``promptTokensDetails``), and the next reply appends `` [image <mimeType> <bytes> bytes]`` per image.
* One backend only: ``setup.labels`` and ``functionResponses[].willContinue`` close 1007 on Vertex,
  ``explicitVadSignal`` (in ``setup`` or its ``realtimeInputConfig``) on AI Studio.

Listening models (rows of ``kind`` transcription and translation; both backends alike). Their
refusals close 1007 with "Request contains an invalid argument." followed by a sentence
(``models.TRANSCRIPTION_TEXT_ONLY`` and its siblings):

* ``gemini-3.5-transcribe-live*`` (speech to text; ``-preview`` on Vertex): ``responseModalities``
  must be TEXT (AUDIO, or none, closes "... The transcription model answers in TEXT; ..."); non-empty
  ``tools`` close "... This model takes no tools."; the rest is accepted, and ``speechConfig`` and
  both audio transcriptions are ignored. Each spoken turn (automatic detection, or
  ``activityStart``/``activityEnd`` with it disabled) is answered with its transcript (``"audio <N>
  ms"``, or ``audio_transcript``) as ``modelTurn`` text parts of ``chunk_words`` words, then
  ``{"serverContent": {"turnComplete": true}, "usageMetadata": U}``: U's prompt is the turn's own
  audio (``ceil(N / 40)``, AUDIO), its output one token per word (TEXT). No ``generationComplete``,
  no audio, no ``inputTranscription`` or ``outputTranscription``.
* ``gemini-3.5-live-translate*`` (speech to speech): ``responseModalities`` must be AUDIO (TEXT
  closes "... The translation model answers in AUDIO; ..."); non-empty ``tools``, a
  ``systemInstruction`` and ``automaticActivityDetection.disabled: true`` close with their reasons.
  ``generationConfig.translationConfig.targetLanguageCode`` must match
  ``[a-z]{2,3}(-[A-Za-z0-9]{2,8})*`` and ``echoTargetLanguage`` be a bool (it is ignored), else
  1007 "Request contains an invalid argument.". Each spoken turn gets, with
  ``inputAudioTranscription``, its transcript as ``inputTranscription`` pieces and ``finished``;
  then speech of ``"[<code>] <transcript>"`` as an AUDIO reply (the voice's tone, 60 ms per word or
  ``reply_audio_chunks``) with ``outputTranscription`` pieces, whether or not
  ``outputAudioTranscription`` was set up; then turnComplete with U: the turn's audio tokens in,
  ``ceil(ms / 40)`` of the audio said out (AUDIO). Without ``translationConfig`` a turn gets (after
  its ``inputTranscription``, if set up) all-zero 24 kHz PCM as long as the turn (at least one
  ``audio_chunk_ms`` chunk) and nothing more: no ``outputTranscription``, no turnComplete, no handle
  (what Gemini does, LiteLLM PR #41408).
* Both: ``clientContent``, ``toolResponse``, ``realtimeInput.text`` and ``realtimeInput.video``
  close "... This model hears only audio (realtimeInput.audio)."; speech never interrupts them
  (whatever ``activityHandling``): a turn that ends while another is answered is answered after it,
  in order. Each turn stands alone, so ``contextWindowCompression`` and ``context_limit_tokens`` do
  not apply. Resumption handles, goAway and fault markers (in ``audio_transcript``) work as above.
"""

from __future__ import annotations

import collections
import logging
import ssl
from functools import partial
from typing import TYPE_CHECKING

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket

from .network import DEAD_HANDSHAKE, STALLED_HANDSHAKE, drop_connection, error_body, fault_body
from .options import DEFAULT_OPTIONS, EmulatorOptions
from .registry import Registry
from .seam import SeamWebSocket
from .session import Session
from .wire import INTERNAL_ERROR, Backend, Endpoint, parse_target

if TYPE_CHECKING:
    from relay.transport import IncomingConnection

__all__ = ["Emulator", "EmulatorOptions", "run_emulator"]

log = logging.getLogger(__name__)

_MAX_MESSAGE_SIZE = 16 * 1024 * 1024  # clientContent with long histories is large


class Emulator(Registry):
    """A Gemini Live server; one instance may serve any number of connections.

    What it records (``received``, ``by_connection``, ``connections``, ``live``, ``compressions``,
    the logical sessions) is described on ``Registry``. ``handshake_faults`` is a queue of HTTP
    statuses: while it is not empty, each upgrade request takes one and is refused with it (0: the
    TCP connection is closed without an answer; -1: the request is never answered).
    """

    def __init__(self, options: EmulatorOptions = DEFAULT_OPTIONS) -> None:
        super().__init__(options.handle_ttl)
        self.options = options
        self.handshake_faults: collections.deque[int] = collections.deque()

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
                from relay.transport.registry import get_transport

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

    # -- connections ---------------------------------------------------------------------------

    async def _handle(self, request: WebSocketRequest) -> None:
        endpoint = parse_target(request.path)
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in request.headers}
        try:
            refusal = self._refusal(endpoint, headers)
            if refusal is not None:
                status, body = refusal
                if status == DEAD_HANDSHAKE:
                    await drop_connection(request)
                elif status == STALLED_HANDSHAKE:
                    await trio.sleep_forever()
                else:
                    # A fresh list: trio-websocket appends its Content-Length to the one it is given.
                    await request.reject(status, extra_headers=[(b"content-type", b"application/json")], body=body)
                return
            ws = await request.accept()
        except ConnectionClosed:
            return
        assert endpoint is not None
        await self._run_session(ws, endpoint)

    async def _handle_seam(self, conn: IncomingConnection) -> None:
        """The same as ``_handle`` for a connection from a ``relay.transport`` seam server."""
        from relay.transport import SocketClosed

        endpoint = parse_target(conn.request.path)
        headers = {name.lower(): value for name, value in conn.request.headers}
        try:
            refusal = self._refusal(endpoint, headers)
            if refusal is not None:
                status, body = refusal
                if status == DEAD_HANDSHAKE:
                    await drop_connection(conn)
                elif status == STALLED_HANDSHAKE:
                    await trio.sleep_forever()
                else:
                    await conn.reject(status, body)
                return
            sock = await conn.accept()
        except SocketClosed:
            return
        assert endpoint is not None
        await self._run_session(SeamWebSocket(sock), endpoint)

    def _refusal(self, endpoint: Endpoint | None, headers: dict[str, str]) -> tuple[int, bytes] | None:
        """(HTTP status, body) to refuse an upgrade with (``DEAD_HANDSHAKE``: drop it unanswered,
        ``STALLED_HANDSHAKE``: never answer it), or None to accept it."""
        if self.handshake_faults:
            status = self.handshake_faults.popleft()
            return status, fault_body(status) if status > 0 else b""
        if endpoint is None:
            return 404, error_body(404, "NOT_FOUND", "Not Found")
        if not self._authorized(headers, endpoint):
            return 401, error_body(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        return None

    async def _run_session(self, ws: WebSocketConnection | SeamWebSocket, endpoint: Endpoint) -> None:
        session = Session(self, self.options, ws, endpoint)  # type: ignore[arg-type]  # SeamWebSocket has the API used
        try:
            await session.run()
        except Exception:
            # One broken session must not take the whole server (and every other test) down.
            log.exception("emulator: session crashed")
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await ws.aclose(*INTERNAL_ERROR)
        finally:
            # Whatever the way it ended, the socket is closed by now: the session may be resumed.
            self.connection_closed(session.logical)

    def _authorized(self, headers: dict[str, str], endpoint: Endpoint) -> bool:
        if endpoint.backend is Backend.VERTEX:
            token = self.options.bearer_token
            if token is None:
                return True
            scheme, _, value = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer":
                return False
            return token(value.strip()) if callable(token) else value.strip() == token
        key = self.options.api_key
        if key is None:
            return True
        return headers.get("x-goog-api-key") == key or key in endpoint.query.get("key", [])


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def run_emulator(
    host: str, port: int, options: EmulatorOptions = DEFAULT_OPTIONS, *, ssl_context: ssl.SSLContext | None = None
) -> None:
    """Serve an emulator forever (``wss://`` with ``ssl_context``), announcing the address on stdout once it is
    listening."""
    emulator = Emulator(options)
    scheme = "ws" if ssl_context is None else "wss"
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(partial(emulator.serve, host, port, ssl_context=ssl_context))
        print(f"Gemini Live emulator listening on {scheme}://{_url_host(host)}:{bound}", flush=True)
