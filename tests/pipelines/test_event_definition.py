"""One event definition: the events fine-tuning tunes its per-class thresholds on are exactly
the events ``a2v label`` writes with those thresholds (runs cut per chunk in the predictor,
merged across chunk borders and length-filtered per file in the writer)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from a2v_core.config import LabelJob
from a2v_core.metrics import class_events_at
from pipelines.inference.archive_pass import FileState
from pipelines.inference.label_outputs import OutputWriter
from pipelines.inference.predictor import event_rule

CLASSES = ["a", "b"]
FR = 200.0


def random_chunks(seed: int) -> list[tuple[str, float, np.ndarray]]:
    """Two files of three 2 s chunks (the last one partial): smooth random probabilities
    whose runs often cross chunk borders."""
    rng = np.random.default_rng(seed)
    out = []
    for file in ("x.wav", "y.flac"):
        walk = np.cumsum(rng.normal(0, 0.15, (1000, len(CLASSES))), axis=0)
        probs = 1 / (1 + np.exp(-(walk - walk.mean(0))))
        for k, (start, stop) in enumerate(((0, 400), (400, 800), (800, 1000))):
            out.append((file, 2.0 * k, probs[start:stop]))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_events_tuning_scores_are_the_events_label_writes(tmp_path, seed):
    chunks = random_chunks(seed)
    job = LabelJob(out=str(tmp_path), formats=["parquet"])
    job.events.min_event_s = 0.08  # long enough that border halves alone would be dropped
    crossing = 0
    for thr in (0.3, 0.5, 0.7):
        # the model's tuned thresholds, as fine-tuning stores them and labelling applies them
        rule = event_rule(job, {"class_thresholds": dict.fromkeys(CLASSES, thr)})
        writer = OutputWriter(job, "v1", f"run{thr}", 8000)
        written = []
        for file in ("x.wav", "y.flac"):
            runs = []
            for f, offset, probs in chunks:
                if f == file:  # the predictor's JSON rows, as the label driver collects them
                    part = rule.runs(probs, CLASSES, f, offset, FR)
                    runs += json.loads(part.to_json(orient="values"))
            written.append(pd.DataFrame(writer.add_file(file, (0, "v"), FileState.with_runs(runs))))
        label_events = pd.concat(written)[["file", "onset_s", "offset_s", "label", "score"]]
        clips = [(f, o, p, None) for f, o, p in chunks]
        tuned = pd.concat(
            [
                class_events_at(clips, c, n, thr, job.events.rule(), FR)
                for c, n in enumerate(CLASSES)
            ]
        )
        key = ["file", "label", "onset_s"]
        label_events = label_events.sort_values(key).reset_index(drop=True)
        tuned = tuned.sort_values(key).reset_index(drop=True)
        assert len(label_events) >= 3
        pd.testing.assert_frame_equal(label_events, tuned, check_dtype=False, rtol=1e-9)
        chunk_of = lambda t: np.floor(np.asarray(t) / 2.0 + 1e-9)  # noqa: E731
        crossing += int(
            (chunk_of(label_events.onset_s) != chunk_of(label_events.offset_s - 1e-6)).sum()
        )
    assert crossing > 0  # some events span a chunk border: the merge is exercised
