"""Chunk throughput of the Ray Data datasource vs a plain single-process soundfile loop.

Same files, same chunking (10 s at 8 kHz, resample + normalise), this one run:
  1. local FLAC archive: datasource vs `for f in files: soundfile + iter_chunks`
  2. S3 (a moto server started here on 127.0.0.1): datasource vs a plain s3fs + soundfile loop
Prints audio hours/s, the ratio, and the ratio per core used (goal >= 0.9x per core), plus the
same plain loop split over as many processes as Ray has CPUs (the machine's ceiling for any
framework), and the peak RSS of streaming one 2-hour file vs a 10-minute one.

    python bench/ingest.py [--hours 16] [--cpus 2]

On a 2-core machine ``--cpus 1`` leaves Ray's driver and daemons (and moto) the other core, so
its ratio is the per-core cost of the reader itself; ``--cpus 2`` shares both cores with them.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from a2v_core.audio import iter_chunks  # noqa: E402
from a2v_core.config import DataConfig  # noqa: E402
from pipelines.data import storage  # noqa: E402


def make_archive(d: Path, hours: float) -> None:
    rng = np.random.default_rng(0)
    for i in range(int(hours * 60)):
        buf = io.BytesIO()
        sf.write(
            buf, (rng.standard_normal(8000 * 60) * 0.05).astype(np.float32), 8000, format="FLAC"
        )
        (d / f"f{i:04d}.flac").write_bytes(buf.getvalue())


def _plain_files(uri: str, rels: list[str]) -> float:
    fs, root = storage.filesystem(uri)
    audio_s = 0.0
    for rel in rels:
        with fs.open(f"{root}/{rel}", "rb") as f:
            for c in iter_chunks(f, 10.0, 8000):
                audio_s += c.valid_samples / 8000
    return audio_s


def plain_loop(uri: str) -> float:
    return _plain_files(uri, [rel for rel, _ in storage.list_files(uri, ["flac"])])


def plain_processes(uri: str, n: int) -> float:
    """Audio hours per second of the plain loop split over ``n`` processes (files dealt
    round-robin): what this machine gives ``n`` cores of the same work with no framework at
    all, i.e. the ceiling for Ray. Processes are spawned and warmed before the clock starts,
    as Ray's workers are."""
    import multiprocessing as mp

    rels = [rel for rel, _ in storage.list_files(uri, ["flac"])]
    with mp.get_context("spawn").Pool(n) as pool:
        pool.starmap(_plain_files, [(uri, [])] * n)  # start-up and imports, untimed
        t = time.perf_counter()
        audio_s = sum(pool.starmap(_plain_files, [(uri, rels[i::n]) for i in range(n)]))
        return audio_s / 3600 / (time.perf_counter() - t)


#: read-task CPU seconds of the last ray_loop (from Ray Data's own stats)
LAST_TASK_CPU_S = [0.0]


def ray_loop(uri: str, reserve: bool = True, chunks_per_block: int = 16) -> float:
    from pipelines.data.datasource import good_chunks, read_chunks

    audio_s = 0.0
    cfg = DataConfig(archive=uri, chunks_per_block=chunks_per_block)
    ds = good_chunks(read_chunks(cfg, read_only=not reserve))
    ds = ds.select_columns(["duration_s"])
    for batch in ds.iter_batches(batch_size=None):
        audio_s += float(batch["duration_s"].sum())
    cpu = re.search(r"Remote cpu time:.* ([0-9.]+)(ms|s) total", ds.stats())
    LAST_TASK_CPU_S[0] = float(cpu[1]) / (1000 if cpu[2] == "ms" else 1) if cpu else float("nan")
    return audio_s


def timed(fn, uri: str, *args) -> tuple[float, float]:
    """(audio hours per second of wall time, CPU seconds the work used: the process's own for
    the plain loop, the read tasks' for Ray)."""
    t, c = time.perf_counter(), time.process_time()
    audio_s = fn(uri, *args)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    return audio_s / 3600 / wall, (LAST_TASK_CPU_S[0] if fn is ray_loop else cpu)


