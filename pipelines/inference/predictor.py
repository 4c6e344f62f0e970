"""Ray Data predictor actor for labelling: the model loads once per actor; each batch of chunk
rows becomes per-chunk probability runs (JSON) and, optionally, mean embeddings.

Kept in its own module so Ray pickles it by reference (a class defined in ``__main__`` would be
pickled by value, dragging torch internals along)."""

from __future__ import annotations

import ctypes
import ctypes.util
from abc import ABC, abstractmethod
from collections import defaultdict

import numpy as np
import ray
import torch

from a2v_core.checkpoint import load_classifier
from a2v_core.config import LabelJob
from a2v_core.encoder import flush_denormals
from a2v_core.events import EventRule
from pipelines.data import storage


def event_rule(job: LabelJob, meta: dict) -> EventRule:
    """The events this job writes with this model: per class, the checkpoint's tuned
    threshold (if ``events.thresholds_from_model``) under the job's explicit ones."""
    tuned = meta.get("class_thresholds") or {} if job.events.thresholds_from_model else {}
    return job.events.rule(tuned)


def heap_trimmer():
    """glibc's ``malloc_trim`` (returns freed heap pages to the OS), or None elsewhere.

    Without it a predictor actor's private memory creeps up with the number of batches: the
    forward pass frees ~300 MB of temporaries per batch of 8 tiny-preset chunks, glibc raises its
    mmap threshold after the first large free and then keeps the freed pages on its heap.
    Measured on a 4-hour file: the actor's memory between batches stays at 294 MiB with a trim
    per batch, and its peak grew 567 -> 904 MiB (10 min -> 4 h) without."""
    try:
        fn = ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return fn


#: chunk-row columns an actor hands back as they came (label and embed alike)
PASSED = (
    "path",
    "offset_s",
    "duration_s",
    "n_chunks",
    "channel",
    "source_rate_hz",
    "recorded_at",
    "recorded_at_source",
    "error_type",
    "error_message",
)


class ModelActor(ABC):
    """A Ray Data actor that loads a checkpoint once, on its own node (``load``), and runs
    ``infer`` on each batch of chunk rows, handing freed heap back after each."""

    def __init__(self, checkpoint_uri: str, job: dict, threads: int = 1) -> None:
        torch.set_num_threads(max(1, threads))
        flush_denormals()
        self.job = self.job_type.model_validate(job)
        with storage.fetched(checkpoint_uri) as local:  # this actor's node, not the driver's
            self.load(local)
        self.node_id = ray.get_runtime_context().get_node_id()
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device)
        self.trim = heap_trimmer() if self.job.release_memory else None

    job_type: type = LabelJob

    @abstractmethod
    def load(self, local: str) -> None:
        """Set ``self.model`` (and what the actor needs) from the local checkpoint dir."""

    @abstractmethod
    def infer(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One batch of chunk rows -> the output columns."""

    def forward(self, audio: np.ndarray, fn):
        """``fn(audio on the actor's device)`` under bf16 autocast on CUDA (fp32 on CPU)."""
        audio = torch.as_tensor(audio, device=self.device)
        with torch.autocast(
            device_type=self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"
        ):
            return fn(audio)

    def forward_rows(self, audio: np.ndarray, rows: np.ndarray, fn) -> dict[int, tuple]:
        """``fn`` (-> a tensor or a tuple of tensors, batch first) over the audio of ``rows``
        (indices into ``audio``: a (N, S) array, or an object array of 1-D arrays of any
        length): rows of one length together, at most ``batch_size`` clips of audio per call.
        -> row index -> fn's outputs for that row, as float32 numpy arrays."""
        by_length: dict[int, list[int]] = defaultdict(list)
        for i in rows:
            by_length[len(audio[i])].append(int(i))
        clip = self.job.data.clip_samples
        out: dict[int, tuple] = {}
        for n, idx in sorted(by_length.items()):
            per = max(1, self.job.batch_size * clip // n)
            for k in range(0, len(idx), per):
                part = idx[k : k + per]
                res = self.forward(np.stack([audio[i] for i in part]), fn)
                arrays = [
                    r.float().cpu().numpy() for r in (res if isinstance(res, tuple) else (res,))
                ]
                for j, i in enumerate(part):
                    out[i] = tuple(a[j] for a in arrays)
        return out

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # Ray Data calls this from a thread of its own, not the one __init__ ran in, and the
        # flush-to-zero flag is per thread: without it here the forward ran on subnormals
        # (py-spy: 92 % of the actor in the forward; 41x real time on 1 s files vs 146x bare)
        flush_denormals()
        out = self.infer(batch)
        if self.trim is not None:
            self.trim(0)
        return out


class Predictor(ModelActor):
    """Labelling: each batch of chunk rows -> probability runs (JSON) per row."""

    def load(self, local: str) -> None:
        self.model, self.meta = load_classifier(local)
        self.classes = self.meta["classes"]
        self.frame_rate_hz = float(self.meta["frame_rate_hz"])
        self.rule = event_rule(self.job, self.meta)

    def scores(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(frame features, frame probabilities) of a batch of chunks."""
        feats, _ = self.model.features(audio)
        return feats, torch.sigmoid(self.model.head(feats))

    @torch.no_grad()
    def infer(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ok = batch["error_type"] == ""
        n = len(ok)
        runs_json = np.array([""] * n, dtype=object)
        emb = [None] * n
        frames = np.array([b""] * n, dtype=object)
        outputs = self.forward_rows(batch["audio"], np.flatnonzero(ok), self.scores)
        for i, (feats, probs) in outputs.items():
            n_valid = int(np.ceil(batch["duration_s"][i] * self.frame_rate_hz))
            runs = self.rule.runs(
                probs[:n_valid],
                self.classes,
                str(batch["path"][i]),
                float(batch["offset_s"][i]),
                self.frame_rate_hz,
            )
            runs_json[i] = runs.to_json(orient="values")
            if self.job.embeddings:
                emb[i] = feats[:n_valid].mean(0).astype(np.float32)
            if self.job.frame_probs:
                frames[i] = probs[:n_valid].astype(np.float16).tobytes()
        out = {k: batch[k] for k in PASSED}
        out["runs"] = runs_json
        out["node_id"] = np.array([self.node_id] * n, dtype=object)  # where it ran (run.json)
        if self.job.frame_probs:
            out["frame_probs"] = frames
        if self.job.embeddings:
            dim = next((e.shape[0] for e in emb if e is not None), 1)
            out["embedding"] = np.stack(
                [e if e is not None else np.zeros(dim, np.float32) for e in emb]
            )
        return out
