"""cluster.yaml validates offline exactly as `ray up` would, and keeps its production invariants.

Validation follows the Ray 2.60 recipe: jsonschema Draft 7 against `ray/autoscaler/ray-schema.json`
from the installed wheel, then `prepare_config` (merges the provider's defaults.yaml) and
`validate_config`. For `provider.type: aws` neither needs boto3 nor the network (the AWS calls
happen later, in `ray up`'s bootstrap); a subprocess test proves it with boto3 and sockets blocked.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import jsonschema
import pytest
import yaml

import ray
import ray.autoscaler
from ray.autoscaler._private.util import prepare_config, validate_config

REPO = Path(__file__).resolve().parents[2]
CLUSTER_YAML = REPO / "cluster.yaml"
SCHEMA_PATH = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
COMMAND_KEYS = (
    "initialization_commands",
    "setup_commands",
    "head_setup_commands",
    "worker_setup_commands",
    "head_start_ray_commands",
    "worker_start_ray_commands",
)
GPU_TYPES = ("gpu_l40s", "gpu_h100")
HF_CACHE = "/mnt/hf-cache"
ENV_FILE = "~/.songsmith/env.prod"


# ---------------------------------------------------------------- helpers shared with other tests

_SECRET_KEY_RE = re.compile(
    r"(?i)\b[\w.-]*(secret|passw(or)?d|token|access[_-]?key|api[_-]?key|private[_-]?key|credential)s?[\w.-]*"
    r"\s*[:=]\s*[\"']?(?P<value>[^\s\"'#,}]+)"
)
# `...`, `<value>`, `${VAR}`, an env var's NAME (token_env: API_BEARER_TOKEN), paths, booleans.
_PLACEHOLDER_RE = re.compile(
    r"^(\.\.\.|<.*>|\$\{?\w+\}?|\*+|[xX]+|changeme|none|null|true|false|~?/.*|[A-Z][A-Z0-9_]*)$"
)


_WORDY_RE = re.compile(r"[a-z]+|[A-Z]+|[A-Z][a-z]+|\w{1,4}")


def _entropy(s: str) -> float:
    counts = Counter(s)
    return -sum(c / len(s) * math.log2(c / len(s)) for c in counts.values())


def find_secret_literals(text: str) -> list[str]:
    """Secret-looking literals: AWS key ids, `*secret*/*token*/*key*: <value>`, long random blobs."""
    hits = [f"AWS access key id {m.group(0)}" for m in re.finditer(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b", text)]
    for m in _SECRET_KEY_RE.finditer(text):
        value = m.group("value")
        if len(value) >= 8 and not _PLACEHOLDER_RE.match(value) and not value.endswith(("_secret", "_token")):
            if re.fullmatch(r"[A-Za-z0-9+/=_\-]{8,}", value) and not re.fullmatch(r"[a-z_\-]+", value):
                hits.append(f"{m.group(0).strip()!r}")
    for m in re.finditer(r"[A-Za-z0-9+/=_\-]{32,}", text):
        blob = m.group(0)
        mixed = re.search(r"[a-z]", blob) and re.search(r"[A-Z]", blob) and re.search(r"\d", blob)
        # Model ids and paths are made of words ("ACE-Step/acestep-v15-xl-turbo"); keys are not.
        unwordy = sum(len(seg) for seg in re.split(r"[/+=_\-.]", blob) if not _WORDY_RE.fullmatch(seg))
        if (mixed and unwordy >= 20 and _entropy(blob) > 4.0) or re.fullmatch(r"[0-9a-f]{32,}", blob):
            hits.append(f"random-looking blob {blob[:12]}...")
    return hits


def load_cluster(path: Path = CLUSTER_YAML) -> dict:
    return yaml.safe_load(path.read_text())


def ray_validate(config: dict) -> dict:
    """What `ray up` does before touching AWS; returns the prepared config."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def node_type_problems(config: dict) -> list[str]:
    """Invariants Ray's schema does not check (per-type min <= max) or this project needs."""
    problems = []
    types = config["available_node_types"]
    for name, node in types.items():
        for key, value in node.get("resources", {}).items():
            if type(value) is not int or value < 0:
                problems.append(f"{name}.resources.{key} = {value!r} is not a non-negative integer")
        lo, hi = node.get("min_workers", 0), node.get("max_workers", config.get("max_workers", 0))
        if lo > hi:
            problems.append(f"{name}: min_workers {lo} > max_workers {hi}")
        if hi > config.get("max_workers", 0):
            problems.append(f"{name}: max_workers {hi} > global max_workers {config.get('max_workers')}")
    return problems


