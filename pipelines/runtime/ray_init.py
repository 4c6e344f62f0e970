"""Connecting a driver to Ray: the one place every job starts or joins a cluster."""

from __future__ import annotations

import os

import ray
import ray.data


def init_ray(address: str | None = None) -> None:
    """Connect to ``address`` (``auto`` = the cluster started with ``ray start`` here) or to
    $RAY_ADDRESS (``ray job submit`` sets it); otherwise start a fresh local Ray. Never
    attach implicitly to whatever cluster file a previous session left in /tmp/ray."""
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # Train V2 turns a worker's print() into a log record on stderr and, as Ray wraps the
    # worker's stdout, prints it to stdout as well: every worker line reached the driver
    # twice. Plain print: once. (Ray Train propagates the variable to its workers.)
    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
    target = address or os.environ.get("RAY_ADDRESS") or None
    if target:
        ray.init(address=target, log_to_driver=True)
    else:
        # With the dashboard comes the State API: Ray Train's placement-group cleaner asks it
        # every second whether the run's controller lives, and without it logged a warning each
        # time (thousands of lines in an hour's run). ~1 s more start-up; the URL is printed.
        ray.init(address="local", include_dashboard=True, log_to_driver=True)
    # Our jobs print their own progress lines / bars; Ray Data's per-operator bars in every
    # worker drown them out.
    ray.data.DataContext.get_current().enable_progress_bars = False
