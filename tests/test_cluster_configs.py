"""The cluster configs in orchestrator/clusters/: valid for Ray's launcher and KubeRay's CRDs,
with the two autoscaling groups, placement resources, idle timeouts and token auth; the
launcher nodes run the project's image under autoscaler v2; the KubeRay manifests run as
shipped (every path a RayJob reads is mounted, every service it names is shipped)."""
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
KUBERAY = CLUSTERS / "kuberay"
LAUNCHER = ["aws.yaml", "gcp.yaml"]
DOCKERFILE = (CLUSTERS / "Dockerfile").read_text()
PYPROJECT = (REPO_ROOT / "pyproject.toml").read_text()
RAY_SCHEMA = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
RAY_PIN = re.search(r'"ray\[[^]]*\]==([\d.]+)"', (REPO_ROOT / "pyproject.toml").read_text()).group(1)
CREDENTIALS = re.compile(r"AKIA[0-9A-Z]{16}|BEGIN [A-Z ]*PRIVATE KEY|aws_secret_access_key|"
                         r"password\s*[:=]|\"private_key\"|auth_token\s*[:=]\s*['\"]?[0-9a-f]{16}", re.I)


def launcher(name: str) -> dict:
    return yaml.safe_load((CLUSTERS / name).read_text())


def kuberay(name: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all((KUBERAY / name).read_text()) if doc]


def shipped() -> list[tuple[str, dict]]:
    """Every object of every manifest in kuberay/, with its file's name."""
    return [(path.name, doc) for path in sorted(KUBERAY.glob("*.yaml")) for doc in kuberay(path.name)]


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
def test_launcher_nodes_run_ray_with_token_auth(name):
    config = launcher(name)
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = [c for c in config[key] if "ray start" in c]
        assert start and all("RAY_AUTH_MODE=token" in c for c in start), key
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start and "--autoscaling-config" in head_start
    assert "DSSL_MULTI_NODE=1" in head_start  # sweeps see a cluster that may grow (orchestrator.cluster)
    assert config["file_mounts"] == {"~/.ray/auth_token": "~/.ray/auth_token"}  # into the container's home
    assert not CREDENTIALS.search((CLUSTERS / name).read_text())


# A command that installs the project (or anything) with pip or the Makefile.
INSTALLS = re.compile(r"\bpip3?\s+install\b|\bmake\s+install\b|setup\.py|\buv\s+pip\b")


def _commands(config: dict) -> list[str]:
    keys = ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
            "head_start_ray_commands", "worker_start_ray_commands")
    commands = [c for key in keys for c in config.get(key, [])]
    for node_type in config["available_node_types"].values():
        commands += node_type.get("initialization_commands", []) + node_type.get("worker_setup_commands", [])
    return commands


@pytest.mark.parametrize("name", LAUNCHER)
def test_launcher_nodes_run_the_projects_image_and_install_nothing_at_boot(name):
    config = launcher(name)
    installs = [c for c in _commands(config) if INSTALLS.search(c)]
    assert not installs, f"{name}: nodes install at boot instead of running the image: {installs}"
    image = config.get("docker", {}).get("image", "")
    assert re.search(r"(^|/)demystify-ssl:", image), f"{name}: no `docker.image` of the project's image"
    assert not any(t.get("docker") for t in config["available_node_types"].values())  # one image everywhere
    # The project comes with the image, not from the laptop's folder.
    assert "." not in config["file_mounts"].values()


@pytest.mark.parametrize("name", LAUNCHER)
def test_launcher_heads_run_autoscaler_v2_for_per_group_idle_timeouts(name):
    config = launcher(name)
    assert any(t.get("idle_timeout_s") for t in config["available_node_types"].values())
    start = [c for c in config["head_start_ray_commands"] if "ray start" in c]
    assert start and all(re.search(r"\bRAY_enable_autoscaler_v2=1\b", c) for c in start), (
        f"{name}: per-group idle_timeout_s needs autoscaler v2 (RAY_enable_autoscaler_v2=1 on the head)")


def test_one_python_version_everywhere():
    spec = re.search(r'requires-python = "([^"]+)"', PYPROJECT).group(1)
    versions = re.fullmatch(r">=3\.(\d+),<3\.(\d+)", spec)
    assert versions and int(versions.group(2)) == int(versions.group(1)) + 1, (
        f"pyproject.toml's requires-python {spec!r} allows more than one Python (3.x)")
    python = f"3{versions.group(1)}"
    assert re.search(rf"ARG RAY_IMAGE=rayproject/ray:[\d.]+-py{python}-", DOCKERFILE), (
        f"Dockerfile's base image is not Python 3.{versions.group(1)}")
    for name in LAUNCHER:
        for tag in re.findall(r"\bpy(3\d+)\b", (CLUSTERS / name).read_text()):
            assert tag == python, f"{name}: names Python py{tag}, pyproject says 3.{versions.group(1)}"


