"""Who is asking: the login in front of ``browse``.

Two ways, set in ``browse``:

- ``users_file``: an htpasswd file of bcrypt entries (``htpasswd -B``), optionally with the
  user's groups after a second colon (``alice:$2y$05$…:qa,legal``; nginx reads that field as a
  comment); every request needs HTTP Basic. Before any password is checked, failed sign-ins
  close the address, and the user name for addresses it has not signed in from, for longer
  after each failure (:mod:`archiver.web.throttle`); requests from one address, and for one
  name, are checked one at a time, so parallel guesses are no faster than serial ones. bcrypt
  is slow on purpose, so a password checked once is remembered (as its SHA-256, for a few
  minutes) instead of re-checked for each Range request of a recording. A name the file does
  not hold is answered after as long as a check of the file's entries takes, without spending
  the CPU on it. bcrypt reads the first 72 bytes of a password, as ``htpasswd -B`` did when it
  made the entry.
- ``trusted_proxy``: an authenticating reverse proxy (oauth2-proxy, nginx) names the user, and
  optionally the groups, in headers; they are believed only on a request from one of the listed
  addresses (the connection's own address: browse reads no ``X-Forwarded-For``), only when each
  comes once and is UTF-8, and any other request is refused.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import ipaddress
import math
import secrets
import statistics
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import bcrypt
import structlog

from archiver.config.models import BrowseConfig, TrustedProxyConfig
from archiver.errors import ConfigError
from archiver.web.throttle import Throttle

log = structlog.get_logger("archiver.web.login")

REMEMBER_SECONDS = 300.0
KNOWN_GOOD_SECONDS = 12 * 3600.0  # an address a user signed in from is not closed by others' failures on the name
MAX_NAME = 256  # characters of a user or group name
BCRYPT_BYTES = 72
_BCRYPT_PREFIXES = (b"$2a$", b"$2b$", b"$2y$")
RawHeaders = Sequence[tuple[bytes, bytes]]


@dataclass(frozen=True)
class Identity:
    """A signed-in user and the groups they are in."""

    name: str
    groups: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class User:
    """A users_file entry: the bcrypt hash and the groups."""

    digest: bytes
    groups: frozenset[str] = field(default_factory=frozenset)

    @property
    def cost(self) -> int:
        return int(self.digest[4:6])


class Refused(Exception):
    """The request carries no acceptable login: *status* 401 (ask for one), 403 (refused) or 429
    (closed after failures: *retry_after* seconds)."""

    def __init__(self, status: int, why: str, *, retry_after: int | None = None) -> None:
        super().__init__(why)
        self.status = status
        self.retry_after = retry_after


def read_users(path: Path) -> dict[str, User]:
    """The users of an htpasswd file: name -> User. ConfigError naming the key, the file and the
    line for anything else (another hash kind, a line without a colon)."""
    where = "browse.users_file"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"At '{where}': cannot read {path}: {exc.strerror}"], source=str(path)) from None
    except UnicodeDecodeError:
        raise ConfigError([f"At '{where}': {path} is not UTF-8 text"], source=str(path)) from None
    users: dict[str, User] = {}
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, rest = line.partition(":")
        digest, _, groups = rest.partition(":")
        if not sep or not name:
            problems.append(f"At '{where}': line {number} of {path} is not user:hash")
        elif not digest.encode().startswith(_BCRYPT_PREFIXES) or not digest[4:6].isdigit():
            problems.append(
                f"At '{where}': line {number} of {path} ({name}) is not a bcrypt entry; make it with htpasswd -B"
            )
        else:
            users[name] = User(digest.encode(), frozenset(g.strip() for g in groups.split(",") if g.strip()))
    if not users and not problems:
        problems.append(f"At '{where}': {path} has no users")
    if problems:
        raise ConfigError(problems, source=str(path))
    return users


def check_time(users: dict[str, User]) -> float:
    """Seconds one bcrypt check of the file's most common cost takes here (median of three)."""
    cost = Counter(u.cost for u in users.values()).most_common(1)[0][0]
    stand_in = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(cost))
    times = []
    for _ in range(3):
        began = time.perf_counter()
        bcrypt.checkpw(b"no one's password", stand_in)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


