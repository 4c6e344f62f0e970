"""Pretraining-step throughput of our encoder vs Hugging Face Data2VecAudioModel.

Both run forward + backward of a masked student pass over 10 s clips at 200 frames/s (the same
width, depth, heads, FFN and sequence length, the same batch and threads, in this one run).
Ours uses SDPA and encodes only the unmasked tokens (~7 % at mask rate 1.5 x 2); HF runs the
full sequence with its mask embedding, as its Data2Vec/wav2vec2 pretraining does.

    pip install -e ".[bench]" && python bench/model_throughput.py [--threads 2] [--batch 2]

Prints audio-seconds/s for both and the ratio (goal >= 1.3x).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from a2v_core.config import ModelConfig
from a2v_core.encoder import Encoder
from a2v_core.masking import student_keep_mask


def hf_model(cfg: ModelConfig):
    from transformers import Data2VecAudioConfig, Data2VecAudioModel

    conv = cfg.conv_layers
    hf_cfg = Data2VecAudioConfig(
        hidden_size=cfg.width,
        num_hidden_layers=cfg.depth + cfg.prenet_depth,
        num_attention_heads=cfg.heads,
        intermediate_size=cfg.ffn_dim,
        conv_dim=[c for c, _, _ in conv],
        conv_kernel=[k for _, k, _ in conv],
        conv_stride=[s for _, _, s in conv],
        num_conv_pos_embeddings=cfg.conv_pos_width // cfg.conv_pos_depth,
        num_conv_pos_embedding_groups=cfg.conv_pos_groups,
        mask_time_prob=0.05,  # creates masked_spec_embed; the masks themselves are passed in
        hidden_dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        feat_proj_dropout=0.0,
        layerdrop=0.0,
    )
    return Data2VecAudioModel(hf_cfg)


def time_steps(step, n_warm: int = 1, n: int = 3) -> float:
    for _ in range(n_warm):
        step()
    t = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - t) / n


def bench(preset: str, width_preset: str, batch: int, clip_s: float) -> tuple[float, float]:
    cfg = ModelConfig(preset=width_preset, dropout=0.0, attention_dropout=0.0, prenet_dropout=0.0)
    if preset == "base-width-4-blocks":  # keep the CPU run short: base width, 4 blocks
        cfg = cfg.model_copy(update={"depth": 4, "average_top_k_layers": 4})
    audio = torch.randn(batch, int(clip_s * cfg.sample_rate_hz))
    frames = int(clip_s * cfg.frame_rate_hz)
    rng = np.random.default_rng(0)

    ours = Encoder(cfg)

    def ours_step():
        keep = student_keep_mask(batch, frames, 1.5, 2, rng)
        out = ours.context(ours.local(audio), keep=keep)
        out.x.float().pow(2).mean().backward()

    hf = hf_model(cfg)
    hf.train()

    hf_frames = int(
        hf._get_feat_extract_output_lengths(audio.shape[1])
    )  # 1999: HF convs do not pad

    def hf_step():
        mask = torch.from_numpy(~student_keep_mask(batch, hf_frames, 1.5, 2, rng).numpy())
        out = hf(audio, mask_time_indices=mask)
        out.last_hidden_state.pow(2).mean().backward()

    t_ours, t_hf = time_steps(ours_step), time_steps(hf_step)
    return batch * clip_s / t_ours, batch * clip_s / t_hf


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--clip-s", type=float, default=10.0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} threads, batch {args.batch} x {args.clip_s} s clips, fwd+bwd"
    )
    print(f"{'model':<22}{'ours audio-s/s':>16}{'HF audio-s/s':>16}{'ratio':>8}")
    for name, width in (("tiny", "tiny"), ("base-width-4-blocks", "base")):
        ours, hf = bench(name, width, args.batch, args.clip_s)
        print(f"{name:<22}{ours:>16.1f}{hf:>16.1f}{ours / hf:>7.2f}x")


if __name__ == "__main__":
    main()
