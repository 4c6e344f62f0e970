"""Synthetic recordings with exact ground truth (demo and tests), at any preset rate.

About-a-minute mono files of background noise (coloured, slowly varying level) with sparse
calls (a few % of the time). Below 32 kHz: MeerKAT-like collar recordings, 8 classes of
distinct shapes under 3 kHz (short harmonic notes, harmonic close/lead calls, FM sweeps, a
noisy alarm burst, a pulse train, a pure-tone synchronisation beep). 32-96 kHz: bird-like
calls whose energy lies between 5 and 15 kHz, which an 8 kHz model cannot hear. 192 kHz and
up: bat-like FM sweeps of 2-10 ms between 20 and 100 kHz. Classes are imbalanced and SNRs
vary. Fully determined by the seed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.signal import butter, sosfiltfilt

Synth = Callable[[np.random.Generator, int, float], np.ndarray]


def _envelope(n: int, attack: float = 0.15) -> np.ndarray:
    a = max(1, int(n * attack))
    env = np.ones(n)
    ramp = np.sin(np.linspace(0, np.pi / 2, a)) ** 2
    env[:a], env[n - a :] = ramp, ramp[::-1]
    return env


def _harmonic(
    rng: np.random.Generator, sr: int, dur: float, f0: tuple[float, float], sweep: float, n_h: int
) -> np.ndarray:
    n = int(dur * sr)
    t = np.arange(n) / sr
    start = rng.uniform(*f0)
    freq = start * (1 + sweep * t / max(dur, 1e-3))
    phase = 2 * np.pi * np.cumsum(freq) / sr
    x = sum((0.7**h) * np.sin((h + 1) * phase) for h in range(n_h))
    return x * _envelope(n)


def short_note(rng, sr, dur):  # sn: 30-60 ms harmonic stack
    return _harmonic(rng, sr, dur, (450, 650), 0.0, 4)


def close_call(rng, sr, dur):  # cc: 100-200 ms, slight upward FM
    return _harmonic(rng, sr, dur, (300, 420), 0.15, 5)


def lead_call(rng, sr, dur):  # ld: 200-400 ms, downward FM
    return _harmonic(rng, sr, dur, (700, 900), -0.3, 3)


def _sweep(
    rng: np.random.Generator,
    sr: int,
    dur: float,
    start_hz: tuple[float, float],
    end_hz: tuple[float, float],
    attack: float = 0.15,
) -> np.ndarray:
    """A linear FM sweep from a frequency drawn in ``start_hz`` to one drawn in ``end_hz``."""
    n = int(dur * sr)
    f = np.linspace(rng.uniform(*start_hz), rng.uniform(*end_hz), n)
    return np.sin(2 * np.pi * np.cumsum(f) / sr) * _envelope(n, attack)


def move_call(rng, sr, dur):  # mo: fast upsweep
    return _sweep(rng, sr, dur, (800, 1000), (2400, 2800))


def alarm_call(rng, sr, dur):  # al: band-limited noisy burst 1.5-3 kHz
    n = int(dur * sr)
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / sr)
    spec[(freqs < 1500) | (freqs > 3000)] = 0
    x = np.fft.irfft(spec, n)
    return x / (np.abs(x).max() + 1e-9) * _envelope(n, 0.05)


def social_call(rng, sr, dur):  # soc: downsweep with harmonics
    n = int(dur * sr)
    f = np.linspace(rng.uniform(1600, 1900), rng.uniform(600, 800), n)
    ph = 2 * np.pi * np.cumsum(f) / sr
    return (np.sin(ph) + 0.5 * np.sin(2 * ph)) * _envelope(n)


def aggression(rng, sr, dur):  # agg: pulse train, ~25 pulses/s of noisy clicks
    n = int(dur * sr)
    x = np.zeros(n)
    period = int(sr / rng.uniform(20, 30))
    pulse = int(0.012 * sr)
    for s in range(0, n - pulse, period):
        x[s : s + pulse] = rng.standard_normal(pulse) * np.hanning(pulse)
    return x


def beep(rng, sr, dur):  # synch: pure 2 kHz tone (device synchronisation beep)
    n = int(dur * sr)
    return np.sin(2 * np.pi * 2000 * np.arange(n) / sr) * _envelope(n, 0.02)


@dataclass(frozen=True)
class CallClass:
    label: str
    synth: Synth
    min_s: float
    max_s: float
    weight: float  # relative frequency (class imbalance)


CALL_CLASSES: tuple[CallClass, ...] = (
    CallClass("cc", close_call, 0.10, 0.20, 0.30),
    CallClass("sn", short_note, 0.03, 0.06, 0.20),
    CallClass("ld", lead_call, 0.20, 0.40, 0.12),
    CallClass("mo", move_call, 0.10, 0.25, 0.10),
    CallClass("soc", social_call, 0.15, 0.35, 0.10),
    CallClass("al", alarm_call, 0.20, 0.50, 0.07),
    CallClass("agg", aggression, 0.30, 0.50, 0.06),
    CallClass("synch", beep, 0.30, 0.30, 0.05),
)
CLASSES: list[str] = [c.label for c in CALL_CLASSES]


def whistle(rng, sr, dur):  # wh: 6-9 kHz tone with a slow vibrato
    n = int(dur * sr)
    t = np.arange(n) / sr
    f = rng.uniform(6000, 9000) + 400 * np.sin(2 * np.pi * rng.uniform(8, 15) * t)
    return np.sin(2 * np.pi * np.cumsum(f) / sr) * _envelope(n)


def trill(rng, sr, dur):  # tr: 5-8 kHz tone pips at 15-25 pips/s
    n = int(dur * sr)
    x, period, pip = np.zeros(n), int(sr / rng.uniform(15, 25)), int(0.02 * sr)
    f = rng.uniform(5000, 8000)
    for s in range(0, n - pip, period):
        x[s : s + pip] = np.sin(2 * np.pi * f * np.arange(pip) / sr) * np.hanning(pip)
    return x


def downsweep(rng, sr, dur):  # ds: 14 -> 6 kHz
    return _sweep(rng, sr, dur, (12000, 14000), (5500, 7000))


def buzz(rng, sr, dur):  # bz: noise band 9-14 kHz
    n = int(dur * sr)
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / sr)
    spec[(freqs < 9000) | (freqs > 14000)] = 0
    x = np.fft.irfft(spec, n)
    return x / (np.abs(x).max() + 1e-9) * _envelope(n, 0.05)


def chip(rng, sr, dur):  # ch: harmonic note, f0 5-6 kHz (harmonics 10-12 kHz)
    return _harmonic(rng, sr, dur, (5000, 6000), 0.05, 2)


#: bird-like classes for 32-96 kHz archives: all their energy lies in 5-15 kHz
BIRD_CLASSES: tuple[CallClass, ...] = (
    CallClass("wh", whistle, 0.10, 0.30, 0.25),
    CallClass("ch", chip, 0.02, 0.05, 0.20),
    CallClass("tr", trill, 0.20, 0.40, 0.20),
    CallClass("ds", downsweep, 0.05, 0.15, 0.20),
    CallClass("bz", buzz, 0.15, 0.30, 0.15),
)


def steep_fm(rng, sr, dur):  # fm: 100 -> 30 kHz, Myotis-like
    return _sweep(rng, sr, dur, (85000, 100000), (25000, 35000), 0.1)


def shallow_fm(rng, sr, dur):  # qcf: 55 -> 40 kHz, Pipistrellus-like hockey stick
    n = int(dur * sr)
    end = rng.uniform(38000, 45000)
    f = end + (rng.uniform(55000, 65000) - end) * np.exp(-np.arange(n) / (0.2 * n))
    return np.sin(2 * np.pi * np.cumsum(f) / sr) * _envelope(n, 0.1)


def low_fm(rng, sr, dur):  # lfm: 30 -> 20 kHz, Nyctalus-like
    return _sweep(rng, sr, dur, (28000, 32000), (19000, 22000), 0.1)


#: bat-like classes for archives at 192 kHz and up: FM sweeps of 2-10 ms in 20-100 kHz
BAT_CLASSES: tuple[CallClass, ...] = (
    CallClass("fm", steep_fm, 0.002, 0.004, 0.45),
    CallClass("qcf", shallow_fm, 0.005, 0.010, 0.35),
    CallClass("lfm", low_fm, 0.006, 0.010, 0.20),
)


def low_band_sos(sample_rate_hz: int) -> np.ndarray:
    """The low-pass (8th-order Butterworth at 3.8 kHz) that keeps the low call set below 4 kHz."""
    return butter(8, 3800, fs=sample_rate_hz, output="sos")


#: ``calls`` names: which call set a synthetic archive holds (auto: by its rate)
CALL_SETS = {"low": CALL_CLASSES, "bird": BIRD_CLASSES, "bat": BAT_CLASSES}


def call_classes(sample_rate_hz: int, calls: str = "auto") -> tuple[CallClass, ...]:
    """The classes a synthetic archive at ``sample_rate_hz`` holds: by default where only that
    rate hears them; ``calls`` low (below 4 kHz), bird (5-15 kHz) or bat picks a set."""
    if calls != "auto":
        return CALL_SETS[calls]
    if sample_rate_hz >= 192_000:
        return BAT_CLASSES
    if sample_rate_hz >= 32_000:
        return BIRD_CLASSES
    return CALL_CLASSES


def background(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Pinkish noise with a slowly drifting level."""
    white = rng.standard_normal(n)
    spec = np.fft.rfft(white)
    freqs = np.fft.rfftfreq(n, 1 / sr)
    spec /= np.sqrt(np.maximum(freqs, 20.0) / 20.0)
    x = np.fft.irfft(spec, n)
    x /= x.std() + 1e-9
    drift = 1 + 0.3 * np.sin(
        2 * np.pi * np.arange(n) / n * rng.uniform(0.5, 2) + rng.uniform(0, 6.3)
    )
    return x * drift


