"""Who is who among instances sharing a bucket: this instance, and each source.

Both names go into control objects' keys and bodies, so they are stable across restarts.
"""

from __future__ import annotations

import hashlib
import socket

from archiver.config.models import Config


def owner(configs: tuple[Config, ...]) -> str:
    """Who holds leases, claims and membership: this host and its ledgers. A process restarted
    after a crash is the same owner, so it picks up its own claims at once instead of waiting
    for them to expire."""
    ledgers = "|".join(str(c.state.path.resolve()) for c in configs)
    return f"{socket.gethostname()}:{hashlib.sha256(ledgers.encode()).hexdigest()[:8]}"


def source_id(config: Config) -> str:
    """A short, stable name for a source, for control objects."""
    named = f"{config.name}|" if config.name else ""
    text = f"{named}{config.source.base_url}|{config.source.domain_name or ''}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]
