"""`python -m relay serve|emulator|bench`: a thin front over the server, the emulator and the benchmarks."""

from __future__ import annotations

import argparse
import errno
import gc
import importlib.metadata
import logging
import os
import signal
import sys
import tempfile
import tomllib
from collections.abc import Awaitable, Callable
from pathlib import Path

import attrs
import trio

from relay.config import Config, ConfigError, default_config, load_config
from relay.emulator import Emulator, EmulatorOptions
from relay.listen import bind_sockets
from relay.logs import FORMATS, configure, default_format
from relay.server import RelayServer
from relay.transport import TRANSPORT_NAMES
from relay.upstream import Upstream, UpstreamAuthError
from relay.workers import START_TIMEOUT, Supervisor, WorkerFailed, serving_line, watch_parent, worker_count

log = logging.getLogger("relay")


class StartupError(Exception):
    """The relay cannot start; the message is the one line printed after `relay: error:`."""


def _display_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


def _version() -> str:
    """The installed distribution's version; from pyproject.toml when run from a checkout that is not installed."""
    try:
        return importlib.metadata.version("relay")
    except importlib.metadata.PackageNotFoundError:
        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        try:
            with pyproject.open("rb") as f:
                return str(tomllib.load(f)["project"]["version"])
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "unknown"


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups; trio wraps a failure once per nursery it crosses."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def _bind_failure(exc: OSError, host: str, port: int) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} on {host} is already in use; stop what holds it or choose another with --port"
    return f"cannot listen on {host} port {port}: {exc.strerror or exc}"


async def _listen(
    nursery: trio.Nursery, serve: Callable[..., Awaitable[object]], host: str, port: int, what: str = ""
) -> int:
    """nursery.start(serve, host, port), with a failure to bind (port in use, no such address, no permission)
    turned into one StartupError line instead of a traceback through two nurseries."""
    try:
        return await nursery.start(serve, host, port)
    except (OSError, BaseExceptionGroup) as exc:
        leaves = _leaves(exc)
        if not all(isinstance(leaf, OSError) for leaf in leaves):
            raise
        first = leaves[0]
        assert isinstance(first, OSError)
        reason = _bind_failure(first, host, port)
        raise StartupError(f"{what}: {reason}" if what else reason) from None


async def _demo_config(nursery: trio.Nursery) -> Config:
    """The config without a file: the built-in emulator, started here."""
    # word-by-word streaming with a short pause, so the demo shows deltas arriving
    demo = Emulator(EmulatorOptions(chunk_words=1, chunk_delay=0.02))
    emulator_port = await nursery.start(demo.serve, "127.0.0.1", 0)
    config = default_config(f"ws://127.0.0.1:{emulator_port}")
    print(
        "No --config given: serving the built-in Gemini Live emulator (deterministic echo replies) "
        f"as model {', '.join(config.model_names)}.",
        flush=True,
    )
    return config


def _describe(config: Config, upstreams: list[Upstream]) -> None:
    for upstream in upstreams:
        print(f"  model {upstream.describe()}", flush=True)
    print(f"  transport {config.transport}", flush=True)


CHECK_TIMEOUT = 10.0  # seconds for the start-up credentials check before serving without it


async def _check_credentials(upstreams: list[Upstream]) -> None:
    """Mint a token for each model that needs one, at once: bad credentials stop the start (StartupError); an
    unreachable token endpoint only warns, since the network may come back before the first session."""
    minted: list[str] = []
    unreachable: list[str] = []

    async def check(upstream: Upstream) -> None:
        try:
            checked = await upstream.check()
        except UpstreamAuthError as exc:
            if not exc.unreachable:
                raise StartupError(str(exc)) from None
            unreachable.append(str(exc))
            return
        if checked is not None:
            minted.append(checked)

    with trio.move_on_after(CHECK_TIMEOUT) as waited:
        async with trio.open_nursery() as nursery:
            for upstream in upstreams:
                nursery.start_soon(check, upstream)
    if waited.cancelled_caught:
        unreachable.append(f"no answer from Google's token endpoint within {CHECK_TIMEOUT:g} s")
    if minted:
        print(f"  credentials: a Google access token was minted for {', '.join(minted)}", flush=True)
    if unreachable:
        print(f"WARNING: could not check the Google credentials ({unreachable[0]}); serving anyway: each session "
              "fetches a token when it starts", file=sys.stderr, flush=True)


def _announce(config: Config, host: str, port: int, workers: int = 1) -> None:
    """After binding, so that a relay that cannot start prints only why."""
    if not config.master_key and not config.client_keys():
        print(
            "WARNING: no master_key (general_settings.master_key or RELAY_MASTER_KEY): "
            "any client can use this relay and its Google credentials.",
            file=sys.stderr,
            flush=True,
        )
    where = f" (all interfaces on {host})" if host in ("0.0.0.0", "", "::") else ""
    url = f"ws://{_display_host(host)}:{port}/v1/realtime?model=NAME"
    if config.playground:
        print(f"  playground http://{_display_host(host)}:{port}/ (turn it off with --no-playground)", flush=True)
    print(f"relay listening on {url}{where}" + (f", {workers} workers" if workers > 1 else ""), flush=True)


