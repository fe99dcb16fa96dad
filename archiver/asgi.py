"""Serving an ASGI application (Starlette) on uvicorn inside a command's own task group.

The command binds the socket (so a taken port is its error, with its key, and port 0 tells the
port it got), uvicorn serves on it, and cancelling the task shuts the server down gracefully:
open requests get a few seconds to finish. Signals stay the command's: uvicorn would otherwise
take SIGINT and SIGTERM for itself and raise them again when it stops.

uvicorn believes no ``X-Forwarded-For`` or ``X-Forwarded-Proto`` (``proxy_headers`` off): a
request's address is its connection's, whoever sends the header. HTTPS is uvicorn's own
(``ssl_certfile``, ``ssl_keyfile``).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import anyio
import uvicorn
from starlette.types import ASGIApp


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the command handles signals (anyio's signal receiver, the daemon's shutdown)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on *host* (IPv4 or IPv6, brackets allowed) and *port* (0: any free).

    Made as IPPROTO_TCP, so that asyncio sets TCP_NODELAY on each connection it accepts (it does
    only for sockets that say so): otherwise every answer on a kept-alive connection waits out the
    client's delayed ACK, 40 ms. Raises OSError when the address cannot be bound.
    """
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def url_of(sock: socket.socket, *, tls: bool = False) -> str:
    """``http://host:port/`` (``https://`` with *tls*) of a bound socket, as a browser writes it."""
    host, port = sock.getsockname()[:2]
    return f"{'https' if tls else 'http'}://{f'[{host}]' if ':' in host else host}:{port}/"


async def serve(
    app: ASGIApp,
    sock: socket.socket,
    *,
    tls: tuple[Path, Path] | None = None,
    limit_concurrency: int | None = None,
) -> None:
    """Serve *app* on *sock* until cancelled; then stop taking connections, let open requests
    finish (5 s at most), and close *sock*.

    *tls*: (certificate, key) PEM files to serve HTTPS with. *limit_concurrency*: past this many
    connections and requests at once, uvicorn answers 503 at once instead of queueing more.
    """
    config = uvicorn.Config(
        app,
        log_config=None,  # structlog keeps the logs; uvicorn's own go to the (quiet) stdlib loggers
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=5,
        server_header=False,
        proxy_headers=False,  # the connection's address is the client's, whatever a header says
        limit_concurrency=limit_concurrency,
        ssl_certfile=str(tls[0]) if tls else None,
        ssl_keyfile=str(tls[1]) if tls else None,
    )
    server = _Server(config)
    try:
        await server.serve(sockets=[sock])
    except anyio.get_cancelled_exc_class():
        server.should_exit = True
        if server.started:  # uvicorn's own shutdown, which a cancelled serve() skipped
            with anyio.CancelScope(shield=True):
                await server.shutdown(sockets=[sock])
        raise
    finally:
        sock.close()
