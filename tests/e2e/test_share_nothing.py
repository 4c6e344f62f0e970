"""The four user commands through ``ray job submit --working-dir`` on a share-nothing cluster:
a head with 0 CPUs (as the RayJob manifests) and two worker nodes in their own mount
namespaces, which see none of this checkout, the test's temp dirs or the driver's disk. The
archive, checkpoints and outputs are on moto S3; MLflow is an ``mlflow server`` over HTTP.

One cluster (the session's; test_shared_fs.py runs on it too) serves the module: pretraining (a worker node is killed mid-run and replaced by a
fresh, empty one), fine-tuning from the S3 checkpoint, a 2-trial sweep, labelling with actors
on both nodes and evaluation. Labelling and evaluation must equal a local run of the same
model over the same archive.

Every job reaches MLflow through ``MLFLOW_TRACKING_URI`` with a password in it, and every node
holds a planted AWS secret (conftest's share_nothing fixture): the module's last test searches
every object the jobs wrote, the MLflow server's store and the jobs' logs for both.
"""

from __future__ import annotations

import io
import json
import re
import time

import mlflow
import pandas as pd
import pytest
import yaml

from a2v_core.checkpoint import load_checkpoint
from a2v_core.config import EvaluateJob, FinetuneJob
from a2v_core.config_loader import load_config
from pipelines import evaluate, label
from pipelines.data import storage
from tests.conftest import PLANTED_AWS_SECRET, ROOT, files_holding
from tests.e2e.cluster_jobs import (
    ARCHIVE,
    PASSWORD,
    RUNS,
    S3,
    job_steps,
    local_label_job,
    once,
    pretrain_entry,
    set_args,
    spread_entry,
)

pytestmark = pytest.mark.slow

PRETRAIN_STEPS, CHECKPOINT_EVERY, KILL_AFTER_STEP = 10, 3, 5


@pytest.fixture(scope="module")
def archive(s3, synth_archive) -> str:
    storage.upload_dir(synth_archive, ARCHIVE)
    return ARCHIVE


def test_local_paths_stop_before_any_ray_work(share_nothing, archive):
    """A local path that a worker would open fails on the driver, naming the key, before any
    task starts (not as a FileNotFoundError inside a worker on another node)."""
    t0 = time.time()
    status, logs = share_nothing.wait(
        share_nothing.submit(
            pretrain_entry("/tmp/a2v-runs", "local-runs", "tracking.uri=sqlite:///tmp/mlflow.db")
        )
    )
    assert status == "FAILED"
    assert (
        "error: run.storage_path must be s3:// or gs:// on a multi-node cluster (got '/tmp/a2v-runs')"
        in logs
    )
    assert "tracking.uri must be an MLflow server" in logs
    assert "TrainController" not in logs and "Traceback" not in logs
    print(f"\n[share-nothing] local paths rejected in {time.time() - t0:.0f} s")


