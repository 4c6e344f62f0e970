"""Window pooling of frame features (a2v embed)."""

import numpy as np
import pytest
import torch

from a2v_core.checkpoint import embedder_of
from a2v_core.config import ModelConfig, PretrainJob
from a2v_core.embeddings import window_means
from a2v_core.pretrain import Data2VecPretrainer


def test_windows_are_means_of_their_frames_and_the_last_one_holds_what_is_left():
    feats = np.arange(2000 * 3, dtype=np.float32).reshape(2000, 3)
    starts, durations, means = window_means(feats, 1050, 200.0, 1.0)  # 5.25 s of audio
    assert list(starts) == [0, 1, 2, 3, 4, 5] and means.dtype == np.float32
    assert list(durations) == [1, 1, 1, 1, 1, 0.25]
    np.testing.assert_allclose(means[1], feats[200:400].mean(0))
    np.testing.assert_allclose(means[5], feats[1000:1050].mean(0))  # padding never enters
    starts, durations, _ = window_means(feats, 2000, 200.0, 0.5)
    assert len(starts) == 20 and starts[1] == 0.5 and set(durations) == {0.5}
    assert window_means(feats, 0, 200.0, 1.0)[2].shape == (0, 3)
    with pytest.raises(ValueError, match="whole number of frames"):
        window_means(feats, 2000, 200.0, 0.0033)


def test_a_pretraining_checkpoint_embeds_with_its_student_encoder():
    job = PretrainJob(model=ModelConfig(preset="tiny"))
    torch.manual_seed(0)
    core = Data2VecPretrainer(job.model, job.masking, job.ema)
    with torch.no_grad():
        for p in core.encoder.parameters():
            p.add_(0.01)  # not the initialisation a fresh model would draw
    meta = {"kind": "pretrain"}
    model = embedder_of({"model": core.state_dict()}, job.model_dump(mode="json"), meta)
    assert not model.training
    student = core.encoder.state_dict()
    for k, v in model.encoder.state_dict().items():
        assert torch.equal(v, student[k]), k
    audio = torch.randn(1, 8000)
    assert model.embed(audio).shape == (1, 200, job.model.width)
    with pytest.raises(ValueError, match="holds no encoder"):
        embedder_of({}, {}, {"kind": "other"})
