"""The config groups every job is composed of (``a2v_core.config`` composes them into jobs):
architecture, masking, EMA, loss, mixup, optimizer, data, cluster, run, tracking, events."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from a2v_core.events import EventRule
from a2v_core.presets import MODEL_PRESETS, ConvLayer
from a2v_core.rates import FRAME_RATES_HZ, front_end, hearing_line, rate_preset


class Group(BaseModel):
    """Base of every config group: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class ModelConfig(Group):
    """Architecture. ``preset`` (size) fills every field that the YAML does not set, and the rate
    preset of ``sample_rate_hz`` (``a2v_core.rates``) fills the front end (Sinc taps and stride,
    first filter, conv strides); the sizes are required fields without literal defaults, so
    ``a2v_core.presets`` and ``a2v_core.rates`` are their one source."""

    preset: Literal["tiny", "base", "large"] = "tiny"
    sample_rate_hz: int = Field(
        8000,
        gt=0,
        description="model input rate, one of the rate presets (8000, 16000, 24000, 32000, "
        "48000, 96000, 192000, 250000, 256000, 384000); every file is resampled to it on read",
    )
    frame_rate_hz: Literal[200, 1000] = Field(
        200, description="frames per second: 200 (5 ms, the original) or 1000 (ultrasonic presets)"
    )
    sinc_filters: int = Field(ge=1)
    sinc_taps: int = Field(ge=3, description="odd kernel length of the Sinc filters")
    sinc_stride: int = Field(
        1, ge=1, description="Sinc outputs kept every this many samples (the rate preset's)"
    )
    sinc_min_low_hz: float = Field(50.0, ge=0, description="lowest low edge a filter can learn")
    sinc_init_low_hz: float | None = Field(
        None, ge=0, description="the first filter's low edge at init (None: 2 x sinc_min_low_hz)"
    )
    conv_layers: list[ConvLayer]
    width: int = Field(ge=8)
    heads: int = Field(ge=1)
    ffn_dim: int = Field(ge=8)
    prenet_depth: int = Field(ge=0)
    depth: int = Field(ge=1)
    conv_pos_depth: int = Field(ge=1)
    conv_pos_width: int = Field(ge=3)
    conv_pos_groups: int = Field(ge=1)
    decoder_dim: int = Field(ge=8)
    decoder_layers: int = Field(ge=1)
    decoder_kernel: int = Field(ge=1)
    decoder_groups: int = Field(ge=1)
    average_top_k_layers: int = Field(ge=1)
    clone_batch: int = Field(ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    attention_dropout: float = Field(0.1, ge=0, lt=1)
    activation_dropout: float = Field(0.0, ge=0, lt=1)
    prenet_dropout: float = Field(0.1, ge=0, lt=1)
    layerdrop: float = Field(0.0, ge=0, lt=1)
    learned_alibi_scale: bool = Field(
        True,
        description="learn one ALiBi scale per head (the original). A learned scale needs the "
        "gradient of the attention bias, which only PyTorch's unfused 'math' attention gives: "
        "on CPU that is ~2.4x slower per fine-tuning step than the fused kernel (tiny preset: off)",
    )

    @model_validator(mode="before")
    @classmethod
    def _fill_from_preset(cls, data: Any) -> Any:
        if isinstance(data, dict):
            preset = data.get("preset", "tiny")
            if preset in MODEL_PRESETS:
                size = MODEL_PRESETS[preset]
                rate = data.get("sample_rate_hz", 8000)
                frames = data.get("frame_rate_hz", 200)
                if isinstance(rate, int) and frames in FRAME_RATES_HZ:
                    # ValueError naming the nearest preset for a rate without one
                    size = {**size, **front_end(size["conv_layers"], rate, frames)}
                data = {**size, **data}
        return data

    @model_validator(mode="after")
    def _check_shapes(self) -> ModelConfig:
        rate_preset(self.sample_rate_hz)  # a rate set by assignment is checked too
        frames = self.sample_rate_hz / self.hop_samples
        if frames != self.frame_rate_hz:
            raise ValueError(
                f"model.conv_layers and model.sinc_stride ({self.sinc_stride}) give {frames:g} "
                f"frames/s at {self.sample_rate_hz} Hz, not model.frame_rate_hz "
                f"{self.frame_rate_hz}; leave them unset for the rate preset's: "
                f"{front_end(MODEL_PRESETS[self.preset]['conv_layers'], self.sample_rate_hz, self.frame_rate_hz)}"
            )
        if self.sinc_taps % 2 == 0:
            raise ValueError(f"model.sinc_taps must be odd, got {self.sinc_taps}")
        if self.width % self.heads:
            raise ValueError(
                f"model.width ({self.width}) must be divisible by model.heads ({self.heads})"
            )
        if self.width % self.conv_pos_groups:
            raise ValueError("model.width must be divisible by model.conv_pos_groups")
        if self.average_top_k_layers > self.depth:
            raise ValueError(f"model.average_top_k_layers must be <= model.depth ({self.depth})")
        return self

    @property
    def sinc_min_band_hz(self) -> float:
        """ceil(sr / kernel): 127 Hz for 63 taps at 8 kHz (spec section 2)."""
        return float(math.ceil(self.sample_rate_hz / self.sinc_taps))

    @property
    def hop_samples(self) -> int:
        return self.sinc_stride * math.prod(s for _, _, s in self.conv_layers)

    @property
    def band_hz(self) -> tuple[float, float]:
        """What the model hears at init: the first filter's low edge to Nyquist."""
        low = (
            self.sinc_init_low_hz if self.sinc_init_low_hz is not None else 2 * self.sinc_min_low_hz
        )
        return low, self.sample_rate_hz / 2

    def hearing(self, job: str, time_expansion: int = 1) -> str:
        """The job's first log line: the model's rate, band and frames (and the data's time
        expansion, when the files come from a time-expansion detector)."""
        return hearing_line(
            job, self.sample_rate_hz, self.frame_rate_hz, self.band_hz[0], time_expansion
        )

    @property
    def frontend_macs_per_s(self) -> float:
        """Multiply-adds of the Sinc layer and conv stack per second of audio (the part of the
        model whose cost grows with the rate; the transformer's is per frame)."""
        rate = self.sample_rate_hz / self.sinc_stride  # Sinc outputs per second
        macs = rate * self.sinc_filters * self.sinc_taps
        channels = self.sinc_filters
        for out_channels, kernel, stride in self.conv_layers:
            rate /= stride
            macs += rate * out_channels * channels * kernel
            channels = out_channels
        return macs

    @property
    def receptive_field_samples(self) -> int:
        rf, jump = self.sinc_taps, self.sinc_stride
        for _, kernel, stride in self.conv_layers:
            rf += (kernel - 1) * jump
            jump *= stride
        return rf


class MaskingConfig(Group):
    """Span masking of the student (pretraining): rate x length, ~93 % masked for 1.5 x 2."""

    mask_prob: float = Field(1.5, gt=0, le=10, description="span-start rate, not a probability")
    mask_length: int = Field(2, ge=1, description="frames per span (5 ms each)")


class FinetuneMaskingConfig(Group):
    """Fine-tuning time masks (noise fill) and channel masks (zeros)."""

    time_mask_prob: float = Field(0.825, ge=0, le=10)
    time_mask_length: int = Field(4, ge=1)
    channel_mask_prob: float = Field(0.5, ge=0, le=10)
    channel_mask_length: int = Field(64, ge=1)


class EmaConfig(Group):
    """EMA teacher: decay annealed linearly from ``decay`` to ``end_decay`` over ``anneal_steps``."""

    decay: float = Field(0.9997, ge=0, le=1)
    end_decay: float = Field(1.0, ge=0, le=1)
    anneal_steps: int = Field(300_000, ge=1)
    collapse_after_steps: int = Field(5000, ge=0, description="collapse guard starts here")
    min_target_std: float = Field(0.1, ge=0)
    min_pred_std: float = Field(0.01, ge=0)
    stop_on_collapse: bool = Field(
        True,
        description="a collapsed run (target or prediction spread under the minimum after "
        "collapse_after_steps) stops, as the original's; false: log `collapsed` and go on",
    )


class LossConfig(Group):
    """Sigmoid focal loss (alpha, gamma) of the fine-tuning head."""

    focal_alpha: float = Field(0.25, ge=0, le=1)
    focal_gamma: float = Field(2.0, ge=0, le=10)
    prior_prob: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="init head bias to logit(prior) (RetinaNet); None = zero bias as the original",
    )


