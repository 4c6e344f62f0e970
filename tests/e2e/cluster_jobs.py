"""The share-nothing module's job commands and where they write: ``ray job submit`` entry
points, the local label job they are compared with, and reading the jobs' step lines."""

from __future__ import annotations

import re

from a2v_core.config_loader import load_config
from tests.conftest import ROOT

S3 = "s3://a2v-test/sn"
ARCHIVE = f"{S3}/archive"
RUNS = f"{S3}/runs"
PASSWORD = "planted-pw-7f3a0c"  # in every job's MLflow URI; no output may hold it
THRESHOLD = 0.03  # 6 fine-tuning steps: probabilities stay low, and events are what we compare


def once(items: list) -> list:
    """Ray Train forwards each worker print twice (its print patch and the worker's stdout):
    drop an item equal to the one before it."""
    return [x for i, x in enumerate(items) if i == 0 or x != items[i - 1]]


def job_steps(logs: str) -> list[int]:
    return once([int(s) for s in re.findall(r"\[pretrain\] step (\d+)/", logs)])


def set_args(*sets: str) -> list[str]:
    """``--set KEY=VALUE`` for each of ``sets``."""
    return [arg for s in sets for arg in ("--set", s)]


def pretrain_entry(storage_path: str, name: str, *sets: str) -> list[str]:
    entry = ["python", "-m", "pipelines.pretrain", "--config", "configs/pretrain/tiny.yaml"]
    entry += ["--archive", ARCHIVE, "--storage-path", storage_path, "--name", name]
    return entry + set_args(*sets)


def local_label_job(cls, model: str, out: str, *extra: str):
    return load_config(
        cls,
        ROOT / "configs/label/default.yaml",
        [
            f"model={model}",
            f"data.archive={ARCHIVE}",
            f"out={out}",
            "tracking.enabled=false",
            f"events.threshold={THRESHOLD}",  # = --threshold THRESHOLD
            "events.thresholds_from_model=false",
            *extra,
        ],
    )


def spread_entry(module: str, model: str, out: str, *extra: str) -> list[str]:
    """A label / evaluate command with 2 predictor actors spread over the worker nodes."""
    return [
        *("python", "-m", module, "--model", model, "--archive", ARCHIVE, "--out", out),
        *("--threshold", str(THRESHOLD)),
        *set_args("cluster.num_actors=2", "cluster.cpus_per_worker=1"),
        *set_args("cluster.placement_strategy=SPREAD"),
        *extra,
    ]
