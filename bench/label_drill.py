"""Resubmission drill for ``a2v label`` on S3 (a moto server started here on 127.0.0.1).

Three archives (A and B share every file name, as AudioMoth recorders do; C has its own) are
labelled into one prefix. Each archive's labelling is killed mid-run twice (SIGKILL to the
driver's process group, after its first and its second commit) and resubmitted until it
ends; then the threshold changes and every archive is resubmitted once more. The same jobs run
uninterrupted into a reference prefix. Printed per run: files labelled, duplicates, files
missing, and whether the events equal the reference run's.

    python bench/label_drill.py [--files 8] [--file-s 10]

The model is the tiny preset at its initial weights with the head scaled so that frame
probabilities straddle the thresholds (plumbing, not quality: events of many lengths).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ingest import start_moto  # noqa: E402

from a2v_core.checkpoint import save_checkpoint  # noqa: E402
from a2v_core.config import FinetuneJob  # noqa: E402
from a2v_core.config_loader import load_config, to_yaml  # noqa: E402
from a2v_core.finetune import FrameClassifier  # noqa: E402
from pipelines.data import storage  # noqa: E402
from pipelines.inference.label_outputs import journal, read_events  # noqa: E402
from pipelines.synth import write_archive  # noqa: E402

CLASSES = ["agg", "al", "cc", "ld", "mo", "sn", "soc", "synch"]
BUCKET = "s3://drill"


def make_model(d: Path) -> str:
    job = load_config(FinetuneJob, ROOT / "configs/finetune/tiny.yaml")
    model = FrameClassifier(job.model, n_classes=len(CLASSES))
    with torch.no_grad():  # probabilities around the drill's thresholds: events of many lengths
        model.head.bias.fill_(math.log(0.04 / 0.96))
        model.head.weight.mul_(20.0)
    meta = {"kind": "finetune", "classes": CLASSES, "sample_rate_hz": 8000, "frame_rate_hz": 200.0}
    save_checkpoint(d, {"model": model.state_dict()}, to_yaml(job), meta)
    return str(d)


def label_cmd(model: str, archive: str, out: str, threshold: float) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pipelines.label",
        *("--model", model, "--archive", archive, "--out", out),
        *("--threshold", str(threshold), "--formats", "parquet,raven,csv"),
        *("--set", "tracking.enabled=false", "--set", "flush_every_files=1"),
        *("--set", "flush_every_s=0"),
        *("--set", "cluster.cpus_per_worker=0.5"),
        # one chunk per block and batch: files finish (and commit) one by one, so that a kill
        # after a commit lands while the job still has files to do
        *("--set", "data.chunks_per_block=1", "--set", "batch_size=1"),
    ]


def markers(out: str) -> int:
    base = storage.join(out, "_progress")
    return len(storage.list_all(base)) if storage.exists(base) else 0


def run_killed_after(cmd: list[str], out: str, commits: int, env: dict) -> bool:
    """Start ``cmd``; SIGKILL its process group once ``out`` holds ``commits`` more commit
    markers. True if the kill landed before the job ended."""
    before = markers(out)
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    while proc.poll() is None and markers(out) < before + commits:
        time.sleep(0.1)
    killed = proc.poll() is None
    if killed:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return killed


def run_to_end(cmd: list[str], env: dict) -> None:
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, start_new_session=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--file-s", type=float, default=10.0)
    args = ap.parse_args()
    moto, _ = start_moto()
    env = {**os.environ, "RAY_ADDRESS": "", "RAY_AUTH_MODE": "disabled"}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            model = make_model(Path(tmp) / "model")
            storage.filesystem(BUCKET)[0].mkdir("drill")
            hours = args.files * args.file_s / 3600
            archives = {}
            for name, seed in (("siteA", 1), ("siteB", 2), ("siteC", 3)):
                local = Path(tmp) / name
                write_archive(str(local), hours, seed=seed, file_s=args.file_s)
                if name == "siteC":  # names of its own
                    for f in sorted(local.rglob("*.wav")):
                        f.rename(f.with_name(f"C_{f.name}"))
                (local / "annotations.csv").unlink()
                archives[name] = f"{BUCKET}/{name}"
                storage.upload_dir(local, archives[name])
            out, ref = f"{BUCKET}/out", f"{BUCKET}/ref"
            t0 = time.time()
            kills = 0
            for threshold, interrupted in ((0.03, True), (0.05, False)):
                for archive in archives.values():
                    cmd = label_cmd(model, archive, out, threshold)
                    if interrupted:
                        kills += run_killed_after(cmd, out, 1, env)
                        kills += run_killed_after(cmd, out, 1, env)
                    run_to_end(cmd, env)
                    run_to_end(label_cmd(model, archive, ref, threshold), env)
            wall = time.time() - t0
            runs = sorted(r.split("/")[-1] for r, _ in storage.list_all(f"{out}/runs"))
            print(
                f"{kills} driver kills landed mid-run; {len(runs)} runs under {out} ({wall:.0f} s)"
            )
            print(
                f"{'run':<28} {'files':>5} {'events':>7} {'dupes':>5} {'missing':>7} {'= ref':>6}"
            )
            ok = True
            for run_file in runs:
                run = run_file.removesuffix(".json")
                got, want = read_events(out, run), read_events(ref, run)
                files = set(journal(out, run)[0])
                archive = json.loads(storage.read_bytes(f"{out}/runs/{run_file}"))["archive"]
                listed = {r for r, _ in storage.list_files(archive, ["wav"])}
                dupes = int(got.duplicated(["file", "onset_s", "label"]).sum())
                missing = len(listed - files)
                same = got.drop(columns="run_id").equals(want.drop(columns="run_id"))
                ok &= dupes == 0 and missing == 0 and same
                print(
                    f"{run:<28} {len(files):>5} {len(got):>7} {dupes:>5} {missing:>7} {same!s:>6}"
                )
            print("drill:", "PASS" if ok and len(runs) == 6 else "FAIL")
    finally:
        os.killpg(moto.pid, signal.SIGTERM)
        moto.wait(timeout=30)


if __name__ == "__main__":
    main()
