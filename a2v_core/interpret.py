"""What the model looks at: Sinc filter responses, class spectra, attention maps and rollout.

Attention weights are recomputed from each attention module's inputs by a forward hook
(softmax(q k^T / sqrt(d) + ALiBi)); the fast SDPA path of the model is left untouched. Maps are
average-pooled to ``pool`` x ``pool`` frame tiles as they are captured, so a 2000-frame clip
through the large model stays small; the rollout (Abnar & Zuidema 2020: head mean + identity,
row-normalised, multiplied over layers) is kept at full resolution.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from a2v_core.encoder import Attention
from a2v_core.finetune import FrameClassifier
from a2v_core.sinc import SincConv


def filter_responses(sinc: SincConv, n_fft: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """(frequencies in Hz (n_fft/2+1,), magnitude responses (F, n_fft/2+1)) of every filter."""
    with torch.no_grad():
        kernels = sinc.kernels().float()
        mag = torch.fft.rfft(kernels, n=n_fft).abs().numpy()
    freqs = np.fft.rfftfreq(n_fft, d=1.0 / sinc.sample_rate_hz)
    return freqs, mag


def mean_spectrum(
    segments: list[np.ndarray], sample_rate_hz: float, n_fft: int = 2048
) -> np.ndarray:
    """Average power spectrum (dB, n_fft/2+1) over Hann-windowed frames of the segments."""
    window = np.hanning(n_fft)
    acc, count = np.zeros(n_fft // 2 + 1), 0
    for seg in segments:
        seg = np.asarray(seg, dtype=np.float64)
        if len(seg) < n_fft:
            seg = np.pad(seg, (0, n_fft - len(seg)))
        hop = n_fft // 2
        for start in range(0, len(seg) - n_fft + 1, hop):
            acc += np.abs(np.fft.rfft(seg[start : start + n_fft] * window)) ** 2
            count += 1
    return 10 * np.log10(acc / max(count, 1) + 1e-12)


@torch.no_grad()
def attention_maps(
    model: FrameClassifier, audio: torch.Tensor, pool: int = 10
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """For one clip (1, S): per attention layer (prenet then blocks) the pooled maps
    (H, T/pool, T/pool), the attention rollout (T, T), and the frame probabilities (T, C)."""
    pooled: list[np.ndarray] = []
    rollout: list[torch.Tensor] = []

    def hook(module: Attention, inputs, _output) -> None:
        x, bias = inputs
        b, t, d = x.shape
        q, k, _ = (
            module.qkv(x).view(b, t, 3, module.heads, d // module.heads).permute(2, 0, 3, 1, 4)
        )
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // module.heads) + bias, dim=-1)
        att = att[0].float()  # (H, T, T)
        pooled.append(F.avg_pool2d(att[None], pool, ceil_mode=True)[0].numpy())
        mean = att.mean(0) + torch.eye(t)
        mean = mean / mean.sum(-1, keepdim=True)
        rollout.append(mean if not rollout else mean @ rollout[-1])

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, Attention)]
    try:
        was_training = model.training
        model.eval()
        probs = torch.sigmoid(model(audio.float()))[0].numpy()
        model.train(was_training)
    finally:
        for h in handles:
            h.remove()
    return pooled, rollout[-1].numpy(), probs
