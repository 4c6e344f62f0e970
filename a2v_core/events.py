"""Frame probabilities -> call events (docs/recipe.md §8): the one definition of an event.

Per class: a centred moving average over ``pool_s`` (the original's average pool shifted by
half a window), a threshold (per class, else the default), maximal runs of frames ->
intervals. Chunks are processed independently and their runs carry (raw probability sum,
frame count), so that runs touching at a chunk boundary merge into one event whose score is
the exact mean raw probability; the minimum-length filter and the optional top-class policy
run after that merge. ``EventRule`` holds those settings; labelling (per chunk in the
predictor, per file in the writer), evaluation and the per-class threshold tuning of
fine-tuning (``tune_thresholds``) all make events through it.
Axes: T frames, C classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

RUN_COLUMNS = ["file", "onset_s", "offset_s", "label", "prob_sum", "n_frames"]
EVENT_COLUMNS = ["file", "onset_s", "offset_s", "label", "score"]


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


def run_rows(
    probs: np.ndarray,
    smooth: np.ndarray,
    classes: list[str],
    thresholds: list[float],
    file: str,
    offset_s: float,
    frame_rate_hz: float,
) -> list[tuple]:
    """RUN_COLUMNS rows: runs of ``smooth[:, c] > thresholds[c]``, scored on raw ``probs``."""
    rows = []
    for c, label in enumerate(classes):
        for start, end in runs(smooth[:, c] > thresholds[c]):
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
    return rows


def pooled(
    probs: np.ndarray, frame_rate_hz: float, pool_s: float, known: np.ndarray | None = None
) -> np.ndarray:
    """The probabilities runs are cut from: the ``pool_s`` moving average, 0 where ``known``
    (frames someone reviewed, (T,) bool) is False: what no one reviewed proposes no event."""
    smooth = moving_average(probs, int(round(pool_s * frame_rate_hz)))
    return smooth if known is None else smooth * known[:, None]


@dataclass(frozen=True)
class EventRule:
    """How frame probabilities become events. ``class_thresholds`` win over ``threshold``."""

    threshold: float = 0.15
    class_thresholds: dict[str, float] = field(default_factory=dict)
    pool_s: float = 0.1
    min_event_s: float = 0.05
    top_class_only: bool = False

    def thresholds(self, classes: list[str]) -> list[float]:
        return [float(self.class_thresholds.get(c, self.threshold)) for c in classes]

    def runs(
        self,
        probs: np.ndarray,
        classes: list[str],
        file: str,
        offset_s: float,
        frame_rate_hz: float,
        known: np.ndarray | None = None,
    ) -> pd.DataFrame:
        """Runs of one chunk (probs (T, C) over its valid frames only), in file time."""
        smooth = pooled(probs, frame_rate_hz, self.pool_s, known)
        rows = run_rows(
            probs, smooth, classes, self.thresholds(classes), file, offset_s, frame_rate_hz
        )
        return pd.DataFrame(rows, columns=RUN_COLUMNS)

    def merge(self, runs_table: pd.DataFrame) -> pd.DataFrame:
        """Runs of any chunks -> events (``merge_runs`` with this rule's length filter and
        top-class policy)."""
        return merge_runs(runs_table, self.min_event_s, self.top_class_only)

    def merge_rows(self, rows: list) -> list[tuple]:
        """``merge`` on RUN_COLUMNS tuples -> EVENT_COLUMNS tuples (no DataFrame unless the
        top-class policy needs one)."""
        if self.top_class_only and rows:
            return list(
                self.merge(pd.DataFrame(rows, columns=RUN_COLUMNS)).itertuples(
                    index=False, name=None
                )
            )
        return merge_run_rows(rows, self.min_event_s)

    def events(
        self,
        chunks: list[tuple[str, float, np.ndarray]],
        classes: list[str],
        frame_rate_hz: float,
    ) -> pd.DataFrame:
        """Events of (file, offset_s, probs (T, C)) chunks: what ``a2v label`` writes."""
        parts = [self.runs(p, classes, f, o, frame_rate_hz) for f, o, p in chunks]
        return self.merge(pd.concat(parts) if parts else pd.DataFrame(columns=RUN_COLUMNS))


def merge_run_rows(rows: list, min_event_s: float = 0.05, tolerance_s: float = 1e-6) -> list[tuple]:
    """``merge_runs`` on RUN_COLUMNS tuples in plain Python (labelling merges a file's handful
    of runs as it commits it; a DataFrame per file cost ~10 ms, the driver's whole budget for
    a 1 s file at 100x real time): EVENT_COLUMNS tuples sorted by file, onset, label, without
    the top-class policy."""
    groups: dict[tuple, list] = {}
    for r in sorted(rows, key=lambda r: r[1]):
        groups.setdefault((r[0], r[3]), []).append(r)
    merged = []
    for (file, label), group in groups.items():
        cur = None
        for _, onset, offset, _, prob_sum, n_frames in group:
            if cur is not None and onset <= cur[1] + tolerance_s:
                cur = [cur[0], max(cur[1], offset), cur[2] + prob_sum, cur[3] + n_frames]
            else:
                if cur is not None:
                    merged.append((file, cur[0], cur[1], label, cur[2] / cur[3]))
                cur = [onset, offset, prob_sum, n_frames]
        merged.append((file, cur[0], cur[1], label, cur[2] / cur[3]))
    kept = [e for e in merged if (e[2] - e[1]) >= min_event_s - tolerance_s]
    return sorted(kept, key=lambda e: (e[0], e[1], e[3]))


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
        return pd.DataFrame(columns=EVENT_COLUMNS)
    rows = list(runs_table[RUN_COLUMNS].itertuples(index=False, name=None))
    events = pd.DataFrame(merge_run_rows(rows, min_event_s, tolerance_s), columns=EVENT_COLUMNS)
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
