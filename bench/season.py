"""A field season's numbers: labelling speed by file length, and the control plane at 10^4-10^5
files (listing, manifest, labelling, resubmission, driver memory, output objects).

    python bench/season.py short --model tests/data/fixed/model [--minutes 30]
    python bench/season.py scale --model tests/data/fixed/model --files 100000 --file-s 1.5

``short``: three archives of the same audio, in 1-minute, 3 s and 0.5 s files (8 kHz, the
model's rate), each labelled with short chunks bucketed (``bucket_s`` 0.5, the default) and
padded to a whole 10 s clip (``bucket_s`` 0, what every short file cost before); prints x real
time and the ratio to the 1-minute files of the same setting. Targets: 3 s files >= 0.8x and
0.5 s files >= 0.5x of 1-minute files.

``scale``: a season-shaped archive (``a2v synth --layout season``: site/night folders, names
repeating in every site) of ``--files`` files of ``--file-s`` seconds, then: listing
(``storage.list_versions``), ``a2v manifest``, ``a2v label`` (x real time, the driver's peak
memory sampled every 0.2 s, output objects), a resubmission of the same command (nothing to
do), and the resubmission's share of the first run's time. Writes ``<out>/season.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from a2v_core.config import LabelJob  # noqa: E402
from a2v_core.config_loader import load_config  # noqa: E402
from a2v_core.config_tools import ManifestJob, SynthJob  # noqa: E402
from a2v_core.synth import synth_recording  # noqa: E402
from pipelines import label, manifest  # noqa: E402
from pipelines.data import storage  # noqa: E402
from pipelines.synth import write_season  # noqa: E402

RATE_HZ = 8000


class PeakRSS:
    """This process's peak resident memory while the block runs (sampled every 0.2 s)."""

    def __enter__(self) -> PeakRSS:
        self.peak, self._stop = psutil.Process().memory_info().rss, threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        proc = psutil.Process()
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, proc.memory_info().rss)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def label_job(model: str, archive: str, out: str, *extra: str) -> LabelJob:
    return load_config(
        LabelJob,
        ROOT / "configs/label/default.yaml",
        [f"model={model}", f"data.archive={archive}", f"out={out}", "tracking.enabled=false"]
        + list(extra),
    )


def flat_archive(folder: Path, minutes: float, file_s: float, seed: int) -> int:
    """``minutes`` of audio in files of ``file_s`` (one folder per 1 000 files)."""
    n = max(1, round(minutes * 60 / file_s))
    for i in range(n):
        audio, _ = synth_recording(np.random.default_rng([seed, i]), file_s, RATE_HZ)
        path = folder / f"f{i // 1000:03d}/rec_{i:06d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, audio, RATE_HZ, subtype="PCM_16")
    return n


def short(args: argparse.Namespace, work: Path) -> dict:
    rows = {}
    warm = work / "warm-up"  # Ray's start and the first model load are no archive's cost
    flat_archive(warm, 1, 60.0, seed=99)
    label.run(label_job(args.model, str(warm), str(work / "warm-up-labels"), *args.set))
    for file_s in (60.0, 3.0, 0.5):
        archive = work / f"archive_{file_s:g}s"
        n = flat_archive(archive, args.minutes, file_s, seed=int(file_s * 10))
        for bucket in (0.5, 0.0):
            out = work / f"labels_{file_s:g}_{bucket:g}"
            extra = (f"bucket_s={bucket}", *args.set)
            s = label.run(label_job(args.model, str(archive), str(out), *extra))
            rows[(file_s, bucket)] = {"files": n, "x_real_time": s["x_real_time"]}
    print(
        f"\n{'file length':>12} {'files':>6} {'bucketed x rt':>14} {'ratio':>6}"
        f" {'whole clip x rt':>16} {'ratio':>6}"
    )
    table = []
    for file_s in (60.0, 3.0, 0.5):
        b, c = rows[(file_s, 0.5)], rows[(file_s, 0.0)]
        rb = b["x_real_time"] / rows[(60.0, 0.5)]["x_real_time"]
        rc = c["x_real_time"] / rows[(60.0, 0.0)]["x_real_time"]
        print(
            f"{file_s:>11g}s {b['files']:>6} {b['x_real_time']:>14.1f} {rb:>6.2f}"
            f" {c['x_real_time']:>16.1f} {rc:>6.2f}"
        )
        table.append(
            {
                "file_s": file_s,
                "files": b["files"],
                "bucketed_x_rt": b["x_real_time"],
                "bucketed_ratio": rb,
                "whole_clip_x_rt": c["x_real_time"],
                "whole_clip_ratio": rc,
            }
        )
    return {"short": table}


