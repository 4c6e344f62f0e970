"""init_ray's local Ray: what a laptop user gets without a cluster."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
from pipelines.runtime.ray_init import init_ray
init_ray()
import ray
from ray.util.state import list_nodes
print("NODES", len(list_nodes(address=ray.get_runtime_context().gcs_address)))
"""


@pytest.mark.slow
def test_a_local_ray_answers_the_state_api():
    """Ray Train's placement-group cleaner asks the State API whether a run's controller lives;
    a local Ray without the dashboard could not answer, and every check logged a warning."""
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
    assert "NODES 1" in out.stdout
