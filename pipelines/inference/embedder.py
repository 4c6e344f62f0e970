"""Ray Data embedding actor for ``a2v embed``: the encoder of a pretraining or fine-tuned
checkpoint loads once per actor; each chunk row becomes its window embeddings (float32 bytes,
``n_windows`` x ``dim``) and the windows' durations."""

from __future__ import annotations

import numpy as np
import torch

from a2v_core.checkpoint import embedder_of, load_checkpoint
from a2v_core.config import EmbedJob
from a2v_core.embeddings import window_means
from pipelines.inference.predictor import PASSED, ModelActor


class Embedder(ModelActor):
    job_type = EmbedJob

    def load(self, local: str) -> None:
        self.model = embedder_of(*load_checkpoint(local))
        self.frame_rate_hz = float(self.model.model_cfg.frame_rate_hz)

    @torch.no_grad()
    def infer(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ok = batch["error_type"] == ""
        n = len(ok)
        vectors = np.array([b""] * n, dtype=object)
        durations = np.array([b""] * n, dtype=object)
        outputs = self.forward_rows(batch["audio"], np.flatnonzero(ok), self.model.embed)
        for i, (feats,) in outputs.items():
            n_valid = int(np.ceil(batch["duration_s"][i] * self.frame_rate_hz))
            _, dur, means = window_means(feats, n_valid, self.frame_rate_hz, self.job.window_s)
            vectors[i] = means.tobytes()
            durations[i] = dur.astype(np.float64).tobytes()
        out = {k: batch[k] for k in PASSED}
        out["vectors"], out["window_durations"] = vectors, durations
        out["dim"] = np.full(n, self.model.model_cfg.width, dtype=np.int64)
        out["node_id"] = np.array([self.node_id] * n, dtype=object)
        return out
