"""Parsing and printing of sizes (``2GiB``) and durations (``1h30m``). Pure functions."""

from __future__ import annotations

import re
from datetime import timedelta

_SIZE_UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|TiB)\s*$")

_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_RE = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$")


def parse_size(value: object) -> int:
    """Bytes in *value*: an int (bytes) or a string such as ``512MiB`` or ``2GiB``.

    Raises ValueError with a message that shows the accepted forms.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a size such as 512MiB, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a size cannot be negative (got {value})")
        return value
    if isinstance(value, str):
        match = _SIZE_RE.match(value)
        if match:
            return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])
    raise ValueError(f"expected a size such as 512MiB or 2GiB (units B, KiB, MiB, GiB, TiB), got {value!r}")


def parse_duration(value: object) -> timedelta:
    """The duration in *value*: an int or float (seconds) or a string such as ``90s``,
    ``2m``, ``6h``, ``1d`` or ``1h30m``.

    Raises ValueError with a message that shows the accepted forms.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 60s, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"a duration cannot be negative (got {value})")
        return timedelta(seconds=value)
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        if _DURATION_RE.match(text):
            seconds = sum(float(n) * _DURATION_UNITS[unit] for n, unit in _DURATION_PART.findall(text))
            return timedelta(seconds=seconds)
    raise ValueError(f"expected a duration such as 60s, 2m, 6h, 1d or 1h30m, got {value!r}")


def format_size(n: int) -> str:
    """``n`` bytes as a short human string (``1.5 MiB``)."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def format_duration(delta: timedelta) -> str:
    """A duration in the form this module parses (``1h30m``, ``45s``)."""
    total = delta.total_seconds()
    if total < 1 and total != 0:
        return f"{round(total * 1000)}ms"
    out = ""
    seconds = round(total)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out += f"{seconds // size}{unit}"
            seconds %= size
    return out or "0s"
