"""A training run's folder, ``<run.storage_path>/<run.name>``, and the checkpoints in it: the
one place their names are spelled, and the one way to open a checkpoint by URI.

    <run>/config.yaml                      the config of the latest start
    <run>/checkpoint_<time>/               Ray Train's checkpoints (model.pt, config.yaml,
                                           meta.json); the latest is named in Ray's
                                           checkpoint_manager_snapshot.json
    <run>/final/                           the last weights (pretraining: what fine-tuning takes)
    <run>/best/                            fine-tuning: the best weights by select_metric, with
                                           the tuned per-class thresholds (what label takes)
    <run>/splits.csv                       fine-tuning: the clips of each split
    <run>/_stopped.txt                     why a guard stopped the run (read by the driver)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from a2v_core.checkpoint import classifier_of, embedder_of, load_checkpoint, model_version
from a2v_core.config import TrainJob
from a2v_core.errors import InputError
from a2v_core.redact import redact_uri
from pipelines.data import storage

CONFIG = "config.yaml"
FINAL = "final"
BEST = "best"
SPLITS = "splits.csv"
STOP_MARKER = "_stopped.txt"
#: Ray Train's record of a run's checkpoints (internal to Ray; read by ``latest_checkpoint``)
RAY_SNAPSHOT = "checkpoint_manager_snapshot.json"

KIND_NAMES = {"finetune": "fine-tuned", "pretrain": "pretraining"}
KIND_HINTS = {
    "finetune": "a fine-tuning run writes one to <storage_path>/<run>/best",
    "pretrain": "a pretraining run writes one to <storage_path>/<run>/final",
}


def run_dir(job: TrainJob) -> str:
    return storage.join(job.run.storage_path, job.run.name)


def path(job_or_dir: TrainJob | str, name: str) -> str:
    """``<run>/<name>`` for one of this module's names (CONFIG, FINAL, BEST, ...)."""
    base = job_or_dir if isinstance(job_or_dir, str) else run_dir(job_or_dir)
    return storage.join(base, name)


def latest_checkpoint(run: str) -> str | None:
    """The URI of the run's latest Ray Train checkpoint (what a rerun resumes from), or None.
    Read from Ray's own snapshot file: a run directory holds checkpoints of failed starts
    too, and the newest folder name is not always the one Ray resumes from."""
    snapshot = storage.join(run, RAY_SNAPSHOT)
    if not storage.exists(snapshot):
        return None
    latest = json.loads(storage.read_bytes(snapshot)).get("latest_checkpoint_result") or {}
    name = latest.get("checkpoint_dir_name")
    return storage.join(run, name) if name else None


def checkpoints_by_step(run: str) -> dict[int, str]:
    """Every Ray Train checkpoint the run keeps, by the step in its meta.json."""
    found = {}
    for rel, _ in storage.list_all(run):
        parts = rel.split("/")
        if len(parts) == 2 and parts[1] == "meta.json" and parts[0].startswith("checkpoint_"):
            meta = json.loads(storage.read_bytes(storage.join(run, rel)))
            found[int(meta["step"])] = storage.join(run, parts[0])
    return found


@dataclass
class Opened:
    """A checkpoint fetched, checked and loaded: its model (eval mode), meta, config and the
    content hash of its weights."""

    model: Any
    meta: dict
    config: dict
    states: dict
    version: str


def open_checkpoint(uri: str | None, kinds: tuple[str, ...], flag: str = "--model") -> Opened:
    """Fetch the checkpoint at ``uri``, check it is one of ``kinds`` ("pretrain",
    "finetune") and that its weights load into the model its config describes. Every
    mistake is an ``InputError`` naming ``flag``: no URI, not found, not a checkpoint, the
    wrong kind, weights that do not load."""
    wanted = " or ".join(KIND_NAMES[k] for k in kinds)
    if not uri:
        raise InputError(f"{flag} is required: a {wanted} checkpoint ({KIND_HINTS[kinds[0]]})")
    shown = redact_uri(uri)
    try:
        with storage.fetched(uri) as local:
            try:
                states, config, meta = load_checkpoint(local)
            except FileNotFoundError:
                raise InputError(
                    f"{flag} {shown}: not a checkpoint (it needs model.pt, config.yaml and "
                    f"meta.json; {KIND_HINTS[kinds[0]]})"
                ) from None
            kind = meta.get("kind")
            if kind not in kinds:
                hint = (
                    f" (`a2v finetune --pretrained {shown}` makes one)"
                    if kinds == ("finetune",) and kind == "pretrain"
                    else ""
                )
                raise InputError(
                    f"{flag} {shown}: a {KIND_NAMES.get(kind, repr(kind))} checkpoint; this job "
                    f"needs a {wanted} one{hint}"
                )
            try:  # the weights fit the model the config describes
                model = (classifier_of if kind == "finetune" else embedder_of)(states, config, meta)
            except (RuntimeError, ValueError, KeyError) as err:
                raise InputError(f"{flag} {shown}: the checkpoint does not load ({err})") from None
            return Opened(model, meta, config, states, model_version(local))
    except FileNotFoundError:
        raise InputError(f"{flag} {shown}: not found") from None
