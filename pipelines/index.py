"""Index a run of window embeddings for fast search by example (``a2v index``).

    a2v index --embeddings s3://bucket/emb --out s3://bucket/emb-index [--run RUN] \\
        [--shard-rows 2000000] [--dtype f16] [--address auto]
    a2v search --index s3://bucket/emb-index --model ... --query rec3.wav:12.4-13.1 --out ...

The run's committed window parts (``a2v embed``; each file's newest rows only) are grouped
into shards of at most ``--shard-rows`` windows, and one Ray task per shard builds a usearch
HNSW index (cosine; vectors stored as ``--dtype``: f16 by default, recall@50 0.98 on 1 M
windows in ``bench/index.py``; i8 builds in half the time and memory at recall 0.92) with ``--cpus-per-shard`` threads, in
parallel over the cluster. A shard that does not fit one machine's memory is a smaller
``--shard-rows``: memory per shard is about rows x (width x bytes per value + 200 B of links).

``<out>/shard-NNNNN/index.usearch`` (the index; its keys are NNNNN x 2^40 + row),
``rows.parquet`` (key, archive, file, offset_s, duration_s, channel) and ``done.json`` (the
shard's commit marker, written last), and ``<out>/index.json`` (the run's fingerprint, model
version, shards; written when every shard is done). A rerun builds only the shards without a
marker; an ``--out`` that holds the index of another run or other settings stops the job
(``--overwrite`` replaces it).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import usearch

from a2v_core import vector_index
from a2v_core.config_tools import IndexJob
from a2v_core.errors import InputError
from a2v_core.redact import redact_uri
from pipelines.data import storage
from pipelines.inference.label_outputs import committed_parts, read_committed, runs_under
from pipelines.runtime.jobargs import add_fields, command, parser, tool_config
from pipelines.runtime.ray_init import init_ray

KEY_BITS = 40  # a shard's keys: shard number x 2^40 + row (a trillion rows per shard)
ROW_COLUMNS = ["archive", "file", "offset_s", "duration_s", "channel", "source_rate_hz"]


def window_rows(uri: str, files: set[str]) -> pd.DataFrame:
    """A part's committed windows (ROW_COLUMNS and the embedding); parts embedded before the
    files' own rate was kept read as ``source_rate_hz`` 0 (unknown)."""
    try:
        return read_committed(uri, files, ROW_COLUMNS + ["embedding"])
    except (KeyError, ValueError):  # pyarrow: no such column in an older part
        older = [c for c in ROW_COLUMNS if c != "source_rate_hz"] + ["embedding"]
        return read_committed(uri, files, older).assign(source_rate_hz=0)


def pick_run(embeddings: str, run_id: str | None) -> str:
    runs = runs_under(embeddings)
    if run_id is None:
        if len(runs) != 1:
            raise InputError(
                f"--embeddings {redact_uri(embeddings)}: "
                + (
                    f"{len(runs)} runs ({', '.join(runs)}): name one with --run"
                    if runs
                    else "no committed windows"
                )
            )
        return runs[0]
    if run_id not in runs:
        raise InputError(
            f"--run {run_id}: not a run under {redact_uri(embeddings)} ({', '.join(runs)})"
        )
    return run_id


def row_count(uri: str) -> int:
    """A Parquet part's rows, from its footer only (the shard task reads the part itself)."""
    fs, path = storage.filesystem(uri)
    with fs.open(path, "rb") as f:
        return pq.ParquetFile(f).metadata.num_rows


def plan_shards(parts: list[tuple[str, set[str], int]], shard_rows: int) -> list[list[int]]:
    """Consecutive parts grouped into shards of at most ``shard_rows`` rows (a part larger
    than that is a shard of its own): -> the parts' positions per shard."""
    shards: list[list[int]] = []
    rows = 0
    for i, (_, _, n) in enumerate(parts):
        if not shards or rows + n > shard_rows:
            shards.append([])
            rows = 0
        shards[-1].append(i)
        rows += n
    return shards


def build_shard(
    number: int,
    parts: list[tuple[str, list[str]]],
    out: str,
    dtype: str,
    connectivity: int,
    expansion_add: int,
    threads: int,
) -> dict:
    """Read the shard's windows, build and upload its index, rows and commit marker."""
    t0 = time.time()
    frames = [window_rows(uri, set(files)) for uri, files in parts]
    rows = pd.concat([f for f in frames if len(f)] or frames, ignore_index=True)
    keys = (number << KEY_BITS) + np.arange(len(rows), dtype=np.int64)
    folder = storage.join(out, shard_name(number))
    with tempfile.TemporaryDirectory() as tmp:
        if len(rows):  # a shard whose files were all embedded again later holds no window
            vectors = np.stack(rows["embedding"].to_numpy()).astype(np.float32)
            index = vector_index.build(vectors, keys, dtype, connectivity, expansion_add, threads)
            index.save(os.path.join(tmp, "index.usearch"))
        rows[ROW_COLUMNS].assign(key=keys).to_parquet(os.path.join(tmp, "rows.parquet"))
        storage.upload_dir(tmp, folder)
    dim = int(vectors.shape[1]) if len(rows) else None
    marker = {"shard": number, "rows": int(len(rows)), "dim": dim, "parts": [u for u, _ in parts]}
    storage.write_bytes(storage.join(folder, "done.json"), json.dumps(marker).encode())
    return {**marker, "seconds": round(time.time() - t0, 1)}


def shard_name(number: int) -> str:
    return f"shard-{number:05d}"


