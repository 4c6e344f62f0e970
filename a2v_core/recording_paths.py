"""Which recording of an archive a name in an annotation table means.

A recording is its path relative to the archive root; recorder names (``20240601_203000.WAV``)
repeat in every site and night folder, so a base name alone names a recording only when it is
unique. A name from a table is matched by path segments, from the end:

- a candidate is a file with the same base name (or, for an Audacity track named after its
  recording, the same base name without extension) whose relative path and the name agree on
  every segment the shorter of the two has: a Raven ``Begin Path`` from the labeller's machine
  (``D:\\season\\site2\\night1\\rec.wav``) ends with ``site2/night1/rec.wav``; a name
  ``rec.wav`` fits every ``*/rec.wav``; ``/old/site3/rec.wav`` never fits ``site1/rec.wav``
  (another site's row, not this archive's);
- of several candidates the one sharing the most trailing segments wins;
- still several: the table's own place qualifies the name: the one candidate whose folders
  hold the folder the table sits in, else its file name up to the first dot, as consecutive
  segments (``site2/Table.1.selections.txt`` or ``site2.selections.txt`` make ``rec.wav``
  mean ``site2/rec.wav``, or ``site2/night1/rec.wav`` if that is the only one in site2);
- still several: ambiguous (the caller stops and says how to fix it).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

#: a Windows drive (``C:``) or UNC host at the start of a path: never an archive folder
_DRIVE = re.compile(r"^[A-Za-z]:$")


def segments(name: str) -> list[str]:
    """The path segments of a name from any machine: ``\\`` and ``/`` separate, drive letters,
    ``.`` and empty segments are dropped."""
    parts = [p for p in str(name).replace("\\", "/").split("/") if p not in ("", ".")]
    return parts[1:] if parts and _DRIVE.match(parts[0]) else parts


def _stem(base: str) -> str:
    return base.rsplit(".", 1)[0]


def _shared_tail(a: list[str], b: list[str]) -> int:
    """How many trailing segments ``a`` and ``b`` share (the last compared without extension
    when one of them has none)."""
    n = 0
    for x, y in zip(reversed(a), reversed(b), strict=False):
        if x != y and not (n == 0 and ("." not in x or "." not in y) and _stem(x) == _stem(y)):
            break
        n += 1
    return n


def _holds(folders: list[str], hint: list[str]) -> bool:
    """Whether ``hint`` is a run of consecutive segments of ``folders``."""
    n = len(hint)
    return any(folders[i : i + n] == hint for i in range(len(folders) - n + 1))


@dataclass(frozen=True)
class Match:
    """Where a name landed: ``file`` (one recording), or ``candidates`` (several, ambiguous),
    or neither (not in the archive)."""

    file: str | None
    candidates: tuple[str, ...] = ()


class RecordingIndex:
    """The archive's relative paths, indexed by base name and by base name without extension."""

    def __init__(self, files: list[str]) -> None:
        self.by_name: dict[str, list[str]] = defaultdict(list)
        self.by_stem: dict[str, list[str]] = defaultdict(list)
        for rel in files:
            base = rel.rsplit("/", 1)[-1]
            self.by_name[base].append(rel)
            self.by_stem[_stem(base)].append(rel)

    def fitting(self, segs: list[str]) -> list[tuple[int, str]]:
        """(shared trailing segments, path) of every file that fits ``segs`` (see module)."""
        if not segs:
            return []
        base = segs[-1]
        found = self.by_name.get(base) or self.by_stem.get(base) or []
        out = []
        for rel in found:
            parts = rel.split("/")
            shared = _shared_tail(segs, parts)
            if shared == min(len(segs), len(parts)):
                out.append((shared, rel))
        return out

    def best(self, segs: list[str]) -> list[str]:
        """The fitting files sharing the most trailing segments with ``segs``."""
        fits = self.fitting(segs)
        top = max((n for n, _ in fits), default=0)
        return sorted(rel for n, rel in fits if n == top)

    def match(self, name: str, table_hints: tuple[list[str], ...] = ()) -> Match:
        """The recording ``name`` means; ``table_hints``: segment lists that qualify a name
        from this table (its folder, its file name's stem), tried in order when the name
        alone fits several files."""
        segs = segments(name)
        found = self.best(segs)
        if len(found) <= 1:
            return Match(found[0] if found else None)
        for hint in table_hints:
            if not hint:
                continue
            narrowed = [f for f in found if _holds(f.split("/")[:-1], hint)]
            if len(narrowed) == 1:
                return Match(narrowed[0])
        return Match(None, tuple(found))


def table_hints(source: str) -> tuple[list[str], ...]:
    """What a table's own place says of the recordings it names: ``source`` is the table's
    path relative to the annotations folder (or its file name). -> (its folder's segments,
    [its file name up to the first dot])."""
    segs = segments(source)
    if not segs:
        return ()
    folder = segs[:-1]
    stem = segs[-1].split(".", 1)[0]
    return tuple(h for h in (folder, [stem] if stem else []) if h)
