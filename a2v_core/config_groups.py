"""The config groups every job is composed of (``a2v_core.config`` composes them into jobs):
masking, EMA, loss, mixup, optimizer, data, cluster, run, tracking. The model's architecture
and rate are in ``a2v_core.config_model``, the event settings in ``a2v_core.config_events``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Group(BaseModel):
    """Base of every config group: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class MaskingConfig(Group):
    """Span masking of the student (pretraining): rate x length, ~93 % masked for 1.5 x 2."""

    mask_prob: float = Field(1.5, gt=0, le=10, description="span-start rate, not a probability")
    mask_length: int = Field(2, ge=1, description="frames per span (5 ms each)")


class FinetuneMaskingConfig(Group):
    """Fine-tuning time masks (noise fill) and channel masks (zeros)."""

    time_mask_prob: float = Field(
        0.825,
        ge=0,
        le=10,
        description="fine-tuning: expected masked share of frames (time masks, SpecAugment-style)",
    )
    time_mask_length: int = Field(4, ge=1, description="fine-tuning: frames per time mask")
    channel_mask_prob: float = Field(
        0.5, ge=0, le=10, description="fine-tuning: expected masked share of feature channels"
    )
    channel_mask_length: int = Field(64, ge=1, description="fine-tuning: channels per channel mask")


class EmaConfig(Group):
    """EMA teacher: decay annealed linearly from ``decay`` to ``end_decay`` over ``anneal_steps``."""

    decay: float = Field(
        0.9997, ge=0, le=1, description="EMA decay of the teacher at the first step"
    )
    end_decay: float = Field(
        1.0, ge=0, le=1, description="EMA decay reached after anneal_steps (linear)"
    )
    anneal_steps: int = Field(
        300_000, ge=1, description="steps over which the decay goes from decay to end_decay"
    )
    collapse_after_steps: int = Field(5000, ge=0, description="collapse guard starts here")
    min_target_std: float = Field(
        0.1,
        ge=0,
        description="collapse guard: the teacher targets' spread below this is a collapse",
    )
    min_pred_std: float = Field(
        0.01,
        ge=0,
        description="collapse guard: the student predictions' spread below this is a collapse",
    )
    stop_on_collapse: bool = Field(
        True,
        description="a collapsed run (target or prediction spread under the minimum after "
        "collapse_after_steps) stops, as the original's; false: log `collapsed` and go on",
    )


class LossConfig(Group):
    """Sigmoid focal loss (alpha, gamma) of the fine-tuning head."""

    focal_alpha: float = Field(
        0.25, ge=0, le=1, description="focal loss: weight of the positive frames"
    )
    focal_gamma: float = Field(
        2.0,
        ge=0,
        le=10,
        description="focal loss: focusing exponent (0 = plain binary cross-entropy)",
    )
    prior_prob: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="init head bias to logit(prior) (RetinaNet); None = zero bias as the original",
    )


class MixupConfig(Group):
    """A-weighted BC mixup of waveforms (and soft targets when fine-tuning)."""

    enabled: bool = Field(True, description="mix clips (A-weighted BC mixup) during training")
    prob: float = Field(1.0, ge=0, le=1, description="probability that a batch is mixed")


class OptimConfig(Group):
    """AdamW with warmup + cosine; ``grad_accum`` micro-batches per optimizer step."""

    lr: float = Field(1e-4, gt=0, le=1, description="peak learning rate (AdamW, after warmup)")
    min_lr: float = Field(0.0, ge=0, description="learning rate at the end of the cosine schedule")
    betas: tuple[float, float] = Field((0.9, 0.98), description="AdamW betas")
    eps: float = Field(1e-6, gt=0, description="AdamW epsilon")
    weight_decay: float = Field(
        0.01, ge=0, description="AdamW weight decay (not applied to biases and norms)"
    )
    warmup_steps: int = Field(
        10_000, ge=0, description="linear warmup steps before the cosine decay"
    )
    max_steps: int = Field(
        384_230, ge=1, description="optimizer updates of the run (a resumed run goes on to this)"
    )
    clip_norm: float = Field(1.0, ge=0, description="0 disables clipping")
    batch_size: int = Field(5, ge=1, description="clips per worker per micro-batch")
    grad_accum: int = Field(1, ge=1, description="micro-batches accumulated per update")
    freeze_steps: int = Field(0, ge=0, description="fine-tuning: head-only for this many steps")
    freeze_frontend: bool = Field(
        True, description="fine-tuning: Sinc filters + conv stack never train (the projection does)"
    )
    sinc_lr_scale: float = Field(
        1.0,
        gt=0,
        description="the Sinc filters' edges (in Hz) learn at lr x this, without weight decay; at "
        "1 (the original's) they move under 1 Hz in 300 steps (bench/sinc_bands.py --trained)",
    )


