"""Window embeddings of an archive (``a2v embed``): the encoder's frame features pooled over
fixed windows, the unit that search and review work on.

Frame features are what the fine-tuning head reads (the averaged FFN outputs of the main
blocks, ``FrameClassifier.embed``), at 200 Hz. A window of ``window_s`` seconds is the **mean**
of its frames: the call-level summary BirdNET and Perch also store (one vector per 3 s / 5 s
window), robust to where in the window a call sits. Windows tile each chunk from its start;
the last window of a file's last chunk holds what is left (at least one frame) and says so in
its ``duration_s``. Vectors are stored as they come (not L2-normalised): an index normalises
them for cosine similarity.
"""

from __future__ import annotations

import math

import numpy as np


def window_means(
    feats: np.ndarray, n_valid: int, frame_rate_hz: float, window_s: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(T, D) frame features of one chunk, of which the first ``n_valid`` hold audio ->
    (starts_s (W,), durations_s (W,), means (W, D) float32), windows relative to the chunk."""
    per = int(round(window_s * frame_rate_hz))
    if per < 1 or not math.isclose(per, window_s * frame_rate_hz, rel_tol=1e-6):
        raise ValueError(
            f"window_s={window_s} is not a whole number of frames at {frame_rate_hz} Hz"
        )
    n_valid = min(int(n_valid), len(feats))
    feats = feats[:n_valid]  # the padding of a file's last chunk never enters a window
    starts = np.arange(0, n_valid, per)
    means = np.stack([feats[s : s + per].mean(0) for s in starts]) if len(starts) else None
    if means is None:
        return np.zeros(0), np.zeros(0), np.zeros((0, feats.shape[1]), np.float32)
    durations = np.minimum(per, n_valid - starts) / frame_rate_hz
    return starts / frame_rate_hz, durations, means.astype(np.float32)
