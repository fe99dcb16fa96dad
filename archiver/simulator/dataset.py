"""The simulator's calls: deterministic from a seed, generated a day at a time.

Calls happen through the whole (local) day, most of them in business hours. A call's CDR
becomes visible when the call ends, so calls keep arriving while a daemon polls, and a long
call shows up well after its start time. Recordings are real WAV files (8 kHz, 16-bit, mono,
as FreeSWITCH writes them) whose length matches the CDR's duration, and no two are alike.
"""

from __future__ import annotations

import base64
import json
import math
import random
import struct
import threading
import uuid
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

SAMPLE_RATE = 8000
BYTES_PER_SECOND = SAMPLE_RATE * 2
INSTANCE = base64.b64encode(b"pbx_instance_25").decode()

_FAMILY = (
    "Nguyễn",
    "Trần",
    "Lê",
    "Phạm",
    "Hoàng",
    "Huỳnh",
    "Phan",
    "Vũ",
    "Võ",
    "Đặng",
    "Bùi",
    "Đỗ",
    "Hồ",
    "Ngô",
    "Dương",
    "Lý",
)
_MIDDLE = ("Văn", "Thị", "Minh", "Thanh", "Ngọc", "Đức", "Hữu", "Quang", "Thu", "Gia", "")
_GIVEN = (
    "An",
    "Bình",
    "Châu",
    "Dũng",
    "Giang",
    "Hà",
    "Hải",
    "Hạnh",
    "Hương",
    "Khoa",
    "Lan",
    "Linh",
    "Long",
    "Mai",
    "Nam",
    "Ngân",
    "Phúc",
    "Quân",
    "Sơn",
    "Tâm",
    "Thảo",
    "Trang",
    "Tuấn",
    "Vy",
    "Yến",
)
_CARRIERS = ("090", "091", "093", "094", "096", "097", "098", "086", "088", "032", "070", "081")
_UNANSWERED = (("ORIGINATOR_CANCEL", 6), ("NO_ANSWER", 3), ("USER_BUSY", 2), ("CALL_REJECTED", 1))


@dataclass(frozen=True)
class SimCall:
    """One simulated call; ``cdr()`` renders it as the API does."""

    uuid: str
    sip_call_id: str
    start: datetime
    direction: str
    cid_name: str
    source: str
    destination: str
    status: str
    tta: int | None
    duration: int
    pdd: float
    mos: float | None
    has_recording: bool
    recording_missing: bool
    foreign_link: bool
    tone_hz: int
    malformed: int = 0  # 0: a clean row; 1-4: one kind of broken row (see cdr())

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=(self.tta or 0) + self.duration)

    @property
    def serves_recording(self) -> bool:
        """Whether this server hands out the call's recording (once the call has ended)."""
        return self.has_recording and not self.recording_missing and not self.foreign_link

    @property
    def recording_size(self) -> int:
        return 44 + self.duration * BYTES_PER_SECOND

    def recording_path(self) -> str:
        return f"/cdr/{self.uuid}/{INSTANCE}"

    def cdr(self, public_url: str) -> dict[str, dict[str, str | None]]:
        link = None
        if self.has_recording:
            link = (
                f"http://169.254.169.254/cdr/{self.uuid}/{INSTANCE}"
                if self.foreign_link
                else public_url + self.recording_path()
            )
        mos = None if self.mos is None else (f"{self.mos:.2f}".rstrip("0").rstrip("."))
        row: dict[str, Any] = {
            "direction": self.direction,
            "cid_name": self.cid_name,
            "source": self.source,
            "destination": self.destination,
            "recording_file": link,
            "start": self.start.strftime("%Y-%m-%d %H:%M:%S"),
            "tta": None if self.tta is None else f"{self.tta}s",
            "duration": f"{self.duration // 3600:02d}:{self.duration // 60 % 60:02d}:{self.duration % 60:02d}",
            "pdd": f"{self.pdd:.2f}s",
            "mos": mos,
            "status": self.status,
        }
        return {"Cdr": _break(row, self.malformed)}


