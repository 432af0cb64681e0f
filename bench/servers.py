"""The servers of a run: one upstream per scenario, and the servers under test, one at a time on the relay CPU.

The upstream (on the load CPUs) is the full Gemini Live emulator for the text, audio-reply, idle and tls scenarios,
and the minimal echo upstream (`bench.echo_upstream`) for the audio and connect scenarios, whose load would
otherwise make the emulator the bottleneck; a scenario module names its kind in UPSTREAM.

Servers under test (`Target`): the relay once per transport (`python -m relay serve --transport T`), the bare
forwarder once per transport (`bench.bare`: the same transport with no translation, the ceiling), and
LiteLLM's proxy (`--peer litellm`). Each is started fresh for each scenario, so start-up memory is measured
on an untouched process, and pinned to the relay CPU alone, so its CPU figures are per core.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs

from bench.dialects import VERTEX_PATH, Endpoint
from bench.procs import Child, Pinning, ProcSample, pin, sample

# Printed by each child once it listens.
_EMULATOR_READY = re.compile(r"emulator listening on wss?://[^:\s]+:(\d+)")
_ECHO_READY = re.compile(r"echo upstream listening on ws://[^:\s]+:(\d+)")
_RELAY_READY = re.compile(r"relay listening on ws://[^:\s]+:(\d+)/")
_WORKER_STARTED = re.compile(r"^relay: worker (\d+) started \(pid (\d+)\)", re.MULTILINE)  # serve --workers
_BARE_READY = re.compile(r"bare forwarder listening on ws://[^:\s]+:(\d+)")
_LITELLM_READY = re.compile(r"Uvicorn running on http://[^:\s]+:(\d+)")
_LITELLM_START_TIMEOUT = 90.0  # it imports a great deal; 4-5 s on an idle machine, far more under load
REPLY_AUDIO_CHUNKS = 200  # the audio-reply scenario's reply: 200 x 4,800 bytes (100 ms chunks)
TRANSPORTS = ("trio-websocket", "websockets")


def relay_transports() -> tuple[str, ...]:
    """Transports the relay can be started with: both if `serve --help` lists `--transport`, else the default."""
    try:
        out = subprocess.run(
            [sys.executable, "-m", "relay", "serve", "--help"], capture_output=True, text=True, timeout=60
        ).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    return TRANSPORTS if "--transport" in out else TRANSPORTS[:1]


def fast_emulator_transport() -> str:
    """The emulator serves over the relay's websockets transport when it exists: per message it costs a third
    of trio-websocket, which keeps the emulator from saturating the load CPU before the relay saturates its own."""
    try:
        from relay.transport.registry import get_transport

        get_transport("websockets")
    except (ImportError, ValueError):
        return "trio-websocket"
    return "websockets"


@attrs.frozen
class Target:
    """A server under test: `relay` or `bare` with a transport, or `litellm`; a relay with `workers` set runs as
    `serve --workers N` (a supervisor and N worker processes)."""

    kind: str
    transport: str | None = None
    workers: int | None = None

    @property
    def label(self) -> str:
        label = f"{self.kind} {self.transport}" if self.transport else self.kind
        return label if self.workers is None else f"{label} --workers {self.workers}"


@attrs.frozen
class Upstream:
    """An upstream the servers under test connect to: `ws://`, or `wss://` when `cert` is set (the self-signed PEM
    that a server under test then trusts through SSL_CERT_FILE, as Python's default TLS context reads it)."""

    child: Child
    cert: Path | None = None

    @property
    def scheme(self) -> str:
        return "ws" if self.cert is None else "wss"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.child.port}"


@attrs.define
class Server:
    target: Target
    child: Child
    endpoint: Endpoint
    started: ProcSample  # right after it announced its port: start-up memory

    @property
    def pid(self) -> int:
        return self.child.pid

    @property
    def pids(self) -> tuple[int, ...]:
        """The server's processes: the one started, then, under `serve --workers`, each worker's latest process as
        the supervisor announced it."""
        return (self.pid, *worker_pids(self.child.log_path.read_text(errors="replace")).values())

    def worker_starts(self) -> int:
        """How many worker processes the supervisor has started so far: more than its count means one was replaced."""
        return len(_WORKER_STARTED.findall(self.child.log_path.read_text(errors="replace")))