def synth_recording(
    rng: np.random.Generator,
    duration_s: float = 60.0,
    sample_rate_hz: int = 8000,
    calls_per_s: float | None = None,
    snr_db: tuple[float, float] = (3.0, 20.0),
    calls: str = "auto",
) -> tuple[np.ndarray, pd.DataFrame]:
    """One recording (float32, peak <= 0.9) and its events (file column left empty).
    ``calls_per_s``: 0.25 by default, 0.5 for bird-like calls, 2 for bat-like ones."""
    n = int(duration_s * sample_rate_hz)
    noise_std = 0.02
    x = background(rng, n, sample_rate_hz) * noise_std
    classes = call_classes(sample_rate_hz, calls)
    if calls_per_s is None:  # birds sing more often than meerkats call; bats call in trains
        calls_per_s = {BAT_CLASSES: 2.0, BIRD_CLASSES: 0.5}.get(classes, 0.25)
    weights = np.array([c.weight for c in classes])
    n_calls = rng.poisson(calls_per_s * duration_s)
    rows = []
    occupied = np.zeros(n, dtype=bool)
    gap = int(0.05 * sample_rate_hz)  # keep 50 ms between calls
    for _ in range(n_calls):
        cls = classes[rng.choice(len(classes), p=weights / weights.sum())]
        dur = rng.uniform(cls.min_s, cls.max_s)
        if dur > duration_s - 0.1:  # a call longer than a short file leaves it out
            continue
        onset = rng.uniform(0.05, duration_s - dur - 0.05)
        s0, s1 = (
            int(onset * sample_rate_hz),
            int(onset * sample_rate_hz) + int(dur * sample_rate_hz),
        )
        if occupied[max(0, s0 - gap) : s1 + gap].any():
            continue
        occupied[s0:s1] = True
        call = cls.synth(rng, sample_rate_hz, dur)
        if calls == "low" and sample_rate_hz > 8000:  # below 4 kHz at any rate (clicks are
            call = sosfiltfilt(low_band_sos(sample_rate_hz), call)  # broadband otherwise)
        gain = noise_std * 10 ** (rng.uniform(*snr_db) / 20) / (call.std() + 1e-9)
        x[s0 : s0 + len(call)] += gain * call
        rows.append(
            {
                "file": "",
                "onset_s": round(s0 / sample_rate_hz, 6),
                "offset_s": round((s0 + len(call)) / sample_rate_hz, 6),
                "label": cls.label,
            }
        )
    x = 0.9 * x / max(np.abs(x).max(), 1e-9)
    table = pd.DataFrame(rows, columns=["file", "onset_s", "offset_s", "label"])
    return x.astype(np.float32), table.sort_values("onset_s").reset_index(drop=True)


def synth_archive(
    hours: float,
    seed: int = 0,
    file_s: float = 60.0,
    sample_rate_hz: int = 8000,
    calls: str = "auto",
) -> Iterator[tuple[str, np.ndarray, pd.DataFrame]]:
    """Yield (relative path, audio, events with ``file`` set) for about ``hours`` of audio."""
    n_files = max(1, int(round(hours * 3600 / file_s)))
    for i in range(n_files):
        rng = np.random.default_rng([seed, i])
        name = f"collar_{i // 50:03d}/rec_{i:05d}.wav"
        audio, events = synth_recording(rng, file_s, sample_rate_hz, calls=calls)
        events["file"] = name
        yield name, audio, events
