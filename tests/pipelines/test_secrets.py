"""No credential in any file or artifact: a password in ``MLFLOW_TRACKING_URI`` and an AWS
secret in the environment, then pretraining and fine-tuning (dry runs), labelling and
evaluation; every file under the outputs, the run folders and the MLflow server's store
(database and artifacts) is searched for both."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from a2v_core.config import EvaluateJob, FinetuneJob, PretrainJob
from a2v_core.config_loader import load_config
from pipelines import evaluate, finetune, pretrain

ROOT = Path(__file__).resolve().parents[2]
PASSWORD, AWS_SECRET = "planted-pw-7f3a0c", "planted-aws-91c2e4"
pytestmark = pytest.mark.slow


def files_holding(root: Path, secrets: tuple[str, ...]) -> list[str]:
    hits = []
    for f in root.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            hits += [f"{f}: {s}" for s in secrets if s.encode() in data]
    return hits


def test_no_secret_is_written(
    ray_session, finetuned, synth_archive, mlflow_server, tmp_path, tmp_path_factory, monkeypatch
):
    host = mlflow_server.split("://", 1)[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://a2v:{PASSWORD}@{host}")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    runs = tmp_path / "runs"
    common = ["run.dry_run=true", f"run.storage_path={runs}", "cluster.cpus_per_worker=0.5"]
    common += ["tracking.experiment=a2v/secrets"]
    pt = pretrain.run(
        load_config(
            PretrainJob,
            ROOT / "configs/pretrain/tiny.yaml",
            [f"data.archive={synth_archive}", "run.name=pt-secret", *common],
        )
    )
    finetune.run(
        load_config(
            FinetuneJob,
            ROOT / "configs/finetune/tiny.yaml",
            [
                f"data.archive={synth_archive}",
                f"data.annotations={synth_archive}/annotations.csv",
                f"pretrained={pt['checkpoint']}",
                "run.name=ft-secret",
                *common,
            ],
        )
    )
    # evaluation runs the labelling job itself: labels/run.json, events, Raven tables
    evaluate.run(
        load_config(
            EvaluateJob,
            ROOT / "configs/label/default.yaml",
            [
                f"model={finetuned}",
                f"data.archive={synth_archive}",
                f"data.annotations={synth_archive}/annotations.csv",
                f"out={tmp_path / 'eval'}",
                "tracking.experiment=a2v/secrets",
                "cluster.cpus_per_worker=0.5",
            ],
        )
    )
    # the jobs did log to the server through the URI with the password
    mlflow.set_tracking_uri(mlflow_server)
    jobs = {
        r.data.tags.get("a2v.job")
        for r in mlflow.search_runs(experiment_names=["a2v/secrets"], output_format="list")
    }
    assert jobs >= {"pretrain", "finetune", "label", "evaluate"}, jobs
    assert (runs / "pt-secret/config.yaml").exists() and (
        tmp_path / "eval/labels/run.json"
    ).exists()
    server_store = [p for p in tmp_path_factory.getbasetemp().glob("mlflow-server*")]
    assert server_store
    hits = files_holding(tmp_path, (PASSWORD, AWS_SECRET))
    for store in server_store:
        hits += files_holding(store, (PASSWORD, AWS_SECRET))
    assert hits == []
    # the redacted URI is still there, as a record of where the run was tracked
    assert "http://***@" in (runs / "pt-secret/config.yaml").read_text()