@pytest.fixture(scope="module")
def cluster() -> dict:
    return load_cluster()


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


# ---------------------------------------------------------------- the Ray validation chain


def test_schema_ships_with_ray_and_is_draft7(schema):
    assert schema["$schema"].startswith("http://json-schema.org/draft-07/")
    jsonschema.Draft7Validator.check_schema(schema)


def test_cluster_yaml_passes_ray_schema_draft7(cluster, schema):
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(cluster), key=str)
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_prepare_then_validate_config(cluster):
    prepared = ray_validate(cluster)
    assert prepared["cluster_name"] == "songsmith"
    assert prepared["provider"]["type"] == "aws" and prepared["provider"]["region"] == "us-east-1"
    assert prepared["provider"]["cache_stopped_nodes"] is True
    assert prepared["head_node_type"] in prepared["available_node_types"]
    assert set(GPU_TYPES) <= set(prepared["available_node_types"])
    # prepare_config merged the common setup commands in front of the head/worker ones.
    assert prepared["worker_setup_commands"][: len(cluster["setup_commands"])] == cluster["setup_commands"]
    assert prepared["head_setup_commands"][: len(cluster["setup_commands"])] == cluster["setup_commands"]


def test_validation_needs_neither_boto3_nor_network(tmp_path):
    """prepare_config/validate_config for AWS read only ray's bundled defaults.yaml."""
    script = textwrap.dedent(
        """
        import socket, sys
        sys.modules["boto3"] = None      # `import boto3` now raises ImportError
        sys.modules["botocore"] = None
        def no_network(*args, **kwargs):
            raise AssertionError("network access attempted")
        socket.socket.connect = no_network
        socket.socket.connect_ex = no_network
        socket.create_connection = no_network
        socket.getaddrinfo = no_network
        import yaml
        from ray.autoscaler._private.util import prepare_config, validate_config
        validate_config(prepare_config(yaml.safe_load(open(sys.argv[1]))))
        print("validated offline")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(CLUSTER_YAML)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "validated offline" in proc.stdout


# ---------------------------------------------------------------- node types


def test_node_resources_are_integers_and_bounds_hold(cluster):
    assert node_type_problems(cluster) == []
    prepared = ray_validate(cluster)
    assert node_type_problems(prepared) == []
    assert sum(n.get("min_workers", 0) for n in prepared["available_node_types"].values()) <= prepared["max_workers"]


def test_node_types_fit_the_production_configs(cluster):
    types = cluster["available_node_types"]
    head = types[cluster["head_node_type"]]
    assert head["resources"]["GPU"] == 0 and head["resources"]["CPU"] >= 2
    assert "min_workers" not in head and "max_workers" not in head
    assert types["gpu_l40s"]["node_config"]["InstanceType"] == "g6e.xlarge"
    assert types["gpu_l40s"]["resources"]["accelerator_type:L40S"] == 1
    assert types["gpu_h100"]["resources"]["accelerator_type:H100"] == 1
    # configs/prod.yaml puts all three models (5 CPUs, 0.75 GPU) on one 80 GB GPU.
    prod = yaml.safe_load((REPO / "configs/prod.yaml").read_text())["applications"][0]["args"]
    cpus = sum(prod[m]["deployment"].get("num_cpus", 1) for m in ("llm", "music", "cover"))
    gpus = sum(prod[m]["deployment"].get("num_gpus", 0) for m in ("llm", "music", "cover"))
    h100 = types["gpu_h100"]["resources"]
    assert gpus <= h100["GPU"] and cpus <= h100["CPU"]
    # configs/prod-multi-gpu.yaml: any single whole-GPU replica fits one L40S node.
    multi = yaml.safe_load((REPO / "configs/prod-multi-gpu.yaml").read_text())["applications"][0]["args"]
    l40s = types["gpu_l40s"]["resources"]
    for model in ("llm", "music", "cover"):
        dep = multi[model]["deployment"]
        assert dep.get("num_gpus", 0) <= l40s["GPU"] and dep.get("num_cpus", 1) <= l40s["CPU"]
    for name in GPU_TYPES:
        assert types[name]["resources"]["GPU"] >= 1
        # An explicit AMI: Ray's default DLAMI for us-east-1 ships CUDA 11.2, too old for torch 2.13.
        assert types[name]["node_config"]["ImageId"].startswith("resolve:ssm:/aws/service/deeplearning/")


def test_gpu_types_only_mix_when_deployments_pick_their_gpu(cluster):
    """With two GPU node types open, the autoscaler may place a replica on either: prod.yaml's
    shared-GPU replicas (~60 GB together) would then land on a 48 GB L40S unless they ask for H100."""
    open_types = [t for t in GPU_TYPES if cluster["available_node_types"][t].get("max_workers", 0) > 0]
    assert open_types, "no GPU node type can start"
    if len(open_types) > 1:
        args = yaml.safe_load((REPO / "configs/prod.yaml").read_text())["applications"][0]["args"]
        for model in ("llm", "music", "cover"):
            assert args[model]["deployment"].get("accelerator_type"), f"prod.yaml {model} needs accelerator_type"


def test_gpu_nodes_get_a_separate_hf_cache_volume(cluster):
    for name in GPU_TYPES:
        devices = cluster["available_node_types"][name]["node_config"]["BlockDeviceMappings"]
        names = [d["DeviceName"] for d in devices]
        assert names[0] == "/dev/sda1" and "/dev/sdf" in names, names
        cache = next(d for d in devices if d["DeviceName"] == "/dev/sdf")["Ebs"]
        assert cache["VolumeSize"] >= 100 and cache["VolumeType"] == "gp3" and cache["Encrypted"] is True


# ---------------------------------------------------------------- negative: Ray must reject these


def _broken_copy(tmp_path: Path, old: str, new: str) -> dict:
    text = CLUSTER_YAML.read_text()
    assert text.count(old) == 1, f"fixture text {old!r} not found exactly once"
    path = tmp_path / "cluster-broken.yaml"
    path.write_text(text.replace(old, new))
    return load_cluster(path)


@pytest.mark.parametrize(
    ("old", "new", "error"),
    [
        pytest.param(
            '{"CPU": 4, "GPU": 1, "accelerator_type:L40S": 1}',
            '{"CPU": 4, "GPU": 0.5, "accelerator_type:L40S": 1}',
            "0.5 is not of type 'integer'",
            id="fractional-node-resource",
        ),
        pytest.param(
            "    min_workers: 1\n    max_workers: 4\n",
            "    min_workers: 1\n    max_worker: 4\n",
            "'max_worker' was unexpected",
            id="typo-in-node-type",
        ),
        pytest.param("max_workers: 8 ", "max_worker: 8 ", "'max_worker' was unexpected", id="typo-top-level"),
        pytest.param(
            "    min_workers: 0\n",
            "    min_workers: 0\n    idle_timeout: 60\n",
            "'idle_timeout' was unexpected",
            id="unknown-node-type-field",
        ),
    ],
)
def test_ray_rejects_broken_copies(tmp_path, schema, old, new, error):
    broken = _broken_copy(tmp_path, old, new)
    with pytest.raises(jsonschema.ValidationError, match=re.escape(error)):
        jsonschema.Draft7Validator(schema).validate(broken)
    with pytest.raises(jsonschema.ValidationError, match=re.escape(error)):
        ray_validate(broken)


def test_min_workers_above_global_max_is_rejected(tmp_path):
    broken = _broken_copy(tmp_path, "max_workers: 8 ", "max_workers: 0 ")
    with pytest.raises(ValueError, match="max_workers"):
        ray_validate(broken)


def test_project_checks_catch_what_ray_does_not(cluster):
    bad = copy.deepcopy(cluster)
    bad["available_node_types"]["gpu_l40s"]["min_workers"] = 5
    bad["available_node_types"]["gpu_l40s"]["max_workers"] = 2
    bad["available_node_types"]["gpu_h100"]["resources"]["GPU"] = 1.0  # Draft 7 calls 1.0 an integer
    ray_validate(bad)  # Ray accepts both: per-type min > max and a float resource
    problems = node_type_problems(bad)
    assert any("min_workers 5 > max_workers 2" in p for p in problems), problems
    assert any("gpu_h100.resources.GPU = 1.0" in p for p in problems), problems


# ---------------------------------------------------------------- secrets


def test_no_secret_literals_in_cluster_yaml():
    assert find_secret_literals(CLUSTER_YAML.read_text()) == []


def test_secret_scanner_catches_the_usual_leaks():
    leaks = {
        "aws key id": "aws_access_key_id: AKIAIOSFODNN7EXAMPLE",
        "secret key": "R2_SECRET_ACCESS_KEY=wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY",
        "yaml secret": "secret_access_key: 9f8e7d6c5b4a39281706f5e4d3c2b1a0",
        "bearer token": "API_BEARER_TOKEN=s3cr3tT0kenValue",
        "base64 blob": "blob: 'q83vEjRWeJq83vEjRWeJq83vEjRWeJ4Zk9Xp2LmN7bQ=='",
        "bare aws secret": "value: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "hex secret": "9f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c",
    }
    for what, text in leaks.items():
        assert find_secret_literals(text), what
    for placeholder in (
        "API_BEARER_TOKEN=...",
        "R2_SECRET_ACCESS_KEY: <value>",
        "token_env: API_BEARER_TOKEN",
        "STORAGE_SIGNING_SECRET=${STORAGE_SIGNING_SECRET}",
        "ImageId: resolve:ssm:/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04"
        "/latest/ami-id",
        "model: ACE-Step/acestep-v15-xl-turbo-diffusers",
        "PYTORCH_CUDA_ALLOC_CONF: expandable_segments:True",
    ):
        assert find_secret_literals(placeholder) == [], placeholder


def test_secrets_come_from_an_env_file_outside_the_repo(cluster):
    mounts = cluster["file_mounts"]
    assert mounts["~/songsmith"] == "."
    assert mounts[ENV_FILE] == ENV_FILE  # local ~/.songsmith/env.prod: never inside the synced repo
    for key in ("setup_commands", "head_start_ray_commands", "worker_start_ray_commands"):
        assert any(ENV_FILE in c for c in cluster[key]), key
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = next(c for c in cluster[key] if "ray start" in c)
        assert start.index(f". {ENV_FILE}") < start.index("ray start")  # sourced before Ray starts
        assert "set -a" in start  # exported, so replicas inherit them
    assert "chmod 600 ~/.songsmith/env.prod" in " ".join(cluster["setup_commands"])
    secret_names = (
        "API_BEARER_TOKEN",
        "R2_ACCESS_KEY_ID",
        "R2_SECRET_ACCESS_KEY",
        "STORAGE_SIGNING_SECRET",
        "JOBS_DATABASE_URL",
        "WEBHOOK_SIGNING_SECRET",
        "RAY_AUTH_TOKEN",
    )
    body = yaml.safe_dump({k: v for k, v in cluster.items()})  # the parsed YAML, comments excluded
    for name in secret_names:
        assert name not in body, f"{name} must only appear in comments"


# ---------------------------------------------------------------- commands


def _all_commands(cluster: dict) -> list[tuple[str, str]]:
    out = [(key, cmd) for key in COMMAND_KEYS for cmd in cluster.get(key, [])]
    for name, node in cluster["available_node_types"].items():
        for key in ("initialization_commands", "worker_setup_commands"):
            out += [(f"{name}.{key}", cmd) for cmd in node.get(key, [])]
    return out


def test_every_command_is_valid_bash(cluster):
    for key, cmd in _all_commands(cluster):
        proc = subprocess.run(["bash", "-n", "-c", cmd], capture_output=True, text=True)
        assert proc.returncode == 0, f"{key}: {cmd}\n{proc.stderr}"


def test_setup_installs_cuda_torch_then_the_project_then_the_weights(cluster):
    worker = cluster["worker_setup_commands"]
    head = cluster["head_setup_commands"]

    def index(cmds, needle):
        return next(i for i, c in enumerate(cmds) if needle in c)

    for cmds in (worker, head):
        assert index(cmds, '"torch==2.13.0"') < index(cmds, "-e ~/songsmith")
    assert "download.pytorch.org/whl/cpu" in head[index(head, "torch==")]  # CPU head: no CUDA wheels
    assert "whl/cpu" not in worker[index(worker, "torch==")]  # PyPI's Linux wheel is the CUDA build
    mount, weights = index(worker, "mkfs.ext4"), index(worker, "deployments.weights download")
    assert mount < index(worker, "-e ~/songsmith") < weights
    cmd = worker[weights]
    assert f"HF_HOME={HF_CACHE}" in cmd and "deployments.weights verify --config configs/prod.yaml" in cmd
    assert (REPO / "configs/prod.yaml").is_file() and (REPO / "deployments/weights.py").is_file()
    assert "3.11" in " ".join(cluster["setup_commands"])  # requires-python = ">=3.11,<3.12"


def test_start_commands(cluster):
    head = next(c for c in cluster["head_start_ray_commands"] if "ray start" in c)
    worker = next(c for c in cluster["worker_start_ray_commands"] if "ray start" in c)
    assert "--head" in head and "--autoscaling-config=~/ray_bootstrap_config.yaml" in head
    assert "--dashboard-host=127.0.0.1" in head
    for cmd in (head, worker):
        assert "--metrics-export-port=8080" in cmd
        assert f"HF_HOME={HF_CACHE}" in cmd
    assert "--address=$RAY_HEAD_IP:6379" in worker


def test_repo_sync_skips_build_outputs(cluster):
    excludes = cluster["rsync_exclude"]
    for path in ("/.venv", "/models", "/var", "/.git"):
        assert path in excludes
    # None of the patterns may match the secrets mount (it would silently not sync).
    assert not any(p.strip("/") in ENV_FILE for p in excludes if p.startswith("/"))


def test_cluster_runs_the_ray_of_the_launcher():
    pyproject = (REPO / "pyproject.toml").read_text()
    assert f'"ray[serve]=={ray.__version__}"' in pyproject


# ---------------------------------------------------------------- the HF-cache mount script


def _stub(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/bash\n" + body + "\n")
    path.chmod(0o755)


def _run_mount_script(cluster: dict, tmp_path: Path, disks: dict[str, tuple[str, list[str]]], mounted: bool):
    """Run the worker's mount command against stub lsblk/blkid/sudo/mkfs/mount: nothing real is touched."""
    script = next(c for c in cluster["worker_setup_commands"] if "mkfs.ext4" in c)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "log"
    cases = ["  '-dpno NAME') printf '%s\\n' " + " ".join(disks) + " ;;"]
    for dev, (model, children) in disks.items():
        cases.append(f"  '-dno MODEL {dev}') echo '{model}' ;;")
        cases.append(f"  '-no NAME {dev}') printf '%s\\n' {Path(dev).name} {' '.join(children)} ;;")
    _stub(bin_dir, "lsblk", 'case "$*" in\n' + "\n".join(cases) + "\nesac")
    _stub(bin_dir, "blkid", "exit 0")  # no filesystem on any disk
    _stub(bin_dir, "mountpoint", f"exit {0 if mounted else 1}")
    _stub(bin_dir, "sudo", f'echo "$*" >> {log}\n"$@"')
    for name in ("mkfs.ext4", "udevadm", "mount", "chown", "mkdir"):
        _stub(bin_dir, name, "exit 0")
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=30)
    return proc, (log.read_text().splitlines() if log.exists() else [])


