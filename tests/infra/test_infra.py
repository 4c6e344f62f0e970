"""Cluster infrastructure: every manifest parses and validates (Kubernetes schema for core
objects, the KubeRay CRD fields for RayCluster/RayJob, Ray's own schema for the cluster
launcher), every entry point resolves to a real module, flags and config file, and the
Dockerfile installs the project with the README's command."""

from __future__ import annotations

import copy
import importlib.util
import re
import shlex
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.infra.kuberay_schema import SCHEMAS

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
K8S_VERSION = "1.31.0"
YAMLS = sorted(p for p in INFRA.rglob("*.y*ml"))
K8S_FILES = sorted((INFRA / "kuberay").glob("*.yaml")) + sorted((INFRA / "mlflow").glob("*.yaml"))


def docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def all_objects() -> list[tuple[str, dict]]:
    return [(f"{p.relative_to(ROOT)}#{i}", d) for p in K8S_FILES for i, d in enumerate(docs(p))]


def pod_templates(obj: dict) -> list[dict]:
    spec = obj["spec"]
    cluster = spec.get("rayClusterSpec", spec) if obj["kind"] == "RayJob" else spec
    groups = [cluster["headGroupSpec"], *cluster.get("workerGroupSpecs", [])]
    return [g["template"] for g in groups]


def test_there_is_something_to_check():
    kinds = {d["kind"] for _, d in all_objects()}
    assert {"RayCluster", "RayJob", "ConfigMap", "Secret", "Deployment", "Service"} <= kinds
    assert len([1 for _, d in all_objects() if d["kind"] == "RayJob"]) == 3


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: str(p.relative_to(INFRA)))
def test_every_yaml_parses(path):
    assert docs(path)


@pytest.mark.parametrize("name, obj", all_objects(), ids=[n for n, _ in all_objects()])
def test_kubernetes_objects_validate(name, obj):
    if obj["kind"] in SCHEMAS:
        jsonschema.validate(obj, SCHEMAS[obj["kind"]])
        for tpl in pod_templates(obj):
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "x"},
                "spec": tpl["spec"],
            }
            kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    else:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_the_validators_reject_mistakes():
    """The checks above can fail: a typo'd KubeRay field, a bad pod field, a bad Service."""
    cluster = next(d for _, d in all_objects() if d["kind"] == "RayCluster")
    bad = copy.deepcopy(cluster)
    bad["spec"]["workerGroupSpecs"][0]["minReplica"] = 1
    with pytest.raises(jsonschema.ValidationError, match="minReplica"):
        jsonschema.validate(bad, SCHEMAS["RayCluster"])
    bad = copy.deepcopy(cluster)
    bad["spec"]["workerGroupSpecs"][0]["replicas"] = "two"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, SCHEMAS["RayCluster"])
    job = next(d for _, d in all_objects() if d["kind"] == "RayJob")
    bad = copy.deepcopy(job)
    bad["spec"]["shutdownAfterJobsFinish"] = True
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, SCHEMAS["RayJob"])
    tpl = copy.deepcopy(pod_templates(cluster)[0])
    tpl["spec"]["containers"][0]["imagePullPolice"] = "Always"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": tpl["spec"]}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


def test_ray_objects_use_token_auth_and_the_pinned_ray():
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    ray_pin = next(re.search(r"==([\d.]+)", p).group(1) for p in pins if p.startswith("ray["))
    for name, obj in all_objects():
        if obj["kind"] not in SCHEMAS:
            continue
        cluster = obj["spec"].get("rayClusterSpec", obj["spec"])
        assert cluster["rayVersion"] == ray_pin, name
        assert cluster["authOptions"]["mode"] == "token", name
        for tpl in pod_templates(obj):
            env_from = tpl["spec"]["containers"][0]["envFrom"]
            assert {"configMapRef": {"name": "a2v-config"}} in env_from, name
            assert {"secretRef": {"name": "a2v-s3"}} in env_from, name
        if obj["kind"] == "RayJob":
            assert obj["spec"]["shutdownAfterJobFinishes"] is True, name


