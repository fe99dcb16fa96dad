"""Who may see which calls: ``browse.scopes``. Pure.

``browse.scopes`` maps a user name, ``group:NAME`` (a group the users file or the proxy names) or
``*`` (everyone signed in) to ``all`` or to a list of source names, each optionally narrowed to an
extension (``hq/101``: the calls of ``hq`` with 101 as their source or destination). A user sees
the union of what their name, their groups and ``*`` are given. Without ``browse.scopes`` (one
source, or no login) everyone sees everything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from archiver.config.models import ScopeRules
from archiver.core.dayfiles import CallEntry

EVERY_SOURCE = "all"


@dataclass(frozen=True)
class Scope:
    """What one user may see: each source they may see, with None (all its calls) or the
    extensions its calls must have as source or destination; and the rules that gave it."""

    sources: Mapping[str, frozenset[str] | None] = field(default_factory=dict)
    granted_by: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # source -> rule keys

    def sees_source(self, source: str) -> bool:
        return source in self.sources

    def sees(self, source: str, entry: CallEntry) -> bool:
        """Whether a call of *source*, as *entry* states it, is in the scope."""
        if source not in self.sources:
            return False
        extensions = self.sources[source]
        return extensions is None or bool({entry.source, entry.destination} & extensions)

    def narrowed(self, source: str) -> bool:
        """Whether only some of *source*'s calls are in the scope (by extension)."""
        return self.sources.get(source) is not None

    def describe(self, source: str) -> str | None:
        """What the access trail records as the scope used for a call of *source*:
        ``hq (group:qa)``, ``hq/101, hq/102 (alice)``; None where no scopes are set."""
        if source not in self.granted_by:
            return None
        extensions = self.sources.get(source)
        what = source if extensions is None else ", ".join(f"{source}/{e}" for e in sorted(extensions))
        return f"{what} ({', '.join(self.granted_by[source])})"


class Scopes:
    """``browse.scopes`` over the file's *sources* (their names, in order); *rules* None: every
    user sees every source."""

    def __init__(self, rules: ScopeRules | None, sources: Iterable[str]) -> None:
        self._rules = rules
        self._sources = tuple(sources)

    @property
    def sources(self) -> tuple[str, ...]:
        return self._sources

    def of(self, user: str | None, groups: Iterable[str] = ()) -> Scope:
        """The scope of *user* (None: nobody signed in) in *groups*."""
        if self._rules is None:
            return Scope(dict.fromkeys(self._sources))
        keys = {"*"} | {f"group:{g}" for g in groups} | ({user} if user else set())
        sources: dict[str, frozenset[str] | None] = {}
        granted: dict[str, list[str]] = {}
        for who, grants in self._rules:
            if who not in keys:
                continue
            for grant in grants:
                name, _, extension = grant.partition("/")
                for source in self._sources if grant == EVERY_SOURCE else (name,):
                    if source not in self._sources:
                        continue
                    had = sources.get(source, frozenset())
                    whole = grant == EVERY_SOURCE or not extension
                    sources[source] = None if whole or had is None else had | {extension}
                    granted.setdefault(source, [])
                    if who not in granted[source]:
                        granted[source].append(who)
        ordered = {name: sources[name] for name in self._sources if name in sources}
        return Scope(ordered, {name: tuple(granted[name]) for name in ordered})
