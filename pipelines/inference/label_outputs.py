"""Labelling outputs under ``--out``: run identity, the writer that commits finished files part
by part (Parquet first, commit marker last), the resume journal and the readers.

A prefix holds one or more *runs*. A run is named by a fingerprint of everything that changes
its outputs (archive URI, model version, effective thresholds, event settings, formats,
embeddings and frame probabilities, chunk length, sample rate, extensions): resubmitting the
same command resumes its run; another archive or other settings make another run, written
beside the first, never mixed with it. The journal keys each file on its path relative to
the archive, its size and its version (S3 ETag or local mtime): a file that changed is
labelled again, and readers take each file's rows from its newest committed part only.

Parts without a commit marker (a killed run, or a run still writing) are never read and never
deleted here, so two runs writing into one prefix at once lose nothing; ``--overwrite``
removes the current run's partitions only.
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import io
import json
import posixpath
import re
import time
import uuid
from typing import TYPE_CHECKING

import pandas as pd

from a2v_core.activity import folder_of
from a2v_core.config import LabelJob
from a2v_core.label_formats import FORMATS, LabelFormat, written
from a2v_core.redact import redact_uri
from pipelines.data import storage

if TYPE_CHECKING:
    from pipelines.inference.archive_pass import FileState

EVENT_COLUMNS = [
    "archive",
    "file",
    "onset_s",
    "offset_s",
    "label",
    "score",
    "model_version",
    "run_id",
    "channel",  # the recording's channel analysed, 1-based (data.channel: first or loudest)
    "source_rate_hz",  # the recording's own rate (the model heard it at run.json's rate)
    "begin_time",  # the recorder's clock at the onset (recordings' recorded_at + onset_s)
]
ERROR_COLUMNS = ["file", "stage", "error_type", "message"]
KINDS = ("events", "errors", "embeddings", "frames", "windows", "recordings")


def fingerprint(
    job: LabelJob, model_version: str, thresholds: dict[str, float], per_folder: bool = False
) -> dict:
    """Everything that changes a run's outputs (and nothing that does not: batch size,
    cluster, flush cadence, tracking). ``per_folder``: tables per folder, not per recording."""
    return {
        "archive": redact_uri(job.data.archive.rstrip("/")),
        "model_version": model_version,
        "threshold": job.events.threshold,
        "class_thresholds": dict(sorted(thresholds.items())),
        "events": job.events.model_dump(
            mode="json", include={"pool_s", "min_event_s", "top_class_only"}
        ),
        "formats": sorted(job.formats),
        "classes": sorted(job.classes) if job.classes else None,
        "embeddings": job.embeddings,
        "frame_probs": job.frame_probs,
        "clip_s": job.data.clip_s,
        "sample_rate_hz": job.data.sample_rate_hz,
        "extensions": sorted(e.lower().lstrip(".") for e in job.data.extensions),
        # only when not the default, so that the runs labelled before it was keyed keep their id
        **({"channel": job.data.channel} if job.data.channel != "first" else {}),
        **({"time_expansion": job.data.time_expansion} if job.data.time_expansion > 1 else {}),
        "bucket_s": job.bucket_s,  # what the model hears of a chunk shorter than a clip
        **({"tables": "folder"} if per_folder else {}),
    }


def run_id_of(fp: dict) -> str:
    """``<archive folder name>-<10 hex of the fingerprint>``: readable in a folder listing."""
    digest = hashlib.sha1(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:10]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", posixpath.basename(fp["archive"]) or "archive")
    return f"{name[:40]}-{digest}"


def safe_relpath(rel: str) -> str | None:
    """``rel`` if it stays inside the output prefix once joined to it, else None: no ``..``
    segment, no absolute path, no empty or ``.`` segment."""
    if not rel or rel.startswith("/") or "\\" in rel:
        return None
    parts = rel.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return None
    return rel


class PartWriter:
    """Buffers the rows of finished files, by output kind, and commits them part by part: every
    kind's Parquet first, the commit marker (the resume journal) last. ``always``: kinds written
    even when empty (so that a reader finds every committed part)."""

    def __init__(self, out: str, model_version: str, run_id: str, always: tuple = ()) -> None:
        self.out, self.v, self.run_id, self.always = out, model_version, run_id, always
        self.rows: dict[str, list] = {}
        self.files: list[list] = []
        self.writer = uuid.uuid4().hex[:8]
        self.flushed_at = time.monotonic()

    def age_s(self) -> float:
        """Seconds since the last committed part (or since this writer started)."""
        return time.monotonic() - self.flushed_at

    def path(self, *parts: str) -> str:
        return storage.join(self.out, *parts)

    def add(self, file: str, key: tuple[int, str], **rows: list | pd.DataFrame) -> None:
        """One finished file (``key``: its size and version) and its rows of each kind (a list
        of dicts, or frames: DataFrames / Arrow tables)."""
        for kind, r in rows.items():
            if r is None:
                continue
            self.rows.setdefault(kind, []).extend(r if isinstance(r, list) else [r])
        self.files.append([file, int(key[0]), str(key[1])])

    def table(self, kind: str, rows: list):
        """One part's rows of ``kind`` as one table (a subclass may give kinds a schema)."""
        frames = [r for r in rows if not isinstance(r, dict)]
        dicts = [r for r in rows if isinstance(r, dict)]
        if dicts:
            frames.append(pd.DataFrame(dicts))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def flush(self) -> None:
        if not self.files:
            return
        # time first: parts sort in commit order, also across resubmissions and writers
        tag = f"part-{time.time_ns():020d}-{self.writer}"
        part = f"run={self.run_id}"
        for kind in sorted(set(self.rows) | set(self.always)):
            rows = self.rows.get(kind, [])
            if rows or kind in self.always:
                _write_parquet(self.path(kind, part, f"{tag}.parquet"), self.table(kind, rows))
        marker = {"part": tag, "files": self.files, "model_version": self.v, "run": self.run_id}
        storage.write_bytes(
            self.path("_progress", self.run_id, f"{tag}.json"), json.dumps(marker).encode()
        )
        self.rows, self.files = {}, []
        self.flushed_at = time.monotonic()


