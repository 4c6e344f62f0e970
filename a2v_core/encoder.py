"""animal2vec encoder: Sinc + conv feature stack -> projection -> conv positions + ALiBi ->
post-LN transformer blocks that also return their pre-residual FFN output.

The local encoder (Sinc, convs, projection) maps audio to 200 Hz frames (40-sample hop at
8 kHz; other rates: the rate preset's Sinc stride and conv strides, ``a2v_core.rates``). The context part can run on a subset of frames (the student's unmasked tokens): ALiBi
is built from the kept frames' true positions, so distances stay correct when tokens drop.
Axes: B batch, S samples, T frames, T' kept frames, D width, H heads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from a2v_core.config import ModelConfig
from a2v_core.sinc import ChannelLayerNorm, SincFrontEnd


def flush_denormals() -> bool:
    """Flush float32 subnormals to zero in this process's CPU kernels (a no-op elsewhere).

    ALiBi puts the logits of distant frames hundreds below a row's maximum, so much of a
    long clip's softmax lands in the subnormal range (|x| < 1.2e-38), which x86 cores
    compute an order of magnitude slower: on 10 s clips (2000 frames) CPU attention's
    backward took ~6x, and a tiny fine-tuning step 2.3 s instead of 1.0 s. Values that small
    carry no weight in any sum the model forms. Call once per process before training or
    inference; returns whether the CPU supports it."""
    return torch.set_flush_denormal(True)


class ConvFeatureStack(nn.Module):
    """Conv1d (no bias, Kaiming) -> channel LayerNorm (fp32) -> GELU, per layer."""

    def __init__(self, in_channels: int, layers: list[tuple[int, int, int]]) -> None:
        super().__init__()
        blocks = []
        for channels, kernel, stride in layers:
            padding: int | str = math.ceil(stride / 2) if stride > 1 else "same"
            conv = nn.Conv1d(
                in_channels, channels, kernel, stride=stride, padding=padding, bias=False
            )
            nn.init.kaiming_normal_(conv.weight)
            blocks.append(nn.Sequential(conv, ChannelLayerNorm(channels), nn.GELU()))
            in_channels = channels
        self.layers = nn.Sequential(*blocks)
        self.out_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, F, S) -> (B, C, T)
        return self.layers(x)


def sinc_front_end(cfg: ModelConfig) -> SincFrontEnd:
    """The Sinc front end a model of ``cfg`` starts from (its filters as initialised)."""
    return SincFrontEnd(
        cfg.sinc_filters,
        cfg.sinc_taps,
        cfg.sample_rate_hz,
        cfg.sinc_min_low_hz,
        cfg.sinc_min_band_hz,
        cfg.sinc_stride,
        cfg.sinc_init_low_hz,
        cfg.sinc_init_high_hz,
        cfg.sinc_fold_hz if cfg.sinc_off_folds else None,
    )


class LocalEncoder(nn.Module):
    """Audio (B, S) -> frame features (B, T, D): Sinc front end, conv stack, LN + projection."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.sinc = sinc_front_end(cfg)
        self.convs = ConvFeatureStack(cfg.sinc_filters, cfg.conv_layers)
        self.proj_norm = nn.LayerNorm(self.convs.out_channels)
        self.proj = nn.Linear(self.convs.out_channels, cfg.width)

    def frontend(self, audio: torch.Tensor) -> torch.Tensor:
        """Sinc filters + conv stack: (B, S) -> (B, T, C). Fine-tuning keeps these frozen."""
        return self.convs(self.sinc(audio)).transpose(1, 2)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """LayerNorm + Linear into the encoder width: (B, T, C) -> (B, T, D)."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = self.proj_norm(x.float())
        return self.proj(x)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.project(self.frontend(audio))


class ConvPositions(nn.Module):
    """depth x [grouped Conv1d -> LayerNorm (no affine) -> GELU], no inner residual."""

    def __init__(self, width: int, depth: int, total_kernel: int, groups: int) -> None:
        super().__init__()
        self.kernel = max(3, total_kernel // depth)
        self.convs = nn.ModuleList(
            nn.Conv1d(width, width, self.kernel, padding=self.kernel // 2, groups=groups)
            for _ in range(depth)
        )
        self.width = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, T, D)
        length = x.shape[1]
        y = x.transpose(1, 2)
        for conv in self.convs:
            y = conv(y)[..., :length]  # even kernels give one extra frame: trim (SamePad)
            y = F.gelu(F.layer_norm(y.transpose(1, 2), (self.width,)).transpose(1, 2))
        return y.transpose(1, 2)


def alibi_slopes(heads: int) -> torch.Tensor:
    """Geometric ALiBi slopes (Press et al.); 2^(-0.5 (h+1)) for 16 heads."""

    def power_of_two(n: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(heads).is_integer():
        return torch.tensor(power_of_two(heads))
    closest = 2 ** math.floor(math.log2(heads))
    extra = power_of_two(2 * closest)[0::2][: heads - closest]
    return torch.tensor(power_of_two(closest) + extra)


class Alibi(nn.Module):
    """Symmetric ALiBi bias with one scale per head (init 1, clamped >= 0), learned or fixed."""

    def __init__(self, heads: int, learned: bool = True) -> None:
        super().__init__()
        self.register_buffer("slopes", alibi_slopes(heads))
        # A fixed scale stays a (frozen) parameter so checkpoints keep the same keys.
        self.scale = nn.Parameter(torch.ones(heads), requires_grad=learned)

    def forward(self, positions: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """positions (B or 1, T') frame indices -> additive bias (B or 1, H, T', T')."""
        dist = (positions[:, None, :, None] - positions[:, None, None, :]).abs().to(dtype)
        per_head = (self.slopes * self.scale.clamp(min=0)).to(dtype)
        return -per_head[None, :, None, None] * dist


class Attention(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(width, 3 * width, bias=True)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        # q, k, v: (B, H, T, D/H); SDPA adds the ALiBi bias to the logits.
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias.to(q.dtype), dropout_p=self.dropout if self.training else 0.0
        )
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    """Post-LN block; returns (output, f) where f is the raw FFN output before residual/LN2."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attn = Attention(cfg.width, cfg.heads, cfg.attention_dropout)
        self.norm1 = nn.LayerNorm(cfg.width)
        self.fc1 = nn.Linear(cfg.width, cfg.ffn_dim)
        self.fc2 = nn.Linear(cfg.ffn_dim, cfg.width)
        self.act_drop = nn.Dropout(cfg.activation_dropout)
        self.drop = nn.Dropout(cfg.dropout)
        self.norm2 = nn.LayerNorm(cfg.width)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.norm1(x + self.drop(self.attn(x, bias)))
        # dropout after both FFN layers, as timm's Mlp in the original AltBlock; f is the target
        f = self.act_drop(self.fc2(self.act_drop(F.gelu(self.fc1(h)))))
        return self.norm2(h + self.drop(f)), f


@dataclass
class EncoderOutput:
    x: torch.Tensor  # (B, T', D) last block output
    ffn: list[torch.Tensor]  # per main block that ran: (B, T', D) pre-residual FFN outputs
    positions: torch.Tensor  # (B, T') frame index of every kept token


class ContextEncoder(nn.Module):
    """Conv positions + ALiBi + prenet + main blocks: everything the EMA teacher copies."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.conv_pos = ConvPositions(
            cfg.width, cfg.conv_pos_depth, cfg.conv_pos_width, cfg.conv_pos_groups
        )
        self.alibi = Alibi(cfg.heads, cfg.learned_alibi_scale)
        self.prenet_norm = nn.LayerNorm(cfg.width)
        self.prenet_drop = nn.Dropout(cfg.prenet_dropout)
        self.prenet = nn.ModuleList(Block(cfg) for _ in range(cfg.prenet_depth))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.layerdrop = cfg.layerdrop

    def forward(
        self,
        x: torch.Tensor,
        keep: torch.Tensor | None = None,
        noise_mask: torch.Tensor | None = None,
    ) -> EncoderOutput:
        """x (B, T, D) local features.

        keep: bool (B, T), same count per row -> masked frames are zeroed before conv
        positions and dropped afterwards (student). noise_mask: bool (B, T) -> frames are
        replaced by N(0, 0.01^2) noise and stay in the sequence (fine-tuning time mask).
        """
        b, t, d = x.shape
        if noise_mask is not None:
            x = torch.where(noise_mask[..., None], torch.randn_like(x) * 0.01, x)
        if keep is not None:
            x = x * keep[..., None].to(x.dtype)
        x = x + self.conv_pos(x)
        positions = torch.arange(t, device=x.device).expand(1, t)  # shared by every row
        if keep is not None:
            positions = positions.expand(b, t)
            n_keep = int(keep[0].sum())
            positions = positions[keep].view(b, n_keep)  # (B, T')
            x = x[keep].view(b, n_keep, d)
        bias = self.alibi(positions, x.dtype)
        x = self.prenet_drop(self.prenet_norm(x))
        for blk in self.prenet:  # layerdrop here too (the original's prenet_layerdrop)
            if not self._dropped():
                x, _ = blk(x, bias)
        ffn = []
        for blk in self.blocks:
            if self._dropped():
                continue  # a dropped block drops out of the FFN average as well
            x, f = blk(x, bias)
            ffn.append(f)
        return EncoderOutput(x, ffn, positions)

    def _dropped(self) -> bool:
        return self.training and self.layerdrop > 0 and bool(torch.rand(()) < self.layerdrop)


def init_bert_params(module: nn.Module) -> None:
    """Linear weights ~ N(0, 0.02), biases 0 (data2vec init_bert_params)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class Encoder(nn.Module):
    """Local encoder + context encoder (the part shared by pretraining and fine-tuning)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.local = LocalEncoder(cfg)
        self.context = ContextEncoder(cfg)
        init_bert_params(self)
        self.local.proj.reset_parameters()  # projection keeps PyTorch's default init

    def forward(self, audio: torch.Tensor) -> EncoderOutput:
        return self.context(self.local(audio))


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
