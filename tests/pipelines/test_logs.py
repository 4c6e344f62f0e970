"""What a user sees in a job's log: each line a Train worker prints reaches the driver once
(Train V2's print patch sent it twice, on stdout and as a log record on stderr)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

SCRIPT = """
import ray.train
from ray.train.torch import TorchTrainer
from pipelines.trainer import init_ray

init_ray(None)

def loop(config):
    print("a2v-marker-line from the worker", flush=True)

TorchTrainer(
    loop,
    scaling_config=ray.train.ScalingConfig(num_workers=1, resources_per_worker={"CPU": 0.5}),
    run_config=ray.train.RunConfig(storage_path=%r, name="logs"),
).fit()
"""


def test_a_worker_line_reaches_the_driver_once(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RAY_ADDRESS", "RAY_TRAIN_ENABLE_PRINT_PATCH")
    }
    res = subprocess.run(
        [sys.executable, "-c", SCRIPT % str(tmp_path / "runs")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        start_new_session=True,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert (res.stdout + res.stderr).count("a2v-marker-line") == 1, res.stdout + res.stderr
