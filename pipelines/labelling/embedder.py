"""Ray Data embedding actor for ``a2v embed``: the encoder of a pretraining or fine-tuned
checkpoint loads once per actor; each chunk row becomes its window embeddings (float32 bytes,
``n_windows`` x ``dim``) and the windows' durations."""

from __future__ import annotations

import numpy as np
import ray
import torch

from a2v_core.checkpoint import embedder_of, load_checkpoint
from a2v_core.config import EmbedJob
from a2v_core.embeddings import window_means
from a2v_core.encoder import flush_denormals
from pipelines.data import storage
from pipelines.labelling.predictor import heap_trimmer

PASSED = ("path", "offset_s", "duration_s", "n_chunks", "channel", "error_type", "error_message")


class Embedder:
    def __init__(self, checkpoint_uri: str, job: dict, threads: int = 1) -> None:
        torch.set_num_threads(max(1, threads))
        flush_denormals()
        self.job = EmbedJob.model_validate(job)
        with storage.fetched(checkpoint_uri) as local:  # this actor's node, not the driver's
            states, config, meta = load_checkpoint(local)
        self.model = embedder_of(states, config, meta)
        self.frame_rate_hz = float(self.model.model_cfg.frame_rate_hz)
        self.node_id = ray.get_runtime_context().get_node_id()
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device)
        self.trim = heap_trimmer() if self.job.release_memory else None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self.embed(batch)
        if self.trim is not None:
            self.trim(0)
        return out

    @torch.no_grad()
    def embed(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ok = batch["error_type"] == ""
        n = len(ok)
        vectors = np.array([b""] * n, dtype=object)
        durations = np.array([b""] * n, dtype=object)
        if ok.any():
            audio = torch.as_tensor(batch["audio"][ok], device=self.device)
            with torch.autocast(
                device_type=self.device.type,
                dtype=torch.bfloat16,
                enabled=self.device.type == "cuda",
            ):
                feats = self.model.embed(audio)
            feats = feats.float().cpu().numpy()
            for j, i in enumerate(np.flatnonzero(ok)):
                n_valid = int(np.ceil(batch["duration_s"][i] * self.frame_rate_hz))
                _, dur, means = window_means(
                    feats[j], n_valid, self.frame_rate_hz, self.job.window_s
                )
                vectors[i] = means.tobytes()
                durations[i] = dur.astype(np.float64).tobytes()
        out = {k: batch[k] for k in PASSED}
        out["vectors"], out["window_durations"] = vectors, durations
        out["dim"] = np.full(n, self.model.model_cfg.width, dtype=np.int64)
        out["node_id"] = np.array([self.node_id] * n, dtype=object)
        return out
