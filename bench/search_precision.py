"""Search by example on a synthetic archive: does ``a2v search`` find more calls of a rare class?

    python bench/search_precision.py --out outputs/search --model <pretrain ckpt> --model <finetuned ckpt>
    python bench/search_precision.py --out /tmp/s --archive /tmp/probe2k/archive \\
        --model /tmp/probe2k/runs/probe-pretrain/checkpoint_...   # an archive and run you have

The archive (``--archive`` with its ``annotations.csv``, else a synthetic one of ``--hours``) is
embedded by each ``--model`` with ``a2v embed`` (1 s windows). For each of ``--repeats`` draws,
``--queries`` calls of the class (default: the rarest) are the queries (their onset-offset
spans, through ``a2v search``'s own query embedding and ranking); the windows that overlap a
query call are left out of the ranking. A window is a true hit when it holds at least
``--min-overlap-s`` of a call of the class. Reported per model and for a log-mel baseline (the
window's mean 64-band log-mel, standardised over the archive, same cosine ranking): precision
at 10 and 50 (mean +- sd over draws), the random rate (the share of true windows) and
P@50 / random. The goal (#19): P@50 at least 5x the random rate.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from a2v_core.config import EmbedJob, ModelConfig
from a2v_core.config_loader import load_config
from pipelines import embed, search
from pipelines.data import storage
from pipelines.synth import write_archive

ROOT = Path(__file__).resolve().parents[1]


def true_windows(windows: pd.DataFrame, calls: pd.DataFrame, min_overlap_s: float) -> np.ndarray:
    """Per window: does it hold at least ``min_overlap_s`` (or all) of one of ``calls``?"""
    hit = np.zeros(len(windows), bool)
    by_file = {f: g for f, g in calls.groupby("file")}
    for i, (f, o, d) in enumerate(
        zip(windows["file"], windows["offset_s"], windows["duration_s"], strict=True)
    ):
        g = by_file.get(f)
        if g is None:
            continue
        overlap = np.minimum(g["offset_s"], o + d) - np.maximum(g["onset_s"], o)
        need = np.minimum(min_overlap_s, g["offset_s"] - g["onset_s"])
        hit[i] = bool((overlap >= need - 1e-9).any())
    return hit


def precision_at(truth: np.ndarray, ranked: np.ndarray, k: int) -> float:
    return float(truth[ranked[:k]].mean()) if len(ranked) else float("nan")


def ranked_ids(vectors: np.ndarray, queries: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Indices of the ``keep`` windows by cosine to the mean unit query, best first."""
    ids = np.flatnonzero(keep)
    proto = search.unit(search.unit(queries).mean(0))
    scores = search.unit(vectors[ids]) @ proto
    return ids[np.argsort(-scores, kind="stable")]


def logmel_windows(archive: str, windows: pd.DataFrame, model: ModelConfig) -> np.ndarray:
    import librosa
    import soundfile as sf

    hop, sr = model.hop_samples, model.sample_rate_hz
    out = np.zeros((len(windows), 64), np.float32)
    for f, rows in windows.groupby("file"):
        audio, _ = sf.read(str(Path(archive) / f), dtype="float32")
        mel = librosa.feature.melspectrogram(
            y=audio, sr=sr, n_fft=int(0.032 * sr), hop_length=hop, n_mels=64
        )
        db = librosa.power_to_db(mel, ref=1.0, top_db=None).T  # (frames, 64) at 200 Hz
        for i, o, d in zip(rows.index, rows["offset_s"], rows["duration_s"], strict=True):
            a = int(round(o * model.frame_rate_hz))
            out[i] = db[a : a + max(1, int(round(d * model.frame_rate_hz)))].mean(0)
    return out


