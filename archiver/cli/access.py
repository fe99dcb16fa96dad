"""``archiver access``: read the access trail: who viewed, played, downloaded or exported which call."""

from __future__ import annotations

import argparse
import json
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
            where = f" {e.file}" if e.file else ""
            print(f"{e.at}  {e.user or '-':<16} {e.action:<9} call {e.call_id}{where}  from {e.remote} ({e.via})")
        print(f"{len(events)} access event(s)")
    return EXIT_OK


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
