"""The model's config group: size preset, sample-rate preset and the architecture they fill."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, model_validator

from a2v_core.config_groups import Group
from a2v_core.presets import MODEL_PRESETS, ConvLayer
from a2v_core.rates import (
    DEFAULT_RATE_HZ,
    FRAME_RATES_HZ,
    RATE_PRESETS,
    front_end,
    hearing_line,
    rate_preset,
)


class ModelConfig(Group):
    """Architecture. ``preset`` (size) fills every field that the YAML does not set, and the rate
    preset of ``sample_rate_hz`` (``a2v_core.rates``) fills the front end (Sinc taps and stride,
    first filter, conv strides); the sizes are required fields without literal defaults, so
    ``a2v_core.presets`` and ``a2v_core.rates`` are their one source."""

    preset: Literal["tiny", "base", "large"] = Field(
        "tiny", description="size preset (tiny, base, large); fills the architecture fields not set"
    )
    sample_rate_hz: int = Field(
        DEFAULT_RATE_HZ,
        gt=0,
        description="model input rate, one of the rate presets ("
        + ", ".join(map(str, RATE_PRESETS))
        + "); every file is resampled to it on read",
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
    sinc_init_high_hz: float | None = Field(
        None,
        gt=0,
        description="the last filter's high edge at init (None: Nyquist): put every filter where "
        "the archive's sound is (`a2v manifest` measures it; docs/sample_rates.md)",
    )
    sinc_off_folds: bool = Field(
        False,
        description="at init, move a filter band that straddles a fold of the Sinc output rate "
        "(a multiple of its Nyquist, presets with a Sinc stride) to one side of it",
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
            fields = cls.model_fields  # the field defaults, not copies of them
            preset = data.get("preset", fields["preset"].default)
            if preset in MODEL_PRESETS:
                size = MODEL_PRESETS[preset]
                rate = data.get("sample_rate_hz", fields["sample_rate_hz"].default)
                frames = data.get("frame_rate_hz", fields["frame_rate_hz"].default)
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
        low_hz, high_hz = self.band_hz
        if high_hz <= low_hz + self.sinc_min_band_hz:
            raise ValueError(
                f"model.sinc_init_high_hz {self.sinc_init_high_hz:g} leaves no band above the first "
                f"filter's low edge {low_hz:g} Hz"
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
        """ceil(sr / kernel): 127 Hz for 63 taps at 8 kHz (docs/recipe.md §2)."""
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
        nyquist = self.sample_rate_hz / 2
        return low, min(nyquist, self.sinc_init_high_hz or nyquist)

    @property
    def sinc_fold_hz(self) -> float | None:
        """The Nyquist of the Sinc outputs when they are kept below the input rate (bands above it
        fold down), else None."""
        return self.sample_rate_hz / self.sinc_stride / 2 if self.sinc_stride > 1 else None

    def hearing(self, job: str, time_expansion: int = 1) -> str:
        """The job's first log line: the model's rate, band and frames (and the data's time
        expansion, when the files come from a time-expansion detector)."""
        low, high = self.band_hz
        return hearing_line(job, self.sample_rate_hz, self.frame_rate_hz, low, time_expansion, high)

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
