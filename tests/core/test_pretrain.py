import numpy as np
import pytest
import torch

from a2v_core.config import EmaConfig, MaskingConfig, ModelConfig
from a2v_core.pretrain import (
    Data2VecPretrainer,
    PretrainOutput,
    collapse_message,
    ema_decay_at,
    ema_update,
    stops_run,
    teacher_init_share,
    teacher_warning,
)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return Data2VecPretrainer(
        ModelConfig(preset="tiny", dropout=0.0, attention_dropout=0.0, prenet_dropout=0.0),
        MaskingConfig(),
        EmaConfig(decay=0.9, end_decay=1.0, anneal_steps=100),
    )


def test_ema_update_formula_and_buffers(model):
    student, teacher = model.encoder.context, model.teacher
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn_like(p))
    before = {n: p.clone() for n, p in teacher.named_parameters()}
    ema_update(teacher, student, 0.9)
    s = dict(student.named_parameters())
    for n, p in teacher.named_parameters():
        assert torch.allclose(p, 0.9 * before[n] + 0.1 * s[n], atol=1e-6)
    ema_update(teacher, student, 1.0)  # tau = 1: frozen
    for n, p in teacher.named_parameters():
        assert torch.allclose(p, 0.9 * before[n] + 0.1 * s[n], atol=1e-6)


def test_decay_schedule_endpoints():
    cfg = EmaConfig(decay=0.9997, end_decay=1.0, anneal_steps=300_000)
    assert ema_decay_at(0, cfg) == pytest.approx(0.9997)
    assert ema_decay_at(150_000, cfg) == pytest.approx(0.99985)
    assert ema_decay_at(300_000, cfg) == 1.0 and ema_decay_at(400_000, cfg) == 1.0


def test_teacher_gets_no_gradients(model):
    out = model(torch.randn(2, 16000), np.random.default_rng(0))
    out.loss.backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    assert any(p.grad is not None for p in model.encoder.parameters())
    assert model.teacher.training is False
    model.train()
    assert model.teacher.training is False


def test_loss_counts_masked_positions_only(model):
    pred = torch.randn(8, 100, 64)
    targets = torch.randn(2, 100, 64)
    keep = torch.zeros(8, 100, dtype=torch.bool)
    keep[:, ::3] = True
    base = model.loss(pred, targets, keep).loss
    changed = pred.clone()
    changed[keep] += 100.0
    assert torch.equal(model.loss(changed, targets, keep).loss, base)
    changed[~keep] += 1.0
    assert not torch.equal(model.loss(changed, targets, keep).loss, base)


def test_tiny_model_loss_falls_when_overfitting_one_batch(model):
    torch.manual_seed(1)
    audio = torch.randn(2, 16000)
    opt = torch.optim.AdamW(model.student_parameters(), lr=2e-3)
    losses = []
    for step in range(40):
        out = model(audio, np.random.default_rng(step))
        out.loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(out.loss.item())
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])


def test_collapse_guard():
    """The pretraining loop's guard: ``collapse_message`` (all-reduced over ranks) and
    ``stops_run``, as ``pipelines.pretrain.train_loop`` calls them."""
    cfg = EmaConfig(
        collapse_after_steps=10, min_target_std=0.1, min_pred_std=0.01, stop_on_collapse=True
    )
    bad = PretrainOutput(torch.tensor(0.0), 1, target_std=0.05, pred_std=0.5, masked_fraction=0.9)
    assert collapse_message(5, bad, cfg) is None and not stops_run(None, cfg)
    message = collapse_message(10, bad, cfg)
    assert "target_std=0.0500" in message and stops_run(message, cfg)
    fine = PretrainOutput(torch.tensor(0.0), 1, target_std=0.5, pred_std=0.5, masked_fraction=0.9)
    assert collapse_message(10, fine, cfg) is None


def test_collapse_guard_stops_by_default_and_can_be_told_not_to():
    flat = PretrainOutput(torch.tensor(0.0), 1, target_std=0.0, pred_std=0.0, masked_fraction=0.9)
    default = EmaConfig()
    assert default.stop_on_collapse is True  # as the original, which raises
    message = collapse_message(default.collapse_after_steps, flat, default)
    assert "representation collapse at step 5000" in message and stops_run(message, default)
    keep_going = EmaConfig(stop_on_collapse=False)
    message = collapse_message(keep_going.collapse_after_steps, flat, keep_going)
    assert message is not None and not stops_run(message, keep_going)


def test_teacher_init_share_is_the_product_of_the_decays():
    cfg = EmaConfig(decay=0.99, end_decay=0.999, anneal_steps=50)
    for steps in (0, 1, 30, 50, 80):
        want = float(np.prod([ema_decay_at(t, cfg) for t in range(steps)]))
        assert teacher_init_share(cfg, steps) == pytest.approx(want, rel=1e-9)
    # the original's schedule forgets the random teacher; one that reaches 1 within a short
    # run freezes a teacher that is still 37 % random init (the old tiny preset at 2400 steps)
    original = EmaConfig(decay=0.9997, end_decay=1.0, anneal_steps=300_000)
    assert teacher_init_share(original, 384_000) < 1e-15
    short = EmaConfig(decay=0.999, end_decay=1.0, anneal_steps=2000)
    assert teacher_init_share(short, 2400) == pytest.approx(np.exp(-1.0), rel=1e-3)


def test_a_run_too_short_for_its_ema_schedule_is_warned_of_and_a_fitting_one_is_not():
    slow = EmaConfig(decay=0.999, end_decay=1.0, anneal_steps=2000)
    line = teacher_warning(slow, 1000)
    assert line is not None and "47% of the teacher" in line and "step 1000" in line
    assert teacher_warning(slow, 20_000) is not None  # frozen at 1 before it forgot its init
    assert teacher_warning(EmaConfig(decay=0.99, end_decay=0.9999, anneal_steps=1000), 500) is None
    assert teacher_warning(EmaConfig(), 384_000) is None  # the paper's recipe
