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

    preset: Literal["tiny", "base", "large"] = Field(
        "tiny", description="size preset (tiny, base, large); fills the architecture fields not set"
    )
    sample_rate_hz: int = Field(
        8000,
        gt=0,
        description="model input rate, one of the rate presets (8000, 16000, 24000, 32000, "
        "48000, 96000, 192000, 250000, 256000, 384000); every file is resampled to it on read",
    )
    frame_rate_hz: Literal[200, 1000] = Field(
        200, description="frames per second: 200 (5 ms, the original) or 1000 (ultrasonic presets)"
    )
    sinc_filters: int = Field(ge=1, description="learnable Sinc band-pass filters of the front end")
    sinc_taps: int = Field(ge=3, description="odd kernel length of the Sinc filters")
    sinc_stride: int = Field(
        1, ge=1, description="Sinc outputs kept every this many samples (the rate preset's)"
    )
    sinc_min_low_hz: float = Field(50.0, ge=0, description="lowest low edge a filter can learn")
    sinc_init_low_hz: float | None = Field(
        None, ge=0, description="the first filter's low edge at init (None: 2 x sinc_min_low_hz)"
    )
    conv_layers: list[ConvLayer] = Field(
        description="[channels, kernel, stride] of each conv layer after the Sinc filters (filled by the rate preset)"
    )
    width: int = Field(ge=8, description="transformer width (model dimension)")
    heads: int = Field(ge=1, description="attention heads per transformer layer")
    ffn_dim: int = Field(ge=8, description="hidden size of each transformer feed-forward block")
    prenet_depth: int = Field(
        ge=0,
        description="transformer layers before the context encoder (shared by student and teacher)",
    )
    depth: int = Field(ge=1, description="transformer layers of the context encoder")
    conv_pos_depth: int = Field(ge=1, description="layers of the convolutional positional encoding")
    conv_pos_width: int = Field(
        ge=3, description="kernel width (frames) of the convolutional positional encoding"
    )
    conv_pos_groups: int = Field(
        ge=1, description="groups of the convolutional positional encoding"
    )
    decoder_dim: int = Field(
        ge=8,
        description="channels of the pretraining decoder (1-D convs predicting teacher targets)",
    )
    decoder_layers: int = Field(ge=1, description="conv layers of the pretraining decoder")
    decoder_kernel: int = Field(
        ge=1, description="kernel (frames) of the pretraining decoder's convs"
    )
    decoder_groups: int = Field(ge=1, description="groups of the pretraining decoder's convs")
    average_top_k_layers: int = Field(
        ge=1, description="teacher targets: mean of the top k layers' outputs (data2vec)"
    )
    clone_batch: int = Field(
        ge=1,
        description="pretraining: masked copies of each clip per batch (data2vec 2.0 multi-mask)",
    )
    dropout: float = Field(
        0.1, ge=0, lt=1, description="dropout after attention and feed-forward blocks"
    )
    attention_dropout: float = Field(
        0.1, ge=0, lt=1, description="dropout of the attention weights"
    )
    activation_dropout: float = Field(
        0.0, ge=0, lt=1, description="dropout inside the feed-forward block"
    )
    prenet_dropout: float = Field(0.1, ge=0, lt=1, description="dropout of the prenet layers")
    layerdrop: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="probability of skipping a transformer layer per batch (training only)",
    )
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
    gpus_per_actor: float = Field(
        0.0, ge=0, le=8, description="labelling/embedding: GPUs per model actor (0: CPU)"
    )
    num_actors: int = Field(
        1,
        ge=1,
        le=4096,
        description="labelling/embedding: model actors (each loads the model once)",
    )


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
    experiment: str = Field("a2v", description="MLflow experiment")
    enabled: bool = Field(True, description="log to MLflow")
    registered_model: str = Field(
        "animal2vec-finetuned",
        description="MLflow registered model a fine-tuned best is registered under",
    )


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
    top_class_only: bool = Field(
        False, description="of time-overlapping events of one file keep only the highest-scoring"
    )
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