def test_kuberay_manifests_use_only_crd_fields():
    kinds = set()
    for name, doc in shipped():
        assert doc["kind"] in SCHEMAS, f"{name}: no schema for kind {doc['kind']}"
        jsonschema.validate(doc, SCHEMAS[doc["kind"]])
        kinds.add(doc["kind"])
    assert {"RayCluster", "RayJob", "PersistentVolumeClaim", "Deployment", "Service"} <= kinds
    for path in KUBERAY.glob("*.yaml"):
        assert not CREDENTIALS.search(path.read_text()), path.name


def _containers(template: dict) -> list[dict]:
    return template["spec"]["containers"]


def _pod_templates(cluster: dict) -> list[tuple[str, dict]]:
    """(group, pod template) of the head and of each worker group."""
    spec = cluster["spec"]
    return [("head", spec["headGroupSpec"]["template"])] + [
        (group["groupName"], group["template"]) for group in spec["workerGroupSpecs"]]


TOKEN_SECRET = "demystify-ssl-ray-token"


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
    for _, template in _pod_templates(cluster):
        assert template["spec"]["serviceAccountName"] == account["metadata"]["name"]
    assert spec["headGroupSpec"]["serviceType"] == "ClusterIP"
    head_env = {e["name"]: e.get("value") for e in _containers(spec["headGroupSpec"]["template"])[0]["env"]}
    assert head_env["DSSL_MULTI_NODE"] == "1"


