"""Fine-tuning data: annotated clips, their stratified splits and per-batch frame targets.

The driver lists the annotated files, reads only their headers to enumerate 10 s clips,
stratifies them on per-clip class presence (train / valid / unused beyond the label
fraction); workers turn each batch's (path, offset) into 200 Hz multi-hot targets.

Annotations are either exhaustive (every call of every class in an annotated file is a row:
the rest of the file is background) or, when any row is labelled ``data.negative_label``,
reviewed spans (a reviewed ``a2v search`` table: kept hits as their class, rejected ones as
negatives): then only the clips holding a span are used, and frames outside every span are
unknown (NaN targets, skipped by the loss and the metrics).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from a2v_core import annotations as ann
from a2v_core.audio import DecodeError, chunk_offsets, probe
from a2v_core.config import FinetuneJob
from a2v_core.errors import InputError
from a2v_core.splits import clip_presence, make_splits
from pipelines.data import inputs, storage
from pipelines.data.datasource import chunk_id, good_chunks, read_chunks
from pipelines.data.training_data import shuffled_files

COLUMNS = ["audio", "path", "offset_s", "duration_s"]


def is_reviewed(events: pd.DataFrame, job: FinetuneJob) -> bool:
    """Are the annotations reviewed spans (any row labelled ``data.negative_label``)?"""
    return bool(len(events)) and bool((events["label"] == job.data.negative_label).any())


def batch_targets(
    events_by_file: dict[str, pd.DataFrame],
    classes: list[str],
    paths,
    offsets,
    job: FinetuneJob,
    reviewed: bool = False,
) -> np.ndarray:
    """(B, T, C) frame targets of a batch's clips; ``reviewed``: NaN outside the spans."""
    n_frames = int(round(job.data.clip_s * job.model.frame_rate_hz))
    empty = ann.empty_table()
    return np.stack(
        [
            ann.frame_targets(
                events_by_file.get(p, empty),
                classes,
                float(o),
                n_frames,
                job.data.sample_rate_hz,
                job.model.hop_samples,
                reviewed,
            )
            for p, o in zip(paths, offsets, strict=True)
        ]
    )


def clip_table(job: FinetuneJob, files: list[str]) -> pd.DataFrame:
    """(path, offset_s, chunk_id) of every chunk of the annotated files (headers only)."""
    fs, root = storage.filesystem(job.data.archive)
    rows = []
    for rel in files:
        try:
            with storage.open_member(fs, root, rel) as f:
                info = probe(f, job.data.time_expansion)
        except (DecodeError, OSError) as err:
            raise InputError(
                f"--annotations names {rel}, which does not decode ({type(err).__name__}: "
                f"{err}); repair or remove the file, or drop its rows from the annotations"
            ) from None
        for off in chunk_offsets(info.duration_s, job.data.clip_s, job.data.overlap_s):
            rows.append({"path": rel, "offset_s": off, "chunk_id": chunk_id(rel, off)})
    return pd.DataFrame(rows)


def prepare(
    job: FinetuneJob,
) -> tuple[pd.DataFrame, list[str], pd.DataFrame, list[tuple[str, int]]]:
    """Annotations, class list, clip splits and the annotated files of the archive."""
    if not job.data.annotations:
        raise InputError(
            "--annotations is required for fine-tuning (a CSV, Raven or Audacity table, or a "
            "folder of them)"
        )
    listed = dict(inputs.archive_files(job.data.archive, job.data.extensions))
    events = inputs.match_annotations(
        inputs.read_annotations(job.data.annotations),
        list(listed),
        job.data.annotations,
        job.data.archive,
    )
    negative = job.data.negative_label
    if job.data.classes and negative in job.data.classes:
        raise InputError(
            f"data.classes: {negative!r} is data.negative_label (a reviewed span with none of "
            "the classes), not a class"
        )
    positives = events[events["label"] != negative]
    if not len(positives):
        raise InputError(
            f"--annotations {job.data.annotations}: every row is labelled {negative!r} "
            "(data.negative_label); keep at least one call of a class"
        )
    try:
        classes = ann.class_list(positives, job.data.classes)
    except ValueError as err:
        raise InputError(f"data.classes: {err}") from None
    annotated = job.dry_run_slice(sorted(set(events["file"])))
    clips = clip_table(job, annotated)
    if is_reviewed(events, job):
        # reviewed spans: only the clips that hold a reviewed frame can teach anything
        hits = clip_presence(clips, events.assign(label="x"), ["x"], job.data.clip_s)
        clips = clips[hits[:, 0] == 1].reset_index(drop=True)
    presence = clip_presence(clips, events, classes, job.data.clip_s)
    clips["split"] = make_splits(
        clips, presence, job.data.valid_fraction, job.data.label_fraction, job.data.split_seed
    )
    return events, classes, clips, [(f, listed[f]) for f in annotated]


def split_dataset(job: FinetuneJob, clips: pd.DataFrame, files: list, split: str):
    """The chunks of one split, read only from the files that hold them; a split that fits in
    ``data.materialize_below_mb`` is decoded once and kept in the object store."""
    part = clips[clips["split"] == split]
    if part.empty:
        raise InputError(f"the '{split}' split is empty; raise data.label_fraction or add files")
    ids, paths = set(part["chunk_id"]), set(part["path"])
    mb = len(part) * job.data.clip_samples * 4 / 2**20
    materialize = mb < job.data.materialize_below_mb
    # A split materialised here is read before any trainer runs: nothing to reserve CPUs for.
    files = [f for f in files if f[0] in paths]
    if job.data.shuffle_files and split == "train":
        files = shuffled_files(files, job.run.seed)
    ds = good_chunks(read_chunks(job.data, files, read_only=materialize))
    ds = ds.filter(lambda r: r["chunk_id"] in ids).select_columns(COLUMNS)
    return ds.materialize() if materialize else ds