class DataConfig(Group):
    """Where audio comes from and how it is cut into chunks."""

    archive: str = Field(
        "demo_out/archive",
        min_length=1,
        description="folder or object-store prefix (local, s3://, gs://) of the recordings, or one file",
    )
    annotations: str | None = Field(
        None,
        description="labelled events: a CSV, Raven selection table or Audacity label track, or a folder of them",
    )
    sample_rate_hz: int = Field(
        8000, gt=0, description="rate the audio is read at; follows model.sample_rate_hz"
    )
    clip_s: float = Field(
        10.0, gt=0, le=600, description="seconds per chunk (the model's input length)"
    )
    overlap_s: float = Field(
        0.0,
        ge=0,
        description="seconds by which consecutive chunks overlap (training; labelling tiles)",
    )
    extensions: list[str] = Field(
        default_factory=lambda: ["wav", "flac", "ogg", "mp3", "aiff", "aif"],
        description="file extensions read as audio",
    )
    channel: Literal["first", "loudest"] = Field(
        "first",
        description="which channel of a multichannel file is read: the first, or the loudest per chunk",
    )
    time_expansion: int = Field(
        1,
        ge=1,
        le=100,
        description="recordings from a time-expansion bat detector: the file's stated rate x "
        "this is the true rate (a 10x file at 44.1 kHz holds 441 kHz sound); times in chunks, "
        "events and embeddings are real time (file seconds / this)",
    )
    min_duration_s: float = Field(
        0.1, ge=0, description="files shorter than this are reported (too_short) and skipped"
    )
    split_file_s: float = Field(600.0, gt=0, description="long files split into read units of this")
    read_tasks: int = Field(
        0, ge=0, description="0 = 4 x CPUs, or more so that a task reads at most 256 files"
    )
    read_retries: int = Field(
        3,
        ge=0,
        description="a transient read error (connection reset, timeout, S3 5xx or throttling) is "
        "retried this often in the read task, from the chunk it stopped at, with backoff",
    )
    read_retry_backoff_s: float = Field(1.0, ge=0, description="first retry's wait; doubles")
    chunks_per_block: int = Field(
        16,
        ge=1,
        description="chunks per Ray Data block (16 x 10 s at 8 kHz = 5 MB); smaller blocks cost "
        "Ray Data per-block overhead (4: +13 % read CPU), larger ones memory per read task",
    )
    shuffle_buffer_chunks: int = Field(
        256,
        ge=0,
        description="training: chunks in each worker's local shuffle buffer (0 = no shuffle); "
        "reseeded every epoch from run.seed; memory = this x one clip (256 x 10 s at 8 kHz = "
        "80 MB)",
    )
    shuffle_files: bool = Field(
        True, description="training: read the files in an order drawn from run.seed, not sorted"
    )
    label_fraction: float = Field(
        1.0,
        gt=0,
        le=1,
        description="fine-tuning: share of the annotated training clips used (few-shot runs)",
    )
    materialize_below_mb: float = Field(
        2048,
        ge=0,
        description="fine-tuning splits smaller than this (decoded) stay in the object store "
        "instead of being re-read from storage every epoch",
    )
    valid_fraction: float = Field(
        0.2, ge=0, lt=1, description="fine-tuning: share of annotated clips held out for validation"
    )
    split_seed: int = Field(
        1612, description="seed of the train/validation split (kept apart from run.seed)"
    )
    classes: list[str] | None = Field(
        None,
        description="fine-tuning: the classes to learn, in this order (default: every label found)",
    )
    negative_label: str = Field(
        "negative",
        min_length=1,
        description="fine-tuning: rows with this label are reviewed spans that hold none of "
        "the classes. Any such row makes the annotations reviewed spans (a reviewed "
        "`a2v search` table): only frames inside a row count in the loss and the validation "
        "metrics, and a row of class c marks its frames c and no other class",
    )

    @property
    def clip_samples(self) -> int:
        """Samples in one chunk at the model rate."""
        return int(round(self.clip_s * self.sample_rate_hz))

    @model_validator(mode="after")
    def _check_overlap(self) -> DataConfig:
        if self.overlap_s >= self.clip_s:
            raise ValueError(
                f"data.overlap_s ({self.overlap_s}) must be < data.clip_s ({self.clip_s})"
            )
        return self


