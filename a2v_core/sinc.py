"""Learnable band-pass Sinc filterbank + PSwish: layer 0 of the animal2vec front end.

Each filter k is a windowed difference of two sincs with learnable low edge and band
(mel-initialised, SpeechBrain/SincNet style, docs/recipe.md §2). Filters are rebuilt from the
two parameters on every forward pass and run in fp32 with reflect "same" padding; with
``stride`` 1 the output has exactly as many samples as the input, with stride D it keeps
every D-th of them (input sample n*D at output n: the rate presets above 8 kHz,
``a2v_core.rates``).
Axes: B batch, S samples, F filters.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def hz_to_mel(hz: torch.Tensor | float) -> torch.Tensor | float:
    return 2595.0 * (
        torch.log10(1 + hz / 700.0) if torch.is_tensor(hz) else math.log10(1 + hz / 700.0)
    )


def mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10 ** (mel / 2595.0) - 1)


def init_bands(
    n_filters: int,
    sample_rate_hz: float,
    min_low_hz: float,
    min_band_hz: float,
    init_low_hz: float | None = None,
    init_high_hz: float | None = None,
    fold_hz: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The filters' (low, high) edges at init, each (F,): mel-spaced from ``init_low_hz`` to
    ``init_high_hz`` (None: SpeechBrain's, from 2 x min_low to Nyquist), neighbours overlapping by
    ``min_band_hz``. ``fold_hz``: the Nyquist of the Sinc outputs when they are kept below the
    input rate; a band that straddles a multiple of it would fold onto itself there (its two
    sides land on the same output frequencies), so it is moved, width kept, to the side of the
    fold that holds most of it."""
    top_hz = (sample_rate_hz / 2 if init_high_hz is None else init_high_hz) - (
        min_low_hz + min_band_hz
    )
    # None: SpeechBrain's init (mel from min_low, stored as an offset above min_low, so the
    # first filter starts at 2 x min_low); else the first low edge is init_low_hz itself
    start_hz = min_low_hz if init_low_hz is None else float(init_low_hz)
    mel = torch.linspace(hz_to_mel(start_hz), hz_to_mel(top_hz), n_filters + 1)
    hz = mel_to_hz(mel)
    low = hz[:-1] + (min_low_hz if init_low_hz is None else 0.0)
    high = low + min_band_hz + torch.diff(hz)
    if fold_hz is not None:
        low, high = off_folds(low, high, fold_hz, min_low_hz, sample_rate_hz / 2)
    return low, high


def off_folds(
    low: torch.Tensor, high: torch.Tensor, fold_hz: float, floor_hz: float, nyquist_hz: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bands moved off the multiples of ``fold_hz`` they straddle, width kept (a band wider
    than ``fold_hz`` cannot be and stays)."""
    low, high = low.clone(), high.clone()
    for i in range(low.numel()):
        lo, hi = float(low[i]), float(high[i])
        fold = math.ceil(lo / fold_hz) * fold_hz
        width = hi - lo
        if not (lo < fold < hi) or width > fold_hz:
            continue
        lo = fold - width if fold - lo >= hi - fold else fold
        lo = min(max(lo, floor_hz), nyquist_hz - width)
        low[i], high[i] = lo, lo + width
    return low, high


class SincConv(nn.Module):
    """F band-pass filters of K taps; ``low = min_low + |low_|``, ``high = low + min_band + |band_|``."""

    def __init__(
        self,
        n_filters: int,
        kernel_size: int,
        sample_rate_hz: int,
        min_low_hz: float,
        min_band_hz: float,
        stride: int = 1,
        init_low_hz: float | None = None,
        init_high_hz: float | None = None,
        fold_hz: float | None = None,
    ) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"Sinc kernel_size must be odd, got {kernel_size}")
        self.n_filters, self.kernel_size, self.stride = n_filters, kernel_size, stride
        self.sample_rate_hz = float(sample_rate_hz)
        self.min_low_hz, self.min_band_hz = float(min_low_hz), float(min_band_hz)
        low, high = init_bands(
            n_filters,
            self.sample_rate_hz,
            self.min_low_hz,
            self.min_band_hz,
            init_low_hz,
            init_high_hz,
            fold_hz,
        )
        self.low_hz_ = nn.Parameter((low - self.min_low_hz).unsqueeze(1))  # (F, 1)
        self.band_hz_ = nn.Parameter((high - low - self.min_band_hz).unsqueeze(1))  # (F, 1)
        half = kernel_size // 2
        # Half Hamming window on the SpeechBrain grid (slightly non-integer, kept on purpose).
        m = torch.linspace(0, kernel_size / 2 - 1, half)
        self.register_buffer(
            "window_", 0.53836 - 0.46164 * torch.cos(2 * math.pi * m / kernel_size)
        )
        n = (kernel_size - 1) / 2.0
        self.register_buffer(
            "n_", 2 * math.pi * torch.arange(-n, 0).view(1, -1) / self.sample_rate_hz
        )

    def band_edges_hz(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Current (low, high) cut-offs in Hz, each (F,)."""
        low = self.min_low_hz + torch.abs(self.low_hz_)
        high = torch.clamp(
            low + self.min_band_hz + torch.abs(self.band_hz_),
            self.min_low_hz,
            self.sample_rate_hz / 2,
        )
        return low[:, 0], high[:, 0]

    def kernels(self) -> torch.Tensor:
        """Symmetric, unit-passband-gain filters (F, K)."""
        low, high = self.band_edges_hz()
        band = high - low
        left = (torch.sin(high[:, None] * self.n_) - torch.sin(low[:, None] * self.n_)) / (
            self.n_ / 2
        )
        left = left * self.window_
        center = 2 * band[:, None]
        kernel = torch.cat([left, center, torch.flip(left, dims=[1])], dim=1)
        return kernel / (2 * band[:, None])

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, S) or (B, 1, S) -> (B, F, ceil(S / stride))."""
        x = audio if audio.dim() == 3 else audio.unsqueeze(1)
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = F.pad(x.float(), (self.kernel_size // 2, self.kernel_size // 2), mode="reflect")
            return F.conv1d(x, self.kernels().unsqueeze(1).float(), stride=self.stride)


class PSwish(nn.Module):
    """Per-channel ``alpha * x * sigmoid(beta * x)``; alpha=2, beta=0 is the identity at init."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.full((1, channels, 1), 2.0))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, S)
        return self.alpha * x * torch.sigmoid(self.beta * x)


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over channels of a (B, C, S) tensor, computed in fp32."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            y = F.layer_norm(
                x.float().transpose(1, 2), self.normalized_shape, self.weight, self.bias, self.eps
            )
        return y.transpose(1, 2).to(x.dtype)


class SincFrontEnd(nn.Module):
    """SincConv -> channel LayerNorm -> PSwish."""

    def __init__(
        self,
        n_filters: int,
        kernel_size: int,
        sample_rate_hz: int,
        min_low_hz: float,
        min_band_hz: float,
        stride: int = 1,
        init_low_hz: float | None = None,
        init_high_hz: float | None = None,
        fold_hz: float | None = None,
    ) -> None:
        super().__init__()
        self.sinc = SincConv(
            n_filters,
            kernel_size,
            sample_rate_hz,
            min_low_hz,
            min_band_hz,
            stride,
            init_low_hz,
            init_high_hz,
            fold_hz,
        )
        self.norm = ChannelLayerNorm(n_filters)
        self.act = PSwish(n_filters)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:  # (B, S) -> (B, F, S / stride)
        return self.act(self.norm(self.sinc(audio)))
