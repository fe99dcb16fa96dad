"""The errors that leave a module, grouped by what the caller does about them.

::

    ArchiverError
    ├── FatalError                 stop the program: a person must act (exit 2)
    │   ├── ConfigError            the configuration file is wrong; lists every problem
    │   ├── AuthenticationError    the ccall API refused the credentials
    │   ├── ApiRejected            the API answered 4xx: wrong base_url or request
    │   └── StoreAccessError       the bucket is missing, or we may not use it
    ├── TransientError             retry later; nothing was changed
    │   ├── ApiUnavailable         5xx, 429, timeout, or a body that is not the API's JSON
    │   └── StoreUnavailable       the object store did not answer, or answered 5xx/SlowDown
    │       └── StoreConflict      a conditional write raced another on one key (409)
    ├── RecordingError             this call's recording could not be archived now
    │   ├── RecordingRejected      refused by policy: host not allowed, body too large
    │   └── RecordingUnavailable   not served (yet): 404, 5xx, cut off, not audio
    └── CallError                  skip this call, report it, keep going
        ├── ObjectExists           a create-only (or conditional) write found the key taken
        ├── ArchiveConflict        the bucket holds different bytes under this call's key
        ├── SpoolError             the local download buffer could not be written (disk full?)
        ├── KeyObjectError         an encrypted recording's key is gone, damaged, or not for this identity
        └── DecryptionError        an encrypted recording does not decrypt to what its record states

Third-party exceptions (httpx, botocore, sqlite3) are translated once, at the module that
talks to them (``source.http``, ``store.s3_bucket``, ``state.ledger``); nothing above that layer
sees them. ``core.audio.NotAudio`` and ``source.http.HttpUnanswered`` stay inside the source
layer and are translated there (``source.fetch``, ``source.ccall``) before they leave it.
Only the command line (``archiver.cli``) turns errors into exit codes.

No message carries a secret: the API key and secret are never formatted into one, and bodies
quoted from the network pass through :func:`redact` first.
"""

from __future__ import annotations

from collections.abc import Iterable

# What the command line exits with: everything done; work failed or a check found a problem
# (the output names each); a usage or configuration error, or any FatalError.
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class ArchiverError(Exception):
    """Base class of every error the archiver raises on purpose."""


class FatalError(ArchiverError):
    """The program cannot go on until a person changes something."""


class ConfigError(FatalError):
    """The configuration is wrong. ``problems`` lists each one as ``At 'key': what``."""

    def __init__(self, problems: Iterable[str], *, source: str = "configuration") -> None:
        self.problems = list(problems)
        self.source = source
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{source} has {len(self.problems)} problem(s):\n{lines}")


class AuthenticationError(FatalError):
    """The ccall API rejected ``source.api_key`` / ``source.api_secret``."""


class StoreAccessError(FatalError):
    """The store exists but may not be used as configured (no bucket, no permission)."""


class ApiRejected(FatalError):
    """The ccall API refused the request itself (a 4xx other than 429): wrong base_url?"""


class TransientError(ArchiverError):
    """A failure that may pass by itself; retrying later is safe.

    ``retry_after`` carries a server's ``Retry-After`` in seconds when it sent one.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ApiUnavailable(TransientError):
    """The ccall API did not give a usable answer this time."""


class StoreUnavailable(TransientError):
    """The object store did not answer, or asked us to slow down."""


class StoreConflict(StoreUnavailable):
    """A conditional write met another conditional write on the same key in flight, and the store
    refused this one (AWS's 409 ConditionalRequestConflict). For a control object the race is
    lost (the condition failed); an archive write is tried again, and its condition decides."""


class RecordingError(ArchiverError):
    """A recording link did not give an archivable recording.

    ``detail`` is a short machine-readable dict (kind, http_status, …) for the sidecar.
    """

    def __init__(self, message: str, *, kind: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.http_status = http_status

    @property
    def detail(self) -> dict[str, object]:
        out: dict[str, object] = {"kind": self.kind, "message": str(self)}
        if self.http_status is not None:
            out["http_status"] = self.http_status
        return out


class RecordingRejected(RecordingError):
    """Policy refused the link or its body; retrying will not change that."""


class RecordingUnavailable(RecordingError):
    """The link did not serve a valid recording now; it may later.

    ``retry_after`` carries a server's ``Retry-After`` in seconds when it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        kind: str,
        http_status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, kind=kind, http_status=http_status)
        self.retry_after = retry_after


class CallError(ArchiverError):
    """This one call cannot be finished; report it and carry on with the others."""


class SpoolError(CallError):
    """The local download buffer could not be written (disk full?)."""


class ObjectExists(CallError):
    """A create-only write found its key already taken."""

    def __init__(self, key: str) -> None:
        super().__init__(f"object {key!r} already exists")
        self.key = key


class ObjectMissing(CallError):
    """A read found no object under its key."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no object {key!r} in the archive")
        self.key = key


class ObjectInColdStorage(CallError):
    """A read of an object in an archive tier (GLACIER, DEEP_ARCHIVE) that is not restored."""

    def __init__(self, key: str, storage_class: str | None = None) -> None:
        tier = f" ({storage_class})" if storage_class else ""
        super().__init__(f"{key} is in cold storage{tier}: it must be restored before it can be read")
        self.key = key
        self.storage_class = storage_class


class ArchiveConflict(CallError):
    """The bucket holds other bytes under this call's key; nothing was overwritten."""


class KeyObjectError(CallError):
    """An encrypted recording's key object is gone, damaged, or opens with no identity given."""


class DecryptionError(CallError):
    """An encrypted recording does not decrypt (damaged, or not for its key), or not to the
    plaintext its record states."""


def redact(text: str, secrets: Iterable[str]) -> str:
    """Return *text* with every non-empty secret in *secrets* replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def collapse(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error that matters in a task group's exception group.

    Concurrent workers fail together; the caller wants one answer: a FatalError if any (the
    program must stop), else the first ArchiverError, else the group itself (a bug).
    """
    fatal = group.subgroup(FatalError)
    if fatal is not None:
        return _first_leaf(fatal)
    ours = group.subgroup(ArchiverError)
    if ours is not None:
        return _first_leaf(ours)
    return group


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first