class OutputWriter(PartWriter):
    """Labelling's writer: events per file (merged runs), Raven / Audacity tables per file."""

    def __init__(
        self,
        job: LabelJob,
        model_version: str,
        run_id: str,
        sample_rate_hz: float,
        low_hz: float = 0.0,
        per_recording: bool = True,
    ) -> None:
        super().__init__(job.out, model_version, run_id, always=("events",))
        self.job, self.sr, self.low_hz = job, sample_rate_hz, low_hz
        self.rule = job.events.rule()
        self.per_recording = per_recording  # tables per recording (else per folder, at the end)
        self.archive = redact_uri(job.data.archive.rstrip("/"))

    def add_file(self, file: str, key: tuple[int, str], st: FileState) -> list[dict]:
        """One finished file (``key``: its size and version; ``st``: what its chunks gave).
        Its per-file tables keep the recording's extension (``rec.wav.selections.txt``):
        rec.wav and rec.flac never meet. -> its events (EVENT_COLUMNS dicts). Plain Python per
        file: the part's DataFrame is built once, when it is committed."""
        merged = self.rule.merge_rows(st.rows["runs"])
        if self.job.classes:
            merged = [e for e in merged if e[3] in self.job.classes]
        starts = sorted(st.channels)
        clock = st.recorded.clock
        events = [
            {
                "archive": self.archive,
                "file": f,
                "onset_s": onset,
                "offset_s": offset,
                "label": label,
                "score": score,
                "model_version": self.v,
                "run_id": self.run_id,
                "channel": channel_at([onset], st.channels, starts)[0],
                "source_rate_hz": st.source_rate_hz or None,
                "begin_time": clock + dt.timedelta(seconds=onset) if clock else None,
            }
            for f, onset, offset, label, score in merged
        ]
        if self.per_recording and safe_relpath(file) is not None:  # unsafe: error row only
            table = events_frame(events)
            for fmt in per_file_formats(self.job.formats):
                storage.write_bytes(
                    self.path(*fmt.per_file_path(self.run_id, file)),
                    fmt.render(table, self.sr, self.low_hz, False).encode(),
                )
        recording = {
            "file": file,
            "audio_s": st.audio_s,
            "source_rate_hz": st.source_rate_hz,
            "recorded_at": st.recorded.recorded_at,
            "recorded_at_source": st.recorded.source,
            "events": len(events),
        }
        r = st.rows
        self.add(
            file,
            key,
            events=events,
            errors=st.errors,
            embeddings=r["embeddings"],
            frames=r["frames"],
            recordings=[recording],
        )
        return events

    def table(self, kind: str, rows: list):
        return events_frame(rows) if kind == "events" else super().table(kind, rows)


