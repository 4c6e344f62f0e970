"""User inputs, checked before any Ray work starts and before ``--overwrite`` removes
anything: the archive (at least one audio file), the model (a fine-tuned checkpoint that
loads), and ``--annotations`` (a flat CSV, a Raven selection table or an Audacity label track,
detected by content, or a folder of them) with the recordings they name matched to the
archive. Each failure is an ``InputError`` naming the argument and what was expected."""

from __future__ import annotations

from collections import defaultdict

import pandas as pd

from a2v_core import annotations as ann
from a2v_core.errors import InputError
from a2v_core.redact import redact_uri
from pipelines.data import storage
from pipelines.runtime.run_dir import open_checkpoint

#: files of an annotation folder that are read (others, e.g. a README, are not)
TABLE_EXTENSIONS = ["csv", "txt", "tsv"]


def archive_files(archive: str, extensions: list[str], versions: bool = False) -> list[tuple]:
    """(relative path, size) of the archive's audio files, with ``versions`` also their
    version (``storage.list_versions``); an error if there are none."""
    try:
        files = (storage.list_versions if versions else storage.list_files)(archive, extensions)
    except FileNotFoundError:
        raise InputError(f"--archive {redact_uri(archive)}: not found") from None
    if not files:
        raise InputError(
            f"--archive {redact_uri(archive)}: no audio files "
            f"({', '.join('.' + e for e in extensions)}) there"
        )
    return files


def finetuned_model(uri: str | None) -> tuple[dict, str]:
    """(meta, version) of the fine-tuned checkpoint at ``uri``, which must load; meta gains
    ``band_hz``, the band its model hears (the Sinc filters' low edge at init to Nyquist)."""
    opened = open_checkpoint(uri, ("finetune",))
    return {**opened.meta, "band_hz": list(opened.model.model_cfg.band_hz)}, opened.version


def encoder_model(uri: str | None) -> tuple[dict, dict, str]:
    """(meta, config, version) of a pretraining or fine-tuned checkpoint at ``uri`` whose
    encoder loads (``a2v embed``)."""
    opened = open_checkpoint(uri, ("pretrain", "finetune"))
    return opened.meta, opened.config, opened.version


def read_annotations(uri: str) -> pd.DataFrame:
    """The canonical table of an annotation file or folder; InputError names the file."""
    fs, path = storage.filesystem(uri)
    if not fs.exists(path):
        raise InputError(f"--annotations {uri}: not found")
    if fs.isdir(path):
        names = [rel for rel, _ in storage.list_files(uri, TABLE_EXTENSIONS)]
        if not names:
            raise InputError(
                f"--annotations {uri}: a folder without annotation files "
                f"({', '.join('.' + e for e in TABLE_EXTENSIONS)})"
            )
        sources = [storage.join(uri, rel) for rel in names]
    else:
        sources = [uri]
    tables = []
    for source in sources:
        try:
            tables.append(ann.read_any(storage.read_bytes(source), source))
        except ValueError as err:
            raise InputError(f"--annotations {err}") from None
    return pd.concat(tables, ignore_index=True) if tables else ann.empty_table()


def match_annotations(
    table: pd.DataFrame, archive_files: list[str], uri: str, archive: str
) -> pd.DataFrame:
    """The rows whose recording is in the archive, ``file`` set to its path relative to the
    archive. A name matches a file by its relative path, else by a unique base name (Raven's
    ``Begin File`` holds the base name only), else by a unique base name without extension (an
    Audacity track named after its recording). No match at all is an InputError listing the
    first 10 names; a partial match prints a warning with counts."""
    relative = set(archive_files)
    by_name: dict[str, list[str]] = defaultdict(list)
    by_stem: dict[str, list[str]] = defaultdict(list)
    for rel in archive_files:
        base = rel.rsplit("/", 1)[-1]
        by_name[base].append(rel)
        by_stem[base.rsplit(".", 1)[0]].append(rel)
    mapping: dict[str, str] = {}
    unmatched: list[str] = []
    for name in sorted(set(table["file"])):
        base = name.replace("\\", "/").rsplit("/", 1)[-1]
        found = [name] if name in relative else by_name.get(base) or by_stem.get(base) or []
        if len(found) == 1:
            mapping[name] = found[0]
        else:
            unmatched.append(name if not found else f"{name} (ambiguous: {len(found)} files)")
    if not mapping:
        raise InputError(
            f"--annotations {uri}: none of its {len(unmatched)} recordings is in the archive "
            f"{archive}; first 10: {unmatched[:10]}"
        )
    kept = table[table["file"].isin(mapping)].copy()
    if unmatched:
        print(
            f"[annotations] warning: {len(unmatched)} of {len(unmatched) + len(mapping)} "
            f"recordings in {uri} are not in {archive} (first 10: {unmatched[:10]}); their "
            f"{len(table) - len(kept)} events are ignored"
        )
    kept["file"] = kept["file"].map(mapping)
    return kept.reset_index(drop=True)
