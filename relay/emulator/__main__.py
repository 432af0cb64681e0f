"""Command line: ``python -m relay.emulator [--host H] [--port P] [options]``."""

from __future__ import annotations

import argparse
import ssl
import sys
from functools import partial

import trio

from .server import EmulatorOptions, run_emulator


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m relay.emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--bearer-token", help="require this Bearer token on Vertex paths")
    parser.add_argument("--api-key", help="require this API key on AI Studio paths")
    parser.add_argument("--chunk-words", type=int, default=3)
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between reply chunks")
    parser.add_argument("--audio-chunk-ms", type=int, default=100)
    parser.add_argument("--audio-realtime", action="store_true", help="pace audio replies in real time")
    parser.add_argument("--vad-threshold", type=float, default=500.0, help="RMS above which input audio is speech")
    parser.add_argument("--vad-silence-ms", type=int, default=500, help="silence that ends speech")
    parser.add_argument("--vad-max-speech-ms", type=int, default=0, help="cut longer speech into turns (0 = off)")
    parser.add_argument(
        "--echo-audio", action="store_true", help="benchmark mode: send every input audio chunk straight back"
    )
    parser.add_argument(
        "--reply-audio-chunks", type=int, default=0, metavar="N",
        help="benchmark: every audio reply is exactly N chunks of --audio-chunk-ms (0 = by word count)",
    )
    parser.add_argument(
        "--transport", choices=("trio-websocket", "websockets"), default="trio-websocket",
        help="WebSocket implementation to serve with (websockets: the relay's faster sans-IO transport)",
    )
    parser.add_argument("--goaway-after-turns", type=int, default=0, metavar="N",
                        help="send goAway after the Nth completed reply of a connection (0 = never)")
    parser.add_argument("--goaway-after-seconds", type=float, default=0.0, metavar="S",
                        help="send goAway S seconds after setupComplete (0 = never)")
    parser.add_argument("--goaway-time-left", type=float, default=50.0, metavar="S",
                        help="goAway's timeLeft; the connection closes 1011 once it has passed")
    parser.add_argument("--handle-ttl", type=float, default=7200.0, metavar="S",
                        help="seconds a resumption handle stays valid")
    parser.add_argument("--context-limit-tokens", type=int, default=0, metavar="N",
                        help="close 1007 when a reply would start with more prompt tokens (0 = unlimited)")
    parser.add_argument("--context-update-models", default=r"gemini-3\.8", metavar="REGEX",
                        help="models that accept contextUpdate")
    parser.add_argument("--tls-cert", metavar="PEM", help="serve wss:// with this certificate (chain); needs --tls-key")
    parser.add_argument("--tls-key", metavar="PEM", help="the private key of --tls-cert")
    args = parser.parse_args(argv)
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    ssl_context = None
    if args.tls_cert is not None:
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(args.tls_cert, args.tls_key)
    options = EmulatorOptions(
        bearer_token=args.bearer_token,
        api_key=args.api_key,
        chunk_words=args.chunk_words,
        chunk_delay=args.chunk_delay,
        audio_chunk_ms=args.audio_chunk_ms,
        audio_realtime=args.audio_realtime,
        vad_threshold=args.vad_threshold,
        vad_silence_ms=args.vad_silence_ms,
        vad_max_speech_ms=args.vad_max_speech_ms,
        echo_audio=args.echo_audio,
        reply_audio_chunks=args.reply_audio_chunks,
        transport=args.transport,
        goaway_after_turns=args.goaway_after_turns,
        goaway_after_seconds=args.goaway_after_seconds,
        goaway_time_left=args.goaway_time_left,
        handle_ttl=args.handle_ttl,
        context_limit_tokens=args.context_limit_tokens,
        context_update_models=args.context_update_models,
    )
    try:
        trio.run(partial(run_emulator, args.host, args.port, options, ssl_context=ssl_context))
    except KeyboardInterrupt:
        pass
    except (OSError, BaseExceptionGroup) as exc:
        # A failure to bind (port in use, no such address) comes wrapped in the nurseries' groups: say it in a line.
        failed = _bind_error(exc)
        if failed is None:
            raise
        print(f"relay.emulator: error: cannot listen on {args.host} port {args.port}: {failed.strerror or failed}",
              file=sys.stderr)
        sys.exit(2)


def _bind_error(exc: BaseException) -> OSError | None:
    if isinstance(exc, OSError):
        return exc
    if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        return _bind_error(exc.exceptions[0])
    return None


if __name__ == "__main__":
    main()
