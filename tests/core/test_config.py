from pathlib import Path

import pytest
import yaml

from a2v_core.config import JOBS, FinetuneJob, LabelJob, ModelConfig, PretrainJob
from a2v_core.config_loader import ConfigError, load_config
from tests.conftest import ROOT

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize(
    "path", sorted(CONFIGS.rglob("*.yaml")), ids=lambda p: str(p.relative_to(CONFIGS))
)
def test_every_shipped_yaml_loads(path):
    job = path.parent.name
    if job == "tune":
        from tune.space import load_sweep

        load_sweep(path)
        return
    cfg = load_config(JOBS[job], path)
    assert cfg.model_dump()


def test_preset_fills_fields_and_yaml_overrides():
    cfg = ModelConfig(preset="large", dropout=0.2)
    assert (cfg.width, cfg.heads, cfg.depth, cfg.prenet_depth, cfg.sinc_filters) == (
        1024,
        16,
        16,
        8,
        127,
    )
    assert cfg.dropout == 0.2
    assert cfg.sinc_min_band_hz == 127.0 and cfg.hop_samples == 40


def test_set_overrides_apply_in_order(tmp_path):
    cfg = load_config(
        PretrainJob,
        CONFIGS / "pretrain/tiny.yaml",
        ["optim.lr=0.01", "run.name=x1", "optim.lr=0.02"],
    )
    assert cfg.optim.lr == 0.02 and cfg.run.name == "x1"


@pytest.mark.parametrize(
    "override, key, hint",
    [
        ("optim.learning_rate=0.1", "optim.learning_rate", "allowed keys here"),
        ("optim.max_steps=abc", "optim.max_steps", "integer"),
        ("optim.lr=-1", "optim.lr", "greater than 0"),
        ("model.preset=huge", "model.preset", "'tiny', 'base' or 'large'"),
        ("data.channel=left", "data.channel", "'first' or 'loudest'"),
        ("masking.mask_length=0", "masking.mask_length", "greater than or equal to 1"),
        ("bogus.key=1", "bogus", "allowed keys here"),
    ],
)
def test_bad_values_name_the_key(override, key, hint):
    with pytest.raises(ConfigError) as err:
        load_config(PretrainJob, CONFIGS / "pretrain/tiny.yaml", [override])
    assert key in str(err.value) and hint in str(err.value)


def test_cross_field_checks():
    with pytest.raises(ConfigError, match="model.width"):
        load_config(PretrainJob, None, ["model.width=66", "model.heads=4"])
    with pytest.raises(ConfigError, match="overlap_s"):
        load_config(PretrainJob, None, ["data.overlap_s=10", "data.clip_s=10"])


def test_label_and_finetune_defaults():
    assert LabelJob().events.threshold == 0.15
    # one event threshold for every job; fine-tuning's frame F1 threshold is its own key
    assert FinetuneJob().events.threshold == 0.15 and FinetuneJob().frame_threshold == 0.175
    assert (
        load_config(FinetuneJob, ROOT / "configs/finetune/tiny.yaml", []).frame_threshold == 0.175
    )
    assert FinetuneJob().loss.focal_alpha == 0.25 and FinetuneJob().loss.focal_gamma == 2.0


def test_resolved_config_round_trips():
    from a2v_core.config_loader import to_yaml

    cfg = load_config(FinetuneJob, CONFIGS / "finetune/tiny.yaml")
    again = FinetuneJob.model_validate(yaml.safe_load(to_yaml(cfg)))
    assert again == cfg


def test_jobs_carry_only_the_groups_they_read():
    """Composition: fine-tuning has no pretraining groups (they were logged and compared on
    resume, never read); configs and checkpoints written with them still load. The preset is
    the one source of the architecture's sizes."""
    from a2v_core.config import FinetuneJob, ModelConfig, PretrainJob, TrainJob
    from a2v_core.presets import MODEL_PRESETS

    shared = set(TrainJob.model_fields)
    assert shared < set(PretrainJob.model_fields) and shared < set(FinetuneJob.model_fields)
    assert {"masking", "ema"}.isdisjoint(FinetuneJob.model_fields)
    old = {"masking": {"mask_prob": 1.0}, "ema": {"decay": 0.99}, "loss": {"focal_gamma": 1.5}}
    job = FinetuneJob.model_validate(old)  # a config.yaml of an older run or checkpoint
    assert job.loss.focal_gamma == 1.5 and "masking" not in job.model_dump()
    sized = {k for k, f in ModelConfig.model_fields.items() if f.is_required()}
    assert sized == set(MODEL_PRESETS["tiny"]) - {"learned_alibi_scale"}
    for name, preset in MODEL_PRESETS.items():
        cfg = ModelConfig(preset=name)
        assert all(getattr(cfg, k) == v for k, v in preset.items()), name