def _break(row: dict[str, Any], kind: int) -> dict[str, Any]:
    """A row as a buggy PBX might send it. Kind 4 carries bytes that are not UTF-8 (as
    surrogate escapes, which the server writes out as the raw bytes 0xFF 0xFE)."""
    if kind == 1:
        start = row["start"]
        return {**row, "start": f"{start[8:10]}/{start[5:7]}/{start[:4]} 25:61"}
    if kind == 2:
        return {**row, "duration": "a while", "mos": "NaN", "tta": 5, "pdd": None}
    if kind == 3:
        return {k: v for k, v in row.items() if k not in ("status", "direction", "cid_name")}
    if kind == 4:
        return {**row, "cid_name": row["cid_name"] + " \udcff\udcfe"}
    return row


def as_received(row: Any) -> Any:
    """*row* as a client decodes it: bytes that are not UTF-8 become U+FFFD."""
    raw = json.dumps(row, ensure_ascii=False).encode("utf-8", "surrogateescape")
    return json.loads(raw.decode("utf-8", "replace"))


class Dataset:
    """Every call of every day, from *seed*. Thread-safe."""

    def __init__(
        self,
        *,
        seed: int = 1,
        calls_per_day: int = 200,
        max_duration: int = 60,
        tz: ZoneInfo | None = None,
        recording_missing_rate: float = 0.0,
        foreign_link_rate: float = 0.0,
        long_call_rate: float = 0.0,
        long_call_seconds: int = 3 * 3600,
        business_hours_share: float = 0.85,
        malformed_rate: float = 0.0,
    ) -> None:
        self.seed = seed
        self.calls_per_day = calls_per_day
        self.max_duration = max(1, max_duration)
        self.tz = tz or ZoneInfo("Asia/Ho_Chi_Minh")
        self.recording_missing_rate = recording_missing_rate
        self.foreign_link_rate = foreign_link_rate
        self.long_call_rate = long_call_rate
        self.long_call_seconds = long_call_seconds
        self.business_hours_share = business_hours_share
        self.malformed_rate = malformed_rate
        self._days: dict[date, list[SimCall]] = {}
        self._by_uuid: dict[str, SimCall] = {}
        self._lock = threading.Lock()
        self._tones: dict[int, bytes] = {}

    def calls_on(self, day: date) -> list[SimCall]:
        """The calls that start on local *day*, newest first."""
        with self._lock:
            calls = self._days.get(day)
            if calls is None:
                calls = self._generate(day)
                self._days[day] = calls
                self._by_uuid.update((c.uuid, c) for c in calls)
                self._by_uuid.update((c.sip_call_id, c) for c in calls)
            return calls

    def calls_between(self, start: datetime, end: datetime, now: datetime) -> list[SimCall]:
        """Calls with ``start <= call.start < end`` whose CDR exists at *now*, newest first."""
        out: list[SimCall] = []
        day = start.astimezone(self.tz).date()
        last = end.astimezone(self.tz).date()
        while day <= last:
            out.extend(c for c in self.calls_on(day) if start <= c.start < end and c.end <= now)
            day += timedelta(days=1)
        out.sort(key=lambda c: (c.start, c.uuid), reverse=True)
        return out

    def generated_calls(self) -> list[SimCall]:
        """Every call of the days generated so far."""
        with self._lock:
            return [c for calls in self._days.values() for c in calls]

    def find(self, key: str) -> SimCall | None:
        """A generated call by FreeSWITCH UUID or SIP Call-ID."""
        with self._lock:
            return self._by_uuid.get(key.lower()) or self._by_uuid.get(key)

    def _generate(self, day: date) -> list[SimCall]:
        rng = random.Random(f"{self.seed}:{day.isoformat()}")
        count = max(0, round(self.calls_per_day * rng.uniform(0.9, 1.1)))
        midnight = datetime.combine(day, time(0), self.tz)
        calls = [self._one_call(rng, midnight) for _ in range(count)]
        calls.sort(key=lambda c: (c.start, c.uuid), reverse=True)
        return calls

    def _one_call(self, rng: random.Random, midnight: datetime) -> SimCall:
        if rng.random() < self.business_hours_share:
            second = rng.uniform(8 * 3600, 18 * 3600)
        else:
            second = rng.uniform(0, 86400 - 1)
        start = midnight + timedelta(seconds=int(second))
        direction = rng.choices(("inbound", "outbound", "local"), weights=(5, 4, 1))[0]
        ext = str(rng.randint(100, 130))
        phone = rng.choice(_CARRIERS) + "".join(rng.choice("0123456789") for _ in range(7))
        if direction == "inbound":
            source, destination = phone, ext
        elif direction == "outbound":
            source, destination = ext, phone
        else:
            source, destination = ext, str(rng.randint(100, 130))
        name = " ".join(p for p in (rng.choice(_FAMILY), rng.choice(_MIDDLE), rng.choice(_GIVEN)) if p)
        answered = rng.random() < 0.75
        long_call = answered and rng.random() < self.long_call_rate
        if answered:
            status, tta = "NORMAL_CLEARING", rng.randint(1, 20)
            if long_call:
                duration = self.long_call_seconds
            else:
                duration = min(self.max_duration, 1 + int(rng.expovariate(4 / self.max_duration)))
            has_recording = rng.random() < 0.97
        else:
            status = rng.choices([s for s, _ in _UNANSWERED], weights=[w for _, w in _UNANSWERED])[0]
            tta, duration, has_recording = None, rng.randint(0, 40), False
        call_uuid = str(uuid.UUID(bytes=rng.randbytes(16), version=4))
        return SimCall(
            uuid=call_uuid,
            sip_call_id=f"{rng.randbytes(10).hex()}@{ext}.ccall.sim",
            start=start,
            direction=direction,
            cid_name=name,
            source=source,
            destination=destination,
            status=status,
            tta=tta,
            duration=duration,
            pdd=round(rng.uniform(0.2, 2.5), 2),
            mos=round(rng.uniform(3.2, 4.5), 2) if answered else None,
            has_recording=has_recording,
            recording_missing=has_recording and rng.random() < self.recording_missing_rate,
            foreign_link=has_recording and rng.random() < self.foreign_link_rate,
            tone_hz=rng.choice((300, 350, 400, 440, 500, 523, 587, 659, 700, 784)),
            malformed=self._malformed(rng),
        )

    def _malformed(self, rng: random.Random) -> int:
        # Draw only when asked for, so that datasets without broken rows stay as they were.
        if self.malformed_rate <= 0:
            return 0
        return rng.randint(1, 4) if rng.random() < self.malformed_rate else 0

    # -- audio ------------------------------------------------------------------------

    def recording_chunks(self, call: SimCall, chunk_size: int = 1 << 16) -> Iterator[bytes]:
        """The call's WAV file, in pieces of at most *chunk_size* bytes."""
        data_size = call.duration * BYTES_PER_SECOND
        header = b"RIFF" + struct.pack("<I", 36 + data_size) + b"WAVE"
        header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, SAMPLE_RATE, BYTES_PER_SECOND, 2, 16)
        header += b"data" + struct.pack("<I", data_size)
        yield header
        if data_size == 0:
            return
        first = self._first_second(call)
        tone = self._tone(call.tone_hz)
        buffer = bytearray(first)
        remaining = data_size - len(first)
        while True:
            while len(buffer) < chunk_size and remaining > 0:
                piece = tone[: min(len(tone), remaining)]
                buffer += piece
                remaining -= len(piece)
            if not buffer:
                return
            yield bytes(buffer[:chunk_size])
            del buffer[:chunk_size]

    def recording_bytes(self, call: SimCall) -> bytes:
        return b"".join(self.recording_chunks(call))

    def _tone(self, hz: int) -> bytes:
        with self._lock:
            tone = self._tones.get(hz)
            if tone is None:
                samples = array(
                    "h", (int(3000 * math.sin(2 * math.pi * hz * i / SAMPLE_RATE)) for i in range(SAMPLE_RATE))
                )
                tone = self._tones[hz] = samples.tobytes()
            return tone

    def _first_second(self, call: SimCall) -> bytes:
        """The tone with quiet noise unique to this call, so no two recordings are alike."""
        tone = array("h", self._tone(call.tone_hz))
        noise = random.Random(call.uuid).randbytes(SAMPLE_RATE)
        for i, value in enumerate(noise):
            tone[i] += value - 128
        return tone.tobytes()[: call.duration * BYTES_PER_SECOND]