class MixupConfig(Group):
    """A-weighted BC mixup of waveforms (and soft targets when fine-tuning)."""

    enabled: bool = True
    prob: float = Field(1.0, ge=0, le=1)


class OptimConfig(Group):
    """AdamW with warmup + cosine; ``grad_accum`` micro-batches per optimizer step."""

    lr: float = Field(1e-4, gt=0, le=1)
    min_lr: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = Field(1e-6, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_steps: int = Field(10_000, ge=0)
    max_steps: int = Field(384_230, ge=1)
    clip_norm: float = Field(1.0, ge=0, description="0 disables clipping")
    batch_size: int = Field(5, ge=1, description="clips per worker per micro-batch")
    grad_accum: int = Field(1, ge=1)
    freeze_steps: int = Field(0, ge=0, description="fine-tuning: head-only for this many steps")
    freeze_frontend: bool = Field(
        True, description="fine-tuning: Sinc filters + conv stack never train (the projection does)"
    )


class DataConfig(Group):
    """Where audio comes from and how it is cut into chunks."""

    archive: str = Field("demo_out/archive", min_length=1)
    annotations: str | None = None
    sample_rate_hz: int = Field(8000, gt=0)
    clip_s: float = Field(10.0, gt=0, le=600)
    overlap_s: float = Field(0.0, ge=0)
    extensions: list[str] = Field(
        default_factory=lambda: ["wav", "flac", "ogg", "mp3", "aiff", "aif"]
    )
    channel: Literal["first", "loudest"] = "first"
    time_expansion: int = Field(
        1,
        ge=1,
        le=100,
        description="recordings from a time-expansion bat detector: the file's stated rate x "
        "this is the true rate (a 10x file at 44.1 kHz holds 441 kHz sound); times in chunks, "
        "events and embeddings are real time (file seconds / this)",
    )
    min_duration_s: float = Field(0.1, ge=0)
    split_file_s: float = Field(600.0, gt=0, description="long files split into read units of this")
    read_tasks: int = Field(0, ge=0, description="0 = 4 x CPUs")
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
    label_fraction: float = Field(1.0, gt=0, le=1)
    materialize_below_mb: float = Field(
        2048,
        ge=0,
        description="fine-tuning splits smaller than this (decoded) stay in the object store "
        "instead of being re-read from storage every epoch",
    )
    valid_fraction: float = Field(0.2, ge=0, lt=1)
    split_seed: int = 1612
    classes: list[str] | None = None
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

    address: str | None = None
    num_workers: int = Field(1, ge=1, le=4096)
    use_gpu: bool = False
    cpus_per_worker: float = Field(0.5, gt=0, le=256)
    torch_threads: int = Field(0, ge=0, le=256, description="0 = Ray's default (cpus_per_worker)")
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    gpus_per_actor: float = Field(0.0, ge=0, le=8)
    num_actors: int = Field(1, ge=1, le=4096)


class RunConfig(Group):
    """Names, storage, checkpoint cadence and fault tolerance of a run."""

    name: str = Field("a2v-run", min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    storage_path: str = Field("outputs", min_length=1)
    seed: int = 0
    log_every_steps: int = Field(10, ge=1)
    checkpoint_every_steps: int = Field(50, ge=1)
    validate_every_steps: int = Field(50, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    max_failures: int = Field(0, ge=-1)
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

    uri: str | None = None
    experiment: str = "a2v"
    enabled: bool = True
    registered_model: str = "animal2vec-finetuned"


class EventConfig(Group):
    """Frame probabilities -> events (spec section 8)."""

    threshold: float = Field(
        0.15,
        gt=0,
        lt=1,
        description="event threshold on the pooled frame probabilities, for every class without "
        "a tuned or explicit one (fine-tuning: what a class with too few validation events keeps)",
    )
    class_thresholds: dict[str, float] = Field(
        default_factory=dict, description="explicit per-class event thresholds (win over all)"
    )
    thresholds_from_model: bool = Field(
        True,
        description="use the per-class thresholds tuned on validation and saved in the checkpoint "
        "(explicit class_thresholds still win; --threshold turns this off)",
    )
    pool_s: float = Field(
        0.1, ge=0, description="moving-average window (unset at 1 kHz frames: 0.005)"
    )
    min_event_s: float = Field(
        0.05, ge=0, description="shortest event kept (unset at 1 kHz frames: 0.002)"
    )
    top_class_only: bool = False
    tune_iou: float = Field(
        0.5,
        ge=0,
        lt=1,
        description="fine-tuning: a validation event counts as found above this IoU when the "
        "per-class thresholds are tuned. 0 (any overlap) rewards one low-threshold event that "
        "spans a whole clip: the tiny demo tuned 'agg' to 0.05 and it covered the archive",
    )
    tune_min_events: int = Field(
        3,
        ge=1,
        description="fine-tuning: a class with fewer validation events than this keeps "
        "`threshold` instead of a tuned one (the tiny demo's validation split held one 'synch' "
        "call; missing it at IoU 0.5 tuned the class to 0.95 and silenced a class with frame "
        "AP 0.84)",
    )

    def at_frame_rate(self, frame_rate_hz: float) -> EventConfig:
        """This config for a model of ``frame_rate_hz``: ``pool_s`` and ``min_event_s``, where
        not set, take that frame rate's defaults (``EVENT_DEFAULTS_S``)."""
        defaults = EVENT_DEFAULTS_S[int(frame_rate_hz)]
        update = {
            key: value
            for key, value in zip(("pool_s", "min_event_s"), defaults, strict=True)
            if key not in self.model_fields_set
        }
        return self.model_copy(update=update)

    def rule(self, class_thresholds: dict[str, float] | None = None) -> EventRule:
        """The events these settings make (``a2v_core.events``), with ``class_thresholds``
        (e.g. a model's tuned ones) under this config's explicit ``class_thresholds``."""
        return EventRule(
            threshold=self.threshold,
            class_thresholds={**(class_thresholds or {}), **self.class_thresholds},
            pool_s=self.pool_s,
            min_event_s=self.min_event_s,
            top_class_only=self.top_class_only,
        )


#: (pool_s, min_event_s) per frame rate: 0.1 s and 0.05 s at 200 Hz (the original, for calls
#: of 30 ms and more); 5 ms and 2 ms at 1 kHz, for bat calls of 1-20 ms (20 frames of pooling
#: would average a 2 ms call down to a tenth of its probability, 10 frames drop it)
EVENT_DEFAULTS_S: dict[int, tuple[float, float]] = {200: (0.1, 0.05), 1000: (0.005, 0.002)}
