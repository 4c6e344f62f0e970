"""``a2v manifest --archive URI --out URI``: probe every audio file of an archive.

Writes one Parquet row per file (path, bytes, duration_s, sample_rate_hz, channels, format,
error_type, error_message, version: the S3 ETag or modification time), the archive it lists in
its metadata, so that ``a2v label`` / ``a2v embed --manifest`` take it instead of listing again and prints a summary: files, audio hours, errors by type. The
probe runs as Ray tasks, so it scales with the archive. By default it reads headers only (the
summary says so: ``checks: header``); ``--verify`` also decodes every file the way labelling
does, so that a truncated FLAC or NaN samples are reported with the same ``error_type``
(``truncated``, ``non_finite``) labelling would give (``checks: header+decode``).
"""

from __future__ import annotations

import io
import json
from collections import Counter

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import ray
from tqdm import tqdm

from a2v_core.audio import DecodeError, probe
from a2v_core.config import DataConfig
from a2v_core.config_tools import ManifestJob
from a2v_core.errors import InputError
from a2v_core.rates import recommend_preset_hz, sound_preset_hz, upsampling_warning
from a2v_core.redact import redact_uri
from pipelines.data import storage
from pipelines.data.sound_sample import archive_sound
from pipelines.inference.progress import ProgressLog
from pipelines.runtime.jobargs import add_fields, command, parser, tool_config
from pipelines.runtime.ray_init import init_ray

COLUMNS = [
    "path",
    "bytes",
    "duration_s",
    "sample_rate_hz",
    "channels",
    "format",
    "error_type",
    "error_message",
]


def decode_error(
    archive: str, rel: str, size: int, sample_rate_hz: int, time_expansion: int = 1
) -> tuple[str, str]:
    """(error_type, message) of the first chunk labelling would fail on, or ("", "")."""
    from pipelines.data.datasource import WorkUnit, read_unit

    cfg = DataConfig(  # the file's own (true) rate: no resampling
        archive=archive, sample_rate_hz=sample_rate_hz, time_expansion=time_expansion
    )
    fs, root = storage.filesystem(archive)
    buf = np.empty(cfg.clip_samples, np.float32)  # one buffer: the audio is not kept
    for row in read_unit(cfg, fs, root, WorkUnit(rel, size, file_bytes=size), lambda: buf):
        if row["error_type"]:
            return row["error_type"], row["error_message"]
    return "", ""


def manifest_row(path: str, size: int, error_type: str = "", message: str = "") -> dict:
    """One manifest row before probing (an error row when ``error_type`` is given)."""
    return {
        "path": path,
        "bytes": size,
        "duration_s": 0.0,
        "sample_rate_hz": 0,
        "channels": 0,
        "format": "",
        "error_type": error_type,
        "error_message": message,
    }


def probe_files(
    archive: str, files: list[tuple[str, int]], verify: bool = False, time_expansion: int = 1
) -> list[dict]:
    fs, root = storage.filesystem(archive)
    rows = []
    for rel, size in files:
        row = manifest_row(rel, size)
        try:
            with storage.open_member(fs, root, rel, size) as f:
                info = probe(f, time_expansion)
            row.update(
                duration_s=info.duration_s,
                sample_rate_hz=info.sample_rate_hz,
                channels=info.channels,
                format=f"{info.format}/{info.subtype}",
            )
            if info.frames == 0:
                row.update(error_type="empty_audio", error_message="0 samples")
            elif verify:
                error_type, message = decode_error(
                    archive, rel, size, info.sample_rate_hz, time_expansion
                )
                row.update(error_type=error_type, error_message=message)
        except DecodeError as exc:
            row.update(error_type=exc.error_type, error_message=exc.message)
        except OSError as exc:
            row.update(error_type="unreadable", error_message=f"{type(exc).__name__}: {exc}")
        rows.append(row)
    return rows


