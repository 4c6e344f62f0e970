"""Progress for logs without a terminal (``ray job submit``, ``kubectl logs``), where tqdm
switches itself off: one line every ``run.progress_every_s`` seconds with files done / total,
audio hours, x real time, errors by type and the time left."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


class ProgressLog:
    def __init__(
        self,
        name: str,
        total_files: int,
        every_s: float,
        enabled: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        out=None,
    ) -> None:
        self.name, self.total, self.every_s, self.clock = name, total_files, every_s, clock
        # with a terminal the tqdm bar shows the same; None: decide as tqdm does
        self.enabled = (not sys.stderr.isatty()) if enabled is None else enabled
        self.out = out or sys.stdout
        self.t0 = self.last = clock()

    def line(self, files: int, audio_s: float, errors: Mapping[str, int]) -> str:
        elapsed = max(self.clock() - self.t0, 1e-9)
        left = self.total - files
        eta = _duration(left * elapsed / files) if files else "?"
        errs = ", ".join(f"{k} {v}" for k, v in sorted(errors.items()) if v) or "none"
        return (
            f"[{self.name}] {files}/{self.total} files, {audio_s / 3600:.2f} audio h, "
            f"{audio_s / elapsed:.0f}x real time, errors: {errs}, ETA {eta}"
        )

    def update(self, files: int, audio_s: float, errors: Mapping[str, int]) -> None:
        """Print a line when ``every_s`` has passed since the last one."""
        if self.enabled and self.clock() - self.last >= self.every_s:
            self.last = self.clock()
            print(self.line(files, audio_s, errors), file=self.out, flush=True)
