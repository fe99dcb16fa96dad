"""The simulator's fault switches: what goes wrong, how often, and how slowly.

Rates are per request (0 to 1), drawn from the simulator's seeded generator; delays are in
seconds. Change them while the server runs to start or end an outage.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass
class Faults:
    """Per-request fault rates (0 to 1) and delays (seconds)."""

    api_error_rate: float = 0.0  # 500/502/503
    api_429_rate: float = 0.0  # 429 with Retry-After
    api_html_rate: float = 0.0  # 200 with an HTML page
    api_no_response_rate: float = 0.0  # 200 with JSON that has no "response"
    api_latency: float = 0.0  # added to every API answer
    recording_latency: float = 0.0  # added before every recording answer
    recording_error_rate: float = 0.0  # 500/503
    recording_429_rate: float = 0.0  # 429 with Retry-After
    recording_cut_rate: float = 0.0  # Content-Length declared, connection closed midway
    recording_truncated_rate: float = 0.0  # chunked, cleanly ended, but short: only RIFF size tells
    recording_stall_rate: float = 0.0  # stalls mid-body for stall_seconds
    recording_html_rate: float = 0.0  # 200 HTML error page labelled audio/x-wav
    recording_delay: float = 0.0  # 404 until this long after the call ended
    stall_seconds: float = 5.0
    retry_after: float = 1.0

    @classmethod
    def parse(cls, items: list[str]) -> Faults:
        """``["api_error_rate=0.1", …]`` as Faults; raises ValueError naming a bad item."""
        names = {f.name for f in fields(cls)}
        values: dict[str, float] = {}
        for item in items:
            name, sep, value = item.partition("=")
            if not sep or name not in names:
                raise ValueError(f"unknown fault {item!r}; known: {', '.join(sorted(names))}")
            values[name] = float(value)
        return cls(**values)
