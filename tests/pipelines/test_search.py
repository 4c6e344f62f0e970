"""Exact search by example over an embedding run's parts, one part in memory at a time."""

import numpy as np
import pandas as pd
import pytest

from a2v_core.config import EmbedJob
from a2v_core.errors import InputError
from pipelines import search
from pipelines.embed import WindowWriter, read_windows


def windows(file: str, vectors: np.ndarray) -> list[dict]:
    return [
        {
            "archive": "site",
            "file": file,
            "offset_s": float(i),
            "duration_s": 1.0,
            "channel": 0,
            "source_rate_hz": 8000,
            "embedding": v[None],
            "model_version": "v1",
            "run_id": "r1",
        }
        for i, v in enumerate(vectors)
    ]


def test_search_reads_parts_one_by_one_and_finds_the_newest_windows_best(tmp_path):
    rng = np.random.default_rng(0)
    job = EmbedJob(model="m", out=str(tmp_path))
    job.data.archive = "site"
    writer = WindowWriter(job, "v1", "r1", dim=8)
    vecs = {f: rng.normal(size=(30, 8)).astype(np.float32) for f in "abcde"}
    query = vecs["b"][7]
    new_b = rng.normal(size=(30, 8)).astype(np.float32)
    for part in (
        {"a": vecs["a"], "b": vecs["b"]},
        {"c": vecs["c"], "d": vecs["d"]},
        {"e": vecs["e"], "b": new_b},
    ):
        for f, v in part.items():  # b is embedded again in the third part: its newest rows count
            writer.add(f"{f}.wav", (1, "x"), windows=windows(f"{f}.wav", v))
        writer.flush()

    hits, n = search.search_parts(str(tmp_path), "r1", query[None], 12)
    assert n == 150  # 5 files x 30 windows: b's superseded rows are not searched

    every = read_windows(str(tmp_path), "r1")
    assert len(every) == 150
    unit = (
        np.stack(every["embedding"]) / np.linalg.norm(np.stack(every["embedding"]), axis=1)[:, None]
    )
    scores = unit @ (query / np.linalg.norm(query))
    order = np.argsort(-scores, kind="stable")[:12]
    expected = every[["file", "offset_s"]].iloc[order].values.tolist()
    assert hits[["file", "offset_s"]].values.tolist() == expected
    np.testing.assert_allclose(hits["score"], scores[order], atol=1e-6)
    assert list(hits["rank"]) == list(range(1, 13))
    assert list(hits.columns[:2]) == ["rank", "score"] and "embedding" not in hits
    # the query is b's old window 7: had the stale part been read, it would rank first at 1.0
    assert hits.loc[0, "score"] < 0.999

    with pytest.raises(InputError, match="holds no windows"):
        search.search_parts(str(tmp_path), "other-run", query[None], 5)


def test_windows_embedded_before_the_source_rate_was_kept_still_index(tmp_path):
    from pipelines.index import ROW_COLUMNS, window_rows

    rows = pd.DataFrame(windows("a.wav", np.eye(2, dtype=np.float32))).drop(
        columns="source_rate_hz"
    )
    rows["embedding"] = [v[0] for v in rows["embedding"]]
    rows.to_parquet(tmp_path / "part-0.parquet")
    got = window_rows(str(tmp_path / "part-0.parquet"), {"a.wav"})
    assert set(got.columns) == set(ROW_COLUMNS + ["embedding"])
    assert (got["source_rate_hz"] == 0).all() and len(got) == 2
