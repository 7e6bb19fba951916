"""deploy/kuberay/rayservice.yaml: structurally valid for KubeRay's ray.io/v1 RayService, the same
Serve app as configs/prod.yaml, secrets only from the songsmith-secrets Secret, an HF-cache PVC.

No KubeRay CRD schema ships in any installed package, so the CRD's shape is checked field by field
(allowed keys catch typos such as `maxReplica`). With KUBERAY_CRD_PATH pointing at KubeRay's
`ray.io_rayservices.yaml`, the RayService is also validated against its openAPIV3Schema.
"""

from __future__ import annotations

import os
from pathlib import Path

import jsonschema
import pytest
import yaml

import ray
from deployments.config import PRODUCTION_COVER, PRODUCTION_LLM, PRODUCTION_MUSIC
from serve_app.args import AppArgs
from tests.unit.test_cluster_config import CUDA_ASSERT, find_secret_literals, run_cuda_check

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "deploy/kuberay/rayservice.yaml"
PROD = REPO / "configs/prod.yaml"
SECRET_NAME = "songsmith-secrets"
PVC_NAME = "songsmith-hf-cache"
SECRET_ENV = {
    "API_BEARER_TOKEN",
    "R2_BUCKET_NAME",
    "R2_ENDPOINT_URL",
    "R2_ACCESS_KEY_ID",
    "R2_SECRET_ACCESS_KEY",
    "STORAGE_SIGNING_SECRET",
    "WEBHOOK_SIGNING_SECRET",
    "JOBS_DATABASE_URL",
    "HF_TOKEN",
    "RAY_AUTH_TOKEN",
}

# ray.io/v1 field names (KubeRay >= 1.1): anything else is a typo the API server would drop or reject.
SPEC_KEYS = {
    "serveConfigV2",
    "rayClusterConfig",
    "upgradeStrategy",
    "serveService",
    "excludeHeadPodFromServeSvc",
    "deploymentUnhealthySecondThreshold",
    "serviceUnhealthySecondThreshold",
    "rayClusterDeletionDelaySeconds",
}
CLUSTER_KEYS = {
    "rayVersion",
    "enableInTreeAutoscaling",
    "autoscalerOptions",
    "headGroupSpec",
    "workerGroupSpecs",
    "headServiceAnnotations",
    "gcsFaultToleranceOptions",
    "suspend",
    "managedBy",
}
HEAD_KEYS = {"rayStartParams", "template", "serviceType", "headService", "enableIngress"}
WORKER_KEYS = {
    "groupName",
    "replicas",
    "minReplicas",
    "maxReplicas",
    "rayStartParams",
    "template",
    "numOfHosts",
    "scaleStrategy",
    "suspend",
    "idleTimeoutSeconds",
}
AUTOSCALER_KEYS = {"upscalingMode", "idleTimeoutSeconds", "image", "imagePullPolicy", "resources", "env", "envFrom",
                   "securityContext", "volumeMounts", "version"}


@pytest.fixture(scope="module")
def docs() -> list[dict]:
    return [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]


@pytest.fixture(scope="module")
def rayservice(docs) -> dict:
    (rs,) = [d for d in docs if d.get("kind") == "RayService"]
    return rs


@pytest.fixture(scope="module")
def serve_config(rayservice) -> dict:
    return yaml.safe_load(rayservice["spec"]["serveConfigV2"])


def _groups(rayservice: dict) -> list[tuple[str, dict]]:
    cluster = rayservice["spec"]["rayClusterConfig"]
    return [("head", cluster["headGroupSpec"])] + [(g["groupName"], g) for g in cluster["workerGroupSpecs"]]


def _containers(group: dict) -> list[dict]:
    return group["template"]["spec"]["containers"]


# ---------------------------------------------------------------- the RayService object