@pytest.mark.skipif(Path("/dev/disk/by-label/hf-cache").exists(), reason="a real hf-cache volume is attached")
def test_mount_script_formats_only_the_blank_ebs_volume(cluster, tmp_path):
    disks = {
        "/dev/nvme0n1": ("Amazon Elastic Block Store", ["nvme0n1p1", "nvme0n1p15"]),  # root, partitioned
        "/dev/nvme1n1": ("Amazon EC2 NVMe Instance Storage", []),  # local NVMe: not persistent
        "/dev/nvme2n1": ("Amazon Elastic Block Store", []),  # the /dev/sdf cache volume
    }
    proc, log = _run_mount_script(cluster, tmp_path, disks, mounted=False)
    assert proc.returncode == 0, proc.stderr
    assert "mkfs.ext4 -q -L hf-cache /dev/nvme2n1" in log
    assert not any("mkfs" in line and ("nvme0n1" in line or "nvme1n1" in line) for line in log)
    assert f"mount -o noatime /dev/disk/by-label/hf-cache {HF_CACHE}" in log
    assert any(line.startswith("chown ") and line.endswith(HF_CACHE) for line in log)


def test_mount_script_fails_loudly_without_a_cache_volume(cluster, tmp_path):
    disks = {
        "/dev/nvme0n1": ("Amazon Elastic Block Store", ["nvme0n1p1"]),
        "/dev/nvme1n1": ("Amazon EC2 NVMe Instance Storage", []),
    }
    proc, log = _run_mount_script(cluster, tmp_path, disks, mounted=False)
    if Path("/dev/disk/by-label/hf-cache").exists():
        pytest.skip("a real hf-cache volume is attached")
    assert proc.returncode != 0
    assert "no blank EBS volume for the HF cache" in proc.stderr
    assert not any("mkfs" in line for line in log)


