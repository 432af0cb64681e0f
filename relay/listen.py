"""TCP listeners for both transports, optionally sharing their port with other processes (`SO_REUSEPORT`).

trio.open_tcp_listeners cannot set SO_REUSEPORT, which `serve --workers N` needs: every worker listens on the
same port and the kernel spreads new connections over them.
"""

from __future__ import annotations

import socket

import trio

BACKLOG = 0xFFFF  # as trio's own default: the kernel truncates it to its configured maximum


def _addresses(host: str, port: int) -> list[tuple[int, int, int, tuple[object, ...]]]:
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    return [(family, kind, proto, addr) for family, kind, proto, _, addr in infos]


def bind_sockets(host: str, port: int, *, reuse_port: bool = False) -> list[socket.socket]:
    """One bound (not listening) socket per address of `host`; with port 0 they share the first one's port."""
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, addr in _addresses(host, port):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(sockets) > 1:
                addr = (addr[0], sockets[0].getsockname()[1], *addr[2:])
            sock.bind(addr)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


async def open_listeners(host: str, port: int, *, reuse_port: bool = False) -> list[trio.SocketListener]:
    """Listening sockets on every address of `host` (as trio.open_tcp_listeners), sharing the port with other
    processes when `reuse_port`."""
    listeners = []
    for sock in bind_sockets(host, port, reuse_port=reuse_port):
        sock.listen(BACKLOG)
        listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
    return listeners
