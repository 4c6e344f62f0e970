"""Approximate nearest-neighbour indexes for window embeddings: build and query time, memory
and recall against the exact search ``a2v search`` does without an index, on synthetic vectors.

    python bench/index.py                          # 1 M x 64 (tiny's width), ~10 min on 2 cores
    python bench/index.py --n 200000 --dim 768     # base's width

The vectors are a mixture of ``--clusters`` Gaussian clusters (calls of a kind sit near each
other; a uniform cloud would make every index look bad and every neighbour arbitrary), unit
normalised, searched by cosine. Queries are held-out draws from the same mixture. For each
library (the candidates of issue #19 that install as wheels here: usearch and faiss-cpu;
hnswlib ships only a source archive) one HNSW index is built with every core, then
``--queries`` queries ask for the top ``--k``. Recall@k is against the exact top k of the same
queries (numpy, the baseline, timed in the same run). Prints one table; ratios are against
the exact search's query time.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd


def vectors(n: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    out = np.empty((n, dim), np.float32)
    step = 100_000
    for a in range(0, n, step):
        b = min(n, a + step)
        out[a:b] = centres[rng.integers(0, clusters, b - a)]
        out[a:b] += 0.6 * rng.standard_normal((b - a, dim)).astype(np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def exact(x: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    """The top-k rows of ``x`` by inner product with each query (what search does today)."""
    scores = q @ x.T
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, 1), axis=1)
    return np.take_along_axis(top, order, 1)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(
        np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)])
    )


def bench_usearch(x, q, k, args):
    from usearch.index import Index

    t0 = time.perf_counter()
    index = Index(
        ndim=x.shape[1],
        metric="cos",
        dtype=args.usearch_dtype,
        connectivity=args.m,
        expansion_add=args.ef_construction,
    )
    index.add(np.arange(len(x)), x, threads=os.cpu_count())
    build = time.perf_counter() - t0

    def query(ef: int):
        index.expansion_search = ef
        t0 = time.perf_counter()
        found = index.search(q, k, threads=os.cpu_count()).keys
        return time.perf_counter() - t0, found

    return build, index.memory_usage, query


def bench_faiss(x, q, k, args):
    import faiss

    faiss.omp_set_num_threads(os.cpu_count())
    t0 = time.perf_counter()
    index = faiss.IndexHNSWFlat(x.shape[1], args.m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = args.ef_construction
    index.add(x)
    build = time.perf_counter() - t0

    def query(ef: int):
        index.hnsw.efSearch = max(ef, k)
        t0 = time.perf_counter()
        _, found = index.search(q, k)
        return time.perf_counter() - t0, found

    return build, len(faiss.serialize_index(index)), query


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=1_000_000, help="indexed windows")
    ap.add_argument("--dim", type=int, default=64, help="embedding width (tiny 64, base 768)")
    ap.add_argument("--clusters", type=int, default=2000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--m", type=int, default=16, help="HNSW links per node")
    ap.add_argument("--ef-construction", type=int, default=128)
    ap.add_argument("--ef-search", default="128,512", help="comma list: queried on one build")
    ap.add_argument("--usearch-dtype", default="f32", choices=["f32", "f16", "i8"])
    ap.add_argument("--libraries", default="usearch,faiss")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t_all = time.perf_counter()
    data = vectors(args.n + args.queries, args.dim, args.clusters, args.seed)
    x, q = data[: args.n], data[args.n :]
    t0 = time.perf_counter()
    truth = exact(x, q, args.k)
    exact_s = time.perf_counter() - t0
    rows = [
        {
            "library": "exact (numpy)",
            "build_s": 0.0,
            "query_ms": 1000 * exact_s / len(q),
            "x_exact": 1.0,
            "recall_at_k": 1.0,
            "memory_mb": x.nbytes / 2**20,
        }
    ]
    runners = {"usearch": bench_usearch, "faiss": bench_faiss}
    for name in args.libraries.split(","):
        try:
            build, size, query = runners[name](x, q, args.k, args)
        except ImportError as err:  # faiss-cpu is in the `bench` extra only
            print(f"  {name}: not installed ({err}); pip install -e '.[bench]'")
            continue
        for ef in (int(e) for e in args.ef_search.split(",")):
            query_s, found = query(ef)
            rows.append(
                {
                    "library": f"{name} HNSW"
                    + (f" {args.usearch_dtype}" if name == "usearch" else " f32")
                    + f" efS={ef}",
                    "build_s": build,
                    "query_ms": 1000 * query_s / len(q),
                    "x_exact": exact_s / query_s,
                    "recall_at_k": recall(np.asarray(found), truth),
                    "memory_mb": size / 2**20,
                }
            )
            print(f"  {rows[-1]}", flush=True)
    table = pd.DataFrame(rows)
    print(
        f"\n== {args.n:,} x {args.dim} vectors ({args.clusters} clusters), {len(q)} queries, top "
        f"{args.k}, HNSW M={args.m} efC={args.ef_construction}, "
        f"{os.cpu_count()} cores; x_exact = the exact search's query time / this one's"
    )
    print(table.to_markdown(index=False, floatfmt=".3f"))
    print(f"({time.perf_counter() - t_all:.0f} s)")
    return table


if __name__ == "__main__":
    main()
