"""Connecting a driver to Ray: the one place every job starts or joins a cluster."""

from __future__ import annotations

import os
import socket

import ray
import ray.data

from pipelines.runtime import quiet_logs


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
    options = {"address": target} if target else local_ray_options()
    quiet = quiet_logs.runtime_env()
    env = {**options.pop("runtime_env", {}), **quiet}
    try:
        ray.init(**options, runtime_env=env or None, log_to_driver=True)
    except ValueError as err:  # the submitted job's runtime env holds its own setup hook
        if "Failed to merge" not in str(err) or not quiet:
            raise
        env = {k: v for k, v in env.items() if k not in quiet}
        ray.init(**options, runtime_env=env or None, log_to_driver=True)
    # Our jobs print their own progress lines / bars; Ray Data's per-operator bars in every
    # worker drown them out, and its per-dataset plans and timings (quiet_logs) too.
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    if not quiet_logs.verbose():
        context.print_on_execution_start = False
        quiet_logs.quiet_driver()


def local_ray_options() -> dict:
    """``ray.init`` options for a fresh local Ray whose workers ask their own State API.

    Ray Train's placement-group cleaner asks the State API every second whether the run's
    controller lives, and a worker finds the State API by looking for Ray on the machine.
    Without a dashboard there is none (a warning every second); with another Ray on the
    machine (a second job, a test run) it asked that one, which does not know the controller,
    and removed the training's placement group: the fit died. So: a dashboard on a port chosen
    here, and RAY_API_SERVER_ADDRESS naming it in every worker (the job's runtime env)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return {
        "address": "local",
        "include_dashboard": True,
        "dashboard_host": "127.0.0.1",
        "dashboard_port": port,
        "runtime_env": {"env_vars": {"RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{port}"}},
    }
