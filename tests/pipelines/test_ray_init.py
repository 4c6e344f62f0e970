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


def test_a_local_ray_answers_the_state_api_about_itself(ray_session):
    """Ray Train's placement-group cleaner asks the State API whether the run's controller
    lives. A local Ray without its dashboard could not answer (a warning every second), and
    with another Ray on the machine (here the session's) the question went to that one, which
    does not know the controller: the cleaner removed the workers' placement group and the
    training died (seen: a few-shot benchmark's pretraining, killed at step 80 by a bystander)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "STATE ALIVE" in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]
