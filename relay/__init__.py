"""relay: OpenAI Realtime clients in front of Google's Gemini Live (Vertex AI and Google AI Studio).

The public API (see the README's "Library" section): `connect` opens a session inside a trio program, `aio.connect`
the same from asyncio, `serve` runs the server as `python -m relay serve` does; `Config` / `load_config` read a
LiteLLM-style configuration.  Every other module is private.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "Config",
    "ConfigError",
    "RelaySession",
    "SessionClosed",
    "SessionRefused",
    "aio",
    "connect",
    "load_config",
    "serve",
]

if TYPE_CHECKING:
    from relay import aio
    from relay.config import Config, ConfigError
    from relay.library import RelaySession, SessionClosed, SessionRefused, connect, load_config, serve

# Loaded on first use: `python -m relay.emulator` and the benchmark's load side import submodules of this
# package and need none of the server.
_HOMES = {"Config": "relay.config", "ConfigError": "relay.config", "load_config": "relay.library",
          "RelaySession": "relay.library", "SessionClosed": "relay.library", "SessionRefused": "relay.library",
          "connect": "relay.library", "serve": "relay.library", "aio": "relay.aio"}


def __getattr__(name: str) -> Any:
    import importlib

    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'relay' has no attribute {name!r}")
    module = importlib.import_module(home)
    return module if name == "aio" else getattr(module, name)
