"""Ray Data datasource: an audio archive -> streamed 10 s chunk rows.

Files are listed recursively (extension filter, case-insensitive). Each read task streams
chunks of its files through ``a2v_core.audio`` with random access (seek), so memory is
bounded by ``chunks_per_block`` chunks, never by file length; files larger than
``split_file_s`` of audio are split into several work units so one long file spreads over
many tasks. A file that fails to decode yields an error row (``error_type`` set, zero
audio, ``duration_s`` 0) instead of failing the job; ``good_chunks`` / ``error_rows``
separate them.

Row contract (DESIGN.md): chunk_id (sha1 of path + offset), path (relative to the archive),
offset_s, duration_s (valid audio), sample_rate_hz (the model's), source_rate_hz (the file's
own), audio (float32, clip samples), plus
n_chunks (chunks in the whole file), error_type, error_message, recorded_at and
recorded_at_source (``a2v_core.recording_time``: when the recording started, from its header
or name; on the rows of a file's first read unit, "" on the others).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from a2v_core.audio import DecodeError, chunk_offsets, input_samples, iter_chunks, probe
from a2v_core.config import DataConfig
from a2v_core.recording_time import recording_time
from pipelines.data import storage
from pipelines.data.blocks import BlockBuffer, RaggedBlockBuffer

#: bytes above which a file is probed and split into several read units
SPLIT_PROBE_BYTES = 16 * 1024 * 1024


def chunk_id(path: str, offset_s: float) -> str:
    return hashlib.sha1(f"{path}|{offset_s:.3f}".encode()).hexdigest()[:20]


@dataclass(frozen=True)
class WorkUnit:
    path: str  # relative to the archive
    size_bytes: int  # this unit's share of the file (for Ray Data's size estimates)
    start_s: float = 0.0
    stop_s: float | None = None
    file_bytes: int | None = None  # the whole object's size, as listed


def plan_units(cfg: DataConfig, files: list[tuple[str, int]]) -> list[WorkUnit]:
    """Whole files, except large ones which are probed and cut at chunk boundaries."""
    fs, root = storage.filesystem(cfg.archive)
    units = []
    for rel, size in files:
        if size <= SPLIT_PROBE_BYTES:
            units.append(WorkUnit(rel, size, file_bytes=size))
            continue
        try:
            with storage.open_member(fs, root, rel, size) as f:
                info = probe(f, cfg.time_expansion)
        except (DecodeError, OSError):
            units.append(WorkUnit(rel, size, file_bytes=size))  # the read task reports it
            continue
        offsets = chunk_offsets(info.duration_s, cfg.clip_s, cfg.overlap_s)
        per_unit = max(1, int(cfg.split_file_s // (cfg.clip_s - cfg.overlap_s)))
        n_units = math.ceil(len(offsets) / per_unit)
        for i in range(n_units):
            group = offsets[i * per_unit : (i + 1) * per_unit]
            stop = offsets[(i + 1) * per_unit] if (i + 1) * per_unit < len(offsets) else None
            units.append(WorkUnit(rel, size // n_units, group[0], stop, size))
    return units


#: what a transient failure looks like in an exception's type name or message (botocore,
#: aiohttp and s3fs name them in different ways; a 4xx or a decode error is never transient)
TRANSIENT_MARKS = (
    "SlowDown",
    "Throttl",
    "RequestTimeout",
    "ServiceUnavailable",
    "InternalError",
    "EndpointConnectionError",
    "ConnectTimeout",
    "ReadTimeout",
    "ServerDisconnected",
    "ClientPayloadError",
    "timed out",
    " 500",
    " 502",
    " 503",
    " 504",
)


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    text = f"{type(exc).__name__} {exc}"
    return any(mark in text for mark in TRANSIENT_MARKS)


class _Watched:
    """A file object that remembers the exception a read raised and reports end of data
    instead: libsndfile reads through callbacks that would print the exception and see a
    short read anyway, which looks like a truncated file (permanent) where it was a network
    failure (worth retrying). ``read_unit`` checks ``failure`` after a decode error."""

    def __init__(self, f) -> None:
        self.f, self.failure = f, None

    def read(self, *args):
        try:
            return self.f.read(*args)
        except Exception as exc:
            self.failure = exc
            return b""

    def readinto(self, buf):  # what soundfile calls first
        try:
            return self.f.readinto(buf)
        except Exception as exc:
            self.failure = exc
            return 0

    def __getattr__(self, name: str):
        return getattr(self.f, name)


def chunk_row(base: dict, path: str, chunk, sample_rate_hz: int) -> dict:
    """The row of one chunk (``base``: its file's path and the model rate)."""
    return {
        **base,
        "chunk_id": chunk_id(path, chunk.offset_s),
        "offset_s": chunk.offset_s,
        "duration_s": chunk.valid_samples / sample_rate_hz,
        "audio": chunk.audio,
        "n_chunks": chunk.n_chunks,
        "channel": chunk.channel,
        "source_rate_hz": chunk.source_rate_hz,
        "error_type": chunk.error_type,
        "error_message": chunk.error_message[:500],
    }


def read_unit(
    cfg: DataConfig,
    fs,
    root: str,
    unit: WorkUnit,
    out: Callable[[], np.ndarray] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[dict]:
    """Rows of one work unit; decode failures become one error row. Each row's audio is
    written into ``out()`` (default: a fresh array per row). A transient read failure is
    retried ``cfg.read_retries`` times from the chunk it stopped at; still failing, it is a
    ``retryable`` error row (labelling does not mark such a file done)."""
    if out is None:
        out = lambda: np.empty(cfg.clip_samples, np.float32)  # noqa: E731
    base = {"path": unit.path, "sample_rate_hz": cfg.sample_rate_hz}
    start_s, attempt = unit.start_s, 0
    if unit.start_s > 0:  # another unit of a long file: its first unit says when it started
        base |= {"recorded_at": "", "recorded_at_source": ""}
    while True:
        watched = None
        try:
            with storage.open_member(fs, root, unit.path, unit.file_bytes) as raw:
                if unit.start_s == 0 and "recorded_at" not in base:  # the file's first unit
                    when = recording_time(unit.path, raw)
                    base |= {"recorded_at": when.recorded_at, "recorded_at_source": when.source}
                watched = _Watched(raw)
                for chunk in iter_chunks(
                    watched,
                    cfg.clip_s,
                    cfg.sample_rate_hz,
                    overlap_s=cfg.overlap_s,
                    channel=cfg.channel,
                    min_duration_s=cfg.min_duration_s,
                    start_s=start_s,
                    stop_s=unit.stop_s,
                    out=out,
                    chunk_errors=True,  # a NaN/inf window is one error row; the file goes on
                    time_expansion=cfg.time_expansion,
                ):
                    yield chunk_row(base, unit.path, chunk, cfg.sample_rate_hz)
                    start_s = chunk.offset_s + 1e-6  # a retry goes on after this chunk
            return
        except (DecodeError, OSError) as exc:
            cause = watched.failure if watched is not None and watched.failure else exc
            if is_transient(cause):
                if attempt < cfg.read_retries:
                    sleep(cfg.read_retry_backoff_s * 2**attempt)
                    attempt += 1
                    continue
                message = f"{type(cause).__name__}: {cause} (after {attempt} retries)"
                yield _error_row(base, unit, out(), "retryable", message)
            elif isinstance(exc, DecodeError) and cause is exc:
                yield _error_row(base, unit, out(), exc.error_type, exc.message)
            else:  # an I/O error, also one libsndfile only saw as a short read
                message = f"{type(cause).__name__}: {cause}"
                yield _error_row(base, unit, out(), "unreadable", message)
            return


def _error_row(
    base: dict, unit: WorkUnit, audio: np.ndarray, error_type: str, message: str
) -> dict:
    audio[:] = 0.0
    return {
        "recorded_at": "",
        "recorded_at_source": "",
        **base,
        "chunk_id": chunk_id(unit.path, -1.0),
        "offset_s": unit.start_s,
        "duration_s": 0.0,
        "audio": audio,
        "n_chunks": 0,
        "channel": 0,
        "source_rate_hz": 0,
        "error_type": error_type,
        "error_message": message[:500],
    }


class AudioChunkDatasource(Datasource):
    """Streams chunk rows from every audio file under ``cfg.archive``."""

    def __init__(
        self, cfg: DataConfig, files: list[tuple[str, int]] | None = None, bucket_s: float = 0.0
    ) -> None:
        super().__init__()
        self.cfg = cfg
        # > 0: rows as long as the model needs them (``blocks.RaggedBlockBuffer``)
        self.bucket_samples = int(round(bucket_s * cfg.sample_rate_hz))
        self.files = files if files is not None else storage.list_files(cfg.archive, cfg.extensions)
        if not self.files:
            raise FileNotFoundError(
                f"no audio files with extensions {cfg.extensions} under {cfg.archive} (check data.archive)"
            )
        self.units = plan_units(cfg, self.files)

    def get_name(self) -> str:
        return "AudioChunks"

    def estimate_inmemory_data_size(self) -> int:
        return sum(u.size_bytes for u in self.units) * 2

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit: int | None = None, data_context=None
    ) -> list[ReadTask]:
        n_tasks = max(1, min(len(self.units), self.cfg.read_tasks or parallelism))
        groups = [self.units[i::n_tasks] for i in range(n_tasks)]
        cfg, bucket = self.cfg, self.bucket_samples

        def make_fn(units: list[WorkUnit]):
            def read_fn() -> Iterator[pa.Table]:
                fs, root = storage.filesystem(cfg.archive)
                buffer = RaggedBlockBuffer if bucket else BlockBuffer
                block = buffer(cfg.chunks_per_block, cfg.clip_samples)
                for unit in units:
                    for row in read_unit(cfg, fs, root, unit, block.next_audio):
                        if bucket:  # the part of the clip the model takes
                            n = round(row["duration_s"] * cfg.sample_rate_hz)
                            row["audio"] = row["audio"][
                                : input_samples(n, len(row["audio"]), bucket)
                            ]
                        if block.add(row):
                            yield block.take()
                if len(block):
                    yield block.take()

            return read_fn

        tasks = []
        for units in groups:
            meta = BlockMetadata(
                num_rows=None,
                size_bytes=sum(u.size_bytes for u in units) * 2,
                exec_stats=None,
                input_files=[u.path for u in units],
            )
            tasks.append(ReadTask(make_fn(units), meta, per_task_row_limit=per_task_row_limit))
        return tasks


def read_chunks(
    cfg: DataConfig,
    files: list[tuple[str, int]] | None = None,
    read_only: bool = False,
    bucket_s: float = 0.0,
) -> ray.data.Dataset:
    """All rows (good chunks and error rows) of the archive as a streaming Dataset.
    ``bucket_s`` > 0: a chunk with less audio than a clip (a short file, a file's last chunk)
    is a row of its audio padded to the next multiple of ``bucket_s`` (``input_samples``), so
    rows have different lengths; 0: every row is one clip (training batches them as they are).

    ``read_only``: nothing but this read (and block-wise steps fused into it) will run while
    the Dataset executes, e.g. it is materialised before training starts. Ray Data's resource
    reservation, which holds CPUs back for downstream operators, is then switched off for
    this Dataset: on 2 CPUs it ran one read task at a time at first, about 1.15x vs 1.6x the
    plain loop (bench/ingest.py). Leave it False when actors or trainers consume the Dataset
    while it runs."""
    source = AudioChunkDatasource(cfg, files, bucket_s)
    n = cfg.read_tasks or read_task_count(
        len(source.units), int(ray.cluster_resources().get("CPU", 2))
    )
    # Ray Data re-shapes a read task's output into blocks of up to
    # DataContext.target_max_block_size (128 MiB) before the next operator sees them: it
    # concatenated ~25 of our 5 MB blocks into one, an extra copy of all audio, ~250 MiB per
    # read worker whatever chunks_per_block said, and fresh pages faulted in for every
    # concatenated block (17 % of read-worker CPU went to the kernel). A target of exactly one
    # of our blocks passes each block on as it is. The Dataset keeps a copy of the context
    # made here; the caller's context is left as it was.
    overrides = {"target_max_block_size": block_bytes(cfg)}
    if read_only:
        overrides["op_resource_reservation_enabled"] = False
    ctx = ray.data.DataContext.get_current()
    saved = {k: getattr(ctx, k) for k in overrides}
    try:
        for k, v in overrides.items():
            setattr(ctx, k, v)
        return ray.data.read_datasource(source, override_num_blocks=n)
    finally:
        for k, v in saved.items():
            setattr(ctx, k, v)


#: work units (files, or parts of long ones) a read task takes at most when read_tasks is 0
UNITS_PER_TASK = 256


def read_task_count(n_units: int, cpus: int) -> int:
    """4 tasks per CPU, more when that would give a task over UNITS_PER_TASK files: a read
    task's units travel in its closure (12 500 of them were 1.1 MiB each at 10^5 files), and
    what it reads reaches the driver (and commits) in a few bursts, not at the task's end."""
    return max(1, min(n_units, max(4 * cpus, math.ceil(n_units / UNITS_PER_TASK))))


def block_bytes(cfg: DataConfig) -> int:
    """Audio bytes of one full block (``chunks_per_block`` float32 clips). A block is a little
    larger (ids, paths), so Ray Data emits it as soon as it is yielded."""
    return cfg.chunks_per_block * cfg.clip_samples * 4


def blockwise(ds: ray.data.Dataset, fn, **kwargs) -> ray.data.Dataset:
    """``fn(arrow table, **kwargs)`` on every block as it is: fused into the read tasks."""
    return ds.map_batches(
        fn, fn_kwargs=kwargs, batch_format="pyarrow", batch_size=None, zero_copy_batch=True
    )


def _keep(table: pa.Table, errors: bool) -> pa.Table:
    """Rows whose ``error_type`` is (not) empty. A block with nothing to drop passes through
    untouched: filtering an Arrow table copies every column, and copying the audio of every
    good block cost ~18 % of a read task's CPU (py-spy, 32 h archive)."""
    bad = pc.not_equal(table["error_type"], "")
    mask = bad if errors else pc.invert(bad)
    return table if pc.all(mask).as_py() is not False else table.filter(mask)


def _rows(ds: ray.data.Dataset, errors: bool) -> ray.data.Dataset:
    """Good (errors=False) or error rows, as a block-wise step fused into the read tasks."""
    return blockwise(ds, _keep, errors=errors)


def good_chunks(ds: ray.data.Dataset) -> ray.data.Dataset:
    """Rows that decoded."""
    return _rows(ds, errors=False)


def error_rows(ds: ray.data.Dataset) -> ray.data.Dataset:
    """Error rows only, without their (zero) audio."""
    return _rows(ds, errors=True).drop_columns(["audio"])
