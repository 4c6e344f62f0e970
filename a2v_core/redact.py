"""One redaction rule for everything a job writes (config.yaml in run folders and checkpoints,
run.json, MLflow params, tags and artifacts, log lines): ``scheme://user:password@host``
becomes ``scheme://***@host`` and values under secret-looking keys become ``***``."""

from __future__ import annotations

import re
from typing import Any

SECRET_KEY = re.compile(r"(secret|password|passwd|token|credential|access_key|api_key)", re.I)
_USERINFO = re.compile(r"(\w+://)[^/@\s]+@")
MASK = "***"


def redact_uri(text: str) -> str:
    """``scheme://user:password@host`` -> ``scheme://***@host`` (anywhere in ``text``)."""
    return _USERINFO.sub(rf"\1{MASK}@", text)


def redact_tree(value: Any, key: str = "") -> Any:
    """A copy of a config/summary tree (dicts, lists, scalars) that is safe to write."""
    if SECRET_KEY.search(key) and value not in (None, "", {}, []):
        return MASK
    if isinstance(value, dict):
        return {k: redact_tree(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_tree(v) for v in value]
    if isinstance(value, str):
        return redact_uri(value)
    return value


def drop_masked(value: Any) -> Any:
    """A tree read back from a redacted file with every masked value set to None (so that
    the live value, from a flag or the environment, is resolved again instead)."""
    if isinstance(value, dict):
        return {k: drop_masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [drop_masked(v) for v in value]
    if isinstance(value, str) and (value == MASK or f"://{MASK}@" in value):
        return None
    return value
