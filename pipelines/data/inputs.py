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
from a2v_core.recording_paths import RecordingIndex, table_hints
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


def listed_files(archive: str, extensions: list[str], manifest: str | None) -> list[tuple]:
    """(relative path, size, version) of the archive's audio files: from ``manifest`` (``a2v
    manifest``'s Parquet of this archive) when given, else listed."""
    if manifest:
        from pipelines.manifest import read_listing

        files = read_listing(manifest, archive, extensions)
        if not files:
            raise InputError(f"--manifest {redact_uri(manifest)}: lists no audio files")
        return files
    return archive_files(archive, extensions, versions=True)


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
    """The canonical table of an annotation file or folder, each row with its ``source``: the
    table's path relative to ``uri`` (a folder) or its file name, which ``match_annotations``
    reads as the table's own place. InputError names the file."""
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
        sources = [(storage.join(uri, rel), rel) for rel in names]
    else:
        sources = [(uri, uri.rstrip("/").rsplit("/", 1)[-1])]
    tables = []
    for source, rel in sources:
        try:
            table = ann.read_any(storage.read_bytes(source), source)
        except ValueError as err:
            raise InputError(f"--annotations {err}") from None
        tables.append(table.assign(source=rel))
    return pd.concat(tables, ignore_index=True) if tables else ann.empty_table()


def match_annotations(
    table: pd.DataFrame, archive_files: list[str], uri: str, archive: str
) -> pd.DataFrame:
    """The rows whose recording is in the archive, ``file`` set to its path relative to the
    archive (``a2v_core.recording_paths``: by path suffix, qualified by the table's own folder
    or name). A name that fits several recordings is an InputError naming the table, its
    first rows and the fix; names in no recording are counted and listed, one warning line per
    table; none at all is an InputError. The kept table's ``attrs["unmatched"]`` holds, per
    table, the rows and recordings left out (for the run record)."""
    index = RecordingIndex(archive_files)
    sources = table["source"] if "source" in table.columns else pd.Series(uri, index=table.index)
    mapping: dict[tuple[str, str], str | None] = {}
    ambiguous: dict[str, list[tuple[str, tuple[str, ...]]]] = defaultdict(list)
    for (source, name), _ in table.groupby([sources, table["file"]], sort=True):
        found = index.match(name, table_hints(source))
        mapping[(source, name)] = found.file
        if found.candidates:
            ambiguous[source].append((name, found.candidates))
    if ambiguous:
        raise InputError(ambiguity_message(uri, ambiguous))
    keys = list(zip(sources, table["file"], strict=True))
    files = pd.Series([mapping[k] for k in keys], index=table.index, dtype=object)
    unmatched = unmatched_by_table(table, sources, files)
    if files.isna().all():
        names = sorted({n for rows in unmatched.values() for n in rows["recordings"]})
        raise InputError(
            f"--annotations {uri}: none of its {len(names)} recordings is in the archive "
            f"{archive}; first 10: {names[:10]}"
        )
    for source, miss in unmatched.items():
        print(
            f"[annotations] warning: {source}: {miss['rows']} rows name "
            f"{len(miss['recordings'])} recordings not in {archive} (first 10: "
            f"{miss['recordings'][:10]}); those rows are not used"
        )
    kept = table[files.notna()].assign(file=files[files.notna()].astype(str))
    kept = kept.drop(columns=["source"], errors="ignore").reset_index(drop=True)
    kept.attrs["unmatched"] = unmatched
    return kept


def unmatched_by_table(table: pd.DataFrame, sources: pd.Series, files: pd.Series) -> dict:
    """Per table: rows whose recording is not in the archive, and those recordings' names."""
    out = {}
    miss = files.isna()
    for source, rows in table[miss].groupby(sources[miss], sort=True):
        out[str(source)] = {"rows": len(rows), "recordings": sorted(set(rows["file"]))}
    return out


def ambiguity_message(uri: str, ambiguous: dict[str, list]) -> str:
    """One line: which table, its first ambiguous names and their candidates, and the fix."""
    source, rows = next(iter(sorted(ambiguous.items())))
    shown = "; ".join(f"{name} -> {list(c[:3])}" for name, c in rows[:3])
    more = sum(len(r) for r in ambiguous.values())
    return (
        f"--annotations {uri}: {more} recording names fit several files of the archive "
        f"(names repeat across folders), e.g. in table {source}: {shown}. Fix: give each row "
        "its path relative to the archive (or a Raven 'Begin Path' that ends with it), or put "
        "each folder's table in a folder of the same name (site2/....selections.txt), or name "
        "the table after its folder (site2.selections.txt)"
    )