class ClusterConfig(Group):
    """Ray resources. ``address`` empty = local Ray (or the job's cluster under ray job submit)."""

    address: str | None = Field(
        None, description="Ray cluster address (None: RAY_ADDRESS, else a local Ray)"
    )
    num_workers: int = Field(
        1, ge=1, le=4096, description="Ray Train workers (one per GPU on a GPU cluster)"
    )
    use_gpu: bool = Field(False, description="one GPU per Train worker")
    cpus_per_worker: float = Field(0.5, gt=0, le=256, description="CPUs reserved per Train worker")
    torch_threads: int = Field(0, ge=0, le=256, description="0 = Ray's default (cpus_per_worker)")
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = Field(
        "PACK", description="how Train workers are placed on nodes (Ray placement group strategy)"
    )
    gpus_per_actor: float | None = Field(
        None,
        ge=0,
        le=8,
        description="labelling/embedding: GPUs per model actor (0: CPU; None: 1 when the "
        "cluster has a GPU when the job starts, else 0)",
    )
    num_actors: int | None = Field(
        None,
        ge=1,
        le=4096,
        description="labelling/embedding: model actors (each loads the model once); None: one "
        "per GPU of the cluster when actors run on GPUs, else as many as the cluster's CPUs "
        "hold at cpus_per_worker each with one CPU left for reading",
    )
    shared_paths: list[str] = Field(
        default_factory=list,
        description="folders every node mounts at the same path (a Lustre, NFS or GPFS "
        "project folder, e.g. [/lustre/proj]): on a multi-node cluster the archive, runs and "
        "outputs may be local paths under them; any other local path is refused",
    )

    @field_validator("shared_paths")
    @classmethod
    def _absolute_folders(cls, v: list[str]) -> list[str]:
        bad = [p for p in v if not p.startswith("/") or "://" in p]
        if bad:
            raise ValueError(f"absolute folders only (a path every node mounts), got {bad}")
        return [p.rstrip("/") or "/" for p in v]


class RunConfig(Group):
    """Names, storage, checkpoint cadence and fault tolerance of a run."""

    name: str = Field(
        "a2v-run",
        min_length=1,
        pattern=r"^[A-Za-z0-9_.\-]+$",
        description="run name: the folder <storage_path>/<name> and the MLflow run",
    )
    storage_path: str = Field(
        "outputs",
        min_length=1,
        description="where runs keep checkpoints and exports (local, s3://, gs://)",
    )
    seed: int = Field(0, description="seed of weights, masks, mixup and shuffling")
    log_every_steps: int = Field(10, ge=1, description="steps between metric logs")
    checkpoint_every_steps: int = Field(
        50, ge=1, description="steps between checkpoints (and Tune reports)"
    )
    validate_every_steps: int = Field(
        50, ge=1, description="fine-tuning: steps between validations"
    )
    keep_checkpoints: int = Field(2, ge=1, description="checkpoints kept per run (the latest ones)")
    max_failures: int = Field(
        0,
        ge=-1,
        description="worker-group failures Ray Train retries from the last checkpoint (-1: forever)",
    )
    fail_at_step: int | None = Field(None, ge=1, description="test hook: rank 1 raises once here")
    dry_run: bool = Field(
        False,
        description="one file (fine-tuning: two, for its splits) and one step end to end "
        "(`Job.dry_run_files`, applied by `Job._dry_run`)",
    )
    progress_every_s: float = Field(
        30.0, gt=0, description="labelling: one progress line this often when there is no terminal"
    )


class TrackingConfig(Group):
    """MLflow: ``uri`` None means $MLFLOW_TRACKING_URI, else a local sqlite store."""

    uri: str | None = Field(
        None, description="MLflow tracking URI (None: MLFLOW_TRACKING_URI, else a local store)"
    )
    experiment: str | None = Field(
        None, description="MLflow experiment (None: $MLFLOW_EXPERIMENT_NAME, else a2v/<job>)"
    )
    enabled: bool = Field(True, description="log to MLflow")
    registered_model: str = Field(
        "animal2vec-finetuned",
        description="MLflow registered model a fine-tuned best is registered under",
    )
