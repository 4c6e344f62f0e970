"""The one config loader: defaults -> YAML -> ``--set group.key=value`` overrides.

Every validation failure becomes a ``ConfigError`` that names the key and what is allowed
(unknown keys list the allowed ones), raised before any work starts. Also the resolved-config
YAML written beside every run and the flattened form logged as MLflow params.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from a2v_core.errors import InputError
from a2v_core.redact import redact_tree


class ConfigError(InputError):
    """A config key or value was rejected; the message names the key and what is allowed."""


def _set_dotted(tree: dict[str, Any], dotted: str, raw_value: str) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: '{key}' is not a group")
        node = child
    node[keys[-1]] = yaml.safe_load(raw_value) if raw_value != "" else None


def parse_overrides(overrides: list[str] | None) -> list[tuple[str, str]]:
    pairs = []
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set expects group.key=value, got '{item}'")
        key, value = item.split("=", 1)
        pairs.append((key.strip(), value.strip()))
    return pairs


def rejected(err: ValidationError) -> list[tuple[list[str], dict, str]]:
    """(location, pydantic's error, " (got VALUE)" or "") per rejected value: the one reading
    of a validation error, which each caller spells its way (config keys, command flags)."""
    out = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"] if not str(p).startswith("function-")]
        got = e.get("input")
        # a check over a whole group or job has the whole tree as its input: not printed
        shown = "" if isinstance(got, (dict, BaseModel)) else f" (got {got!r})"
        out.append((loc, e, shown))
    return out


def _format_error(job: type[BaseModel], err: ValidationError) -> str:
    lines = []
    for loc, e, shown in rejected(err):
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            allowed = _allowed_keys(job, loc[:-1])
            msg = f"unknown key; allowed keys here: {', '.join(allowed)}"
        lines.append(f"  {'.'.join(loc) or '<config>'}: {msg}{shown}")
    return "invalid config:\n" + "\n".join(lines)


def _allowed_keys(job: type[BaseModel], path: list[str]) -> list[str]:
    model: Any = job
    for key in path:
        field = model.model_fields.get(key)
        if field is None or not isinstance(field.annotation, type):
            return []
        model = field.annotation
    return sorted(model.model_fields) if hasattr(model, "model_fields") else []


def build_config(
    job: type[BaseModel], tree: dict[str, Any], overrides: list[str] | None = None
) -> Any:
    """Validate a raw dict (+ ``--set`` overrides) into ``job``, any pydantic model (a job's
    config, a sweep's)."""
    tree = dict(tree or {})
    for key, value in parse_overrides(overrides):
        _set_dotted(tree, key, value)
    try:
        return job.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_format_error(job, err)) from None


def load_config(
    job: type[BaseModel], path: str | Path | None, overrides: list[str] | None = None
) -> Any:
    """defaults -> YAML file -> ``--set`` overrides, validated; raises ConfigError."""
    tree: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        tree = yaml.safe_load(p.read_text()) or {}
        if not isinstance(tree, dict):
            raise ConfigError(f"{p}: top level must be a mapping of groups")
    return build_config(job, tree, overrides)


def to_yaml(cfg: BaseModel) -> str:
    """The resolved config as YAML (written next to every run's outputs and into every
    checkpoint), with credentials redacted (``a2v_core.redact``)."""
    return yaml.safe_dump(redact_tree(cfg.model_dump(mode="json")), sort_keys=False)


def flatten(cfg: BaseModel | dict[str, Any]) -> dict[str, Any]:
    """group.key -> value, for MLflow params (a config, or its dumped dict)."""
    out: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            out[prefix] = node

    walk("", cfg.model_dump(mode="json") if isinstance(cfg, BaseModel) else cfg)
    return out


def field_docs(job_cls: type[BaseModel]) -> list[tuple[str, str, Any, str]]:
    """(key as --set spells it, type, default, description) of every field of a job."""
    rows = []

    def walk(cls: type[BaseModel], prefix: str) -> None:
        for name, f in cls.model_fields.items():
            ann = f.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, f"{prefix}{name}.")
                continue
            # no default: a model field its size and rate presets fill
            default = "(preset)" if f.is_required() else f.get_default(call_default_factory=True)
            kind = ann.__name__ if isinstance(ann, type) else str(ann).replace("typing.", "")
            rows.append((prefix + name, kind, default, f.description or ""))

    walk(job_cls, "")
    return rows
