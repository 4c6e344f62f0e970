"""The first table an ecologist makes of a labelled season: per folder (a site, a site's
night) x night x class, how many recordings and hours were heard and how many events and
recordings with an event there were, zero counts included (effort without detections is a
result).

A night is the date of the evening it began (``a2v_core.recording_time.night_of``, noon to
noon, on the recorder's clock); recordings whose start time is unknown have night "".
"""

from __future__ import annotations

import pandas as pd

from a2v_core.recording_time import RecordingTime, night_of

COLUMNS = [
    "folder",
    "night",
    "label",
    "recordings",
    "audio_h",
    "events",
    "recordings_with_events",
    "first_event",
    "last_event",
]


def folder_of(file: str) -> str:
    """A recording's folder relative to the archive ("" at its root)."""
    return file.rsplit("/", 1)[0] if "/" in file else ""


def nights(recorded_at: pd.Series, sources: pd.Series) -> list[str]:
    """The night (ISO date of its evening) of each recording's start, "" when unknown."""
    out = []
    for when, source in zip(recorded_at, sources, strict=True):
        clock = RecordingTime(str(when or ""), str(source or "")).clock
        out.append(night_of(clock).isoformat() if clock is not None else "")
    return out


def activity_table(
    recordings: pd.DataFrame, events: pd.DataFrame, classes: list[str]
) -> pd.DataFrame:
    """``recordings``: file, audio_s, recorded_at, recorded_at_source (one row per recording
    labelled); ``events``: file, label, begin_time. -> COLUMNS, one row per folder x night x
    class."""
    if recordings.empty:
        return pd.DataFrame(columns=COLUMNS)
    rec = recordings[["file", "audio_s"]].copy()
    rec["folder"] = rec["file"].map(folder_of)
    rec["night"] = nights(recordings["recorded_at"], recordings["recorded_at_source"])
    effort = rec.groupby(["folder", "night"]).agg(
        recordings=("file", "size"), audio_h=("audio_s", lambda s: s.sum() / 3600)
    )
    grid = effort.reset_index().merge(pd.DataFrame({"label": classes}), how="cross")
    ev = events[["file", "label", "begin_time"]].merge(rec[["file", "folder", "night"]], on="file")
    counts = ev.groupby(["folder", "night", "label"]).agg(
        events=("file", "size"),
        recordings_with_events=("file", "nunique"),
        first_event=("begin_time", "min"),
        last_event=("begin_time", "max"),
    )
    table = grid.merge(counts.reset_index(), on=["folder", "night", "label"], how="left")
    for col in ("events", "recordings_with_events"):
        table[col] = table[col].fillna(0).astype(int)
    return table[COLUMNS].sort_values(["folder", "night", "label"]).reset_index(drop=True)
