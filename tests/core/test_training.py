"""The Ray-free training core: schedule, optimizer groups, epochs of micro-batches, and a
resume from a saved TrainState that takes exactly the updates of a run that never stopped."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from a2v_core.checkpoint import load_checkpoint
from a2v_core.config import FinetuneJob, OptimConfig, PretrainJob
from a2v_core.config_loader import load_config
from a2v_core.finetune import FrameClassifier
from a2v_core.pretrain import Data2VecPretrainer
from a2v_core.training import (
    EmptyEpoch,
    TrainState,
    finetune_step,
    param_groups,
    pretrain_step,
    update_groups,
    warmup_cosine,
)

SR = 8000


def test_warmup_cosine_and_decay_groups():
    cfg = OptimConfig(lr=1e-3, min_lr=1e-5, warmup_steps=10, max_steps=110)
    f = warmup_cosine(cfg)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0) and f(10) == 1.0
    assert f(60) == pytest.approx(0.01 + 0.99 * 0.5) and f(110) == pytest.approx(0.01)
    assert f(500) == pytest.approx(0.01)  # past max_steps: the floor, not a new cycle
    model = FrameClassifier(ModelTiny(), 2)
    model.set_encoder_frozen(True)
    decay, no_decay = param_groups(list(model.named_parameters()), 0.01, 1e-3)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert {id(p) for p in decay["params"] + no_decay["params"]} == trainable
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(p.ndim == 1 or "act." in names[id(p)] for p in no_decay["params"])
    assert all(p.ndim > 1 and "act." not in names[id(p)] for p in decay["params"])
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0


@pytest.mark.parametrize("scale", [1.0, 1000.0])
def test_the_sinc_edges_learn_at_their_own_scale(scale):
    """At lr x 1 an edge in Hz moves about lr Hz per update (nothing); x 1000 it moves."""
    torch.manual_seed(0)
    model = FrameClassifier(ModelTiny(), 2, freeze_frontend=False)
    optim = OptimConfig(
        lr=3e-3, warmup_steps=0, max_steps=10, weight_decay=0.0, sinc_lr_scale=scale
    )
    state = TrainState.create(model, list(model.named_parameters()), optim)
    assert len(state.optimizer.param_groups) == (2 if scale == 1.0 else 3)
    sinc = model.encoder.local.sinc.sinc
    before = torch.cat(sinc.band_edges_hz()).detach().clone()
    audio = torch.randn(2, 8000)
    for _ in range(5):
        model(audio).pow(2).mean().backward()
        state.update(model.parameters(), None)
    moved = (torch.cat(sinc.band_edges_hz()).detach() - before).abs().max().item()
    assert (moved > 1.0) if scale > 1 else (moved < 0.1)


def ModelTiny():  # noqa: N802 - a config factory
    from a2v_core.config import ModelConfig

    return ModelConfig(preset="tiny")


def test_update_groups_span_epochs_and_record_the_position():
    data = [[f"e{e}b{i}" for i in range(3)] for e in range(4)]
    state = TrainState(torch.nn.Linear(1, 1), None, None)  # type: ignore[arg-type]
    seen = []
    for group in update_groups(state, lambda e, skip: iter(data[e][skip:]), accum=2):
        seen.append((group, state.epoch, state.pos))
        if len(seen) == 4:
            break
    assert seen[1] == (["e0b2", "e1b0"], 1, 1)  # a group across the epoch boundary
    assert seen[3] == (["e2b0", "e2b1"], 2, 2)
    resumed = TrainState(torch.nn.Linear(1, 1), None, None, epoch=1, pos=1)  # type: ignore[arg-type]
    first = next(update_groups(resumed, lambda e, skip: iter(data[e][skip:]), accum=2))
    assert first == ["e1b1", "e1b2"]  # a resumed epoch skips what it consumed
    with pytest.raises(EmptyEpoch):
        next(update_groups(state, lambda e, skip: iter([]), accum=1))


def clips(n: int, seconds: float = 1.0, seed: int = 0) -> list[torch.Tensor]:
    rng = np.random.default_rng(seed)
    return [
        torch.as_tensor(rng.standard_normal((2, int(SR * seconds))), dtype=torch.float32)
        for _ in range(n)
    ]


def pretrain_run(job: PretrainJob, data: list, stop_at: int, state: TrainState | None = None):
    if state is None:
        torch.manual_seed(job.run.seed)
        model = Data2VecPretrainer(job.model, job.masking, job.ema)
        student = [(n, p) for n, p in model.named_parameters() if not n.startswith("teacher.")]
        state = TrainState.create(model, student, job.optim)
    state.model.train()
    epochs = lambda e, skip: iter(data[skip:])  # noqa: E731 - the same clips every epoch
    losses = []
    for group in update_groups(state, epochs, job.optim.grad_accum):
        _, metrics = pretrain_step(state, state.model, group, job)
        losses.append(metrics["loss"])
        if state.step >= stop_at:
            break
    return state, losses


def test_a_resumed_pretraining_takes_the_updates_of_one_that_never_stopped(tmp_path):
    job = load_config(
        PretrainJob,
        "configs/pretrain/tiny.yaml",
        ["optim.grad_accum=2", "optim.max_steps=4", "optim.warmup_steps=2", "mixup.prob=0.5"],
    )
    data = clips(3, seconds=0.5)  # 3 batches an epoch, 2 per update: updates span epochs
    straight, losses = pretrain_run(job, data, 4)
    half, first = pretrain_run(job, data, 2)
    half.save(tmp_path / "ckpt", "{}", {"kind": "pretrain"})
    states, _, meta = load_checkpoint(tmp_path / "ckpt")
    assert (meta["step"], meta["epoch"], meta["batches_in_epoch"]) == (2, 1, 1)
    torch.manual_seed(123)  # a fresh process: other weights until the checkpoint loads
    model = Data2VecPretrainer(job.model, job.masking, job.ema)
    student = [(n, p) for n, p in model.named_parameters() if not n.startswith("teacher.")]
    resumed = TrainState.create(model, student, job.optim)
    resumed.load(states, meta)
    resumed, rest = pretrain_run(job, data, 4, resumed)
    assert first + rest == losses and all(math.isfinite(x) for x in losses)
    assert (
        resumed.position() == straight.position() == {"step": 4, "epoch": 2, "batches_in_epoch": 2}
    )
    for (name, a), (_, b) in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name  # student and EMA teacher, bit for bit
    sa, sb = straight.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    assert sa.keys() == sb.keys() and all(
        torch.equal(sa[k]["exp_avg"], sb[k]["exp_avg"]) for k in sa
    )
    assert straight.lr == resumed.lr


def test_finetune_step_trains_the_head_first_then_all_but_the_front_end():
    job = load_config(
        FinetuneJob,
        "configs/finetune/tiny.yaml",
        [
            "optim.freeze_steps=1",
            "optim.freeze_frontend=true",
            "optim.warmup_steps=0",
            "mixup.prob=1.0",
        ],
    )
    torch.manual_seed(0)
    model = FrameClassifier(job.model, 2, job.finetune_masking, job.optim.freeze_frontend)
    state = TrainState.create(model, list(model.named_parameters()), job.optim)
    audio = clips(1, seconds=2.0)[0]
    y = torch.zeros(2, 400, 2)
    y[0, 100:150, 0] = 1.0
    frames = torch.ones(2, 400, dtype=torch.bool)
    frames[1, 300:] = False  # padding

    def moved(step) -> set[str]:
        """The parameter groups (three levels of the name) that one update changed."""
        before = {k: v.clone() for k, v in model.state_dict().items()}
        metrics = step()
        after = model.state_dict()
        return metrics, {
            ".".join(k.split(".")[:3]) for k in before if not torch.equal(before[k], after[k])
        }

    m0, first = moved(lambda: finetune_step(state, model, [(audio, y, frames)], job))
    assert m0["encoder_frozen"] == 1.0 and first == {"head.weight", "head.bias"}
    m1, second = moved(lambda: finetune_step(state, model, [(audio, y, frames)], job))
    assert m1["encoder_frozen"] == 0.0 and {"head.weight", "encoder.local.proj"} <= second
    assert any(k.startswith("encoder.context.blocks") for k in second)
    assert not second & {"encoder.local.sinc", "encoder.local.convs"}  # frozen throughout
    assert state.step == 2 and math.isfinite(m1["loss"])


def test_unreviewed_frames_reach_neither_the_loss_nor_the_metrics():
    """NaN targets (frames nobody reviewed) count neither in the fine-tuning loss (with and
    without mixup) nor in validation: the loss and metrics are those of the reviewed frames."""
    from a2v_core.training import validation_pass

    job = load_config(
        FinetuneJob,
        "configs/finetune/tiny.yaml",
        ["optim.freeze_steps=0", "optim.warmup_steps=0", "mixup.prob=1.0"],
    )
    torch.manual_seed(0)
    model = FrameClassifier(job.model, 2, job.finetune_masking, job.optim.freeze_frontend)
    audio = clips(1, seconds=2.0)[0]
    y = torch.zeros(2, 400, 2)
    y[:, 100:150, 0] = 1.0
    y[:, 300:] = float("nan")  # not reviewed
    frames = torch.ones(2, 400, dtype=torch.bool)
    filled = y.nan_to_num(1.0)  # unreviewed frames as calls of both classes
    masked = frames.clone()
    masked[:, 300:] = False  # ... that no frame mask lets count

    def step(model, targets, frames) -> tuple[dict, dict]:
        state = TrainState.create(model, list(model.named_parameters()), job.optim)
        m = finetune_step(state, model, [(audio, targets, frames)], job)
        return m, {k: v.clone() for k, v in model.state_dict().items()}

    for mix in (False, True):
        job.mixup.enabled = mix
        m, after = step(copy.deepcopy(model), y, frames)
        assert math.isfinite(m["loss"]) and math.isfinite(m["grad_norm"]), (mix, m)
        assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())
    job.mixup.enabled = False
    m_nan, w_nan = step(copy.deepcopy(model), y, frames)
    m_mask, w_mask = step(copy.deepcopy(model), filled, masked)
    m_all, _ = step(copy.deepcopy(model), filled, frames)
    assert m_nan["loss"] == pytest.approx(m_mask["loss"]) != m_all["loss"]
    assert all(torch.allclose(w_nan[k], w_mask[k]) for k in w_nan if w_nan[k].is_floating_point())

    # validation scores the reviewed frames alone: the same as frame_metrics over them, and
    # not what counting the unreviewed frames (as background) would give
    from a2v_core.metrics import frame_metrics

    batch = {
        "audio": audio.numpy(),
        "path": np.array(["a.wav", "b.wav"]),
        "offset_s": np.zeros(2),
        "duration_s": np.full(2, 2.0),
    }
    reviewed = y.numpy()
    y_bg = np.nan_to_num(reviewed, nan=0.0)
    y_bg[:, 350:, 1] = 1.0  # positives of b where nobody reviewed
    reviewed[:, 200:250, 1] = 1.0
    y_bg[:, 200:250, 1] = 1.0
    cpu = torch.device("cpu")
    got, val_clips = validation_pass(model, [batch], lambda b: reviewed, job, ["a", "b"], cpu)
    counted, _ = validation_pass(model, [batch], lambda b: y_bg, job, ["a", "b"], cpu)
    model.eval()
    with torch.no_grad():
        probs = torch.sigmoid(model(audio)).numpy()
    model.train()
    want = frame_metrics(
        reviewed[:, :300].reshape(-1, 2),
        probs[:, :300].reshape(-1, 2),
        ["a", "b"],
        job.frame_threshold,
    )
    assert got["val_macro_ap"] == pytest.approx(want["macro_ap"])
    assert got["val_macro_ap"] != pytest.approx(counted["val_macro_ap"])
    # what no one reviewed proposes no event to the thresholds' tuning
    from a2v_core.events import pooled

    for _, _, p, known in val_clips:
        assert known[:300].all() and not known[300:].any()
        smooth = pooled(p, 200.0, job.events.pool_s, known)
        assert (smooth[300:] == 0).all() and smooth[:300].any()