def season_config(args: argparse.Namespace, archive: str) -> SynthJob:
    return SynthJob(
        out=archive,
        layout="season",
        sites=args.sites,
        nights=2,
        file_s=args.file_s,
        gap_s=math.ceil(args.file_s) - args.file_s,  # whole seconds apart: names stay unique
        sample_rate_hz=RATE_HZ,
    )


def scale(args: argparse.Namespace, work: Path) -> dict:
    archive = str(work / "season")
    shutil.rmtree(work / "labels", ignore_errors=True)  # a fresh run, not a resumed one
    t0 = time.perf_counter()
    if args.reuse_archive and (work / "season/annotations.csv").exists():
        n_files = len(storage.list_files(archive, ["wav"]))
    else:
        n_files = write_season(season_config(args, archive), args.files).attrs["n_files"]
    synth_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    listed = storage.list_versions(archive, ["wav"])
    list_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    manifest.run(ManifestJob(archive=archive, out=str(work / "manifest.parquet")))
    manifest_s = time.perf_counter() - t0
    out = str(work / "labels")
    job = label_job(args.model, archive, out, *args.set)
    with PeakRSS() as rss:
        before = rss.peak
        first = label.run(job)
    t0 = time.perf_counter()
    again = label.run(label_job(args.model, archive, out, *args.set))
    resubmit_s = time.perf_counter() - t0
    objects = len(storage.list_all(out))
    result = {
        "files": n_files,
        "file_s": args.file_s,
        "audio_h": first["audio_hours"],
        "synth_s": synth_s,
        "list_s": list_s,
        "listed": len(listed),
        "manifest_s": manifest_s,
        "label_wall_s": first["wall_s"],
        "label_x_real_time": first["x_real_time"],
        "driver_rss_before_mb": before / 2**20,
        "driver_peak_rss_mb": rss.peak / 2**20,
        "output_objects": objects,
        "objects_per_1000_files": 1000 * objects / n_files,
        "resubmit_s": resubmit_s,
        "resubmit_skipped": again["files_skipped_done"],
        "resubmit_vs_label": resubmit_s / first["wall_s"],
    }
    for k, v in result.items():
        print(f"{k:>24}: {v:.3f}" if isinstance(v, float) else f"{k:>24}: {v}")
    return {"scale": result}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["short", "scale"])
    ap.add_argument("--model", default=str(ROOT / "tests/data/fixed/model"))
    ap.add_argument("--minutes", type=float, default=30.0, help="short: audio per archive")
    ap.add_argument("--files", type=int, default=10_000, help="scale: recordings")
    ap.add_argument("--file-s", type=float, default=1.5, help="scale: seconds per recording")
    ap.add_argument("--sites", type=int, default=10, help="scale: site folders (x 2 nights)")
    ap.add_argument("--set", action="append", default=[], help="label --set overrides")
    ap.add_argument("--out", default=None, help="keep the archives and outputs here")
    ap.add_argument(
        "--reuse-archive", action="store_true", help="scale: the archive --out holds already"
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.out or tmp)
        work.mkdir(parents=True, exist_ok=True)
        result = (short if args.what == "short" else scale)(args, work)
        (work / f"season_{args.what}.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
