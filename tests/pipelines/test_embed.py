"""a2v embed: window embeddings of an S3 archive from a pretraining checkpoint on S3 and from
a fine-tuned model, into one prefix; exact pooling, resume without duplicates."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch

from a2v_core import annotations as ann
from a2v_core.audio import normalise
from a2v_core.checkpoint import embedder_of, load_checkpoint
from a2v_core.config_tools import IndexJob, SearchJob
from a2v_core.errors import InputError
from pipelines import embed, search
from pipelines.data import storage
from tests.helpers.jobs import embed_job

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pre_windows(s3_pretrained, s3_archive) -> dict:
    """`a2v embed` as the review loop of docs/jobs.md types it (its command 2): the pretrained
    encoder's windows of the S3 archive, committed in parts of 4 files; -> its run.json."""
    out, pre = "s3://a2v-test/embeddings", s3_pretrained["result"]["checkpoint"]
    embed.main(
        ["--model", pre, "--archive", s3_archive, "--out", out, "--set", "tracking.enabled=false"]
        + ["--set", "cluster.cpus_per_worker=0.5", "--set", "flush_every_files=4"]
        + ["--set", "flush_every_s=0"]
    )
    return {**json.loads(storage.read_bytes(f"{out}/run.json")), "out": out, "pre": pre}


def test_embed_pretrained_and_finetuned_into_one_prefix(
    pre_windows, s3_archive, finetuned, synth_archive, tmp_path
):
    out, pre, first = pre_windows["out"], pre_windows["pre"], pre_windows
    files = sorted(synth_archive.rglob("*.wav"))
    seconds = {str(f.relative_to(synth_archive)): sf.info(f).duration for f in files}
    assert first["model_kind"] == "pretrain" and first["files_processed"] == len(files)
    windows = embed.read_windows(out, first["run_id"])
    assert first["windows_written"] == len(windows) == sum(math.ceil(s) for s in seconds.values())
    for file, rows in windows.groupby("file"):  # windows tile every file, once each
        assert list(rows["offset_s"]) == list(np.arange(len(rows), dtype=float)), file
        assert rows["duration_s"].sum() == pytest.approx(seconds[file], abs=0.01)
    assert set(windows["model_version"]) == {first["model_version"]}
    assert set(windows["archive"]) == {s3_archive} and set(windows["channel"]) == {1}

    # the Parquet schema: a fixed-size list of float32, the encoder's width
    part = next(rel for rel, _ in storage.list_all(f"{out}/windows") if rel.endswith(".parquet"))
    schema = pq.read_schema(io.BytesIO(storage.read_bytes(f"{out}/windows/{part}")))
    assert schema.field("embedding").type == pa.list_(pa.float32(), 64)

    # exact: a window is the mean of the student encoder's frame features over its second
    with storage.fetched(pre) as local:
        model = embedder_of(*load_checkpoint(local))
    name = sorted(seconds)[0]
    audio = normalise(sf.read(synth_archive / name, dtype="float32", frames=80000)[0])  # chunk 0
    with torch.no_grad():
        frames = model.embed(torch.from_numpy(audio)[None])[0].numpy()
    row = windows[(windows["file"] == name) & (windows["offset_s"] == 3.0)].iloc[0]
    np.testing.assert_allclose(row["embedding"], frames[600:800].mean(0), atol=2e-6)
    assert np.abs(row["embedding"] - frames[400:600].mean(0)).max() > 5e-4  # not any window
    assert np.std(np.stack(windows["embedding"]), axis=0).min() > 0  # not a constant

    # a resubmission does nothing and duplicates nothing
    again = embed.run(embed_job(pre, s3_archive, out))
    assert again["run_id"] == first["run_id"] and again["files_skipped_done"] == len(files)
    assert again["windows_written"] == 0 and len(embed.read_windows(out, first["run_id"])) == len(
        windows
    )

    # a fine-tuned model, half-second windows: another run beside the first
    tuned = embed.run(embed_job(finetuned, s3_archive, out, "window_s=0.5"))
    assert tuned["model_kind"] == "finetune" and tuned["run_id"] != first["run_id"]
    assert tuned["other_runs_in_out"] == [first["run_id"]]
    halves = embed.read_windows(out, tuned["run_id"])
    assert len(halves) == sum(math.ceil(2 * s) for s in seconds.values())
    assert len(embed.read_windows(out)) == len(windows) + len(halves)

    with pytest.raises(InputError, match="does not divide"):
        embed.run(embed_job(pre, s3_archive, out, "window_s=0.3"))

    # search by example: a window of the archive finds itself first, at cosine 1
    query = f"{synth_archive / name}:3.0-4.0"
    with pytest.raises(InputError, match="2 runs .*name one with --run"):
        search.run(
            SearchJob(embeddings=out, model=pre, query=[query], top_k=5, out=str(tmp_path / "s"))
        )
    with pytest.raises(InputError, match="the same model"):
        search.run(
            SearchJob(
                embeddings=out,
                model=finetuned,
                query=[query],
                top_k=5,
                out=str(tmp_path / "s"),
                run=first["run_id"],
            )
        )
    hits = search.run(
        SearchJob(
            embeddings=out,
            model=pre,
            query=[query],
            top_k=5,
            out=str(tmp_path / "s"),
            label="rare",
            run=first["run_id"],
        )
    )
    assert list(hits["rank"]) == [1, 2, 3, 4, 5] and hits["score"].is_monotonic_decreasing
    assert (hits.loc[0, "file"], hits.loc[0, "offset_s"]) == (name, 3.0)
    assert hits.loc[0, "score"] == pytest.approx(1.0, abs=1e-5)
    assert hits.loc[0, "score"] > hits.loc[1, "score"]
    raven = (tmp_path / "s/hits.selections.txt").read_text()
    table = ann.read_any(raven.encode(), "hits")
    assert len(table) == 5 and set(table["label"]) == {"rare"}
    assert "File Offset (s)" in raven and "Score" in raven
    two = search.run(
        SearchJob(
            embeddings=out,
            model=pre,
            query=[query, f"{synth_archive / name}:3.0-4.0"],
            top_k=3,
            out=str(tmp_path / "t"),
            run=first["run_id"],
        )
    )
    assert list(two["file"]) == list(hits["file"][:3])  # the mean of one vector twice: itself


