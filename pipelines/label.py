"""Archive-wide batch labelling: chunks -> predictor actors -> events, resumable.

    a2v label --model demo_out/runs/finetune-tiny/best --archive s3://bucket/archive --out s3://bucket/labels
    a2v label ... --formats parquet,raven,audacity,csv --threshold 0.2 --embeddings

CPU read tasks decode chunks; an actor pool (model loaded once per actor, ``num_gpus`` and
batch size from config) turns them into per-chunk probability runs; the driver merges the
runs of each file as soon as all its chunks are in (events crossing chunk boundaries become
one event) and writes outputs:

    <out>/events/model_version=<v>/part-NNNNN-*.parquet   events (DESIGN.md columns)
    <out>/raven/<file>.selections.txt                     per-recording Raven Pro tables
    <out>/audacity/<file>.txt, <out>/events.csv           on request (--formats)
    <out>/errors/model_version=<v>/part-*.parquet         file, stage, error_type, message
    <out>/embeddings/...                                  per-chunk mean embeddings (--embeddings)
    <out>/frames/...                                      per-chunk frame probabilities (frame_probs)
    <out>/_progress/<v>/part-NNNNN.json                   commit markers (resume)
    <out>/run.json                                        config, model, counts, throughput

Resume: rerunning the same command skips every file whose (file, model version) is in a
commit marker; a part file without its marker is deleted. ``--overwrite`` starts fresh.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import pandas as pd
import ray
from tqdm import tqdm

from a2v_core import annotations as ann
from a2v_core.checkpoint import load_classifier
from a2v_core.config import LabelJob
from a2v_core.config_loader import flatten
from a2v_core.events import RUN_COLUMNS, merge_runs
from pipelines import storage
from pipelines.datasource import read_chunks
from pipelines.jobargs import job_parser, resolve
from pipelines.predictor import Predictor, effective_thresholds
from pipelines.tracking import Tracker
from pipelines.trainer import init_ray

EVENT_COLUMNS = ["file", "onset_s", "offset_s", "label", "score", "model_version", "run_id"]


def model_version_of(local_ckpt: str) -> str:
    """Content hash of the weights: the resume key changes whenever the model does."""
    digest = hashlib.sha1(Path(local_ckpt, "model.pt").read_bytes()).hexdigest()[:12]
    return f"sha-{digest}"


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


def read_events(out: str, model_version: str | None = None) -> pd.DataFrame:
    """All committed events under ``out`` (optionally one model version)."""
    base = storage.join(out, "events")
    frames = []
    for rel, _ in storage.list_all(base) if storage.exists(base) else []:
        if rel.endswith(".parquet") and (
            model_version is None or f"model_version={model_version}" in rel
        ):
            frames.append(pd.read_parquet(io.BytesIO(storage.read_bytes(storage.join(base, rel)))))
    if not frames:
        return pd.DataFrame(columns=EVENT_COLUMNS)
    return (
        pd.concat(frames, ignore_index=True)
        .sort_values(["file", "onset_s", "label"])
        .reset_index(drop=True)
    )


def read_parts(out: str, kind: str, model_version: str | None = None) -> pd.DataFrame:
    """All committed ``embeddings`` / ``frames`` rows under ``out`` (optionally one version)."""
    base = storage.join(out, kind)
    frames = [
        pd.read_parquet(io.BytesIO(storage.read_bytes(storage.join(base, rel))))
        for rel, _ in (storage.list_all(base) if storage.exists(base) else [])
        if rel.endswith(".parquet")
        and (model_version is None or f"model_version={model_version}" in rel)
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def read_errors(out: str) -> pd.DataFrame:
    base = storage.join(out, "errors")
    frames = [
        pd.read_parquet(io.BytesIO(storage.read_bytes(storage.join(base, rel))))
        for rel, _ in (storage.list_all(base) if storage.exists(base) else [])
        if rel.endswith(".parquet")
    ]
    return (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["file", "stage", "error_type", "message"])
    )


class FileState:
    def __init__(self) -> None:
        self.runs: list[list] = []
        self.seen = 0
        self.n_chunks: int | None = None
        self.errors: list[dict] = []
        self.embeddings: list[dict] = []
        self.frames: list[dict] = []
        self.audio_s = 0.0


def run(job: LabelJob) -> dict:
    """Label the archive; returns the run summary (also written to ``<out>/run.json``)."""
    t0 = time.time()
    storage.absolutize(job)
    if not job.model:
        raise SystemExit("error: --model CKPT_URI is required")
    init_ray(job.cluster.address)
    ckpt_local = storage.local_copy(job.model)
    _, meta = load_classifier(ckpt_local)
    job.data.sample_rate_hz = int(meta["sample_rate_hz"])
    job.data.clip_s = float(meta.get("clip_s", job.data.clip_s))
    job.data.overlap_s = 0.0  # chunks tile the file so events stitch exactly at boundaries
    version = model_version_of(ckpt_local)
    if job.overwrite:
        for kind in ("events", "errors", "embeddings", "frames", "_progress", "raven", "audacity"):
            storage.remove(storage.join(job.out, kind))
    done, n_parts = committed(job, version)
    all_files = storage.list_files(job.data.archive, job.data.extensions)
    if not all_files:
        raise SystemExit(f"error: no audio files {job.data.extensions} under {job.data.archive}")
    todo = [f for f in all_files if f[0] not in done]
    if job.run.dry_run:
        todo = todo[:1]
    tracker = Tracker(job.tracking.uri, job.tracking.experiment, active=job.tracking.enabled)
    run_id = (
        tracker.start(
            job.run.name,
            flatten(job),
            {"a2v.job": "label", "model_version": version, "model_uri": job.model},
        )
        or uuid.uuid4().hex
    )
    print(
        f"[label] {len(all_files)} files in {job.data.archive}; {len(done)} already labelled by {version}; "
        f"{len(todo)} to do"
    )
    writer = OutputWriter(job, version, run_id, job.data.sample_rate_hz)
    writer.seq = n_parts
    stats = Counter()
    error_types = Counter()
    if todo:
        c = job.cluster
        ds = read_chunks(job.data, todo).map_batches(
            Predictor,
            fn_constructor_kwargs={
                "checkpoint_dir": ckpt_local,
                "job": job.model_dump(mode="json"),
                "threads": max(1, int(c.cpus_per_worker)),
            },
            batch_size=job.batch_size,
            num_gpus=c.gpus_per_actor,
            num_cpus=c.cpus_per_worker,
            compute=ray.data.ActorPoolStrategy(size=c.num_actors),
        )
        state: dict[str, FileState] = defaultdict(FileState)
        bar = tqdm(total=len(todo), unit="file", desc="label", disable=None)
        for batch in ds.iter_batches(batch_size=None, batch_format="pandas"):
            for row in batch.itertuples(index=False):
                st = state[row.path]
                st.seen += 1
                stats["chunks"] += 1
                if row.error_type:
                    st.errors.append(
                        {
                            "file": row.path,
                            "stage": "decode",
                            "error_type": row.error_type,
                            "message": row.error_message,
                        }
                    )
                    error_types[row.error_type] += 1
                    continue
                st.n_chunks = int(row.n_chunks)
                st.audio_s += float(row.duration_s)
                if row.runs:
                    st.runs += json.loads(row.runs)
                if job.embeddings:
                    st.embeddings.append(
                        {
                            "file": row.path,
                            "offset_s": row.offset_s,
                            "embedding": list(row.embedding),
                        }
                    )
                if job.frame_probs:
                    st.frames.append(
                        {
                            "file": row.path,
                            "offset_s": row.offset_s,
                            "duration_s": row.duration_s,
                            "probs_f16": row.frame_probs,
                        }
                    )
                if st.seen == st.n_chunks:
                    _finish(writer, row.path, state.pop(row.path), stats, bar)
            if len(writer.files) >= job.flush_every_files:
                writer.flush()
        for path in list(state):  # files with decode errors (and the chunks they did give)
            _finish(writer, path, state.pop(path), stats, bar)
        writer.flush()
        bar.close()
    wall = time.time() - t0
    audio_s = stats["audio_s"]
    total_errors = read_errors(job.out)
    summary = {
        "config": job.model_dump(mode="json"),
        "model_uri": job.model,
        "model_version": version,
        "thresholds": {"default": job.events.threshold, **effective_thresholds(job, meta)},
        "model_meta": {
            k: meta.get(k) for k in ("classes", "step", "best", "sample_rate_hz", "frame_rate_hz")
        },
        "run_id": run_id,
        "files_total": len(all_files),
        "files_skipped_done": len(done),
        "files_processed": stats["files"],
        "chunks_processed": stats["chunks"],
        "events_written": stats["events"],
        "errors_by_type": dict(error_types),
        "errors_total_in_out": int(len(total_errors)),
        "audio_hours": audio_s / 3600,
        "wall_s": wall,
        "x_real_time": audio_s / wall if wall else 0.0,
    }
    storage.write_bytes(
        storage.join(job.out, "run.json"), json.dumps(summary, indent=2, default=str).encode()
    )
    if "csv" in job.formats:
        storage.write_bytes(
            storage.join(job.out, "events.csv"),
            read_events(job.out, version).to_csv(index=False).encode(),
        )
    tracker.log_metrics(
        {
            k: summary[k]
            for k in (
                "files_processed",
                "chunks_processed",
                "events_written",
                "audio_hours",
                "wall_s",
                "x_real_time",
            )
        },
        0,
    )
    tracker.log_text(json.dumps(summary, indent=2, default=str), "run.json")
    tracker.end()
    print(
        f"[label] {stats['files']} files, {stats['chunks']} chunks, {stats['events']} events, "
        f"{sum(error_types.values())} errors {dict(error_types)}; {audio_s / 3600:.3f} audio h in {wall:.1f} s "
        f"= {summary['x_real_time']:.0f}x real time -> {job.out}"
    )
    return summary


def _finish(writer: OutputWriter, path: str, st: FileState, stats: Counter, bar: tqdm) -> None:
    table = writer.add_file(path, st.runs, st.errors, st.embeddings, st.frames)
    stats["files"] += 1
    stats["audio_s"] += st.audio_s
    stats["events"] += len(table)
    bar.update(1)
    bar.set_postfix(audio_h=f"{stats['audio_s'] / 3600:.2f}")


def main(argv: list[str] | None = None) -> None:
    shorthands = ["archive", "name", "address"]
    ap = job_parser("a2v label", __doc__, shorthands)
    ap.add_argument("--model", help="fine-tuned checkpoint URI (e.g. <storage>/<run>/best)")
    ap.add_argument("--out", help="output URI (local path, s3://, gs://)")
    ap.add_argument("--threshold", type=float, help="= --set events.threshold=...")
    ap.add_argument("--formats", help="comma list of parquet,raven,audacity,csv")
    ap.add_argument(
        "--embeddings", action="store_true", help="also write per-chunk mean embeddings"
    )
    ap.add_argument(
        "--overwrite", action="store_true", help="discard earlier outputs and start fresh"
    )
    args = ap.parse_args(argv)
    formats = f"[{args.formats}]" if args.formats else None
    extra = {
        "model": args.model,
        "out": args.out,
        "events.threshold": args.threshold,
        "events.thresholds_from_model": "false" if args.threshold is not None else None,
        "formats": formats,
        "embeddings": "true" if args.embeddings else None,
        "overwrite": "true" if args.overwrite else None,
    }
    run(resolve(LabelJob, args, shorthands, extra))


if __name__ == "__main__":
    main()
