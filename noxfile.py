"""Sessions named for what people run: `nox` (tests + conformance), `nox -s lint`."""

from __future__ import annotations

import shutil

import nox

nox.options.sessions = ["tests", "conformance"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Unit and end-to-end tests over real sockets (needs node and npm for the node client test)."""
    session.install("-e", ".[test]")
    npm = shutil.which("npm")
    if npm:
        session.run(npm, "install", "--no-audit", "--no-fund", "--prefix", "tests/node", external=True)
    session.run("pytest", "tests", *session.posargs)


@nox.session(python=PYTHON)
def conformance(session: nox.Session) -> None:
    """Hypothesis properties: codec round trips and whole translator sessions against the SDK schemas."""
    session.install("-e", ".[test]")
    session.run("pytest", "conformance", *session.posargs, env={"HYPOTHESIS_PROFILE": "ci"})


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "relay", "tests", "conformance", "noxfile.py")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """The audio streaming benchmark with its default sweep; writes bench/results.md and bench/results.json.

    Not in the default sessions: it takes a few minutes and wants an otherwise idle machine.
    Options go after `--`, e.g. `nox -s bench -- --sessions 1 10 --seconds 5`.
    """
    session.install("-e", ".[test]")
    session.run("python", "-m", "relay", "bench", "audio", *session.posargs)
