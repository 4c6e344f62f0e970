"""Sample-rate presets: every archive heard at its own rate, frames stay 5 ms (or 1 ms for bats).

A rate preset picks the front end that turns audio at ``sample_rate_hz`` into 200 Hz frames:
Sinc taps ~ sqrt(rate / 2) (odd), and a *front-end rate*: the Sinc filters run on every input
sample but their outputs are kept every ``sinc_stride`` samples. 8-48 kHz presets keep 8 kHz
(audible; the conv stack after the Sinc layer is then the original 8 kHz one, 5*2*2*2), the
ultrasonic ones about 32 kHz (25 kHz at 250 kHz). Each band-passed output is sampled below the
input rate, so a band above the front-end Nyquist folds down (band-pass sampling), its energy
and timing kept, and everything after it costs what it costs at 8 kHz: measured on one core,
the LayerNorm, PSwish and conv stack at 48 kHz on every sample cost 2.3x the Sinc convolution
itself, so a faster Sinc alone could not keep 48 kHz labelling near 8 kHz speed.
Rates without a preset (44.1 kHz has no integer 5 ms hop) are refused, naming the nearest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: the lowest preset whose Nyquist is ultrasonic (> 24 kHz): filters start at 10 kHz there
ULTRASONIC_FROM_HZ = 96_000
#: frame rates a preset can give: 200 Hz (5 ms, the original) and 1 kHz (1 ms, ultrasonic)
FRAME_RATES_HZ = (200, 1000)
#: the share of an archive's sound (``a2v_core.spectrum``) a recommended preset must hear
SOUND_COVER = 0.99
#: where an ultrasonic preset's Sinc filters start (they may still learn to go lower)
ULTRASONIC_INIT_LOW_HZ = 10_000.0


@dataclass(frozen=True)
class RatePreset:
    """How one input rate reaches 200 Hz (and, ultrasonic, 1 kHz) frames."""

    sample_rate_hz: int
    use: str
    sinc_stride: int  # Sinc outputs kept every this many input samples
    conv_strides: tuple[int, ...]  # strided conv layers after the Sinc layer, 200 Hz frames
    conv_strides_1khz: tuple[int, ...] | None = None  # the same for 1 kHz frames

    @property
    def sinc_taps(self) -> int:
        """Odd, about sqrt(rate / 2): 63 at 8 kHz (the original), 155 at 48 kHz."""
        root = math.sqrt(self.sample_rate_hz / 2)
        taps = int(round(root))
        if taps % 2 == 0:  # the odd neighbour on root's side
            taps = taps - 1 if root < taps else taps + 1
        return taps

    @property
    def frontend_rate_hz(self) -> float:
        return self.sample_rate_hz / self.sinc_stride

    @property
    def ultrasonic(self) -> bool:
        return self.sample_rate_hz >= ULTRASONIC_FROM_HZ

    def strides(self, frame_rate_hz: int) -> tuple[int, ...]:
        if frame_rate_hz == 200:
            return self.conv_strides
        if self.conv_strides_1khz is None:
            raise ValueError(
                f"model.frame_rate_hz {frame_rate_hz}: 1 kHz frames are for the ultrasonic "
                f"presets (>= {ULTRASONIC_FROM_HZ} Hz); {self.sample_rate_hz} Hz takes 200"
            )
        return self.conv_strides_1khz


_AUDIBLE = (5, 2, 2, 2)  # the original 8 kHz stack after the Sinc layer
_ULTRA = (20, 2, 2, 2)  # at a 32 kHz front end
_ULTRA_1K = (4, 2, 2, 2)

RATE_PRESETS: dict[int, RatePreset] = {
    p.sample_rate_hz: p
    for p in (
        RatePreset(8_000, "the original (MeerKAT collars), speech-band recorders", 1, _AUDIBLE),
        RatePreset(16_000, "low-frequency birds, mammals, marine (baleen whales)", 2, _AUDIBLE),
        RatePreset(24_000, "birds up to 12 kHz", 3, _AUDIBLE),
        RatePreset(32_000, "birds, frogs (Perch's rate)", 4, _AUDIBLE),
        RatePreset(48_000, "birds, insects (AudioMoth default, BirdNET)", 6, _AUDIBLE),
        RatePreset(96_000, "insects, low ultrasound", 3, _ULTRA, _ULTRA_1K),
        RatePreset(192_000, "bats, rodents", 6, _ULTRA, _ULTRA_1K),
        RatePreset(250_000, "bats, rodents (Avisoft, Pettersson)", 10, (5, 5, 5, 1), (5, 5, 1, 1)),
        RatePreset(256_000, "bats, rodents", 8, _ULTRA, _ULTRA_1K),
        RatePreset(384_000, "bats (AudioMoth ultrasonic, Song Meter)", 12, _ULTRA, _ULTRA_1K),
    )
}


#: the model's rate when none is set: the table's first preset, the original's
DEFAULT_RATE_HZ = next(iter(RATE_PRESETS))


def nearest_preset_hz(rate_hz: float) -> int:
    """The preset rate closest to ``rate_hz`` (ties: the higher one, which loses no band)."""
    return min(RATE_PRESETS, key=lambda r: (abs(r - rate_hz), -r))


def rate_preset(rate_hz: int) -> RatePreset:
    """The preset of ``rate_hz``; a ValueError naming the nearest preset otherwise."""
    if rate_hz in RATE_PRESETS:
        return RATE_PRESETS[rate_hz]
    near = nearest_preset_hz(rate_hz)
    why = (
        f"{rate_hz} / 200 is not a whole number of samples per 5 ms frame"
        if rate_hz % 200
        else "no front end is defined for it"
    )
    raise ValueError(
        f"model.sample_rate_hz {rate_hz} has no rate preset ({why}); the nearest preset is "
        f"{near} (files at {rate_hz} Hz are resampled to it on read). Presets: "
        + ", ".join(str(r) for r in RATE_PRESETS)
    )


def conv_layers(
    size_layers: list[tuple[int, int, int]], rate_hz: int, frame_rate_hz: int
) -> list[tuple[int, int, int]]:
    """A size preset's conv stack (written for 8 kHz: channels, kernel, stride) at another rate:
    its strided layers take the rate preset's strides in order (kernel 2 x stride for the first,
    as the original's 10/5, 2 x ceil(stride / 2) + 1 after it: 3 for 2, as the original's, so
    no layer skips input and a layer gives exactly length / stride frames); its stride-1 layers
    stay as they are. A rate preset with fewer strides than the size preset has strided layers
    leaves the rest at stride 1."""
    strides = list(rate_preset(rate_hz).strides(frame_rate_hz))
    strided = [i for i, (_, _, s) in enumerate(size_layers) if s > 1]
    if len(strides) > len(strided):
        raise ValueError(
            f"the conv stack has {len(strided)} strided layers; the {rate_hz} Hz preset needs "
            f"{len(strides)} ({strides})"
        )
    strides += [1] * (len(strided) - len(strides))
    out = list(size_layers)
    for n, (i, stride) in enumerate(zip(strided, strides, strict=True)):
        channels = size_layers[i][0]
        # padding ceil(stride / 2) (ConvFeatureStack) gives exactly length / stride frames for
        # 2 * ceil(stride / 2) < kernel <= 2 * ceil(stride / 2) + stride
        kernel = 2 * stride if n == 0 else (2 * math.ceil(stride / 2) + 1 if stride > 1 else 3)
        out[i] = (channels, kernel, stride)
    return out


def front_end(
    size_layers: list[tuple[int, int, int]], rate_hz: int, frame_rate_hz: int = 200
) -> dict:
    """The ModelConfig fields a rate preset fills: Sinc taps, stride, first filter, conv stack."""
    p = rate_preset(rate_hz)
    return {
        "sinc_taps": p.sinc_taps,
        "sinc_stride": p.sinc_stride,
        "sinc_init_low_hz": ULTRASONIC_INIT_LOW_HZ if p.ultrasonic else None,
        "conv_layers": conv_layers(size_layers, rate_hz, frame_rate_hz),
    }


def recommend_preset_hz(hours_by_rate: dict[int, float], cover: float = 0.8) -> int:
    """The lowest preset whose band covers the band of at least ``cover`` of the hours: the
    hour-weighted ``cover`` quantile of the files' rates, rounded up to a preset."""
    total = sum(hours_by_rate.values())
    if total <= 0:
        return min(RATE_PRESETS)
    acc = 0.0
    for rate in sorted(hours_by_rate):
        acc += hours_by_rate[rate]
        if acc >= cover * total - 1e-12:
            break
    higher = [r for r in RATE_PRESETS if r >= rate]
    return min(higher) if higher else max(RATE_PRESETS)


