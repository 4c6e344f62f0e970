"""a2v embed: window embeddings of an S3 archive from a pretraining checkpoint on S3 and from
a fine-tuned model, into one prefix; exact pooling, resume without duplicates."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch

from a2v_core import annotations as ann
from a2v_core.audio import normalise
from a2v_core.checkpoint import embedder_of, load_checkpoint
from a2v_core.config import EmbedJob
from a2v_core.config_loader import load_config
from a2v_core.errors import InputError
from pipelines import embed, search
from pipelines.data import storage

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def embed_job(model: str, archive: str, out: str, *extra: str) -> EmbedJob:
    return load_config(
        EmbedJob,
        ROOT / "configs/embed/default.yaml",
        [
            f"model={model}",
            f"data.archive={archive}",
            f"out={out}",
            "tracking.enabled=false",
            "cluster.cpus_per_worker=0.5",
            *extra,
        ],
    )


def test_embed_pretrained_and_finetuned_into_one_prefix(
    s3_pretrained, s3_archive, finetuned, synth_archive, tmp_path
):
    out = "s3://a2v-test/embeddings"
    pre = s3_pretrained["result"]["checkpoint"]
    files = sorted(synth_archive.rglob("*.wav"))
    seconds = {str(f.relative_to(synth_archive)): sf.info(f).duration for f in files}
    first = embed.run(embed_job(pre, s3_archive, out))
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
        search.run(out, pre, [query], 5, str(tmp_path / "s"))
    with pytest.raises(InputError, match="the same model"):
        search.run(out, finetuned, [query], 5, str(tmp_path / "s"), run_id=first["run_id"])
    hits = search.run(out, pre, [query], 5, str(tmp_path / "s"), "rare", first["run_id"])
    assert list(hits["rank"]) == [1, 2, 3, 4, 5] and hits["score"].is_monotonic_decreasing
    assert (hits.loc[0, "file"], hits.loc[0, "offset_s"]) == (name, 3.0)
    assert hits.loc[0, "score"] == pytest.approx(1.0, abs=1e-5)
    assert hits.loc[0, "score"] > hits.loc[1, "score"]
    raven = (tmp_path / "s/hits.selections.txt").read_text()
    table = ann.read_any(raven.encode(), "hits")
    assert len(table) == 5 and set(table["label"]) == {"rare"}
    assert "File Offset (s)" in raven and "Score" in raven
    two = search.run(
        out,
        pre,
        [query, f"{synth_archive / name}:3.0-4.0"],
        3,
        str(tmp_path / "t"),
        run_id=first["run_id"],
    )
    assert list(two["file"]) == list(hits["file"][:3])  # the mean of one vector twice: itself
