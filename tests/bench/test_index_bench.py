"""bench/index.py on a small draw: the table has the exact baseline and usearch, and usearch's
recall against the exact top k is high (the benchmark's recall column is computed, not assumed)."""

from __future__ import annotations

from bench import index

SMALL = ["--n", "3000", "--queries", "20", "--k", "10", "--clusters", "50"]


def usearch_row(*argv: str):
    return index.main([*SMALL, "--libraries", "usearch", "--ef-search", "128", *argv]).set_index(
        "library"
    )


def test_index_bench_reports_recall_against_the_exact_search(capsys):
    rows = usearch_row()
    assert list(rows.index) == ["exact (numpy)", "usearch HNSW f32 efS=128"]
    assert rows.loc["exact (numpy)", "recall_at_k"] == 1.0
    assert 0.9 <= rows.loc["usearch HNSW f32 efS=128", "recall_at_k"] <= 1.0
    assert (
        rows.loc["usearch HNSW f32 efS=128", "build_s"] > 0 and "x_exact" in capsys.readouterr().out
    )
    # a graph too sparse to search well: the column shows it
    worse = usearch_row("--ef-search", "10", "--ef-construction", "10", "--m", "2")
    assert (
        worse.loc["usearch HNSW f32 efS=10", "recall_at_k"]
        < rows.loc["usearch HNSW f32 efS=128", "recall_at_k"]
    )