def test_mount_script_is_idempotent(cluster, tmp_path):
    disks = {"/dev/nvme0n1": ("Amazon Elastic Block Store", ["nvme0n1p1"])}
    proc, log = _run_mount_script(cluster, tmp_path, disks, mounted=True)
    assert proc.returncode == 0, proc.stderr
    assert not any(line.startswith(("mkfs", "mount")) for line in log), log


# ---------------------------------------------------------------- GPU nodes: torch must see CUDA, GPU types match the configs

CUDA_ASSERT = "import torch; assert torch.cuda.is_available()"


def cuda_check_code(command: str) -> str:
    """The Python source of a command's `python -c '...'` CUDA check."""
    m = re.search(r"python -c '(?P<code>import torch; assert torch\.cuda\.is_available\(\)[^']*)'", command)
    assert m, f"no CUDA check in {command[:200]!r}"
    return m.group("code")


def run_cuda_check(code: str, tmp_path: Path, fake_cuda: bool | None = None) -> subprocess.CompletedProcess:
    """Run the check with this venv's torch (CPU-only here), or with a stub torch that has CUDA or not."""
    env = dict(os.environ)
    if fake_cuda is not None:
        stub = tmp_path / f"stub-{fake_cuda}" / "torch"
        stub.mkdir(parents=True)
        (stub / "__init__.py").write_text(
            "import types\n__version__ = '2.13.0+cu128'\nversion = types.SimpleNamespace(cuda='12.8')\n"
            f"cuda = types.SimpleNamespace(is_available=lambda: {fake_cuda})\n"
        )
        env["PYTHONPATH"] = str(stub.parent)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def test_gpu_nodes_check_torch_sees_cuda_before_they_join(cluster):
    setup = cluster["worker_setup_commands"]
    check = next(i for i, c in enumerate(setup) if CUDA_ASSERT in c)
    torch_install = next(i for i, c in enumerate(setup) if '"torch==' in c)
    weights = next(i for i, c in enumerate(setup) if "deployments.weights" in c)
    assert torch_install < check < weights  # after CUDA torch is installed, before 40 GB of weights
    start = next(c for c in cluster["worker_start_ray_commands"] if "ray start" in c)
    assert CUDA_ASSERT in start and start.index(CUDA_ASSERT) < start.index("ray start")
    assert re.search(r"is_available\(\)[^&]*'\s*&&", start), "ray start must run only when the check passed"
    assert not any(CUDA_ASSERT in c for c in cluster["head_start_ray_commands"] + cluster["head_setup_commands"])


