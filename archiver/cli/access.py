"""``archiver access``: read the access trail: who viewed, played, downloaded or exported which call."""

from __future__ import annotations

import argparse
import json
import unicodedata
from datetime import datetime
from typing import Any

import anyio

from archiver.audit.access import AccessEvent, days_window, read_trail
from archiver.cli.common import print_title, setup
from archiver.compose.stores import make_store
from archiver.config.models import Config
from archiver.core.windows import parse_date_argument
from archiver.errors import EXIT_OK, ConfigError


def access(args: argparse.Namespace) -> int:
    configs = setup(args, quiet=True, read_only=True)
    found: list[tuple[Config, list[AccessEvent]]] = []
    for config in configs:
        since, until = _bounds(args, config)

        async def go(config: Config = config, since: Any = since, until: Any = until) -> list[AccessEvent]:
            store = make_store(config)
            try:
                first, last = days_window(since, until)
                return [
                    e
                    async for e in read_trail(store, config.storage.prefix, first, last)
                    if _wanted(e, args, since, until)
                ]
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
            scope = f"  scope {_shown(e.scope)}" if e.scope else ""
            print(
                f"{_shown(e.at)}  {_shown(e.user) or '-':<16} {_shown(e.action):<9} call {_shown(e.call_id)}{where}"
                f"  from {_shown(e.remote)} ({_shown(e.via)}){scope}"
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
