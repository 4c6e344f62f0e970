"""Share-nothing rules checked on the driver, without a cluster: which URIs a multi-node job
rejects, where Train workers fit beside Ray Data reads, MLflow steps after a resume, and a
sweep whose trials need none of the driver's files."""

from __future__ import annotations

import os

import mlflow
import pytest

from pipelines.data.shared_storage import problems, tracking_is_shared
from pipelines.runtime.tracking import Tracker
from pipelines.train.trainer import free_cpus_after_placing
from tests.conftest import ROOT
from tune.space import sweep_from_dict


def test_local_uris_are_named_and_object_stores_pass():
    found = problems(
        {
            "data.archive": "/home/me/archive",
            "run.storage_path": "s3://bucket/runs",
            "model": "file:///tmp/model",
            "pretrained": None,
        },
        "sqlite:////home/me/mlflow.db",
    )
    assert len(found) == 3
    assert found[0].startswith("data.archive must be s3:// or gs:// on a multi-node cluster")
    assert found[1].startswith("model must be")
    assert found[2].startswith("tracking.uri must be an MLflow server")
    assert problems({"data.archive": "s3://b/a", "model": "s3://b/m"}, "http://mlflow:5000") == []


@pytest.mark.parametrize(
    "uri, shared",
    [
        ("http://mlflow:5000", True),
        ("https://user:pw@mlflow.example.org", True),
        ("postgresql+psycopg2://u:p@db/mlflow", True),
        ("databricks", True),
        ("sqlite:///mlflow.db", False),
        ("file:///tmp/mlruns", False),
        ("./mlruns", False),
    ],
)
def test_which_mlflow_stores_every_node_reaches(uri, shared):
    assert tracking_is_shared(uri) is shared


def test_a_password_in_the_tracking_uri_is_not_repeated_in_the_error():
    (line,) = problems({}, "file://me:hunter2@host/mlruns")
    assert "hunter2" not in line and "***@" in line


@pytest.mark.parametrize(
    "nodes, n, per, spread, free",
    [
        ([0, 2, 2], 2, 1.5, True, [0.5, 0.5, 0]),  # a 0.5 CPU per node: no read task fits
        ([0, 2, 2], 2, 1.0, True, [1, 1, 0]),
        ([4], 2, 0.5, False, [3.0]),
        ([2, 2], 2, 1.0, False, [0, 2]),  # PACK fills the first node
        ([0, 2], 2, 1.5, True, None),  # does not fit the nodes there now
    ],
)
def test_train_workers_are_placed_as_ray_would(nodes, n, per, spread, free):
    assert free_cpus_after_placing(nodes, n, per, spread) == free


