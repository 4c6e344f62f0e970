"""data2vec-2.0 student/teacher pretraining, as animal2vec uses it.

Local features are computed once; the student sees ``clone_batch`` differently span-masked
copies and encodes only their unmasked tokens; a grouped-conv decoder fills the masked slots.
The EMA teacher (context encoder only: no CNN, no decoder) encodes the unmasked features;
targets = mean over its top-K blocks of instance-normed FFN outputs; loss = MSE / sqrt(D) on
masked frames only. Axes: B batch, N = B x clones, T frames, T' kept frames, D width.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from a2v_core.config import EmaConfig, MaskingConfig, ModelConfig
from a2v_core.encoder import ContextEncoder, Encoder
from a2v_core.masking import student_keep_mask


class ConvDecoder(nn.Module):
    """layers x [grouped Conv1d -> LayerNorm (no affine, fp32) -> GELU], residual when widths
    match, then Linear back to the encoder width."""

    def __init__(self, width: int, dim: int, layers: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv1d(width if i == 0 else dim, dim, kernel, padding=kernel // 2, groups=groups)
            for i in range(layers)
        )
        self.dim = dim
        self.proj = nn.Linear(dim, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, T, D) -> (N, T, D)
        length = x.shape[1]
        y = x.transpose(1, 2)
        residual = None
        for conv in self.convs:
            z = conv(y)[..., :length]
            with torch.autocast(device_type=z.device.type, enabled=False):
                z = F.layer_norm(z.float().transpose(1, 2), (self.dim,)).transpose(1, 2)
            z = F.gelu(z).to(y.dtype)
            y = z + residual if residual is not None and residual.shape == z.shape else z
            residual = y
        return self.proj(y.transpose(1, 2))


def ema_decay_at(step: int | np.ndarray, cfg: EmaConfig) -> float | np.ndarray:
    """Linear anneal from ``decay`` to ``end_decay`` over ``anneal_steps`` updates (``step``: one
    update, or an array of them)."""
    done = np.minimum(np.asarray(step, dtype=np.float64) / cfg.anneal_steps, 1.0)
    decay = cfg.end_decay - (cfg.end_decay - cfg.decay) * (1 - done)
    return float(decay) if np.ndim(decay) == 0 else decay


def teacher_init_share(cfg: EmaConfig, steps: int) -> float:
    """The weight the teacher's random initialisation still holds after ``steps`` EMA updates:
    the product of the decays. The original's schedule (0.9997 -> 1 over 300k updates) leaves
    e^-45 of it; a schedule that reaches 1 before its sum of (1 - decay) grows past a few
    freezes a teacher that is still largely random (0.999 -> 1 over 2000 updates: e^-1 = 37 %),
    and its targets with it."""
    full = min(steps, cfg.anneal_steps)
    decays = ema_decay_at(np.arange(full), cfg)
    log_share = np.log(np.clip(decays, 1e-300, 1.0)).sum()
    if steps > full:
        log_share += (steps - full) * np.log(max(cfg.end_decay, 1e-300))
    return float(np.exp(log_share))


#: a teacher still more than this share its random initialisation at the last step: warned of
TEACHER_INIT_WARN = 0.05


def teacher_warning(cfg: EmaConfig, max_steps: int) -> str | None:
    """A log line when the EMA schedule leaves the teacher largely random at the run's last
    step (its targets then stay partly noise: a short run on the paper's slow schedule)."""
    share = teacher_init_share(cfg, max_steps)
    if share <= TEACHER_INIT_WARN:
        return None
    return (
        f"[pretrain] warning: ema.decay {cfg.decay:g} -> {cfg.end_decay:g} over "
        f"{cfg.anneal_steps} steps leaves {share:.0%} of the teacher at its random "
        f"initialisation at step {max_steps} (max_steps), so its targets stay partly noise: "
        "run more steps or let the teacher move faster (a lower ema.decay, ema.anneal_steps "
        "about max_steps; docs/configuration.md)"
    )


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, decay: float) -> None:
    """theta_t <- decay * theta_t + (1 - decay) * theta_s (params), buffers copied. fp32."""
    if decay >= 1.0:
        return
    student_params = dict(student.named_parameters())
    for name, t_param in teacher.named_parameters():
        s = student_params[name].detach().to(t_param.dtype)
        t_param.mul_(decay).add_(s, alpha=1 - decay)
    student_buffers = dict(student.named_buffers())
    for name, t_buf in teacher.named_buffers():
        t_buf.copy_(student_buffers[name])


def spread_std(x: torch.Tensor) -> float:
    """Mean over dimensions of the per-dimension std (collapse guard metric)."""
    flat = x.reshape(-1, x.shape[-1]).float()
    return float(flat.std(0).mean()) if flat.shape[0] > 1 else 0.0


