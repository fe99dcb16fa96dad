"""Recognising audio by its bytes and checking WAVs against their own headers."""

from __future__ import annotations

import io
import struct

import pytest

from archiver.core.audio import NotAudio, check_wav, sniff


def wav(data_size: int, *, riff_size: int | None = None) -> bytes:
    header = b"RIFF" + struct.pack("<I", 36 + data_size if riff_size is None else riff_size) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16)
    return header + b"data" + struct.pack("<I", data_size) + b"\x01\x00" * (data_size // 2)


@pytest.mark.parametrize(
    ("head", "fmt"),
    [
        (wav(16)[:64], "wav"),
        (b"OggS\x00\x02", "ogg"),
        (b"fLaC\x00\x00", "flac"),
        (b"ID3\x04", "mp3"),
        (b"\xff\xfb\x90\x00", "mp3"),
    ],
)
def test_audio_formats_are_known_by_their_magic_bytes(head: bytes, fmt: str) -> None:
    """WAV, Ogg, FLAC and MP3 (tagged or bare frames) are recognised."""
    assert sniff(head) == fmt


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"<!DOCTYPE html><html>", "an HTML page"),
        (b"\n  <html><body>404", "an HTML page"),
        (b'{"error": "not found"}', "a JSON document"),
        (b"Not Found", "plain text"),
        (b"", "empty body"),
        (b"\x00\x01\x02\x03binary", "an unrecognised binary format"),
        (b"<?xml version='1.0'?><Error>", "an XML/markup document"),
    ],
)
def test_error_pages_are_never_audio(head: bytes, kind: str) -> None:
    """HTML, JSON, text and unknown bodies are refused with a description."""
    with pytest.raises(NotAudio, match=kind):
        sniff(head)


def test_a_complete_wav_reports_its_audio_parameters() -> None:
    """Duration, rate and channels come from the fmt and data chunks."""
    body = wav(32000)
    result = check_wav(io.BytesIO(body), len(body))
    assert result.info is not None
    assert result.info.as_dict() == {"duration_seconds": 2.0, "sample_rate": 8000, "channels": 1, "bits_per_sample": 16}
    assert result.trailing_bytes == 0


def test_a_cut_off_wav_is_caught_by_its_riff_size() -> None:
    """A body shorter than its RIFF header says is refused, even without Content-Length."""
    body = wav(32000)[:20000]
    with pytest.raises(ValueError, match="declares 32044 bytes but only 20000 arrived"):
        check_wav(io.BytesIO(body), len(body))


def test_a_data_chunk_running_past_the_riff_end_is_caught() -> None:
    """A RIFF size that fits but a data chunk that does not is still refused."""
    body = wav(32000, riff_size=1000)[:1008]
    with pytest.raises(ValueError, match="runs past the end"):
        check_wav(io.BytesIO(body), len(body))


@pytest.mark.parametrize("riff_size", [0, 0xFFFFFFFF])
def test_an_unfinalised_wav_header_is_refused(riff_size: int) -> None:
    """A recording still being written (RIFF size unset) is not archived yet."""
    body = wav(100, riff_size=riff_size)
    with pytest.raises(ValueError, match="not finalised"):
        check_wav(io.BytesIO(body), len(body))


def test_bytes_past_the_declared_end_are_kept_and_reported() -> None:
    """Trailing bytes are stored byte-identical but counted for the sidecar."""
    body = wav(100) + b"JUNK"
    assert check_wav(io.BytesIO(body), len(body)).trailing_bytes == 4