@pytest.fixture(scope="module")
def pretrained(share_nothing, tracking_env, archive) -> dict:
    """Pretraining on 2 workers, one per worker node; after step KILL_AFTER_STEP worker node 1
    is killed (SIGKILL, as a preempted spot node) and a fresh node takes its place."""
    entry = pretrain_entry(
        RUNS,
        "sn-pretrain",
        f"optim.max_steps={PRETRAIN_STEPS}",
        "optim.warmup_steps=2",
        "cluster.num_workers=2",
        "cluster.placement_strategy=STRICT_SPREAD",
        # one worker per node, a node's other CPU left for reading (a read task takes 1 CPU)
        "cluster.cpus_per_worker=1",
        "cluster.torch_threads=1",
        "run.log_every_steps=1",
        f"run.checkpoint_every_steps={CHECKPOINT_EVERY}",
        "run.max_failures=3",
    )
    t0 = time.time()
    # RAY_DEDUP_LOGS=0: Ray's driver folds log lines that differ only in words with digits or
    # hex ("[pretrain] rank 0/2 on node 5fe5...", "... rank 1/2 on node 50ec...") into one line
    # "[repeated 2x across cluster]" when they arrive within seconds: the placement below reads them
    job = share_nothing.submit(["env", "RAY_DEDUP_LOGS=0", *entry], env_vars=tracking_env)
    client = share_nothing.client()
    deadline = time.time() + 600
    while not job_steps(logs := client.get_job_logs(job)) or job_steps(logs)[-1] < KILL_AFTER_STEP:
        assert time.time() < deadline, logs[-4000:]
        assert str(client.get_job_status(job)) in ("PENDING", "RUNNING"), logs[-4000:]
        time.sleep(0.5)
    killed_after = job_steps(logs)[-1]
    nodes_before = share_nothing.node_ids()
    share_nothing.script("kill-worker", "1")
    t_kill = time.time()
    share_nothing.script("add-worker")
    status, logs = share_nothing.wait(job)
    assert status == "SUCCEEDED", logs[-6000:]
    return {
        "uri": f"{RUNS}/sn-pretrain/final",
        "logs": logs,
        "killed_after": killed_after,
        "nodes_before": {n for n, alive in nodes_before.items() if alive},
        "wall_s": time.time() - t0,
        "recovery_s": time.time() - t_kill,
    }


def test_pretrain_survives_a_replaced_node(pretrained, mlflow_server):
    logs = pretrained["logs"]
    (resumed,) = once([int(s) for s in re.findall(r"resumed from checkpoint at step (\d+)", logs)])
    # rank placement, before and after the node was replaced: one rank per worker node. Lines of
    # different nodes reach the driver in no fixed order: the step a rank starts from tells the
    # groups (our own lines: Ray Train's "Started training worker group" is off the console)
    placed = re.findall(r"\[pretrain\] rank \d/2 on node (\w+) from step (\d+)", logs)
    starts = {int(step) for _, step in placed}
    assert starts == {0, resumed}, f"the group should start exactly twice, not at {starts}"
    first = {node for node, step in placed if int(step) == 0}
    second = {node for node, step in placed if int(step) == resumed}
    before = {n[:12] for n in pretrained["nodes_before"]}
    # a line of the killed node may never reach the driver (its log monitor dies with it): what
    # holds is that the first group ran on the nodes there before, and the restarted one on the
    # fresh node beside a surviving one
    where = "\n".join(line for line in logs.splitlines() if " on node " in line)
    assert first and first <= before, (first, before, where)
    fresh = second - before
    assert len(fresh) == 1, f"the restarted group should use the fresh node\n{where}"
    assert second & before, f"the surviving node should keep a rank\n{where}"
    # it resumed from an S3 checkpoint no older than the newest one when the kill was ordered
    # (under load the job may write the next one before the SIGKILL lands: no upper bound here;
    # the step checks below fail if it resumed past what had run), and repeated no step
    newest_at_kill = pretrained["killed_after"] // CHECKPOINT_EVERY * CHECKPOINT_EVERY
    assert resumed % CHECKPOINT_EVERY == 0 and newest_at_kill <= resumed < PRETRAIN_STEPS
    after = job_steps(logs[logs.index("resumed from checkpoint") :])
    assert after == list(range(resumed + 1, PRETRAIN_STEPS + 1))
    # MLflow's step sequence: every optimizer step once, none skipped, none repeated
    mlflow.set_tracking_uri(mlflow_server)
    (run,) = mlflow.search_runs(
        experiment_names=["a2v/pretrain"],
        filter_string="tags.`a2v.run_name` = 'sn-pretrain'",
        output_format="list",
    )
    steps = [m.step for m in mlflow.MlflowClient().get_metric_history(run.info.run_id, "loss")]
    assert sorted(steps) == list(range(1, PRETRAIN_STEPS + 1)), steps
    with storage.fetched(pretrained["uri"]) as local:
        states, _, meta = load_checkpoint(local)
    assert meta["step"] == PRETRAIN_STEPS
    # Adam's per-parameter step count: the optimizer steps on the final weights' lineage
    assert {int(s["step"]) for s in states["optimizer"]["state"].values()} == {PRETRAIN_STEPS}
    assert states["scheduler"]["last_epoch"] == PRETRAIN_STEPS
    print(
        f"\n[share-nothing] pretrain: {pretrained['wall_s']:.0f} s, killed after step "
        f"{pretrained['killed_after']}, resumed from {resumed}, recovered in "
        f"{pretrained['recovery_s']:.0f} s; MLflow steps {sorted(steps)}"
    )