@dataclass
class PretrainOutput:
    loss: torch.Tensor  # scalar, already divided by the masked-frame count
    sample_size: int  # masked frames across clones
    target_std: float
    pred_std: float
    masked_fraction: float


class Data2VecPretrainer(nn.Module):
    """Student encoder + decoder with an EMA teacher of the context encoder."""

    def __init__(self, model: ModelConfig, masking: MaskingConfig, ema: EmaConfig) -> None:
        super().__init__()
        self.model_cfg, self.masking, self.ema_cfg = model, masking, ema
        self.encoder = Encoder(model)
        self.decoder = ConvDecoder(
            model.width,
            model.decoder_dim,
            model.decoder_layers,
            model.decoder_kernel,
            model.decoder_groups,
        )
        self.teacher = self.make_teacher(self.encoder.context)

    @staticmethod
    def make_teacher(context: ContextEncoder) -> ContextEncoder:
        teacher = copy.deepcopy(context).float()
        teacher.requires_grad_(False)
        teacher.eval()
        return teacher

    def train(self, mode: bool = True) -> Data2VecPretrainer:
        super().train(mode)
        self.teacher.eval()  # the teacher never uses dropout
        return self

    def student_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if not n.startswith("teacher.")]

    @torch.no_grad()
    def teacher_targets(self, local: torch.Tensor) -> torch.Tensor:
        """(B, T, D) local features -> (B, T, D) average of instance-normed top-K FFN outputs."""
        out = self.teacher(local)
        top = out.ffn[-self.model_cfg.average_top_k_layers :]
        normed = [F.instance_norm(f.float().transpose(1, 2)).transpose(1, 2) for f in top]
        return sum(normed) / len(normed)

    def encode_student(
        self, local: torch.Tensor, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Clone + mask + encode kept tokens + decode. Returns (pred (N, T, D), keep (N, T))."""
        b, t, d = local.shape
        clones = self.model_cfg.clone_batch
        keep = student_keep_mask(
            b * clones, t, self.masking.mask_prob, self.masking.mask_length, rng
        )
        keep = keep.to(local.device)
        x = local.repeat_interleave(clones, dim=0)  # (N, T, D)
        enc = self.encoder.context(x, keep=keep)  # enc.x: (N, T', D)
        kept = F.dropout(enc.x, p=self.model_cfg.dropout, training=self.training)
        full = torch.randn(b * clones, t, d, device=local.device, dtype=kept.dtype) * 0.01
        full[keep] = kept.reshape(-1, d)
        return self.decoder(full), keep

    def forward(self, audio: torch.Tensor, rng: np.random.Generator) -> PretrainOutput:
        """audio (B, S) normalised clips."""
        local = self.encoder.local(audio)  # (B, T, D)
        targets = self.teacher_targets(local.detach())  # (B, T, D)
        pred, keep = self.encode_student(local, rng)
        return self.loss(pred, targets, keep)

    def loss(self, pred: torch.Tensor, targets: torch.Tensor, keep: torch.Tensor) -> PretrainOutput:
        clones = pred.shape[0] // targets.shape[0]
        masked = ~keep  # (N, T)
        tgt = targets.repeat_interleave(clones, dim=0)[masked]  # (M, D)
        prd = pred[masked].float()
        sample_size = int(masked.sum())
        loss = ((prd - tgt) ** 2).sum() / math.sqrt(pred.shape[-1]) / max(sample_size, 1)
        return PretrainOutput(
            loss=loss,
            sample_size=sample_size,
            target_std=spread_std(tgt),
            pred_std=spread_std(prd.detach()),
            masked_fraction=float(masked.float().mean()),
        )

    def ema_step(self, step: int) -> float:
        """EMA update after a real optimizer step; returns the decay used."""
        decay = ema_decay_at(step, self.ema_cfg)
        ema_update(self.teacher, self.encoder.context, decay)
        return decay


def collapse_message(step: int, out: PretrainOutput, cfg: EmaConfig) -> str | None:
    """What collapsed (after ``collapse_after_steps``), or None."""
    if step < cfg.collapse_after_steps:
        return None
    if out.target_std < cfg.min_target_std or out.pred_std < cfg.min_pred_std:
        return (
            f"representation collapse at step {step}: target_std={out.target_std:.4f} "
            f"(min {cfg.min_target_std}), pred_std={out.pred_std:.4f} (min {cfg.min_pred_std})"
        )
    return None


def stops_run(message: str | None, cfg: EmaConfig) -> bool:
    """Whether a collapse (``collapse_message``, on this or any rank) stops the run."""
    return message is not None and cfg.stop_on_collapse
