"""Who is asking: the login in front of ``browse``.

Two ways, set in ``browse``:

- ``users_file``: an htpasswd file of bcrypt entries (``htpasswd -B``); every request needs HTTP
  Basic. bcrypt is slow on purpose, so a password checked once is remembered (as its SHA-256, for
  a few minutes) instead of re-checked for each Range request of a recording. Each failed login
  from an address waits longer than the last (1 s, 2 s, 4 s … up to 30 s) before it is answered.
- ``trusted_proxy``: an authenticating reverse proxy (oauth2-proxy, nginx) names the user in a
  header; it is believed only on a request from one of the listed addresses, and any other
  request is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import bcrypt
import structlog

from archiver.config.models import BrowseConfig, TrustedProxyConfig
from archiver.errors import ConfigError

log = structlog.get_logger("archiver.web.login")

REMEMBER_SECONDS = 300.0
MAX_DELAY = 30.0
_BCRYPT_PREFIXES = (b"$2a$", b"$2b$", b"$2y$")
_NOBODY = b"$2b$12$Re4EW/SVcF2YXhGyyIod9.OxabE3vGW1j1KQFUJoeU4U3/LmFD7m."  # bcrypt (cost 12) of no one's password


class Refused(Exception):
    """The request carries no acceptable login: *status* 401 (ask for one) or 403 (refused)."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status


def read_users(path: Path) -> dict[str, bytes]:
    """The users of an htpasswd file: name -> bcrypt hash. ConfigError naming the key, the file
    and the line for anything else (another hash kind, a line without a colon)."""
    where = "browse.users_file"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"At '{where}': cannot read {path}: {exc.strerror}"], source=str(path)) from None
    users: dict[str, bytes] = {}
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, digest = line.partition(":")
        if not sep or not name:
            problems.append(f"At '{where}': line {number} of {path} is not user:hash")
        elif not digest.encode().startswith(_BCRYPT_PREFIXES):
            problems.append(
                f"At '{where}': line {number} of {path} ({name}) is not a bcrypt entry; make it with htpasswd -B"
            )
        else:
            users[name] = digest.encode()
    if not users and not problems:
        problems.append(f"At '{where}': {path} has no users")
    if problems:
        raise ConfigError(problems, source=str(path))
    return users


class Login:
    """Decides who a request is from, or refuses it. *clock* is monotonic seconds; *sleep* waits."""

    def __init__(
        self,
        *,
        users: dict[str, bytes] | None = None,
        proxy: TrustedProxyConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self._users = users
        self._proxy = proxy
        self._networks = [ipaddress.ip_network(n) for n in proxy.from_] if proxy else []
        self._clock = clock
        self._sleep = sleep
        self._remembered: dict[tuple[str, bytes], float] = {}  # (user, sha256 of password) -> until
        self._failures: dict[str, int] = {}  # remote address -> failed logins in a row
        self._checks = anyio.CapacityLimiter(2)  # bcrypt is CPU: a flood waits, the loop does not

    @classmethod
    def from_config(cls, config: BrowseConfig) -> Login | None:
        if config.users_file is not None:
            return cls(users=read_users(config.users_file))
        if config.trusted_proxy is not None:
            return cls(proxy=config.trusted_proxy)
        return None

    @property
    def asks_for_password(self) -> bool:
        return self._users is not None

    async def user(self, remote: str, headers: dict[str, str]) -> str:
        """The user a request with *headers* from *remote* is from; raises Refused."""
        if self._proxy is not None:
            return self._from_proxy(remote, headers)
        return await self._from_password(remote, headers.get("authorization", ""))

    def _from_proxy(self, remote: str, headers: dict[str, str]) -> str:
        assert self._proxy is not None
        try:
            address = ipaddress.ip_address(remote)
        except ValueError:
            address = None
        if address is None or not any(address in net for net in self._networks):
            log.warning("browse.login_refused", remote=remote, reason="not from the trusted proxy")
            raise Refused(403, "Sign in through the proxy in front of this archive browser.")
        user = headers.get(self._proxy.header.lower(), "").strip()
        if not user:
            log.warning("browse.login_refused", remote=remote, reason=f"no {self._proxy.header} header")
            raise Refused(403, "The proxy did not say who you are.")
        return user

    async def _from_password(self, remote: str, authorization: str) -> str:
        assert self._users is not None
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic" or not encoded:
            raise Refused(401, "Sign in to read the archive.")
        try:
            name, sep, password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            name, sep, password = "", "", ""
        if sep and await self._check(name, password.encode()):
            self._failures.pop(remote, None)
            return name
        failures = self._failures.get(remote, 0) + 1
        self._failures[remote] = failures
        delay = min(2.0 ** (failures - 1), MAX_DELAY)
        log.warning("browse.login_failed", user=name or None, remote=remote, failures_in_a_row=failures)
        await self._sleep(delay)
        raise Refused(401, "The user name or password is wrong.")

    async def _check(self, name: str, password: bytes) -> bool:
        assert self._users is not None
        digest = self._users.get(name)
        if digest is None:  # as slow as a known name's check: the answer's time names no user
            await anyio.to_thread.run_sync(bcrypt.checkpw, password, _NOBODY, limiter=self._checks)
            return False
        token = (name, hashlib.sha256(password).digest())
        now = self._clock()
        if self._remembered.get(token, 0.0) > now:
            return True
        ok = await anyio.to_thread.run_sync(bcrypt.checkpw, password, digest, limiter=self._checks)
        if ok:
            self._remembered = {k: v for k, v in self._remembered.items() if v > now}
            self._remembered[token] = now + REMEMBER_SECONDS
        return bool(ok)
