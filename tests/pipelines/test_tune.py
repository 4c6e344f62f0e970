"""Ray Tune sweeps: validation before any trial, and resume after an interrupted sweep. The
ASHA sweep with MLflow parent/child runs and the best config runs on the share-nothing cluster
(tests/e2e/test_share_nothing.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml

from a2v_core.config_loader import ConfigError
from tune.space import load_sweep, sweep_from_dict
from tune.trial import pretrain_root

ROOT = Path(__file__).resolve().parents[2]
FT = str(ROOT / "configs/finetune/tiny.yaml")
PT = str(ROOT / "configs/pretrain/tiny.yaml")


def base_sweep(archive, storage_path, uri, name, **extra) -> dict:
    tree = {
        "name": name,
        "storage_path": str(storage_path),
        "finetune": {
            "config": FT,
            "set": [
                f"data.archive={archive}",
                f"data.annotations={archive}/annotations.csv",
                "optim.max_steps=8",
                "optim.warmup_steps=2",
                "optim.freeze_steps=0",
                "run.validate_every_steps=4",
                "cluster.cpus_per_worker=0.5",
                "mixup.enabled=false",
            ],
        },
        "space": {"finetune.optim.lr": {"type": "grid", "values": [0.003, 0.002, 1e-9]}},
        "metric": "val_macro_ap",
        "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2},
        "max_concurrent_trials": 1,
        "tracking": {"uri": uri, "experiment": "a2v/sweep-test"},
    }
    tree.update(extra)
    return tree


@pytest.mark.parametrize(
    "space, key",
    [
        (
            {"finetune.optim.learning_rate": {"type": "uniform", "low": 0.1, "high": 0.2}},
            "optim.learning_rate",
        ),
        (
            {"finetune.loss.focal_gamma": {"type": "uniform", "low": 2.0, "high": 2.0}},
            "empty range",
        ),
        ({"finetune.loss.focal_alpha": {"type": "choice", "values": []}}, "non-empty"),
        ({"finetune.optim.lr": {"type": "loguniform", "low": -1, "high": 0.1}}, "low > 0"),
        ({"finetune.optim.lr": {"type": "uniform", "low": -1.0, "high": 0.1}}, "greater than 0"),
        (
            {"pretrain.masking.mask_prob": {"type": "uniform", "low": 0.5, "high": 1.5}},
            "no 'pretrain' stage",
        ),
        ({"loss.focal_gamma": {"type": "uniform", "low": 0.5, "high": 1.5}}, "<pretrain|finetune>"),
        (
            {"finetune.loss.focal_gamma": {"type": "normal", "low": 0.5, "high": 1.5}},
            "space.finetune.loss.focal_gamma.type",
        ),
        ({}, "at least one parameter"),
    ],
)
def test_invalid_space_fails_before_any_trial(tmp_path, space, key):
    tree = base_sweep(tmp_path, tmp_path / "sweeps", "sqlite:///x.db", "bad", space=space)
    with pytest.raises(ConfigError) as err:
        sweep_from_dict(tree)
    assert key in str(err.value)
    assert not (tmp_path / "sweeps").exists()


def test_shipped_sweep_resolves_into_trial_jobs():
    sweep = load_sweep(ROOT / "configs/tune/masking_focal.yaml")
    params = sweep.sample(3)
    ft, pt = sweep.finetune_job(params), sweep.pretrain_job(params)
    assert ft.loss.focal_gamma == pytest.approx(params["finetune.loss.focal_gamma"])
    assert pt.masking.mask_length == params["pretrain.masking.mask_length"]
    assert sweep.reports_per_trial() == 6
    # it sweeps pretraining keys: each trial pretrains in its own folder
    assert sweep.pretrain_per_trial
    assert pretrain_root(sweep, "t1") == f"{sweep.storage_path}/{sweep.name}/trials/t1"
    # a space of fine-tuning keys only: one pretraining for the sweep
    finetune_only = sweep.model_copy(
        update={"space": {k: v for k, v in sweep.space.items() if k.startswith("finetune.")}}
    )
    assert not finetune_only.pretrain_per_trial
    assert pretrain_root(finetune_only, "t1") == f"{sweep.storage_path}/{sweep.name}"


def _child_runs(uri: str, experiment: str) -> list:
    mlflow.set_tracking_uri(uri)
    try:
        return mlflow.search_runs(
            experiment_names=[experiment],
            filter_string="tags.`a2v.sweep` = 'resume3'",
            output_format="list",
        )
    except Exception:  # the experiment does not exist yet
        return []


@pytest.mark.slow
def test_interrupted_sweep_resumes_without_rerunning_finished_trials(
    synth_archive, tmp_path, ray_env
):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tree = base_sweep(
        synth_archive,
        tmp_path / "sweeps",
        uri,
        "resume3",
        space={"finetune.loss.focal_gamma": {"type": "grid", "values": [1.0, 2.0]}},
        pretrain={
            "config": PT,
            "set": [
                f"data.archive={synth_archive}",
                "optim.max_steps=2",
                "run.checkpoint_every_steps=2",
                "cluster.cpus_per_worker=0.5",
            ],
        },
        scheduler={"type": "fifo"},
    )
    tree["finetune"]["set"] += ["optim.max_steps=4", "run.validate_every_steps=2"]
    cfg = tmp_path / "resume3.yaml"
    cfg.write_text(yaml.safe_dump(tree))
    env = {**ray_env, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tune.sweep", "--config", str(cfg)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 400
        finished = []
        while time.time() < deadline and proc.poll() is None:
            finished = [
                r for r in _child_runs(uri, "a2v/sweep-test") if r.info.status == "FINISHED"
            ]
            if finished:
                break
            time.sleep(2)
        assert finished, (tmp_path / "first.log").read_text()[-3000:]
        proc.send_signal(signal.SIGINT)  # Tune saves its state and exits
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            pass
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)
        log.close()
    first_done = {r.data.tags["trial_name"] for r in finished}
    before = _child_runs(uri, "a2v/sweep-test")
    finished_before = {r.data.tags["trial_name"] for r in before if r.info.status == "FINISHED"}
    assert len(finished_before) < 2, "interrupt came too late"

    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "tune.sweep",
            "--resume",
            "resume3",
            "--storage-path",
            str(tmp_path / "sweeps"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        start_new_session=True,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    table = pd.read_csv(tmp_path / "sweeps/resume3/results.csv")
    assert len(table) == 2 and (table["status"] == "TERMINATED").all()
    assert sorted(table["finetune.loss.focal_gamma"]) == [1.0, 2.0]
    after = _child_runs(uri, "a2v/sweep-test")
    for name in first_done:  # a finished trial is not run again: still exactly one child run
        runs = [r for r in after if r.data.tags["trial_name"] == name]
        assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    finished_names = {r.data.tags["trial_name"] for r in after if r.info.status == "FINISHED"}
    assert len(finished_names) == 2
    assert (tmp_path / "sweeps/resume3/best_pretrain.yaml").exists()
    best = yaml.safe_load((tmp_path / "sweeps/resume3/best_finetune.yaml").read_text())
    # the space sweeps no pretraining key: one pretraining for the sweep, run once, not per trial
    shared = tmp_path / "sweeps/resume3/pretrain"
    assert best["pretrained"] == str(shared / "final") and (shared / "final/model.pt").exists()
    assert not list((tmp_path / "sweeps/resume3/trials").glob("*/pretrain"))
    assert f"every trial fine-tunes from {shared / 'final'}" in res.stdout
    first_log = (tmp_path / "first.log").read_text()
    assert first_log.count("[pretrain] final checkpoint") == 1  # before the first trial
    assert "[pretrain] final checkpoint" not in res.stdout + res.stderr  # not again on resume


def test_the_mlflow_callback_pickles_without_the_tracking_uri():
    """Tune writes its callbacks into tuner.pkl in the sweep's folder (on S3 for a cluster
    sweep): a password in the tracking URI must not go with it; setup reads the driver's
    $MLFLOW_TRACKING_URI (build_tuner sets it), for a resumed sweep too."""
    import cloudpickle

    from tune.sweep import SweepMLflowCallback

    uri = "http://a2v:planted-pw-7f3a0c@127.0.0.1:1"
    blob = cloudpickle.dumps(SweepMLflowCallback(tracking_uri=uri, experiment_name="x"))
    assert b"planted-pw" not in blob
    restored = cloudpickle.loads(blob)
    assert restored.tracking_uri is None and restored.experiment_name == "x"
