"""Peak memory of streaming a file is bounded by the chunk size, not by the file length."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.audio import write_long_flac

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

PROBE = """
import resource, sys
from a2v_core.config import DataConfig
from pipelines.data import storage
from pipelines.data.datasource import plan_units, read_unit
cfg = DataConfig(archive=sys.argv[1])
fs, root = storage.filesystem(cfg.archive)
units = plan_units(cfg, storage.list_files(cfg.archive, cfg.extensions))
n = 0
for unit in units:
    for row in read_unit(cfg, fs, root, unit):
        assert row["error_type"] == "", row["error_message"]
        n += 1
print(n, len(units), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss_kib(archive: Path) -> tuple[int, int, int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(archive)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    chunks, units, rss = map(int, out.stdout.split())
    return chunks, units, rss


def test_two_hour_file_streams_in_bounded_memory(tmp_path):
    short, long = tmp_path / "short", tmp_path / "long"
    short.mkdir()
    long.mkdir()
    write_long_flac(short / "ten_minutes.flac", 10 / 60)
    write_long_flac(long / "two_hours.flac", 2.0)
    n_short, _, rss_short = peak_rss_kib(short)
    n_long, units_long, rss_long = peak_rss_kib(long)
    assert (n_short, n_long) == (60, 720)
    assert units_long == 12  # split into 10-minute read units so the file spreads over tasks
    # 12x the audio, yet the peak grows by less than 40 MiB (one chunk is 0.3 MiB; the file is ~80 MiB)
    assert rss_long - rss_short < 40 * 1024, (rss_short, rss_long)
