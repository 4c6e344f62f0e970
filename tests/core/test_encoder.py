import pytest
import torch

from a2v_core.config import ModelConfig
from a2v_core.encoder import Alibi, Encoder, LocalEncoder, count_params


@pytest.mark.parametrize("preset", ["tiny", "base", "large"])
def test_ten_seconds_give_2000_frames(preset):
    cfg = ModelConfig(preset=preset)
    assert cfg.frame_rate_hz == 200.0
    with torch.no_grad():
        frames = LocalEncoder(cfg).convs(torch.zeros(1, cfg.sinc_filters, 80000))
    assert frames.shape[-1] == 2000


def test_receptive_field_of_large():
    cfg = ModelConfig(preset="large")
    assert cfg.receptive_field_samples == 302
    assert 1000 * cfg.receptive_field_samples / cfg.sample_rate_hz == 37.75


def test_parameter_counts_match_the_spec():
    assert abs(count_params(Encoder(ModelConfig(preset="large"))) / 313.9e6 - 1) < 0.01
    assert abs(count_params(Encoder(ModelConfig(preset="base"))) / 93.8e6 - 1) < 0.02


def test_alibi_with_dropped_tokens_equals_full_restricted():
    alibi = Alibi(8)
    with torch.no_grad():
        alibi.scale.copy_(torch.rand(8) + 0.5)
    t = 50
    full = alibi(torch.arange(t)[None], torch.float32)[0]  # (H, T, T)
    keep = torch.sort(torch.randperm(t)[:17]).values
    dropped = alibi(keep[None], torch.float32)[0]
    assert torch.equal(dropped, full[:, keep][:, :, keep])


def test_alibi_slopes_for_16_heads_and_clamp():
    alibi = Alibi(16)
    expected = torch.tensor([2 ** (-0.5 * (h + 1)) for h in range(16)])
    assert torch.allclose(alibi.slopes, expected)
    with torch.no_grad():
        alibi.scale.fill_(-1.0)
    assert torch.all(alibi(torch.arange(5)[None], torch.float32) == 0)


def test_blocks_return_pre_residual_ffn_outputs():
    cfg = ModelConfig(preset="tiny", prenet_depth=1)
    enc = Encoder(cfg).eval()
    with torch.no_grad():
        out = enc(torch.randn(1, 8000))
        blk = enc.context.blocks[-1]
    assert len(out.ffn) == cfg.depth and out.x.shape == (1, 200, cfg.width)
    # f is not layer-normed: its per-frame std differs from 1, while the block output is normed
    assert not torch.allclose(out.ffn[-1].std(-1), torch.ones(200), atol=0.05)
    assert torch.allclose(
        out.x.std(-1, unbiased=False), blk.norm2.weight.abs().mean().expand(200), atol=0.05
    )
