"""Recognising audio by its bytes, and checking a WAV against its own header. Pure.

The ``Content-Type`` a PBX sends is not to be trusted: the bytes decide. An HTML, JSON or
text body is an error page, never a recording.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import IO, Literal

AudioFormat = Literal["wav", "mp3", "ogg", "flac"]
CONTENT_TYPES: dict[str, str] = {
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "ogg": "audio/ogg",
    "flac": "audio/flac",
}
SNIFF_BYTES = 64


class NotAudio(ValueError):
    """The bytes are not a recording; the message says what they look like."""


@dataclass(frozen=True)
class AudioInfo:
    duration_seconds: float
    sample_rate: int
    channels: int
    bits_per_sample: int

    def as_dict(self) -> dict[str, float | int]:
        return {
            "duration_seconds": round(self.duration_seconds, 3),
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "bits_per_sample": self.bits_per_sample,
        }


def sniff(head: bytes) -> AudioFormat:
    """The audio format of a body starting with *head*; raises NotAudio otherwise."""
    if len(head) >= 12 and head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:3] == b"ID3" or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06):
        return "mp3"
    raise NotAudio(describe_non_audio(head))


def describe_non_audio(head: bytes) -> str:
    """A short description of a body that is not audio, for error messages and sidecars."""
    if not head:
        return "empty body"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in text:
        return "an HTML page, not audio"
    if text.startswith((b"<?xml", b"<")):
        return "an XML/markup document, not audio"
    if text.startswith((b"{", b"[")):
        return "a JSON document, not audio"
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "plain text, not audio"
    return f"an unrecognised binary format (starts with {head[:8].hex()}), not audio"


@dataclass(frozen=True)
class WavCheck:
    """What a WAV's own header says about it."""

    info: AudioInfo | None
    trailing_bytes: int


def check_wav(file: IO[bytes], size: int) -> WavCheck:
    """Check a WAV file of *size* bytes against its RIFF header and chunk sizes.

    Raises ValueError when the header claims more bytes than were received (a cut-off
    body, even one sent without Content-Length) or is not finalised (size 0). Bytes past the
    declared end are allowed but reported as ``trailing_bytes``.
    """
    file.seek(0)
    header = file.read(12)
    if len(header) < 12:
        raise ValueError(f"WAV is {size} bytes, shorter than its 12-byte header")
    riff_size = struct.unpack_from("<I", header, 4)[0]
    if header[:4] == b"RF64":
        riff_size = _rf64_size(file)
    if riff_size in (0, 0xFFFFFFFF):
        raise ValueError("WAV header is not finalised (RIFF size is 0 or unset): still being written?")
    declared = riff_size + 8
    if declared > size:
        raise ValueError(f"WAV header declares {declared} bytes but only {size} arrived: cut off")
    info = _walk_chunks(file, declared)
    trailing = size - declared
    if trailing == 1 and declared % 2:
        trailing = 0  # the RIFF pad byte after an odd-sized body
    return WavCheck(info=info, trailing_bytes=trailing)


def _rf64_size(file: IO[bytes]) -> int:
    chunk = file.read(8 + 8)
    if len(chunk) < 16 or chunk[:4] != b"ds64":
        raise ValueError("RF64 file without a ds64 chunk")
    return int(struct.unpack_from("<Q", chunk, 8)[0])


def _walk_chunks(file: IO[bytes], end: int) -> AudioInfo | None:
    offset = 12
    fmt: tuple[int, int, int, int] | None = None
    data_size: int | None = None
    while offset + 8 <= end:
        file.seek(offset)
        head = file.read(8)
        chunk_id, chunk_size = head[:4], struct.unpack_from("<I", head, 4)[0]
        body_end = offset + 8 + chunk_size
        if chunk_id == b"data" and chunk_size == 0xFFFFFFFF:
            body_end = end  # RF64: the real size lives in ds64
        if body_end > end:
            name = chunk_id.decode("latin-1")
            raise ValueError(f"WAV chunk {name!r} at byte {offset} runs past the end ({body_end} > {end}): cut off")
        if chunk_id == b"fmt " and chunk_size >= 16:
            _tag, channels, rate, byte_rate, _align, bits = struct.unpack("<HHIIHH", file.read(16))
            fmt = (channels, rate, byte_rate, bits)
        elif chunk_id == b"data":
            data_size = body_end - offset - 8
        offset = body_end + (chunk_size & 1)
    if fmt is None or data_size is None or fmt[2] == 0:
        return None
    channels, rate, byte_rate, bits = fmt
    return AudioInfo(duration_seconds=data_size / byte_rate, sample_rate=rate, channels=channels, bits_per_sample=bits)