@pytest.fixture(scope="module")
def finetuned(share_nothing, tracking_env, pretrained, archive) -> str:
    t0 = time.time()
    logs = share_nothing.run(
        [
            *("python", "-m", "pipelines.finetune", "--config", "configs/finetune/tiny.yaml"),
            *("--pretrained", pretrained["uri"], "--archive", archive),
            *("--annotations", f"{archive}/annotations.csv"),
            *("--storage-path", RUNS, "--name", "sn-finetune"),
            *set_args(
                "optim.max_steps=6",
                "optim.warmup_steps=2",
                "optim.freeze_steps=2",
                "run.validate_every_steps=6",
                "run.checkpoint_every_steps=6",
                "cluster.num_workers=2",
                "cluster.cpus_per_worker=1",
                "cluster.torch_threads=1",
                "cluster.placement_strategy=SPREAD",
                "loss.prior_prob=0.2",
                "optim.freeze_frontend=true",
            ),
        ],
        env_vars=tracking_env,
    )
    assert "[finetune] best valid" in logs
    print(f"\n[share-nothing] finetune: {time.time() - t0:.0f} s")
    return f"{RUNS}/sn-finetune/best"


def test_finetune_from_an_s3_checkpoint(finetuned, mlflow_server):
    meta = json.loads(storage.read_bytes(f"{finetuned}/meta.json"))
    assert meta["kind"] == "finetune" and meta["pretrained"] == f"{RUNS}/sn-pretrain/final"
    mlflow.set_tracking_uri(mlflow_server)
    (run,) = mlflow.search_runs(
        experiment_names=["a2v/finetune"],
        filter_string="tags.`a2v.run_name` = 'sn-finetune'",
        output_format="list",
    )
    assert run.data.tags["checkpoint_uri"] == finetuned
    assert mlflow.MlflowClient().get_metric_history(run.info.run_id, "val_macro_ap")


def test_label_and_evaluate_on_both_nodes_equal_a_local_run(
    share_nothing, tracking_env, finetuned, ray_session
):
    """The defect this module was written for: the driver copied an s3:// model into its own
    temp dir and handed that path to the predictor actors, which run on other nodes. The local
    reference is one local evaluation: it labels the archive (its labels/ are the local
    labelling run) and scores it."""
    ann_uri = f"{ARCHIVE}/annotations.csv"
    mine = evaluate.run(
        local_label_job(EvaluateJob, finetuned, f"{S3}/eval-local", f"data.annotations={ann_uri}")
    )
    local_events = label.read_events(f"{S3}/eval-local/labels", mine["label_run"])
    t0 = time.time()
    out = f"{S3}/labels"
    share_nothing.run(spread_entry("pipelines.label", finetuned, out), env_vars=tracking_env)
    t_label = time.time() - t0
    summary = json.loads(storage.read_bytes(f"{out}/run.json"))
    assert len(summary["chunks_by_node"]) == 2, summary["chunks_by_node"]
    assert summary["files_processed"] == 12 and summary["errors_by_type"] == {}
    cluster_events = label.read_events(out, summary["run_id"])
    assert len(cluster_events) > 0
    key = ["file", "onset_s", "label"]
    a = cluster_events.sort_values(key).reset_index(drop=True)
    b = local_events.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(
        a[["file", "onset_s", "offset_s", "label"]], b[["file", "onset_s", "offset_s", "label"]]
    )
    assert (a["score"] - b["score"]).abs().max() < 1e-5

    t0 = time.time()
    share_nothing.run(
        spread_entry("pipelines.evaluate", finetuned, f"{S3}/eval", "--annotations", ann_uri),
        env_vars=tracking_env,
    )
    t_eval = time.time() - t0
    remote = json.loads(storage.read_bytes(f"{S3}/eval/metrics.json"))
    assert remote["frame"]["macro_ap"] == pytest.approx(mine["frame"]["macro_ap"], abs=1e-6)
    for iou in remote["events"]:
        assert remote["events"][iou]["f1"] == pytest.approx(mine["events"][iou]["f1"], abs=1e-9)
    print(f"\n[share-nothing] label: {t_label:.0f} s, evaluate: {t_eval:.0f} s")


