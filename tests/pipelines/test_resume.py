"""A run directory with checkpoints of another config is refused before any worker starts."""

import json

import pytest

from a2v_core.config import FinetuneJob, PretrainJob
from a2v_core.config_loader import load_config, to_yaml
from pipelines import finetune, pretrain
from pipelines.train.resume import ResumeMismatch, check_resume


def _job(cls, tmp_path, *extra):
    cfg = "configs/finetune/tiny.yaml" if cls is FinetuneJob else "configs/pretrain/tiny.yaml"
    return load_config(
        cls, cfg, [f"run.storage_path={tmp_path}", "run.name=r", "tracking.enabled=false", *extra]
    )


def _leave_run(tmp_path, job, checkpoints=True):
    """A run directory as Ray Train and our checkpoints leave it (config.yaml per checkpoint)."""
    d = tmp_path / "r"
    (d / "checkpoint_1").mkdir(parents=True)
    (d / "config.yaml").write_text(to_yaml(job))
    (d / "checkpoint_1" / "config.yaml").write_text(to_yaml(job))
    if checkpoints:
        snap = {"latest_checkpoint_result": {"checkpoint_dir_name": "checkpoint_1"}}
        (d / "checkpoint_manager_snapshot.json").write_text(json.dumps(snap))
    return str(d)


def test_same_config_or_safe_changes_resume(tmp_path):
    run_dir = _leave_run(tmp_path, _job(FinetuneJob, tmp_path))
    check_resume(run_dir, _job(FinetuneJob, tmp_path))
    check_resume(
        run_dir,
        _job(
            FinetuneJob,
            tmp_path,
            "optim.max_steps=5000",
            "cluster.num_workers=2",
            "run.checkpoint_every_steps=7",
            "events.threshold=0.3",
        ),
    )


def test_a_changed_recipe_is_refused_naming_the_keys(tmp_path):
    run_dir = _leave_run(tmp_path, _job(FinetuneJob, tmp_path))
    changed = _job(FinetuneJob, tmp_path, "optim.freeze_frontend=true", "optim.lr=0.01")
    with pytest.raises(ResumeMismatch) as err:
        check_resume(run_dir, changed)
    assert set(err.value.diff) == {"optim.freeze_frontend", "optim.lr"}
    assert "optim.freeze_frontend: False -> True" in str(err.value)
    assert "new --name" in str(err.value)


def test_a_directory_without_checkpoints_is_not_a_resume(tmp_path):
    run_dir = _leave_run(tmp_path, _job(FinetuneJob, tmp_path), checkpoints=False)
    check_resume(run_dir, _job(FinetuneJob, tmp_path, "optim.lr=0.01"))


def test_a_config_key_the_old_run_did_not_have_is_not_compared(tmp_path):
    job = _job(FinetuneJob, tmp_path)
    run_dir = _leave_run(tmp_path, job)
    cfg = tmp_path / "r" / "checkpoint_1" / "config.yaml"
    cfg.write_text(cfg.read_text().replace("  freeze_frontend: false\n", ""))
    check_resume(run_dir, _job(FinetuneJob, tmp_path, "optim.freeze_frontend=true"))


@pytest.mark.parametrize("module,cls", [(pretrain, PretrainJob), (finetune, FinetuneJob)])
def test_both_training_jobs_check_before_starting(tmp_path, module, cls):
    _leave_run(tmp_path, _job(cls, tmp_path, "model.dropout=0.2"))
    with pytest.raises(ResumeMismatch, match="model.dropout"):
        module.run(_job(cls, tmp_path, "model.dropout=0.3"))


def test_the_checkpoints_config_counts_not_the_run_directorys(tmp_path):
    """A failed start with the new config rewrote the run directory's config.yaml; the
    checkpoint it would resume from still holds the old one."""
    run_dir = _leave_run(tmp_path, _job(FinetuneJob, tmp_path))
    changed = _job(FinetuneJob, tmp_path, "optim.freeze_frontend=true")
    (tmp_path / "r" / "config.yaml").write_text(to_yaml(changed))
    with pytest.raises(ResumeMismatch, match="freeze_frontend"):
        check_resume(run_dir, changed)
