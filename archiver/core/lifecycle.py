"""Reading a bucket's lifecycle rules against the archive's layout and retention. Pure.

S3 lifecycle rules move objects to other storage classes and delete them, silently. Under the
archive's prefix that is right for nothing but recordings, and then only through
``storage.storage_class`` (records, day files and seals share the recordings' folders, so no
prefix rule can pick the recordings alone): a rule that moves records, day files or seals
makes audits wait for restores; one that deletes them leaves sealed days gone without an expiry
record, which ``verify`` reports as tampering. Retention belongs to ``archiver expire``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

_DAY_PATH = re.compile(r"^\d{0,4}(?:/\d{0,2}(?:/\d{0,2}(?:/.*)?)?)?$")


def _rule_prefix(rule: Mapping[str, Any]) -> str | None:
    """The key prefix a rule filters on ('' for every key); None when it filters on tags, which
    the archive's objects do not carry."""
    if "Prefix" in rule:  # the filter's older form
        return str(rule["Prefix"] or "")
    filt = rule.get("Filter") or {}
    if "Tag" in filt:
        return None
    if "And" in filt:
        if filt["And"].get("Tags"):
            return None
        return str(filt["And"].get("Prefix") or "")
    return str(filt.get("Prefix") or "")


def touches(rule_prefix: str, prefix: str) -> set[str]:
    """Which of the archive's objects a rule on *rule_prefix* covers: ``days`` (the day folders:
    recordings, records, day files) and ``seals``."""
    root = f"{prefix}/" if prefix else ""
    if root.startswith(rule_prefix):
        return {"days", "seals"}
    if not rule_prefix.startswith(root):
        return set()
    rest = rule_prefix[len(root) :]
    found = set()
    if _DAY_PATH.match(rest):
        found.add("days")
    if "seals/".startswith(rest) or rest.startswith("seals/"):
        found.add("seals")
    return found


def warnings(rules: Iterable[Mapping[str, Any]], prefix: str, keep: timedelta | None) -> list[str]:
    """What ``check`` says of each enabled rule that would move or delete the archive's objects."""
    out = []
    for rule in rules:
        if rule.get("Status") != "Enabled":
            continue
        rule_prefix = _rule_prefix(rule)
        if rule_prefix is None:
            continue
        covered = touches(rule_prefix, prefix)
        if not covered:
            continue
        name = f"lifecycle rule {rule.get('ID') or '(no ID)'} (prefix {rule_prefix!r})"
        what = "records, day files and recordings" + (" and seals" if "seals" in covered else "")
        if "days" not in covered:
            what = "seals"
        for move in rule.get("Transitions") or []:
            when = f"after {move['Days']} days" if "Days" in move else f"on {move.get('Date')}"
            out.append(
                f"{name} moves {what} to {move.get('StorageClass')} {when}: records, day files and seals must stay "
                "STANDARD for audits; set storage.storage_class for the recordings instead"
            )
        expiration = rule.get("Expiration") or {}
        if "Days" in expiration or "Date" in expiration:
            days = expiration.get("Days")
            when = f"after {days} days" if days is not None else f"on {expiration.get('Date')}"
            early = ""
            if keep is None:
                early = "; retention.keep is null (keep everything)"
            elif days is not None and timedelta(days=int(days)) < keep:
                early = f", before retention.keep ({keep.days}d)"
            out.append(
                f"{name} deletes {what} {when}{early}: a sealed day deleted without an expiry record is reported "
                "by verify as tampering; let `archiver expire` (retention.keep) remove days instead"
            )
    return out


def retention_days(text: str | None) -> int | None:
    """Days of a bucket's default retention as ``check`` reads it (``GOVERNANCE 30 days``,
    ``COMPLIANCE 7 years``); None when there is none."""
    if not text:
        return None
    match = re.search(r"(\d+) (days|years)", text)
    if match is None:
        return None
    number = int(match.group(1))
    return number * 365 if match.group(2) == "years" else number
