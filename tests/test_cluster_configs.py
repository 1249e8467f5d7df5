"""The cluster configs in orchestrator/clusters/: valid for Ray's launcher and KubeRay's CRDs,
with the two autoscaling groups, placement resources, idle timeouts and token auth."""
from __future__ import annotations

import copy
import json
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import ray.autoscaler
import yaml

from datasets.placement import CPU_NODE_RESOURCE
from tests.conftest import REPO_ROOT
from tests.kuberay_crd import SCHEMAS

CLUSTERS = REPO_ROOT / "orchestrator" / "clusters"
LAUNCHER = ["aws.yaml", "gcp.yaml"]
RAY_SCHEMA = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
RAY_PIN = re.search(r'"ray\[[^]]*\]==([\d.]+)"', (REPO_ROOT / "pyproject.toml").read_text()).group(1)
CREDENTIALS = re.compile(r"AKIA[0-9A-Z]{16}|BEGIN [A-Z ]*PRIVATE KEY|aws_secret_access_key|"
                         r"password\s*[:=]|\"private_key\"|auth_token\s*[:=]\s*['\"]?[0-9a-f]{16}", re.I)


def launcher(name: str) -> dict:
    return yaml.safe_load((CLUSTERS / name).read_text())


def kuberay(name: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all((CLUSTERS / "kuberay" / name).read_text()) if doc]


@pytest.mark.parametrize("name", LAUNCHER)
def test_launcher_configs_validate_against_rays_own_schema(name):
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = launcher(name)
    jsonschema.validate(config, RAY_SCHEMA)
    validate_config(prepare_config(copy.deepcopy(config)))  # Ray's checks after its defaults


def test_the_schema_check_catches_a_misspelt_field():
    config = launcher("aws.yaml")
    config["available_node_types"]["gpu_workers"]["min_worker"] = 0
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, RAY_SCHEMA)
    cluster = kuberay("raycluster.yaml")[1]
    cluster["spec"]["workerGroupSpecs"][0]["idleTimeoutSecond"] = 60
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(cluster, SCHEMAS["RayCluster"])


