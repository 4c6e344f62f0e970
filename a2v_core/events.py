"""Frame probabilities -> call events (spec section 8).

Per class: a centred 0.1 s moving average (the original's average pool shifted by half a
window), a threshold (global or per class), maximal runs of frames -> intervals. Chunks are
processed independently and their runs carry (probability sum, frame count) so that runs
touching at a chunk boundary merge into one event with the exact mean probability; the
minimum-length filter and the optional top-class policy run after that merge.
Axes: T frames, C classes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

RUN_COLUMNS = ["file", "onset_s", "offset_s", "label", "prob_sum", "n_frames"]


def moving_average(probs: np.ndarray, window: int) -> np.ndarray:
    """Centred mean over ``window`` frames along axis 0, normalised by the frames inside."""
    if window <= 1:
        return probs
    t = probs.shape[0]
    csum = np.concatenate([np.zeros((1,) + probs.shape[1:]), np.cumsum(probs, axis=0)])
    lo = np.clip(np.arange(t) - window // 2, 0, t)
    hi = np.clip(np.arange(t) + (window - window // 2), 0, t)
    return (csum[hi] - csum[lo]) / (hi - lo)[:, None]


def runs(active: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of True in a 1-D bool array as [start, end) frame pairs."""
    padded = np.concatenate([[False], active, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[0::2].tolist(), edges[1::2].tolist(), strict=True))


def chunk_runs(
    probs: np.ndarray,
    classes: list[str],
    file: str,
    offset_s: float,
    frame_rate_hz: float,
    threshold: float = 0.15,
    class_thresholds: dict[str, float] | None = None,
    pool_s: float = 0.1,
) -> pd.DataFrame:
    """Runs of one chunk (probs (T, C) over its valid frames only), in file time."""
    smooth = moving_average(probs, int(round(pool_s * frame_rate_hz)))
    rows = []
    for c, label in enumerate(classes):
        thr = (class_thresholds or {}).get(label, threshold)
        for start, end in runs(smooth[:, c] > thr):
            rows.append(
                (
                    file,
                    offset_s + start / frame_rate_hz,
                    offset_s + end / frame_rate_hz,
                    label,
                    float(probs[start:end, c].sum()),
                    end - start,
                )
            )
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def merge_runs(
    runs_table: pd.DataFrame,
    min_event_s: float = 0.05,
    top_class_only: bool = False,
    tolerance_s: float = 1e-6,
) -> pd.DataFrame:
    """Merge runs that touch (across chunk boundaries), drop short events, score = mean prob.

    Returns columns file, onset_s, offset_s, label, score sorted by file and onset.
    """
    if runs_table.empty:
        return pd.DataFrame(columns=["file", "onset_s", "offset_s", "label", "score"])
    merged = []
    for (file, label), group in runs_table.sort_values("onset_s").groupby(
        ["file", "label"], sort=False
    ):
        cur = None
        for r in group.itertuples(index=False):
            if cur is not None and r.onset_s <= cur[1] + tolerance_s:
                cur = [cur[0], max(cur[1], r.offset_s), cur[2] + r.prob_sum, cur[3] + r.n_frames]
            else:
                if cur is not None:
                    merged.append((file, cur[0], cur[1], label, cur[2] / cur[3]))
                cur = [r.onset_s, r.offset_s, r.prob_sum, r.n_frames]
        merged.append((file, cur[0], cur[1], label, cur[2] / cur[3]))
    events = pd.DataFrame(merged, columns=["file", "onset_s", "offset_s", "label", "score"])
    events = events[(events["offset_s"] - events["onset_s"]) >= min_event_s - tolerance_s]
    if top_class_only:
        events = keep_top_class(events)
    return events.sort_values(["file", "onset_s", "label"]).reset_index(drop=True)


def keep_top_class(events: pd.DataFrame) -> pd.DataFrame:
    """Among time-overlapping events of one file keep only the highest-scoring one."""
    kept = []
    for _, group in events.groupby("file", sort=False):
        chosen: list[tuple[float, float]] = []
        for r in group.sort_values("score", ascending=False).itertuples():
            if all(r.offset_s <= a or r.onset_s >= b for a, b in chosen):
                chosen.append((r.onset_s, r.offset_s))
                kept.append(r.Index)
    return events.loc[sorted(kept)]


def events_from_probs(
    probs: np.ndarray,
    classes: list[str],
    frame_rate_hz: float,
    file: str = "",
    threshold: float = 0.15,
    pool_s: float = 0.1,
    min_event_s: float = 0.05,
    class_thresholds: dict[str, float] | None = None,
) -> pd.DataFrame:
    """One-shot helper for a single probability matrix (a whole file or one chunk)."""
    r = chunk_runs(probs, classes, file, 0.0, frame_rate_hz, threshold, class_thresholds, pool_s)
    return merge_runs(r, min_event_s)
