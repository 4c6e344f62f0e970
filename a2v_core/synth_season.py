"""Synthetic archives shaped like a field season, with exact ground truth by relative path.

``season``: one folder per site per night (``site2/20240601/``), AudioMoth-style recordings
named by their start time (``20240601_203000.WAV``: the same names in every site), ``file_s``
on and ``gap_s`` off (AudioMoth's default 55 s / 5 s) from 20:30, at 48 kHz by default, the
start time also in the WAV comment as AudioMoth writes it. ``bats``: triggered recordings of
0.5 s to ``file_s`` (default 10 s) at 384 kHz, Song Meter-style names
(``SMU01234_20240601_221503.wav``) at irregular times through the night, bat-like FM calls,
the start time also in a GUANO chunk. Calls are ``a2v_core.synth``'s for the rate.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from a2v_core.synth import synth_recording

#: the first night of every synthetic season, and when recording starts each evening
SEASON_START = dt.datetime(2024, 6, 1, 20, 30, 0)


@dataclass(frozen=True)
class SeasonFile:
    path: str  # relative to the archive
    audio: np.ndarray
    events: pd.DataFrame  # file column set
    recorded_at: dt.datetime
    header: dict[str, str]  # what the recorder writes into the file: comment or guano


def _split(n_files: int, sites: int, nights: int) -> int:
    return max(1, math.ceil(n_files / (sites * nights)))


def audiomoth_comment(t: dt.datetime) -> str:
    return (
        f"Recorded at {t:%H:%M:%S %d/%m/%Y} (UTC) by AudioMoth 24F319055FDF1234 at medium "
        "gain while battery was greater than 4.9V and temperature was 21.3C."
    )


def season_archive(
    n_files: int,
    seed: int = 0,
    sites: int = 3,
    nights: int = 2,
    file_s: float = 55.0,
    gap_s: float = 5.0,
    sample_rate_hz: int = 48_000,
) -> Iterator[SeasonFile]:
    """About ``n_files`` AudioMoth-style recordings over ``sites`` x ``nights`` folders."""
    per_night = _split(n_files, sites, nights)
    for s in range(sites):
        for night in range(nights):
            start = SEASON_START + dt.timedelta(days=night)
            for i in range(per_night):
                t = start + dt.timedelta(seconds=i * (file_s + gap_s))
                rng = np.random.default_rng([seed, s, night, i])
                audio, events = synth_recording(rng, file_s, sample_rate_hz)
                path = f"site{s + 1}/{start:%Y%m%d}/{t:%Y%m%d_%H%M%S}.WAV"
                yield SeasonFile(
                    path, audio, events.assign(file=path), t, {"comment": audiomoth_comment(t)}
                )


def bat_archive(
    n_files: int,
    seed: int = 0,
    sites: int = 3,
    nights: int = 2,
    max_file_s: float = 10.0,
    sample_rate_hz: int = 384_000,
    min_file_s: float = 0.5,
) -> Iterator[SeasonFile]:
    """About ``n_files`` triggered recordings of ``min_file_s``-``max_file_s`` (log-uniform)."""
    per_night = _split(n_files, sites, nights)
    for s in range(sites):
        for night in range(nights):
            rng = np.random.default_rng([seed, s, night])
            # triggers at distinct seconds of an 8-hour night from 21:30
            seconds = np.sort(rng.choice(max(8 * 3600, per_night), per_night, replace=False))
            for i in range(per_night):
                t = SEASON_START + dt.timedelta(days=night, hours=1, seconds=int(seconds[i]))
                dur = float(np.exp(rng.uniform(np.log(min_file_s), np.log(max_file_s))))
                dur = round(dur * sample_rate_hz) / sample_rate_hz
                audio, events = synth_recording(
                    np.random.default_rng([seed, s, night, i]), dur, sample_rate_hz
                )
                night_dir = f"{SEASON_START + dt.timedelta(days=night):%Y%m%d}"
                path = f"site{s + 1}/{night_dir}/SMU0{s + 1:04d}_{t:%Y%m%d_%H%M%S}.wav"
                guano = f"GUANO|Version: 1.0\nTimestamp: {t.isoformat()}\nMake: Synth\n"
                yield SeasonFile(path, audio, events.assign(file=path), t, {"guano": guano})
