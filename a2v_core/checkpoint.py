"""Checkpoint directories: ``model.pt`` (state dicts), ``config.yaml`` (resolved), ``meta.json``.

``model.pt`` holds only tensors and plain containers so that it loads with
``torch.load(..., weights_only=True)``: keys such as ``model``, ``teacher``, ``optimizer``,
``scheduler``, ``scaler`` map to state dicts; step, classes and rates live in ``meta.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path
from typing import Any

import torch
import yaml

from a2v_core.config import FinetuneJob, PretrainJob
from a2v_core.finetune import FrameClassifier, load_pretrained_encoder

CODE_VERSION = "0.1.0"


def save_checkpoint(
    directory: str | Path, states: dict[str, Any], config_yaml: str, meta: dict
) -> Path:
    """Write the three files; ``model.pt`` is written to a temp name and renamed (atomic)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / "model.pt.tmp"
    torch.save(states, tmp)
    os.replace(tmp, d / "model.pt")
    (d / "config.yaml").write_text(config_yaml)
    full_meta = {"code_version": CODE_VERSION, "python": platform.python_version(), **meta}
    (d / "meta.json").write_text(json.dumps(full_meta, indent=2, sort_keys=True))
    return d


def load_checkpoint(directory: str | Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """-> (states, config dict, meta). Raises FileNotFoundError naming the missing file."""
    d = Path(directory)
    for name in ("model.pt", "config.yaml", "meta.json"):
        if not (d / name).is_file():
            raise FileNotFoundError(f"not a checkpoint directory: {d} has no {name}")
    states = torch.load(d / "model.pt", map_location="cpu", weights_only=True)
    config = yaml.safe_load((d / "config.yaml").read_text()) or {}
    meta = json.loads((d / "meta.json").read_text())
    return states, config, meta


def model_version(directory: str | Path) -> str:
    """Content hash of the weights: the resume key changes whenever the model does."""
    digest = hashlib.sha1(Path(directory, "model.pt").read_bytes()).hexdigest()[:12]
    return f"sha-{digest}"


def encoder_state(model_state: dict[str, Any]) -> dict[str, Any]:
    """The encoder's weights inside a pretraining checkpoint's ``model`` state (the student's
    ``encoder.`` entries, without the prefix)."""
    prefix = "encoder."
    return {k[len(prefix) :]: v for k, v in model_state.items() if k.startswith(prefix)}


def load_classifier(directory: str | Path) -> tuple[FrameClassifier, dict[str, Any]]:
    """A fine-tuned checkpoint -> eval-mode FrameClassifier and its meta (classes, rates...)."""
    states, config, meta = load_checkpoint(directory)
    if meta.get("kind") != "finetune":
        raise ValueError(
            f"{directory} is a '{meta.get('kind')}' checkpoint; labelling needs a fine-tuned one"
        )
    return classifier_of(states, config, meta), meta


def classifier_of(states: dict, config: dict, meta: dict) -> FrameClassifier:
    """The eval-mode FrameClassifier of a loaded fine-tuned checkpoint."""
    job = FinetuneJob.model_validate(config)
    model = FrameClassifier(job.model, n_classes=len(meta["classes"]))
    model.load_state_dict(states["model"])
    model.eval()
    return model


def embedder_of(states: dict, config: dict, meta: dict) -> FrameClassifier:
    """The eval-mode encoder of a pretraining checkpoint (its student, wrapped without a
    head) or of a fine-tuned one (its encoder and head): ``embed`` gives the frame features."""
    kind = meta.get("kind")
    if kind == "finetune":
        return classifier_of(states, config, meta)
    if kind != "pretrain":
        raise ValueError(f"a {kind!r} checkpoint holds no encoder (pretrain or finetune)")
    job = PretrainJob.model_validate(config)
    model = FrameClassifier(job.model, n_classes=1)
    load_pretrained_encoder(model, encoder_state(states["model"]))
    model.eval()
    return model
