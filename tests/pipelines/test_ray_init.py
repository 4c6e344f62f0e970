"""init_ray's local Ray: what a laptop user gets without a cluster."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import ray
from pipelines.runtime.ray_init import init_ray

init_ray()


@ray.remote(num_cpus=0)
class Probe:
    def own_state(self):
        # what Ray Train's placement-group cleaner asks every second: is this actor alive?
        from ray.util.state import get_actor

        found = get_actor(ray.get_runtime_context().get_actor_id(), timeout=20)
        return found.state if found else "not found"


print("STATE", ray.get(Probe.remote().own_state.remote()))
"""


def run_script(script: str, *unset: str) -> subprocess.CompletedProcess:
    """``script`` in a fresh Python that starts its own local Ray (no RAY_ADDRESS, nor
    ``unset``)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", *unset)}
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )


def test_a_local_ray_answers_the_state_api_about_itself(ray_session):
    """Ray Train's placement-group cleaner asks the State API whether the run's controller
    lives. A local Ray without its dashboard could not answer (a warning every second), and
    with another Ray on the machine (here the session's) the question went to that one, which
    does not know the controller: the cleaner removed the workers' placement group and the
    training died (seen: a few-shot benchmark's pretraining, killed at step 80 by a bystander)."""
    out = run_script(PROBE)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "STATE ALIVE" in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]


QUIET = """
import glob, os, tempfile
import ray, ray.data, ray.train
from ray.train.torch import TorchTrainer
from pipelines.runtime import quiet_logs
from pipelines.runtime.ray_init import init_ray

init_ray()
ray.data.range(8).map_batches(lambda b: b).take_all()  # a dataset run by the driver


@ray.remote
def in_a_worker():  # and one run inside a worker process of the job
    return len(ray.data.range(8).map_batches(lambda b: b).take_all())


print("[probe] worker rows", ray.get(in_a_worker.remote()), flush=True)


def loop():
    ray.train.report({"x": 1.0})


TorchTrainer(
    loop,
    scaling_config=ray.train.ScalingConfig(num_workers=1),
    run_config=ray.train.RunConfig(
        storage_path=tempfile.mkdtemp(),
        logging_config=ray.train.LoggingConfig(log_level=quiet_logs.train_log_level()),
    ),
).fit()
session = ray._private.worker._global_node.get_session_dir_path()
print("[probe] SESSION", session, flush=True)
ray.shutdown()
"""

#: Ray's own INFO lines (Ray Data plans and timings, Ray Train's worker-group and report lines)
RAY_INTERNALS = (
    "Execution plan of Dataset",
    "execution finished in",
    "Starting execution of Dataset",
    "Reporting training result",
    "Attempting to start training worker group",
)


def test_a_jobs_log_shows_our_lines_and_rays_internals_stay_in_rays_files(ray_session):
    """A job's console: our lines, warnings and errors. Ray Data's per-dataset lines, in the
    driver and in every worker process (Ray Data configures its logger again in each task),
    and Ray Train's INFO lines leave it; Ray Data's still reach its log file. ``--verbose``
    (A2V_VERBOSE=1) gives Ray's lines back (checked on the settings it switches)."""
    from pipelines.runtime import quiet_logs

    out = run_script(QUIET, quiet_logs.VERBOSE_ENV, quiet_logs.RAY_DATA_CONFIG_ENV)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-3000:]
    assert "[probe] worker rows 8" in log
    shown = [line for line in RAY_INTERNALS if line in log]
    assert not shown, (shown, log[-3000:])
    session = log.split("[probe] SESSION ")[1].split()[0]
    kept = "".join(p.read_text() for p in Path(session, "logs/ray-data").glob("ray-data*.log"))
    assert "Execution plan of Dataset" in kept
    os.environ[quiet_logs.VERBOSE_ENV] = "1"
    try:
        assert quiet_logs.runtime_env() == {} and quiet_logs.train_log_level() == "INFO"
    finally:
        del os.environ[quiet_logs.VERBOSE_ENV]
    assert quiet_logs.runtime_env() and quiet_logs.train_log_level() == "WARNING"