def sound_preset_hz(top_hz: float) -> int:
    """The lowest preset whose Nyquist holds ``top_hz``."""
    holding = [r for r in RATE_PRESETS if r / 2 >= top_hz]
    return min(holding) if holding else max(RATE_PRESETS)


def sound_advice(top_hz: float | None, files: int) -> str:
    """One line: where a sample of the archive's sound lies and the preset that hears it all
    (``a2v manifest``; docs/sample_rates.md says why the lowest)."""
    if top_hz is None:
        return f"sound: none found above the noise floor in {files} sampled files"
    preset = sound_preset_hz(top_hz)
    return (
        f"sound up to {top_hz / 1000:.1f} kHz ({100 * SOUND_COVER:.0f} % of the energy above the "
        f"noise floor in "
        f"{files} sampled files): --sample-rate-hz {preset} hears it all"
    )


def upsampled_fraction(
    hours_by_rate: dict[int, float], model_rate_hz: int, factor: float = 2.0
) -> float:
    """Fraction of the hours a ``model_rate_hz`` model upsamples more than ``factor`` x: their
    upper band is empty, which a model can learn as a shortcut (recorder = class)."""
    total = sum(hours_by_rate.values())
    if total <= 0:
        return 0.0
    return sum(h for r, h in hours_by_rate.items() if model_rate_hz > factor * r) / total