def test_the_cuda_check_fails_on_cpu_torch_and_passes_with_cuda(cluster, tmp_path):
    start = next(c for c in cluster["worker_start_ray_commands"] if "ray start" in c)
    code = cuda_check_code(start)
    assert code == cuda_check_code(next(c for c in cluster["worker_setup_commands"] if CUDA_ASSERT in c))
    import torch

    if not torch.cuda.is_available():  # this machine: the CPU wheel, as a mis-installed GPU node would have
        proc = run_cuda_check(code, tmp_path)
        assert proc.returncode != 0
        assert "torch.cuda.is_available() is False" in proc.stderr and f"torch {torch.__version__}" in proc.stderr
    proc = run_cuda_check(code, tmp_path, fake_cuda=False)  # a CUDA wheel on a node whose driver is too old
    assert proc.returncode != 0 and "(CUDA 12.8) cannot see a GPU" in proc.stderr
    assert run_cuda_check(code, tmp_path, fake_cuda=True).returncode == 0


def test_every_accelerator_type_the_configs_ask_for_is_a_node_type(cluster):
    import ray.util.accelerators.accelerators as accelerators

    known = {v for k, v in vars(accelerators).items() if k.isupper() and isinstance(v, str)}
    offered = {k.split(":", 1)[1] for n in cluster["available_node_types"].values() for k in n["resources"]
               if k.startswith("accelerator_type:")}
    assert offered <= known, offered - known
    for path, want in (("configs/prod.yaml", "H100"), ("configs/prod-multi-gpu.yaml", "L40S")):
        args = yaml.safe_load((REPO / path).read_text())["applications"][0]["args"]
        for model in ("llm", "music", "cover"):
            asked = args[model]["deployment"].get("accelerator_type")
            assert asked == want and asked in offered, (path, model, asked)