def build_manifest(
    archive: str,
    extensions: list[str] | None = None,
    files_per_task: int = 64,
    verify: bool = False,
    progress_every_s: float = 30.0,
    max_files: int | None = None,
    time_expansion: int = 1,
) -> pd.DataFrame:
    """Probe every file (Ray tasks of ``files_per_task`` files) into a DataFrame; ``verify``:
    decode every file too. Without a terminal, a progress line every ``progress_every_s``.
    ``max_files``: only the first that many audio files (a dry run). ``time_expansion``: the
    files come from a time-expansion detector; rates and durations are the true ones."""
    exts = extensions or DataConfig().extensions
    versions = {rel: version for rel, _, version in storage.list_versions(archive, [])}
    all_listed = storage.list_all(archive)
    files = [f for f in all_listed if f[0].rsplit(".", 1)[-1].lower() in exts]
    unsupported = [f for f in all_listed if f not in files and _looks_like_audio_attempt(f[0])]
    files, unsupported = files[:max_files], unsupported[:max_files]
    remote = ray.remote(probe_files)
    groups = [files[i : i + files_per_task] for i in range(0, len(files), files_per_task)]
    pending = [remote.remote(archive, g, verify, time_expansion) for g in groups]
    rows: list[dict] = []
    progress = ProgressLog("manifest", len(files), progress_every_s)
    audio_s, errors = 0.0, Counter()
    with tqdm(total=len(files), unit="file", desc="manifest", disable=None) as bar:
        while pending:
            # a timeout, so that a line is printed on time while long tasks run
            done, pending = ray.wait(pending, num_returns=1, timeout=max(progress_every_s, 1))
            for ref in done:
                part = ray.get(ref)
                rows += part
                bar.update(len(part))
                audio_s += sum(r["duration_s"] for r in part if not r["error_type"])
                errors.update(r["error_type"] for r in part if r["error_type"])
            progress.update(len(rows), audio_s, errors)
    rows += [
        manifest_row(p, s, "unsupported_format", f"extension not in {exts}") for p, s in unsupported
    ]
    table = pd.DataFrame(rows, columns=COLUMNS).sort_values("path").reset_index(drop=True)
    table["version"] = table["path"].map(versions).fillna("").astype(str)
    return table


def _looks_like_audio_attempt(path: str) -> bool:
    """Files that are neither audio nor sidecar annotations (.csv/.txt/.json) count as unsupported."""
    return path.rsplit(".", 1)[-1].lower() not in ("csv", "txt", "json", "parquet", "yaml", "md")


def rate_summary(ok: pd.DataFrame) -> dict:
    """The rates found (files and hours per rate), the recommended preset (the lowest whose
    band covers 80 % of the hours) and the upsampling warning at that preset (or None)."""
    by_rate = ok.groupby("sample_rate_hz")["duration_s"].agg(["count", "sum"])
    hours = {int(r): float(s) / 3600 for r, s in by_rate["sum"].items()}
    preset = recommend_preset_hz(hours)
    return {
        "rates": {
            str(int(r)): {"files": int(row["count"]), "hours": float(row["sum"]) / 3600}
            for r, row in by_rate.iterrows()
        },
        "recommended_sample_rate_hz": preset,
        "warning": upsampling_warning(hours, preset),
    }


def summarize(manifest: pd.DataFrame, verify: bool = False, sound: dict | None = None) -> dict:
    """Files, hours, errors and rates; with ``sound`` (``sound_sample.archive_sound``) the
    recommended preset is the lowest that hears the sampled sound whole (never above the one the
    files' rates give)."""
    ok = manifest[manifest["error_type"] == ""]
    rates = rate_summary(ok)
    if sound and sound["sound_top_hz"]:
        rates["rate_preset_hz"] = rates["recommended_sample_rate_hz"]
        rates["recommended_sample_rate_hz"] = min(
            rates["recommended_sample_rate_hz"], sound_preset_hz(sound["sound_top_hz"])
        )
        hours = {int(r): v["hours"] for r, v in rates["rates"].items()}
        rates["warning"] = upsampling_warning(hours, rates["recommended_sample_rate_hz"])
    return {
        "checks": "header+decode" if verify else "header (add --verify to decode every file)",
        "files": int(len(manifest)),
        "ok_files": int(len(ok)),
        "audio_hours": float(ok["duration_s"].sum() / 3600),
        "errors_by_type": dict(Counter(manifest.loc[manifest["error_type"] != "", "error_type"])),
        "sample_rates_hz": sorted(int(s) for s in ok["sample_rate_hz"].unique()),
        **rates,
        **({"sound": sound} if sound else {}),
    }


