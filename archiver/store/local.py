"""A store in a local folder (``file:///path``): the embedded default and the demo's.

Each write goes to a temporary file beside its target, is fsynced, then hard-linked into
place: ``link(2)`` fails when the name exists, so writes are create-only and atomic, and a
crash leaves at most a hidden ``.*.tmp`` file that no listing shows. Listing a folder removes
such leftovers once they are a day old (no write takes that long), so crashes do not pile up.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import tempfile
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import anyio.to_thread
import structlog

from archiver.errors import (
    ArchiveConflict,
    CallError,
    ObjectExists,
    ObjectMissing,
    StoreAccessError,
    StoreUnavailable,
)
from archiver.store import Hold, ObjectInfo, Removal, StoredVersion, VersionAudit

log = structlog.get_logger("archiver.store")

_CHUNK = 1 << 20
STALE_WRITE = 24 * 3600.0  # seconds after which a temporary file is a crashed write's leftover


class LocalStore:
    """Objects as files under *root*; a key's ``/`` are directories."""

    def __init__(self, root: Path, *, limiter: anyio.CapacityLimiter | None = None) -> None:
        self.root = root
        self.description = f"file://{root}"
        self.versions: VersionAudit | None = None  # a file keeps no earlier versions
        self._limiter = limiter or anyio.CapacityLimiter(8)

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if not key or key.startswith("/") or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
            raise ValueError(f"unsafe key {key!r}")
        return self.root.joinpath(*parts)

    async def _run(self, fn: object, *args: object) -> object:
        try:
            return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)  # type: ignore[arg-type]
        except PermissionError as exc:
            raise StoreAccessError(
                f"no permission to write under {self.root}: {exc.strerror} ({exc.filename})"
            ) from None
        except OSError as exc:
            if isinstance(exc, FileExistsError | FileNotFoundError):
                raise
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
                raise StoreUnavailable(f"cannot write under {self.root}: {exc.strerror}") from None
            raise StoreUnavailable(f"file store error under {self.root}: {exc.strerror or exc}") from None

    async def put(
        self,
        key: str,
        body: IO[bytes],
        *,
        size: int,
        sha256: bytes,
        content_type: str,
        metadata: Mapping[str, str] | None = None,
        storage_class: str | None = None,  # a folder has one class
    ) -> str | None:
        path = self._path(key)

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                raise ObjectExists(key)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            try:
                hasher, written = hashlib.sha256(), 0
                with os.fdopen(fd, "wb") as out:
                    os.fchmod(out.fileno(), 0o640)
                    body.seek(0)
                    while chunk := body.read(_CHUNK):
                        hasher.update(chunk)
                        written += len(chunk)
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                if written != size or hasher.digest() != sha256:
                    raise ArchiveConflict(f"{key}: the bytes written do not match the download's size and SHA-256")
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    raise ObjectExists(key) from None
                _fsync_dir(path.parent)
            finally:
                os.unlink(tmp)

        await self._run(write)
        return None  # a file has no checksum of its own

    async def checksum_kept(self, key: str) -> str:
        return "none"  # a folder keeps no checksum of its files

    async def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        try:
            stat = await self._run(path.stat)
        except FileNotFoundError:
            return None
        assert isinstance(stat, os.stat_result)
        return ObjectInfo(
            key=key,
            size=stat.st_size,
            sha256=None,
            last_modified=datetime.fromtimestamp(stat.st_mtime, UTC),
            answered_at=datetime.now(UTC),
        )

    async def read(self, key: str, max_bytes: int = 1 << 20, *, version_id: str | None = None) -> bytes:
        path = self._path(key)  # a folder keeps one version of a file

        def read() -> bytes:
            with path.open("rb") as f:
                data = f.read(max_bytes + 1)
            if len(data) > max_bytes:
                raise CallError(f"{key} is larger than {max_bytes} bytes")
            return data

        try:
            data = await self._run(read)
        except FileNotFoundError:
            raise ObjectMissing(key) from None
        assert isinstance(data, bytes)
        return data

    async def digest(self, key: str) -> tuple[int, bytes]:
        path = self._path(key)

        def digest() -> tuple[int, bytes]:
            hasher, size = hashlib.sha256(), 0
            with path.open("rb") as f:
                while chunk := f.read(_CHUNK):
                    hasher.update(chunk)
                    size += len(chunk)
            return size, hasher.digest()

        try:
            result = await self._run(digest)
        except FileNotFoundError:
            raise ObjectMissing(key) from None
        assert isinstance(result, tuple)
        return result

    async def stream(self, key: str, *, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        path = self._path(key)
        try:
            f = await self._run(path.open, "rb")
        except FileNotFoundError:
            raise ObjectMissing(key) from None
        assert isinstance(f, io.BufferedReader)
        try:
            f.seek(start)
            left = None if end is None else max(0, end - start)
            while left is None or left > 0:
                chunk = await self._run(f.read, _CHUNK if left is None else min(_CHUNK, left))
                assert isinstance(chunk, bytes)
                if not chunk:
                    return
                if left is not None:
                    left -= len(chunk)
                yield chunk
        finally:
            f.close()

    async def list_keys(self, prefix: str) -> AsyncIterator[str]:
        def walk() -> list[str]:
            base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
            start = self.root / base if base else self.root
            found = []
            for dirpath, dirnames, filenames in os.walk(start):
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                rel = Path(dirpath).relative_to(self.root).as_posix()
                for name in filenames:
                    if name.startswith("."):
                        if name.endswith(".tmp"):
                            self._remove_if_stale(Path(dirpath, name))
                        continue
                    key = name if rel == "." else f"{rel}/{name}"
                    if key.startswith(prefix):
                        found.append(key)
            return sorted(found)

        keys = await self._run(walk)
        assert isinstance(keys, list)
        for key in keys:
            yield key

    async def list_folders(self, prefix: str, *, hidden: bool = False) -> AsyncIterator[str]:
        def scan() -> list[str]:
            folder = self.root / prefix if prefix else self.root
            try:
                return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))
            except FileNotFoundError:
                return []

        names = await self._run(scan)
        assert isinstance(names, list)
        for name in names:
            yield name

    def _remove_if_stale(self, path: Path) -> None:
        """Remove a temporary file that no write has touched for a day (a crash's leftover)."""
        with contextlib.suppress(OSError):  # gone already, or not ours to remove: leave it
            if time.time() - path.stat().st_mtime > STALE_WRITE:
                path.unlink()
                log.info("store.leftover_removed", path=str(path))

    async def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            await self._run(path.unlink)
        except FileNotFoundError:
            return

    async def holds(self, keys: Sequence[str]) -> list[Hold]:
        return []  # a folder has no Object Lock

    async def remove(self, keys: Sequence[str], *, bypass_governance: bool = False) -> Removal:
        """Unlink each file, then the folders left empty (a day removed whole leaves no folder)."""
        paths = [self._path(key) for key in keys]

        def remove() -> int:
            removed, folders = 0, set()
            for path in paths:
                try:
                    path.unlink()
                except FileNotFoundError:
                    continue
                removed += 1
                folders.add(path.parent)
            for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
                _fsync_dir(folder)
                while folder != self.root and folder.is_relative_to(self.root):
                    try:
                        folder.rmdir()
                    except OSError:  # not empty (or gone): the folders above it stay too
                        break
                    folder = folder.parent
            return removed

        count = await self._run(remove)
        assert isinstance(count, int)
        return Removal(removed=count)

    async def versions_in(self, folder: str) -> list[StoredVersion]:
        return [StoredVersion(key, None) async for key in self.list_keys(folder)]

    async def remove_versions(self, versions: Sequence[StoredVersion], *, bypass_governance: bool = False) -> Removal:
        return await self.remove([v.key for v in versions])

    async def restore(self, key: str, days: int) -> None:
        return None  # every file is readable

    async def aclose(self) -> None:
        return None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
