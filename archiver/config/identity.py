"""``storage.encryption.identity_file``: the age identities that read encrypted recordings.

Read only by the commands that read recordings (``show``, ``export``, ``browse``, ``verify
--decrypt``, ``rekey``), never by the daemon: it archives with the recipients alone. Every
problem is a ConfigError naming the setting; the file's content never enters a message.
"""

from __future__ import annotations

import stat

from archiver.config.models import Config
from archiver.core.encryption import Identity, parse_identities, public
from archiver.errors import ConfigError

SETTING = "storage.encryption.identity_file"


def identities(config: Config, *, why: str) -> list[Identity]:
    """The identities of *config*'s identity file; ConfigError naming the setting (and *why* it
    is needed: "to play encrypted recordings") when it is not set, cannot be read, or holds none."""
    encryption = config.storage.encryption
    if encryption is None:
        raise ConfigError([f"At 'storage.encryption': not set; it is needed {why}"])
    path = encryption.identity_file
    if path is None:
        raise ConfigError([f"At '{SETTING}': not set; it is needed {why} (an age identity file, from age-keygen)"])
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"At '{SETTING}': cannot read {path}: {exc.strerror}; it is needed {why}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"At '{SETTING}': {path} is not an age identity file (not UTF-8 text)"]) from None
    try:
        return parse_identities(text)
    except ValueError as exc:
        raise ConfigError([f"At '{SETTING}': {path}: {exc}"]) from None


def loose(config: Config) -> str | None:
    """Why the identity file is kept too loosely (readable by others than its owner), or None."""
    encryption = config.storage.encryption
    if encryption is None or encryption.identity_file is None:
        return None
    try:
        mode = encryption.identity_file.stat().st_mode
    except OSError:
        return None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        mode_text = f"{stat.S_IMODE(mode):04o}"
        return f"{encryption.identity_file} is readable by others than its owner (mode {mode_text}): chmod 600 it"
    return None


def among_recipients(config: Config, found: list[Identity]) -> bool:
    """Whether one of *found* is among ``storage.encryption.age_recipients`` (so it reads what the
    archiver writes now, and what ``rekey`` writes)."""
    encryption = config.storage.encryption
    return encryption is not None and any(public(i) in encryption.age_recipients for i in found)
