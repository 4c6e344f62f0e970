"""When a recording started, from its header or its name, and which of the two said so.

Recorders write the start time into the file: AudioMoth into the WAV comment (``Recorded at
20:30:00 01/06/2024 (UTC+1) by AudioMoth ...``), bat detectors into a GUANO chunk
(``Timestamp: 2024-06-01T22:15:03+02:00``), and nearly all of them into the name: AudioMoth
``20240601_203000.WAV``, Song Meter / Wildlife Acoustics ``S4A12345_20240601_203000.wav``
(a prefix, sometimes a ``_000`` suffix), and the plain ``YYYYMMDD_HHMMSS`` (or ``-``/``T``
separated) stamp anywhere in a name. A header before the audio wins over the name (it carries
the time zone); a GUANO chunk after the audio is read only when the name says nothing (on
object storage it is one more request per file: on the GCS emulator it cost ~2 s a file).

Times are the recorder's clock: ``recorded_at`` is ISO 8601, with the UTC offset when the
source states one. ``night_of`` puts a time on the date of the evening its night began (noon
to noon), the date an ecologist files a night under.
"""

from __future__ import annotations

import datetime as dt
import re
import struct
from dataclasses import dataclass
from typing import BinaryIO

#: where a recording's time came from (stable strings: they land in outputs)
SOURCES = ("header:audiomoth", "header:guano", "name:audiomoth", "name:songmeter", "name:stamp")

_STAMP = r"(\d{4})-?(\d{2})-?(\d{2})[_T-](\d{2})-?(\d{2})-?(\d{2})"
_NAMES = (
    ("name:audiomoth", re.compile(rf"^{_STAMP}$")),
    ("name:songmeter", re.compile(rf"^[A-Za-z0-9-]+_{_STAMP}(?:_\d+)?$")),
    ("name:stamp", re.compile(rf"(?<!\d){_STAMP}(?!\d)")),
)
_AUDIOMOTH = re.compile(
    r"Recorded at (\d{2}):(\d{2}):(\d{2}) (\d{2})/(\d{2})/(\d{4}) \(UTC([+-]\d{1,2})?(?::?(\d{2}))?\)"
)


@dataclass(frozen=True)
class RecordingTime:
    recorded_at: str  # ISO 8601, "" when unknown
    source: str  # one of SOURCES, "" when unknown

    @property
    def clock(self) -> dt.datetime | None:
        """The recorder's clock time (naive: its offset, if any, dropped)."""
        if not self.recorded_at:
            return None
        return dt.datetime.fromisoformat(self.recorded_at).replace(tzinfo=None)


UNKNOWN = RecordingTime("", "")


def _time(*fields: str, offset: dt.timedelta | None = None) -> str | None:
    try:
        t = dt.datetime(*(int(f) for f in fields))
    except ValueError:  # 20241399_999999 is no time
        return None
    return (t.replace(tzinfo=dt.timezone(offset)) if offset is not None else t).isoformat()


def from_name(path: str) -> RecordingTime:
    """The start time a recording's file name states (the last path segment, extension off)."""
    stem = path.replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    for source, pattern in _NAMES:
        m = pattern.search(stem)
        if m and (iso := _time(*m.groups())):
            return RecordingTime(iso, source)
    return UNKNOWN


def from_audiomoth_comment(comment: str) -> RecordingTime:
    m = _AUDIOMOTH.search(comment or "")
    if not m:
        return UNKNOWN
    hh, mm, ss, day, month, year, tz_h, tz_m = m.groups()
    offset = dt.timedelta(0)
    if tz_h:
        sign = -1 if tz_h.startswith("-") else 1
        offset = sign * dt.timedelta(hours=abs(int(tz_h)), minutes=int(tz_m or 0))
    iso = _time(year, month, day, hh, mm, ss, offset=offset)
    return RecordingTime(iso, "header:audiomoth") if iso else UNKNOWN


def from_guano(text: str) -> RecordingTime:
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Timestamp" and value.strip():
            try:
                return RecordingTime(
                    dt.datetime.fromisoformat(value.strip()).isoformat(), "header:guano"
                )
            except ValueError:
                return UNKNOWN
    return UNKNOWN


def riff_texts(f: BinaryIO, past_data: bool = False, max_chunks: int = 64) -> dict[str, str]:
    """The WAV comment (``ICMT``) and GUANO (``guan``) texts of a RIFF file, reading chunk
    headers only; {} for anything else. Stops at the audio (``data``) unless ``past_data``:
    a chunk after the audio is another request on object storage. Leaves ``f`` at its start."""
    out: dict[str, str] = {}
    try:
        f.seek(0)
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return out
        pos = 12
        for _ in range(max_chunks):
            f.seek(pos)
            hdr = f.read(8)
            if len(hdr) < 8:
                break
            cid, size = hdr[:4], struct.unpack("<I", hdr[4:])[0]
            if cid == b"data" and not past_data:
                break
            if cid == b"guan":
                out["guano"] = f.read(size).decode("utf-8", "replace")
            elif cid == b"LIST":
                body = f.read(min(size, 1 << 16))
                out.update(_info_comment(body))
            pos += 8 + size + (size & 1)
    finally:
        f.seek(0)
    return out


def _info_comment(body: bytes) -> dict[str, str]:
    if body[:4] != b"INFO":
        return {}
    i = 4
    while i + 8 <= len(body):
        cid, size = body[i : i + 4], struct.unpack("<I", body[i + 4 : i + 8])[0]
        if cid == b"ICMT":
            return {
                "comment": body[i + 8 : i + 8 + size].split(b"\0")[0].decode("utf-8", "replace")
            }
        i += 8 + size + (size & 1)
    return {}


def recording_time(path: str, f: BinaryIO | None = None) -> RecordingTime:
    """The recording's start: its header's (AudioMoth comment, GUANO) when ``f`` is given and
    has one before the audio, else its name's, else a GUANO chunk after the audio, else
    unknown. A read error on the header walk never fails the file; reading its audio
    retries and reports as it always does."""
    named = from_name(path)
    for past_data in (False, True):
        if f is None or (past_data and named.source):
            break
        try:
            texts = riff_texts(f, past_data)
        except OSError:  # a stream that broke on the header walk: the audio read says so
            break
        for found in (
            from_audiomoth_comment(texts.get("comment", "")),
            from_guano(texts.get("guano", "")),
        ):
            if found.source:
                return found
    return named


def night_of(clock: dt.datetime) -> dt.date:
    """The date of the evening whose night ``clock`` falls in (noon to noon)."""
    return (clock - dt.timedelta(hours=12)).date()
