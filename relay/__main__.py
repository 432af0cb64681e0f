"""`python -m relay serve|emulator|bench`: a thin front over the server, the emulator and the benchmarks."""

from __future__ import annotations

import argparse
import logging
import os
import sys

import attrs
import trio

from relay.config import Config, ConfigError, default_config, load_config
from relay.emulator import Emulator, EmulatorOptions, run_emulator
from relay.server import RelayServer
from relay.transport import TRANSPORT_NAMES

log = logging.getLogger("relay")


def _display_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


async def _serve(config: Config | None, host: str, port: int, transport: str | None = None) -> None:
    async with trio.open_nursery() as nursery:
        if config is None:
            # word-by-word streaming with a short pause, so the demo shows deltas arriving
            demo = Emulator(EmulatorOptions(chunk_words=1, chunk_delay=0.02))
            emulator_port = await nursery.start(demo.serve, "127.0.0.1", 0)
            config = default_config(f"ws://127.0.0.1:{emulator_port}")
            print(
                "No --config given: serving the built-in Gemini Live emulator (deterministic echo replies) "
                f"as model {', '.join(config.model_names)}.",
                flush=True,
            )
        if transport is not None:  # --transport overrides general_settings.transport
            config = attrs.evolve(config, transport=transport)
        server = RelayServer(config)
        for upstream in server.upstreams.values():
            print(f"  model {upstream.describe()}", flush=True)
        print(f"  transport {config.transport}", flush=True)
        if not config.master_key:
            print(
                "WARNING: no master_key (general_settings.master_key or RELAY_MASTER_KEY): "
                "any client can use this relay and its Google credentials.",
                file=sys.stderr,
                flush=True,
            )
        bound = await nursery.start(server.serve, host, port)
        where = f" (all interfaces on {host})" if host in ("0.0.0.0", "", "::") else ""
        url = f"ws://{_display_host(host)}:{bound}/v1/realtime?model=NAME"
        print(f"relay listening on {url}{where}", flush=True)


def _run(fn, *args) -> None:
    """trio.run, where Ctrl-C is a clean stop even when it arrives inside a nursery's exception group."""
    try:
        trio.run(fn, *args)
    except BaseExceptionGroup as group:
        _, rest = group.split(KeyboardInterrupt)
        if rest is not None:
            raise
        raise KeyboardInterrupt from None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        # The benchmark has its own sub-commands and options; imported only when asked for.
        from relay.bench.cli import main as bench_main

        return bench_main(argv[1:], prog="relay bench")
    parser = argparse.ArgumentParser(prog="relay", description="OpenAI Realtime API in front of Gemini Live.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the relay")
    serve.add_argument("--config", help="LiteLLM-style YAML config; without it the built-in emulator is served")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=4000)
    serve.add_argument(
        "--transport",
        choices=TRANSPORT_NAMES,
        help="WebSocket implementation for clients and upstream (default: general_settings.transport, "
        "else trio-websocket); websockets is the faster sans-IO one",
    )
    emu = sub.add_parser("emulator", help="run the Gemini Live emulator alone")
    emu.add_argument("--host", default="127.0.0.1")
    emu.add_argument("--port", type=int, default=9000)
    emu.add_argument("--bearer-token", help="require this Bearer token on Vertex paths")
    emu.add_argument("--api-key", help="require this API key on AI Studio paths")
    emu.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between streamed chunks")
    emu.add_argument("--echo-audio", action="store_true", help="benchmark mode: send input audio chunks straight back")
    # Listed for --help only: main() hands "bench ..." to relay.bench before parsing.
    sub.add_parser("bench", help="run a benchmark (python -m relay bench --help)", add_help=False)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("RELAY_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "emulator":
            options = EmulatorOptions(
                bearer_token=args.bearer_token,
                api_key=args.api_key,
                chunk_delay=args.chunk_delay,
                echo_audio=args.echo_audio,
            )
            _run(run_emulator, args.host, args.port, options)
            return 0
        config = None
        if args.config:
            try:
                config, warnings = load_config(args.config)
            except ConfigError as exc:
                print(f"relay: config error: {exc}", file=sys.stderr)
                return 2
            for warning in warnings:
                print(f"relay: config warning: {warning}", file=sys.stderr)
        _run(_serve, config, args.host, args.port, args.transport)
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
