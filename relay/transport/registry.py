"""The WebSocket implementations by name: `general_settings.transport` and `--transport` choose one."""

from __future__ import annotations

from relay.transport import TRANSPORT_NAMES, Transport


def get_transport(name: str) -> Transport:
    """The transport called `name` (one of TRANSPORT_NAMES); ValueError otherwise.  Each is imported when first
    asked for: a relay on one transport never loads the other's library."""
    if name == "trio-websocket":
        from relay.transport import tws

        return Transport("trio-websocket", tws.serve, tws.open_connection)
    if name == "websockets":
        from relay.transport import sansio

        return Transport("websockets", sansio.serve, sansio.open_connection)
    raise ValueError(f"unknown transport {name!r}; expected one of {', '.join(TRANSPORT_NAMES)}")
