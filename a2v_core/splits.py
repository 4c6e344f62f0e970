"""Reproducible, stratified train/validation and label-fraction splits of annotated clips.

Clips are stratified on their per-clip class-presence vector with iterstrat's
MultilabelStratifiedShuffleSplit (as the original, seed 1612): first validation vs train,
then a ``label_fraction`` subset of the train clips.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit


def clip_presence(
    clips: pd.DataFrame, events: pd.DataFrame, classes: list[str], clip_s: float
) -> np.ndarray:
    """(n_clips, C) 0/1: does class c occur anywhere in clip i (path, offset_s)?"""
    index = {c: i for i, c in enumerate(classes)}
    presence = np.zeros((len(clips), len(classes)), dtype=np.int8)
    by_file = {f: g for f, g in events.groupby("file")}
    for i, (path, offset) in enumerate(zip(clips["path"], clips["offset_s"], strict=True)):
        g = by_file.get(path)
        if g is None:
            continue
        hit = g[(g["offset_s"] > offset) & (g["onset_s"] < offset + clip_s)]
        for label in hit["label"]:
            if label in index:
                presence[i, index[label]] = 1
    return presence


def _stratified_pick(presence: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices of a stratified ``fraction`` of the rows (at least one row)."""
    n = len(presence)
    k = max(1, int(round(fraction * n)))
    if k >= n:
        return np.arange(n)
    if k == n - 1 or n < 3:
        return np.random.default_rng(seed).permutation(n)[:k]
    if presence.shape[1] == 1:
        # one class: the stratifier wants a multi-label matrix; presence and absence are one
        presence = np.concatenate([presence, 1 - presence], axis=1)
    splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=k, random_state=seed)
    _, picked = next(splitter.split(np.zeros(n), presence))
    return np.sort(picked)


def make_splits(
    clips: pd.DataFrame,
    presence: np.ndarray,
    valid_fraction: float,
    label_fraction: float,
    seed: int = 1612,
) -> pd.Series:
    """'valid' / 'train' / 'unused' per clip (unused = train clips outside the label fraction)."""
    split = np.full(len(clips), "train", dtype=object)
    if valid_fraction > 0 and len(clips) > 1:
        split[_stratified_pick(presence, valid_fraction, seed)] = "valid"
    train_idx = np.flatnonzero(split == "train")
    if label_fraction < 1.0 and len(train_idx) > 1:
        keep = train_idx[_stratified_pick(presence[train_idx], label_fraction, seed + 1)]
        split[np.setdiff1d(train_idx, keep)] = "unused"
    return pd.Series(split, index=clips.index, name="split")
