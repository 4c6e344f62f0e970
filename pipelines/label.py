"""Archive-wide batch labelling: chunks -> predictor actors -> events, resumable.

    a2v label --model demo_out/runs/finetune-tiny/best --archive s3://bucket/archive --out s3://bucket/labels
    a2v label ... --formats parquet,raven,audacity,csv --threshold 0.2 --chunk-embeddings --classes cc,sn

CPU read tasks decode chunks; an actor pool (model loaded once per actor, ``num_gpus`` and
batch size from config) turns them into per-chunk probability runs; the driver merges the
runs of each file as soon as all its chunks are in (events crossing chunk boundaries become
one event) and writes outputs:

A prefix holds one run per fingerprint (archive URI, model version, thresholds, event
settings, formats, embeddings, chunk length; see ``label_outputs``); ``<run>`` is
``<archive folder name>-<10 hex>``:

    <out>/events/run=<run>/part-*.parquet          events: archive, file, onset_s, offset_s,
                                                   label, score, model_version, run_id,
                                                   channel, source_rate_hz (the file's rate),
                                                   begin_time (recorder clock at the onset)
    <out>/raven/<run>/<file>.selections.txt        per-recording Raven Pro tables (rec.wav.*),
    <out>/raven/<run>/<folder>.selections.txt      or per folder above tables_per_folder_above
    <out>/raven/<run>.selections.txt               one table over the archive (Begin Path)
    <out>/summary/<run>.activity.{parquet,csv}     folder x night x class: recordings, hours,
                                                   events (a2v_core.activity)
    <out>/recordings/run=<run>/part-*.parquet      per recording: audio_s, recorded_at and its
                                                   source (header or name), events
    <out>/audacity/<run>/<file>.txt                on request (--formats)
    <out>/csv/<run>.events.csv                     on request (--formats csv)
    <out>/errors/run=<run>/part-*.parquet          file, stage, error_type, message
    <out>/embeddings/run=<run>/...                 per-chunk mean embeddings (--chunk-embeddings)
    <out>/frames/run=<run>/...                     per-chunk frame probabilities (frame_probs)
    <out>/_progress/<run>/part-*.json              commit markers: the resume journal
    <out>/runs/<run>.json                          what the run's fingerprint covers
    <out>/run.json                                 the last invocation: config, counts, speed

Resume: resubmitting the same command skips every file whose (path, size, version) is in its
run's journal and labels a file again when it changed. Other settings or another archive start
another run beside the first. ``--overwrite`` removes the current run's outputs only, after
every input check passed.
"""

from __future__ import annotations

import json
import time
from collections import Counter

from a2v_core.activity import activity_table
from a2v_core.config import LabelJob
from a2v_core.errors import InputError
from a2v_core.label_formats import formats_help, written
from a2v_core.rates import hearing_line
from a2v_core.redact import redact_tree
from pipelines.data import inputs, storage
from pipelines.data.shared_storage import require_shared
from pipelines.inference.archive_pass import (
    FileState,
    actor_pool,
    archive_chunks,
    collect,
    commit_unsafe,
    finish_run,
    pass_counts,
    plan,
    start,
)
from pipelines.inference.label_outputs import (  # noqa: F401 (readers are part of this job's API)
    EVENT_COLUMNS,
    OutputWriter,
    fingerprint,
    journal,
    read_errors,
    read_events,
    read_parts,
    remove_run,
    run_id_of,
    runs_under,
    safe_relpath,
    write_activity,
    write_run_tables,
)
from pipelines.inference.predictor import Predictor, event_rule
from pipelines.runtime.job_paths import pin_paths
from pipelines.runtime.jobargs import (
    add_rerun_flags,
    add_threshold,
    command,
    job_parser,
    rerun_overrides,
    resolve,
    threshold_overrides,
)
from pipelines.runtime.ray_init import init_ray