def test_the_token_reaches_the_operator_through_auth_options():
    """KubeRay's `authOptions` (v1.6+) gives the token from the Secret to every Ray container,
    the autoscaler, the RayJob submitter and the operator's own dashboard client; a token set
    by hand in the pods' env would reach the pods but not the operator."""
    _, cluster = kuberay("raycluster.yaml")
    assert cluster["spec"].get("authOptions") == {"mode": "token", "secretName": TOKEN_SECRET}, (
        "raycluster.yaml: the token must go through spec.authOptions (mode: token, secretName), "
        "or the operator's dashboard client is refused by the cluster")
    (job,) = kuberay("rayjob.yaml")
    containers = [c for _, t in _pod_templates(cluster) for c in _containers(t)]
    containers += _containers(job["spec"]["submitterPodTemplate"])
    envs = [c.get("env", []) for c in containers] + [cluster["spec"]["autoscalerOptions"].get("env", [])]
    by_hand = {e["name"] for env in envs for e in env} & {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN"}
    assert not by_hand, f"{by_hand} set by hand: authOptions sets them (one way)"


# Keys whose path the sweep writes to (on every node), not only reads.
WRITTEN_KEYS = ("--storage-path", "data_cache", "DSSL_CACHE_DIR")


def _named_values(job: dict, cluster: dict) -> list[tuple[str, str, str]]:
    """(file, key, value) of every value the job's driver and workers see: the entrypoint's
    options and `--set` keys, the runtime environment's variables and the pods' env."""
    spec = job["spec"]
    argv = shlex.split(spec["entrypoint"])
    found = []
    for option, value in zip(argv, argv[1:]):
        if option == "--set" and "=" in value:
            found.append(("rayjob.yaml", *value.split("=", 1)))
        elif option.startswith("--") and not value.startswith("--"):
            found.append(("rayjob.yaml", option, value))
    env_vars = (yaml.safe_load(spec.get("runtimeEnvYAML") or "{}") or {}).get("env_vars", {})
    found += [("rayjob.yaml", key, str(value)) for key, value in env_vars.items()]
    for _, template in _pod_templates(cluster):
        for container in _containers(template):
            found += [("raycluster.yaml", e["name"], e["value"]) for e in container.get("env", []) if "value" in e]
    return found


def mount_problems(job: dict, cluster: dict, claims: dict[str, tuple[str, dict]]) -> list[str]:
    """Each path the job reads or writes that some group of `cluster` does not mount from a
    shipped PersistentVolumeClaim (read-write and ReadWriteMany where the sweep writes)."""
    problems = []
    for where, key, value in _named_values(job, cluster):
        path = value.removeprefix("file://")
        if not path.startswith("/"):
            continue
        written = key.endswith(WRITTEN_KEYS)
        for group, template in _pod_templates(cluster):
            mounts = [m for c in _containers(template)[:1] for m in c.get("volumeMounts", [])
                      if path == m["mountPath"] or path.startswith(m["mountPath"].rstrip("/") + "/")]
            if not mounts:
                problems.append(f"{where}: {key}={path}, but raycluster.yaml's {group} pods mount no volume there")
                continue
            mount = max(mounts, key=lambda m: len(m["mountPath"]))
            volume = {v["name"]: v for v in template["spec"].get("volumes", [])}.get(mount["name"], {})
            claim_name = volume.get("persistentVolumeClaim", {}).get("claimName")
            if claim_name not in claims:
                problems.append(f"{where}: {key}={path} is mounted on raycluster.yaml's {group} pods from "
                                f"{volume or mount['name']}, not a PersistentVolumeClaim a shipped manifest defines")
                continue
            claim_file, claim = claims[claim_name]
            if written and (mount.get("readOnly") or "ReadWriteMany" not in claim["spec"]["accessModes"]):
                problems.append(f"{where}: the sweep writes {key}={path} from every node, but raycluster.yaml's "
                                f"{group} pods mount it read-only or {claim_file}'s {claim_name} is not ReadWriteMany")
    return problems


URL = re.compile(r"\b(https?)://([A-Za-z0-9.-]+)(?::(\d+))?")


def service_problems(job: dict, cluster: dict, docs: list[tuple[str, dict]]) -> list[str]:
    """Each in-cluster service the job names (http URLs) that no shipped Service defines, on
    its port, in front of a shipped Deployment's pods that listen there."""
    services = {d["metadata"]["name"]: (f, d) for f, d in docs if d["kind"] == "Service"}
    deployments = [(f, d) for f, d in docs if d["kind"] == "Deployment"]
    problems = []
    for where, key, value in _named_values(job, cluster):
        for scheme, host, port in URL.findall(value):
            name, _, domain = host.partition(".")
            port = int(port or (443 if scheme == "https" else 80))
            if name not in services:
                problems.append(f"{where}: {key} names the service {host}, but no shipped manifest defines "
                                f"a Service {name!r}")
                continue
            service_file, service = services[name]
            namespace = service["metadata"].get("namespace")
            if domain and not (namespace and domain in (namespace, f"{namespace}.svc", f"{namespace}.svc.cluster.local")):
                problems.append(f"{where}: {key} names {host}, but {service_file}'s Service {name} has no namespace "
                                f"there (name it {name!r}: the job runs in the manifests' namespace)")
            ports = {p["port"]: p.get("targetPort", p["port"]) for p in service["spec"]["ports"]}
            if port not in ports:
                problems.append(f"{where}: {key} names port {port} of {name}, but {service_file}'s Service "
                                f"serves {sorted(ports)}")
                continue
            selector = service["spec"].get("selector", {})
            backends = [
                (f, d) for f, d in deployments
                if selector and selector.items() <= d["spec"]["template"].get("metadata", {}).get("labels", {}).items()
                and any(ports[port] in (cp.get("containerPort"), cp.get("name"))
                        for c in _containers(d["spec"]["template"]) for cp in c.get("ports", []))]
            if not backends:
                problems.append(f"{service_file}: Service {name} selects {selector} on port {ports[port]}, which "
                                f"no shipped Deployment's pods carry and listen on")
    return problems


def _job_and_cluster() -> tuple[dict, dict, list[tuple[str, dict]]]:
    docs = shipped()
    (job,) = [d for _, d in docs if d["kind"] == "RayJob"]
    clusters = {d["metadata"]["name"]: d for _, d in docs if d["kind"] == "RayCluster"}
    selector = job["spec"]["clusterSelector"]["ray.io/cluster"]
    assert selector in clusters, f"rayjob.yaml runs on RayCluster {selector!r}, which no shipped manifest defines"
    return job, clusters[selector], docs


def test_every_path_the_rayjob_reads_is_mounted_on_every_group_of_its_cluster():
    job, cluster, docs = _job_and_cluster()
    claims = {d["metadata"]["name"]: (f, d) for f, d in docs if d["kind"] == "PersistentVolumeClaim"}
    problems = mount_problems(job, cluster, claims)
    assert not problems, "\n".join(problems)
    # The data cache is shared and writable on every node, so video sweeps are not refused
    # (orchestrator.cluster.video_cache_problem: an RWX volume is NFS, EFS or Filestore).
    cache = [v for _, k, v in _named_values(job, cluster) if k.endswith(("data_cache", "DSSL_CACHE_DIR"))]
    assert cache and all(c.startswith("/") for c in cache)


def test_every_service_the_rayjob_names_is_shipped():
    job, cluster, docs = _job_and_cluster()
    problems = service_problems(job, cluster, docs)
    assert not problems, "\n".join(problems)


def test_the_mount_and_service_checks_catch_a_missing_volume_and_service():
    job, cluster, docs = _job_and_cluster()
    claims = {d["metadata"]["name"]: (f, d) for f, d in docs if d["kind"] == "PersistentVolumeClaim"}
    bare = copy.deepcopy(cluster)
    for _, template in _pod_templates(bare):
        for container in _containers(template):
            container.pop("volumeMounts", None)
    assert any("/data/aloi" in p and "mount no volume" in p for p in mount_problems(job, bare, claims))
    read_only = copy.deepcopy(claims)
    for _, claim in read_only.values():
        claim["spec"]["accessModes"] = ["ReadOnlyMany"]
    assert any("not ReadWriteMany" in p for p in mount_problems(job, cluster, read_only))
    no_service = [(f, d) for f, d in docs if d["kind"] != "Service"]
    assert any("no shipped manifest defines" in p for p in service_problems(job, cluster, no_service))
    elsewhere = copy.deepcopy(job)
    elsewhere["spec"]["runtimeEnvYAML"] = "env_vars:\n  MLFLOW_TRACKING_URI: http://mlflow:8080\n"
    assert any("port 8080" in p for p in service_problems(elsewhere, cluster, docs))


def test_the_rayjob_runs_a_valid_sweep_on_that_cluster():
    (job,) = kuberay("rayjob.yaml")
    cluster = kuberay("raycluster.yaml")[1]
    spec = job["spec"]
    assert spec["clusterSelector"]["ray.io/cluster"] == cluster["metadata"]["name"]
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
    base = re.search(r"ARG RAY_IMAGE=rayproject/ray:([\d.]+)-", DOCKERFILE).group(1)
    assert base == RAY_PIN
    for package in ("orchestrator", "trainables", "datasets", "sweeps"):
        assert f"COPY --chown=ray:users {package} {package}" in DOCKERFILE
    # The commit it was built from, where git cannot say it (.git stays out): a required
    # build argument, the variable runs are tagged from (orchestrator.tracking.source.git_commit).
    from orchestrator.tracking.source import GIT_COMMIT_ENV_VAR

    assert ".git" in (CLUSTERS / "Dockerfile.dockerignore").read_text().split()
    assert f"ENV {GIT_COMMIT_ENV_VAR}=${{GIT_COMMIT}}" in DOCKERFILE
    assert 'test -n "${GIT_COMMIT}"' in DOCKERFILE
    assert "--build-arg GIT_COMMIT=$(git rev-parse HEAD)" in (REPO_ROOT / "README.md").read_text()
    # With the `server` extra: the MLflow Deployment runs basic auth on PostgreSQL.
    assert 'pip install --no-cache-dir -e ".[server]"' in DOCKERFILE
    assert re.search(r'"mlflow\[auth\]==[\d.]+"', PYPROJECT) and re.search(r'"psycopg2-binary==[\d.]+"', PYPROJECT)


def test_the_mlflow_deployment_runs_the_projects_server_with_basic_auth_behind_a_service():
    docs = dict(((d["kind"], d["metadata"]["name"]), d) for _, d in shipped())
    deployment, service = docs[("Deployment", "mlflow")], docs[("Service", "mlflow")]
    (container,) = _containers(deployment["spec"]["template"])
    assert container["command"] == ["python", "-m", "orchestrator.mlflow_server"]
    args = container["args"]
    assert service["spec"]["type"] == "ClusterIP"
    env = {e["name"]: e for e in container["env"]}
    for name in ("MLFLOW_BACKEND_STORE_URI", "PGPASSWORD", "MLFLOW_AUTH_ADMIN_PASSWORD"):
        assert "secretKeyRef" in env[name]["valueFrom"], name  # from the Secret, never in the file
    # The server's own command line takes the arguments (Kubernetes fills in $(VAR) from env).
    from orchestrator.mlflow_server import command_line, server_command

    filled = [a.replace("$(MLFLOW_BACKEND_STORE_URI)", "postgresql://mlflow@db:5432/mlflow").replace("$(POD_IP)", "10.1.2.3")
              for a in args]
    assert filled != args
    parsed = command_line().parse_args(filled)
    command = server_command(parsed.host, parsed.port, parsed.backend_store_uri, parsed.artifacts_destination,
                             parsed.workers, parsed.folder, parsed.allowed_hosts, parsed.basic_auth)
    assert command[command.index("--app-name") + 1] == "basic-auth"
    assert command[command.index("--host") + 1] == "10.1.2.3"  # the pod's address (downward API)
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    # The Ray pods sign in as the admin the server creates.
    _, cluster = kuberay("raycluster.yaml")
    for group, template in _pod_templates(cluster):
        pod_env = {e["name"]: e for e in _containers(template)[0]["env"]}
        assert pod_env["MLFLOW_TRACKING_PASSWORD"]["valueFrom"] == env["MLFLOW_AUTH_ADMIN_PASSWORD"]["valueFrom"], group