def test_the_review_loop_in_five_commands_on_s3(pre_windows, s3_archive, synth_archive):
    """docs/jobs.md's review loop, command by command (pretraining is the session's fixture, embedding the
    module's, both run as typed): embed the archive, search it with 3 calls of a class, review the hits (here against the
    ground truth: kept as the class, the rest marked negative in Raven's Annotation column),
    fine-tune on the reviewed table, label the archive with the new classifier. Everything on
    moto S3."""
    from pipelines import finetune, label

    pre, root, emb = pre_windows["pre"], "s3://a2v-test/loop", pre_windows["out"]
    common = ["--set", "tracking.enabled=false", "--set", "cluster.cpus_per_worker=0.5"]
    truth = ann.read_csv(synth_archive / "annotations.csv")
    calls = truth[truth["label"] == "synch"].sort_values(["file", "onset_s"])
    queries = [
        f"{s3_archive}/{c.file}:{c.onset_s:.3f}-{c.offset_s:.3f}"
        for c in calls.head(3).itertuples()
    ]

    # 3. search (--run: the module's other tests add runs to the same prefix)
    search.main(
        ["--embeddings", emb, "--run", pre_windows["run_id"], "--model", pre]
        + ["--top-k", "30", "--label", "synch"]
        + [arg for q in queries for arg in ("--query", q)]
        + ["--out", f"{root}/hits"]
    )
    # review: a hit overlapping a true synch call keeps its annotation, the others are negative
    hits = pd.read_csv(io.BytesIO(storage.read_bytes(f"{root}/hits/hits.selections.txt")), sep="\t")
    assert len(hits) == 30 and set(hits["Annotation"]) == {"synch"}

    def is_call(row) -> bool:
        on, off = row["File Offset (s)"], row["File Offset (s)"] + 1.0
        same = calls[calls["file"] == row["Begin Path"]]
        return bool(((same["onset_s"] < off) & (same["offset_s"] > on)).any())

    kept = hits.apply(is_call, axis=1)
    assert 0 < kept.sum() < len(hits), kept.sum()  # something to keep and something to reject
    hits.loc[~kept, "Annotation"] = "negative"
    storage.write_bytes(
        f"{root}/reviewed.selections.txt", hits.to_csv(sep="\t", index=False).encode()
    )

    # 4. fine-tune on the reviewed table, 5. label the archive with it
    finetune.main(
        ["--config", "configs/finetune/tiny.yaml", "--set", "loss.prior_prob=0.2"]
        + ["--archive", s3_archive, "--annotations", f"{root}/reviewed.selections.txt"]
        + ["--pretrained", pre, "--storage-path", f"{root}/runs", "--name", "review-1"]
        + ["--max-steps", "12", "--set", "run.validate_every_steps=6"]
        + ["--set", "optim.freeze_steps=6", *common]
    )
    with storage.fetched(f"{root}/runs/review-1/best") as local:
        _, _, meta = load_checkpoint(local)
    assert meta["classes"] == ["synch"] and meta["pretrained"] == pre
    splits = pd.read_csv(io.BytesIO(storage.read_bytes(f"{root}/runs/review-1/splits.csv")))
    reviewed = {
        (f, o // 10 * 10) for f, o in zip(hits["Begin Path"], hits["File Offset (s)"], strict=True)
    }
    assert set(zip(splits["path"], splits["offset_s"], strict=True)) == reviewed
    label.main(
        [
            "--model",
            f"{root}/runs/review-1/best",
            "--archive",
            s3_archive,
            "--out",
            f"{root}/labels",
        ]
        + ["--threshold", "0.01", "--formats", "parquet", *common]
    )
    events = label.read_events(f"{root}/labels")
    assert len(events) and set(events["label"]) == {"synch"}  # the reviewed class, only


def test_index_in_shards_and_search_it_like_the_exact_search(pre_windows, synth_archive, tmp_path):
    """`a2v index` builds one usearch shard per group of parts (Ray tasks) on S3; `a2v search
    --index` finds what the exact search finds; a rerun builds nothing; other settings at the
    same --out stop unless --overwrite."""
    from pipelines import index

    pre, root, run = pre_windows["pre"], "s3://a2v-test/indexed", pre_windows["run_id"]
    emb = pre_windows["out"]
    windows = embed.read_windows(emb, run)
    parts = [
        rel for rel, _ in storage.list_all(f"{emb}/windows/run={run}") if rel.endswith(".parquet")
    ]
    assert len(parts) >= 2, parts
    # f32: a 30-step model's windows differ in the 4th decimal of their cosine (int8 storage's
    # recall is tests/core/test_vector_index.py's and bench/index.py's business)
    idx = dict(shard_rows=len(windows) // 2, dtype="f32")
    built = index.run(IndexJob(embeddings=emb, out=f"{root}/idx", run=run, cpus_per_shard=1, **idx))
    assert len(built["shards"]) >= 2 and built["rows"] == len(windows)
    assert built["dim"] == 64 and built["model_version"] == pre_windows["model_version"]
    for s in built["shards"]:
        assert storage.exists(f"{root}/idx/shard-{s['shard']:05d}/index.usearch")

    name = sorted(windows["file"])[0]
    query = f"{synth_archive / name}:3.0-4.0"
    exact = search.run(
        SearchJob(
            embeddings=emb, model=pre, query=[query], top_k=10, out=str(tmp_path / "exact"), run=run
        )
    )
    approx = search.run(
        SearchJob(
            index=f"{root}/idx", model=pre, query=[query], top_k=10, out=str(tmp_path / "approx")
        )
    )
    cols = ["file", "offset_s", "duration_s", "channel", "archive"]
    assert list(approx.columns) == list(exact.columns)
    assert (approx.loc[0, "file"], approx.loc[0, "offset_s"]) == (name, 3.0)
    same = exact[cols].merge(approx[cols], on=cols)
    assert len(same) >= 9, (exact, approx)
    np.testing.assert_allclose(approx["score"], exact["score"], atol=1e-4)

    again = index.run(IndexJob(embeddings=emb, out=f"{root}/idx", run=run, **idx))
    assert again == built  # nothing rebuilt
    with pytest.raises(InputError, match="holds an index of other windows or settings"):
        index.run(IndexJob(embeddings=emb, out=f"{root}/idx", run=run, dtype="f16"))
    replaced = index.run(
        IndexJob(embeddings=emb, out=f"{root}/idx", run=run, dtype="f16", overwrite=True)
    )
    assert len(replaced["shards"]) == 1 and replaced["dtype"] == "f16"
    left = {rel.split("/")[0] for rel, _ in storage.list_all(f"{root}/idx")}
    assert left == {"index.json", "shard-00000"}, left  # the old shards went
