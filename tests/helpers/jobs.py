"""Job configs the pipeline tests run."""

from __future__ import annotations

from a2v_core.config import EmbedJob, LabelJob
from a2v_core.config_loader import load_config
from tests.conftest import ROOT

THRESHOLD = 0.025


def archive_job(cls, config: str, model: str, archive: str, out: str, *extra: str):
    """A label or embed job of ``model`` over ``archive`` into ``out``, untracked."""
    return load_config(
        cls,
        ROOT / config,
        [
            f"model={model}",
            f"data.archive={archive}",
            f"out={out}",
            "tracking.enabled=false",
            "cluster.cpus_per_worker=0.5",
            *extra,
        ],
    )


def label_job(model: str, archive: str, out: str, *extra: str) -> LabelJob:
    """Every format, and one low threshold (the checkpoint's tuned ones are 0.2-0.7) that keeps
    events certain."""
    return archive_job(
        LabelJob,
        "configs/label/default.yaml",
        model,
        archive,
        out,
        "formats=[parquet,raven,audacity,csv]",
        f"events.threshold={THRESHOLD}",
        "events.thresholds_from_model=false",
        *extra,
    )


def embed_job(model: str, archive: str, out: str, *extra: str) -> EmbedJob:
    return archive_job(EmbedJob, "configs/embed/default.yaml", model, archive, out, *extra)
