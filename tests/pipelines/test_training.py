"""Ray Train pretraining / fine-tuning on the tiny preset with real moto S3 and MLflow."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from a2v_core.checkpoint import load_checkpoint
from a2v_core.config import FinetuneJob, PretrainJob
from a2v_core.config_loader import ConfigError, load_config
from pipelines import finetune, pretrain
from pipelines.data import storage
from pipelines.data.finetune_data import prepare
from pipelines.train.trainer import build_torch_trainer
from tests.conftest import pre_job

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_pretraining_on_s3_with_two_workers(s3_pretrained, s3):
    pretrained = s3_pretrained
    fs = s3["fs"]
    ckpts = [p for p in fs.ls("a2v-test/runs/pre-s3") if "checkpoint_" in p]
    assert ckpts, "no Ray Train checkpoint landed in S3"
    assert fs.exists("a2v-test/runs/pre-s3/final/model.pt") and fs.exists(
        "a2v-test/runs/pre-s3/config.yaml"
    )
    mlflow.set_tracking_uri(pretrained["uri"])
    run = mlflow.get_run(pretrained["result"]["mlflow_run_id"])
    assert (
        run.data.params["model.preset"] == "tiny" and run.data.params["cluster.num_workers"] == "2"
    )
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "loss")
    assert len(history) >= 5
    losses = [m.value for m in sorted(history, key=lambda m: m.step)]
    assert losses[-1] < 0.8 * losses[0], losses
    states, _, meta = load_checkpoint(storage.local_copy("s3://a2v-test/runs/pre-s3/final"))
    assert (
        meta["step"] == 30
        and meta["kind"] == "pretrain"
        and "teacher.blocks.0.fc1.weight" in states["model"]
    )
    assert not any("secret" in k.lower() for k in run.data.params)


def test_collapse_stops_pretraining_and_marks_the_run_failed(ray_session, tmp_path):
    """The guard (on by default) ends the job with one clear error and a FAILED MLflow run;
    a threshold no model can meet makes the collapse certain at step 1."""
    from a2v_core.errors import RunStopped
    from pipelines.synth import write_archive

    archive = tmp_path / "archive"
    write_archive(str(archive), 60 / 3600, seed=5, file_s=60.0)  # 6 chunks: one batch of 4
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    job = pre_job(
        str(archive),
        str(tmp_path / "runs"),
        "collapse",
        uri,
        "optim.max_steps=5",
        "ema.collapse_after_steps=1",
        "ema.min_target_std=100",
    )
    with pytest.raises(RunStopped, match="representation collapse at step 1.*stop_on_collapse"):
        pretrain.run(job)
    mlflow.set_tracking_uri(uri)
    (run,) = mlflow.search_runs(experiment_names=[job.tracking.experiment], output_format="list")
    assert run.info.status == "FAILED" and "collapse" in run.data.tags["a2v.error"]


def loss_steps(uri: str) -> list[int]:
    """The steps of the loss history of the one MLflow run in ``uri``."""
    mlflow.set_tracking_uri(uri)
    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    return [m.step for m in mlflow.MlflowClient().get_metric_history(run.info.run_id, "loss")]


def test_driver_restart_continues_from_checkpoint_on_gs(ray_env, gcs, synth_archive, tmp_path):
    """A pretraining driver killed (SIGKILL) after its first checkpoint landed on gs://; the
    same run submitted again (max_steps 8) resumes from gs:// (the GCS emulator through pyarrow's
    GcsFileSystem, as Ray Train writes there) and ends at step 8 with the optimizer's state intact."""
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    runs = f"gs://{gcs['bucket']}/runs"
    args = [
        "--config",
        "configs/pretrain/tiny.yaml",
        "--archive",
        str(synth_archive),
        "--storage-path",
        runs,
        "--name",
        "restart",
        "--set",
        f"tracking.uri={uri}",
        "--set",
        "optim.max_steps=400",
        "--set",
        "run.checkpoint_every_steps=2",
        "--set",
        "run.log_every_steps=1",
    ]
    log = open(tmp_path / "driver.log", "wb")
    env = {k: v for k, v in ray_env.items() if k != "RAY_TRAIN_ENABLE_PRINT_PATCH"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.pretrain", *args],
        cwd=ROOT,
        start_new_session=True,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )

    def checkpoints_on_gs() -> bool:
        """Whether a Ray Train checkpoint with its model landed under the run."""
        return storage.exists(f"{runs}/restart") and any(
            "checkpoint_" in r and r.endswith("model.pt")
            for r, _ in storage.list_all(f"{runs}/restart")
        )

    deadline = time.time() + 240
    while time.time() < deadline and not checkpoints_on_gs():
        time.sleep(1)
    time.sleep(2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    log.close()
    assert checkpoints_on_gs(), "no checkpoint before the kill"
    # a line the worker printed reached the driver's log once (Train V2's print patch: twice)
    text = (tmp_path / "driver.log").read_text(errors="replace")
    assert text.count("[pretrain] rank 0/1 on node") == 1, text[-3000:]
    logged_before = loss_steps(uri)
    job = pre_job(
        str(synth_archive),
        runs,
        "restart",
        uri,
        "optim.max_steps=8",
        "run.checkpoint_every_steps=2",
        "run.log_every_steps=1",
    )
    res = pretrain.run(job)
    assert res["checkpoint"] == f"{runs}/restart/final"
    with storage.fetched(res["checkpoint"]) as d:
        states, _, meta = load_checkpoint(d)
    assert meta["step"] == 8 and meta["kind"] == "pretrain"
    assert {int(s["step"]) for s in states["optimizer"]["state"].values()} == {8}
    # it resumed (a fresh start would log the killed driver's steps again): one MLflow run, its
    # loss logged once per step, the killed driver's steps included
    steps = loss_steps(uri)
    assert len(steps) == len(set(steps)) and set(range(1, 9)) <= set(steps), steps
    assert len(logged_before) >= 2 and set(logged_before) <= set(steps), logged_before


def test_finetune_from_pretrained_at_10_percent_labels(
    s3_pretrained, ray_session, s3_archive, tmp_path
):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    job = load_config(
        FinetuneJob,
        ROOT / "configs/finetune/tiny.yaml",
        [
            f"data.archive={s3_archive}",
            f"data.annotations={s3_archive}/annotations.csv",
            f"pretrained={s3_pretrained['result']['checkpoint']}",
            f"run.storage_path={tmp_path / 'runs'}",
            "run.name=ft10",
            f"tracking.uri={uri}",
            "data.label_fraction=0.1",
            "optim.max_steps=60",
            "run.validate_every_steps=30",
            "cluster.cpus_per_worker=0.5",
        ],
    )
    res = finetune.run(job)
    splits = pd.read_csv(tmp_path / "runs/ft10/splits.csv")
    counts = splits["split"].value_counts().to_dict()
    assert (
        abs(counts["valid"] - 0.2 * len(splits)) <= 2
        and 0 < counts["train"] <= 0.1 * len(splits) + 2
    )
    clips_again = prepare(job)[2]
    assert list(clips_again["split"]) == list(splits["split"])  # reproducible
    # chance AP of a class = its positive-frame rate; the calls cover ~0.3-1 % of the frames each
    events = pd.read_csv(io.BytesIO(storage.read_bytes(f"{s3_archive}/annotations.csv")))
    rates = (events.offset_s - events.onset_s).groupby(events.label).sum() / (len(splits) * 10.0)
    chance = float(rates.mean())
    assert res["best"]["val_macro_ap"] > 3 * chance, (res["best"], chance)
    mlflow.set_tracking_uri(uri)
    version = mlflow.MlflowClient().get_model_version_by_alias("animal2vec-finetuned", "best")
    assert str(version.version) == str(res["model_version"])
    assert (tmp_path / "runs/ft10/best/model.pt").exists()


def test_bad_cluster_configs_fail_before_workers_start(ray_session, synth_archive):
    job = load_config(
        PretrainJob,
        ROOT / "configs/pretrain/tiny.yaml",
        [f"data.archive={synth_archive}", "cluster.use_gpu=true", "cluster.num_workers=2"],
    )
    with pytest.raises(ConfigError, match="cluster.num_workers"):
        build_torch_trainer(job, lambda c: None, {}, {})
    job = load_config(
        PretrainJob, ROOT / "configs/pretrain/tiny.yaml", ["cluster.cpus_per_worker=16"]
    )
    with pytest.raises(ConfigError, match="cluster.cpus_per_worker"):
        build_torch_trainer(job, lambda c: None, {}, {})
    with pytest.raises(ConfigError, match="model.preset"):
        load_config(PretrainJob, None, ["model.preset=medium"])
    with pytest.raises(ValueError, match="unsupported URI scheme"):
        storage.train_storage("hdfs://x/y")


def test_few_shot_split_smaller_than_a_batch_still_trains(ray_session, synth_archive, tmp_path):
    """1 % of 72 clips is one clip, fewer than a batch: the data the trainer is given must still
    give every epoch its steps, read as the training loop reads them (drop_last batches)."""
    from pipelines.finetune import MIN_STEPS_PER_EPOCH, build_trainer
    from pipelines.train.train_worker import batches, epoch_seed
    from pipelines.train.trainer import Throughput

    job = load_config(
        FinetuneJob,
        ROOT / "configs/finetune/tiny.yaml",
        [
            f"data.archive={synth_archive}",
            f"data.annotations={synth_archive}/annotations.csv",
            f"run.storage_path={tmp_path}",
            "run.name=ft-1pct",
            "tracking.enabled=false",
            "data.label_fraction=0.01",
        ],
    )
    trainer, clips, _ = build_trainer(job)
    one = clips[clips["split"] == "train"]
    assert len(one) == 1 < job.optim.batch_size
    train = trainer.datasets["train"]
    for epoch in range(2):  # the loop's per-epoch iteration, shuffle buffer and seed included
        got = list(
            batches(
                train,
                job.optim.batch_size,
                0,
                Throughput(),
                job.data.shuffle_buffer_chunks,
                epoch_seed(job.run.seed, 0, epoch),
            )
        )
        assert len(got) >= MIN_STEPS_PER_EPOCH
        assert all(len(b["audio"]) == job.optim.batch_size for b in got)
        seen = {
            (str(p), float(o)) for b in got for p, o in zip(b["path"], b["offset_s"], strict=True)
        }
        assert seen == {(str(one["path"].iloc[0]), float(one["offset_s"].iloc[0]))}
