"""Window embeddings of a whole archive, for search by example and review (``a2v embed``).

    a2v embed --model demo_out/runs/pretrain-tiny/checkpoint_000003 --archive s3://bucket/archive --out s3://bucket/emb
    a2v embed --model demo_out/runs/finetune-tiny/best --archive ... --out ... --window-s 0.5

The labelling path's reads and actor pool: CPU read tasks decode 10 s chunks, embedding actors
(the checkpoint's encoder loaded once per actor: a pretraining checkpoint's student, or a
fine-tuned model's encoder) turn each chunk into one vector per ``window_s`` (the mean of its
200 Hz frame features, ``a2v_core.embeddings``), and the driver commits each file's windows
once all its chunks are in:

    <out>/windows/run=<run>/part-*.parquet    archive, file, offset_s, duration_s, channel,
                                              embedding (fixed-size list of float32),
                                              model_version, run_id
    <out>/errors/run=<run>/part-*.parquet     file, stage, error_type, message
    <out>/_progress/<run>/part-*.json         commit markers: the resume journal
    <out>/runs/<run>.json                     what the run's fingerprint covers
    <out>/run.json                            the last invocation: config, counts, speed

Runs, resume and ``--overwrite`` follow labelling's rules (``label_outputs``): one run per
fingerprint (archive, model version, window, chunk length, rate, extensions, channel), a
resubmission skips every committed file and embeds a changed one again, other settings start
another run beside the first.
"""

from __future__ import annotations

import math
import time
from collections import Counter

import numpy as np
import pandas as pd
import pyarrow as pa

from a2v_core.config import EmbedJob, ModelConfig
from a2v_core.errors import InputError
from a2v_core.redact import redact_tree, redact_uri
from pipelines.data import inputs, storage
from pipelines.data.shared_storage import require_shared
from pipelines.inference.archive_pass import (
    FileState,
    Plan,
    actor_pool,
    archive_chunks,
    collect,
    commit_unsafe,
    finish_run,
    pass_counts,
    plan,
    start,
)
from pipelines.inference.embedder import Embedder
from pipelines.inference.label_outputs import (
    PartWriter,
    read_parts,
    run_id_of,
)
from pipelines.runtime.job_paths import pin_paths
from pipelines.runtime.jobargs import (
    add_rerun_flags,
    command,
    job_parser,
    rerun_overrides,
    resolve,
)
from pipelines.runtime.ray_init import init_ray

WINDOW_COLUMNS = [
    "archive",
    "file",
    "offset_s",
    "duration_s",
    "channel",
    "source_rate_hz",
    "embedding",
    "model_version",
    "run_id",
]


def fingerprint(job: EmbedJob, model_version: str) -> dict:
    """Everything that changes a run's windows (nothing that does not: batch size, cluster)."""
    return {
        "job": "embed",
        "archive": redact_uri(job.data.archive.rstrip("/")),
        "model_version": model_version,
        "window_s": job.window_s,
        "clip_s": job.data.clip_s,
        "sample_rate_hz": job.data.sample_rate_hz,
        "extensions": sorted(e.lower().lstrip(".") for e in job.data.extensions),
        **({"channel": job.data.channel} if job.data.channel != "first" else {}),
        **({"time_expansion": job.data.time_expansion} if job.data.time_expansion > 1 else {}),
        "bucket_s": job.bucket_s,  # what the model hears of a chunk shorter than a clip
    }


def windows_table(rows: list[dict], dim: int) -> pa.Table:
    """Window rows -> an Arrow table whose ``embedding`` is a fixed-size list of float32."""
    vectors = np.concatenate([r["embedding"] for r in rows]) if rows else np.zeros((0, dim))
    flat = pa.array(vectors.astype(np.float32).reshape(-1))
    columns = {k: pa.array([r[k] for r in rows]) for k in WINDOW_COLUMNS if k != "embedding"}
    columns["channel"] = pa.array([r["channel"] for r in rows], pa.int32())
    columns["source_rate_hz"] = pa.array([r["source_rate_hz"] for r in rows], pa.int32())
    columns["embedding"] = pa.FixedSizeListArray.from_arrays(flat, dim)
    return pa.table({k: columns[k] for k in WINDOW_COLUMNS})


class WindowWriter(PartWriter):
    def __init__(self, job: EmbedJob, model_version: str, run_id: str, dim: int) -> None:
        super().__init__(job.out, model_version, run_id)
        self.archive, self.dim = redact_uri(job.data.archive.rstrip("/")), dim

    def table(self, kind: str, rows: list):
        if kind == "windows":
            return windows_table(rows, self.dim)
        return super().table(kind, rows)


def read_windows(out: str, run_id: str | None = None) -> pd.DataFrame:
    """The committed windows under ``out`` (of one run, or all), sorted by file and offset;
    ``embedding`` holds float32 arrays."""
    rows = read_parts(out, "windows", run_id)
    if rows.empty:
        return pd.DataFrame(columns=WINDOW_COLUMNS)
    return rows.sort_values(["archive", "file", "offset_s"]).reset_index(drop=True)


