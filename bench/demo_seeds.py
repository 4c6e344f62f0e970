"""The demo's event F1 over several seeds: mean and spread of a whole chain (synth -> pretrain
-> finetune -> label -> score) on the tiny preset, each seed in a fresh output folder.

    python bench/demo_seeds.py --seeds 0 1 2 [--out bench_out/demo_seeds] [-- demo args]

Prints one row per seed (event F1 at any overlap and at IoU 0.5, valid micro-F1, wall time)
and mean +- sd. One run of a CPU-sized model is noise: compare settings by this table."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
F1 = re.compile(
    r"event F1 vs ground truth \(held-out\): ([0-9.]+) any overlap .*; ([0-9.]+) at IoU"
)
VALID = re.compile(r"valid micro-F1 ([0-9.]+)")


def one(seed: int, out: Path, extra: list[str]) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.time()
    cmd = [sys.executable, "-m", "pipelines.demo", "--out", str(out), "--seed", str(seed), *extra]
    res = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "RAY_ADDRESS": ""}
    )
    if res.returncode != 0:
        raise SystemExit(f"seed {seed} failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    f1, f1_5 = map(float, F1.search(res.stdout).groups())
    valid = float(VALID.search(res.stdout).group(1))
    return {"seed": seed, "f1": f1, "f1_iou50": f1_5, "valid_f1": valid, "wall_s": time.time() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default="bench_out/demo_seeds")
    ap.add_argument("demo_args", nargs="*", help="after --: passed to a2v demo")
    args = ap.parse_args()
    rows = []
    for seed in args.seeds:
        rows.append(one(seed, Path(args.out) / f"seed{seed}", args.demo_args))
        r = rows[-1]
        print(
            f"seed {seed}: event F1 {r['f1']:.3f} (IoU 0.5: {r['f1_iou50']:.3f}), "
            f"valid micro-F1 {r['valid_f1']:.3f}, {r['wall_s']:.0f} s",
            flush=True,
        )
    for key in ("f1", "f1_iou50", "valid_f1"):
        vals = [r[key] for r in rows]
        sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
        print(
            f"{key}: mean {statistics.mean(vals):.3f} sd {sd:.3f} (min {min(vals):.3f}, max {max(vals):.3f})"
        )


if __name__ == "__main__":
    main()