def run_parts(embeddings: str, run_id: str | None, dry_run: bool) -> tuple[str, dict, list]:
    """(run id, the run's fingerprint, its committed parts as (uri, files, rows))."""
    run_id = pick_run(embeddings, run_id)
    fp = json.loads(storage.read_bytes(storage.join(embeddings, "runs", f"{run_id}.json")))
    listed = committed_parts(embeddings, "windows", run_id)
    if dry_run:
        listed = listed[:1]
    parts = [(uri, files, row_count(uri)) for uri, files in listed]
    if not parts:
        raise InputError(f"--embeddings {redact_uri(embeddings)}: run {run_id} has no windows")
    return run_id, fp, parts


def build_shards(
    todo: list[int], shards: list, parts: list, out: str, settings: dict, cpus: int, address
) -> None:
    """Build the shards numbered ``todo`` as Ray tasks (each writes its done.json)."""
    import ray  # noqa: PLC0415 (only when there is work for the cluster)

    init_ray(address)
    task = ray.remote(num_cpus=cpus, max_retries=2)(build_shard)
    refs = [
        task.remote(
            n,
            [(parts[i][0], sorted(parts[i][1])) for i in shards[n]],
            out,
            settings["dtype"],
            settings["connectivity"],
            settings["expansion_add"],
            cpus,
        )
        for n in todo
    ]
    for done in ray.get(refs):
        print(f"[index] shard {done['shard']}: {done['rows']:,} windows ({done['seconds']} s)")


def identity(embeddings: str, run_id: str, parts: list, settings: dict) -> dict:
    """What an index is of: the run, its committed parts (by content) and the settings."""
    content = hashlib.sha256("\n".join(uri for uri, _, _ in parts).encode()).hexdigest()[:16]
    return {
        "embeddings": redact_uri(embeddings.rstrip("/")),
        "run_id": run_id,
        "parts": content,
        **settings,
    }


def index_manifest(out: str, ident: dict, fp: dict, n_shards: int, dry_run: bool) -> dict:
    """``index.json`` of the built shards: identity, model, dimensions and rows per shard."""
    built = [
        json.loads(storage.read_bytes(storage.join(out, shard_name(n), "done.json")))
        for n in range(n_shards)
    ]
    return {
        **ident,
        "model_version": fp["model_version"],
        "run": fp,
        "dim": next((b["dim"] for b in built if b["dim"]), None),
        "metric": "cos",
        "rows": sum(b["rows"] for b in built),
        "shards": [{"shard": b["shard"], "rows": b["rows"]} for b in built],
        "usearch": usearch.__version__,
        "dry_run": dry_run,
    }


def run(cfg: IndexJob) -> dict:
    """Build (or finish building) the index of one run; -> the index's ``index.json``.
    inputs (the run's parts) -> plan (shards, those not built yet) -> build -> manifest."""
    t0, out, shard_rows, dtype = time.time(), cfg.out, cfg.shard_rows, cfg.dtype
    run_id, fp, parts = run_parts(cfg.embeddings, cfg.run, cfg.dry_run)
    settings = {
        "dtype": dtype,
        "connectivity": cfg.connectivity,
        "expansion_add": cfg.expansion_add,
        "shard_rows": shard_rows,
    }
    ident = identity(cfg.embeddings, run_id, parts, settings)
    held = finished_index(out, ident, cfg.overwrite)
    if held is not None:
        print(f"[index] {redact_uri(out)} already indexes run {run_id}: nothing to do")
        return held
    marker_uri = storage.join(out, "_building.json")
    storage.write_bytes(marker_uri, json.dumps(ident).encode())
    shards = plan_shards(parts, shard_rows)
    done = [
        storage.exists(storage.join(out, shard_name(n), "done.json")) for n in range(len(shards))
    ]
    todo = [n for n, d in enumerate(done) if not d]
    print(
        f"[index] run {run_id}: {sum(n for _, _, n in parts):,} windows in {len(parts)} parts -> "
        f"{len(shards)} shard(s) of <= {shard_rows:,} ({len(shards) - len(todo)} already built); "
        f"usearch HNSW {dtype}, M={cfg.connectivity}, efC={cfg.expansion_add} -> {redact_uri(out)}",
        flush=True,
    )
    if todo:
        build_shards(todo, shards, parts, out, settings, cfg.cpus_per_shard, cfg.address)
    manifest = index_manifest(out, ident, fp, len(shards), cfg.dry_run)
    storage.write_bytes(storage.join(out, "index.json"), json.dumps(manifest, indent=1).encode())
    storage.remove(marker_uri)
    print(f"[index] {manifest['rows']:,} windows indexed in {time.time() - t0:.0f} s")
    return manifest


def finished_index(out: str, ident: dict, overwrite: bool) -> dict | None:
    """The finished index of these windows and settings at ``out`` (None: none yet; a build
    of them left half done resumes). An index or build of anything else stops the job, or with
    ``overwrite`` is removed (its shards and manifests only)."""
    for name in ("index.json", "_building.json"):
        uri = storage.join(out, name)
        if not storage.exists(uri):
            continue
        held = json.loads(storage.read_bytes(uri))
        if {k: held.get(k) for k in ident} == ident:
            if name == "index.json":
                return held
            continue
        if not overwrite:
            diff = {k: held.get(k) for k in ident if held.get(k) != ident[k]}
            raise InputError(
                f"--out {redact_uri(out)} holds an index of other windows or settings "
                f"({diff}); choose another --out, or --overwrite to replace it"
            )
        for rel, _ in storage.list_all(out):
            if rel.startswith("shard-") or rel in ("index.json", "_building.json"):
                storage.remove(storage.join(out, rel))
    return None


@command
def main(argv: list[str] | None = None) -> None:
    ap = parser("a2v index", __doc__)
    add_fields(ap, IndexJob, "index the first part")
    run(tool_config(IndexJob, ap.parse_args(argv)))


if __name__ == "__main__":
    main()
