"""`serve --workers N`: N relay processes on one port, supervised by the process that started them.

Each worker is `python -m relay serve ... --worker I`: it listens with SO_REUSEPORT on the port the supervisor
holds bound (never listening, so the kernel spreads connections over the workers alone), shares its metrics
through a directory (relay.metrics.Source) and drains on SIGTERM as a single relay does.  The supervisor
restarts a worker that dies, after a backoff that grows while it keeps dying, and forwards SIGTERM and SIGINT
to every worker: a drain applies to all, a second signal stops all at once.  Workers run in their own process
group, so a Ctrl-C on the terminal reaches the supervisor alone and is forwarded once; a worker whose
supervisor has gone drains by itself (`watch_parent`).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import trio

log = logging.getLogger("relay.workers")

RESTART_FIRST, RESTART_MAX = 1.0, 30.0  # seconds before a dead worker's replacement starts, doubling
STEADY = 60.0  # a worker that ran this long had not been failing: its replacement's backoff starts over
START_TIMEOUT = 60.0  # seconds for every worker to be serving at start
SERVING = "serving (pid "  # what a worker prints, after its number, once it listens


class WorkerFailed(Exception):
    """A worker could not start at all (the supervisor's start fails with this message)."""


def serving_line(index: int) -> str:
    return f"relay worker {index} {SERVING}{os.getpid()})"


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def worker_count(requested: int) -> int:
    """`--workers`: 0 means one per CPU this process may run on."""
    if requested > 0:
        return requested
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class Worker:
    def __init__(self, index: int) -> None:
        self.index = index
        self.process: trio.Process | None = None
        self.serving = trio.Event()  # its first process printed that it listens


class Supervisor:
    """Runs `command(index)` for each worker, and again whenever one ends while not stopping."""

    def __init__(self, count: int, command: Callable[[int], list[str]], metrics_dir: Path | None = None) -> None:
        self.workers = [Worker(i) for i in range(count)]
        self.stopping = False
        self._stop = trio.Event()
        self.started = False  # every worker was serving once: from now on a dead worker is replaced
        self._command = command
        self._metrics_dir = metrics_dir
        self._ended = 0
        self._all_ended = trio.Event()
        package_root = str(Path(__file__).resolve().parent.parent)
        path = os.environ.get("PYTHONPATH")
        # So that a worker imports this same relay, installed or run from a checkout.
        self._env = {**os.environ, "PYTHONPATH": package_root + (os.pathsep + path if path else "")}

    async def all_serving(self) -> None:
        for worker in self.workers:
            await worker.serving.wait()
        self.started = True

    async def keep(self, worker: Worker) -> None:
        """Run `worker` until the supervisor stops, replacing each process that ends."""
        delay = RESTART_FIRST
        try:
            while not self.stopping:
                began = trio.current_time()
                code = await self._run(worker)
                if self.stopping:
                    return
                if not self.started and not worker.serving.is_set():
                    raise WorkerFailed(f"worker {worker.index} {describe_exit(code)} before serving")
                if trio.current_time() - began >= STEADY:
                    delay = RESTART_FIRST
                log.warning("worker %d %s; starting another in %g s", worker.index, describe_exit(code), delay)
                with trio.move_on_after(delay):
                    await self._stop.wait()
                delay = min(RESTART_MAX, delay * 2)
        finally:
            self._ended += 1
            if self._ended == len(self.workers):
                self._all_ended.set()

    async def _run(self, worker: Worker) -> int:
        process = await trio.lowlevel.open_process(
            self._command(worker.index), stdout=subprocess.PIPE, start_new_session=True, env=self._env)
        worker.process = process
        print(f"relay: worker {worker.index} started (pid {process.pid})", flush=True)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._forward, worker, process)
                return await process.wait()
        finally:
            if process.returncode is None:  # the supervisor itself is stopping at once
                process.kill()
            if self._metrics_dir is not None:  # a dead worker's figures must not be scraped as live
                (self._metrics_dir / f"worker-{worker.index}.json").unlink(missing_ok=True)

    async def _forward(self, worker: Worker, process: trio.Process) -> None:
        """Copy the worker's standard output to ours, line by line, and notice when it serves."""
        assert process.stdout is not None
        pending = b""
        marker = f"relay worker {worker.index} {SERVING}".encode()
        async for chunk in process.stdout:
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                sys.stdout.buffer.write(line + b"\n")
                if line.startswith(marker):
                    worker.serving.set()
            sys.stdout.flush()

    def signal_all(self, signum: int) -> None:
        for worker in self.workers:
            process = worker.process
            if process is not None and process.returncode is None:
                process.send_signal(signum)

    async def until_signalled(self, drain_timeout: float) -> None:
        """Serve until SIGTERM or SIGINT; then every worker drains, and this returns once all have ended.  A second
        signal stops every worker at once (each exits on its own second signal) and this process with them."""
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                break
            print(f"relay: draining {len(self.workers)} workers: no new sessions, open ones end after their "
                  f"response in flight (at most {drain_timeout:g} s); signal again to stop at once", flush=True)
            self.stopping = True
            self._stop.set()
            self.signal_all(signal.SIGTERM)
            async with trio.open_nursery() as nursery:

                async def ended() -> None:
                    await self._all_ended.wait()
                    nursery.cancel_scope.cancel()

                nursery.start_soon(ended)
                async for _ in signals:
                    print("relay: stopping now", flush=True)
                    self.signal_all(signal.SIGTERM)
                    sys.stderr.flush()
                    os._exit(0)


async def watch_parent(parent: int, every: float = 1.0) -> None:
    """A worker's guard: when its supervisor is gone (killed without a chance to forward a signal), drain as on
    SIGTERM rather than serve unsupervised.  `parent` is the supervisor's pid as the supervisor gave it: one that
    died before this worker looked would otherwise go unnoticed."""
    while os.getppid() == parent:
        await trio.sleep(every)
    log.warning("the supervisor (pid %d) has gone; draining", parent)
    os.kill(os.getpid(), signal.SIGTERM)
