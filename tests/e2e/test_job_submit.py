"""`ray job submit` of the tiny pretraining to a real 2-node cluster, tracked by `mlflow server`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


def test_job_submit_two_nodes_with_mlflow_server(cluster2, mlflow_server, s3, synth_archive):
    from pipelines import storage

    archive = "s3://a2v-test/job-archive"
    storage.upload_dir(synth_archive, archive)
    entry = [
        "python",
        "-m",
        "pipelines.pretrain",
        "--config",
        "configs/pretrain/tiny.yaml",
        "--archive",
        archive,
        "--storage-path",
        "s3://a2v-test/job-runs",
        "--name",
        "job-submit",
        "--set",
        f"tracking.uri={mlflow_server}",
        "--set",
        "optim.max_steps=6",
        "--set",
        "cluster.num_workers=2",
        "--set",
        "cluster.cpus_per_worker=1",
        "--set",
        "cluster.placement_strategy=SPREAD",
        "--set",
        "run.log_every_steps=2",
    ]
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "RAY_AUTH_MODE": "disabled"}
    for _ in range(12):
        out = subprocess.run(
            [
                str(BIN / "ray"),
                "job",
                "submit",
                "--address",
                cluster2["dashboard"],
                "--working-dir",
                str(ROOT),
                "--",
                *entry,
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
            cwd=ROOT,
        )
        log = out.stdout + out.stderr
        # a freshly started head answers 500 until its job agent has registered (slow under load)
        if "No available agent to submit job" not in log:
            break
        time.sleep(5)
    assert out.returncode == 0, log[-4000:]
    assert "succeeded" in log.lower()
    nodes = set(re.findall(r"\[pretrain\] rank \d/2 on node (\w+)", log))
    assert len(nodes) == 2, f"workers were not spread over both nodes: {nodes}"
    mlflow.set_tracking_uri(mlflow_server)
    runs = mlflow.search_runs(
        experiment_names=["a2v/pretrain"],
        filter_string="tags.`a2v.run_name` = 'job-submit'",
        output_format="list",
    )
    assert runs and runs[0].data.params["cluster.num_workers"] == "2"
    assert mlflow.MlflowClient().get_metric_history(runs[0].info.run_id, "loss")
    assert s3["fs"].exists("a2v-test/job-runs/job-submit/final/model.pt")
