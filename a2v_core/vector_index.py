"""Approximate nearest-neighbour search over window embeddings (usearch HNSW, cosine).

An index is one or more shards, each a usearch index file whose keys are global row numbers
of the index's window table. ``build`` makes one shard; ``search_shards`` asks every shard for
its top k and keeps the k best over all of them (the exact merge of per-shard answers). Why
usearch: one small wheel without OpenMP (faiss-cpu: 19 MB, its own OpenMP beside torch's),
HNSW with f16/int8 storage, an index file that can be memory-mapped instead of loaded, and on
``bench/index.py`` (1 M x 64) 15x faster queries than faiss's HNSW at recall@50 0.98 vs 0.99.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from usearch.index import Index

from a2v_core.config_tools import IndexDtype

DTYPES = typing.get_args(IndexDtype)  # the one list of precisions


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def build(
    vectors: np.ndarray,
    keys: np.ndarray,
    dtype: str = "f16",
    connectivity: int = 16,
    expansion_add: int = 64,
    threads: int = 1,
) -> Index:
    """One HNSW shard over ``vectors`` (n, d), cosine, stored as ``dtype``; ``keys`` (n,)
    are the rows' global numbers."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}: one of {DTYPES}")
    index = Index(
        ndim=vectors.shape[1],
        metric="cos",
        dtype=dtype,
        connectivity=connectivity,
        expansion_add=expansion_add,
    )
    index.add(np.asarray(keys, np.uint64), unit(vectors), threads=threads)
    return index


def restore(path: str | Path, view: bool = True) -> Index:
    """A saved shard; ``view``: memory-mapped (pages read as queries touch them)."""
    return Index.restore(str(path), view=view)


def search_shards(
    shards: Iterable[Index], query: np.ndarray, k: int, expansion_search: int = 128
) -> tuple[np.ndarray, np.ndarray]:
    """(keys, cosine similarities) of the ``k`` nearest rows over all ``shards``, best first."""
    q = unit(query)
    keys, scores = [], []
    for shard in shards:
        shard.expansion_search = max(expansion_search, k)
        found = shard.search(q, min(k, len(shard)))
        keys.append(np.asarray(found.keys, np.int64).ravel())
        scores.append(1.0 - np.asarray(found.distances, np.float64).ravel())
    if not keys:
        return np.zeros(0, np.int64), np.zeros(0)
    keys_all, scores_all = np.concatenate(keys), np.concatenate(scores)
    order = np.argsort(-scores_all, kind="stable")[:k]
    return keys_all[order], scores_all[order]
