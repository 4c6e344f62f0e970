"""One sweep trial: (optionally) a short pretraining, then fine-tuning, through the very same
``pipelines.pretrain.run`` and ``pipelines.finetune.build_trainer`` a user runs by hand. A
pretraining stage whose keys the space does not sweep runs once per sweep, not per trial.

The trial's Train runs live under ``<storage>/<sweep>/trials/<trial_id>/``; a restored trial
finds its Train checkpoints there and continues. Fine-tuning reports (validation metrics) go
to Tune through ``TuneReportCallback``, once per validation, so ASHA's
``training_iteration`` counts validations.
"""

from __future__ import annotations

from typing import Any

import ray.tune
from ray.tune.integration.ray_train import TuneReportCallback

from pipelines import finetune, pretrain
from pipelines.data import storage
from pipelines.runtime.run_dir import FINAL
from tune.space import SweepConfig


def trial_root(sweep: SweepConfig, trial_id: str) -> str:
    return storage.join(sweep.storage_path, sweep.name, "trials", trial_id)


def pretrain_root(sweep: SweepConfig, trial_id: str | None) -> str:
    """The folder of a trial's pretraining run (``<root>/pretrain/final`` is its export): the
    trial's own when the space sweeps pretraining keys, else the sweep's, shared by every
    trial (they would all pretrain alike, so it runs once, on the driver, before the first
    trial)."""
    if sweep.pretrain_per_trial:
        assert trial_id is not None, "a per-trial pretraining needs the trial"
        return trial_root(sweep, trial_id)
    return storage.join(sweep.storage_path, sweep.name)


def pretrain_final(sweep: SweepConfig, trial_id: str | None) -> str:
    """The export a trial fine-tunes from."""
    return storage.join(pretrain_root(sweep, trial_id), "pretrain", FINAL)


def ensure_pretrained(sweep: SweepConfig, params: dict[str, Any], trial_id: str | None) -> str:
    """The pretraining stage's export, pretraining first unless it is there (an interrupted
    pretraining resumes from its checkpoints in the same folder)."""
    root = pretrain_root(sweep, trial_id)
    final = pretrain_final(sweep, trial_id)
    if not storage.exists(storage.join(final, "model.pt")):
        pjob = sweep.pretrain_job(params)
        pjob.run.name, pjob.run.storage_path = "pretrain", root
        pjob.tracking.enabled = False  # the sweep's MLflow runs hold the record
        pretrain.run(pjob)
    return final


def run_trial(config: dict[str, Any], sweep: dict[str, Any]) -> None:
    """The Tune trainable; ``sweep`` is bound with ``tune.with_parameters`` (so it is not
    logged as a hyperparameter)."""
    sweep = SweepConfig.model_validate(sweep)
    params = config["params"]
    trial_id = ray.tune.get_context().get_trial_id()
    root = trial_root(sweep, trial_id)
    pretrained = sweep.finetune.pretrained
    if sweep.pretrain is not None:
        pretrained = ensure_pretrained(sweep, params, trial_id)
    fjob = sweep.finetune_job(params)
    fjob.pretrained = pretrained
    fjob.run.name, fjob.run.storage_path = "finetune", root
    fjob.run.checkpoint_every_steps = fjob.run.validate_every_steps  # one report per validation
    fjob.tracking.enabled = False  # paths were made absolute on the driver (SweepConfig.pin)
    trainer, _, _ = finetune.build_trainer(fjob, callbacks=[TuneReportCallback()])
    result = trainer.fit()
    if result.error:
        raise result.error
