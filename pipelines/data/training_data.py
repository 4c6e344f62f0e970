"""What training reads of an archive, beyond what labelling reads: the file order drawn from
``run.seed``, and (pretraining) only whole chunks."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray.data

from pipelines.data.datasource import blockwise


def shuffled_files(files: list[tuple], seed: int) -> list[tuple]:
    """The listing in an order drawn from ``seed`` (the same for the same seed and files):
    training reads sites, collars and days interleaved instead of in name order, and each read
    task (every n-th unit of this order) holds a random sample of files."""
    order = np.random.default_rng([seed, len(files)]).permutation(len(files))
    return [files[i] for i in order]


def _full(table: pa.Table, clip_s: float) -> pa.Table:
    """Rows whose chunk fills ``clip_s`` (no zero padding); untouched when all do."""
    full = pc.greater_equal(table["duration_s"], clip_s - 1e-6)
    return table if pc.all(full).as_py() is not False else table.filter(full)


def full_chunks(ds: ray.data.Dataset, clip_s: float) -> ray.data.Dataset:
    """Chunks without zero padding: pretraining drops the short last chunk of a file (and a
    file shorter than one chunk), as the original never pads (its clips all have one length),
    so that no teacher target and no loss is computed on padding."""
    return blockwise(ds, _full, clip_s=clip_s)


def _times(table: pa.Table, times: int) -> pa.Table:
    return pa.concat_tables([table] * times)


def repeated(ds: ray.data.Dataset, times: int) -> ray.data.Dataset:
    """Every row ``times`` times (a few-shot split made long enough for whole epochs), as new
    blocks. ``ds.union(ds, ...)`` repeated the same block references, which Ray Data's batch
    prefetcher refuses ("Wait requires a list of unique ray_waitables", logged for every
    batch), and training then waited for every block in its own thread."""
    return ds if times <= 1 else blockwise(ds, _times, times=times)
