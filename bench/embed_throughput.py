"""``a2v embed`` throughput: x real time with 1 and 2 actors against the bare model.

    python bench/embed_throughput.py --model demo_out/runs/pretrain-tiny/final
    python bench/embed_throughput.py --model CKPT --archive s3://bucket/some-hours --actors 1,2,4 \\
        --address auto                                            # a cluster

The baseline is the bare model in this process: the archive's files read with soundfile, cut
into the same 10 s chunks, normalised, embedded a batch at a time and pooled into windows
(``a2v_core.embeddings.window_means``), with as many torch threads as each actor gets. On a
local Ray the actors share all CPUs but one (kept for the read tasks). Then
``a2v embed`` (Ray Data reading + an actor pool + Parquet parts written to ``--out``) over the
same archive with each ``--actors`` count, each a fresh output. Prints audio hours, seconds,
x real time and the ratio to the bare model; the bare loop is what one process can do, so the
ratio says what Ray's reading, scheduling and writing cost (below 1) or win (above 1 with
more actors than one process uses cores).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import torch

from a2v_core.audio import chunk_offsets, normalise
from a2v_core.checkpoint import embedder_of, load_checkpoint
from a2v_core.config import EmbedJob
from a2v_core.config_loader import load_config
from a2v_core.embeddings import window_means
from a2v_core.encoder import flush_denormals
from pipelines import embed
from pipelines.data import storage
from pipelines.runtime.ray_init import init_ray
from pipelines.synth import write_archive

ROOT = Path(__file__).resolve().parents[1]


@torch.no_grad()
def bare(model_uri: str, files: list[Path], threads: int, batch: int, window_s: float) -> dict:
    """The bare model over local files: windows and seconds."""
    torch.set_num_threads(threads)
    flush_denormals()
    with storage.fetched(model_uri) as local:
        model = embedder_of(*load_checkpoint(local))
    cfg = model.model_cfg
    clip = 10.0
    t0 = time.perf_counter()
    windows, audio_s = 0, 0.0
    pending: list[tuple[np.ndarray, int]] = []

    def run(pending):
        x = torch.from_numpy(np.stack([a for a, _ in pending]))
        feats = model.embed(x).numpy()
        n = 0
        for f, (_, valid) in zip(feats, pending, strict=True):
            n_frames = int(np.ceil(valid / cfg.sample_rate_hz * cfg.frame_rate_hz))
            n += len(window_means(f, n_frames, cfg.frame_rate_hz, window_s)[0])
        return n

    for path in files:
        audio, sr = sf.read(path, dtype="float32", always_2d=True)
        audio = audio[:, 0]
        if sr != cfg.sample_rate_hz:
            raise SystemExit(f"{path}: {sr} Hz; the bench wants the model's {cfg.sample_rate_hz}")
        audio_s += len(audio) / sr
        n = int(clip * sr)
        for off in chunk_offsets(len(audio) / sr, clip):
            a = audio[int(off * sr) : int(off * sr) + n]
            valid = len(a)
            pending.append((normalise(np.pad(a, (0, n - valid))), valid))
            if len(pending) == batch:
                windows += run(pending)
                pending = []
    if pending:
        windows += run(pending)
    return {"windows": windows, "audio_h": audio_s / 3600, "seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", required=True, help="a pretraining or fine-tuned checkpoint")
    ap.add_argument("--archive", default=None, help="default: a synthetic one of --hours")
    ap.add_argument("--hours", type=float, default=0.5)
    ap.add_argument("--actors", default="1,2")
    ap.add_argument("--cpus-per-actor", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--window-s", type=float, default=1.0)
    ap.add_argument("--out", default=None, help="default: a temp dir, removed")
    ap.add_argument("--address", default=None)
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="a2v-embed-bench-"))
    try:
        archive = args.archive
        if archive is None:
            archive = str(tmp / "archive")
            write_archive(archive, args.hours, seed=11)
        out = args.out or str(tmp / "out")
        rows = []
        if not storage.is_remote(archive):
            files = sorted(p for p in Path(archive).rglob("*") if p.suffix.lower() == ".wav")
            threads = max(1, int(args.cpus_per_actor))
            b = bare(args.model, files, threads, args.batch_size, args.window_s)
            rows.append({"what": f"bare model ({threads} thread)", **b})
        init_ray(args.address)  # started before the clock: no row pays Ray's start-up
        for n in (int(a) for a in args.actors.split(",")):
            # locally, leave one CPU to the read tasks: actors holding every CPU starve the reading
            # (the Train/Data deadlock of small machines), and the run never ends
            cpus = args.cpus_per_actor
            if args.address is None:
                cpus = min(cpus, max(0.25, ((os.cpu_count() or 2) - 1) / n))
            job = load_config(
                EmbedJob,
                ROOT / "configs/embed/default.yaml",
                [
                    f"model={args.model}",
                    f"data.archive={archive}",
                    f"out={storage.join(out, f'actors-{n}')}",
                    f"window_s={args.window_s}",
                    f"batch_size={args.batch_size}",
                    f"cluster.num_actors={n}",
                    f"cluster.cpus_per_worker={cpus}",
                    "tracking.enabled=false",
                    "overwrite=true",
                ]
                + ([f"cluster.address={args.address}"] if args.address else []),
            )
            t0 = time.perf_counter()
            summary = embed.run(job)
            rows.append(
                {
                    "what": f"a2v embed, {n} actor(s) x {cpus:g} CPU",
                    "windows": summary["windows_written"],
                    "audio_h": summary["audio_hours"],
                    "seconds": time.perf_counter() - t0,
                }
            )
        table = pd.DataFrame(rows)
        table["x_real_time"] = table["audio_h"] * 3600 / table["seconds"]
        if rows[0]["what"].startswith("bare"):
            table["vs_bare"] = table["x_real_time"] / table["x_real_time"].iloc[0]
        print("\n== embedding throughput (1 s windows); vs_bare = x real time / the bare model's")
        print(table.to_markdown(index=False, floatfmt=".3f"))
        return table
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
