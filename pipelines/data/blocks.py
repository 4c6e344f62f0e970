"""The Arrow blocks a read task yields: chunk rows whose audio is decoded straight into the
block's memory, so that it is written once, never copied from chunk arrays into a block.

``BlockBuffer``: every row's audio is one clip (training: equal shapes batch as they are).
``RaggedBlockBuffer``: a row's audio is as long as the model needs it (``a2v_core.audio.
input_samples``: a short file or a file's last chunk padded to the next bucket, not to a whole
clip), packed back to back; a block holds as much audio as ``chunks_per_block`` clips, however
many rows that is (labelling and embedding: compute and transfer in proportion to audio)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


class BlockBuffer:
    """Collects rows into one Arrow block. Each chunk is decoded straight into its row of the
    block's audio array (``next_audio``), so the audio is written once, not copied from chunk
    arrays into a stacked block."""

    def __init__(self, rows: int, samples: int) -> None:
        self.capacity, self.samples = rows, samples
        self._reset()

    def _reset(self) -> None:
        self.audio = np.empty((self.capacity, self.samples), np.float32)
        self.rows: list[dict] = []

    def next_audio(self) -> np.ndarray:
        """The array the next row's audio is to be written into."""
        return self.audio[len(self.rows)]

    def add(self, row: dict) -> bool:
        """Append a row whose audio was written into ``next_audio()``; True when full."""
        self.rows.append(row)
        return len(self.rows) == self.capacity

    def __len__(self) -> int:
        return len(self.rows)

    def take(self) -> pa.Table:
        from ray.data.block import BlockAccessor

        rows, audio = self.rows, self.audio[: len(self.rows)]
        self._reset()
        batch = {k: np.array([r[k] for r in rows]) for k in rows[0] if k != "audio"}
        batch["audio"] = audio  # the rows' audio are views of it
        return BlockAccessor.batch_to_block(batch)


class RaggedBlockBuffer:
    """Rows of any length up to ``samples`` in a flat buffer of ``rows`` clips of audio. The
    next row is decoded into a full clip's room (``next_audio``); ``add`` keeps as much of it
    as the row's audio says and reports the block full when a clip no longer fits."""

    def __init__(self, rows: int, samples: int) -> None:
        self.capacity, self.samples = rows * samples, samples
        self._reset()

    def _reset(self) -> None:
        self.flat = np.empty(self.capacity, np.float32)
        self.used = 0
        self.rows: list[dict] = []

    def next_audio(self) -> np.ndarray:
        return self.flat[self.used : self.used + self.samples]

    def add(self, row: dict) -> bool:
        """Append a row whose audio (a leading part of ``next_audio()``) is written; True when
        no further clip fits."""
        self.used += len(row["audio"])
        self.rows.append(row)
        return self.capacity - self.used < self.samples

    def __len__(self) -> int:
        return len(self.rows)

    def take(self) -> pa.Table:
        from ray.data.block import BlockAccessor

        rows = self.rows
        self._reset()  # a new buffer: the rows' audio keep viewing the old one
        audio = np.empty(len(rows), dtype=object)
        for i, r in enumerate(rows):
            audio[i] = r["audio"]
        batch = {k: np.array([r[k] for r in rows]) for k in rows[0] if k != "audio"}
        batch["audio"] = audio
        return BlockAccessor.batch_to_block(batch)
