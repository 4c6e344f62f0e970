"""Labelling outputs under ``--out``: the writer that commits finished files part by part
(Parquet first, commit marker last), the resume scan that finds committed files and deletes
orphans of a killed run, and the readers of every output kind."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import pandas as pd

from a2v_core import annotations as ann
from a2v_core.config import LabelJob
from a2v_core.events import RUN_COLUMNS, merge_runs
from pipelines import storage

EVENT_COLUMNS = ["file", "onset_s", "offset_s", "label", "score", "model_version", "run_id"]
ERROR_COLUMNS = ["file", "stage", "error_type", "message"]


class OutputWriter:
    """Buffers finished files and commits them part by part (parquet first, marker last)."""

    def __init__(
        self, job: LabelJob, model_version: str, run_id: str, sample_rate_hz: float
    ) -> None:
        self.job, self.v, self.run_id, self.sr = job, model_version, run_id, sample_rate_hz
        self.events: list[pd.DataFrame] = []
        self.errors: list[dict] = []
        self.embeddings: list[dict] = []
        self.frames: list[dict] = []
        self.files: list[str] = []
        self.seq = 0

    def path(self, *parts: str) -> str:
        return storage.join(self.job.out, *parts)

    def add_file(
        self,
        file: str,
        runs: list[list],
        errors: list[dict],
        embeddings: list[dict],
        frames: list[dict] | None = None,
    ) -> pd.DataFrame:
        table = merge_runs(
            pd.DataFrame(runs, columns=RUN_COLUMNS),
            self.job.events.min_event_s,
            self.job.events.top_class_only,
        )
        table["model_version"], table["run_id"] = self.v, self.run_id
        stem = file.rsplit(".", 1)[0]
        if "raven" in self.job.formats:
            storage.write_bytes(
                self.path("raven", f"{stem}.selections.txt"), ann.to_raven(table, self.sr).encode()
            )
        if "audacity" in self.job.formats:
            storage.write_bytes(
                self.path("audacity", f"{stem}.txt"), ann.to_audacity(table).encode()
            )
        self.events.append(table)
        self.errors += errors
        self.embeddings += embeddings
        self.frames += frames or []
        self.files.append(file)
        return table

    def flush(self) -> None:
        if not self.files:
            return
        tag = f"part-{self.seq:05d}-{uuid.uuid4().hex[:8]}"
        part = f"model_version={self.v}"
        events = (
            pd.concat(self.events, ignore_index=True)
            if self.events
            else pd.DataFrame(columns=EVENT_COLUMNS)
        )
        _write_parquet(
            self.path("events", part, f"{tag}.parquet"), events.reindex(columns=EVENT_COLUMNS)
        )
        if self.errors:
            _write_parquet(self.path("errors", part, f"{tag}.parquet"), pd.DataFrame(self.errors))
        for kind, rows in (("embeddings", self.embeddings), ("frames", self.frames)):
            if rows:
                _write_parquet(self.path(kind, part, f"{tag}.parquet"), pd.DataFrame(rows))
        marker = {"part": tag, "files": self.files, "model_version": self.v, "run_id": self.run_id}
        storage.write_bytes(
            self.path("_progress", self.v, f"{tag}.json"), json.dumps(marker).encode()
        )
        self.seq += 1
        self.events, self.errors, self.embeddings, self.files = [], [], [], []
        self.frames = []


def _write_parquet(uri: str, table: pd.DataFrame) -> None:
    buf = io.BytesIO()
    table.to_parquet(buf, index=False)
    storage.write_bytes(uri, buf.getvalue())


def committed(job: LabelJob, model_version: str) -> tuple[set[str], int]:
    """Files already labelled by this model version; deletes uncommitted part files."""
    progress = storage.join(job.out, "_progress", model_version)
    done, parts = set(), set()
    if storage.exists(progress):
        for rel, _ in storage.list_all(progress):
            marker = json.loads(storage.read_bytes(storage.join(progress, rel)))
            done.update(marker["files"])
            parts.add(marker["part"])
    for kind in ("events", "errors", "embeddings", "frames"):
        base = storage.join(job.out, kind, f"model_version={model_version}")
        if storage.exists(base):
            for rel, _ in storage.list_all(base):
                if Path(rel).name.rsplit(".", 1)[0] not in parts:
                    storage.remove(storage.join(base, rel))  # orphan of a killed run
    return done, len(parts)


def read_parts(out: str, kind: str, model_version: str | None = None) -> pd.DataFrame:
    """All committed rows of one output kind (``events``, ``errors``, ``embeddings``,
    ``frames``) under ``out``, optionally of one model version."""
    base = storage.join(out, kind)
    frames = [
        pd.read_parquet(io.BytesIO(storage.read_bytes(storage.join(base, rel))))
        for rel, _ in (storage.list_all(base) if storage.exists(base) else [])
        if rel.endswith(".parquet")
        and (model_version is None or f"model_version={model_version}" in rel)
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def read_events(out: str, model_version: str | None = None) -> pd.DataFrame:
    """All committed events under ``out`` (optionally one model version), in file order."""
    events = read_parts(out, "events", model_version)
    if events.empty:
        return pd.DataFrame(columns=EVENT_COLUMNS)
    return events.sort_values(["file", "onset_s", "label"]).reset_index(drop=True)


def read_errors(out: str) -> pd.DataFrame:
    errors = read_parts(out, "errors")
    return errors if len(errors) else pd.DataFrame(columns=ERROR_COLUMNS)
