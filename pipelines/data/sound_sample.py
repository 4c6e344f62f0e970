"""Where a sample of an archive's sound sits in frequency: the evidence behind rate advice.

``a2v manifest`` reads up to ``per_rate`` files of each rate group (spread over the archive's
sorted listing, so sites and nights are all drawn from), ``max_s`` seconds from each file's
middle, as Ray tasks; each task returns the file's excess power over its noise floor
(``a2v_core.spectrum``), and the driver sums them. A file that fails to decode is skipped (the
manifest reports it already).
"""

from __future__ import annotations

import numpy as np
import ray

from a2v_core.audio import DecodeError, open_sound
from a2v_core.rates import RATE_PRESETS, sound_advice
from a2v_core.spectrum import SoundSpectrum
from pipelines.data import storage


def file_sound(
    archive: str, rel: str, size: int, max_s: float, time_expansion: int = 1
) -> tuple[np.ndarray, float] | None:
    """(excess power per 50 Hz bin, bin width) of ``max_s`` seconds from the middle of ``rel``
    (its first channel, at its true rate), or None when it cannot be read."""
    fs, root = storage.filesystem(archive)
    spec = SoundSpectrum()
    try:
        with storage.open_member(fs, root, rel, size) as f, open_sound(f, time_expansion) as snd:
            n = int(max_s * snd.samplerate)
            snd.seek(max(0, (snd.frames - n) // 2))
            x = snd.read(min(n, snd.frames), dtype="float32", always_2d=True)[:, 0]
            spec.add(x[np.isfinite(x)], int(snd.samplerate))
    except (DecodeError, OSError, RuntimeError):
        return None
    return spec.excess, spec.bin_hz


def spread(items: list, n: int) -> list:
    """Up to ``n`` of ``items``, evenly spread over them (in their order)."""
    step = max(1, len(items) / n)
    return [items[int(i * step)] for i in range(min(n, len(items)))]


def sample_files(ok: list[dict], per_rate: int) -> list[dict]:
    """Up to ``per_rate`` rows of each rate, evenly spread over the sorted paths."""
    picked = []
    for rate in sorted({r["sample_rate_hz"] for r in ok}):
        rows = sorted((r for r in ok if r["sample_rate_hz"] == rate), key=lambda r: r["path"])
        picked += spread(rows, per_rate)
    return picked


def archive_sound(
    archive: str, ok: list[dict], per_rate: int = 16, max_s: float = 30.0, time_expansion: int = 1
) -> dict:
    """The sound of a sample of ``ok`` (manifest rows without error): per rate group and over
    all, the frequency below which 99 % of it lies, and the advice (``rates.sound_advice``)."""
    rows = sample_files(ok, per_rate)
    remote = ray.remote(file_sound)
    refs = [remote.remote(archive, r["path"], int(r["bytes"]), max_s, time_expansion) for r in rows]
    total, by_rate = SoundSpectrum(), {}
    for r, got in zip(rows, ray.get(refs), strict=True):
        if got is None:
            continue
        part = by_rate.setdefault(int(r["sample_rate_hz"]), SoundSpectrum())
        for spec in (part, total):
            spec.merge(*got)
    top = total.top_hz()
    highest = max((int(r["sample_rate_hz"]) for r in rows), default=0)
    return {
        "files_sampled": total.files,
        "sound_top_hz": top,
        "sound_top_hz_by_rate": {str(r): s.top_hz() for r, s in by_rate.items()},
        # the share of the sound each preset up to the files' own rate hears (below its Nyquist)
        "sound_heard_by_preset": {
            str(p): total.fraction_below(p / 2) for p in RATE_PRESETS if top and p <= highest
        },
        "advice": sound_advice(top, total.files),
    }


def sound_check(
    job: str,
    archive: str,
    files: list[tuple[str, int]],
    band_hz: tuple[float, float],
    time_expansion: int = 1,
    n_files: int = 4,
    max_s: float = 10.0,
) -> str:
    """The line a training job prints after what its model hears: where the sound of
    ``n_files`` of ``files`` (spread over them, ``max_s`` from each middle, read here, before
    Ray) lies against the model's band, and the preset that would hear it whole."""
    spec = SoundSpectrum()
    for rel, size in spread(files, n_files):
        got = file_sound(archive, rel, size, max_s, time_expansion)
        if got is not None:
            spec.merge(*got)
    top = spec.top_hz()
    line = f"[{job}] {sound_advice(top, spec.files)}"
    if top is not None:
        low, high = band_hz
        heard = spec.fraction_below(high) - spec.fraction_below(low)
        line += f"; this model hears {low:g}-{high:g} Hz: {100 * heard:.0f} % of it"
    return line