def upsampling_warning(hours_by_rate: dict[int, float], model_rate_hz: int) -> str | None:
    """The warning ``a2v manifest`` and ``a2v label`` print when over 10 % of the hours would
    be upsampled more than 2x, else None."""
    frac = upsampled_fraction(hours_by_rate, model_rate_hz)
    if frac <= 0.10:
        return None
    low = sorted(r for r in hours_by_rate if model_rate_hz > 2 * r)
    return (
        f"warning: {100 * frac:.0f} % of the audio hours (files at {', '.join(map(str, low))} Hz) "
        f"would be upsampled more than 2x to {model_rate_hz} Hz; their band above "
        f"{min(low) // 2} Hz is empty, which a model can learn as a shortcut. Use a lower "
        f"preset or train on those recordings apart"
    )


def hearing_line(
    job: str,
    sample_rate_hz: float,
    frame_rate_hz: float,
    low_hz: float = 0.0,
    time_expansion: int = 1,
    high_hz: float | None = None,
) -> str:
    """Every job's first log line: what the model hears and how other rates are treated."""
    high_hz = sample_rate_hz / 2 if high_hz is None else high_hz
    line = (
        f"[{job}] model rate {int(sample_rate_hz)} Hz: hears {low_hz:g}-{high_hz:g} Hz, "
        f"{frame_rate_hz:g} frames/s ({1000 / frame_rate_hz:g} ms); files at other rates are "
        f"resampled to {int(sample_rate_hz)} Hz on read (soxr HQ)"
    )
    if time_expansion > 1:
        line += (
            f"; files are time-expanded {time_expansion}x: read at {time_expansion}x their stated "
            f"rate, and every time written is real time (file seconds / {time_expansion})"
        )
    return line
