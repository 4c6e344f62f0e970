import numpy as np
import torch

from a2v_core.checkpoint import load_checkpoint, load_classifier, save_checkpoint
from a2v_core.config import FinetuneJob
from a2v_core.config_loader import to_yaml
from a2v_core.finetune import FrameClassifier


def test_round_trip_reproduces_outputs_bit_for_bit(tmp_path):
    job = FinetuneJob()
    model = FrameClassifier(job.model, 4).eval()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(1, 8000)).sum().backward()
    opt.step()
    save_checkpoint(
        tmp_path,
        {"model": model.state_dict(), "optimizer": opt.state_dict()},
        to_yaml(job),
        {
            "kind": "finetune",
            "step": 1,
            "classes": list("abcd"),
            "sample_rate_hz": 8000,
            "frame_rate_hz": 200.0,
        },
    )
    states, config, meta = load_checkpoint(tmp_path)
    assert meta["step"] == 1 and config["model"]["preset"] == "tiny"
    assert all(int(s["step"]) == 1 for s in states["optimizer"]["state"].values())
    loaded, _ = load_classifier(tmp_path)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 8000)).astype(np.float32))
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