def test_resumed_steps_are_logged_once(tmp_path):
    """A worker group that restarts from a checkpoint at step 3 after the dead one had logged
    step 5 repeats steps 4 and 5; MLflow keeps the first record of each step."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = Tracker(uri, "resume")
    run_id = first.start("r")
    for step in range(1, 6):
        first.log_metrics({"loss": 1.0 / step}, step)
    mlflow.end_run("KILLED")
    second = Tracker(uri, "resume")
    second.start("r", run_id=run_id)
    second.resume_from(3)
    for step in range(4, 9):
        second.log_metrics({"loss": 2.0}, step)
    second.end()
    history = mlflow.MlflowClient().get_metric_history(run_id, "loss")
    assert sorted(m.step for m in history) == list(range(1, 9))


def test_a_pinned_sweep_needs_neither_config_files_nor_the_working_dir(tmp_path, monkeypatch):
    """Tune runs a trial in its own directory on any node: the stages are resolved on the
    driver (configs inlined, local paths absolute) and travel with the sweep."""
    monkeypatch.chdir(ROOT)
    sweep = sweep_from_dict(
        {
            "name": "pinned",
            "storage_path": str(tmp_path / "tune"),
            "finetune": {
                "config": "configs/finetune/tiny.yaml",
                "set": ["data.archive=demo_out/archive", "optim.max_steps=7"],
                "pretrained": "demo_out/runs/pretrain-tiny/final",
            },
            "space": {"finetune.loss.focal_gamma": {"type": "choice", "values": [1.0, 2.0]}},
        }
    )
    sweep.pin(lambda p: p if p is None or "://" in p else os.path.abspath(p))
    shipped = sweep.model_dump(mode="json")
    monkeypatch.chdir(tmp_path)  # a trial's directory: no configs/ here
    trial_sweep = type(sweep).model_validate(shipped)
    job = trial_sweep.finetune_job({"finetune.loss.focal_gamma": 2.0})
    assert job.optim.max_steps == 7 and job.loss.focal_gamma == 2.0
    assert job.data.archive == str(ROOT / "demo_out/archive")
    assert job.pretrained == str(ROOT / "demo_out/runs/pretrain-tiny/final")


def test_a_scheme_not_served_is_refused_before_any_work():
    from a2v_core.config import LabelJob
    from a2v_core.errors import InputError
    from pipelines.data import storage
    from pipelines.runtime.job_paths import pin_paths

    job = LabelJob(model="hdfs://nn/model", out="gs://bucket/labels")
    with pytest.raises(InputError, match=r"^model: unsupported URI scheme 'hdfs://'"):
        pin_paths(job)
    assert storage.is_remote("gs://b/p") and storage.is_remote("gcs://b/p")


def test_the_experiment_is_the_one_set_else_mlflow_experiment_name_else_per_job(monkeypatch):
    """``tracking.experiment`` set wins; unset, ``$MLFLOW_EXPERIMENT_NAME`` (MLflow's own
    variable) is honoured with every shipped recipe; else ``a2v/<job>``. Pinned on the driver, so
    a worker without the variable logs to the same experiment."""
    from glob import glob

    import yaml

    from a2v_core.config import EvaluateJob, PretrainJob
    from a2v_core.config_loader import load_config
    from pipelines.runtime.job_paths import pin_paths

    for path in glob(str(ROOT / "configs/*/*.yaml")):
        tracking = (yaml.safe_load(open(path)) or {}).get("tracking") or {}
        assert "experiment" not in tracking, path  # a recipe would shadow the variable
    recipe = ROOT / "configs/pretrain/tiny.yaml"
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    job = load_config(PretrainJob, recipe)
    pin_paths(job)
    assert job.tracking.experiment == "a2v/pretrain"
    evaluate = EvaluateJob()
    pin_paths(evaluate)
    assert evaluate.tracking.experiment == "a2v/evaluate"
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "site-7")
    job = load_config(PretrainJob, recipe)
    pin_paths(job)
    assert job.tracking.experiment == "site-7"
    job = load_config(PretrainJob, recipe, ["tracking.experiment=mine"])
    pin_paths(job)
    assert job.tracking.experiment == "mine"
    sweep = sweep_from_dict(yaml.safe_load(open(ROOT / "configs/tune/masking_focal.yaml")))
    assert sweep.tracking.experiment is None


def test_local_paths_under_a_declared_shared_folder_pass_and_nothing_else(tmp_path):
    """cluster.shared_paths (a Lustre / NFS mount every node has): paths under it pass, a path
    beside it, a ``..`` detour out of it, sqlite tracking and a folder the driver lacks do not."""
    from a2v_core.config import LabelJob

    lustre = tmp_path / "lustre/proj"
    lustre.mkdir(parents=True)
    shared = [str(lustre)]
    ok = {"data.archive": f"{lustre}/archive", "run.storage_path": f"file://{lustre}/runs"}
    assert problems(ok, "http://head:5000", shared) == []
    assert problems({"model": str(lustre)}, None, shared) == []  # the folder itself
    bad = problems(
        {
            "data.archive": f"{lustre}-old/archive",  # a sibling sharing the prefix
            "model": f"{lustre}/../../escaped",
            "run.storage_path": "/home/me/runs",
        },
        "sqlite:///" + str(lustre / "mlflow.db"),  # sqlite on NFS: still a server only
        shared,
    )
    assert [line.split(" ")[0] for line in bad] == [
        "data.archive",
        "model",
        "run.storage_path",
        "tracking.uri",
    ]
    assert f"or under cluster.shared_paths ['{lustre}']" in bad[0]
    (missing,) = problems({}, None, ["/lustre/nowhere"])
    assert missing == "cluster.shared_paths: /lustre/nowhere does not exist on the driver's node"
    hint = problems({"data.archive": "/data/a"}, None)[0]
    assert "--set cluster.shared_paths=[DIR]" in hint
    with pytest.raises(ValueError, match="absolute folders only"):
        LabelJob.model_validate({"cluster": {"shared_paths": ["lustre/proj"]}})
    assert LabelJob.model_validate({"cluster": {"shared_paths": ["/p/"]}}).cluster.shared_paths == [
        "/p"
    ]
