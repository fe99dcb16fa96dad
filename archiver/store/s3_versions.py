"""Version auditing on a versioned S3 bucket: which archive keys were written more than once.

The archive's create-only writes leave exactly one version per key; a second version or a
delete marker means someone else wrote there. ``verify`` reports each.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from archiver.store.s3_bucket import S3Bucket


class S3VersionAudit:
    """The :class:`~archiver.store.VersionAudit` of one bucket."""

    def __init__(self, bucket: S3Bucket) -> None:
        self._bucket = bucket

    async def replaced_keys(self, prefix: str) -> AsyncIterator[tuple[str, str]]:
        """Keys under *prefix* that were overwritten or deleted since written: (key, what)."""
        marker: dict[str, Any] = {}
        while True:
            args: dict[str, Any] = {"Bucket": self._bucket.name, "Prefix": prefix, **marker}
            page = await self._bucket.call(lambda a=args: self._bucket.client.list_object_versions(**a))  # type: ignore[misc]
            counts: dict[str, int] = {}
            for version in page.get("Versions", []):
                counts[version["Key"]] = counts.get(version["Key"], 0) + 1
            for key, count in sorted(counts.items()):
                if count > 1:
                    yield key, f"{count} versions: it was overwritten after it was archived"
            for deleted in page.get("DeleteMarkers", []):
                yield deleted["Key"], "a delete marker: it was deleted after it was archived"
            if not page.get("IsTruncated"):
                return
            marker = {"KeyMarker": page["NextKeyMarker"], "VersionIdMarker": page.get("NextVersionIdMarker", "")}
