"""Search an archive's window embeddings by example (``a2v search``): more calls like these.

    a2v search --embeddings s3://bucket/emb --model demo_out/runs/pretrain-tiny/final \\
        --query s3://bucket/archive/site1/rec3.wav:12.4-13.1 --query call.wav --top-k 50 \\
        --label rare --out s3://bucket/search/rare-1

``--index`` (an ``a2v index`` of the run) instead of ``--embeddings`` searches approximately
(HNSW, every shard's top k merged): queries in milliseconds at any archive size.

Each ``--query FILE[:ONSET-OFFSET]`` (seconds; the whole file without) is embedded the way
``a2v embed`` embedded the archive: the file's 10 s chunks from its start, normalised as the
archive's were, through the same model (``--model`` must be the run's: its version is
checked), and the query's frames averaged. Several queries combine by the **mean of their
L2-normalised embeddings** (one prototype: Perch's agile-modeling default); hits are ranked by
cosine similarity between the prototype and every window of the run. The search is exact
(brute force over the run's committed window parts, one part in memory at a time, keeping the
best ``top_k``: memory does not grow with the archive, time does).

Writes ``<out>/hits.parquet`` (rank, score, archive, file, offset_s, duration_s, channel,
run_id) and ``<out>/hits.selections.txt``: a Raven Pro selection table (one row per hit,
``Begin Path``, ``Begin File``, ``File Offset (s)``, ``Score``; ``Annotation`` = ``--label``)
ready to review: keep a hit's annotation as the class, mark the others negative.
"""

from __future__ import annotations

import contextlib
import io
import json
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from a2v_core import annotations as ann
from a2v_core import vector_index
from a2v_core.audio import DecodeError, chunk_offsets, open_sound, read_window
from a2v_core.config import ModelConfig
from a2v_core.config_tools import SearchJob
from a2v_core.encoder import flush_denormals
from a2v_core.errors import InputError
from a2v_core.redact import redact_uri
from pipelines.data import storage
from pipelines.index import pick_run
from pipelines.inference.label_outputs import committed_parts
from pipelines.runtime.jobargs import add_fields, command, parser, tool_config
from pipelines.runtime.run_dir import open_checkpoint

_SPAN = re.compile(r"^(?P<file>.+?)(?::(?P<on>\d+(?:\.\d*)?)-(?P<off>\d+(?:\.\d*)?))?$")


def parse_query(text: str) -> tuple[str, float | None, float | None]:
    """``FILE[:ONSET-OFFSET]`` -> (file, onset, offset); InputError when the span is empty."""
    m = _SPAN.match(text)
    on, off = m["on"], m["off"]
    if on is None:
        return m["file"], None, None
    if float(off) <= float(on):
        raise InputError(f"--query {text}: the offset must come after the onset")
    return m["file"], float(on), float(off)


@torch.no_grad()
def query_embedding(
    model, model_cfg: ModelConfig, clip_s: float, channel: str, text: str, time_expansion: int = 1
):
    """The mean frame feature of one query span, computed chunk by chunk as ``a2v embed``
    computes the archive's (and read with the archive's time expansion: the query's times are
    real time too)."""
    uri, onset, offset = parse_query(text)
    fs, path = storage.filesystem(uri)
    if not fs.exists(path):
        raise InputError(f"--query {redact_uri(uri)}: not found")
    sr, rate = model_cfg.sample_rate_hz, model_cfg.frame_rate_hz
    try:
        with fs.open(path, "rb") as f, open_sound(f, time_expansion) as snd:
            duration = snd.frames / snd.samplerate
            onset, offset = onset or 0.0, min(offset or duration, duration)
            if onset >= duration:
                raise InputError(f"--query {text}: starts after the file's end ({duration:.2f} s)")
            frames = []
            for start in chunk_offsets(duration, clip_s):
                if start >= offset or start + clip_s <= onset:
                    continue
                chunk = read_window(snd, start, clip_s, sr, channel)
                feats = model.embed(torch.from_numpy(chunk.audio)[None])[0].numpy()
                a = max(0, int(round((onset - start) * rate)))
                b = min(
                    int(np.ceil(chunk.valid_samples / sr * rate)),
                    int(round((offset - start) * rate)),
                )
                frames.append(feats[a:b])
    except DecodeError as err:
        raise InputError(f"--query {redact_uri(uri)}: {err}") from None
    frames = np.concatenate(frames) if frames else np.zeros((0, model_cfg.width))
    if not len(frames):
        raise InputError(f"--query {text}: holds no whole frame of audio")
    return frames.mean(0)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def prototype(queries: np.ndarray) -> np.ndarray:
    """The mean of the unit query vectors, as a unit vector."""
    return unit(unit(np.asarray(queries, np.float32)).mean(0))


def best_of(rows: pd.DataFrame, top_k: int) -> pd.DataFrame:
    """The ``top_k`` rows by score; ties in archive, file and offset order."""
    key = ["score", "archive", "file", "offset_s"]
    return rows.sort_values(key, ascending=[False, True, True, True], kind="stable").head(top_k)