def test_tune_sweep_of_two_trials(share_nothing, tracking_env, mlflow_server, finetuned, archive):
    """A 2-trial ASHA sweep: the trial with lr ~ 0 stops at the first rung; MLflow holds the
    parent and one child per trial with its validation curve; the best config is a plain
    fine-tuning config naming the better lr."""
    t0 = time.time()
    ft_set = [
        f"data.archive={archive}",
        f"data.annotations={archive}/annotations.csv",
        "optim.max_steps=8",
        "optim.warmup_steps=2",
        "optim.freeze_steps=0",
        "run.validate_every_steps=4",
        "cluster.cpus_per_worker=1",
        "cluster.torch_threads=1",
        "mixup.enabled=false",
    ]
    logs = share_nothing.run(
        [
            *("python", "-m", "pipelines.tune", "--config", "configs/tune/masking_focal.yaml"),
            *set_args(
                "name=sn-sweep",
                f"storage_path={S3}/tune",
                "pretrain=null",
                f"finetune.set=[{', '.join(ft_set)}]",
                f"finetune.pretrained={RUNS}/sn-pretrain/final",
                "space={finetune.optim.lr: {type: grid, values: [0.003, 1.0e-9]}}",
                "num_samples=1",
                "scheduler={type: asha, grace_period: 1, reduction_factor: 2}",
                "max_concurrent_trials=1",  # the lr ~ 0 trial meets the good one's first rung
                "tracking={experiment: a2v/sn-sweep}",
            ),
        ],
        env_vars=tracking_env,
    )
    results = pd.read_csv(io.BytesIO(storage.read_bytes(f"{S3}/tune/sn-sweep/results.csv")))
    assert len(results) == 2 and (results["status"] == "TERMINATED").all(), logs[-4000:]
    assert results["best_val_macro_ap"].notna().all()
    by_lr = results.set_index("finetune.optim.lr")["stopped_early"].to_dict()
    assert by_lr == {0.003: False, 1e-9: True}, results.to_string()
    best = yaml.safe_load(storage.read_bytes(f"{S3}/tune/sn-sweep/best_finetune.yaml"))
    assert best["optim"]["lr"] == pytest.approx(0.003)
    assert FinetuneJob.model_validate(best).pretrained == f"{RUNS}/sn-pretrain/final"
    mlflow.set_tracking_uri(mlflow_server)
    runs = mlflow.search_runs(experiment_names=["a2v/sn-sweep"], output_format="list")
    parent = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parent) == 1 and len(children) == 2
    client = mlflow.MlflowClient()
    for child in children:
        assert child.info.status == "FINISHED" and "params/finetune.optim.lr" in child.data.params
        assert client.get_metric_history(child.info.run_id, "val_macro_ap")
    arts = {a.path for a in client.list_artifacts(parent[0].info.run_id)}
    assert {"best_finetune.yaml", "results.csv", "sweep.png"} <= arts
    print(f"\n[share-nothing] tune (2 trials, ASHA): {time.time() - t0:.0f} s")


