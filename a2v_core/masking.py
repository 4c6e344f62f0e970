"""Span masks with fairseq ``compute_mask_indices`` semantics, and fine-tuning masks.

Per row: ``int(rate * T / L + u)`` span starts drawn without replacement from [0, T - L),
each span covers L frames, overlaps merge; then (``same_count``) every row is trimmed to the
smallest masked count by un-masking random extra frames. rate=1.5, L=2, T=2000 -> ~93 %.
Axes: N rows (batch x clones), T frames (or channels for channel masks).
"""

from __future__ import annotations

import numpy as np
import torch


def span_mask(
    rows: int,
    length: int,
    mask_prob: float,
    mask_length: int,
    rng: np.random.Generator,
    same_count: bool = True,
    min_spans: int = 0,
) -> np.ndarray:
    """Bool mask (N, T); True = masked."""
    if mask_prob <= 0:
        return np.zeros((rows, length), dtype=bool)
    n_spans = (mask_prob * length / mask_length + rng.random(rows)).astype(np.int64)
    n_spans = np.maximum(n_spans, min_spans)
    span = mask_length
    if length - span <= n_spans.max():
        span = max(1, length - int(n_spans.max()) - 1)
    n_starts = length - span
    n_spans = np.minimum(n_spans, n_starts)
    # Draw without replacement per row: the first n_spans of a random permutation.
    order = np.argsort(rng.random((rows, n_starts)), axis=1)
    chosen = np.arange(n_starts)[None, :] < n_spans[:, None]  # (N, n_starts) in permuted order
    mask = np.zeros((rows, length), dtype=bool)
    row_idx = np.repeat(np.arange(rows)[:, None], n_starts, axis=1)[chosen]
    starts = order[chosen]
    for offset in range(mask_length):
        pos = starts + offset
        ok = pos < length
        mask[row_idx[ok], pos[ok]] = True
    if same_count and rows > 1:
        mask = _equalise(mask, rng)
    return mask


def _equalise(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Keep a random subset of each row's masked frames so all rows have the same count."""
    target = int(mask.sum(1).min())
    keys = np.where(mask, rng.random(mask.shape), np.inf)
    rank = np.argsort(np.argsort(keys, axis=1), axis=1)
    return mask & (rank < target)


def student_keep_mask(
    rows: int, frames: int, mask_prob: float, mask_length: int, rng: np.random.Generator
) -> torch.Tensor:
    """Bool (N, T) of *kept* frames for the student clones; same kept count in every row."""
    masked = span_mask(rows, frames, mask_prob, mask_length, rng, same_count=True)
    if masked.all(axis=1).any():  # keep at least one token per row
        masked[:, 0] = False
        masked = _equalise(masked, rng) if rows > 1 else masked
    return torch.from_numpy(~masked)


def time_mask(
    batch: int, frames: int, mask_prob: float, mask_length: int, rng: np.random.Generator
) -> torch.Tensor:
    """Fine-tuning time mask (B, T): masked frames are filled with small noise by the encoder."""
    return torch.from_numpy(span_mask(batch, frames, mask_prob, mask_length, rng, min_spans=2))


def channel_mask(
    batch: int, channels: int, mask_prob: float, mask_length: int, rng: np.random.Generator
) -> torch.Tensor:
    """Fine-tuning channel mask (B, D): masked channels are zeroed across all frames."""
    return torch.from_numpy(
        span_mask(batch, channels, mask_prob, mask_length, rng, same_count=False)
    )


def expected_masked_fraction(
    mask_prob: float, mask_length: int, frames: int, rows: int = 12, draws: int = 20, seed: int = 0
) -> float:
    """Monte-Carlo estimate of the masked fraction (``a2v info``)."""
    rng = np.random.default_rng(seed)
    return float(
        np.mean([span_mask(rows, frames, mask_prob, mask_length, rng).mean() for _ in range(draws)])
    )
