"""What every command shares: the configuration, dates, and who this instance is."""

from __future__ import annotations

import argparse
import json
from datetime import date, datetime, timedelta
from typing import Any

import anyio

from archiver.archive.zone import in_archive_zone
from archiver.audit.plaintext import Decrypter
from archiver.compose.stores import make_store
from archiver.config.identity import identities
from archiver.config.load import load_configs
from archiver.config.models import Config, pick
from archiver.core.windows import parse_date_argument
from archiver.errors import ConfigError
from archiver.service import logs
from archiver.store.keys import KeyStore


def setup(
    args: argparse.Namespace,
    *,
    stream: logs.LogStream | None = None,
    quiet: bool = False,
    read_only: bool = False,
) -> tuple[Config, ...]:
    """Load the configuration (the sources ``--source`` picks, else all) and set up logging
    (*quiet*: warnings only, unless --log-level says). *read_only*: the command reads the bucket
    alone, so the PBX's credentials are neither needed nor read."""
    configs = pick(load_configs(args.config, read_only=read_only), getattr(args, "source", None))
    json_lines = {"auto": None, "json": True, "console": False}[args.log_format]
    level = args.log_level or ("warning" if quiet else "info")
    secrets = tuple(secret for config in configs for secret in config.secrets())
    logs.configure(level=level, json_lines=json_lines, secrets=secrets, stream=stream, cache=True)
    return configs


def heading(configs: tuple[Config, ...], config: Config) -> str | None:
    """The line that starts one source's part of a command's output, when there are several."""
    return f"== source {config.name}" if len(configs) > 1 else None


def print_title(configs: tuple[Config, ...], config: Config) -> None:
    """Print the heading of one source's part of a command's output, when there are several."""
    title = heading(configs, config)
    if title:
        print(title)


def emit_json(configs: tuple[Config, ...], documents: list[dict[str, Any]]) -> None:
    """Print one source's document, or ``{"sources": {name: document}}`` for several."""
    if len(configs) == 1:
        print(json.dumps(documents[0], indent=2))
    else:
        print(json.dumps({"sources": {c.name: d for c, d in zip(configs, documents, strict=True)}}, indent=2))


def dates(args: argparse.Namespace, config: Config) -> tuple[datetime, datetime]:
    """--since and --until, read in the source's time zone."""
    tz = config.source.tz
    try:
        since = parse_date_argument(args.since, tz)
        until = parse_date_argument(args.until, tz) if args.until else datetime.now(tz)
    except ValueError as exc:
        raise ConfigError([f"At '--since/--until': {exc}"], source="the command line") from None
    if until <= since:
        raise ConfigError(
            [f"At '--until': {args.until or 'now'} is not after --since {args.since}"], source="the command line"
        )
    return since, until


def days(args: argparse.Namespace, config: Config) -> list[date]:
    """The local days from --since up to (not including) --until."""
    if not args.since:
        raise ConfigError(["At '--until': give --since too"], source="the command line")
    since, until = dates(args, config)
    last = (until - timedelta(microseconds=1)).astimezone(config.source.tz).date()
    return [since.date() + timedelta(days=i) for i in range((last - since.date()).days + 1)]


def decrypter(config: Config, keys: KeyStore | None, *, why: str) -> tuple[Decrypter | None, str]:
    """What reads *config*'s encrypted recordings (None: nothing can, and why not, naming the
    setting): the keys store and the identity file. An identity file that is set but unreadable
    is a ConfigError: it was meant to be used."""
    if keys is None:
        return None, "storage.encryption is not set"
    encryption = config.storage.encryption
    if encryption is None or encryption.identity_file is None:
        return None, "storage.encryption.identity_file is not set"
    return Decrypter(keys, identities(config, why=why)), ""


def in_archive_zones(configs: tuple[Config, ...]) -> tuple[Config, ...]:
    """*configs*, each in its archive's zone (:func:`~archiver.archive.zone.in_archive_zone`):
    --since and --until are read in the zone the archive's days are filed in, and a configuration
    that names another zone than its seals stops the command here, before any work."""

    async def settle(config: Config) -> Config:
        store = make_store(config)
        try:
            return await in_archive_zone(config, store)
        finally:
            await store.aclose()

    return tuple(anyio.run(settle, config) for config in configs)