def test_kinds_and_api_versions(docs, rayservice):
    kinds = {(d["apiVersion"], d["kind"]) for d in docs}
    assert kinds == {("ray.io/v1", "RayService"), ("v1", "PersistentVolumeClaim"), ("batch/v1", "Job")}
    for d in docs:
        assert d["metadata"]["name"].startswith("songsmith")
    assert rayservice["metadata"]["name"] == "songsmith"


def test_only_known_fields(rayservice):
    spec = rayservice["spec"]
    assert set(spec) <= SPEC_KEYS, set(spec) - SPEC_KEYS
    cluster = spec["rayClusterConfig"]
    assert set(cluster) <= CLUSTER_KEYS, set(cluster) - CLUSTER_KEYS
    assert set(cluster["headGroupSpec"]) <= HEAD_KEYS
    assert set(cluster.get("autoscalerOptions", {})) <= AUTOSCALER_KEYS
    for group in cluster["workerGroupSpecs"]:
        assert set(group) <= WORKER_KEYS, set(group) - WORKER_KEYS
    assert spec["upgradeStrategy"]["type"] in {"NewCluster", "None", "NewClusterWithIncrementalUpgrade"}
    assert cluster["autoscalerOptions"]["upscalingMode"] in {"Default", "Aggressive", "Conservative"}


def test_cluster_runs_this_ray(rayservice):
    assert rayservice["spec"]["rayClusterConfig"]["rayVersion"] == ray.__version__
    assert rayservice["spec"]["rayClusterConfig"]["enableInTreeAutoscaling"] is True


def test_ray_start_params_are_strings(rayservice):
    """The CRD types rayStartParams as map[string]string: a bare 0 or 8080 is rejected."""
    for name, group in _groups(rayservice):
        params = group.get("rayStartParams", {})
        assert all(isinstance(v, str) for v in params.values()), (name, params)
        assert params.get("metrics-export-port") == "8080", name
    head = rayservice["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"]
    assert head["dashboard-host"] == "0.0.0.0"  # the operator submits serveConfigV2 through it


def test_worker_groups_scale_sanely_with_whole_gpus(rayservice):
    workers = rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    assert workers and len({g["groupName"] for g in workers}) == len(workers)
    for group in workers:
        for key in ("replicas", "minReplicas", "maxReplicas"):
            assert type(group[key]) is int, (group["groupName"], key)
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        (container,) = _containers(group)
        res = container["resources"]
        gpus = res["limits"]["nvidia.com/gpu"]
        assert type(gpus) is int and gpus >= 1, "GPU counts must be whole integers"
        assert res["requests"]["nvidia.com/gpu"] == gpus  # extended resources: requests == limits
        assert res["requests"]["cpu"] == res["limits"]["cpu"]


def test_prod_gpu_budget_fits_one_worker_pod(rayservice, serve_config):
    args = serve_config["applications"][0]["args"]
    gpus = sum(args[m]["deployment"].get("num_gpus", 0) for m in ("llm", "music", "cover"))
    cpus = sum(args[m]["deployment"].get("num_cpus", 1) for m in ("llm", "music", "cover"))
    (group,) = rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    limits = _containers(group)[0]["resources"]["limits"]
    assert gpus <= limits["nvidia.com/gpu"] and cpus + args["ingress"]["deployment"]["num_cpus"] <= int(limits["cpu"])


# ---------------------------------------------------------------- the embedded Serve config


def test_serve_config_v2_is_the_prod_app(serve_config):
    from ray.serve.schema import ServeDeploySchema

    ServeDeploySchema.model_validate(serve_config)  # what the operator sends to `serve deploy`
    (app,) = serve_config["applications"]
    assert app["import_path"] == "serve_app.app:build_app"
    args = AppArgs.model_validate(app["args"])
    assert (args.llm.engine.model, args.music.engine.model, args.cover.engine.model) == (
        PRODUCTION_LLM,
        PRODUCTION_MUSIC,
        PRODUCTION_COVER,
    )
    for role in ("llm", "music", "cover"):
        assert getattr(args, role).deployment.num_gpus > 0


