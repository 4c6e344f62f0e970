"""Typed configs: one config type per job, built from small groups.

Defaults live here; ``a2v_core.config_loader`` applies ``configs/<job>/<preset>.yaml`` and
repeated ``--set group.key=value`` flags on top and validates before any work starts.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from a2v_core.config_events import EventConfig
from a2v_core.config_groups import (
    ClusterConfig,
    DataConfig,
    EmaConfig,
    FinetuneMaskingConfig,
    Group,
    LossConfig,
    MaskingConfig,
    MixupConfig,
    OptimConfig,
    RunConfig,
    TrackingConfig,
)
from a2v_core.config_model import ModelConfig
from a2v_core.label_formats import DEFAULT_FORMATS, FORMATS, check_formats

#: the groups, importable from here as before the split
__all__ = [
    "Group",
    "ModelConfig",
    "MaskingConfig",
    "FinetuneMaskingConfig",
    "EmaConfig",
    "LossConfig",
    "MixupConfig",
    "OptimConfig",
    "DataConfig",
    "ClusterConfig",
    "RunConfig",
    "TrackingConfig",
    "EventConfig",
    "Job",
    "TrainJob",
    "PretrainJob",
    "FinetuneJob",
    "ArchiveJob",
    "LabelJob",
    "EvaluateJob",
    "EmbedJob",
    "JOBS",
    "PRETRAIN_ONLY",
]


class Job(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    #: files a dry run reads (``dry_run_slice``)
    dry_run_files: ClassVar[int] = 1

    @model_validator(mode="after")
    def _dry_run(self) -> Job:
        """What ``run.dry_run`` means, in one place: one step, logged, checkpointed and
        validated (the files are cut by ``dry_run_slice`` where each job lists them)."""
        run = getattr(self, "run", None)
        if run is not None and run.dry_run:
            if getattr(self, "optim", None) is not None and self.optim.max_steps != 1:
                self.optim.max_steps = 1
            for key in ("log_every_steps", "checkpoint_every_steps", "validate_every_steps"):
                if getattr(run, key) != 1:
                    setattr(run, key, 1)
        return self

    def dry_run_slice(self, items: list) -> list:
        """``items`` (the files a job is about to read), cut to ``dry_run_files`` on a dry run."""
        return items[: self.dry_run_files] if self.run.dry_run else items


class TrainJob(Job):
    """The groups both training jobs read; each job adds its own (composition: a job
    carries only groups it reads, so only those are logged and compared on resume)."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    mixup: MixupConfig = Field(default_factory=MixupConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    run: RunConfig = Field(default_factory=RunConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @model_validator(mode="before")
    @classmethod
    def _data_follows_model(cls, data: Any) -> Any:
        """``data.sample_rate_hz`` follows ``model.sample_rate_hz`` (either may be given; both,
        differing, is an error), and 1 kHz frames default to 2 s clips (2 000 frames, as 10 s
        at 200 Hz), so that the two can never disagree."""
        if not isinstance(data, dict) or isinstance(data.get("data"), BaseModel):
            return data  # validated groups (an assignment): _rates_match holds them to one rate
        model, group = data.get("model"), dict(data.get("data") or {})
        if isinstance(model, BaseModel):  # a job built in code around a ModelConfig
            m_rate, m_frames = model.sample_rate_hz, model.frame_rate_hz
        else:
            model = dict(model or {})
            m_rate, m_frames = model.get("sample_rate_hz"), model.get("frame_rate_hz")
        d_rate = group.get("sample_rate_hz")
        if m_rate is not None and d_rate is not None and m_rate != d_rate:
            raise ValueError(
                f"data.sample_rate_hz ({d_rate}) differs from model.sample_rate_hz ({m_rate}); "
                "set model.sample_rate_hz (or --sample-rate-hz) alone: the data follows the model"
            )
        rate = m_rate if m_rate is not None else d_rate
        if rate is not None:
            group["sample_rate_hz"] = rate
            if isinstance(model, dict):
                model["sample_rate_hz"] = rate
        if m_frames == 1000 and "clip_s" not in group:
            group["clip_s"] = 2.0
        return {**data, "model": model, "data": group}

    @model_validator(mode="after")
    def _rates_match(self) -> TrainJob:
        if self.data.sample_rate_hz != self.model.sample_rate_hz:  # set apart after validation
            raise ValueError("data.sample_rate_hz must equal model.sample_rate_hz")
        return self


class PretrainJob(TrainJob):
    masking: MaskingConfig = Field(default_factory=MaskingConfig)
    ema: EmaConfig = Field(default_factory=EmaConfig)


#: groups of pretraining that fine-tuning configs carried (unread) before they were split
PRETRAIN_ONLY = ("masking", "ema")