def worker_pids(log: str) -> dict[int, int]:
    """Worker number: pid of its latest process, from the supervisor's `relay: worker I started (pid P)` lines."""
    return {int(index): int(pid) for index, pid in _WORKER_STARTED.findall(log)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def relay_config(emulator_port: int, scheme: str = "ws") -> str:
    """One Vertex model on the upstream (`scheme` wss: over TLS), without Google credentials.  The production
    guards are off (a load generator sends far more than 500 events a second, the idle scenario opens 10,000
    sessions): the benchmark measures the relay's cost, and LiteLLM has neither guard."""
    return (
        "model_list:\n"
        "  - model_name: bench\n"
        "    litellm_params:\n"
        "      model: vertex_ai/gemini-2.0-flash-live-preview-04-09\n"
        f"      api_base: {scheme}://127.0.0.1:{emulator_port}\n"
        "      upstream_auth: none\n"
        "      vertex_project: bench\n"
        "general_settings:\n"
        "  max_events_per_second: 0\n"
        "  max_sessions: 100000\n"
    )


class Lab:
    """The upstream of the current scenario (`fresh_upstream`: the emulator, in echo mode with fixed-length audio
    replies, or the echo upstream); `serve(target)` runs one server under test for the duration of a block. A
    context manager."""

    def __init__(self, key: str, pinning: Pinning, *, relay_transports: tuple[str, ...],
                 litellm: Path | None = None) -> None:
        self.key = key
        self.pinning = pinning
        self.relay_transports = relay_transports
        self.litellm = litellm  # the litellm executable, when the peer is installed
        self.notes: list[str] = []
        self._tmp = tempfile.TemporaryDirectory(prefix="relay-bench-")
        self.logdir = Path(self._tmp.name)
        self.emulator_transport = fast_emulator_transport()
        self.upstream_child: Child | None = None
        self.upstream_kind = ""
        self.kinds_used: list[str] = []  # for the report header, in order of first use

    def __enter__(self) -> Lab:
        return self

    def fresh_upstream(self, kind: str = "emulator") -> None:
        """(Re)start the upstream, `emulator` or `echo`: each scenario gets one in the same state, whatever ran
        before (the emulator keeps every non-audio message it received, and a heap grown by 10,000 idle sessions
        makes for longer GC pauses)."""
        if self.upstream_child is not None:
            self.upstream_child.stop()
            self.upstream_child = None
        if kind == "emulator":
            self.upstream_child = self.start_emulator("emulator")
        elif kind == "echo":
            self.upstream_child = self.start_echo("echo-upstream")
        else:
            raise ValueError(f"unknown upstream {kind!r}")
        self.upstream_kind = kind
        if kind not in self.kinds_used:
            self.kinds_used.append(kind)

    def start_emulator(self, name: str, tls: tuple[Path, Path] | None = None) -> Child:
        """An emulator child on the load CPUs, ready; `tls` (certificate and key PEM files) makes it serve wss://.
        The caller stops it, unless it is the lab's own upstream."""
        args = ["relay.emulator", "--host", "127.0.0.1", "--port", "0", "--echo-audio",
                "--reply-audio-chunks", str(REPLY_AUDIO_CHUNKS), "--transport", self.emulator_transport]
        if tls is not None:
            args += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
        return self._start_upstream(Child.relay_module(name, args, _EMULATOR_READY, dict(os.environ), self.logdir))

    def start_echo(self, name: str) -> Child:
        """An echo upstream child (`bench.echo_upstream`) on the load CPUs, ready."""
        args = ["bench.echo_upstream", "--host", "127.0.0.1", "--port", "0"]
        return self._start_upstream(Child.relay_module(name, args, _ECHO_READY, dict(os.environ), self.logdir))

    def _start_upstream(self, child: Child) -> Child:
        try:
            self._pin(child.pid, self.pinning.others)
            child.wait_ready()
            self._pin(child.pid, self.pinning.others)
        except BaseException:
            child.stop()
            raise
        return child

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def upstream(self) -> Upstream:
        """The lab's own upstream, plain ws://."""
        assert self.upstream_child is not None
        return Upstream(self.upstream_child)

    @property
    def direct(self) -> Endpoint:
        """The floor: the same client speaking Gemini Live straight to the lab's upstream."""
        return Endpoint("direct", f"ws://127.0.0.1:{self.upstream.child.port}{VERTEX_PATH}", "gemini")

    def targets(self, kinds: tuple[str, ...] = ("relay", "litellm")) -> list[Target]:
        """The servers under test for a scenario, in report order: relay per transport, then bare per transport,
        then LiteLLM when it is installed."""
        out: list[Target] = []
        if "relay" in kinds:
            out += [Target("relay", t) for t in self.relay_transports]
        if "bare" in kinds:
            out += [Target("bare", t) for t in self.relay_transports]
        if "litellm" in kinds and self.litellm is not None:
            out.append(Target("litellm"))
        return out

    @contextmanager
    def serve(self, target: Target, upstream: Upstream | None = None) -> Iterator[Server]:
        """`target` running for the duration of the block, connecting upstream to `upstream` (default: the lab's
        upstream)."""
        child = self._start(target, upstream or self.upstream)
        try:
            child.wait_ready(_LITELLM_START_TIMEOUT if target.kind == "litellm" else 30.0)
            # Again now that it runs, and every process it started (relay workers): threads started since inherited
            # nothing from the first call.
            for pid in (child.pid, *child.adopt()):
                self._pin(pid, self.pinning.relay)
            yield Server(target, child, self._endpoint(target, child.port), sample(child.pid))
        finally:
            child.stop()

    def _endpoint(self, target: Target, port: int) -> Endpoint:
        if target.kind == "bare":
            return Endpoint(target.label, f"ws://127.0.0.1:{port}{VERTEX_PATH}", "gemini")
        auth = (("Authorization", f"Bearer {self.key}"),)
        return Endpoint(target.label, f"ws://127.0.0.1:{port}/v1/realtime?model=bench", "openai", auth)

    def _start(self, target: Target, upstream: Upstream) -> Child:
        env = dict(os.environ)
        if upstream.cert is not None:
            env["SSL_CERT_FILE"] = str(upstream.cert)
        # Its own log and config file per upstream: a scenario may run the same target against two emulators at once.
        name = target.label if upstream.child is self.upstream_child else f"{target.label} to {upstream.child.name}"
        if target.kind == "relay":
            config = self.logdir / f"{name.replace(' ', '-')}.yaml"
            config.write_text(relay_config(upstream.child.port, upstream.scheme))
            # The key comes from the environment, as in a deployment without a master_key in the file.
            env["RELAY_MASTER_KEY"] = self.key
            args = ["relay", "serve", "--config", str(config), "--host", "127.0.0.1", "--port", "0"]
            # Named whenever asked for: `--transports websockets` alone must not run the default transport.
            if target.transport is not None and (len(self.relay_transports) > 1 or target.transport != TRANSPORTS[0]):
                args += ["--transport", str(target.transport)]
            if target.workers is not None:
                args += ["--workers", str(target.workers)]
            child = Child.relay_module(name, args, _RELAY_READY, env, self.logdir)
        elif target.kind == "bare":
            args = ["bench.bare", "--transport", str(target.transport), "--upstream", upstream.url,
                    "--host", "127.0.0.1", "--port", "0"]
            child = Child.relay_module(name, args, _BARE_READY, env, self.logdir)
        elif target.kind == "litellm":
            from bench.peer import litellm_config, litellm_env

            assert self.litellm is not None
            if upstream.cert is not None:
                raise ValueError("LiteLLM is only measured against the plain ws:// emulator")
            port = _free_port()  # uvicorn prints the port it was given, so it cannot be 0
            config = self.logdir / "litellm.yaml"
            config.write_text(litellm_config(upstream.child.port))
            argv = [str(self.litellm), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
            child = Child(target.label, argv, _LITELLM_READY, litellm_env(self.key), self.logdir)
        else:
            raise ValueError(f"unknown target {target}")
        self._pin(child.pid, self.pinning.relay)
        return child

    def _pin(self, pid: int, cpus: frozenset[int] | None) -> None:
        error = pin(pid, cpus)
        if error and error not in self.notes:
            self.notes.append(error)

    def check_alive(self, *children: Child) -> None:
        for child in (self.upstream_child, *children):
            if child is not None and not child.alive():
                raise RuntimeError(f"{child.name} exited with {child.proc.returncode}:\n{child.log_tail()}")

    def check_server(self, server: Server) -> None:
        """check_alive, and for `serve --workers N` that no worker was replaced: a phase that lost one measured
        fewer workers than its label says (its supervisor restarts it quietly)."""
        self.check_alive(server.child)
        workers = server.target.workers
        if workers is not None and workers > 1 and server.worker_starts() > workers:
            raise RuntimeError(f"{server.child.name}: a worker was replaced:\n{server.child.log_tail()}")

    def close(self) -> None:
        if self.upstream_child is not None:
            self.upstream_child.stop()
        self._tmp.cleanup()
