"""The bare forwarder: `python -m bench.bare --transport T --upstream ws://HOST:PORT [--host H] [--port P]`.

The transport ceiling for the audio scenario. Per client connection it opens one upstream connection to the
same path and copies every message both ways, unchanged, with two tasks: what the relay does for audio minus
the translation (no parsing, no events, no session state). It uses the relay's own transport seam
(`relay.transport.registry.get_transport`), with the same buffer sizes and limits as the relay, so relay sessions per
core / bare sessions per core is the share of the core the transport leaves to the translator.
"""

from __future__ import annotations

import argparse
from functools import partial

import trio

from relay.transport import HandshakeFailed, IncomingConnection, MessageSocket, SocketClosed
from relay.transport.registry import get_transport


async def _pump(source: MessageSocket, sink: MessageSocket, done: trio.CancelScope) -> None:
    try:
        while True:
            await sink.send_message(await source.get_message())
    except SocketClosed:
        pass
    finally:
        done.cancel()  # either side closing ends the pair, as in the relay


async def serve(transport_name: str, upstream: str, host: str, port: int) -> None:
    transport = get_transport(transport_name)

    async def handle(conn: IncomingConnection) -> None:
        client = await conn.accept()
        try:
            async with transport.open_connection(upstream + conn.request.path, []) as up:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_pump, client, up, nursery.cancel_scope)
                    nursery.start_soon(_pump, up, client, nursery.cancel_scope)
        except HandshakeFailed:
            await client.close(1011, "upstream unreachable")

    async with trio.open_nursery() as nursery:
        bound = await nursery.start(partial(transport.serve, handle, host, port))
        print(f"bare forwarder listening on ws://{host}:{bound} ({transport_name}, upstream {upstream})", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bare", description=__doc__)
    parser.add_argument("--transport", default="trio-websocket")
    parser.add_argument("--upstream", required=True, help="ws://host:port; the client's path is appended")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        trio.run(serve, args.transport, args.upstream.rstrip("/"), args.host, args.port)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