class FinetuneJob(TrainJob):
    dry_run_files: ClassVar[int] = 2  # a training and a validation split
    finetune_masking: FinetuneMaskingConfig = Field(default_factory=FinetuneMaskingConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    events: EventConfig = Field(default_factory=EventConfig)
    frame_threshold: float = Field(
        0.175,
        gt=0,
        lt=1,
        description="validation frame precision/recall/micro-F1 threshold (0.175: the original's "
        "model selection); events use events.threshold and the per-class thresholds tuned here",
    )
    pretrained: str | None = Field(
        None, description="pretraining checkpoint whose encoder is fine-tuned (None: from scratch)"
    )
    select_metric: Literal["val_micro_f1", "val_macro_ap"] = Field(
        "val_micro_f1",
        description="validation metric that picks the exported best checkpoint (ties: the "
        "other one). micro-F1 at frame_threshold is the original's; macro AP needs no "
        "threshold, which suits short runs whose per-class thresholds are tuned afterwards",
    )

    @model_validator(mode="after")
    def _events_follow_frames(self) -> FinetuneJob:
        """Threshold tuning scores the events labelling will write: at 1 kHz frames with that
        frame rate's event defaults (``EventConfig.at_frame_rate``)."""
        if self.model.frame_rate_hz != 200:
            scaled = self.events.at_frame_rate(self.model.frame_rate_hz)
            for key in ("pool_s", "min_event_s"):
                if getattr(self.events, key) != getattr(scaled, key):
                    setattr(self.events, key, getattr(scaled, key))
        return self

    @model_validator(mode="before")
    @classmethod
    def _drop_pretrain_groups(cls, data: Any) -> Any:
        """Fine-tuning configs, run folders and checkpoints written before the jobs were
        split carry ``masking`` and ``ema``, which fine-tuning never read: they still load."""
        if isinstance(data, dict) and any(k in data for k in PRETRAIN_ONLY):
            data = {k: v for k, v in data.items() if k not in PRETRAIN_ONLY}
        return data


class ArchiveJob(Job):
    """A pass of a model over a whole archive, resumable file by file (label, embed)."""

    data: DataConfig = Field(default_factory=DataConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    run: RunConfig = Field(default_factory=RunConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    model: str = Field("", description="checkpoint URI of a fine-tuned model")
    out: str = Field(
        "demo_out/labels",
        description="output prefix (local, s3://, gs://); runs with other settings live side by side",
    )
    manifest: str | None = Field(
        None,
        description="the Parquet of `a2v manifest --archive <this archive>`: its files are "
        "processed without listing the archive again (a prefix of 10^5+ objects lists for "
        "minutes); files added since are not seen",
    )
    batch_size: int = Field(
        8, ge=1, description="clips of audio per model forward (shorter inputs: more of them)"
    )
    bucket_s: float = Field(
        0.5,
        ge=0,
        le=600,
        description="a chunk with less audio than data.clip_s (a short file, a file's last "
        "chunk) goes to the model padded to the next multiple of this, not to a whole clip, "
        "batched with inputs of its length: compute in proportion to audio; 0: a whole clip",
    )
    overwrite: bool = Field(False, description="discard this run's outputs and start it afresh")
    retry_errors: bool = Field(
        False, description="process again the files this run committed with a decode error"
    )
    flush_every_files: int = Field(
        16,
        ge=1,
        description="finished files per committed output part, at the least (a resubmission "
        "redoes at most these, or flush_every_s of work)",
    )
    flush_every_s: float = Field(
        5.0,
        ge=0,
        description="seconds between committed parts, at the least: an archive of many short "
        "files commits parts of many files, not one object set per 16 files (0: every "
        "flush_every_files files)",
    )
    release_memory: bool = Field(
        True,
        description="hand freed heap back to the OS after every batch (glibc malloc_trim): keeps "
        "an actor's memory flat over a long archive, at a few % of CPU inference time",
    )


class LabelJob(ArchiveJob):
    events: EventConfig = Field(default_factory=EventConfig)
    formats: list[str] = Field(
        default_factory=lambda: list(DEFAULT_FORMATS),
        description="event formats (a2v_core.label_formats: " + ", ".join(FORMATS) + ")",
    )
    embeddings: bool = Field(False, description="also write per-chunk mean embeddings")
    classes: list[str] | None = Field(
        None, description="write events of these classes only (default: every class)"
    )
    frame_probs: bool = Field(
        False, description="also write per-chunk frame probabilities (float16; a2v evaluate)"
    )
    tables_per: Literal["auto", "recording", "folder"] = Field(
        "auto",
        description="Raven tables per recording or per folder (a site, a night; Begin Path "
        "names each recording); auto: per folder when the archive has more than "
        "tables_per_folder_above files. The run's combined table is written either way",
    )
    tables_per_folder_above: int = Field(
        1000, ge=0, description="auto: archives with more files get tables per folder"
    )

    def per_folder(self, n_files: int) -> bool:
        """Whether this run writes its tables per folder (``tables_per``) for ``n_files``."""
        if self.tables_per == "auto":
            return n_files > self.tables_per_folder_above
        return self.tables_per == "folder"

    @field_validator("formats")
    @classmethod
    def _known_formats(cls, v: list[str]) -> list[str]:
        return check_formats(v)


class EmbedJob(ArchiveJob):
    """Window embeddings of an archive for search and review (``a2v embed``)."""

    model: str = Field(
        "", description="checkpoint URI: a pretraining checkpoint or a fine-tuned model"
    )
    out: str = Field(
        "demo_out/embeddings", description="output prefix of the windows (local, s3://, gs://)"
    )
    window_s: float = Field(
        1.0, gt=0, description="seconds per embedding (the mean of its 200 Hz frames)"
    )


class EvaluateJob(LabelJob):
    """Label an annotated archive and score it (frame AP/F1, event P/R/F1/AP)."""

    frame_threshold: float = Field(0.175, gt=0, lt=1, description="frame P/R/F1 threshold")
    iou_thresholds: list[float] = Field(
        default_factory=lambda: [0.0, 0.5], min_length=1, description="0 = any overlap"
    )
    out: str = Field(
        "demo_out/eval", description="output prefix: metrics, tables, plots and the label run"
    )


JOBS: dict[str, type[Job]] = {
    "pretrain": PretrainJob,
    "finetune": FinetuneJob,
    "label": LabelJob,
    "evaluate": EvaluateJob,
    "embed": EmbedJob,
}
