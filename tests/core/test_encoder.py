import pytest
import torch

from a2v_core.config import ModelConfig
from a2v_core.encoder import Alibi, Encoder, LocalEncoder, count_params, flush_denormals


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


def test_ffn_output_is_dropped_out_after_the_second_linear_layer():
    """As the original block (timm Mlp: dropout after fc1's activation and after fc2), the FFN
    output f, the teacher's target, passes dropout in training."""
    from a2v_core.encoder import Block

    blk = Block(ModelConfig(preset="tiny")).train()
    blk.act_drop.p = 1.0  # the config allows < 1; p = 1 makes a missing dropout visible
    torch.nn.init.constant_(blk.fc2.bias, 0.5)  # without the second dropout f == this bias
    _, f = blk(torch.randn(1, 10, blk.fc1.in_features), torch.zeros(1, 10, 10))
    assert torch.count_nonzero(f) == 0
    _, f = blk.eval()(torch.randn(1, 10, blk.fc1.in_features), torch.zeros(1, 10, 10))
    assert torch.count_nonzero(f) > 0


def test_layerdrop_skips_prenet_blocks_too():
    cfg = ModelConfig(preset="tiny", prenet_depth=2)
    enc = Encoder(cfg).train()
    enc.context.layerdrop = 1.0  # the config allows < 1: every block is dropped
    out = enc(torch.randn(1, 8000))
    assert out.ffn == []  # every main block dropped
    out.x.sum().backward()
    assert all(p.grad is None for p in enc.context.prenet.parameters())
    enc.eval()
    assert len(enc(torch.randn(1, 8000)).ffn) == cfg.depth  # never at inference


def test_flush_denormals_zeroes_what_alibi_softmax_underflows_to():
    """A 10 s clip's ALiBi logits reach hundreds below the row maximum: their softmax weights
    are float32 subnormals, which flush_denormals turns into zeros (fast) without moving the
    output."""
    bias = Alibi(2, learned=False)(torch.arange(2000)[None], torch.float32)  # (1, H, T, T)
    torch.set_flush_denormal(False)  # the process default
    try:
        weights = torch.softmax(bias[0, 0, 0], dim=-1)
        subnormal = (weights > 0) & (weights < torch.finfo(torch.float32).tiny)
        assert subnormal.any()  # what made the CPU attention backward ~6x slower
        assert flush_denormals()
        flushed = torch.softmax(bias[0, 0, 0], dim=-1)
        assert not ((flushed > 0) & (flushed < torch.finfo(torch.float32).tiny)).any()
        assert torch.allclose(flushed, weights, atol=1e-30)
    finally:
        torch.set_flush_denormal(False)
