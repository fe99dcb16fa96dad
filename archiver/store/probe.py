"""Does the store refuse what the archive's guarantees rest on? Probes that write and clean up.

Several S3-compatible servers ignore ``If-None-Match`` or ``If-Match`` (or did until recently);
on those a create-only write silently becomes last-writer-wins. These probes find out with a
throwaway object: a second create-only write must be refused, and a conditional write on an
ETag that is not current must be refused.
"""

from __future__ import annotations

from archiver.errors import ObjectExists
from archiver.store import ControlStore, Store, put_bytes


async def refuses_second_create(store: Store, key: str) -> bool:
    """Write *key* twice, create-only; True when the store refused the second. The probe is removed.

    Raises StoreAccessError or StoreUnavailable when the store refuses or does not answer at all.
    """
    await put_bytes(store, key, b"first\n", "text/plain")
    try:
        await put_bytes(store, key, b"second\n", "text/plain")
    except ObjectExists:
        return True
    finally:
        await store.delete(key)
    return False


async def refuses_stale_etag(store: ControlStore, key: str) -> bool:
    """Write *key*, then try to replace it on an ETag it does not have, and to create it again;
    True when the store refused both. The probe is removed."""
    await store.put_conditional(key, b"{}", if_match=None)
    refused = 0
    try:
        for condition in ('"00000000000000000000000000000000"', None):
            try:
                await store.put_conditional(key, b'{"again": true}', if_match=condition)
            except ObjectExists:
                refused += 1
    finally:
        await store.delete(key)
    return refused == 2