def run(job: EmbedJob, listed: list[tuple[str, int, str]] | None = None) -> dict:
    """Embed the archive; returns the run summary (also written to ``<out>/run.json``)."""
    t0 = time.time()
    pin_paths(job)
    meta, config, version = inputs.encoder_model(job.model)  # before Ray, before --overwrite
    if listed is None:
        listed = inputs.listed_files(job.data.archive, job.data.extensions, job.manifest)
        if storage.is_file(job.data.archive):
            job.data.archive = storage.parent(job.data.archive)
    model_cfg = read_as_model_reads(job, meta, config)
    print(model_cfg.hearing("embed", job.data.time_expansion))
    init_ray(job.cluster.address)
    require_shared(
        {"model": job.model, "data.archive": job.data.archive}, None, job.cluster.shared_paths
    )
    fp = fingerprint(job, version)
    run_id = run_id_of(fp)
    p = plan(job, listed, run_id, fp)
    tracker, mlflow_run_id = start(job, "embed", version, run_id, p, len(listed))
    writer = WindowWriter(job, version, run_id, model_cfg.width)
    commit_unsafe(writer, p)
    stats, error_types, chunks_by_node = Counter(), Counter(), Counter()
    if p.unsafe:
        error_types["unsafe_path"] = len(p.unsafe)
    with tracker.failing_on_error():  # the MLflow run says FAILED and why
        if p.todo:
            _embed_files(job, p, writer, stats, error_types, chunks_by_node)
    wall = time.time() - t0
    summary = redact_tree(
        {
            "config": job.model_dump(mode="json"),
            "model_uri": job.model,
            "model_version": version,
            "model_kind": meta.get("kind"),
            "run_id": run_id,
            "fingerprint": fp,
            "mlflow_run_id": mlflow_run_id,
            **pass_counts(p, listed, stats, error_types, chunks_by_node, wall),
            "windows_written": stats["items"],
            "embedding_dim": writer.dim,
        }
    )
    publish(job, tracker, summary)
    return summary


def _embed_files(
    job: EmbedJob,
    p: Plan,
    writer: WindowWriter,
    stats: Counter,
    error_types: Counter,
    chunks_by_node: Counter,
) -> None:
    """Read, embed and commit the plan's files; counts go into the three counters."""
    version, run_id = writer.v, writer.run_id
    ds = actor_pool(job, archive_chunks(job, p.todo), Embedder)

    def take(st: FileState, row) -> None:
        dims = int(row.dim)
        writer.dim = dims
        vectors = np.frombuffer(row.vectors, np.float32).reshape(-1, dims)
        durations = np.frombuffer(row.window_durations, np.float64)
        for k, (v, d) in enumerate(zip(vectors, durations, strict=True)):
            st.rows["windows"].append(
                {
                    "archive": writer.archive,
                    "file": row.path,
                    "offset_s": float(row.offset_s) + k * job.window_s,
                    "duration_s": float(d),
                    "channel": int(row.channel) + 1,
                    "source_rate_hz": int(row.source_rate_hz),
                    "embedding": v[None, :],
                    "model_version": version,
                    "run_id": run_id,
                }
            )

    def commit(path: str, st: FileState) -> int:
        windows = sorted(st.rows["windows"], key=lambda r: r["offset_s"])
        writer.add(path, p.keys[path], windows=windows, errors=st.errors)
        return len(windows)

    collect(job, "embed", ds, len(p.todo), writer, take, commit, stats, error_types, chunks_by_node)


def read_as_model_reads(job: EmbedJob, meta: dict, config: dict) -> ModelConfig:
    """Set the job's reading to the model's (sample rate, chunk length; chunks tile the file)
    and check that ``window_s`` tiles a chunk in whole frames; -> the model's config."""
    model_cfg = ModelConfig.model_validate(config.get("model", {}))
    job.data.sample_rate_hz = int(meta.get("sample_rate_hz") or job.data.sample_rate_hz)
    job.data.clip_s = float(config.get("data", {}).get("clip_s", job.data.clip_s))
    job.data.overlap_s = 0.0  # chunks tile the file: windows tile it too
    frames = job.window_s * model_cfg.frame_rate_hz
    if round(frames) < 1 or not math.isclose(frames, round(frames)):
        raise InputError(
            f"--window-s {job.window_s}: not a whole number of the model's "
            f"{model_cfg.frame_rate_hz:g} Hz frames"
        )
    if not math.isclose(job.data.clip_s / job.window_s, round(job.data.clip_s / job.window_s)):
        raise InputError(
            f"--window-s {job.window_s}: does not divide the model's {job.data.clip_s:g} s "
            "chunks (a window would straddle two chunks)"
        )
    return model_cfg


def publish(job: EmbedJob, tracker, summary: dict) -> None:
    """The run's outputs besides the windows (``archive_pass.finish``) and its closing line."""
    keys = ("files_processed", "windows_written", "audio_hours", "x_real_time")
    finish_run(job, "embed", tracker, summary, keys)
    errors = summary["errors_by_type"]
    print(
        f"[embed] {summary['files_processed']} files, {summary['chunks_processed']} chunks, "
        f"{summary['windows_written']} windows of {summary['embedding_dim']} dims, "
        f"{sum(errors.values())} errors {errors}; {summary['audio_hours']:.3f} audio h in "
        f"{summary['wall_s']:.1f} s = {summary['x_real_time']:.0f}x real time -> {job.out}"
    )


@command
def main(argv: list[str] | None = None) -> None:
    shorthands = ["archive", "name", "address", "num_actors", "gpus_per_actor"]
    ap = job_parser("a2v embed", __doc__, shorthands)
    ap.add_argument("--model", help="a pretraining checkpoint or a fine-tuned model (URI)")
    ap.add_argument("--out", help="output URI (local path, s3:// or gs://)")
    ap.add_argument("--manifest", help="a2v manifest's Parquet of the archive: no listing")
    ap.add_argument("--window-s", type=float, help="= --set window_s=... (default 1.0)")
    add_rerun_flags(ap, "embed")
    args = ap.parse_args(argv)
    extra = {
        "model": args.model,
        "out": args.out,
        "manifest": args.manifest,
        "window_s": args.window_s,
    }
    extra |= rerun_overrides(args)
    run(resolve(EmbedJob, args, shorthands, extra))


if __name__ == "__main__":
    main()
