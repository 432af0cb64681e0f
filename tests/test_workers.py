"""`serve --workers N`: several processes on one port, supervised; run as a user would, in a subprocess."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from relay.workers import worker_count
from tests.stack import TRANSPORTS
from tests.test_cli import relay_process
from tests.test_drain import assert_second_signal_stops_at_once, open_session


class Lines:
    """The relay's output, read on a thread: a pipe nobody reads would stop the supervisor when it fills."""

    def __init__(self, stream, first: str) -> None:
        self.text = first
        self._lock = threading.Lock()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream) -> None:
        for line in stream:
            with self._lock:
                self.text += line

    def mark(self, text: str) -> None:
        with self._lock:
            self.text += text + "\n"

    def wait_for(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                found = re.search(pattern, self.text)
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"never printed {pattern!r}:\n{self.text}")


def open_by_worker(port: int) -> dict[str, float]:
    """relay_sessions_open summed per worker, from one scrape of the shared port."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        body = response.read().decode()
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(body):
        if family.name == "relay_sessions_open":
            for sample in family.samples:
                counts[sample.labels["worker"]] = counts.get(sample.labels["worker"], 0) + sample.value
    return counts


def spread_over(port: int, workers: set[str], attempts: int = 24) -> dict[str, float]:
    """Open sessions (each one answered) until one scrape shows every worker holding some; then close them."""
    sockets = []
    try:
        for _ in range(attempts):
            sockets.append(open_session(port, "which worker", "response.done"))
            deadline = time.monotonic() + 3  # another worker's figures are at most a second old
            while time.monotonic() < deadline:
                counts = open_by_worker(port)
                if sum(counts.values()) == len(sockets):
                    break
                time.sleep(0.1)
            if {w for w, n in counts.items() if n > 0} == workers:
                return counts
        raise AssertionError(f"{len(sockets)} sessions never reached every worker: {counts}")
    finally:
        for ws in sockets:
            ws.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_two_workers_serve_one_port_and_a_killed_one_is_replaced(transport):
    with relay_process("--workers", "2", "--log-level", "WARNING", "--transport", transport) as (proc, port, banner):
        assert "2 workers" in banner
        pids = {int(i): int(p) for i, p in re.findall(r"worker (\d) started \(pid (\d+)\)", banner)}
        assert set(pids) == {0, 1}
        out = Lines(proc.stdout, banner)
        spread_over(port, {"0", "1"})

        out.mark("after the kill")
        os.kill(pids[1], signal.SIGKILL)
        out.wait_for(r"worker 1 was killed by SIGKILL; starting another in 1 s")
        for n in range(5):  # the other worker keeps serving meanwhile
            open_session(port, f"still served {n}", "response.done").close()
        new_pid = int(out.wait_for(r"after the kill[\s\S]*worker 1 started \(pid (\d+)\)").group(1))
        assert new_pid not in pids.values()
        out.wait_for(rf"relay worker 1 serving \(pid {new_pid}\)")
        spread_over(port, {"0", "1"})

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        out.wait_for(r"draining 2 workers")
        for pid in (pids[0], new_pid):
            assert not _alive(pid), f"worker pid {pid} outlived its supervisor"


def test_a_second_signal_stops_every_worker_at_once():
    with relay_process("--workers", "2", "--log-level", "WARNING") as (proc, port, banner):
        pids = [int(p) for p in re.findall(r"relay worker \d serving \(pid (\d+)\)", banner)]
        ws = open_session(port, "never answered [fault:silent]", "response.created")
        assert_second_signal_stops_at_once(proc)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.05)
        assert not any(_alive(p) for p in pids)
        ws.close()


def test_workers_drain_by_themselves_when_the_supervisor_is_killed():
    with relay_process("--workers", "2", "--log-level", "WARNING") as (proc, _port, banner):
        pids = [int(p) for p in re.findall(r"relay worker \d serving \(pid (\d+)\)", banner)]
        assert len(pids) == 2, banner  # both serving lines come before "listening on", where the banner ends
        proc.kill()
        proc.wait(5)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.1)
        assert not any(_alive(p) for p in pids)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"  # a zombie has ended; only its parent's wait is missing
    except FileNotFoundError:
        return False


def test_the_port_in_use_is_one_line_and_exit_2_with_workers_too():
    import socket
    import subprocess
    import sys

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "relay", "serve", "--workers", "2", "--host", "127.0.0.1",
                               "--port", str(port)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"relay: error: port {port} on 127.0.0.1 is already in use; stop what holds it or choose another with --port"]


def test_workers_zero_means_one_per_cpu():
    assert worker_count(0) == len(os.sched_getaffinity(0))
    assert worker_count(3) == 3


@pytest.mark.parametrize("fmt", ["json"])
def test_worker_log_lines_name_their_worker(fmt):
    with relay_process("--workers", "2", "--log-format", fmt) as (proc, port, banner):
        out = Lines(proc.stdout, banner)
        open_session(port, "log me", "response.done").close()
        line = out.wait_for(r'\{[^\n]*"event": "session_start"[^\n]*\}').group(0)
        assert json.loads(line)["worker"] in (0, 1)