@attrs.frozen
class WorkerRole:
    """This process is worker `index` of `serve --workers N` (relay.workers)."""

    index: int
    metrics_dir: str
    supervisor: int  # its pid: the worker drains when it is no longer this process's parent


async def _serve(config: Config | None, host: str, port: int, transport: str | None = None,
                 worker: WorkerRole | None = None, playground: bool | None = None) -> None:
    async with trio.open_nursery() as nursery:
        if config is None:
            config = await _demo_config(nursery)
        if transport is not None:  # --transport overrides general_settings.transport
            config = attrs.evolve(config, transport=transport)
        if playground is not None:  # --no-playground overrides general_settings.playground
            config = attrs.evolve(config, playground=playground)
        server = RelayServer(config, *((worker.index, worker.metrics_dir) if worker else ()))
        if worker is None:
            _describe(config, list(server.upstreams.values()))
            await _check_credentials(list(server.upstreams.values()))
        bound = await _listen(nursery, server.serve, host, port)
        if worker is None:
            _announce(config, host, bound)
        else:
            print(serving_line(worker.index), flush=True)
            nursery.start_soon(watch_parent, worker.supervisor)
        # Everything loaded so far (about 57,000 objects: modules, config, credentials) lives as long as the
        # process: out of the collector's sight, a full collection no longer scans it (9 ms each, a stall on
        # every session).
        gc.freeze()
        await _until_signalled(server, config.drain_timeout, quiet=worker is not None)
        nursery.cancel_scope.cancel()


async def _supervise(config: Config | None, args: argparse.Namespace, count: int, log_level: str,
                     log_format: str) -> None:
    """`serve --workers N`, N > 1: reserve the port, start the workers, supervise them until a signal drains them."""
    host = args.host
    try:
        reserved = bind_sockets(host, args.port, reuse_port=True)
    except OSError as exc:
        raise StartupError(_bind_failure(exc, host, args.port)) from None
    port = reserved[0].getsockname()[1]
    try:
        with tempfile.TemporaryDirectory(prefix="relay-metrics-") as shared:
            async with trio.open_nursery() as nursery:
                source = ["--config", args.config]
                if config is None:
                    config = await _demo_config(nursery)
                    source = ["--emulator-url", config.models[0].api_base]
                if args.transport is not None:
                    config = attrs.evolve(config, transport=args.transport)
                if args.playground is not None:
                    config = attrs.evolve(config, playground=args.playground)
                upstreams = [Upstream(m) for m in config.models]
                _describe(config, upstreams)
                await _check_credentials(upstreams)
                command = [sys.executable, "-m", "relay", "serve", "--host", host, "--port", str(port),
                           "--log-level", log_level, "--log-format", log_format, "--metrics-dir", shared,
                           "--transport", config.transport, "--supervisor", str(os.getpid()), *source,
                           *([] if config.playground else ["--no-playground"])]
                supervisor = Supervisor(count, lambda i: [*command, "--worker", str(i)], Path(shared))
                for worker in supervisor.workers:
                    nursery.start_soon(supervisor.keep, worker)
                with trio.move_on_after(START_TIMEOUT):
                    await supervisor.all_serving()
                if not supervisor.started:
                    raise StartupError(f"the workers were not all serving within {START_TIMEOUT:g} s")
                _announce(config, host, port, count)
                await supervisor.until_signalled(config.drain_timeout)
                nursery.cancel_scope.cancel()
    finally:
        for sock in reserved:
            sock.close()


async def _until_signalled(server: RelayServer, drain_timeout: float, quiet: bool = False) -> None:
    """Serve until SIGTERM or SIGINT, then drain (RelayServer.drain); a second signal stops at once.  `quiet`: a
    worker, whose supervisor says it for all."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            break
        if not quiet:
            print(f"relay: draining: no new sessions, open ones end after their response in flight (at most "
              f"{drain_timeout:g} s); signal again to stop at once", flush=True)
        async with trio.open_nursery() as nursery:

            async def drain() -> None:
                await server.drain(drain_timeout)
                nursery.cancel_scope.cancel()

            nursery.start_soon(drain)
            async for _ in signals:
                # At once: no closing handshakes (each may wait seconds for a peer); the kernel closes the sockets.
                if not quiet:
                    print("relay: stopping now", flush=True)
                sys.stderr.flush()
                os._exit(0)


async def _emulate(host: str, port: int, options: EmulatorOptions) -> None:
    """relay.emulator.run_emulator, with a failure to bind reported as a StartupError."""
    emulator = Emulator(options)
    async with trio.open_nursery() as nursery:
        bound = await _listen(nursery, emulator.serve, host, port, "emulator")
        shown = f"[{host}]" if ":" in host else host
        print(f"Gemini Live emulator listening on ws://{shown}:{bound}", flush=True)


def _run(fn: Callable[..., Awaitable[object]], *args: object) -> None:
    """trio.run, where Ctrl-C is a clean stop even when it arrives inside a nursery's exception group, and a
    StartupError comes out alone rather than wrapped in the nurseries' groups."""
    try:
        trio.run(fn, *args)
    except BaseExceptionGroup as group:
        _, rest = group.split(KeyboardInterrupt)
        if rest is None:
            raise KeyboardInterrupt from None
        startup, others = rest.split((StartupError, WorkerFailed))
        if startup is not None and others is None:
            raise _leaves(startup)[0] from None
        raise


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0-65535, got {port}")
    return port


