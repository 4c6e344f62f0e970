"""Where sound sits: the excess over the noise floor, its 99 % frequency, and the preset advice."""

import numpy as np
import pytest

from a2v_core.rates import sound_advice, sound_preset_hz
from a2v_core.spectrum import SoundSpectrum


def bursts(freqs_hz, rate=32_000, seconds=20.0, seed=0) -> np.ndarray:
    """Noise with a 50 ms tone burst every second, cycling through ``freqs_hz``."""
    rng = np.random.default_rng(seed)
    x = 0.05 * rng.standard_normal(int(rate * seconds)).astype(np.float32)
    t = np.arange(int(0.05 * rate)) / rate
    for i in range(int(seconds)):
        f = freqs_hz[i % len(freqs_hz)]
        s = int((i + 0.3) * rate)
        x[s : s + t.size] += 0.5 * np.sin(2 * np.pi * f * t).astype(np.float32)
    return x


def test_the_sound_of_tones_below_4_khz_ends_there_and_noise_is_not_sound():
    spec = SoundSpectrum()
    spec.add(bursts([1000, 2000, 3000]), 32_000)
    assert 3000 <= spec.top_hz() <= 3200
    assert spec.fraction_below(4000) > 0.99
    noise = SoundSpectrum()
    noise.add(0.05 * np.random.default_rng(1).standard_normal(640_000), 32_000)
    # stationary noise passes 10x its floor in about one frame of 22 000: next to nothing
    assert noise.excess.sum() < 0.01 * spec.excess.sum()


def test_files_at_several_rates_add_up_on_one_axis():
    spec = SoundSpectrum()
    spec.add(bursts([2000], rate=8000), 8000)
    spec.add(bursts([12_000], rate=48_000), 48_000)
    assert spec.files == 2 and spec.freqs_hz[-1] >= 23_900
    assert 0.3 < spec.fraction_below(4000) < 0.7
    assert 12_000 <= spec.top_hz() <= 12_200
    with pytest.raises(ValueError, match="bin widths"):
        spec.merge(np.zeros(3), 25.0)


@pytest.mark.parametrize(
    "top,preset",
    [
        (3725, 8000),
        (5800, 16_000),
        (7900, 16_000),
        (11_000, 24_000),
        (15_000, 32_000),
        (20_000, 48_000),
        (90_000, 192_000),
    ],
)
def test_the_advice_is_the_lowest_preset_that_holds_the_sound(top, preset):
    assert sound_preset_hz(top) == preset
    line = sound_advice(top, 16)
    assert (
        f"sound up to {top / 1000:.1f} kHz" in line
        and f"--sample-rate-hz {preset} hears it all" in line
    )


def test_no_sound_found_says_so():
    assert "none found" in sound_advice(None, 4)
