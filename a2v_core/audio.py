"""Read fixed-length chunks from any seekable audio file object without decoding the whole file.

Each chunk is read with a small margin of context on both sides, resampled with soxr and
trimmed, so chunks cut from one file line up with the whole file resampled at once. A chunk
is normalised to zero mean / unit variance over its valid samples; the last chunk is
zero-padded and records its valid length. Every failure is a ``DecodeError`` with a typed
``error_type``; nothing is ever silently substituted.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

#: error_type values (stable strings: they end up in errors tables and tests).
ERROR_TYPES = (
    "empty_file",
    "truncated",
    "not_audio",
    "unsupported_format",
    "too_short",
    "empty_audio",
    "non_finite",
    "unreadable",
)

_MAGIC = (b"RIFF", b"RIFX", b"RF64", b"fLaC", b"OggS", b"FORM", b"ID3", b"\xff\xfb", b"\xff\xf3")


class DecodeError(Exception):
    """A file (or a window of it) could not be turned into audio; ``error_type`` says why."""

    def __init__(self, error_type: str, message: str) -> None:
        assert error_type in ERROR_TYPES, error_type
        super().__init__(f"{error_type}: {message}")
        self.error_type, self.message = error_type, message


@dataclass(frozen=True)
class AudioInfo:
    frames: int
    sample_rate_hz: int
    channels: int
    format: str
    subtype: str

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate_hz


@dataclass
class Chunk:
    offset_s: float
    audio: np.ndarray  # float32 (clip_samples,) at the model rate, zero-padded at the end
    valid_samples: int
    n_chunks: int = 0  # chunks in the whole file (set by iter_chunks)
    error_type: str = ""  # with ``chunk_errors``: this window failed (the rest of the file did not)
    error_message: str = ""
    channel: int = 0  # the file's channel this chunk was taken from (0-based)
    source_rate_hz: int = 0  # the file's own rate (the chunk is at the model's)


class Expanded:
    """A SoundFile read at its true rate: a time-expansion detector slows ultrasound down by
    ``factor`` before a recorder samples it, so the file's stated rate times the factor is the
    rate of the sound as it happened (a 10x file at 44.1 kHz holds 441 kHz audio, and each file
    second is 0.1 s of real time). Everything else is the SoundFile's."""

    def __init__(self, snd: sf.SoundFile, factor: int) -> None:
        self._snd, self.samplerate = snd, snd.samplerate * factor

    def __getattr__(self, name: str):
        return getattr(self._snd, name)

    def __enter__(self) -> Expanded:
        return self

    def __exit__(self, *exc) -> None:
        self._snd.close()


def open_sound(fileobj: BinaryIO, time_expansion: int = 1) -> sf.SoundFile:
    """Open a file object with libsndfile, mapping failures to typed DecodeErrors. With
    ``time_expansion`` k > 1 the file reads as k times its stated rate (see ``Expanded``)."""
    if time_expansion < 1 or int(time_expansion) != time_expansion:
        raise ValueError(f"time_expansion must be a whole number >= 1, got {time_expansion}")
    start = fileobj.tell() if hasattr(fileobj, "tell") else 0
    head = fileobj.read(12)
    if not head:
        raise DecodeError("empty_file", "file has 0 bytes")
    fileobj.seek(start)
    try:
        snd = sf.SoundFile(fileobj)
    except (sf.LibsndfileError, RuntimeError, ValueError, EOFError) as exc:
        if head.startswith(_MAGIC):
            raise DecodeError("truncated", f"audio header present but unreadable ({exc})") from exc
        raise DecodeError("not_audio", f"not a recognised audio stream ({exc})") from exc
    return Expanded(snd, int(time_expansion)) if time_expansion > 1 else snd


def probe(fileobj: BinaryIO, time_expansion: int = 1) -> AudioInfo:
    """Frames, rate (the true rate: stated rate x ``time_expansion``), channels and format."""
    with open_sound(fileobj, time_expansion) as snd:
        return AudioInfo(snd.frames, snd.samplerate, snd.channels, snd.format, snd.subtype)


