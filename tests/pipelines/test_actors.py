"""Every GPU busy by default: label and embed start one model actor per GPU the cluster has,
else as many as its CPUs hold; --num-actors still decides when given."""

from __future__ import annotations

from a2v_core.config import EmbedJob, LabelJob
from pipelines.inference.archive_pass import actor_count, actor_gpus

BIG = 10 * 2**40  # a season's 10 TB of files to do


def actors(job, resources: dict[str, float], todo_bytes: int = BIG) -> tuple[int, float, str]:
    gpus = actor_gpus(job, resources)
    why = actor_count(job, resources, todo_bytes)
    return job.cluster.num_actors, gpus, why


def test_one_actor_per_gpu_and_the_cpus_filled_without_a_gpu():
    assert actors(LabelJob(), {"CPU": 48.0, "GPU": 3.0})[:2] == (3, 1.0)  # 3 nodes x 1 GPU
    n, gpus, why = actors(EmbedJob(), {"CPU": 128.0, "GPU": 8.0})
    assert (n, gpus) == (8, 1.0) and "8 GPUs" in why
    half = LabelJob.model_validate({"cluster": {"gpus_per_actor": 0.5}})
    assert actors(half, {"CPU": 16.0, "GPU": 2.0})[:2] == (4, 0.5)  # two actors share a GPU
    cpu = LabelJob.model_validate({"cluster": {"cpus_per_worker": 2.0}})
    n, gpus, why = actors(cpu, {"CPU": 16.0})
    assert (n, gpus) == (7, 0.0) and "one left for reading" in why
    assert actors(LabelJob(), {"CPU": 2.0})[:2] == (1, 0.0)  # a laptop: one actor, one reader
    assert actors(LabelJob(), {"CPU": 1.0})[:2] == (1, 0.0)


def test_a_small_archive_is_not_worth_an_actor_per_core():
    n, _, why = actors(LabelJob(), {"CPU": 16.0}, todo_bytes=12 * 2**20)
    assert n == 1 and "1 for 12 MB to do" in why
    assert actors(LabelJob(), {"CPU": 16.0}, todo_bytes=200 * 2**20)[0] == 4


def test_the_users_count_wins():
    job = LabelJob.model_validate({"cluster": {"num_actors": 2, "gpus_per_actor": 0}})
    assert actors(job, {"CPU": 64.0, "GPU": 8.0}) == (2, 0.0, "--num-actors")
