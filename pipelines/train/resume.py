"""Refuse to resume a run from checkpoints that were written with a different config.

Pretraining and fine-tuning resume from the latest checkpoint under
``<run.storage_path>/<run.name>``. If the config changed in between (another preset, the front
end frozen or not, other masks or learning rate), loading those checkpoints either crashes deep
inside a worker (an optimizer group of another size) or, worse, silently mixes two recipes. The
driver compares the config saved beside the checkpoints with the new one first and stops with
the keys that differ.
"""

from __future__ import annotations

import yaml
from pydantic import BaseModel

from a2v_core.config_loader import flatten
from a2v_core.errors import InputError
from pipelines.data import storage
from pipelines.runtime.run_dir import CONFIG, latest_checkpoint

#: keys that may change when a run resumes: where it runs, how it reports, how long it goes on,
#: where the same data lives, and how events are cut (none of them is in a checkpoint)
SAFE_PREFIXES = ("run.", "tracking.", "cluster.", "events.")
SAFE_KEYS = frozenset(
    {
        "optim.max_steps",
        "select_metric",
        "frame_threshold",
        "data.archive",
        "data.annotations",
        "data.read_tasks",
        "data.chunks_per_block",
        "data.materialize_below_mb",
        "data.split_file_s",
    }
)


class ResumeMismatch(InputError):
    """The run directory holds checkpoints of a run with another config."""

    def __init__(self, run_dir: str, diff: dict[str, tuple]) -> None:
        lines = "\n".join(f"    {k}: {old!r} -> {new!r}" for k, (old, new) in diff.items())
        super().__init__(
            f"{run_dir} holds checkpoints of a run with a different config, and resuming "
            f"would load them into another recipe:\n{lines}\n"
            "  Use a new --name (run.name), or delete that directory to start over."
        )
        self.run_dir, self.diff = run_dir, diff


def resumed_config_uri(run_dir: str) -> str | None:
    """The config.yaml of the checkpoint a rerun would resume from (Ray Train's latest), or
    None when ``run_dir`` holds no checkpoint. Not the run directory's own config.yaml: every
    start rewrites that one, also a start that then failed."""
    latest = latest_checkpoint(run_dir)
    uri = storage.join(latest, CONFIG) if latest else None
    return uri if uri and storage.exists(uri) else None


def check_resume(run_dir: str, job: BaseModel) -> None:
    """Raise ResumeMismatch if ``run_dir`` holds a checkpoint whose saved config differs from
    ``job`` outside the safe keys. Keys the saved config does not have (written by an older
    version) are not compared."""
    cfg_uri = resumed_config_uri(run_dir)
    if cfg_uri is None:
        return
    old = flatten(yaml.safe_load(storage.read_bytes(cfg_uri)) or {})
    new = flatten(job)
    diff = {
        k: (old[k], new.get(k))
        for k in sorted(old)
        if k in new and old[k] != new[k] and k not in SAFE_KEYS and not k.startswith(SAFE_PREFIXES)
    }
    if diff:
        raise ResumeMismatch(run_dir, diff)
