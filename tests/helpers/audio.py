"""Audio files for tests: in-memory WAV/FLAC bytes, broken files of every error type, long
recordings written chunk by chunk."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf


def wav_bytes(x, sr, fmt="WAV", subtype="PCM_16"):
    buf = io.BytesIO()
    sf.write(buf, x, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def bad_files() -> dict[str, tuple[bytes, str]]:
    good = wav_bytes(np.zeros(8000 * 3, np.float32) + 0.1, 8000)
    flac = wav_bytes(
        np.random.default_rng(0).standard_normal(8000 * 30).astype(np.float32) * 0.1, 8000, "FLAC"
    )
    nan = np.zeros(8000, np.float32)
    nan[100] = np.nan
    return {
        "empty.wav": (b"", "empty_file"),
        "truncated.flac": (flac[: len(flac) // 3], "truncated"),
        "truncated_header.wav": (good[:30], "truncated"),
        "random.wav": (np.random.default_rng(1).bytes(5000), "not_audio"),
        "text.flac": (b"this is not audio at all\n" * 20, "not_audio"),
        "nan.wav": (wav_bytes(nan, 8000, subtype="FLOAT"), "non_finite"),
        "zero.wav": (wav_bytes(np.zeros(0, np.float32), 8000), "empty_audio"),
        "short.wav": (wav_bytes(np.zeros(100, np.float32), 8000), "too_short"),
    }


def write_long_flac(path: Path, hours: float, sr: int = 8000) -> None:
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", sr, 1, format="FLAC", subtype="PCM_16") as f:
        for _ in range(int(hours * 3600 / 60)):
            f.write((rng.standard_normal(sr * 60) * 0.05).astype(np.float32))
