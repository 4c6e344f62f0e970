"""The driver's side of a pass of a model over an archive (``a2v label``, ``a2v embed``): chunk
rows come back from the actors in any order; each file is finished (committed or left to
retry) once all its chunks are in, and the writer commits parts as files finish."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ray
from tqdm import tqdm

from a2v_core.config import ArchiveJob
from a2v_core.config_loader import flatten
from a2v_core.rates import upsampling_warning
from a2v_core.recording_time import UNKNOWN, RecordingTime
from pipelines.data import storage
from pipelines.data.datasource import read_chunks
from pipelines.inference.label_outputs import (
    PartWriter,
    journal,
    read_errors,
    remove_run,
    runs_under,
    safe_relpath,
)
from pipelines.inference.progress import ProgressLog
from pipelines.runtime.tracking import Tracker


@dataclass
class Plan:
    """What a run does of an archive's listing."""

    keys: dict[str, tuple[int, str]]  # file -> (size, version) as listed
    todo: list[tuple[str, int]]  # (file, size) to read
    unsafe: list[tuple[str, int]]  # names that would write outside --out: error rows only
    skipped: int  # committed before with the same (size, version)
    changed: list[str]  # committed before, changed since: done again
    others: list[str]  # the other runs under --out


def plan(job: ArchiveJob, listed: list[tuple[str, int, str]], run_id: str, fp: dict) -> Plan:
    """The run's plan from its journal (``--overwrite`` and ``--retry-errors`` applied), and
    its fingerprint written to ``<out>/runs/<run>.json``."""
    if job.overwrite:
        remove_run(job.out, run_id)
    done, _ = journal(job.out, run_id)
    if job.retry_errors:  # files committed with a decode error are tried again
        for file in set(read_errors(job.out, run_id)["file"]):
            done.pop(file, None)
    keys = {rel: (size, ver) for rel, size, ver in listed}
    changed = [rel for rel in done if rel in keys and done[rel] != keys[rel]]
    todo, unsafe = [], []
    for rel, size, _ in listed:
        if done.get(rel) != keys[rel]:
            (todo if safe_relpath(rel) is not None else unsafe).append((rel, size))
    skipped = len(listed) - len(todo) - len(unsafe)
    storage.write_bytes(
        storage.join(job.out, "runs", f"{run_id}.json"),
        json.dumps({"run_id": run_id, **fp}, indent=2, sort_keys=True).encode(),
    )
    others = [r for r in runs_under(job.out) if r != run_id]
    return Plan(keys, job.dry_run_slice(todo), unsafe, skipped, changed, others)


def commit_unsafe(writer: PartWriter, p: Plan) -> None:
    """Names never read, never written: one ``unsafe_path`` error row each."""
    for rel, _ in p.unsafe:
        error = {
            "file": rel,
            "stage": "list",
            "error_type": "unsafe_path",
            "message": "a '..', '.', empty or absolute path segment would write outside --out",
        }
        writer.add(rel, p.keys[rel], errors=[error])
    writer.flush()


def actor_gpus(job: ArchiveJob, resources: dict[str, float]) -> float:
    """GPUs per model actor, fixed in ``job``: as set, else one when the cluster (Ray's
    ``resources``) has a GPU, else none (CPU)."""
    c = job.cluster
    if c.gpus_per_actor is None:
        c.gpus_per_actor = 1.0 if resources.get("GPU", 0) >= 1 else 0.0
    return c.gpus_per_actor


#: the auto actor count starts no more than one actor per this many bytes of files to do: a
#: small archive is not worth a model load per core (a test's 12 files took 3 actors' start-up)
ACTOR_MIN_BYTES = 64 * 2**20