def start_moto() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(url, timeout=1)
            break
        except Exception:
            time.sleep(0.2)
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": url,
        }
    )
    return proc, url


def peak_rss_mib(hours: float) -> float:
    code = (
        "import resource,sys; from bench.ingest import plain_loop; plain_loop(sys.argv[1]);"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    with tempfile.TemporaryDirectory() as d:
        with sf.SoundFile(f"{d}/long.flac", "w", 8000, 1, format="FLAC") as f:
            rng = np.random.default_rng(1)
            for _ in range(int(hours * 60)):
                f.write((rng.standard_normal(8000 * 60) * 0.05).astype(np.float32))
        out = subprocess.run(
            [sys.executable, "-c", code, d], capture_output=True, text=True, cwd=ROOT
        )
        return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--hours",
        type=float,
        default=16.0,
        help="archive size; below ~8 h Ray's fixed start-up cost dominates the ratio",
    )
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--chunks-per-block", type=int, default=16, help="data.chunks_per_block")
    ap.add_argument(
        "--long-hours", type=float, default=2.0, help="the long file of the peak-RSS check"
    )
    args = ap.parse_args()
    moto, _ = start_moto()
    import ray

    from pipelines.runtime.ray_init import local_ray_options

    try:
        ray.init(
            **local_ray_options(),  # workers ask their own State API
            num_cpus=args.cpus,
            log_to_driver=False,
            logging_level="ERROR",
        )
        ray.data.DataContext.get_current().enable_progress_bars = False
        with tempfile.TemporaryDirectory() as d:
            make_archive(Path(d), args.hours)
            storage.filesystem("s3://x")[0].mkdir("bench")
            storage.upload_dir(d, "s3://bench/archive")
            print(
                f"{args.hours} h of 1-minute 8 kHz FLAC files; Ray with {args.cpus} CPUs;"
                f" {args.chunks_per_block} chunks per block"
            )
            print(
                "ratio = Ray h/s / plain h/s; per core = ratio / CPUs; CPU eff. = plain CPU-s /"
                " Ray read-task CPU-s for the same audio (1.0 = no per-row overhead).\n"
                "'read_only=True': read_chunks(read_only=True) switches off Ray Data's"
                " resource reservation (it otherwise holds CPUs back for downstream operators:"
                " one read task at a time at first on 2 CPUs).\n"
                f"'plain x{args.cpus} procs': the plain loop split over {args.cpus} processes, no"
                " framework: the most this machine gives (its 'ray h/s' column is that loop's)."
            )
            head = f"{'source':<8}{'Ray Data context':<18}{'plain h/s':>10}{'ray h/s':>9}"
            print(f"{head}{'ratio':>8}{'per core':>10}{'CPU eff.':>10}")
            for name, uri in (("local", d), ("s3", "s3://bench/archive")):
                ray_loop(uri)  # warm-up (worker start, imports)
                plain, plain_cpu = timed(plain_loop, uri)
                par = plain_processes(uri, args.cpus)
                print(
                    f"{name:<8}{f'plain x{args.cpus} procs':<18}{plain:>10.3f}{par:>9.3f}"
                    f"{par / plain:>7.2f}x{par / plain / args.cpus:>9.2f}x{'':>10}"
                )
                for label, reserve in (("default", True), ("read_only=True", False)):
                    rayd, ray_cpu = timed(ray_loop, uri, reserve, args.chunks_per_block)
                    print(
                        f"{name:<8}{label:<18}{plain:>10.3f}{rayd:>9.3f}{rayd / plain:>7.2f}x"
                        f"{rayd / plain / args.cpus:>9.2f}x{plain_cpu / ray_cpu:>9.2f}x"
                    )
        r10, r120 = peak_rss_mib(10 / 60), peak_rss_mib(args.long_hours)
        print(
            f"peak RSS streaming one file: 10 min {r10:.0f} MiB, {args.long_hours:g} h {r120:.0f} MiB"
            f" (+{r120 - r10:.0f} MiB)"
        )
    finally:
        ray.shutdown()
        os.killpg(moto.pid, signal.SIGTERM)


if __name__ == "__main__":
    main()
