"""A labelled archive split by groups of recordings into a training and a test archive, for the
benchmarks that train on one part and score on the other (``bench/fewshot.py``,
``bench/probe.py``, ``bench/rates.py``); without a labelled archive, two synthetic ones.

The test part is every recording whose path (relative to the archive) matches ``--test-files``
(a regular expression: a day, a site, a recorder), so no test recording, and no other stretch
of one, is pretrained or fine-tuned on. The two parts are copied to ``<out>/train`` and
``<out>/test``, each with the ``annotations.csv`` of its recordings (a training run reads a
whole archive). ``<out>/split.json`` records what was split how; a second call with the same
inputs reuses the copy, one with other inputs is refused (the runs under ``<out>`` belong to
the first split).
"""

from __future__ import annotations

import json
import re

from a2v_core.config import DataConfig
from a2v_core.errors import InputError
from pipelines.data import inputs, storage
from pipelines.synth import write_archive


def group_split(
    archive: str,
    annotations: str,
    test_files: str,
    out: str,
    drop_labels: tuple[str, ...] = (),
) -> tuple[str, str]:
    """-> (train archive URI, test archive URI) under ``out``; see the module docstring.
    ``drop_labels``: annotation labels left out of both parts (e.g. unlabelled noise)."""
    files = [rel for rel, _ in inputs.archive_files(archive, DataConfig().extensions)]
    pattern = re.compile(test_files)
    test = sorted(f for f in files if pattern.search(f))
    train = sorted(f for f in files if f not in set(test))
    if not test or not train:
        raise InputError(
            f"--test-files {test_files!r} matches {len(test)} of the {len(files)} recordings: "
            "both parts need at least one"
        )
    record = {
        "archive": archive,
        "annotations": annotations,
        "test_files": test_files,
        "drop_labels": sorted(drop_labels),
        "train": train,
        "test": test,
    }
    record_uri = storage.join(out, "split.json")
    train_uri, test_uri = storage.join(out, "train"), storage.join(out, "test")
    if storage.exists(record_uri):
        held = json.loads(storage.read_bytes(record_uri))
        if held != record:
            raise InputError(
                f"{out} holds a split of {held['archive']} by {held['test_files']!r}; "
                "use another --out for another split"
            )
        if storage.exists(storage.join(test_uri, "annotations.csv")):
            return train_uri, test_uri
    table = inputs.match_annotations(
        inputs.read_annotations(annotations), files, annotations, archive
    )
    table = table[~table["label"].astype(str).isin(drop_labels)]
    storage.write_bytes(record_uri, json.dumps(record, indent=1).encode())
    for part_uri, part in ((train_uri, train), (test_uri, test)):
        for rel in part:
            storage.write_bytes(
                storage.join(part_uri, rel), storage.read_bytes(storage.join(archive, rel))
            )
        rows = table[table["file"].isin(part)]
        csv = rows[["file", "onset_s", "offset_s", "label"]].to_csv(index=False)
        storage.write_bytes(storage.join(part_uri, "annotations.csv"), csv.encode())
    return train_uri, test_uri


def bench_parts(
    out: str,
    archive: str | None,
    annotations: str | None,
    test_files: str | None,
    drop_labels: str = "",
    synth: tuple[float, float, int] = (0.5, 0.1, 2024),
) -> tuple[str, str]:
    """(train, test) archives under ``out``: ``archive``'s group split (``drop_labels`` a comma
    list), or, without one, a synthetic archive and a held-out one (``synth``: hours, held-out
    hours, seed; the held-out one with seed + 1), written once."""
    if archive:
        drop = tuple(x for x in drop_labels.split(",") if x)
        return group_split(archive, annotations, test_files, out, drop)
    hours, test_hours, seed = synth
    train, test = storage.join(out, "archive"), storage.join(out, "archive_test")
    if not storage.exists(storage.join(test, "annotations.csv")):
        print(f"== synth {hours} h (seed {seed}) + {test_hours} h held out")
        write_archive(train, hours, seed=seed)
        write_archive(test, test_hours, seed=seed + 1)
    return train, test
