"""bench/gpu_check.py is run on a borrowed accelerator, rarely: keep it working on CPU."""

import json
import math

from bench.gpu_check import main


def test_gpu_check_runs_every_step_on_cpu(tmp_path, capsys):
    out = tmp_path / "gpu_check.json"
    main(["--presets", "tiny", "--steps", "1", "--batch", "1", "--out", str(out)])
    r = json.loads(out.read_text())["presets"]["tiny"]
    assert r["pretrain"]["finite"] and r["pretrain_alibi_scale_learned"]["finite"]
    assert r["finetune"]["frozen_finite"] and r["finetune"]["unfrozen_finite"]
    # the loops' post-step decisions ran: a validation, the best kept, thresholds tuned
    assert r["finetune"]["best_kept"] and r["finetune"]["thresholds_tuned"] == 8
    assert 0 <= r["finetune"]["val_macro_ap"] <= 1 and r["finetune"]["validation_s"] > 0
    assert isinstance(r["pretrain"]["collapse"], str) and isinstance(r["pretrain"]["stops"], bool)
    assert r["inference"]["x_real_time"] > 0
    lo, hi = r["consistency"]["p_range"]
    assert 0 < lo < 0.05 and 0.95 < hi < 1  # a spread head: a real range to compare
    assert math.isfinite(r["paper_pretraining_device_hours"])
    assert "| tiny |" in capsys.readouterr().out