def events_frame(events: list[dict]) -> pd.DataFrame:
    """EVENT_COLUMNS rows as a table, ``begin_time`` a timestamp (ms)."""
    table = pd.DataFrame(events, columns=EVENT_COLUMNS)
    table["begin_time"] = pd.to_datetime(table["begin_time"]).astype("datetime64[ms]")
    return table


def channel_at(onsets, channels: dict[float, int], starts: list[float] | None = None) -> list[int]:
    """The 1-based channel of the chunk each onset falls in (``channels``: chunk offset ->
    0-based channel read there; ``starts``: its keys sorted, when the caller has them); 1 when
    unknown."""
    if not channels:
        return [1] * len(onsets)
    starts = starts if starts is not None else sorted(channels)
    return [channels[starts[max(bisect.bisect_right(starts, t) - 1, 0)]] + 1 for t in onsets]


def _write_parquet(uri: str, table) -> None:
    """A DataFrame or an Arrow table (which keeps its schema, e.g. fixed-size lists)."""
    buf = io.BytesIO()
    if isinstance(table, pd.DataFrame):
        table.to_parquet(buf, index=False)
    else:
        import pyarrow.parquet as pq

        pq.write_table(table, buf)
    storage.write_bytes(uri, buf.getvalue())


def journal(out: str, run_id: str) -> tuple[dict[str, tuple[int, str]], dict[str, str]]:
    """The resume journal of one run: file -> (size, version) as last committed, and file ->
    the part holding its newest rows."""
    progress = storage.join(out, "_progress", run_id)
    keys: dict[str, tuple[int, str]] = {}
    newest: dict[str, str] = {}
    if storage.exists(progress):
        for rel, _ in sorted(storage.list_all(progress)):  # parts sort in commit order
            marker = json.loads(storage.read_bytes(storage.join(progress, rel)))
            for file, size, version in marker["files"]:
                keys[file] = (int(size), str(version))
                newest[file] = marker["part"]
    return keys, newest


def runs_under(out: str) -> list[str]:
    base = storage.join(out, "_progress")
    return (
        sorted({rel.split("/", 1)[0] for rel, _ in storage.list_all(base)})
        if storage.exists(base)
        else []
    )


def per_file_formats(names: list[str]) -> list[LabelFormat]:
    return [FORMATS[n] for n in names if FORMATS[n].per_file]


def write_run_tables(
    job: LabelJob, run_id: str, events: pd.DataFrame, low_hz: float, per_folder: bool = False
) -> None:
    """The tables over the whole run, from ``read_events`` (each file's newest events once): the
    clean Parquet view always, Raven's combined table and the CSV when asked; with
    ``per_folder``, one table per folder of the formats that hold many recordings."""
    sr = job.data.sample_rate_hz
    for fmt in written(job.formats):
        if fmt.per_run:
            body = fmt.render(events, sr, low_hz, True)
            data = body.encode() if isinstance(body, str) else body
            storage.write_bytes(storage.join(job.out, *fmt.per_run_path(run_id)), data)
        if per_folder and fmt.per_folder:
            for folder, rows in events.groupby(events["file"].map(folder_of), sort=True):
                path = fmt.per_file_path(run_id, folder or ROOT_FOLDER)
                storage.write_bytes(
                    storage.join(job.out, *path), fmt.render(rows, sr, low_hz, True).encode()
                )