class Login:
    """Decides who a request is from, or refuses it. *clock* is monotonic seconds; *sleep* waits;
    *unknown_seconds*: how long the answer for a name the users file lacks takes."""

    def __init__(
        self,
        *,
        users: dict[str, User] | None = None,
        proxy: TrustedProxyConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        unknown_seconds: float = 0.0,
    ) -> None:
        self._users = users
        self._proxy = proxy
        self._networks = [ipaddress.ip_network(n) for n in proxy.from_] if proxy else []
        self._clock = clock
        self._sleep = sleep
        self._unknown_seconds = unknown_seconds
        self._remembered: dict[tuple[str, bytes], float] = {}  # (user, sha256 of password) -> until
        self._known_good: OrderedDict[tuple[str, str], float] = OrderedDict()  # (user, address) -> until
        self._by_address = Throttle(clock)
        self._by_name = Throttle(clock)
        self._turns: dict[str, tuple[anyio.Lock, list[int]]] = {}  # key -> (lock, [holders and waiters])
        self._checks = anyio.CapacityLimiter(2)  # bcrypt is CPU: a flood waits, the loop does not

    @classmethod
    def from_config(cls, config: BrowseConfig) -> Login | None:
        if config.users_file is not None:
            users = read_users(config.users_file)
            return cls(users=users, unknown_seconds=check_time(users))
        if config.trusted_proxy is not None:
            return cls(proxy=config.trusted_proxy)
        return None

    @property
    def asks_for_password(self) -> bool:
        return self._users is not None

    @property
    def failure_keys(self) -> int:
        """How many addresses and names the failure tables hold (bounded)."""
        return len(self._by_address) + len(self._by_name)

    async def identify(self, remote: str, headers: RawHeaders) -> Identity:
        """Who a request with *headers* (raw, names in lower case) from *remote* is from; raises Refused."""
        if self._proxy is not None:
            return self._from_proxy(remote, headers)
        return await self._from_password(remote, headers)

    # -- trusted proxy ----------------------------------------------------------------------------

    def _from_proxy(self, remote: str, headers: RawHeaders) -> Identity:
        assert self._proxy is not None
        try:
            address = ipaddress.ip_address(remote)
        except ValueError:
            address = None
        if address is None or not any(address in net for net in self._networks):
            log.warning("browse.login_refused", remote=remote, reason="not from the trusted proxy")
            raise Refused(403, "Sign in through the proxy in front of this archive browser.")
        name = _one_value(headers, self._proxy.header, remote)
        if not name:
            log.warning("browse.login_refused", remote=remote, reason=f"no {self._proxy.header} header")
            raise Refused(403, "The proxy did not say who you are.")
        groups: frozenset[str] = frozenset()
        if self._proxy.groups_header is not None:
            listed = _one_value(headers, self._proxy.groups_header, remote) or ""
            groups = frozenset(g.strip() for g in listed.split(",") if g.strip())
            if any(len(g) > MAX_NAME for g in groups):
                raise Refused(403, "The proxy named a group this browser cannot take.")
        return Identity(name, groups)

    # -- users file ---------------------------------------------------------------------------------

    async def _from_password(self, remote: str, headers: RawHeaders) -> Identity:
        assert self._users is not None
        name, password = _basic(headers)
        async with self._turn(f"address {remote}"), self._turn(f"name {name}"):
            closed = self._by_address.closed_for(remote)
            if not self._is_known_good(name, remote):
                closed = max(closed, self._by_name.closed_for(name))
            if closed > 0:
                log.warning("browse.login_throttled", user=_shown(name), remote=remote, seconds=round(closed, 1))
                wait = math.ceil(closed)
                raise Refused(429, f"Too many failed sign-ins: try again in {wait} s.", retry_after=wait)
            user = self._users.get(name)
            if user is not None and await self._check(name, password, user):
                self._by_address.succeeded(remote)
                self._by_name.succeeded(name)
                self._known_good.pop((name, remote), None)
                self._known_good[(name, remote)] = self._clock() + KNOWN_GOOD_SECONDS
                while len(self._known_good) > 10_000:
                    self._known_good.popitem(last=False)
                return Identity(name, user.groups)
            if user is None:  # as long as a check of a known name; no CPU spent
                await self._sleep(self._unknown_seconds)
            failures = self._by_address.failed(remote)
            self._by_name.failed(name)
        log.warning("browse.login_failed", user=_shown(name) or None, remote=remote, failures_in_a_row=failures)
        raise Refused(401, "The user name or password is wrong.")

    def _is_known_good(self, name: str, remote: str) -> bool:
        until = self._known_good.get((name, remote))
        return until is not None and until > self._clock()

    @contextlib.asynccontextmanager
    async def _turn(self, key: str) -> AsyncIterator[None]:
        """One request for *key* at a time; the table holds only keys with a request in it."""
        lock, count = self._turns.setdefault(key, (anyio.Lock(), [0]))
        count[0] += 1
        try:
            async with lock:
                yield
        finally:
            count[0] -= 1
            if count[0] == 0:
                del self._turns[key]

    async def _check(self, name: str, password: bytes, user: User) -> bool:
        token = (name, hashlib.sha256(password).digest())
        now = self._clock()
        if self._remembered.get(token, 0.0) > now:
            return True
        ok = await anyio.to_thread.run_sync(bcrypt.checkpw, password[:BCRYPT_BYTES], user.digest, limiter=self._checks)
        if ok:
            self._remembered = {k: v for k, v in self._remembered.items() if v > now}
            self._remembered[token] = now + REMEMBER_SECONDS
        return bool(ok)