def actor_count(job: ArchiveJob, resources: dict[str, float], todo_bytes: int) -> str:
    """Model actors, fixed in ``job`` (after ``actor_gpus``): as set, else every GPU busy (one
    actor per ``gpus_per_actor`` GPUs), else on CPU as many as the cluster's CPUs hold at
    ``cpus_per_worker`` each, one CPU left for reading and the driver; either way at most one
    per ACTOR_MIN_BYTES of files to do. -> why that many."""
    c = job.cluster
    if c.num_actors is not None:
        return "--num-actors"
    if c.gpus_per_actor:
        gpus = resources.get("GPU", 0)
        n, why = int(gpus // c.gpus_per_actor), f"one per {c.gpus_per_actor:g} of {gpus:g} GPUs"
    else:
        cpus, per = resources.get("CPU", 1), max(1.0, c.cpus_per_worker)
        n = int((cpus - 1) // per)
        why = f"{per:g} CPU each of the cluster's {cpus:g}, one left for reading and the driver"
    cap = max(1, math.ceil(todo_bytes / ACTOR_MIN_BYTES))
    c.num_actors = max(1, min(n, cap))
    return why + (f"; {cap} for {todo_bytes / 2**20:.0f} MB to do" if cap < n else "")


def start(
    job: ArchiveJob, name: str, version: str, run_id: str, p: Plan, n_listed: int
) -> tuple[Tracker, str | None]:
    """The run's MLflow run (started) and its id, and the lines saying what the run will do
    and where its model actors run."""
    resources = ray.cluster_resources()
    gpus = actor_gpus(job, resources)
    why = actor_count(job, resources, sum(size for _, size in p.todo))
    print(
        f"[{name}] {job.cluster.num_actors} model actor(s) on "
        + (f"GPU ({gpus:g} each)" if gpus else "CPU")
        + f" ({why}; --num-actors and --gpus-per-actor set them)"
    )
    tracker = Tracker(job.tracking.uri, job.tracking.experiment, active=job.tracking.enabled)
    mlflow_run_id = tracker.start(
        job.run.name,
        flatten(job),
        {"a2v.job": name, "model_version": version, "model_uri": job.model, "a2v.run": run_id},
    )
    print(
        f"[{name}] run {run_id}: {n_listed} files in {job.data.archive}; {p.skipped} done before, "
        f"{len(p.changed)} changed since; {len(p.todo)} to do"
        + (f"; other runs under {job.out}: {', '.join(p.others)}" if p.others else "")
    )
    return tracker, mlflow_run_id


def finish_run(
    job: ArchiveJob, name: str, tracker: Tracker, summary: dict, metrics: tuple[str, ...]
) -> None:
    """The run's record, ``<out>/runs/<run>.run.json`` (one per run: labelling site after site
    into one prefix keeps every site's), the same as ``<out>/run.json`` (the last invocation
    under ``out``), MLflow metrics and artifact; the MLflow run ended; a line when files are
    left to retry (``start``'s other end)."""
    text = json.dumps(summary, indent=2, default=str)
    storage.write_bytes(
        storage.join(job.out, "runs", f"{summary['run_id']}.run.json"), text.encode()
    )
    storage.write_bytes(storage.join(job.out, "run.json"), text.encode())
    tracker.log_metrics({k: summary[k] for k in metrics}, 0)
    tracker.log_text(text, "run.json")
    tracker.end()
    if summary["files_to_retry"]:
        print(
            f"[{name}] {summary['files_to_retry']} files hit transient read errors after "
            f"{job.data.read_retries} retries and are not marked done: resubmit to try them again"
        )


class FileState:
    """What came back so far of one file's chunks."""

    def __init__(self) -> None:
        self.seen = 0
        self.n_chunks: int | None = None
        self.errors: list[dict] = []
        self.rows: dict[str, list] = defaultdict(list)  # per output kind, job-specific
        self.channels: dict[float, int] = {}  # chunk offset -> channel read there
        self.source_rate_hz = 0  # the file's own rate (0 until a chunk decoded)
        self.audio_s = 0.0
        self.recorded = UNKNOWN  # when the recording started (its first chunk says)

    @classmethod
    def with_runs(cls, runs: list[list], recorded: RecordingTime = UNKNOWN) -> FileState:
        """A finished file that gave these probability runs (tests, tools)."""
        st = cls()
        st.rows["runs"], st.recorded = list(runs), recorded
        return st

    def add(self, row, take: Callable[[FileState, Any], None], error_types: Counter) -> bool:
        """One chunk row back: a decode error is kept as an error row, a good chunk counted
        and passed to ``take``. -> whether it was the file's last chunk."""
        self.seen += 1
        if row.recorded_at_source and not self.recorded.source:
            self.recorded = RecordingTime(row.recorded_at, row.recorded_at_source)
        self.n_chunks = int(row.n_chunks) or self.n_chunks  # 0: the file failed as a whole
        if row.error_type:
            self.errors.append(
                {
                    "file": row.path,
                    "stage": "decode",
                    "error_type": row.error_type,
                    "message": row.error_message,
                }
            )
            error_types[row.error_type] += 1
        else:
            self.audio_s += float(row.duration_s)
            self.channels[float(row.offset_s)] = int(row.channel)
            self.source_rate_hz = int(row.source_rate_hz)
            take(self, row)
        return self.seen == self.n_chunks


def archive_chunks(job: ArchiveJob, todo: list[tuple[str, int]]) -> ray.data.Dataset:
    """The chunk rows of ``todo`` as the model actors take them: a chunk shorter than a clip
    bucketed (``bucket_s``), and a block (what one actor call gets) holding at least one
    forward's audio, ``batch_size`` clips (a GPU config's 64, not the 16 of a read block)."""
    clips = max(job.data.chunks_per_block, job.batch_size)
    cfg = job.data.model_copy(update={"chunks_per_block": clips})
    return read_chunks(cfg, todo, bucket_s=job.bucket_s)


def actor_pool(job: ArchiveJob, ds: ray.data.Dataset, actor: type, **kwargs: Any):
    """``ds`` through an actor pool of ``actor`` (the model loaded once per actor)."""
    c = job.cluster
    return ds.map_batches(
        actor,
        fn_constructor_kwargs={
            "checkpoint_uri": job.model,  # a URI: each actor fetches it on its node
            "job": job.model_dump(mode="json"),
            "threads": max(1, int(c.cpus_per_worker)),
            **kwargs,
        },
        batch_size=None,  # a block at a time (rows of any length); the actor batches by audio
        num_gpus=c.gpus_per_actor,
        num_cpus=c.cpus_per_worker,
        compute=ray.data.ActorPoolStrategy(size=c.num_actors),
        # SPREAD: one actor per node where it fits (else Ray packs them onto few nodes); a
        # remote arg Ray Data deprecates without a named replacement yet: passed only when asked
        **({"scheduling_strategy": "SPREAD"} if "SPREAD" in c.placement_strategy else {}),
    )


def collect(
    job: ArchiveJob,
    name: str,
    ds: ray.data.Dataset,
    n_files: int,
    writer: PartWriter,
    take: Callable[[FileState, Any], None],
    commit: Callable[[str, FileState], int],
    stats: Counter,
    error_types: Counter,
    chunks_by_node: Counter,
) -> None:
    """Drain ``ds`` (rows: path, offset_s, duration_s, n_chunks, channel, error_type,
    error_message, node_id, plus the job's columns). ``take(state, row)`` keeps a good row's
    outputs; ``commit(path, state)`` adds a finished file to ``writer`` and returns how many
    items it wrote (``stats["items"]``). A file with a transient read error is not committed:
    the next resubmission tries it again."""
    state: dict[str, FileState] = defaultdict(FileState)
    warned = False  # the upsampling warning is printed once
    bar = tqdm(total=n_files, unit="file", desc=name, disable=None)
    progress = ProgressLog(name, n_files, job.run.progress_every_s)

    def commit_file(path: str) -> None:
        st = state.pop(path)
        stats["files"] += 1
        bar.update(1)
        if any(e["error_type"] == "retryable" for e in st.errors):
            stats["files_to_retry"] += 1
            return
        stats["items"] += commit(path, st)
        stats["audio_s"] += st.audio_s
        if st.source_rate_hz:
            stats[("audio_s_at", st.source_rate_hz)] += st.audio_s
        bar.set_postfix(audio_h=f"{stats['audio_s'] / 3600:.2f}")

    for batch in ds.iter_batches(batch_size=None, batch_format="pandas"):
        progress.update(stats["files"], stats["audio_s"], error_types)
        for row in batch.itertuples(index=False):
            stats["chunks"] += 1
            chunks_by_node[row.node_id] += 1
            if state[row.path].add(row, take, error_types):
                commit_file(row.path)
        if len(writer.files) >= job.flush_every_files and writer.age_s() >= job.flush_every_s:
            writer.flush()
            warned = warned or warn_upsampling(job, stats)
    for path in list(state):  # files with decode errors (and the chunks they did give)
        commit_file(path)
    writer.flush()
    warned or warn_upsampling(job, stats)
    bar.close()


def pass_counts(
    p: Plan,
    listed: list,
    stats: Counter,
    error_types: Counter,
    chunks_by_node: Counter,
    wall: float,
) -> dict:
    """The run summary's counts of an archive pass (label, embed): files, chunks, errors,
    audio hours (also by the recordings' own rate) and speed."""
    return {
        "other_runs_in_out": p.others,
        "files_total": len(listed),
        "files_skipped_done": p.skipped,
        "files_changed_relabelled": len(p.changed),
        "files_to_retry": stats["files_to_retry"],
        "files_processed": stats["files"],
        "chunks_processed": stats["chunks"],
        "errors_by_type": dict(error_types),
        "chunks_by_node": dict(chunks_by_node),
        "audio_hours": stats["audio_s"] / 3600,
        "audio_hours_by_source_rate_hz": hours_by_source_rate(stats),
        "wall_s": wall,
        "x_real_time": stats["audio_s"] / wall if wall else 0.0,
    }


def hours_by_source_rate(stats: Counter) -> dict[int, float]:
    """Audio hours committed so far per recording rate (the files' own, before resampling)."""
    return {k[1]: v / 3600 for k, v in sorted(stats.items(), key=str) if isinstance(k, tuple)}


def warn_upsampling(job: ArchiveJob, stats: Counter) -> bool:
    """Print ``a2v manifest``'s upsampling warning for the hours read so far; True if printed."""
    message = upsampling_warning(hours_by_source_rate(stats), job.data.sample_rate_hz)
    if message:
        print(message, flush=True)
    return message is not None
