"""A job's places, pinned on the driver before any of it reaches a worker: every local path
made absolute (workers run in another directory, or on another node) and the MLflow tracking
URI and experiment the driver resolved (a worker's working directory and environment differ)."""

from __future__ import annotations

from a2v_core.config import JOBS
from a2v_core.errors import InputError
from pipelines.data.storage import absolute
from pipelines.runtime.tracking import experiment_name, tracking_uri

#: (group or None for the job itself, key) of every path a job config may hold
PLACES = (
    ("data", "archive"),
    ("data", "annotations"),
    ("run", "storage_path"),
    (None, "pretrained"),
    (None, "model"),
    (None, "out"),
)


def pin_paths(job) -> None:
    """In place: absolute local paths, the resolved tracking URI. A URI of a scheme that is
    not served is an ``InputError`` naming the key, before any work starts."""
    tracking = getattr(job, "tracking", None)
    if tracking is not None and tracking.enabled:
        tracking.uri = tracking_uri(tracking.uri)
        kind = next((name for name, cls in JOBS.items() if type(job) is cls), None)
        tracking.experiment = experiment_name(tracking.experiment, kind)
    for group, key in PLACES:
        node = job if group is None else getattr(job, group, None)
        value = getattr(node, key, None) if node is not None else None
        if isinstance(value, str) and value:
            try:
                setattr(node, key, absolute(value))
            except ValueError as err:  # a scheme we do not serve: stop before any work
                raise InputError(f"{key}: {err}") from None
