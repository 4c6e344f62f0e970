"""The ANN index core: shards built with usearch, searched and merged into the exact top k."""

from __future__ import annotations

import numpy as np
import pytest

from a2v_core import vector_index


def test_sharded_search_finds_the_exact_neighbours_across_shards(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 32)).astype(np.float32)
    q = x[1234] + 0.05 * rng.standard_normal(32).astype(np.float32)
    keys = np.arange(3000)
    shards = []
    for n, part in enumerate(np.array_split(keys, 3)):  # keys n x 2^40 + row, as a2v index
        index = vector_index.build(x[part], (n << 40) + np.arange(len(part)), dtype="f32")
        index.save(tmp_path / f"{n}.usearch")
        shards.append(vector_index.restore(tmp_path / f"{n}.usearch"))
    found, scores = vector_index.search_shards(shards, q, 10)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    cos = unit @ (q / np.linalg.norm(q))
    want = np.argsort(-cos)[:10]
    rows = [(k >> 40) * 1000 + (k & ((1 << 40) - 1)) for k in found]
    assert rows[0] == 1234 and len(set(rows) & set(want.tolist())) >= 9
    np.testing.assert_allclose(scores, cos[rows], atol=1e-4)
    assert np.all(np.diff(scores) <= 1e-9)  # best first
    # int8 storage keeps the nearest neighbour and nearly all of the top 10
    small = vector_index.build(x, keys, dtype="i8")
    got, _ = vector_index.search_shards([small], q, 10)
    assert got[0] == 1234 and len(set(got.tolist()) & set(want.tolist())) >= 8
    with pytest.raises(ValueError, match="dtype"):
        vector_index.build(x, keys, dtype="f64")