def check_inputs(job: LabelJob, listed: list | None) -> tuple[dict, str, list]:
    """(model meta, model version, the archive's files): every input check, before Ray starts
    and before --overwrite removes anything. Says what the model hears; the event defaults
    follow its frame rate."""
    meta, version = inputs.finetuned_model(job.model)
    print(
        hearing_line(
            "label",
            meta["sample_rate_hz"],
            meta["frame_rate_hz"],
            meta["band_hz"][0],
            job.data.time_expansion,
            meta["band_hz"][1],
        )
    )
    job.events = job.events.at_frame_rate(float(meta["frame_rate_hz"]))
    unknown = sorted(set(job.classes or []) - set(meta["classes"]))
    if unknown:
        raise InputError(f"--classes {unknown}: not classes of this model {meta['classes']}")
    if listed is None:
        listed = inputs.listed_files(job.data.archive, job.data.extensions, job.manifest)
        if storage.is_file(job.data.archive):  # one recording: a file of its folder
            job.data.archive = storage.parent(job.data.archive)
    return meta, version, listed


def read_as_model_reads(job: LabelJob, meta: dict) -> None:
    """The archive is read at the model's rate and chunk length, chunks tiling each file so
    that events stitch exactly at chunk borders."""
    job.data.sample_rate_hz = int(meta["sample_rate_hz"])
    job.data.clip_s = float(meta.get("clip_s", job.data.clip_s))
    job.data.overlap_s = 0.0


def run(job: LabelJob, listed: list[tuple[str, int, str]] | None = None) -> dict:
    """Label the archive; returns the run summary (also written to ``<out>/run.json``).
    ``listed``: the archive's ``storage.list_versions`` when the caller made it already.
    inputs -> plan (run id, files to do) -> execute (read, predict, commit) -> publish."""
    t0 = time.time()
    pin_paths(job)
    meta, version, listed = check_inputs(job, listed)
    init_ray(job.cluster.address)
    # the predictor actors open the model and the read tasks the archive on their own nodes
    require_shared(
        {"model": job.model, "data.archive": job.data.archive}, None, job.cluster.shared_paths
    )
    read_as_model_reads(job, meta)
    tuned = event_rule(job, meta).class_thresholds  # the model's, under the job's explicit ones
    per_folder = job.per_folder(len(listed))
    fp = fingerprint(job, version, tuned, per_folder)
    run_id = run_id_of(fp)
    p = plan(job, listed, run_id, fp)
    tracker, mlflow_run_id = start(job, "label", version, run_id, p, len(listed))
    writer = OutputWriter(
        job, version, run_id, job.data.sample_rate_hz, meta["band_hz"][0], not per_folder
    )
    commit_unsafe(writer, p)
    stats = Counter()
    error_types = Counter({"unsafe_path": len(p.unsafe)} if p.unsafe else {})
    chunks_by_node: Counter = Counter()
    with tracker.failing_on_error():  # the MLflow run says FAILED and why
        if p.todo:
            _label_files(job, p.todo, p.keys, writer, stats, error_types, chunks_by_node)
    wall = time.time() - t0
    summary = {
        "config": job.model_dump(mode="json"),
        "model_uri": job.model,
        "model_version": version,
        "thresholds": {
            "default": job.events.threshold,
            **tuned,
        },
        "model_meta": {
            k: meta.get(k)
            for k in ("classes", "step", "best", "sample_rate_hz", "frame_rate_hz", "band_hz")
        },
        "run_id": run_id,
        "tables_per": "folder" if per_folder else "recording",
        "fingerprint": fp,
        "mlflow_run_id": mlflow_run_id,
        **pass_counts(p, listed, stats, error_types, chunks_by_node, wall),
        "events_written": stats["items"],
        "errors_total_in_out": int(len(read_errors(job.out, run_id))),
    }
    summary = redact_tree(summary)  # what is written and returned carries no credentials
    publish(job, tracker, summary)
    return summary