def search_parts(embeddings: str, run_id: str, queries: np.ndarray, top_k: int):
    """The ``top_k`` windows of run ``run_id`` nearest (cosine) the queries' prototype, over
    its committed window parts read one at a time (each file's newest rows only); returns
    (hits, windows searched)."""
    proto, best, n = prototype(queries), None, 0
    for uri, files in committed_parts(embeddings, "windows", run_id):
        table = pq.read_table(io.BytesIO(storage.read_bytes(uri)))
        table = table.filter(pc.is_in(table["file"], pa.array(sorted(files), table["file"].type)))
        if not table.num_rows:
            continue
        vectors = table["embedding"].combine_chunks().flatten().to_numpy()
        scores = unit(vectors.reshape(table.num_rows, -1).astype(np.float32)) @ proto
        k = min(top_k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        rows = table.drop_columns(["embedding"]).take(pa.array(top)).to_pandas()
        rows = rows.assign(score=scores[top].astype(float))
        best = best_of(rows if best is None else pd.concat([best, rows]), top_k)
        n += table.num_rows
    if best is None:
        raise InputError(f"--embeddings {redact_uri(embeddings)}: run {run_id} holds no windows")
    return ranked(best), n


def ranked(hits: pd.DataFrame) -> pd.DataFrame:
    """rank and score first, then the window's columns."""
    hits = hits.reset_index(drop=True)
    score = hits.pop("score")
    hits.insert(0, "score", score)
    hits.insert(0, "rank", np.arange(1, len(hits) + 1))
    return hits


def search_index(index_uri: str, manifest: dict, queries: np.ndarray, top_k: int) -> pd.DataFrame:
    """The ``top_k`` windows nearest the query prototype, from an ``a2v index`` (every shard's
    top k, merged), with the same columns as ``search_parts``."""
    proto = prototype(queries)
    shards = [s for s in manifest["shards"] if s["rows"]]
    with contextlib.ExitStack() as stack:
        folders = [stack.enter_context(storage.fetched(shard_folder(index_uri, s))) for s in shards]
        indexes = [vector_index.restore(f"{d}/index.usearch") for d in folders]
        keys, scores = vector_index.search_shards(indexes, proto, top_k)
        rows = pd.concat(
            [
                pq.read_table(
                    f"{d}/rows.parquet", filters=[("key", "in", keys.tolist())]
                ).to_pandas()
                for d in folders
            ],
            ignore_index=True,
        )
    rows = rows.set_index("key").loc[keys].reset_index(drop=True)
    rows.insert(0, "score", scores.astype(float))
    rows.insert(0, "rank", np.arange(1, len(rows) + 1))
    return rows.assign(model_version=manifest["model_version"], run_id=manifest["run_id"])


def shard_folder(index_uri: str, shard: dict) -> str:
    return storage.join(index_uri, f"shard-{shard['shard']:05d}")


def searched_run(
    embeddings: str | None, run_id: str | None, index: str | None
) -> tuple[str, dict, dict | None]:
    """(run id, the embed run's fingerprint, the index manifest or None) of what is searched."""
    if index:
        manifest_uri = storage.join(index, "index.json")
        if not storage.exists(manifest_uri):
            raise InputError(f"--index {redact_uri(index)}: no index.json (run `a2v index`)")
        manifest = json.loads(storage.read_bytes(manifest_uri))
        return manifest["run_id"], manifest["run"], manifest
    run_id = pick_run(embeddings, run_id)
    fp = json.loads(storage.read_bytes(storage.join(embeddings, "runs", f"{run_id}.json")))
    return run_id, fp, None


def write_hits(hits: pd.DataFrame, out: str, label: str, sample_rate_hz: int) -> None:
    """``hits.parquet`` and ``hits.selections.txt`` (one Raven table over the hits)."""
    buf = io.BytesIO()
    hits.to_parquet(buf, index=False)
    storage.write_bytes(storage.join(out, "hits.parquet"), buf.getvalue())
    table = pd.DataFrame(
        {
            "file": hits["file"],
            "onset_s": hits["offset_s"],
            "offset_s": hits["offset_s"] + hits["duration_s"],
            "label": label,
            "score": hits["score"],
            "channel": hits["channel"],
        }
    )
    raven = ann.to_raven(table, sample_rate_hz, combined=True)
    storage.write_bytes(storage.join(out, "hits.selections.txt"), raven.encode())


def run(cfg: SearchJob) -> pd.DataFrame:
    """Search the windows of ``cfg.embeddings`` (exact) or of ``cfg.index`` (approximate);
    a dry run: the first query, the top hit."""
    embeddings, index, model_uri, out = cfg.embeddings, cfg.index, cfg.model, cfg.out
    queries, top_k = (cfg.query[:1], 1) if cfg.dry_run else (cfg.query, cfg.top_k)
    run_id, fp, manifest = searched_run(embeddings, cfg.run, index)
    opened = open_checkpoint(model_uri, ("pretrain", "finetune"))
    version, model = opened.version, opened.model
    if version != fp["model_version"]:
        raise InputError(
            f"--model {redact_uri(model_uri)} is {version}; run {run_id} was embedded with "
            f"{fp['model_version']}: a query must be embedded by the same model"
        )
    flush_denormals()
    model_cfg = model.model_cfg
    print(model_cfg.hearing("search", fp.get("time_expansion", 1)))
    channel = fp.get("channel", "first")
    vectors = np.stack(
        [
            query_embedding(model, model_cfg, fp["clip_s"], channel, q, fp.get("time_expansion", 1))
            for q in queries
        ]
    )
    if index:
        hits = search_index(index, manifest, vectors, top_k)
        n_windows = manifest["rows"]
    else:
        hits, n_windows = search_parts(embeddings, run_id, vectors, top_k)
    write_hits(hits, out, cfg.label, model_cfg.sample_rate_hz)
    print(
        f"[search] {len(queries)} queries -> top {len(hits)} of {n_windows} windows of run "
        f"{run_id} (scores {hits['score'].max():.3f} .. {hits['score'].min():.3f}) -> {out}"
    )
    return hits


@command
def main(argv: list[str] | None = None) -> None:
    ap = parser("a2v search", __doc__)
    add_fields(ap, SearchJob, "the first query, the top hit")
    run(tool_config(SearchJob, ap.parse_args(argv)))


if __name__ == "__main__":
    main()
