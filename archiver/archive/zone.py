"""The zone an archive's days are filed in: the one its seals state, whoever writes next.

Every seal states the zone the archive's days are filed in (the last seal that states one speaks
for the archive: ``Chain.timezone``). Whatever writes to the archive (the daemon and backfill,
rearchive, erase, expire) files, seals and reckons retention in that zone, decided before it
writes anything:

- the seals state a zone and ``source.timezone`` names another: ConfigError naming both (days
  filed in two zones are read wrongly by retention for ever, and no command rewrites a seal);
- the seals state two zones (an archive written under two configurations): ConfigError where the
  whole chain is read (``expire``), since which day is in which zone cannot be known;
- ``source.timezone`` names none: the seals' zone;
- the seals state none (a new archive, or one sealed before seals stated zones): the configured
  zone; None when neither says one (the caller's default, or its refusal).
"""

from __future__ import annotations

from functools import partial
from zoneinfo import ZoneInfo

import attrs
import structlog

from archiver.archive.outage import StoreOutage
from archiver.config.models import Config
from archiver.core.seal import Chain, known_zone
from archiver.errors import ConfigError, StoreUnavailable, TransientError
from archiver.retry import STORE_PATIENCE, RetryPolicy
from archiver.store import Store
from archiver.store.seals import ChainReader

log = structlog.get_logger("archiver.archive")


def settled_zone(chain: Chain, configured: ZoneInfo | None, *, where: str) -> ZoneInfo | None:
    """The zone of the archive whose (read) *chain* is given, against the one the configuration
    names (*configured*; None: it names none). *where*: the archive, for the messages. Raises
    ConfigError, before anything is written, where they disagree or the seals state two zones."""
    stated = chain.timezones()
    if len(stated) > 1:
        found = "; ".join(
            f"{zone} in {len(numbers)} seal(s), {numbers[0]} to {numbers[-1]}" for zone, numbers in stated.items()
        )
        raise ConfigError(
            [
                f"At 'source.timezone': the seals of {where} state two zones its days were filed in ({found}): "
                "which zone a day was filed in cannot be known, so nothing is reckoned by it (see docs/retention.md, "
                "the zone)"
            ]
        )
    zone = chain.timezone
    if zone is None:
        return configured
    if configured is not None and configured.key != zone:
        raise ConfigError(
            [
                f"At 'source.timezone': it names {configured.key}, but the seals of {where} state that its days are "
                f"filed in {zone}; set source.timezone: {zone} (or leave it out: the seals' zone is used); "
                "nothing was written"
            ]
        )
    tz = known_zone(zone)
    if tz is None:
        raise ConfigError(
            [
                f"At 'source.timezone': the seals of {where} state that its days are filed in {zone!r}, a zone this "
                "machine's time zone database does not know: install or update tzdata (the Python package, or the "
                "system's), or find who wrote that seal (archiver verify); nothing was written"
            ]
        )
    return tz


async def archive_zone(
    store: Store, prefix: str, configured: ZoneInfo | None, *, concurrency: int = 8
) -> ZoneInfo | None:
    """:func:`settled_zone` of the archive under *prefix*, from its last seal (one listing, one
    read: every seal written since seals state zones states it), or from the whole chain where
    that seal states none."""
    reader = ChainReader(store, prefix, concurrency=concurrency)
    await reader.read_head()
    if reader.listed and reader.chain.timezone is None:
        await reader.read_all()
    return settled_zone(reader.chain, configured, where=described(store, prefix))


async def in_archive_zone(config: Config, store: Store, *, patience: RetryPolicy = STORE_PATIENCE) -> Config:
    """*config*, its ``source.timezone`` the archive's zone (see :func:`archive_zone`); unchanged
    where neither the seals nor the configuration say one (the default zone is used, as before).

    A store that does not answer now leaves a configuration that names a zone as it is (the daemon
    starts in an outage, and the sealer refuses a seal stating another zone than the chain's); one
    that names none waits for the store as every store step does (*patience*), then, if it still
    does not answer, cannot be settled: a StoreUnavailable says so (nothing is filed in a zone
    guessed).
    """
    configured = config.source.tz_given
    read = partial(archive_zone, store, config.storage.prefix, configured, concurrency=config.download.concurrency)
    try:
        if configured is None:
            zone = await StoreOutage(store, f"{config.control_prefix}/outage-probe", patience).run(read)
        else:
            zone = await read()
    except TransientError as exc:
        if configured is None:
            raise StoreUnavailable(
                f"the zone the archive's days are filed in could not be read from its seals ({exc}), and "
                "source.timezone names none: start again when the store answers, or set source.timezone",
                retry_after=exc.retry_after,
            ) from None
        log.warning("archive.zone_unread", timezone=configured.key, error=str(exc))
        return config
    if zone is None or configured is not None:
        return config
    log.info("archive.zone_from_seals", timezone=zone.key, archive=described(store, config.storage.prefix))
    return attrs.evolve(config, source=attrs.evolve(config.source, timezone=zone.key))


def described(store: Store, prefix: str) -> str:
    """The archive under *prefix* of *store*, as the messages name it."""
    return f"{store.description}" + (f" (prefix {prefix})" if prefix else "")
