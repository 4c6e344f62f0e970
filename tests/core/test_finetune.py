import pytest
import torch
import torch.nn.functional as F

from a2v_core.config import FinetuneMaskingConfig, ModelConfig
from a2v_core.finetune import FrameClassifier, focal_loss, load_pretrained_encoder


def test_focal_equals_half_bce_at_gamma0_alpha_half():
    logits, y = torch.randn(2, 50, 3), (torch.rand(2, 50, 3) > 0.7).float()
    bce = F.binary_cross_entropy_with_logits(logits, y, reduction="sum") / 100
    assert torch.allclose(focal_loss(logits, y, alpha=0.5, gamma=0.0), 0.5 * bce)


def test_focal_down_weights_easy_examples():
    y = torch.ones(1, 1, 1)
    easy, hard = torch.full((1, 1, 1), 4.0), torch.full((1, 1, 1), -1.0)
    p = torch.sigmoid(easy)
    expected_easy = 0.25 * F.binary_cross_entropy_with_logits(easy, y) * (1 - p) ** 2
    assert torch.allclose(focal_loss(easy, y), expected_easy)
    ratio_focal = focal_loss(easy, y) / focal_loss(hard, y)
    ratio_bce = F.binary_cross_entropy_with_logits(easy, y) / F.binary_cross_entropy_with_logits(
        hard, y
    )
    assert ratio_focal < ratio_bce


def test_focal_accepts_soft_targets():
    loss = focal_loss(torch.zeros(1, 4, 2), torch.full((1, 4, 2), 0.3))
    assert torch.isfinite(loss) and loss > 0


def test_classifier_shapes_masks_and_freezing():
    cfg = ModelConfig(preset="tiny")
    clf = FrameClassifier(cfg, 5, FinetuneMaskingConfig(channel_mask_length=8))
    import numpy as np

    logits = clf(torch.randn(2, 8000), np.random.default_rng(0))
    assert logits.shape == (2, 200, 5)
    clf.set_encoder_frozen(True)
    clf(torch.randn(2, 8000), np.random.default_rng(1)).sum().backward()
    assert clf.head.weight.grad is not None
    assert all(p.grad is None for p in clf.encoder.parameters())


def test_unfrozen_encoder_trains_all_but_sinc_and_convs():
    """After the head-only phase the projection (LayerNorm + Linear), conv positions and every
    block get gradients; the Sinc filters and the conv stack never do (the original's
    feature_grad_mult 0)."""
    import numpy as np

    clf = FrameClassifier(ModelConfig(preset="tiny"), 3, freeze_frontend=True)
    clf(torch.randn(2, 8000), np.random.default_rng(0)).sum().backward()
    grads = {n for n, p in clf.named_parameters() if p.grad is not None}
    frozen = {
        n
        for n, _ in clf.named_parameters()
        if n.startswith(("encoder.local.sinc", "encoder.local.convs"))
    }
    assert frozen and not grads & frozen
    assert {"encoder.local.proj.weight", "encoder.local.proj_norm.weight"} <= grads
    assert "encoder.context.conv_pos.convs.0.0.weight" in grads or any(
        n.startswith("encoder.context.conv_pos") for n in grads
    )
    # everything else the optimiser holds trains, but the last block's output norm (the head
    # reads the FFN outputs, not the block output)
    idle = {n for n, p in clf.named_parameters() if p.requires_grad} - grads
    assert all(".norm2." in n for n in idle), idle
    free = FrameClassifier(ModelConfig(preset="tiny"), 3, freeze_frontend=False)
    free(torch.randn(2, 8000)).sum().backward()
    assert all(p.grad is not None for n, p in free.named_parameters() if n in frozen)


def test_loading_a_mismatched_encoder_lists_keys():
    clf = FrameClassifier(ModelConfig(preset="tiny"), 3)
    other = FrameClassifier(ModelConfig(preset="tiny", width=32, heads=2, conv_pos_groups=4), 3)
    with pytest.raises(ValueError, match="shape mismatch") as err:
        load_pretrained_encoder(clf, other.encoder.state_dict())
    assert "local.proj.weight" in str(err.value)
    load_pretrained_encoder(
        clf, FrameClassifier(ModelConfig(preset="tiny"), 3).encoder.state_dict()
    )


def test_padding_never_reaches_the_fine_tuning_loss():
    from a2v_core.finetune import valid_frames

    frames = valid_frames([10.0, 2.5], 2000, 200.0)
    assert frames.shape == (2, 2000) and frames[0].all() and int(frames[1].sum()) == 500
    logits = torch.zeros(2, 2000, 3)
    y = torch.zeros(2, 2000, 3)
    base = focal_loss(logits, y, 0.25, 2.0, frames)
    logits[1, 500:] = 50.0  # wildly wrong on the padded tail only
    y[1, 700:] = 1.0
    assert focal_loss(logits, y, 0.25, 2.0, frames) == pytest.approx(float(base))
    assert focal_loss(logits, y, 0.25, 2.0) > 10 * float(base)  # without the mask it counts
