"""``archiver browse``: serve the read-only web UI over one source's archive until stopped."""

from __future__ import annotations

import argparse
import ipaddress
import signal
import sys

import anyio

from archiver.asgi import bind, serve, url_of
from archiver.audit.access import AccessTrail
from archiver.cli.common import setup
from archiver.cli.lookup import only_config
from archiver.compose.stores import make_store
from archiver.core.clock import SystemClock
from archiver.errors import EXIT_OK, ConfigError
from archiver.web.browse import Browser
from archiver.web.login import Login


def browse(args: argparse.Namespace) -> int:
    config = only_config(setup(args, read_only=True))
    host, sep, port_text = args.listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) < 65536:
        raise ConfigError(
            [f"At '--listen': must be host:port, like 127.0.0.1:8080 (got {args.listen!r})"], source="the command line"
        )

    if not _loopback(host) and not config.browse.login:
        raise ConfigError(
            [
                f"At '--listen': {args.listen} is reachable from other machines, and recordings are personal data: "
                "set browse.users_file (an htpasswd file of bcrypt entries, htpasswd -B) or browse.trusted_proxy "
                "(an authenticating reverse proxy), or listen on 127.0.0.1"
            ],
            source="the command line",
        )
    login = Login.from_config(config.browse)

    def ready(url: str) -> None:
        who = "sign-in: users_file" if config.browse.users_file else "sign-in: trusted proxy" if login else "no sign-in"
        print(f"archive browser on {url}  (read-only; {who}; Ctrl-C stops)", flush=True)

    async def go() -> None:
        store = make_store(config)
        trail = AccessTrail(store, config.storage.prefix, SystemClock())
        try:
            browser = Browser(
                store,
                config.storage.prefix,
                config.source.tz,
                country_code=config.source.country_code,
                concurrency=config.download.concurrency,
                login=login,
                trail=trail,
            )
            try:
                sock = bind(host, int(port_text))
            except OSError as exc:
                raise ConfigError(
                    [f"At '--listen': cannot listen on {args.listen}: {exc.strerror}"], source="the command line"
                ) from None
            browser.listen_on(host, sock.getsockname()[1])
            async with anyio.create_task_group() as tg:
                tg.start_soon(_stop_on_signal, tg.cancel_scope)
                tg.start_soon(trail.run)  # within a minute, and once more when stopped
                ready(url_of(sock))
                await serve(browser.app(), sock)
        finally:
            await store.aclose()

    anyio.run(go)
    print("archive browser stopped", file=sys.stderr)
    return EXIT_OK


async def _stop_on_signal(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()
            return


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