def channel_index(block: np.ndarray, channel: str) -> int:
    """Which column of (S, channels) ``channel`` picks: 0 ("first"), or the loudest (largest
    summed |x|)."""
    if block.shape[1] == 1 or channel == "first":
        return 0
    return int(np.abs(block).sum(0).argmax())


def normalise(x: np.ndarray, eps: float = 1e-5, out: np.ndarray | None = None) -> np.ndarray:
    """Zero mean, unit variance (affine-free layer norm over the clip, eps 1e-5), as float32;
    written into ``out`` (which may be ``x`` itself) when given."""
    if x.size == 0:
        return x if out is None else out
    if out is None:
        out = np.empty(x.shape, np.float32)
    # Centre first, then the variance is one dot product of the centred clip: half the time
    # of ``x.var()``, which centres a temporary copy again.
    np.subtract(x, x.mean(), out=out, casting="same_kind")
    out *= np.float32(1.0 / np.sqrt(float(np.dot(out, out)) / out.size + eps))
    return out


def _margin_steps(sr_in: int, sr_out: int, margin_s: float = 0.05) -> tuple[int, int]:
    """A margin that is a whole number of samples at both rates: (in_samples, out_samples)."""
    g = math.gcd(sr_in, sr_out)
    steps = max(1, math.ceil(margin_s * g))
    return steps * (sr_in // g), steps * (sr_out // g)


def input_samples(valid_samples: int, clip_samples: int, bucket_samples: int) -> int:
    """How much of a chunk the model takes: the whole clip, or with ``bucket_samples`` > 0
    its valid audio padded to the next multiple of that (a 3 s file is a 3 s input, not a 10 s
    one; what a file's chunk gives then depends on its own audio only, never on the other
    files it is batched with)."""
    if bucket_samples <= 0 or valid_samples >= clip_samples:
        return clip_samples
    return min(clip_samples, max(1, math.ceil(valid_samples / bucket_samples)) * bucket_samples)


def chunk_offsets(duration_s: float, clip_s: float, overlap_s: float = 0.0) -> list[float]:
    """Start times of the chunks covering [0, duration); the last one may be partial."""
    hop_s = clip_s - overlap_s
    n = max(1, math.ceil(max(duration_s - overlap_s, 1e-9) / hop_s))
    return [round(i * hop_s, 6) for i in range(n)]


def read_window(
    snd: sf.SoundFile,
    offset_s: float,
    clip_s: float,
    sample_rate_hz: int,
    channel: str = "first",
    normalize: bool = True,
    out: np.ndarray | None = None,
) -> Chunk:
    """Decode [offset, offset + clip) at ``sample_rate_hz`` from an open SoundFile, into
    ``out`` (float32, clip samples; e.g. a row of the block the chunk will travel in) when
    given, so a chunk is written once instead of being copied from array to array."""
    sr_in, total = snd.samplerate, snd.frames
    out_len = int(round(clip_s * sample_rate_hz))
    start_in = int(round(offset_s * sr_in))
    stop_in = min(total, start_in + int(round(clip_s * sr_in)))
    if sr_in == sample_rate_hz:
        pad_l_in = pad_r_in = pad_l_out = 0
    else:
        margin_in, margin_out = _margin_steps(sr_in, sample_rate_hz)
        pad_l_in = min(margin_in, start_in)
        pad_l_out = pad_l_in * sample_rate_hz // sr_in if pad_l_in == margin_in else None
        pad_r_in = min(margin_in, total - stop_in)
    audio = np.empty(out_len, dtype=np.float32) if out is None else out
    if audio.shape != (out_len,) or audio.dtype != np.float32:
        raise ValueError(
            f"out must be float32 of shape ({out_len},), got {audio.dtype} {audio.shape}"
        )
    first = start_in - pad_l_in  # first input frame read, margin included
    if snd.tell() != first:  # consecutive chunks need no seek (a FLAC seek re-syncs the
        snd.seek(first)  # decoder: ~7 % of a chunk's read time)
    want = stop_in + pad_r_in - first
    direct = snd.channels == 1 and sr_in == sample_rate_hz and want <= out_len
    picked = 0
    if direct:  # mono at the model rate: libsndfile decodes straight into the chunk
        got = snd.read(want, dtype="float32", out=audio[:want])
        x = audio[: len(got)]
    else:
        block = snd.read(want, dtype="float32", always_2d=True)
        picked = channel_index(block, channel)
        x = block[:, picked]
    if len(x) < want:
        raise DecodeError("truncated", f"expected {want} frames at {first}, got {len(x)}")
    if not np.isfinite(x).all():
        raise DecodeError("non_finite", f"NaN/inf samples in window at {offset_s:.2f} s")
    if sr_in != sample_rate_hz:
        y = soxr.resample(x, sr_in, sample_rate_hz, quality="HQ").astype(np.float32, copy=False)
        if pad_l_out is None:  # window starts inside the first margin: starts at time 0
            pad_l_out = int(round(pad_l_in * sample_rate_hz / sr_in))
        n_valid = int(round((stop_in - start_in) * sample_rate_hz / sr_in))
        x = y[pad_l_out : pad_l_out + n_valid]
    valid = min(len(x), out_len)
    if normalize:
        normalise(x[:valid], out=audio[:valid])
    elif not direct:
        audio[:valid] = x[:valid]
    audio[valid:] = 0.0
    return Chunk(offset_s, audio, valid, channel=picked, source_rate_hz=sr_in)


def iter_chunks(
    fileobj: BinaryIO,
    clip_s: float,
    sample_rate_hz: int,
    *,
    overlap_s: float = 0.0,
    channel: str = "first",
    normalize: bool = True,
    min_duration_s: float = 0.1,
    start_s: float = 0.0,
    stop_s: float | None = None,
    out: Callable[[], np.ndarray] | None = None,
    chunk_errors: bool = False,
    time_expansion: int = 1,
) -> Iterator[Chunk]:
    """Stream the chunks of one file (or of its [start_s, stop_s) range). Raises DecodeError.
    ``out``, when given, is called once per chunk for the array to decode it into. With
    ``chunk_errors``, a window with NaN/inf samples is yielded as a zero Chunk carrying its
    ``error_type`` and the file goes on (one bad stretch does not cost the whole file). With
    ``time_expansion`` k, the file is read at k times its stated rate: offsets, durations and
    ``source_rate_hz`` are those of the sound as it happened."""
    with open_sound(fileobj, time_expansion) as snd:
        duration_s = snd.frames / snd.samplerate
        if snd.frames == 0:
            raise DecodeError("empty_audio", "the stream holds 0 samples")
        if duration_s < min_duration_s:
            raise DecodeError("too_short", f"{duration_s:.3f} s < min_duration_s {min_duration_s}")
        offsets = chunk_offsets(duration_s, clip_s, overlap_s)
        for offset in offsets:
            if offset < start_s or (stop_s is not None and offset >= stop_s):
                continue
            try:
                buf = out and out()
                chunk = read_window(snd, offset, clip_s, sample_rate_hz, channel, normalize, buf)
            except DecodeError as exc:
                if not (chunk_errors and exc.error_type == "non_finite"):
                    raise
                audio = buf if buf is not None else np.zeros(int(clip_s * sample_rate_hz), "f4")
                audio[:] = 0.0
                chunk = Chunk(offset, audio, 0, 0, exc.error_type, exc.message)
                chunk.source_rate_hz = snd.samplerate
            except sf.LibsndfileError as exc:
                raise DecodeError("truncated", f"decode failed at {offset:.2f} s ({exc})") from exc
            chunk.n_chunks = len(offsets)
            yield chunk
