"""A Slurm cluster's layout on the share-nothing harness: the cluster's nodes (each in its own
mount namespace) share exactly one folder, bind-mounted at the same path on every node, which
the jobs are told of (``cluster.shared_paths``). Everything else is as in
``test_share_nothing.py``, whose cluster, moto S3 and MLflow server this module shares."""

from __future__ import annotations

import json
import shutil
import time

import pandas as pd
import pytest

from pipelines import label
from tests.conftest import PLANTED_AWS_SECRET, files_holding
from tests.e2e.cluster_jobs import PASSWORD, THRESHOLD, set_args

pytestmark = pytest.mark.slow


def test_a_shared_file_system_runs_the_four_jobs(share_nothing, tracking_env, synth_archive, s3):
    """A Slurm cluster's layout: every node mounts one folder (here bind-mounted into each
    node's private mount namespace), declared as cluster.shared_paths. Pretraining, fine-tuning,
    labelling (actors on both worker nodes) and evaluation read and write there only, with
    MLflow on its server; S3 is not touched. The same label command without the declaration
    stops before any Ray work."""
    shared = share_nothing.shared
    archive, runs = f"{shared}/archive", f"{shared}/runs"
    shutil.copytree(synth_archive, archive)
    decl = f"cluster.shared_paths=[{shared}]"
    s3_before = set(s3["fs"].find("a2v-test"))
    t0 = time.time()
    one_worker = ["cluster.num_workers=1", "cluster.cpus_per_worker=1", "cluster.torch_threads=1"]
    share_nothing.run(
        [
            *("python", "-m", "pipelines.pretrain", "--config", "configs/pretrain/tiny.yaml"),
            *("--archive", archive, "--storage-path", runs, "--name", "fs-pretrain"),
            *set_args(decl, "optim.max_steps=3", "optim.warmup_steps=1", *one_worker),
            *set_args("run.checkpoint_every_steps=3"),
        ],
        env_vars=tracking_env,
    )
    share_nothing.run(
        [
            *("python", "-m", "pipelines.finetune", "--config", "configs/finetune/tiny.yaml"),
            *("--pretrained", f"{runs}/fs-pretrain/final", "--archive", archive),
            *("--annotations", f"{archive}/annotations.csv", "--storage-path", runs),
            *("--name", "fs-finetune"),
            *set_args(decl, "optim.max_steps=3", "optim.warmup_steps=1", "optim.freeze_steps=1"),
            *set_args("run.validate_every_steps=3", "run.checkpoint_every_steps=3", *one_worker),
            *set_args("loss.prior_prob=0.2"),  # 3 steps: probabilities above THRESHOLD
        ],
        env_vars=tracking_env,
    )
    model = f"{runs}/fs-finetune/best"
    spread = set_args(decl, "cluster.num_actors=2", "cluster.cpus_per_worker=1")
    spread += set_args("cluster.placement_strategy=SPREAD")
    common = ["--model", model, "--archive", archive, "--threshold", str(THRESHOLD), *spread]
    share_nothing.run(
        ["python", "-m", "pipelines.label", *common, "--out", f"{shared}/labels"],
        env_vars=tracking_env,
    )
    share_nothing.run(
        [
            *("python", "-m", "pipelines.evaluate", *common, "--out", f"{shared}/eval"),
            *("--annotations", f"{archive}/annotations.csv"),
        ],
        env_vars=tracking_env,
    )
    t_jobs = time.time() - t0
    summary = json.loads((shared / "labels/run.json").read_text())
    assert summary["files_processed"] == 12 and summary["errors_by_type"] == {}
    assert len(summary["chunks_by_node"]) == 2, summary["chunks_by_node"]  # both nodes read it
    view = pd.read_parquet(shared / f"labels/parquet/{summary['run_id']}.events.parquet")
    assert len(view) == len(label.read_events(f"{shared}/labels", summary["run_id"])) > 0
    assert json.loads((shared / "eval/metrics.json").read_text())["frame"]["macro_ap"] > 0
    for done in ("fs-pretrain/final/model.pt", "fs-finetune/best/model.pt"):
        assert (shared / "runs" / done).is_file(), done
    assert set(s3["fs"].find("a2v-test")) == s3_before  # nothing went to object storage
    status, logs = share_nothing.wait(
        share_nothing.submit(
            ["python", "-m", "pipelines.label", "--model", model, "--archive", archive]
            + ["--out", f"{shared}/labels2"],
            env_vars=tracking_env,
        )
    )
    assert status == "FAILED" and "data.archive must be s3:// or gs://" in logs
    assert "--set cluster.shared_paths=[DIR]" in logs and "Traceback" not in logs
    # neither planted secret in what these jobs wrote on the shared folder or in their logs
    secrets = (PASSWORD, PLANTED_AWS_SECRET)
    assert files_holding(shared, secrets) == []
    client = share_nothing.client()
    for job in client.list_jobs():
        if str(shared) in job.entrypoint:
            logs = client.get_job_logs(job.submission_id)
            assert not [x for x in secrets if x in logs], job.entrypoint[:80]
    print(f"\n[share-nothing] shared file system, four jobs: {t_jobs:.0f} s")