def test_serve_config_v2_matches_configs_prod_yaml(serve_config):
    regenerate = (
        "the manifest's serveConfigV2 drifted from configs/prod.yaml: paste configs/prod.yaml from "
        "`proxy_location:` on into serveConfigV2 (indented 4 spaces)"
    )
    assert serve_config == yaml.safe_load(PROD.read_text()), regenerate


# ---------------------------------------------------------------- secrets, cache, weights job


def test_secrets_only_from_the_kubernetes_secret(docs, rayservice):
    assert find_secret_literals(MANIFEST.read_text()) == []
    for name, group in _groups(rayservice):
        for container in _containers(group):
            refs = [e["secretRef"]["name"] for e in container.get("envFrom", []) if "secretRef" in e]
            assert refs == [SECRET_NAME], (name, container["name"])
    for d in docs:
        for container in _all_containers(d):
            for env in container.get("env", []):
                assert env["name"] not in SECRET_ENV or "valueFrom" in env, (container["name"], env["name"])


def _all_containers(doc: dict) -> list[dict]:
    if doc["kind"] == "Job":
        return doc["spec"]["template"]["spec"]["containers"]
    if doc["kind"] == "RayService":
        return [c for _, g in _groups(doc) for c in _containers(g) + g["template"]["spec"].get("initContainers", [])]
    return []