def logmel_query(archive: str, call, model: ModelConfig) -> np.ndarray:
    one = pd.DataFrame(
        {
            "file": [call.file],
            "offset_s": [call.onset_s],
            "duration_s": [call.offset_s - call.onset_s],
        }
    )
    return logmel_windows(archive, one, model)[0]


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", default="outputs/search")
    ap.add_argument(
        "--archive", default=None, help="a local annotated archive (default: synthetic)"
    )
    ap.add_argument("--hours", type=float, default=0.5)
    ap.add_argument("--model", action="append", required=True, help="checkpoint(s) to embed with")
    ap.add_argument("--label", default=None, help="the class searched for (default: the rarest)")
    ap.add_argument("--queries", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5, help="draws of query calls")
    ap.add_argument("--min-overlap-s", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t0 = time.time()
    out = storage.absolute(args.out)
    archive = args.archive or storage.join(out, "archive")
    if not storage.exists(storage.join(archive, "annotations.csv")):
        write_archive(archive, args.hours, seed=args.seed)
    calls_all = pd.read_csv(Path(archive) / "annotations.csv")
    label = args.label or calls_all["label"].value_counts().idxmin()
    calls = calls_all[calls_all["label"] == label].reset_index(drop=True)
    rng = np.random.default_rng(args.seed)
    draws = [
        calls.iloc[rng.choice(len(calls), args.queries, replace=False)] for _ in range(args.repeats)
    ]

    def score(name: str, vectors: np.ndarray, windows: pd.DataFrame, query_vectors) -> dict:
        truth = true_windows(windows, calls, args.min_overlap_s)
        p10, p50 = [], []
        for d, q in zip(draws, query_vectors, strict=True):
            keep = ~true_windows(windows, d, 1e-6)  # the query calls' own windows are left out
            ranked = ranked_ids(vectors, q, keep)
            p10.append(precision_at(truth, ranked, 10))
            p50.append(precision_at(truth, ranked, 50))
        rate = float(truth.mean())
        row = {
            "features": name,
            "label": label,
            "windows": len(windows),
            "random": rate,
            "p@10": np.mean(p10),
            "p@10 sd": np.std(p10),
            "p@50": np.mean(p50),
            "p@50 sd": np.std(p50),
            "p@50 / random": np.mean(p50) / rate if rate else np.nan,
        }
        print(
            f"   {name}: P@10 {row['p@10']:.3f}, P@50 {row['p@50']:.3f} (random {rate:.3f}) ({time.time() - t0:.0f} s)"
        )
        return row

    rows = []
    model_cfg = None
    for i, ckpt in enumerate(args.model):
        job = load_config(
            EmbedJob,
            ROOT / "configs/embed/default.yaml",
            [
                f"model={ckpt}",
                f"data.archive={archive}",
                f"out={storage.join(out, f'emb{i}')}",
                "tracking.enabled=false",
            ],
        )
        summary = embed.run(job)
        windows = embed.read_windows(job.out, summary["run_id"])
        from a2v_core.checkpoint import embedder_of, load_checkpoint

        with storage.fetched(ckpt) as local:
            model = embedder_of(*load_checkpoint(local))
        model_cfg = model.model_cfg
        clip_s = summary["fingerprint"]["clip_s"]
        qv = [
            np.stack(
                [
                    search.query_embedding(
                        model,
                        model_cfg,
                        clip_s,
                        "first",
                        f"{Path(archive) / c.file}:{c.onset_s}-{c.offset_s}",
                    )
                    for c in d.itertuples()
                ]
            )
            for d in draws
        ]
        rows.append(
            score(
                f"{summary['model_kind']} {Path(ckpt).name}",
                np.stack(windows["embedding"]),
                windows,
                qv,
            )
        )
    mel = logmel_windows(archive, windows, model_cfg)
    mu, sd = mel.mean(0), mel.std(0) + 1e-6
    qv = [
        np.stack([(logmel_query(archive, c, model_cfg) - mu) / sd for c in d.itertuples()])
        for d in draws
    ]
    rows.append(score("log-mel", (mel - mu) / sd, windows, qv))
    table = pd.DataFrame(rows)
    md = table.to_markdown(index=False, floatfmt=".3f")
    storage.write_bytes(storage.join(out, "search.md"), (md + "\n").encode())
    print(
        f"\n== search by example: {args.queries} queries of '{label}' ({len(calls)} calls), {args.repeats} draws"
    )
    print(md)
    return table


if __name__ == "__main__":
    main()