#: the name of the per-folder table of the recordings at the archive's root
ROOT_FOLDER = "_root"


def activity_path(run_id: str, ext: str) -> tuple[str, ...]:
    return ("summary", f"{run_id}.activity.{ext}")


def write_activity(out: str, run_id: str, table: pd.DataFrame) -> str:
    """The run's folder x night x class table (``a2v_core.activity``) as Parquet and CSV;
    -> the CSV's URI."""
    buf = io.BytesIO()
    table.to_parquet(buf, index=False)
    storage.write_bytes(storage.join(out, *activity_path(run_id, "parquet")), buf.getvalue())
    csv = storage.join(out, *activity_path(run_id, "csv"))
    storage.write_bytes(csv, table.to_csv(index=False).encode())
    return csv


def remove_run(out: str, run_id: str) -> None:
    """``--overwrite``: every output of one run (other runs under ``out`` stay)."""
    for kind in KINDS:
        storage.remove(storage.join(out, kind, f"run={run_id}"))
    for fmt in FORMATS.values():  # every format's tables, whichever this run wrote
        if fmt.per_file:
            storage.remove(storage.join(out, *fmt.per_file_path(run_id, "")[:2]))
        if fmt.per_run:
            storage.remove(storage.join(out, *fmt.per_run_path(run_id)))
    for ext in ("parquet", "csv"):
        storage.remove(storage.join(out, *activity_path(run_id, ext)))
    storage.remove(storage.join(out, "_progress", run_id))
    storage.remove(storage.join(out, "runs", f"{run_id}.json"))
    storage.remove(storage.join(out, "runs", f"{run_id}.run.json"))


def committed_parts(out: str, kind: str, run_id: str) -> list[tuple[str, set[str]]]:
    """The committed parts of one output kind of one run, in commit order: (part URI, the
    files whose newest rows it holds). Parts without a commit marker are not listed."""
    _, newest = journal(out, run_id)
    base = storage.join(out, kind, f"run={run_id}")
    by_part: dict[str, set[str]] = {}
    for file, part in newest.items():
        by_part.setdefault(part, set()).add(file)
    parts = [(storage.join(base, f"{p}.parquet"), by_part[p]) for p in sorted(by_part)]
    return [(uri, files) for uri, files in parts if storage.exists(uri)]  # e.g. no error rows


def read_committed(uri: str, files: set[str], columns: list[str] | None = None) -> pd.DataFrame:
    """The rows of one part that are their file's newest (a relabelled file's older rows are
    not read)."""
    rows = pd.read_parquet(io.BytesIO(storage.read_bytes(uri)), columns=columns)
    return rows[rows["file"].isin(files)] if len(rows) else rows


def read_parts(out: str, kind: str, run_id: str | None = None) -> pd.DataFrame:
    """The committed rows of one output kind (``events``, ``errors``, ``embeddings``,
    ``frames``, ``windows``) under ``out``, of one run or of all: each file's rows from its
    newest committed part only (a relabelled file is not counted twice; parts without a commit
    marker are not read)."""
    frames = [
        read_committed(uri, files)
        for run in ([run_id] if run_id else runs_under(out))
        for uri, files in committed_parts(out, kind, run)
    ]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def read_events(out: str, run_id: str | None = None) -> pd.DataFrame:
    """All committed events under ``out`` (optionally of one run), in file order."""
    events = read_parts(out, "events", run_id)
    if events.empty:
        return pd.DataFrame(columns=EVENT_COLUMNS)
    key = ["archive", "file", "onset_s", "label"]
    return events.sort_values(key).reset_index(drop=True)


def read_errors(out: str, run_id: str | None = None) -> pd.DataFrame:
    errors = read_parts(out, "errors", run_id)
    return errors if len(errors) else pd.DataFrame(columns=ERROR_COLUMNS)