def _count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if count < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (one per CPU) or more, got {count}")
    return count


def _level(text: str) -> str:
    level = text.strip().upper()
    if level not in logging.getLevelNamesMapping():
        raise argparse.ArgumentTypeError(f"unknown level {text!r}; use DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return level


def _log_level() -> str:
    """RELAY_LOG_LEVEL, checked: logging.basicConfig would raise a ValueError with a traceback."""
    level = os.environ.get("RELAY_LOG_LEVEL", "INFO").strip().upper()
    if level not in logging.getLevelNamesMapping():
        raise StartupError(f"RELAY_LOG_LEVEL: unknown level {level!r}; use DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return level


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        print("relay: the benchmark is not part of the installed relay; from a checkout run `python -m bench` "
              "(or `nox -s bench`), see bench/README.md", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog="relay", description="OpenAI Realtime API in front of Gemini Live.")
    parser.add_argument("--version", action="version", version=f"relay {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the relay")
    serve.add_argument("--config", help="LiteLLM-style YAML config; without it the built-in emulator is served")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--log-format", choices=FORMATS,
                       help="json: one object per line (the default when stderr is not a terminal); text")
    serve.add_argument("--log-level", type=_level, help="DEBUG, INFO (default, or RELAY_LOG_LEVEL), WARNING, ERROR")
    serve.add_argument("--port", type=_port, default=4000)
    serve.add_argument(
        "--transport",
        choices=TRANSPORT_NAMES,
        help="WebSocket implementation for clients and upstream (default: general_settings.transport, "
        "else trio-websocket); websockets is the faster sans-IO one",
    )
    serve.add_argument("--no-playground", dest="playground", action="store_const", const=False,
                       help="do not serve the browser playground at / (default: general_settings.playground, else "
                       "served)")
    serve.add_argument("--workers", "--num_workers", type=_count, default=1,
                       help="processes serving the port together (SO_REUSEPORT), supervised by this one; "
                       "0 = one per CPU (default 1)")
    # How the supervisor starts each worker (relay.workers); not for people.
    serve.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--metrics-dir", help=argparse.SUPPRESS)
    serve.add_argument("--supervisor", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--emulator-url", help=argparse.SUPPRESS)
    emu = sub.add_parser("emulator", help="run the Gemini Live emulator alone")
    emu.add_argument("--host", default="127.0.0.1")
    emu.add_argument("--port", type=_port, default=9000)
    emu.add_argument("--bearer-token", help="require this Bearer token on Vertex paths")
    emu.add_argument("--api-key", help="require this API key on AI Studio paths")
    emu.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between streamed chunks")
    emu.add_argument("--echo-audio", action="store_true", help="benchmark mode: send input audio chunks straight back")
    args = parser.parse_args(argv)
    try:
        level = getattr(args, "log_level", None) or _log_level()
        fmt = getattr(args, "log_format", None) or default_format()
        configure(level, fmt, getattr(args, "worker", None))
        if args.command == "emulator":
            options = EmulatorOptions(
                bearer_token=args.bearer_token,
                api_key=args.api_key,
                chunk_delay=args.chunk_delay,
                echo_audio=args.echo_audio,
            )
            _run(_emulate, args.host, args.port, options)
            return 0
        config = None
        if args.emulator_url:
            config = default_config(args.emulator_url)
        elif args.config:
            try:
                config, warnings = load_config(args.config)
            except ConfigError as exc:
                print(f"relay: config error: {exc}", file=sys.stderr)
                return 2
            for warning in warnings if args.worker is None else ():  # the supervisor said them
                print(f"relay: config warning: {warning}", file=sys.stderr)
        count = worker_count(args.workers)
        if args.worker is not None:
            _run(_serve, config, args.host, args.port, args.transport, WorkerRole(args.worker, args.metrics_dir,
                                                                            args.supervisor or os.getppid()),
                 args.playground)
        elif count > 1:
            _run(_supervise, config, args, count, level, fmt)
        else:
            _run(_serve, config, args.host, args.port, args.transport, None, args.playground)
    except KeyboardInterrupt:
        return 0
    except (StartupError, WorkerFailed) as exc:
        print(f"relay: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
