"""``archiver browse``: serve the read-only web UI over every source's archive until stopped."""

from __future__ import annotations

import argparse
import ipaddress
import signal
import ssl
import sys
from pathlib import Path

import anyio

from archiver.asgi import bind, serve, url_of
from archiver.audit.access import AccessTrail
from archiver.cli.common import decrypter, setup
from archiver.compose.stores import make_key_store, make_store
from archiver.config.models import DEFAULT_SOURCE, BrowseConfig, Config
from archiver.core.clock import SystemClock
from archiver.errors import EXIT_OK, ConfigError
from archiver.store import Store
from archiver.web.browse import Browser
from archiver.web.desk import Desk
from archiver.web.login import Login
from archiver.web.scopes import Scopes

MAX_CONNECTIONS = 64  # connections and requests at once; past it uvicorn answers 503 at once


def browse(args: argparse.Namespace) -> int:
    configs = setup(args, read_only=True)
    browse_config = configs[0].browse
    host, sep, port_text = args.listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) < 65536:
        raise ConfigError(
            [f"At '--listen': must be host:port, like 127.0.0.1:8080 (got {args.listen!r})"], source="the command line"
        )
    login = Login.from_config(browse_config)  # a users file's problems first, each with its line
    _refuse_an_open_door(args.listen, host, browse_config, configs, str(args.config))
    tls = _tls(browse_config, str(args.config))
    names = [c.name or DEFAULT_SOURCE for c in configs]
    scopes = Scopes(browse_config.scopes, names) if browse_config.scopes is not None else None

    def ready(url: str) -> None:
        who = "sign-in: users_file" if browse_config.users_file else "sign-in: trusted proxy" if login else "no sign-in"
        print(f"archive browser on {url}  (read-only; {who}; Ctrl-C stops)", flush=True)

    async def go() -> None:
        clock = SystemClock()
        stores: list[Store] = []
        try:
            desks = []
            for name, config in zip(names, configs, strict=True):
                store = make_store(config)
                stores.append(store)
                keys = make_key_store(config)
                if keys is not None:
                    stores.append(keys.store)
                reader, why_not = decrypter(config, keys, why="to play encrypted recordings")
                desks.append(
                    Desk.open(
                        name,
                        store,
                        config.storage.prefix,
                        config.source.tz,
                        clock,
                        country_code=config.source.country_code,
                        concurrency=config.download.concurrency,
                        trail=AccessTrail(store, config.storage.prefix, clock),
                        watched=_watched(browse_config, name),
                        cold_class=config.storage.storage_class,
                        decrypter=reader,
                        why_not=why_not,
                    )
                )
            browser = Browser(desks, scopes=scopes, login=login, clock=clock, tls=tls is not None)
            try:
                sock = bind(host, int(port_text))
            except OSError as exc:
                raise ConfigError(
                    [f"At '--listen': cannot listen on {args.listen}: {exc.strerror}"], source="the command line"
                ) from None
            browser.listen_on(host, sock.getsockname()[1])
            async with anyio.create_task_group() as tg:
                tg.start_soon(_stop_on_signal, tg.cancel_scope)
                for desk in desks:
                    if desk.trail is not None:
                        tg.start_soon(desk.trail.run)  # within a minute, and once more when stopped
                tg.start_soon(browser.warm)
                ready(url_of(sock, tls=tls is not None))
                await serve(browser.app(), sock, tls=tls, limit_concurrency=MAX_CONNECTIONS)
        finally:
            for store in stores:
                await store.aclose()

    anyio.run(go)
    print("archive browser stopped", file=sys.stderr)
    return EXIT_OK


def _refuse_an_open_door(listen: str, host: str, browse: BrowseConfig, configs: tuple[Config, ...], path: str) -> None:
    """ConfigError, naming the keys, for a desk others could read more of than they should."""
    if not _loopback(host) and not browse.login:
        raise ConfigError(
            [
                f"At '--listen': {listen} is reachable from other machines, and recordings are personal data: "
                "set browse.users_file (an htpasswd file of bcrypt entries, htpasswd -B) or browse.trusted_proxy "
                "(an authenticating reverse proxy), or listen on 127.0.0.1"
            ],
            source="the command line",
        )
    if not _loopback(host) and browse.users_file is not None and browse.tls is None:
        raise ConfigError(
            [
                f"At 'browse.tls': {listen} is reachable from other machines, and HTTP Basic sends each password "
                "in clear: set browse.tls: {cert: FILE, key: FILE}, put a TLS proxy in front (browse.trusted_proxy), "
                "or listen on 127.0.0.1"
            ],
            source=path,
        )
    if len(configs) > 1 and browse.login and browse.scopes is None:
        names = ", ".join(c.name or "" for c in configs)
        raise ConfigError(
            [
                f"At 'browse.scopes': the file has {len(configs)} sources ({names}) and a login, but says nobody's "
                'scope: map each user or "group:NAME" to the sources they may see, e.g. '
                '{alice: [hq], "group:qa": [hq, danang]}; {"*": all} lets everyone see everything'
            ],
            source=path,
        )


def _tls(browse: BrowseConfig, path: str) -> tuple[Path, Path] | None:
    """The certificate and key browse.tls names, checked now (ConfigError naming the key)."""
    if browse.tls is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(browse.tls.cert, browse.tls.key)
    except FileNotFoundError as exc:
        raise ConfigError(
            [f"At 'browse.tls': cannot read {exc.filename}: {exc.strerror}"], source="the config"
        ) from None
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            [f"At 'browse.tls': {browse.tls.cert} and {browse.tls.key} are not a PEM certificate and its key ({exc})"],
            source=path,
        ) from None
    return browse.tls.cert, browse.tls.key


def _watched(browse: BrowseConfig, source: str) -> frozenset[str]:
    """The extensions browse.scopes narrows *source* to, for anyone."""
    return frozenset(
        grant.split("/", 1)[1]
        for _, grants in browse.scopes or ()
        for grant in grants
        if grant.startswith(f"{source}/")
    )


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
