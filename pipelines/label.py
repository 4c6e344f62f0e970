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

import json
import time
import uuid
from collections import Counter, defaultdict

import ray
from tqdm import tqdm

from a2v_core.config import LabelJob
from a2v_core.config_loader import flatten
from a2v_core.redact import redact_tree
from pipelines import inputs, storage
from pipelines.datasource import read_chunks
from pipelines.jobargs import job_parser, resolve, run_main
from pipelines.label_outputs import (  # noqa: F401 (readers are part of this job's API)
    EVENT_COLUMNS,
    OutputWriter,
    committed,
    read_errors,
    read_events,
    read_parts,
)
from pipelines.predictor import Predictor, effective_thresholds
from pipelines.shared_storage import require_shared
from pipelines.tracking import Tracker
from pipelines.trainer import init_ray


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
    # every input check runs before Ray starts and before --overwrite removes anything
    meta, version = inputs.finetuned_model(job.model)
    all_files = inputs.archive_files(job.data.archive, job.data.extensions)
    init_ray(job.cluster.address)
    # the predictor actors open the model and the read tasks the archive on their own nodes
    require_shared({"model": job.model, "data.archive": job.data.archive})
    job.data.sample_rate_hz = int(meta["sample_rate_hz"])
    job.data.clip_s = float(meta.get("clip_s", job.data.clip_s))
    job.data.overlap_s = 0.0  # chunks tile the file so events stitch exactly at boundaries
    if job.overwrite:
        for kind in ("events", "errors", "embeddings", "frames", "_progress", "raven", "audacity"):
            storage.remove(storage.join(job.out, kind))
    done, n_parts = committed(job, version)
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
    chunks_by_node: Counter = Counter()
    if todo:
        c = job.cluster
        ds = read_chunks(job.data, todo).map_batches(
            Predictor,
            fn_constructor_kwargs={
                "checkpoint_uri": job.model,  # a URI: each actor fetches it on its node
                "job": job.model_dump(mode="json"),
                "threads": max(1, int(c.cpus_per_worker)),
            },
            batch_size=job.batch_size,
            num_gpus=c.gpus_per_actor,
            num_cpus=c.cpus_per_worker,
            compute=ray.data.ActorPoolStrategy(size=c.num_actors),
            # SPREAD: one actor per node where it fits (else Ray packs them onto few nodes)
            scheduling_strategy="SPREAD" if "SPREAD" in c.placement_strategy else "DEFAULT",
        )
        state: dict[str, FileState] = defaultdict(FileState)
        bar = tqdm(total=len(todo), unit="file", desc="label", disable=None)
        for batch in ds.iter_batches(batch_size=None, batch_format="pandas"):
            for row in batch.itertuples(index=False):
                st = state[row.path]
                st.seen += 1
                stats["chunks"] += 1
                chunks_by_node[row.node_id] += 1
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
        "chunks_by_node": dict(chunks_by_node),
        "errors_total_in_out": int(len(total_errors)),
        "audio_hours": audio_s / 3600,
        "wall_s": wall,
        "x_real_time": audio_s / wall if wall else 0.0,
    }
    summary = redact_tree(summary)  # what is written and returned carries no credentials
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
    ap.add_argument("--out", help="output URI (local path or s3://)")
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
    run_main(run, resolve(LabelJob, args, shorthands, extra))


if __name__ == "__main__":
    main()
