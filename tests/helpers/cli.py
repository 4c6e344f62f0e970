"""Checkpoints made without training, and ``a2v`` CLI calls checked for one ``error:`` line."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from a2v_core.checkpoint import save_checkpoint
from a2v_core.config import FinetuneJob, PretrainJob
from a2v_core.config_loader import load_config, to_yaml
from a2v_core.finetune import FrameClassifier
from a2v_core.pretrain import Data2VecPretrainer
from tests.conftest import ROOT

CLASSES = ["agg", "al", "cc", "ld", "mo", "sn", "soc", "synch"]


def checkpoint(d: Path, kind: str) -> str:
    """A checkpoint of the tiny preset made without any training (weights at init)."""
    if kind == "pretrain":
        job = load_config(PretrainJob, ROOT / "configs/pretrain/tiny.yaml")
        model = Data2VecPretrainer(job.model, job.masking, job.ema)
    else:
        job = load_config(FinetuneJob, ROOT / "configs/finetune/tiny.yaml")
        model = FrameClassifier(job.model, n_classes=len(CLASSES))
    meta = {"kind": kind, "classes": CLASSES, "sample_rate_hz": 8000, "frame_rate_hz": 200.0}
    save_checkpoint(d, {"model": model.state_dict()}, to_yaml(job), meta)
    return str(d)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "RAY_ADDRESS": "", "RAY_AUTH_MODE": "disabled"},
    )


def one_error_line(res: subprocess.CompletedProcess, expected: str) -> None:
    assert res.returncode == 2, res.stdout + res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert lines == [lines[0]] and lines[0].startswith("error: "), res.stderr
    assert expected in lines[0], lines[0]
    assert "Traceback" not in res.stderr and "Ray" not in res.stdout + res.stderr


def clis(*calls: tuple[list[str], str]) -> list[subprocess.CompletedProcess]:
    """Several ``(argv, expected error)`` CLI calls side by side (each is a fresh Python process
    that spends seconds importing), every one checked with ``one_error_line``."""
    with ThreadPoolExecutor(len(calls)) as pool:
        results = list(pool.map(lambda c: cli(*c[0]), calls))
    for (_, expected), res in zip(calls, results, strict=True):
        one_error_line(res, expected)
    return results
