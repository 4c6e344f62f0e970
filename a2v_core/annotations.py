"""Annotation tables: Raven selection tables, Audacity label tracks and the flat CSV.

The canonical table (pandas DataFrame) has columns ``file, onset_s, offset_s, label`` plus
optional ``low_freq_hz, high_freq_hz, focal, score``. ``frame_targets`` maps the events of
one chunk to the 200 Hz multi-hot grid used for training: frame i covers sample hop*i and is
on when floor(onset*sr) <= hop*i < ceil(offset*sr) (docs/recipe.md §6).
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd

COLUMNS = ["file", "onset_s", "offset_s", "label"]
OPTIONAL = ["low_freq_hz", "high_freq_hz", "focal", "score", "channel", "source_rate_hz"]
RAVEN_LABEL_COLUMNS = ("Annotation", "Species", "Label", "label", "Class", "Tags")


def empty_table() -> pd.DataFrame:
    return pd.DataFrame(
        {c: pd.Series(dtype="float64" if c.endswith("_s") else "object") for c in COLUMNS}
    )


def canonical_table(table: pd.DataFrame, source: str = "table") -> pd.DataFrame:
    """Check columns and values; returns the table with canonical dtypes and column order."""
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(
            f"{source}: missing column(s) {missing}; need {COLUMNS} (+ optional {OPTIONAL})"
        )
    t = table.copy()
    t["onset_s"] = pd.to_numeric(t["onset_s"], errors="raise").astype(float)
    t["offset_s"] = pd.to_numeric(t["offset_s"], errors="raise").astype(float)
    t["label"] = t["label"].astype(str)
    t["file"] = t["file"].astype(str)
    bad = t[(t["offset_s"] < t["onset_s"]) | (t["onset_s"] < 0)]
    if len(bad):
        raise ValueError(
            f"{source}: {len(bad)} row(s) with offset < onset or onset < 0, first: {bad.iloc[0].to_dict()}"
        )
    cols = COLUMNS + [c for c in OPTIONAL if c in t.columns]
    return t[cols].reset_index(drop=True)


def read_csv(path_or_buf: str | Path | io.IOBase) -> pd.DataFrame:
    return canonical_table(pd.read_csv(path_or_buf), str(path_or_buf))


def sniff(data: bytes) -> str:
    """The format of an annotation file from its content: ``raven`` (a tab-separated
    selection table), ``audacity`` (``onset<TAB>offset<TAB>label`` lines) or ``csv`` (the flat
    table with a ``file,onset_s,offset_s,label`` header)."""
    text = data.decode("utf-8-sig", errors="replace")
    first = next((line for line in text.splitlines() if line.strip()), "")
    if "\t" in first and "Begin Time (s)" in first.split("\t"):
        return "raven"
    cells = first.split("\t")
    try:
        float(cells[0]), float(cells[1])
        return "audacity"
    except (ValueError, IndexError):
        pass
    return "csv"


def read_any(data: bytes, source: str) -> pd.DataFrame:
    """An annotation file of any supported format (by content, see ``sniff``) as the canonical
    table. An Audacity track names no recording: its rows get ``source``'s name without the
    label file's extension (``rec.wav.txt`` -> ``rec.wav``, ``rec.txt`` -> ``rec``). Every
    error names ``source``."""
    kind = sniff(data)
    try:
        if kind == "raven":
            return read_raven(io.BytesIO(data), source=source)
        if kind == "audacity":
            text = io.StringIO(data.decode("utf-8-sig"))
            return read_audacity(text, Path(source).name.rsplit(".", 1)[0], source=source)
        return canonical_table(pd.read_csv(io.BytesIO(data)), source)
    except (ValueError, KeyError) as err:
        if str(err).startswith(source):
            raise
        raise ValueError(f"{source}: not a readable {kind} annotation table ({err})") from None


def write_csv(table: pd.DataFrame, path_or_buf: str | Path | io.IOBase) -> None:
    canonical_table(table).to_csv(path_or_buf, index=False)


def read_raven(
    path_or_buf: str | Path | io.IOBase, file: str | None = None, source: str | None = None
) -> pd.DataFrame:
    """A Raven selection table (tab-separated). Each selection is one row; spectrogram and
    waveform views of the same selection are de-duplicated. ``file`` defaults to the
    ``Begin File`` column when present."""
    raw = pd.read_csv(path_or_buf, sep="\t")
    if "View" in raw.columns:
        spec = raw[raw["View"].astype(str).str.startswith("Spectrogram")]
        raw = spec if len(spec) else raw.drop_duplicates("Selection")
    label_col = next((c for c in RAVEN_LABEL_COLUMNS if c in raw.columns), None)
    if label_col is None:
        raise ValueError(
            f"{source or path_or_buf}: Raven table has no label column (one of "
            f"{RAVEN_LABEL_COLUMNS})"
        )
    out = pd.DataFrame(
        {
            "file": raw["Begin Path"]
            if "Begin Path" in raw.columns
            else raw["Begin File"]
            if "Begin File" in raw.columns
            else (file or ""),
            "onset_s": raw["Begin Time (s)"],
            "offset_s": raw["End Time (s)"],
            "label": raw[label_col],
        }
    )
    if "File Offset (s)" in raw.columns and "Begin File" in raw.columns:
        dur = raw["End Time (s)"] - raw["Begin Time (s)"]
        out["onset_s"] = raw["File Offset (s)"]
        out["offset_s"] = raw["File Offset (s)"] + dur
    for src, dst in (("Low Freq (Hz)", "low_freq_hz"), ("High Freq (Hz)", "high_freq_hz")):
        if src in raw.columns:
            out[dst] = raw[src]
    if "Score" in raw.columns:
        out["score"] = raw["Score"]
    return canonical_table(out, source or str(path_or_buf))


def to_raven(
    table: pd.DataFrame,
    sample_rate_hz: float,
    combined: bool = False,
    low_hz: float = 0.0,
) -> str:
    """Raven Pro selection table text for one recording (Begin File + File Offset set, so it
    opens both as a selection table and as a sound selection table). ``combined``: one table
    over many recordings, sorted by file, with a ``Begin Path`` column (the path relative to
    the archive); times stay relative to each file. Rows without their own frequency bounds
    get the band heard: ``low_hz`` to the lower of the Nyquist of ``sample_rate_hz`` (the
    model's) and of the row's ``source_rate_hz`` (the recording's own), when known."""
    order = ["file", "onset_s", "label"] if combined else ["onset_s", "label"]
    t = canonical_table(table).sort_values(order).reset_index(drop=True)
    nyquist = pd.Series(sample_rate_hz / 2, index=t.index, dtype=float)
    if "source_rate_hz" in t.columns:
        source = pd.to_numeric(t["source_rate_hz"], errors="coerce")
        nyquist = nyquist.where(~(source > 0), np.minimum(nyquist, source / 2))
    low = t["low_freq_hz"] if "low_freq_hz" in t.columns else pd.Series(low_hz, index=t.index)
    high = t["high_freq_hz"] if "high_freq_hz" in t.columns else nyquist
    out = pd.DataFrame(
        {
            "Selection": np.arange(1, len(t) + 1),
            "View": "Spectrogram 1",
            # the recording's channel analysed (1-based, as Raven counts), else the first
            "Channel": t["channel"].fillna(1).astype(int) if "channel" in t.columns else 1,
            "Begin Time (s)": t["onset_s"].round(4),
            "End Time (s)": t["offset_s"].round(4),
            "Low Freq (Hz)": low.fillna(low_hz).round(1),
            "High Freq (Hz)": high.fillna(nyquist).round(1),
            "Annotation": t["label"],
            # the base name, also of a path written on Windows
            "Begin File": t["file"].map(lambda f: str(f).replace("\\", "/").rsplit("/", 1)[-1]),
            "File Offset (s)": t["onset_s"].round(4),
        }
    )
    if combined:
        out.insert(out.columns.get_loc("Begin File"), "Begin Path", t["file"])
    if "score" in t.columns:
        out["Score"] = t["score"].round(4)
    return out.to_csv(sep="\t", index=False, lineterminator="\n")


def read_audacity(
    path_or_buf: str | Path | io.IOBase, file: str = "", source: str | None = None
) -> pd.DataFrame:
    """Audacity label track: ``onset<TAB>offset<TAB>label`` lines, each optionally followed
    by a frequency row ``\\<TAB>low<TAB>high``."""
    if isinstance(path_or_buf, (str, Path)):
        text = Path(path_or_buf).read_text()
    else:
        text = path_or_buf.read()
    rows: list[dict] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split("\t")
        if parts[0] == "\\":
            if not rows:
                raise ValueError("Audacity frequency row before any label")
            rows[-1]["low_freq_hz"], rows[-1]["high_freq_hz"] = float(parts[1]), float(parts[2])
            continue
        onset, offset = float(parts[0]), float(parts[1])
        rows.append(
            {
                "file": file,
                "onset_s": onset,
                "offset_s": offset,
                "label": parts[2] if len(parts) > 2 else "",
            }
        )
    return canonical_table(
        pd.DataFrame(rows) if rows else empty_table(), source or str(path_or_buf)
    )


def to_audacity(table: pd.DataFrame) -> str:
    t = canonical_table(table).sort_values("onset_s")
    lines = []
    has_freq = "low_freq_hz" in t.columns and "high_freq_hz" in t.columns
    for row in t.itertuples(index=False):
        lines.append(f"{row.onset_s:.6f}\t{row.offset_s:.6f}\t{row.label}")
        if has_freq and not (pd.isna(row.low_freq_hz) or pd.isna(row.high_freq_hz)):
            lines.append(f"\\\t{row.low_freq_hz:.6f}\t{row.high_freq_hz:.6f}")
    return "\n".join(lines) + ("\n" if lines else "")


def class_list(
    table: pd.DataFrame, explicit: list[str] | None = None, with_focal: bool = False
) -> list[str]:
    """The stable, explicit class order: ``explicit`` if given (checked), else sorted labels;
    ``focal`` goes last when the table has a focal column."""
    labels = sorted(set(table["label"].astype(str)))
    if explicit is not None:
        unknown = sorted(set(labels) - set(explicit) - {"focal"})
        if unknown:
            raise ValueError(f"labels not in the class list {explicit}: {unknown}")
        classes = list(explicit)
    else:
        classes = labels
    if with_focal and "focal" not in classes:
        classes.append("focal")
    return classes


def frame_targets(
    events: pd.DataFrame,
    classes: list[str],
    offset_s: float,
    n_frames: int,
    sample_rate_hz: int,
    hop_samples: int,
    reviewed: bool = False,
) -> np.ndarray:
    """Multi-hot (n_frames, C) targets for the chunk starting at ``offset_s``.

    Events are given in file time; they are clipped to the chunk. With a ``focal`` column,
    focal events also switch on the ``focal`` class (when it is in ``classes``). Rows whose
    label is not a class (a reviewed negative) switch nothing on. ``reviewed``: the rows are
    the only reviewed spans of the file, so frames outside every row are unknown: NaN in
    every class (losses and metrics skip them).
    """
    y = np.zeros((n_frames, len(classes)), dtype=np.float32)
    known = np.zeros(n_frames, dtype=bool)
    index = {c: i for i, c in enumerate(classes)}
    frame_pos = np.arange(n_frames) * hop_samples  # sample of each frame within the chunk
    chunk_start = int(round(offset_s * sample_rate_hz))
    focal_col = index.get("focal") if "focal" in events.columns else None
    for row in events.itertuples(index=False):
        start = math.floor(row.onset_s * sample_rate_hz + 1e-6) - chunk_start
        end = math.ceil(row.offset_s * sample_rate_hz - 1e-6) - chunk_start
        on = (frame_pos >= start) & (frame_pos < end)
        if not on.any():  # shorter than a frame (a 2 ms bat call at 5 ms frames): its middle's
            middle = (start + end) // 2  # frame, so that no call inside the chunk is lost
            if not (0 <= middle < n_frames * hop_samples):
                continue
            on[middle // hop_samples] = True
        known |= on
        if row.label in index:
            y[on, index[row.label]] = 1.0
        if focal_col is not None and bool(getattr(row, "focal", False)):
            y[on, focal_col] = 1.0
    if reviewed:
        y[~known] = np.nan
    return y