def test_cluster_launcher_passes_rays_own_validation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = yaml.safe_load((INFRA / "cluster/aws.yaml").read_text())
    validate_config(prepare_config(copy.deepcopy(cfg)))
    cfg["available_node_types"]["gpu_worker"]["min_worker"] = 1
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(cfg))


# ----------------------------------------------------------------------------- entry points


def entry_points() -> list[tuple[str, list[str]]]:
    """Every ``python -m MODULE ...`` command in the manifests, the launcher, the README and
    docs/."""
    found = []
    for _, obj in all_objects():
        if obj["kind"] == "RayJob":
            found.append(("manifest " + obj["metadata"]["name"], obj["spec"]["entrypoint"]))
    texts = {
        "infra/cluster/aws.yaml": (INFRA / "cluster/aws.yaml").read_text(),
        "README.md": (ROOT / "README.md").read_text(),
        **{f"docs/{p.name}": p.read_text() for p in sorted((ROOT / "docs").glob("*.md"))},
    }
    for where, text in texts.items():
        joined = re.sub(r"\\\n\s*#?\s*", " ", text)  # shell line continuations
        for m in re.finditer(r"python -m [a-z_]\w*(?:\.[a-z_]\w*)*(?=[\s`]|$)[^\n`|;]*", joined):
            found.append((where, m.group(0)))
    out = []
    for where, cmd in found:
        argv = shlex.split(cmd.split("#")[0])
        out.append((where, argv[argv.index("-m") + 1 :]))
    return out


def _help(module: str, cache: dict = {}) -> str:  # noqa: B006 - a per-session cache
    if module not in cache:
        res = subprocess.run(
            [sys.executable, "-m", module, "--help"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert res.returncode == 0, res.stderr
        cache[module] = res.stdout
    return cache[module]


def test_every_entry_point_resolves_to_a_module_its_flags_and_a_config():
    from a2v_core.config import JOBS
    from a2v_core.config_loader import load_config
    from tune.space import load_sweep

    points = entry_points()
    assert len([p for p in points if p[0].startswith("manifest")]) == 3
    assert any(w == "infra/cluster/aws.yaml" for w, _ in points)
    with ThreadPoolExecutor(4) as pool:  # every --help is a fresh process: several at once
        list(
            pool.map(
                _help, sorted({argv[0] for _, argv in points if importlib.util.find_spec(argv[0])})
            )
        )
    for where, argv in points:
        module, args = argv[0], argv[1:]
        assert importlib.util.find_spec(module) is not None, f"{where}: no module {module}"
        help_text = _help(module)
        for flag in (a.split("=")[0] for a in args if a.startswith("--")):
            assert flag in help_text, f"{where}: {module} has no flag {flag}"
        if "--config" in args:
            config = ROOT / args[args.index("--config") + 1]
            assert config.is_file(), f"{where}: {config} does not exist"
            if module in ("tune.sweep", "pipelines.tune"):
                load_sweep(config)
            else:
                load_config(JOBS[module.rsplit(".", 1)[-1]], config)


# ----------------------------------------------------------------------------- Dockerfile


def test_dockerfile_installs_with_the_readme_command_as_non_root():
    text = (INFRA / "docker/Dockerfile").read_text()
    runs = [
        ln.removeprefix("RUN ").strip()
        for ln in text.splitlines()
        if ln.startswith("RUN pip install")
    ]
    project_install = [r for r in runs if r.endswith(" .")]
    assert project_install, runs
    readme_lines = {ln.strip() for ln in (ROOT / "README.md").read_text().splitlines()}
    assert project_install[-1] in readme_lines, f"README lacks '{project_install[-1]}'"
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    torch_pin = next(p for p in pins if p.startswith("torch=="))
    assert f"{torch_pin} --index-url" in text  # the CUDA / CPU build of the same version
    users = [ln.split()[1] for ln in text.splitlines() if ln.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    froms = [ln.split()[1] for ln in text.splitlines() if ln.startswith("FROM ")]
    assert any(f.startswith("nvidia/cuda:") and "runtime" in f for f in froms)
    assert any(f.startswith("python:3.11") for f in froms)
    image_py = re.search(r"python3\.11 -m venv", text)
    assert image_py, "the image's venv must be Python 3.11"
