"""bench/ingest.py is the data layer's throughput check: keep it running (numbers are its own
business; this only checks that every row is measured and sane)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_ingest_bench_measures_every_row():
    out = subprocess.run(
        [
            sys.executable,
            "bench/ingest.py",
            "--hours",
            "0.25",
            "--cpus",
            "1",
            "--long-hours",
            "0.5",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        start_new_session=True,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rows = re.findall(r"^(local|s3)\s+(.+?)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)x", out.stdout, re.M)
    labels = {(src, label.strip()) for src, label, *_ in rows}
    for src in ("local", "s3"):
        assert {(src, "plain x1 procs"), (src, "default"), (src, "read_only=True")} <= labels
    for _, _, plain, ray, ratio in rows:
        assert float(plain) > 0 and float(ray) > 0
        assert abs(float(ray) / float(plain) - float(ratio)) < 0.01
    growth = re.search(r"peak RSS streaming one file: .* \(\+(-?\d+) MiB\)", out.stdout)
    assert growth and int(growth[1]) < 100, out.stdout