#: the Parquet metadata key naming the archive a manifest lists (label and embed check it)
ARCHIVE_KEY = b"a2v.archive"


def write_manifest(out: str, manifest: pd.DataFrame, archive: str) -> None:
    """The manifest as Parquet, the archive it lists (credentials redacted) in its metadata."""
    table = pa.Table.from_pandas(manifest, preserve_index=False)
    meta = {**(table.schema.metadata or {}), ARCHIVE_KEY: redact_uri(archive.rstrip("/")).encode()}
    buf = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(meta), buf)
    storage.write_bytes(out, buf.getvalue())


def read_listing(uri: str, archive: str, extensions: list[str]) -> list[tuple[str, int, str]]:
    """The archive's (path, bytes, version) as a manifest of it lists them: labelling and
    embedding take it instead of listing the archive again. InputError when it is not a
    manifest of ``archive``."""
    from a2v_core.errors import InputError

    try:
        table = pq.read_table(io.BytesIO(storage.read_bytes(uri)))
    except (OSError, pa.ArrowInvalid) as err:
        raise InputError(f"--manifest {redact_uri(uri)}: not a readable manifest ({err})") from None
    listed_archive = (table.schema.metadata or {}).get(ARCHIVE_KEY, b"").decode()
    if "version" not in table.column_names or not listed_archive:
        raise InputError(
            f"--manifest {redact_uri(uri)}: not written by this version of `a2v manifest` "
            "(no version column or archive); run `a2v manifest` again"
        )
    if listed_archive != redact_uri(archive.rstrip("/")):
        raise InputError(
            f"--manifest {redact_uri(uri)} lists {listed_archive}, not --archive "
            f"{redact_uri(archive)}"
        )
    exts = {e.lower().lstrip(".") for e in extensions}
    rows = table.select(["path", "bytes", "version"]).to_pylist()
    return sorted(
        (r["path"], int(r["bytes"]), r["version"])
        for r in rows
        if r["path"].rsplit(".", 1)[-1].lower() in exts
    )


def run(cfg: ManifestJob) -> dict:
    """Probe (or with ``verify`` decode) every file of the archive; write the manifest and
    print its summary; -> the summary."""
    if not storage.exists(cfg.archive):  # before Ray starts
        raise InputError(f"--archive {redact_uri(cfg.archive)}: not found")
    init_ray(cfg.address)
    manifest = build_manifest(
        cfg.archive,
        verify=cfg.verify,
        progress_every_s=cfg.progress_every_s,
        max_files=1 if cfg.dry_run else None,
        time_expansion=cfg.time_expansion,
    )
    write_manifest(cfg.out, manifest, cfg.archive)
    ok = manifest[manifest["error_type"] == ""]
    sound = (
        archive_sound(cfg.archive, ok.to_dict("records"), cfg.sound_files, 30.0, cfg.time_expansion)
        if cfg.sound_files and len(ok)
        else None
    )
    summary = summarize(manifest, cfg.verify, sound)
    print(json.dumps(summary, indent=2))
    for rate, r in summary["rates"].items():
        print(f"  {int(rate):>7} Hz: {r['files']} files, {r['hours']:.3f} h")
    why = (
        "the lowest that hears the sampled sound whole"
        if "rate_preset_hz" in summary
        else "the lowest whose band covers 80 % of the hours"
    )
    print(
        f"recommended preset: --sample-rate-hz {summary['recommended_sample_rate_hz']} ({why}; "
        "other files are resampled to it)"
    )
    if sound:
        print(sound["advice"])
    if summary["warning"]:
        print(summary["warning"])
    print(
        f"manifest: {summary['files']} files, {summary['audio_hours']:.3f} audio hours, "
        f"errors {summary['errors_by_type']} -> {redact_uri(cfg.out)}"
    )
    return summary


@command
def main(argv: list[str] | None = None) -> None:
    ap = parser("a2v manifest", __doc__)
    add_fields(ap, ManifestJob, "the first file")
    run(tool_config(ManifestJob, ap.parse_args(argv)))


if __name__ == "__main__":
    main()
