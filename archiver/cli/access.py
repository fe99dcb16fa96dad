"""``archiver access``: read the access trail: who viewed, played, downloaded or exported which call.

``--as USER`` (with ``--group G`` for groups a proxy would name) shows only what ``browse.scopes``
lets USER see: the events of the sources in their scope, and of a scope narrowed to extensions,
the events of the calls that involve one of them (each such call's current record is read).
"""

from __future__ import annotations

import argparse
import json
import unicodedata
from datetime import datetime
from typing import Any

import anyio

from archiver.audit.access import AccessEvent, days_window, read_trail
from archiver.audit.catalog import Catalog
from archiver.cli.common import print_title, setup
from archiver.compose.stores import make_store
from archiver.config.models import DEFAULT_SOURCE, Config
from archiver.core.dayfiles import CallEntry
from archiver.core.windows import parse_date_argument
from archiver.errors import EXIT_OK, CallError, ConfigError
from archiver.store import Store
from archiver.store.listing import SIDECAR_LIMIT
from archiver.web.login import read_users
from archiver.web.scopes import Scope, Scopes


def access(args: argparse.Namespace) -> int:
    configs = setup(args, quiet=True, read_only=True)
    scope = _scope_of(args, configs)
    found: list[tuple[Config, list[AccessEvent]]] = []
    for config in configs:
        since, until = _bounds(args, config)
        name = config.name or DEFAULT_SOURCE
        if scope is not None and not scope.sees_source(name):
            found.append((config, []))
            continue

        async def go(
            config: Config = config, since: Any = since, until: Any = until, name: str = name
        ) -> list[AccessEvent]:
            store = make_store(config)
            try:
                first, last = days_window(since, until)
                events = [
                    e
                    async for e in read_trail(store, config.storage.prefix, first, last)
                    if _wanted(e, args, since, until)
                ]
                if scope is not None and scope.narrowed(name):
                    events = await _of_calls_in(scope, name, config, store, events)
                return events
            finally:
                await store.aclose()

        found.append((config, anyio.run(go)))
    if args.json:
        print(json.dumps([e.__dict__ for _, events in found for e in events], indent=2, ensure_ascii=False))
        return EXIT_OK
    for config, events in found:
        print_title(configs, config)
        for e in events:
            where = f" {_shown(e.file)}" if e.file else ""
            used = f"  scope {_shown(e.scope)}" if e.scope else ""
            print(
                f"{_shown(e.at)}  {_shown(e.user) or '-':<16} {_shown(e.action):<9} call {_shown(e.call_id)}{where}"
                f"  from {_shown(e.remote)} ({_shown(e.via)}){used}"
            )
        print(f"{len(events)} access event(s)")
    return EXIT_OK


def _shown(text: str) -> str:
    """*text* as a terminal may show it: control and format characters (escape sequences, a
    carriage return, bidirectional overrides), which anyone who can write to the bucket could put
    in a trail line, written as visible escapes."""
    return "".join(
        c
        if unicodedata.category(c) not in ("Cc", "Cf")
        else f"\\x{ord(c):02x}"
        if ord(c) < 0x100
        else f"\\u{ord(c):04x}"
        for c in str(text)
    )


def _scope_of(args: argparse.Namespace, configs: tuple[Config, ...]) -> Scope | None:
    """What ``--as USER`` may see (None: everything, without --as or without browse.scopes)."""
    browse = configs[0].browse
    if not args.as_user or browse.scopes is None:
        return None
    groups = set(args.group)
    if browse.users_file is not None:
        user = read_users(browse.users_file).get(args.as_user)
        groups |= set(user.groups) if user else set()
    return Scopes(browse.scopes, [c.name or DEFAULT_SOURCE for c in configs]).of(args.as_user, groups)


async def _of_calls_in(
    scope: Scope, source: str, config: Config, store: Store, events: list[AccessEvent]
) -> list[AccessEvent]:
    """The events whose call the scope, narrowed to extensions, covers (a call no longer found is not)."""
    catalog = Catalog(store, config.storage.prefix, config.source.tz, concurrency=config.download.concurrency)
    covered: dict[str, bool] = {}
    for event in events:
        if event.call_id not in covered:
            covered[event.call_id] = False
            try:
                files = await catalog.locate(event.call_id)
                if files is not None and files.records:
                    entry = CallEntry.from_sidecar(event.call_id, await store.read(files.current_key, SIDECAR_LIMIT))
                    covered[event.call_id] = scope.sees(source, entry)
            except (ValueError, CallError):
                pass  # not a call id, or a record that cannot be read: not shown as in the scope
    return [e for e in events if covered[e.call_id]]


def _bounds(args: argparse.Namespace, config: Config) -> tuple[datetime | None, datetime | None]:
    try:
        since = parse_date_argument(args.since, config.source.tz) if args.since else None
        until = parse_date_argument(args.until, config.source.tz) if args.until else None
    except ValueError as exc:
        raise ConfigError([f"At '--since/--until': {exc}"], source="the command line") from None
    if since and until and until <= since:
        raise ConfigError([f"At '--until': {args.until} is not after --since {args.since}"], source="the command line")
    return since, until


def _wanted(event: AccessEvent, args: argparse.Namespace, since: datetime | None, until: datetime | None) -> bool:
    try:
        at = datetime.fromisoformat(event.at)
    except ValueError:
        return False
    return (
        (since is None or at >= since)
        and (until is None or at < until)
        and (not args.call or event.call_id == args.call.lower())
        and (not args.user or event.user == args.user)
    )
