"""``archiver check``'s lines for ``storage.encryption``: the recipients, the keys store (a bucket
without default retention, where a key can be written, read and deleted), the identity file.

Each problem a person must fix is a FAIL naming the setting, and exit 2.
"""

from __future__ import annotations

import uuid

from archiver.config.identity import among_recipients, identities, loose
from archiver.config.models import Config
from archiver.core.encryption import recipients_fingerprint
from archiver.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, ArchiverError, ConfigError, FatalError, TransientError
from archiver.store import put_bytes
from archiver.store.keys import KeyStore
from archiver.store.s3 import S3Store

KEYS = "storage.encryption.keys_url"


async def check_encryption(config: Config, keys: KeyStore) -> int:
    """Print the lines of ``storage.encryption``; the exit code they call for."""
    encryption = config.storage.encryption
    assert encryption is not None
    recipients = encryption.age_recipients
    print(
        f"ok    storage.encryption: recordings are encrypted (age) to their own keys, wrapped to {len(recipients)} "
        f"recipient(s) (set {recipients_fingerprint(recipients)})"
    )
    worst = await _keys_bucket(keys)
    if worst == EXIT_USAGE:
        return worst
    worst = max(worst, await _probe(keys))
    return max(worst, _identity(config))


async def _keys_bucket(keys: KeyStore) -> int:
    """A keys bucket must let its objects be deleted: no default retention (FAIL); versioning is
    advised (a key deleted by mistake can be put back)."""
    if not isinstance(keys.store, S3Store):
        return EXIT_OK
    try:
        features = await keys.store.bucket_features()
    except (TransientError, FatalError) as exc:
        print(f"FAIL  {KEYS}: the keys bucket's settings could not be read: {exc}")
        return EXIT_USAGE if isinstance(exc, FatalError) else EXIT_FAILED
    if features.get("default_retention"):
        print(
            f"FAIL  {KEYS}: the keys bucket has a default retention ({features['default_retention']}): its keys could "
            "not be destroyed, and erasing a call would be impossible; use a bucket without Object Lock retention"
        )
        return EXIT_USAGE
    versioning = features.get("versioning") or "off"
    if versioning != "Enabled":
        print(
            f"WARN  {KEYS}: versioning is {versioning}: turn it on, so that a key deleted by mistake can be put back "
            "(erase and rekey remove every version of what they remove)"
        )
    else:
        print(f"ok    {KEYS}: versioned, no default retention: keys can be destroyed when a call is erased")
    return EXIT_OK


async def _probe(keys: KeyStore) -> int:
    """Write, read back and delete one object where the keys live: erasure needs all three."""
    key = "/".join(p for p in (keys.prefix, f"check-{uuid.uuid4().hex}.txt") if p)
    data = b"archiver check: may keys be written, read and deleted here?\n"
    try:
        await put_bytes(keys.store, key, data, "text/plain")
        if await keys.store.read(key) != data:
            raise TransientError("the object read back differs from the one written")
        removal = await keys.remove([key])
        if removal.held:
            raise TransientError(f"the store kept {removal.held[0]} (retention on its objects?)")
    except FatalError as exc:
        print(f"FAIL  {KEYS}: {exc}")
        return EXIT_USAGE
    except ArchiverError as exc:
        print(f"FAIL  {KEYS} {keys.description}: {exc}")
        return EXIT_FAILED
    print(f"ok    {KEYS} {keys.description}: a key can be written create-only, read and deleted")
    return EXIT_OK


def _identity(config: Config) -> int:
    """The identity file, when set: readable, an age identity, kept by its owner alone, and one
    of today's recipients (else it cannot read what the archiver writes from now on)."""
    encryption = config.storage.encryption
    assert encryption is not None
    if encryption.identity_file is None:
        print(
            "ok    storage.encryption.identity_file: not set: this host archives, and cannot read what it archives "
            "(show, export, browse, verify --decrypt and rekey need it, on the auditors' host)"
        )
        return EXIT_OK
    try:
        found = identities(config, why="to read encrypted recordings")
    except ConfigError as exc:
        print(f"FAIL  {'; '.join(exc.problems)}")
        return EXIT_USAGE
    why = loose(config)
    if why:
        print(f"WARN  storage.encryption.identity_file: {why}")
    if not among_recipients(config, found):
        print(
            f"WARN  storage.encryption.identity_file: none of its {len(found)} identity(ies) is one of "
            "storage.encryption.age_recipients: it cannot read the keys written from now on"
        )
    elif not why:
        print(f"ok    storage.encryption.identity_file: {len(found)} identity(ies), one of them a recipient's")
    return EXIT_OK