def _env(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def test_gpu_workers_and_the_weights_job_share_the_hf_cache(docs, rayservice):
    (pvc,) = [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    assert pvc["metadata"]["name"] == PVC_NAME and "ReadWriteMany" in pvc["spec"]["accessModes"]
    (job,) = [d for d in docs if d["kind"] == "Job"]
    pods = [("job", job["spec"]["template"]["spec"])] + [
        (g["groupName"], g["template"]["spec"]) for g in rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    ]
    for name, pod in pods:
        volumes = {v["name"]: v for v in pod["volumes"]}
        (container,) = pod["containers"]
        home = _env(container)["HF_HOME"]
        mount = next(m for m in container["volumeMounts"] if m["mountPath"] == home)
        assert volumes[mount["name"]]["persistentVolumeClaim"]["claimName"] == PVC_NAME, name
    job_cmd = " ".join(job["spec"]["template"]["spec"]["containers"][0]["args"])
    assert "python -m deployments.weights download --config configs/prod.yaml" in job_cmd
    job_container = job["spec"]["template"]["spec"]["containers"][0]
    assert _env(job_container)["HF_HUB_OFFLINE"] == "0"
    # Least privilege: the download Job sees HF_TOKEN only, not the app's storage/API secrets.
    assert "envFrom" not in job_container
    (token,) = [e for e in job_container["env"] if e["name"] == "HF_TOKEN"]
    assert token["valueFrom"]["secretKeyRef"] == {"name": SECRET_NAME, "key": "HF_TOKEN", "optional": True}


def test_images_are_one_placeholder_to_replace(docs):
    images = {c["image"] for d in docs for c in _all_containers(d)}
    assert len(images) == 1  # the comment at the top says to set it in every `image:` field


# ---------------------------------------------------------------- optional: KubeRay's own CRD


@pytest.mark.skipif(not os.environ.get("KUBERAY_CRD_PATH"), reason="set KUBERAY_CRD_PATH=.../ray.io_rayservices.yaml")
def test_rayservice_validates_against_the_kuberay_crd(rayservice):
    crd = yaml.safe_load(Path(os.environ["KUBERAY_CRD_PATH"]).read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = version["schema"]["openAPIV3Schema"]
    jsonschema.Draft7Validator(schema).validate(rayservice)  # x-kubernetes-* keywords are ignored


# ---------------------------------------------------------------- GPU pods: CUDA check, accelerator type, shm, shutdown


def _quantity_bytes(q: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    for suffix, factor in units.items():
        if str(q).endswith(suffix):
            return int(float(str(q)[: -len(suffix)]) * factor)
    return int(q)


def test_upgrade_strategy_says_it_needs_kuberay_1_3():
    text = MANIFEST.read_text()
    assert "upgradeStrategy" in text and "KubeRay >= 1.3" in text
    assert "KubeRay >= 1.1)" not in text


def test_gpu_pods_check_torch_sees_cuda_before_ray_starts(rayservice, tmp_path):
    for group in rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"]:
        pod = group["template"]["spec"]
        (check,) = [c for c in pod.get("initContainers", []) if CUDA_ASSERT in " ".join(c.get("command", []))]
        assert check["image"] == pod["containers"][0]["image"]  # the same torch as the Ray container
        for kind in ("requests", "limits"):  # the init container sees the pod's GPU only if it asks for it
            assert check["resources"][kind]["nvidia.com/gpu"] == pod["containers"][0]["resources"][kind]["nvidia.com/gpu"]
        assert check["command"][:2] == ["python", "-c"]
        assert "envFrom" not in check  # needs no secret
        proc = run_cuda_check(check["command"][2], tmp_path, fake_cuda=False)
        assert proc.returncode != 0 and "torch.cuda.is_available() is False" in proc.stderr
        assert run_cuda_check(check["command"][2], tmp_path, fake_cuda=True).returncode == 0


def test_gpu_group_offers_the_accelerator_type_prod_asks_for(rayservice, serve_config):
    """Ray's KubeRay autoscaler knows a group's resources only from rayStartParams and pod limits: the
    `accelerator_type: H100` the prod replicas ask for must be declared there, or they never scale up."""
    from ray.autoscaler._private.kuberay.autoscaling_config import _get_ray_resources_from_group_spec

    args = serve_config["applications"][0]["args"]
    asked = {args[m]["deployment"]["accelerator_type"] for m in ("llm", "music", "cover")}
    assert asked == {"H100"}
    for group in rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"]:
        resources = _get_ray_resources_from_group_spec(group, is_head=False)
        assert resources["GPU"] >= 1 and all(resources.get(f"accelerator_type:{a}") == 1 for a in asked), resources
        assert "H100" in group["template"]["spec"]["nodeSelector"]["nvidia.com/gpu.product"]


def test_object_store_fits_dev_shm_in_every_pod(rayservice):
    """Ray puts the object store in /dev/shm only if /dev/shm >= its size (else it refuses to start, or
    falls back to slow disk); a memory-backed /dev/shm counts against the container's memory limit."""
    for name, group in _groups(rayservice):
        store = group["rayStartParams"].get("object-store-memory")
        assert store is not None and store.isdigit(), (name, "set object-store-memory explicitly (bytes)")
        pod = group["template"]["spec"]
        (container,) = pod["containers"]
        shm_mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/dev/shm")
        shm = next(v for v in pod["volumes"] if v["name"] == shm_mount["name"])["emptyDir"]
        assert shm["medium"] == "Memory"
        shm_bytes, store_bytes = _quantity_bytes(shm["sizeLimit"]), int(store)
        assert store_bytes <= shm_bytes, (name, store_bytes, shm_bytes)
        assert shm_bytes <= _quantity_bytes(container["resources"]["limits"]["memory"]) / 4, name


def test_gpu_pods_outlive_serves_graceful_shutdown(rayservice, serve_config):
    args = serve_config["applications"][0]["args"]
    model_stop = max(args[m]["deployment"]["graceful_shutdown_timeout_s"] for m in ("llm", "music", "cover"))
    ingress = args["ingress"]["deployment"]["graceful_shutdown_timeout_s"]
    assert ingress >= args["jobs"]["drain_timeout_s"]  # the ingress lets its songs drain before it stops
    for group in rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"]:
        grace = group["template"]["spec"]["terminationGracePeriodSeconds"]
        assert type(grace) is int and grace > model_stop + ingress, (grace, model_stop, ingress)
