"""A-weighted BC-learning mixup (Tokozume et al.), as animal2vec applies it to every batch.

One r ~ U(0.5, 1) per batch; each clip x1 is mixed with a permuted partner x2 using the
A-weighted gains G (max over 50 ms Hann frames, hop 25 ms, floored at -80 dB):
p = 1 / (1 + 10^((G1 - G2) / 20) (1 - r) / r),  mix = (p x1 + (1 - p) x2) / sqrt(p^2 + (1 - p)^2).
Soft targets (fine-tuning) mix with r: y = r y1 + (1 - r) y2.
Axes: B batch, S samples, T frames, C classes.
"""

from __future__ import annotations

import torch


def a_weighting_db(freqs_hz: torch.Tensor, min_db: float = -80.0) -> torch.Tensor:
    """IEC 61672 A-weighting in dB (same constants as librosa.A_weighting)."""
    f_sq = freqs_hz.double() ** 2
    c = torch.tensor([12194.217, 20.598997, 107.65265, 737.86223], dtype=torch.float64) ** 2
    db = 2.0 + 20.0 * (
        torch.log10(c[0])
        + 2 * torch.log10(f_sq.clamp(min=1e-20))
        - torch.log10(f_sq + c[0])
        - torch.log10(f_sq + c[1])
        - 0.5 * torch.log10(f_sq + c[2])
        - 0.5 * torch.log10(f_sq + c[3])
    )
    return db.clamp(min=min_db).float()


def a_weighted_gain_db(
    audio: torch.Tensor, sample_rate_hz: int, window_s: float = 0.05, min_db: float = -80.0
) -> torch.Tensor:
    """(B, S) -> (B,) max over frames of the A-weighted power in dB."""
    n_fft = int(round(window_s * sample_rate_hz))
    hop = n_fft // 2
    x = audio.float()
    if x.shape[-1] < n_fft:
        x = torch.nn.functional.pad(x, (0, n_fft - x.shape[-1]))
    frames = x.unfold(-1, n_fft, hop)  # (B, n_frames, n_fft)
    window = torch.hann_window(n_fft, periodic=True, device=x.device)
    power = torch.fft.rfft(frames * window, dim=-1).abs() ** 2
    freqs = torch.fft.rfftfreq(n_fft, 1.0 / sample_rate_hz).to(x.device)
    weight = 10 ** (a_weighting_db(freqs).to(x.device) / 10)
    gain = (power * weight).sum(-1).clamp(min=10 ** (min_db / 10))
    return 10 * torch.log10(gain).amax(-1)


@torch.no_grad()
def bc_mixup(
    audio: torch.Tensor,
    sample_rate_hz: int,
    generator: torch.Generator | None = None,
    targets: torch.Tensor | None = None,
    perm: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mix each clip with a permuted partner (``perm``, drawn when not given). Returns (mixed
    audio, mixed soft targets or None)."""
    b = audio.shape[0]
    if b < 2:
        return audio, targets
    r = 0.5 + 0.5 * torch.rand((), generator=generator).item()
    if perm is None:
        perm = torch.randperm(b, generator=generator)
    perm = perm.to(audio.device)
    gains = a_weighted_gain_db(audio, sample_rate_hz)
    g1, g2 = gains, gains[perm]
    p = 1.0 / (1.0 + 10 ** ((g1 - g2) / 20) * (1 - r) / r)  # (B,)
    p = p[:, None].to(audio.dtype)
    mixed = (p * audio + (1 - p) * audio[perm]) / torch.sqrt(p**2 + (1 - p) ** 2)
    mixed_targets = None if targets is None else r * targets + (1 - r) * targets[perm]
    return mixed, mixed_targets
