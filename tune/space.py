"""A sweep, declared in YAML and validated before any trial starts.

    name: masking-focal
    finetune:                      # every trial fine-tunes with pipelines.finetune
      config: configs/finetune/tiny.yaml
      set: [optim.max_steps=60]
      pretrained: demo_out/runs/pretrain-tiny/final   # or null (from scratch)
    pretrain:                      # optional: each trial first pretrains briefly
      config: configs/pretrain/tiny.yaml
      set: [optim.max_steps=20]
    space:                         # "<pretrain|finetune>.<group>.<key>": distribution
      pretrain.masking.mask_prob: {type: uniform, low: 0.5, high: 1.6}
      finetune.loss.focal_gamma: {type: loguniform, low: 0.5, high: 5}
      finetune.finetune_masking.time_mask_length: {type: choice, values: [2, 5, 10]}
    num_samples: 8
    metric: val_macro_ap           # or val_micro_f1; always maximised
    scheduler: {type: asha, grace_period: 1, reduction_factor: 2}

Every swept key is checked against the job's typed config with a value drawn from its
distribution, so an unknown key or an out-of-range value fails here, naming the key.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from a2v_core.config import FinetuneJob, PretrainJob
from a2v_core.config_loader import ConfigError, build_config, load_config

METRICS = ("val_macro_ap", "val_micro_f1")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Dist(_Strict):
    """One parameter's distribution."""

    type: Literal["uniform", "loguniform", "randint", "choice", "grid"]
    low: float | None = None
    high: float | None = None
    values: list[Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> Dist:
        if self.type in ("choice", "grid"):
            if not self.values:
                raise ValueError(f"'{self.type}' needs a non-empty 'values' list")
            if self.low is not None or self.high is not None:
                raise ValueError(f"'{self.type}' takes 'values', not low/high")
            return self
        if self.low is None or self.high is None:
            raise ValueError(f"'{self.type}' needs 'low' and 'high'")
        if not self.low < self.high:
            raise ValueError(f"empty range: low ({self.low}) must be < high ({self.high})")
        if self.type == "loguniform" and self.low <= 0:
            raise ValueError(f"loguniform needs low > 0 (got {self.low})")
        if self.type == "randint" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError("randint needs integer low/high (high exclusive)")
        return self

    def samples(self) -> list[Any]:
        """Values that exercise the whole declared range (used for validation)."""
        if self.values is not None:
            return list(self.values)
        if self.type == "randint":
            return [int(self.low), int(self.high) - 1]
        return [self.low, self.high if self.type != "loguniform" else self.high * (1 - 1e-9)]

    def to_tune(self) -> Any:
        from ray import tune

        if self.type == "uniform":
            return tune.uniform(self.low, self.high)
        if self.type == "loguniform":
            return tune.loguniform(self.low, self.high)
        if self.type == "randint":
            return tune.randint(int(self.low), int(self.high))
        if self.type == "choice":
            return tune.choice(self.values)
        return tune.grid_search(self.values)

    @property
    def log_scale(self) -> bool:
        return self.type == "loguniform"


class Stage(_Strict):
    """A job config file plus ``--set`` style overrides applied in every trial."""

    config: str | None = None
    set: list[str] = Field(default_factory=list)
    resolved: dict[str, Any] | None = Field(
        None,
        description="the stage's job config as the driver resolved it (``SweepConfig.pin``): "
        "trials run on nodes that cannot read the driver's config files",
    )

    def build(self, job_cls: type, overrides: list[str]) -> Any:
        if self.resolved is not None:
            return build_config(job_cls, self.resolved, overrides)
        return load_config(job_cls, self.config, self.set + overrides)


class FinetuneStage(Stage):
    pretrained: str | None = None


class Scheduler(_Strict):
    type: Literal["asha", "fifo"] = "asha"
    grace_period: int = Field(1, ge=1, description="validations before ASHA may stop a trial")
    reduction_factor: float = Field(2.0, gt=1)
    max_t: int | None = Field(None, ge=1, description="None = validations per trial")


class SweepTracking(_Strict):
    uri: str | None = None
    experiment: str | None = None  # None: $MLFLOW_EXPERIMENT_NAME, else a2v/sweep
    enabled: bool = True


class SweepConfig(_Strict):
    name: str = Field("sweep", min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    storage_path: str = Field("outputs/tune", min_length=1)
    finetune: FinetuneStage = Field(default_factory=FinetuneStage)
    pretrain: Stage | None = None
    space: dict[str, Dist] = Field(default_factory=dict)
    num_samples: int = Field(1, ge=1, description="samples (x every grid point)")
    metric: Literal["val_macro_ap", "val_micro_f1"] = "val_macro_ap"
    scheduler: Scheduler = Field(default_factory=Scheduler)
    max_concurrent_trials: int | None = Field(None, ge=1, description="None = from resources")
    trial_driver_cpus: float = Field(
        0.05, gt=0, description="CPUs held by each trial driver (mostly idle)"
    )
    search_seed: int | None = 0
    tracking: SweepTracking = Field(default_factory=SweepTracking)

    # ------------------------------------------------------------------ jobs of a trial

    def stage_params(self, params: dict[str, Any], stage: str) -> list[str]:
        prefix = f"{stage}."
        return [
            f"{k[len(prefix) :]}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"
            for k, v in params.items()
            if k.startswith(prefix)
        ]

    def finetune_job(self, params: dict[str, Any] | None = None) -> FinetuneJob:
        overrides = []
        if self.finetune.pretrained is not None:
            overrides.append(f"pretrained={self.finetune.pretrained}")
        return self.finetune.build(
            FinetuneJob, overrides + self.stage_params(params or {}, "finetune")
        )

    def pretrain_job(self, params: dict[str, Any] | None = None) -> PretrainJob:
        if self.pretrain is None:
            raise ConfigError("this sweep has no 'pretrain' stage")
        return self.pretrain.build(PretrainJob, self.stage_params(params or {}, "pretrain"))

    def pin(self, absolute: Any) -> None:
        """Resolve every stage on the driver, once: its YAML and ``set`` become ``resolved``
        and local paths become absolute (``absolute``: a local path -> absolute, URIs kept).
        A trial then needs neither the driver's files nor its working directory (Tune runs
        trials in their own directories, on any node)."""
        if self.finetune.pretrained is not None:
            self.finetune.pretrained = absolute(self.finetune.pretrained)
        stages = [(self.finetune, self.finetune_job())]
        if self.pretrain is not None:
            stages.append((self.pretrain, self.pretrain_job()))
        for stage, job in stages:
            job.data.archive = absolute(job.data.archive)
            job.data.annotations = absolute(job.data.annotations)
            stage.resolved, stage.set = job.model_dump(mode="json"), []

    @property
    def pretrain_per_trial(self) -> bool:
        """Whether trials pretrain differently (the space sweeps a ``pretrain.*`` key)."""
        return any(k.startswith("pretrain.") for k in self.space)

    def reports_per_trial(self) -> int:
        job = self.finetune_job()
        return math.ceil(job.optim.max_steps / job.run.validate_every_steps)

    def validate_space(self) -> None:
        """Build each stage's job once per declared extreme of every swept key."""
        for key, dist in self.space.items():
            stage = key.split(".", 1)[0]
            if stage not in ("pretrain", "finetune") or key.count(".") < 2:
                raise ConfigError(
                    f"space.{key}: keys are '<pretrain|finetune>.<group>.<key>', "
                    "e.g. finetune.loss.focal_gamma"
                )
            if stage == "pretrain" and self.pretrain is None:
                raise ConfigError(
                    f"space.{key}: sweeps a pretraining key but the sweep has no 'pretrain' stage"
                )
            build = self.pretrain_job if stage == "pretrain" else self.finetune_job
            for value in dist.samples():
                try:
                    build({key: value})
                except ConfigError as err:
                    raise ConfigError(f"space.{key} = {value!r}: {err}") from None

    def param_space(self) -> dict[str, Any]:
        return {"params": {k: d.to_tune() for k, d in self.space.items()}}

    def sample(self, seed: int = 0) -> dict[str, Any]:
        """One concrete parameter set (for dry runs and tests)."""
        rng = random.Random(seed)
        return {k: rng.choice(d.samples()) for k, d in self.space.items()}

    def dry_run(self) -> SweepConfig:
        """This sweep as a dry run: one trial at one point of the space (``sample``), every
        stage a job dry run (one file, one step), named ``<name>-dry-run`` so that it never
        meets the real sweep's state."""
        stage_set = ["run.dry_run=true"]
        return self.model_copy(
            update={
                "name": f"{self.name}-dry-run",
                "num_samples": 1,
                "space": {k: Dist(type="choice", values=[v]) for k, v in self.sample().items()},
                "finetune": self.finetune.model_copy(update={"set": self.finetune.set + stage_set}),
                "pretrain": self.pretrain
                and self.pretrain.model_copy(update={"set": self.pretrain.set + stage_set}),
            }
        )


def load_sweep(path: str | Path, overrides: list[str] | None = None) -> SweepConfig:
    """YAML (+ ``--set key=value`` on the sweep itself) -> validated SweepConfig."""
    return checked(load_config(SweepConfig, path, overrides))


def sweep_from_dict(tree: dict[str, Any], overrides: list[str] | None = None) -> SweepConfig:
    return checked(build_config(SweepConfig, tree, overrides))


def checked(sweep: SweepConfig) -> SweepConfig:
    """What the schema cannot say: a space to sweep, stages that resolve into jobs, and every
    value of the space valid in its job."""
    if not sweep.space:
        raise ConfigError("space: a sweep needs at least one parameter")
    sweep.finetune_job()
    if sweep.pretrain is not None:
        sweep.pretrain_job()
    sweep.validate_space()
    return sweep
