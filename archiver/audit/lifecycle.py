"""What the archive records of its own lifecycle: days expired under retention, and recordings
erased on request. Each must account for what is gone, and nothing may outlive its policy."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from archiver.audit.findings import CLOCK_SLACK, Problem, VerifyReport
from archiver.core import dayfiles, keys, seal
from archiver.core import retention as core_retention
from archiver.core.clock import Clock
from archiver.core.outcome import removed_by_erasure
from archiver.errors import ArchiverError
from archiver.store import Store
from archiver.store.listing import DayListing, archive_days

# The daily expire removes a day within a day of its passing retention.keep; one kept two days
# past it was missed.
EXPIRY_GRACE = timedelta(days=2)


def expired_in(
    chain: seal.Chain, prefix: str, days: list[date] | None, report: VerifyReport
) -> dict[str, tuple[int, seal.Expiry]]:
    """The days of *days* (None: all) the chain records as expired, counted by policy."""
    wanted = None if days is None else {keys.day_prefix(prefix, d) for d in days}
    expired = {f: e for f, e in chain.expired().items() if wanted is None or f in wanted}
    for _, expiry in expired.values():
        report.expired[expiry.policy] = report.expired.get(expiry.policy, 0) + 1
    return expired


def check_expired_manifests(
    chain: seal.Chain,
    expired: dict[str, tuple[int, seal.Expiry]],
    sealed_in: dict[str, list[str]],
    present: dict[str, set[str]],
    report: VerifyReport,
) -> None:
    """A sealed manifest of an expired day went with it: the day's records must name it, with the
    SHA-256 its seal sealed (nothing rewritten just before it expired). One sealed after the day's
    record and still there (an addendum written meanwhile) is the next expire's to record and
    remove. *present*: the manifests each expired day still holds; *sealed_in* loses their folders."""
    sealed = chain.sealed()
    for folder, (number, expiry) in expired.items():
        named = {link.key for link in expiry.manifests}
        for key in sealed_in.pop(folder, []):
            if key in named:
                continue
            if key in present.get(folder, set()):
                report.history.append(
                    Problem(
                        key,
                        f"sealed after its day's expiry was recorded (seal {number}): `archiver expire` "
                        "records it and removes it",
                    )
                )
            else:
                report.problems.append(
                    Problem(key, f"a sealed manifest gone, which the expiry record of {expiry.day} does not name")
                )
        report.problems += [
            Problem(
                link.key,
                f"the expiry record (seal {number}) gives the manifest another SHA-256 than its seal sealed",
            )
            for link in expiry.manifests
            if sealed.get(link.key) and not chain.sealed_by(link.key, link.sha256)
        ]


def check_expiry_records(
    chain: seal.Chain, configured: tuple[timedelta, str, ZoneInfo] | None, now: datetime, report: VerifyReport
) -> None:
    """Each expiry record must be lawful: for the folder of the day it names, made at or after the
    day's end (in the zone the seals state the days are filed in) plus its policy, under the policy
    in force when it was made, as the chain states it (or, for records made before the chain stated
    one, ``retention.keep``); and made in the past: no later than its seal, and its seal no later
    than *now* (the verifier's clock) and CLOCK_SLACK. A record dated ahead was made by a clock
    that was wrong, or by hand: it cannot be weighed against the time it says."""
    zones = chain.timezones()
    if len(zones) > 1:
        first, second = sorted(zones, key=lambda z: zones[z][0])[:2]
        report.problems.append(
            Problem(
                seal.seal_key(chain.prefix, zones[second][0]),
                f"seal {zones[second][0]} says the days are filed in {second}, seal {zones[first][0]} in {first}: "
                "an archive's days are filed in one zone",
            )
        )
    policy: str | None = None
    for number, (stated_seal, _) in sorted(chain.seals.items()):
        if stated_seal.retention is not None and stated_seal.retention != policy:
            was = f" (it was {policy})" if policy else ""
            report.history.append(
                Problem(
                    seal.seal_key(chain.prefix, number), f"retention {stated_seal.retention} in force from here{was}"
                )
            )
            policy = stated_seal.retention
        for expiry in stated_seal.expired:
            zone = stated_seal.timezone or chain.timezone or (configured[2].key if configured else None)
            problem = _unlawful(expiry, number, zone, chain.retention_at(number), configured) or _misplaced(
                expiry, number, stated_seal, chain.prefix, now
            )
            if problem:
                report.problems.append(Problem(expiry.folder, problem))


def _unlawful(
    expiry: seal.Expiry,
    number: int,
    zone: str | None,
    in_force: tuple[int, str] | None,
    configured: tuple[timedelta, str, ZoneInfo] | None,
) -> str | None:
    """What is wrong with one expiry record (None: nothing)."""
    where = f"the expiry record of {expiry.day} (seal {number})"
    keep = core_retention.policy_span(expiry.policy)
    if keep is None:
        return f"{where} names a policy that is not a span of time: {expiry.policy!r}"
    if in_force is not None and in_force[1] != expiry.policy:
        return f"{where} says retention {expiry.policy}; the policy in force was {in_force[1]} (seal {in_force[0]})"
    if in_force is None and configured is not None and configured[1] != expiry.policy:
        return (
            f"{where} says retention {expiry.policy}; retention.keep is {configured[1]}, and no change of it is "
            "recorded in the seals"
        )
    try:
        day, at = date.fromisoformat(expiry.day), datetime.fromisoformat(expiry.at)
    except ValueError:
        return f"{where} does not give its day and its time in the forms the archiver writes"
    if zone is None or at.tzinfo is None:
        return f"{where} cannot be weighed: no seal states the zone the days are filed in, and none is configured"
    tz = seal.known_zone(zone)
    if tz is None:
        return f"{where} cannot be weighed: the seals state the zone {zone!r}, which this machine does not know"
    early = core_retention.expired_early(day, keep, at, tz)
    if early is not None:
        return f"{where} was made {early} before retention {expiry.policy} let the day go (in {zone})"
    return None


def _misplaced(expiry: seal.Expiry, number: int, stated: seal.Seal, prefix: str, now: datetime) -> str | None:
    """What is wrong with where and when an expiry record says it was made (None: nothing): it
    must name its own day's folder (lawfulness is weighed on the day; what is gone is the folder),
    and its time must have come."""
    where = f"the expiry record of {expiry.day} (seal {number})"
    try:
        folder = keys.day_prefix(prefix, date.fromisoformat(expiry.day))
        at, sealed_at = datetime.fromisoformat(expiry.at), datetime.fromisoformat(stated.sealed_at)
    except ValueError:
        return f"{where} does not give its day and its time in the forms the archiver writes"
    if expiry.folder != folder:
        return f"{where} names the folder {expiry.folder}, not its day's ({folder})"
    if at.tzinfo is None or sealed_at.tzinfo is None:
        return f"{where} does not give its time, or its seal's, with a zone"
    if at > sealed_at:
        return f"{where} is dated {expiry.at}, after its own seal ({stated.sealed_at})"
    if sealed_at > now + CLOCK_SLACK:
        return (
            f"{where} was sealed at {stated.sealed_at}, ahead of this verify's clock ({seal.utc_text(now)}): "
            "made by a clock that was wrong, or by hand"
        )
    return None


async def check_overdue(
    store: Store,
    prefix: str,
    chain: seal.Chain,
    clock: Clock,
    retention: tuple[timedelta, str, ZoneInfo],
    report: VerifyReport,
) -> None:
    """Days kept past ``retention.keep`` (by more than EXPIRY_GRACE: the daily expire's time to
    come round): personal data held longer than its policy allows is a problem to see."""
    keep, policy, configured_tz = retention
    tz = seal.known_zone(chain.timezone) or configured_tz  # the archive's own zone first
    first_kept = core_retention.first_kept(clock.now() - EXPIRY_GRACE, keep, tz)
    recorded = chain.expired()
    overdue = [
        day
        for day in await archive_days(store, prefix)
        if day < first_kept and keys.day_prefix(prefix, day) not in recorded
    ]
    if overdue:
        report.problems.append(
            Problem(
                keys.day_prefix(prefix, overdue[0]),
                f"{len(overdue)} day(s), {overdue[0].isoformat()} to {overdue[-1].isoformat()}, are past "
                f"retention.keep ({policy}) and not expired: run `archiver expire` (is archiver-expire.timer "
                "enabled?)",
            )
        )


async def expired_leftovers(
    store: Store, listing: DayListing, recorded: tuple[int, seal.Expiry], now: datetime, report: VerifyReport
) -> None:
    """An expired day that still holds objects: Object Lock keeps them, or an expire was cut
    short, which the next ``archiver expire`` finishes. Past EXPIRY_GRACE, what no lock or legal
    hold keeps is a problem: the expire came round and could not remove it (a delete the store
    refused), and the personal data is kept past its policy."""
    number, expiry = recorded
    left = len(listing.objects)
    what = f"expired under retention {expiry.policy} (seal {number}, {expiry.at})"
    try:
        due = datetime.fromisoformat(expiry.at) + EXPIRY_GRACE <= now
    except (TypeError, ValueError):
        due = False  # a record not in the archiver's form: check_expiry_records names it
    if due:
        try:
            held = {h.key for h in await store.holds(listing.objects)}
        except ArchiverError as exc:
            report.problems.append(
                Problem(listing.folder, f"{what}; {left} object(s) remain, and whether a lock keeps them: {exc}")
            )
            return
        if len(held) < left:
            report.problems.append(
                Problem(
                    listing.folder,
                    f"{what}; {left - len(held)} of its {left} object(s) remain with no lock or legal hold that keeps "
                    "them, past the time the daily expire had to remove them: does the store refuse the deletes? "
                    "(`archiver expire` says; it needs s3:DeleteObject and s3:DeleteObjectVersion)",
                )
            )
            return
    report.history.append(
        Problem(
            listing.folder,
            f"{what}; {left} object(s) remain: under Object Lock retention or a legal hold, or an expire cut short "
            "(`archiver expire` removes them when it may)",
        )
    )


def erased(listing: DayListing, docs: dict[str, tuple[str, dict[str, Any]]]) -> dict[str, dict[str, str | None]]:
    """The calls of the day whose current record says ``erased``: call id -> {key removed: the
    SHA-256 the erasure states for it}."""
    out: dict[str, dict[str, str | None]] = {}
    for call_id, key in listing.sidecars.items():
        found = docs.get(key[len(listing.folder) :])
        rec = dayfiles.mapping(found[1].get("recording")) if found else {}
        if rec.get("status") == "erased":
            out[call_id] = {r.key: r.sha256 for r in removed_by_erasure(rec)}
    return out


def check_erasures(
    listing: DayListing,
    docs: dict[str, tuple[str, dict[str, Any]]],
    absent: list[tuple[str, str]],
    report: VerifyReport,
) -> dict[str, dict[str, str | None]]:
    """The day's erasures: what each says was removed must be what the records stated, and gone;
    a recording a record names and the day lacks is a problem unless its call was erased.
    Returns the erasures (see :func:`erased`)."""
    gone = erased(listing, docs)
    report.erased += len(gone)
    stated_audio = {  # recording key -> the SHA-256 the record naming it states
        str(rec["key"]): rec.get("sha256")
        for _, doc in docs.values()
        if (rec := dayfiles.mapping(doc.get("recording"))).get("status") == "archived" and rec.get("key")
    }
    for call_id, key in sorted(absent):
        if key not in gone.get(call_id, {}):
            report.problems.append(Problem(key, "the recording the sidecar names is not in the archive", call_id))
    for call_id, removed in sorted(gone.items()):
        for key, sha in sorted(removed.items()):
            if key in stated_audio and stated_audio[key] != sha:
                report.problems.append(
                    Problem(key, "the erasure record gives the recording another SHA-256 than its record", call_id)
                )
        for key in sorted(set(listing.audio.get(call_id, [])) & set(removed)):
            report.problems.append(
                Problem(
                    key,
                    "the call's recordings were erased, but this one is still in the archive "
                    "(an erase cut short: `archiver erase` again finishes it)",
                    call_id,
                )
            )
    return gone
