"""a2v evaluate (through the labelling path) and a2v report on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from a2v_core.config import EvaluateJob
from a2v_core.config_loader import load_config
from a2v_core.config_tools import ReportJob
from pipelines import evaluate, label, report

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def png_ok(path: Path) -> None:
    assert path.stat().st_size > 1000, path
    with Image.open(path) as im:
        im.load()
        assert im.size[0] > 200 and im.size[1] > 200


def test_evaluate_writes_metrics_table_and_curves(finetuned, synth_archive, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "eval"
    job = load_config(
        EvaluateJob,
        ROOT / "configs/label/default.yaml",
        [
            f"model={finetuned}",
            f"data.archive={synth_archive}",
            f"data.annotations={synth_archive}/annotations.csv",
            f"out={out}",
            f"tracking.uri={uri}",
            "tracking.experiment=a2v/evaluate-test",
            "cluster.cpus_per_worker=0.5",
        ],
    )
    metrics = evaluate.run(job)
    for name in ("metrics.json", "per_class.md", "per_class.csv"):
        assert (out / name).stat().st_size > 100, name
    png_ok(out / "pr_curves.png")
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["files_evaluated"] == 12 and saved["frames"] == 12 * 60 * 200
    assert set(saved["events"]) == {"iou_0", "iou_0.5"}
    # matching is stricter at IoU 0.5 than at any overlap
    assert saved["events"]["iou_0.5"]["f1"] <= saved["events"]["iou_0"]["f1"]
    # the paper-style score forgives splits: never below the one-to-one score at IoU > 0
    paper, strict = saved["events_any_overlap"], saved["events"]["iou_0"]
    assert paper["precision"] >= strict["precision"] and paper["recall"] >= strict["recall"]
    table = pd.read_csv(out / "per_class.csv")
    truth = pd.read_csv(synth_archive / "annotations.csv")
    assert list(table["class"]) == metrics["classes"]
    assert (
        dict(zip(table["class"], table["true_events"], strict=True))
        == truth["label"].value_counts().to_dict()
    )
    # the events scored are the labelling job's own outputs
    events = label.read_events(str(out / "labels"))
    assert int(table["pred_events_iou0"].sum()) == len(events)
    assert 0 < metrics["frame"]["macro_ap"] <= 1 and not np.isnan(metrics["frame"]["micro_ap"])
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["a2v/evaluate-test"], output_format="list")
    evals = [r for r in runs if r.data.tags.get("a2v.job") == "evaluate"]
    assert len(evals) == 1 and "frame_macro_ap" in evals[0].data.metrics
    arts = {a.path for a in mlflow.MlflowClient().list_artifacts(evals[0].info.run_id)}
    assert {"metrics.json", "per_class.md", "pr_curves.png"} <= arts


def test_report_writes_every_png(finetuned, synth_archive, tmp_path):
    out = tmp_path / "report"
    summary = report.run(
        ReportJob(
            model=finetuned,
            out=str(out),
            archive=str(synth_archive),
            annotations=str(synth_archive / "annotations.csv"),
        )
    )
    for name in ("sinc_filters.png", "attention.png", "frame_probs.png"):
        png_ok(out / name)
    assert summary["events_in_clip"] >= 1
    assert json.loads((out / "report.json").read_text())["files"].keys() == {
        "sinc_filters.png",
        "attention.png",
        "frame_probs.png",
    }
    synthetic = report.run(ReportJob(model=finetuned, out=str(tmp_path / "report2")))
    assert synthetic["clip"].startswith("synthetic") and synthetic["events_in_clip"] >= 1
    png_ok(tmp_path / "report2/attention.png")
