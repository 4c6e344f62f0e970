"""What training reads: the file order and the local shuffle buffer are drawn from run.seed,
differ between epochs and workers, and repeat for the same seed; pretraining sees no padded
chunk."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import ray.data

from pipelines.data.training_data import _full, full_chunks, shuffled_files
from pipelines.train.train_worker import batches, epoch_seed
from pipelines.train.trainer import Throughput


def test_file_order_is_drawn_from_the_seed():
    files = [(f"site{s}/rec_{i:03d}.wav", 100) for s in range(3) for i in range(20)]
    a, b = shuffled_files(files, 0), shuffled_files(files, 1)
    assert sorted(a) == files and a == shuffled_files(files, 0) and a != b and a != files
    # sites interleave: the first 10 files come from more than one site
    assert len({f.split("/")[0] for f, _ in a[:10]}) > 1


def test_epoch_seeds_differ_by_epoch_and_rank_and_repeat():
    seeds = {(r, e): epoch_seed(7, r, e) for r in range(2) for e in range(3)}
    assert len(set(seeds.values())) == 6 and seeds[(1, 2)] == epoch_seed(7, 1, 2)


def test_shuffle_buffer_mixes_batches_reproducibly(ray_session):
    # 4 "files" of 16 consecutive chunks each, in one block, as a read task yields them
    ds = ray.data.from_items([{"file": i // 16, "i": i} for i in range(64)], override_num_blocks=1)
    it = ds.materialize().iterator()

    def order(shuffle: int, seed: int | None, skip: int = 0) -> set[frozenset[int]]:
        # batches as sets: Ray formats batches in threads (prefetch_batches=2), which may swap
        # neighbouring batches; what a batch holds is what the shuffle decides
        return {
            frozenset(map(int, b["i"])) for b in batches(it, 8, skip, Throughput(), shuffle, seed)
        }

    plain = order(0, None)
    assert plain == {frozenset(range(i, i + 8)) for i in range(0, 64, 8)}  # one file per batch
    mixed = order(32, 1)
    assert mixed == order(32, 1) and mixed != order(32, 2)
    assert sorted(i for b in mixed for i in b) == list(range(64))  # every chunk once per epoch
    files_per_batch = [len({i // 16 for i in b}) for b in mixed]
    assert sum(files_per_batch) / len(files_per_batch) > 1.5, files_per_batch
    # a resumed epoch skips the batches already consumed, from the same shuffled batches
    resumed = order(32, 1, skip=3)
    assert len(resumed) == len(mixed) - 3 and resumed <= mixed


def test_pretraining_drops_padded_chunks(ray_session):
    audio = [np.zeros(4, np.float32)] * 3
    table = pa.table({"duration_s": [10.0, 3.2, 10.0], "audio": audio})
    assert _full(table, 10.0)["duration_s"].to_pylist() == [10.0, 10.0]
    whole = pa.table({"duration_s": [10.0, 10.0], "audio": audio[:2]})
    assert _full(whole, 10.0) is whole  # nothing to drop: no copy
    ds = ray.data.from_items([{"duration_s": d, "i": i} for i, d in enumerate([10.0, 4.0, 10.0])])
    assert sorted(r["i"] for r in full_chunks(ds, 10.0).take_all()) == [0, 2]
