"""Sessions named for what people run: `nox` (tests + conformance), `nox -s lint`."""

from __future__ import annotations

import shutil

import nox

nox.options.sessions = ["tests", "conformance"]
nox.options.reuse_existing_virtualenvs = True
# Without this nox skips a session whose interpreter it cannot find and still exits 0, so `nox` on a machine
# without Python 3.11 "passes" having run no test at all. Fail instead, naming the missing interpreter: the
# sessions stay pinned to 3.11 (the version the project is developed and tested on) rather than following
# whatever Python runs nox; `nox --force-python 3.12` runs them on another version deliberately.
nox.options.error_on_missing_interpreters = True

PYTHON = "3.11"


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Unit and end-to-end tests over real sockets (needs node and npm for the node client test, and Debian's
    Chromium at /usr/bin/chromium for the playground's browser tests, driven by Playwright: .ci/run installs it)."""
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
    session.run("ruff", "check", "relay", "tests", "conformance", "bench", "noxfile.py")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Every benchmark scenario and the Targets table (`python -m bench all`); writes bench/runs/<UTC time>/results.md
    and .json (ignored by git), or with `-- --update-results` the committed bench/results.md and .json.

    Not in the default sessions: it takes about 10-15 minutes and wants an otherwise idle machine.
    Options go after `--`: `nox -s bench -- --peer litellm` also measures LiteLLM's proxy (installed into
    .bench-venvs/litellm by the benchmark itself), `--transports websockets` runs one relay transport.
    """
    session.install("-e", ".[test,bench]")
    session.run("python", "-m", "bench", "all", *session.posargs)
