"""``a2v synth``: write a synthetic MeerKAT-like archive (audio + annotations) to a URI.

    a2v synth --out demo_out/archive --hours 0.5 --seed 0
    a2v synth --out s3://bucket/archive --hours 2

Writes ``<out>/<collar>/<rec>.wav`` (8 kHz PCM16 by default), ``<out>/annotations.csv``
(file, onset_s, offset_s, label) and one Raven selection table per recording next to it.
"""

from __future__ import annotations

import io
import math
import struct

import pandas as pd
import soundfile as sf

from a2v_core import annotations
from a2v_core.config_tools import SynthJob
from a2v_core.redact import redact_uri
from a2v_core.synth import synth_archive
from a2v_core.synth_season import bat_archive, season_archive
from pipelines.data import storage
from pipelines.runtime.jobargs import add_fields, command, parser, tool_config


def write_archive(
    out: str,
    hours: float,
    seed: int = 0,
    sample_rate_hz: int = 8000,
    file_s: float = 60.0,
    audio_format: str = "WAV",
    calls: str = "auto",
) -> pd.DataFrame:
    """Write the collar archive; returns the annotation table."""
    tables = []
    ext = {"WAV": "wav", "FLAC": "flac"}[audio_format]
    for name, audio, events in synth_archive(hours, seed, file_s, sample_rate_hz, calls):
        name = name.rsplit(".", 1)[0] + f".{ext}"
        events["file"] = name
        storage.write_bytes(
            storage.join(out, name), encode(audio, sample_rate_hz, audio_format, {})
        )
        raven = annotations.to_raven(events, sample_rate_hz)
        storage.write_bytes(
            storage.join(out, name.rsplit(".", 1)[0] + ".Table.1.selections.txt"), raven.encode()
        )
        tables.append(events)
    return write_truth(out, tables)


def write_truth(out: str, tables: list[pd.DataFrame]) -> pd.DataFrame:
    """``<out>/annotations.csv`` (relative paths) of every recording's events."""
    table = annotations.canonical_table(pd.concat(tables, ignore_index=True))
    table.attrs["n_files"] = len(tables)  # recordings written, with or without calls
    buf = io.StringIO()
    annotations.write_csv(table, buf)
    storage.write_bytes(storage.join(out, "annotations.csv"), buf.getvalue().encode())
    return table


def encode(audio, sample_rate_hz: int, audio_format: str, header: dict[str, str]) -> bytes:
    """PCM16 audio; ``header``: ``comment`` (a WAV comment) and/or ``guano`` (a GUANO chunk
    appended to a WAV, as bat detectors write it)."""
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", sample_rate_hz, 1, format=audio_format, subtype="PCM_16") as f:
        if header.get("comment"):
            f.comment = header["comment"]
        f.write(audio)
    data = buf.getvalue()
    if header.get("guano") and audio_format == "WAV":
        text = header["guano"].encode()
        chunk = b"guan" + struct.pack("<I", len(text)) + text + b"\0" * (len(text) & 1)
        data = data[:4] + struct.pack("<I", len(data) - 8 + len(chunk)) + data[8:] + chunk
    return data


#: where the season's Raven tables say the recordings were when they were annotated
LABELLER_ROOT = "D:\\Fieldwork\\Season2024"


def write_season(cfg: SynthJob, n_files: int) -> pd.DataFrame:
    """A season or bats layout (``a2v_core.synth_season``): the recordings, the truth CSV and
    one Raven table per site under ``<out>/raven/`` whose ``Begin Path`` is the labeller's
    Windows path (the same names in every site: only the path tells them apart)."""
    if cfg.layout == "season":
        recordings = season_archive(
            n_files, cfg.seed, cfg.sites, cfg.nights, cfg.recording_s, cfg.gap_s, cfg.sample_rate_hz
        )
    else:
        recordings = bat_archive(
            n_files, cfg.seed, cfg.sites, cfg.nights, cfg.recording_s, cfg.sample_rate_hz
        )
    stem_ext = {"WAV": None, "FLAC": "flac"}[cfg.format]  # WAV: the recorder's own spelling
    tables = []
    for rec in recordings:
        path = rec.path if stem_ext is None else rec.path.rsplit(".", 1)[0] + f".{stem_ext}"
        data = encode(rec.audio, cfg.sample_rate_hz, cfg.format, rec.header)
        storage.write_bytes(storage.join(cfg.out, path), data)
        tables.append(rec.events.assign(file=path))
    table = write_truth(cfg.out, tables)
    for site, rows in table.groupby(table["file"].str.split("/").str[0]):
        foreign = rows.assign(file=LABELLER_ROOT + "\\" + rows["file"].str.replace("/", "\\"))
        raven = annotations.to_raven(foreign, cfg.sample_rate_hz, combined=True)
        storage.write_bytes(
            storage.join(cfg.out, "raven", f"{site}.selections.txt"), raven.encode()
        )
    return table


def run(cfg: SynthJob) -> pd.DataFrame:
    """Write the archive and its annotations; -> the annotation table (a dry run: one
    recording)."""
    file_s = cfg.recording_s
    hours = file_s / 3600 if cfg.dry_run else cfg.hours
    if cfg.layout == "collar":
        table = write_archive(
            cfg.out, hours, cfg.seed, cfg.sample_rate_hz, file_s, cfg.format, cfg.calls
        )
    else:  # bats: files of 0.5 s to file_s, about 2.2 s on average
        mean_s = file_s if cfg.layout == "season" else (file_s - 0.5) / math.log(file_s / 0.5)
        table = write_season(cfg, 1 if cfg.dry_run else max(1, round(hours * 3600 / mean_s)))
    n_files = table.attrs["n_files"]
    print(
        f"synth: wrote {n_files} recordings ({hours:g} h, layout {cfg.layout}) and {len(table)} "
        f"events to {redact_uri(cfg.out)}"
    )
    print(
        f"synth: annotations at {redact_uri(storage.join(cfg.out, 'annotations.csv'))}; classes: "
        f"{sorted(table['label'].unique())}"
    )
    return table


@command
def main(argv: list[str] | None = None) -> None:
    ap = parser("a2v synth", __doc__)
    add_fields(ap, SynthJob, "one recording")
    run(tool_config(SynthJob, ap.parse_args(argv)))


if __name__ == "__main__":
    main()
