"""The run layout (``pipelines.runtime.run_dir``): Ray's snapshot names the checkpoint a rerun
resumes from, and ``open_checkpoint`` turns every wrong checkpoint into one ``InputError``."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from a2v_core.errors import InputError
from pipelines.runtime import run_dir
from tests.helpers.cli import checkpoint


def test_latest_checkpoint_reads_ray_trains_own_snapshot(ray_session, tmp_path):
    """Fails loudly if Ray renames ``checkpoint_manager_snapshot.json`` or its
    ``latest_checkpoint_result.checkpoint_dir_name``: resuming and the resume check read it."""
    import ray.train
    from ray.train import Checkpoint, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    def loop(config: dict) -> None:
        for step in (1, 2):
            with tempfile.TemporaryDirectory() as d:
                Path(d, "step.txt").write_text(str(step))
                ray.train.report({"step": step}, checkpoint=Checkpoint.from_directory(d))

    TorchTrainer(
        loop,
        scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(name="snap", storage_path=str(tmp_path)),
    ).fit()
    run = str(tmp_path / "snap")
    assert (tmp_path / "snap" / run_dir.RAY_SNAPSHOT).is_file()
    latest = run_dir.latest_checkpoint(run)
    assert latest is not None and latest.startswith(run)
    with open(f"{latest}/step.txt") as f:
        assert f.read() == "2"
    assert run_dir.latest_checkpoint(str(tmp_path / "nothing")) is None


def test_open_checkpoint_checks_kind_and_loads(tmp_path):
    ft = checkpoint(tmp_path / "ft", "finetune")
    pre = checkpoint(tmp_path / "pre", "pretrain")
    opened = run_dir.open_checkpoint(ft, ("finetune",))
    assert opened.meta["kind"] == "finetune" and opened.version.startswith("sha-")
    assert not opened.model.training  # eval mode, ready to label
    assert run_dir.open_checkpoint(pre, ("pretrain", "finetune")).meta["kind"] == "pretrain"
    cases = [
        (None, ("finetune",), "--model is required: a fine-tuned checkpoint"),
        (str(tmp_path / "nope"), ("finetune",), "not a checkpoint"),
        (pre, ("finetune",), "a pretraining checkpoint; this job needs a fine-tuned one"),
        (ft, ("pretrain",), "a fine-tuned checkpoint; this job needs a pretraining one"),
    ]
    for uri, kinds, message in cases:
        with pytest.raises(InputError, match=message):
            run_dir.open_checkpoint(
                uri, kinds, "--pretrained" if kinds == ("pretrain",) else "--model"
            )
    (tmp_path / "ft" / "config.yaml").write_text("model:\n  preset: base\n")  # other weights
    with pytest.raises(InputError, match="does not load"):
        run_dir.open_checkpoint(ft, ("finetune",))