@pytest.mark.parametrize("name", LAUNCHER)
def test_launcher_groups_scale_from_zero_and_keep_cpu_work_off_gpu_nodes(name):
    config = launcher(name)
    types = config["available_node_types"]
    head, cpu, gpu = types[config["head_node_type"]], types["cpu_workers"], types["gpu_workers"]
    assert cpu["min_workers"] == 0 and gpu["min_workers"] == 0
    assert cpu["max_workers"] > 0 and gpu["max_workers"] > 0
    assert head["resources"].get(CPU_NODE_RESOURCE) and cpu["resources"].get(CPU_NODE_RESOURCE)
    assert CPU_NODE_RESOURCE not in gpu["resources"] and gpu["resources"]["GPU"] >= 1
    assert "GPU" not in head["resources"] and "GPU" not in cpu["resources"]
    assert 0 < gpu["idle_timeout_s"] <= cpu["idle_timeout_s"] and config["idle_timeout_minutes"] > 0
    # A `paper` trial's Train workers (8 CPUs + 1 GPU each) fit the GPU nodes.
    from orchestrator.config import PRESETS

    paper = PRESETS["paper"]
    per_node = min(gpu["resources"]["GPU"], gpu["resources"]["CPU"] // paper.cpus_per_worker)
    assert per_node >= 1 and per_node * gpu["max_workers"] >= paper.num_workers


@pytest.mark.parametrize("name", LAUNCHER)
def test_launcher_nodes_run_ray_with_token_auth_installed_as_the_readme_does(name):
    config = launcher(name)
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = [c for c in config[key] if "ray start" in c]
        assert start and all("RAY_AUTH_MODE=token" in c for c in start), key
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start and "--autoscaling-config" in head_start
    assert "DSSL_MULTI_NODE=1" in head_start  # sweeps see a cluster that may grow (orchestrator.cluster)
    assert config["file_mounts"]["/home/ubuntu/.ray/auth_token"] == "~/.ray/auth_token"
    assert any("make install" in c for c in config["setup_commands"])
    assert ".venv" in config["rsync_exclude"]
    assert not CREDENTIALS.search((CLUSTERS / name).read_text())


def test_kuberay_manifests_use_only_crd_fields():
    for name in ("raycluster.yaml", "rayjob.yaml"):
        for doc in kuberay(name):
            jsonschema.validate(doc, SCHEMAS[doc["kind"]])
        assert not CREDENTIALS.search((CLUSTERS / "kuberay" / name).read_text())


def _containers(template: dict) -> list[dict]:
    return template["spec"]["containers"]


def _token_env(env: list[dict]) -> bool:
    values = {e["name"]: e for e in env}
    return (values.get("RAY_AUTH_MODE", {}).get("value") == "token"
            and values.get("RAY_AUTH_TOKEN", {}).get("valueFrom", {}).get("secretKeyRef", {}).get("key") == "auth_token")


def test_the_raycluster_autoscales_two_groups_with_token_auth():
    account, cluster = kuberay("raycluster.yaml")
    spec = cluster["spec"]
    assert spec["enableInTreeAutoscaling"] is True and spec["rayVersion"] == RAY_PIN
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    cpu, gpu = groups["cpu-workers"], groups["gpu-workers"]
    for group in (cpu, gpu):
        assert group["replicas"] == group["minReplicas"] == 0 < group["maxReplicas"]
        assert group["idleTimeoutSeconds"] > 0
    assert spec["autoscalerOptions"]["version"] == "v2"  # per-group idle timeouts need v2

    def custom(params: dict) -> dict:
        raw = params.get("resources")
        return json.loads(json.loads(raw)) if raw else {}  # KubeRay's quoted JSON string

    assert custom(spec["headGroupSpec"]["rayStartParams"])[CPU_NODE_RESOURCE] > 0
    assert custom(cpu["rayStartParams"])[CPU_NODE_RESOURCE] > 0
    assert CPU_NODE_RESOURCE not in custom(gpu["rayStartParams"])
    gpu_limits = _containers(gpu["template"])[0]["resources"]["limits"]
    assert int(gpu_limits["nvidia.com/gpu"]) >= 1
    assert "nvidia.com/gpu" not in _containers(cpu["template"])[0]["resources"]["limits"]
    templates = [spec["headGroupSpec"]["template"], cpu["template"], gpu["template"]]
    for template in templates:
        assert template["spec"]["serviceAccountName"] == account["metadata"]["name"]
        assert all(_token_env(c["env"]) for c in _containers(template))
    assert _token_env(spec["autoscalerOptions"]["env"])  # the autoscaler talks to the GCS too
    assert spec["headGroupSpec"]["serviceType"] == "ClusterIP"
    head_env = {e["name"]: e.get("value") for e in _containers(spec["headGroupSpec"]["template"])[0]["env"]}
    assert head_env["DSSL_MULTI_NODE"] == "1"


def test_the_rayjob_runs_a_valid_sweep_on_that_cluster():
    (job,) = kuberay("rayjob.yaml")
    cluster = kuberay("raycluster.yaml")[1]
    spec = job["spec"]
    assert spec["clusterSelector"]["ray.io/cluster"] == cluster["metadata"]["name"]
    assert all(_token_env(c["env"]) for c in _containers(spec["submitterPodTemplate"]))
    assert "MLFLOW_TRACKING_URI" in yaml.safe_load(spec["runtimeEnvYAML"])["env_vars"]
    # The entrypoint parses with the sweep's own command line and gives valid settings.
    argv = shlex.split(spec["entrypoint"])
    assert argv[:2] == ["python", "sweeps/crop_scale.py"]
    from orchestrator.cli import common_parser
    from orchestrator.config import parse_overrides, preset

    args, _ = common_parser("x").parse_known_args(argv[2:])
    assert args.storage_path.startswith(("s3://", "gs://")) and args.name
    trial = preset(args.preset).override(parse_overrides(args.overrides))
    assert trial.use_gpu and trial.data["pretrain"].root == "/data/imagenet"


def test_the_image_installs_the_project_at_the_pinned_ray():
    dockerfile = (CLUSTERS / "Dockerfile").read_text()
    base = re.search(r"ARG RAY_IMAGE=rayproject/ray:([\d.]+)-", dockerfile).group(1)
    assert base == RAY_PIN
    for package in ("orchestrator", "trainables", "datasets", "sweeps"):
        assert f"COPY --chown=ray:users {package} {package}" in dockerfile
    assert "pip install --no-cache-dir -e ." in dockerfile