def test_a_48khz_model_labels_a_48khz_archive(share_nothing, tracking_env, tmp_path_factory):
    """A bird team's archive at its own rate: a 48 kHz model (the tiny preset at init, made
    here: the rate path is what is tested) labels a 48 kHz archive on the cluster's nodes."""
    from a2v_core.checkpoint import save_checkpoint
    from a2v_core.config_loader import to_yaml
    from a2v_core.finetune import FrameClassifier
    from pipelines.synth import write_archive

    d = tmp_path_factory.mktemp("sn48k")
    write_archive(str(d / "archive"), 40 / 3600, seed=48, sample_rate_hz=48000, file_s=20.0)
    job = load_config(
        FinetuneJob, ROOT / "configs/finetune/tiny.yaml", ["model.sample_rate_hz=48000"]
    )
    classes = sorted(pd.read_csv(d / "archive/annotations.csv")["label"].unique())
    meta = {"kind": "finetune", "classes": classes, "sample_rate_hz": 48000}
    model = FrameClassifier(job.model, n_classes=len(classes))
    save_checkpoint(
        d / "model", {"model": model.state_dict()}, to_yaml(job), {**meta, "frame_rate_hz": 200}
    )
    archive, model_uri, out = f"{S3}/archive48k", f"{S3}/model48k", f"{S3}/labels48k"
    storage.upload_dir(d / "archive", archive)
    storage.upload_dir(d / "model", model_uri)
    logs = share_nothing.run(
        [
            *("python", "-m", "pipelines.label", "--model", model_uri, "--archive", archive),
            *("--out", out, "--threshold", "0.3", "--set", "cluster.cpus_per_worker=1"),
        ],
        env_vars=tracking_env,
    )
    assert "[label] model rate 48000 Hz: hears 100-24000 Hz" in logs
    summary = json.loads(storage.read_bytes(f"{out}/run.json"))
    assert summary["model_meta"]["sample_rate_hz"] == 48000 and summary["files_processed"] == 2
    assert summary["audio_hours_by_source_rate_hz"] == {"48000": pytest.approx(40 / 3600)}
    events = label.read_events(out, summary["run_id"])
    assert len(events) and (events["source_rate_hz"] == 48000).all()
    assert (events["onset_s"] >= 0).all() and (events["offset_s"] <= 20.0 + 1e-6).all()
    raven = pd.read_csv(
        io.BytesIO(storage.read_bytes(f"{out}/raven/{summary['run_id']}.selections.txt")), sep="\t"
    )
    assert len(raven) == len(events)
    assert (raven["Low Freq (Hz)"] == 100.0).all() and (raven["High Freq (Hz)"] == 24000.0).all()


def test_no_secret_is_written(share_nothing, mlflow_server, tmp_path_factory, s3):
    """After the module's jobs (pretraining with a node replaced, fine-tuning, labelling,
    evaluation, the sweep): neither planted secret is in any object under the module's S3
    prefix, in the MLflow server's store (database and artifacts) or in a job's logs."""
    secrets = (PASSWORD, PLANTED_AWS_SECRET)
    mlflow.set_tracking_uri(mlflow_server)
    jobs = {
        r.data.tags.get("a2v.job")
        for r in mlflow.search_runs(search_all_experiments=True, output_format="list")
    }
    # the jobs did log through the URI with the password
    assert jobs >= {"pretrain", "finetune", "label", "evaluate"}, jobs
    fs = s3["fs"]
    keys = fs.find(S3.removeprefix("s3://"))
    assert len(keys) > 20 and any(k.endswith("/model.pt") for k in keys)
    hits = [f"{k}: {x}" for k in keys for x in secrets if x.encode() in fs.cat_file(k)]
    stores = list(tmp_path_factory.getbasetemp().glob("mlflow-server[0-9]*"))
    assert len(stores) == 1
    hits += files_holding(stores[0], secrets)
    client = share_nothing.client()
    for job in client.list_jobs():
        logs = client.get_job_logs(job.submission_id)
        hits += [f"logs of {job.entrypoint[:60]}: {x}" for x in secrets if x in logs]
    assert hits == []
    # the redacted URI is still there, as a record of where the run was tracked
    assert "http://***@" in storage.read_bytes(f"{RUNS}/sn-pretrain/config.yaml").decode()
