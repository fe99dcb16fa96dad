"""Does the store refuse what the archive's guarantees rest on? Probes that write and clean up.

Several S3-compatible servers ignore ``If-None-Match`` or ``If-Match`` (or did until recently);
on those a create-only write silently becomes last-writer-wins. These probes find out with a
throwaway object: a second create-only write must be refused; a control object must be
replaceable on its own current ETag, and not on one that is not current.
"""

from __future__ import annotations

from archiver.errors import ObjectExists
from archiver.store import ControlStore, Store, put_bytes


async def discard(store: Store, key: str) -> None:
    """Remove every version of the probe *key*; one Object Lock keeps (the bucket's default
    retention) is hidden behind a delete marker, and goes when its retention ends."""
    if (await store.remove([key])).held:
        await store.delete(key)


async def refuses_second_create(store: Store, key: str) -> bool:
    """Write *key* twice, create-only; True when the store refused the second. The probe is removed.
    (Given a store that uploads every body in parts, this probes a multipart upload's completion.)

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


async def compare_and_swap_fault(store: ControlStore, key: str) -> str | None:
    """What the daemon does with a lease, tried on *key*: create it, replace it on the ETag the
    store returned, then try a stale ETag and a second create. None when the store kept every
    condition; else which one it broke. The probe is removed.
    """
    etag = await store.put_conditional(key, b"{}", if_match=None)
    try:
        try:
            await store.put_conditional(key, b'{"renewed": true}', if_match=etag)
        except ObjectExists:
            return "refused to replace a control object on its own current ETag (If-Match)"
        for condition, broken in (
            ('"00000000000000000000000000000000"', "accepted a replacement on a stale ETag (If-Match)"),
            (None, "accepted a second create-only write (If-None-Match)"),
        ):
            try:
                await store.put_conditional(key, b'{"again": true}', if_match=condition)
            except ObjectExists:
                continue
            return broken
    finally:
        await store.delete(key)
    return None