def publish(job: LabelJob, tracker, summary: dict) -> None:
    """``<out>/run.json``, the run's combined CSV / Raven tables, the MLflow run's metrics and
    artifact, and the closing lines."""
    run_id = summary["run_id"]
    low_hz = (summary["model_meta"].get("band_hz") or [0.0])[0]
    events = read_events(job.out, run_id)
    write_run_tables(job, run_id, events, low_hz, summary["tables_per"] == "folder")
    classes = job.classes or summary["model_meta"]["classes"]
    activity = write_activity(
        job.out, run_id, activity_table(read_parts(job.out, "recordings", run_id), events, classes)
    )
    keys = ("files_processed", "chunks_processed", "events_written")
    finish_run(job, "label", tracker, summary, (*keys, "audio_hours", "wall_s", "x_real_time"))
    errors = summary["errors_by_type"]
    print(
        f"[label] {summary['files_processed']} files, {summary['chunks_processed']} chunks, "
        f"{summary['events_written']} events, {sum(errors.values())} errors {errors}; "
        f"{summary['audio_hours']:.3f} audio h in {summary['wall_s']:.1f} s "
        f"= {summary['x_real_time']:.0f}x real time -> {job.out}"
    )
    for fmt in written(job.formats):
        if fmt.per_run:  # the tables a user opens first (parquet: the clean events view)
            print(f"[label] {fmt.name}: {storage.join(job.out, *fmt.per_run_path(run_id))}")
    print(f"[label] folder x night x class counts: {activity}")


def _label_files(
    job: LabelJob,
    todo: list[tuple[str, int]],
    keys: dict,
    writer: OutputWriter,
    stats: Counter,
    error_types: Counter,
    chunks_by_node: Counter,
) -> None:
    """Read, predict and commit ``todo``; counts go into the three counters."""
    ds = actor_pool(job, archive_chunks(job, todo), Predictor)

    def take(st: FileState, row) -> None:
        if row.runs:
            st.rows["runs"] += json.loads(row.runs)
        if job.embeddings:
            st.rows["embeddings"].append(
                {"file": row.path, "offset_s": row.offset_s, "embedding": list(row.embedding)}
            )
        if job.frame_probs:
            st.rows["frames"].append(
                {
                    "file": row.path,
                    "offset_s": row.offset_s,
                    "duration_s": row.duration_s,
                    "probs_f16": row.frame_probs,
                }
            )

    def commit(path: str, st: FileState) -> int:
        return len(writer.add_file(path, keys[path], st))

    collect(job, "label", ds, len(todo), writer, take, commit, stats, error_types, chunks_by_node)


@command
def main(argv: list[str] | None = None) -> None:
    shorthands = ["archive", "name", "address", "num_actors", "gpus_per_actor"]
    ap = job_parser("a2v label", __doc__, shorthands)
    ap.add_argument("--model", help="fine-tuned checkpoint URI (e.g. <storage>/<run>/best)")
    ap.add_argument("--out", help="output URI (local path, s3:// or gs://)")
    ap.add_argument("--manifest", help="a2v manifest's Parquet of the archive: no listing")
    add_threshold(ap)
    ap.add_argument("--formats", help=formats_help())
    ap.add_argument(
        "--chunk-embeddings",
        dest="embeddings",
        action="store_true",
        help="also write one mean embedding per 10 s chunk (= --set embeddings=true; for "
        "searchable window embeddings use `a2v embed`, whose --out is what --embeddings names "
        "in `a2v index` and `a2v search`)",
    )
    add_rerun_flags(ap, "label")
    ap.add_argument("--classes", help="comma list: write events of these classes only")
    args = ap.parse_args(argv)
    formats = f"[{args.formats}]" if args.formats else None
    extra = {
        "model": args.model,
        "out": args.out,
        "manifest": args.manifest,
        "formats": formats,
        "embeddings": "true" if args.embeddings else None,
        "classes": f"[{args.classes}]" if args.classes else None,
    }
    extra |= rerun_overrides(args) | threshold_overrides(args)
    run(resolve(LabelJob, args, shorthands, extra))


if __name__ == "__main__":
    main()
