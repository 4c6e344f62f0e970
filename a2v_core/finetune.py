"""Frame-level multi-label classifier on the pretrained encoder, with sigmoid focal loss.

logits = Linear(mean over main blocks of the pre-residual FFN outputs) -> sigmoid (B, T, C).
Training applies time masks (noise fill) and channel masks (zeros) to the projected features
before the conv positions; the Sinc + CNN front end stays frozen (configurable), the rest of
the encoder is frozen for the first ``freeze_steps`` updates (head only).
Axes: B batch, T frames, D width, C classes.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from a2v_core.config import FinetuneMaskingConfig, ModelConfig
from a2v_core.encoder import Encoder
from a2v_core.masking import channel_mask, time_mask


def focal_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    frame_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sigmoid focal loss summed over frames x classes, divided by the number of frames;
    ``frame_mask`` (B, T) bool: only these frames count (zero padding does not).

    FL = alpha_t * BCE * (1 - p_t)^gamma with p_t = y p + (1 - y)(1 - p) and
    alpha_t = alpha y + (1 - alpha)(1 - y); works with soft targets y in [0, 1].
    """
    logits, targets = logits.float(), targets.float()
    p = torch.sigmoid(logits)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    loss = alpha_t * bce * (1 - p_t) ** gamma
    if frame_mask is not None:
        loss = loss * frame_mask[..., None].to(loss.dtype)
        return loss.sum() / frame_mask.sum().clamp(min=1)
    n_frames = loss.shape[0] * loss.shape[1] if loss.dim() == 3 else loss.shape[0]
    return loss.sum() / n_frames


def valid_frames(duration_s, n_frames: int, frame_rate_hz: float) -> torch.Tensor:
    """(B, T) bool: the frames of each clip that hold audio (its zero-padded tail does not)."""
    n = torch.as_tensor(np.ceil(np.asarray(duration_s, dtype=np.float64) * frame_rate_hz))
    return torch.arange(n_frames)[None, :] < n[:, None]


class FrameClassifier(nn.Module):
    """Encoder + linear head over the averaged FFN outputs of the main blocks."""

    def __init__(
        self,
        model: ModelConfig,
        n_classes: int,
        masking: FinetuneMaskingConfig | None = None,
        freeze_frontend: bool = True,
        prior_prob: float | None = None,
    ) -> None:
        super().__init__()
        self.model_cfg, self.masking = model, masking
        self.freeze_frontend = freeze_frontend
        self.encoder = Encoder(model)
        self.head = nn.Linear(model.width, n_classes)
        nn.init.xavier_uniform_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        if prior_prob is not None:  # rare classes: start near the prior, not at p = 0.5
            nn.init.constant_(self.head.bias, math.log(prior_prob / (1 - prior_prob)))
        self.encoder_frozen = False
        if freeze_frontend:  # Sinc + conv stack only; the projection trains once unfrozen
            for m in (self.encoder.local.sinc, self.encoder.local.convs):
                m.requires_grad_(False)

    def set_encoder_frozen(self, frozen: bool) -> None:
        """Head-only phase: no gradients through the context encoder."""
        self.encoder_frozen = frozen

    def features(
        self, audio: torch.Tensor, rng: np.random.Generator | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(B, S) -> averaged FFN features (B, T, D) and the per-block FFN outputs."""
        grad = torch.is_grad_enabled()
        with torch.set_grad_enabled(grad and not (self.freeze_frontend or self.encoder_frozen)):
            x = self.encoder.local.frontend(audio)  # (B, T, C)
        with torch.set_grad_enabled(grad and not self.encoder_frozen):
            local = self.encoder.local.project(x)  # (B, T, D)
        noise_mask = None
        if self.training and self.masking is not None and rng is not None:
            b, t, d = local.shape
            m = self.masking
            noise_mask = time_mask(b, t, m.time_mask_prob, m.time_mask_length, rng).to(local.device)
            if m.channel_mask_prob > 0:
                ch = channel_mask(b, d, m.channel_mask_prob, min(m.channel_mask_length, d), rng)
                local = local * (~ch.to(local.device))[:, None, :].to(local.dtype)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.encoder_frozen):
            out = self.encoder.context(local, noise_mask=noise_mask)
        return torch.stack(out.ffn).mean(0), out.ffn

    def forward(self, audio: torch.Tensor, rng: np.random.Generator | None = None) -> torch.Tensor:
        feats, _ = self.features(audio, rng)
        return self.head(feats)  # (B, T, C) logits

    @torch.no_grad()
    def embed(self, audio: torch.Tensor) -> torch.Tensor:
        """Frame embeddings (B, T, D) = the averaged FFN outputs (what the head reads)."""
        return self.features(audio)[0]


def load_pretrained_encoder(
    classifier: FrameClassifier, encoder_state: dict[str, torch.Tensor]
) -> None:
    """Copy a pretraining checkpoint's student encoder into the classifier.

    Raises ValueError listing every missing, unexpected or shape-mismatched key.
    """
    own = classifier.encoder.state_dict()
    missing = sorted(set(own) - set(encoder_state))
    unexpected = sorted(set(encoder_state) - set(own))
    mismatched = [
        f"{k}: checkpoint {tuple(encoder_state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in encoder_state and encoder_state[k].shape != own[k].shape
    ]
    if missing or unexpected or mismatched:
        parts = []
        if mismatched:
            parts.append("shape mismatch:\n    " + "\n    ".join(mismatched[:20]))
        if missing:
            parts.append("missing in checkpoint: " + ", ".join(missing[:20]))
        if unexpected:
            parts.append("unexpected in checkpoint: " + ", ".join(unexpected[:20]))
        raise ValueError(
            "pretrained encoder does not fit this model config (check model.preset):\n  "
            + "\n  ".join(parts)
        )
    classifier.encoder.load_state_dict(encoder_state)
