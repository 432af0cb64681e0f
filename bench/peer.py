"""LiteLLM's realtime proxy as a peer (`--peer litellm`): its own venv, its config, its environment.

The venv is `.bench-venvs/litellm` under the repository (gitignored), made with this interpreter's `venv`
and filled by pip from the configured index: `litellm[proxy]==1.106.2` plus `google-auth`, which the extra
does not pull in. The version is pinned exactly: 1.107.x was withdrawn after a compromised release, and an
existing venv with any other version is rebuilt rather than trusted.

It runs on the `gemini/` route with `api_base` on the emulator (the
`vertex_ai/` route needs a service account and a token endpoint for no benefit here), deferred setup
(`LITELLM_GEMINI_LIVE_DEFER_SETUP=true`: the first `session.update` becomes the upstream `setup`, as the
relay does), no cost-map download (`LITELLM_LOCAL_MODEL_COST_MAP=True`), and the run's key as master key
(it refuses weak or unset keys, and clients must always send one).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

VERSION = "1.106.2"
REQUIREMENTS = (f"litellm[proxy]=={VERSION}", "google-auth")
VENV = Path(__file__).resolve().parents[2] / ".bench-venvs" / "litellm"
_INSTALL_TIMEOUT = 900.0


class PeerUnavailable(Exception):
    """LiteLLM could not be installed or started; the message says exactly why."""


def _installed_version(python: Path) -> str | None:
    try:
        out = subprocess.run(
            [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
            capture_output=True, text=True, timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def ensure_litellm(log: Path, progress: bool = True) -> Path:
    """The `litellm` executable of the peer venv, installing it first if needed; PeerUnavailable otherwise."""
    python, executable = VENV / "bin" / "python", VENV / "bin" / "litellm"
    if executable.exists() and _installed_version(python) == VERSION:
        return executable
    if progress:
        print(f"relay bench: installing {' '.join(REQUIREMENTS)} into {VENV} (once; a few minutes)",
              file=sys.stderr, flush=True)
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(VENV)],
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--quiet", *REQUIREMENTS],
    ]
    with open(log, "wb") as out:
        for step in steps:
            try:
                code = subprocess.run(step, stdout=out, stderr=subprocess.STDOUT, timeout=_INSTALL_TIMEOUT).returncode
            except (OSError, subprocess.SubprocessError) as exc:
                raise PeerUnavailable(f"`{' '.join(step[:4])} ...` failed: {exc}") from None
            if code != 0:
                raise PeerUnavailable(f"`{' '.join(step[:4])} ...` exited {code}: {_tail(log)}")
    version = _installed_version(python)
    if version != VERSION or not executable.exists():
        raise PeerUnavailable(f"after installing, litellm is {version!r}, not {VERSION}")
    return executable


def _tail(log: Path, lines: int = 6) -> str:
    try:
        text = log.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    # pip repeats a warning per package for index locations that do not exist; they say nothing here.
    useful = [line for line in text if "is ignored: it is neither a file nor a directory" not in line]
    return " / ".join(useful[-lines:]) or "(no output)"


def litellm_config(emulator_port: int) -> str:
    return (
        "model_list:\n"
        "  - model_name: bench\n"
        "    litellm_params:\n"
        "      model: gemini/gemini-2.0-flash-live-001\n"
        "      api_key: bench-unused\n"
        f"      api_base: http://127.0.0.1:{emulator_port}\n"
        "general_settings:\n"
        "  master_key: os.environ/LITELLM_MASTER_KEY\n"
    )


def litellm_env(key: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "LITELLM_MASTER_KEY": key,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_GEMINI_LIVE_DEFER_SETUP": "true",
        "PYTHONUNBUFFERED": "1",  # its ready line must reach the log file while it runs
    })
    # Not the relay's venv: LiteLLM's own interpreter must not see the relay's packages.
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONPATH", None)
    return env