def _basic(headers: RawHeaders) -> tuple[str, bytes]:
    """The user name and password of the one HTTP Basic ``Authorization`` header; Refused 401
    for none, several, or one that is not base64 of UTF-8 ``name:password``."""
    values = [v for k, v in headers if k == b"authorization"]
    if len(values) != 1:
        raise Refused(401, "Sign in to read the archive.")
    scheme, _, encoded = values[0].partition(b" ")
    if scheme.lower() != b"basic" or not encoded.strip():
        raise Refused(401, "Sign in to read the archive.")
    try:
        name, sep, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, ValueError):  # not base64 (non-ASCII bytes among them), or not UTF-8
        raise Refused(401, "Sign in to read the archive (the login was not readable).") from None
    if not sep or not name or len(name) > MAX_NAME or not name.isprintable():
        raise Refused(401, "The user name or password is wrong.")
    return name, password.encode()


def _one_value(headers: RawHeaders, name: str, remote: str) -> str | None:
    """The value of header *name*, which must come at most once and be UTF-8 text without
    control characters; None when it is absent. Refused 403 otherwise."""
    wanted = name.lower().encode()
    values = [v for k, v in headers if k == wanted]
    if not values:
        return None
    if len(values) > 1:
        log.warning("browse.login_refused", remote=remote, reason=f"{name} came {len(values)} times")
        raise Refused(403, f"The proxy sent {name} more than once.")
    try:
        text = values[0].decode("utf-8").strip()
    except UnicodeDecodeError:
        log.warning("browse.login_refused", remote=remote, reason=f"{name} is not UTF-8")
        raise Refused(403, f"The proxy's {name} is not UTF-8.") from None
    if len(text) > MAX_NAME or not text.isprintable():
        log.warning("browse.login_refused", remote=remote, reason=f"{name} is not a name")
        raise Refused(403, f"The proxy's {name} is not a name this browser takes.")
    return text


def _shown(name: str) -> str:
    """A name as a log line may carry it (the login refuses longer ones before this)."""
    return name[:MAX_NAME]
