"""Where an archive's sound sits in frequency: the evidence behind rate advice and Sinc init.

A recording's *sound* is its energy above the stationary noise floor: per frequency bin, the
power of the short frames that stand at least ``ABOVE_FLOOR`` (10 dB) above the floor, less
the floor. The floor (a recorder's hiss, hum and wind, in every frame) is estimated from the
bin's median: the power of stationary Gaussian noise in a bin is exponentially distributed,
whose mean is its median / ln 2, and it passes 10x its mean in 1 frame of 22 000. Calls are
brief and sparse, so the median ignores them and the excess is theirs; noise whose level drifts
slowly (wind) stays below the bar. Summed over a sample of files (each weighted by its
duration), the excess gives a cumulative energy curve over frequency; ``top_hz(0.99)`` is
the frequency below which 99 % of the sound lies. Axes: F frequency bins, T frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.signal import stft

from a2v_core.rates import SOUND_COVER

#: how far above its bin's noise floor a frame's power must stand to count as sound (10 dB)
ABOVE_FLOOR = 10.0


@dataclass
class SoundSpectrum:
    """Excess power per frequency bin, summed over the files added (each at its own rate:
    bins above a file's Nyquist get nothing from it)."""

    bin_hz: float = 50.0
    excess: np.ndarray = field(default_factory=lambda: np.zeros(0))
    files: int = 0

    def add(self, audio: np.ndarray, rate_hz: int) -> None:
        """Add one mono recording's excess power over its noise floor (frames of 1/bin_hz s)."""
        n = int(round(rate_hz / self.bin_hz))
        if audio.size < 2 * n:
            return
        _, _, z = stft(audio.astype(np.float32), fs=rate_hz, nperseg=n, noverlap=n // 2)
        power = np.abs(z) ** 2  # (F, T)
        floor = np.median(power, axis=1, keepdims=True) / np.log(2)  # exponential: mean
        loud = power > ABOVE_FLOOR * floor
        self.merge(np.where(loud, power - floor, 0.0).sum(axis=1), self.bin_hz)

    def merge(self, excess: np.ndarray, bin_hz: float, files: int = 1) -> None:
        """Add another sample's excess (the same bin width)."""
        if bin_hz != self.bin_hz:
            raise ValueError(f"bin widths differ: {bin_hz} and {self.bin_hz}")
        if excess.size > self.excess.size:
            self.excess = np.pad(self.excess, (0, excess.size - self.excess.size))
        self.excess[: excess.size] += excess
        self.files += files

    @property
    def freqs_hz(self) -> np.ndarray:
        return np.arange(self.excess.size) * self.bin_hz

    def cumulative(self) -> np.ndarray:
        total = self.excess.sum()
        return np.cumsum(self.excess) / total if total > 0 else np.zeros_like(self.excess)

    def top_hz(self, cover: float = SOUND_COVER) -> float | None:
        """The frequency below which ``cover`` of the sound lies (None: no sound found)."""
        cum = self.cumulative()
        if not cum.size or cum[-1] <= 0:
            return None
        return float(self.freqs_hz[int(np.searchsorted(cum, cover))] + self.bin_hz / 2)

    def fraction_below(self, hz: float) -> float:
        """The share of the sound below ``hz``."""
        cum = self.cumulative()
        if not cum.size or cum[-1] <= 0:
            return 0.0
        i = min(int(hz // self.bin_hz), cum.size - 1)
        return float(cum[i])
