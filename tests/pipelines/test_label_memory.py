"""Labelling one multi-hour file: peak memory does not grow with the file's length."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.pipelines.test_memory import write_long_flac

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

LABEL = """
import sys
from a2v_core.config import LabelJob
from pipelines import label
job = LabelJob(model=sys.argv[1], out=sys.argv[3], formats=["parquet", "raven"])
job.data.archive = sys.argv[2]
job.tracking.enabled = False
job.cluster.cpus_per_worker = 1.0
s = label.run(job)
print("CHUNKS", s["chunks_processed"], s["events_written"])
"""


def peak_rss_mib(model: str, archive: Path, out: Path) -> tuple[float, int]:
    """Run the labelling job in its own process tree (its own local Ray); poll every process
    of the tree and return the largest per-process peak RSS (driver, read tasks, actors)."""
    env = {"RAY_AUTH_MODE": "disabled", "PATH": str(Path(sys.executable).parent), "HOME": str(out)}
    proc = subprocess.Popen(
        [sys.executable, "-c", LABEL, model, str(archive), str(out)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env=env,
    )
    peaks: dict[int, float] = {}
    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        for p in tree:
            try:
                name = " ".join(p.cmdline()[:3])
                if "python" in name or "ray::" in name:
                    peaks[p.pid] = max(peaks.get(p.pid, 0.0), p.memory_info().rss / 2**20)
            except psutil.Error:
                pass
        time.sleep(0.2)
    text = proc.stdout.read()
    assert proc.returncode == 0, text[-3000:]
    chunks = int(text.split("CHUNKS")[1].split()[0])
    return max(peaks.values()), chunks


def test_multi_hour_file_labels_in_bounded_memory(finetuned, tmp_path):
    short, long = tmp_path / "short", tmp_path / "long"
    short.mkdir()
    long.mkdir()
    write_long_flac(short / "ten_minutes.flac", 10 / 60)
    write_long_flac(long / "two_hours.flac", 2.0)
    peak_short, n_short = peak_rss_mib(finetuned, short, tmp_path / "out_short")
    peak_long, n_long = peak_rss_mib(finetuned, long, tmp_path / "out_long")
    assert (n_short, n_long) == (60, 720)
    # the 2-hour file is 220 MiB as float32 at 8 kHz: holding it anywhere would show here
    assert peak_long - peak_short < 80, (peak_short, peak_long)
