"""Start-up fails fast and says what to do when weights are missing (offline, as in production)."""

from __future__ import annotations

import pytest

from deployments.config import CoverArgs, LLMArgs, MusicArgs
from deployments.runtime import ModelNotAvailable


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.mark.parametrize("engine", ["llm", "music", "cover"])
def test_hub_model_missing_offline_names_the_fix(empty_cache, engine):
    from deployments.cover import CoverEngine
    from deployments.llm import LLMEngine
    from deployments.music import MusicEngine

    cls, args = {"llm": (LLMEngine, LLMArgs()), "music": (MusicEngine, MusicArgs()),
                 "cover": (CoverEngine, CoverArgs())}[engine]
    with pytest.raises(ModelNotAvailable) as exc:
        cls(args)
    msg = str(exc.value)
    assert args.model in msg and "python -m deployments.weights download" in msg


def test_missing_local_kit_points_to_make_setup(tmp_path):
    from deployments.music import MusicEngine

    with pytest.raises(ModelNotAvailable, match="make setup"):
        MusicEngine(MusicArgs(model=str(tmp_path / "no-such-kit")))


# ---------------------------------------------------------------- GPUs (CUDA facts simulated on this CPU machine)

import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402
from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import torch  # noqa: E402

from deployments import runtime  # noqa: E402
from deployments.config import EngineArgs  # noqa: E402
from deployments.protocol import TorchEngine  # noqa: E402
from deployments.runtime import CUDA_CONTEXT_RESERVE_BYTES, GPUUnavailable, resolve_runtime  # noqa: E402

GiB = 2**30
REPO = Path(__file__).resolve().parents[3]


class FakeRayContext:
    def __init__(self, gpu_ids: list[str], share: float):
        self.gpu_ids, self.share = gpu_ids, share

    def get_accelerator_ids(self):
        return {"GPU": list(self.gpu_ids), "TPU": [], "neuron_cores": []}

    def get_assigned_resources(self):
        return {"CPU": 1.0, **({"GPU": self.share} if self.share else {})}


@pytest.fixture
def ray_assigns(monkeypatch):
    """Make this process look like a Ray worker that Ray gave `gpu_ids` and a `share` of a GPU."""
    import ray

    def assign(gpu_ids: list[str], share: float) -> None:
        monkeypatch.setattr(ray, "is_initialized", lambda: True)
        monkeypatch.setattr(ray, "get_runtime_context", lambda: FakeRayContext(gpu_ids, share))

    return assign


@pytest.fixture
def cuda(monkeypatch):
    """A simulated 80 GiB CUDA device: records the memory fraction set and each empty_cache()."""
    state = SimpleNamespace(fractions=[], empties=0, reserved=0, allocated=0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: SimpleNamespace(total_memory=80 * GiB))
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction",
                        lambda fraction, device=None: state.fractions.append(fraction))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: state.reserved)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: state.allocated)

    def empty_cache():
        state.empties += 1
        state.reserved = state.allocated

    monkeypatch.setattr(torch.cuda, "empty_cache", empty_cache)
    return state


@pytest.fixture
def no_cuda(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(runtime, "NVIDIA_DRIVER_VERSION_FILE", tmp_path / "no-driver")

    def fail(*args, **kwargs):
        raise AssertionError("no CUDA call may happen on a CPU runtime")

    for name in ("set_per_process_memory_fraction", "memory_reserved", "memory_allocated", "empty_cache"):
        monkeypatch.setattr(torch.cuda, name, fail)


class RecordingEngine(TorchEngine):
    """The shared loading path with a fake model: what TorchEngine does around load() and renders."""

    loaded = False

    def load(self) -> None:
        type(self).loaded = True

    def warm_up(self) -> None:
        pass

    def generate(self, grow_cache_by: int = 0, fail: bool = False):
        self.cuda_state.reserved += grow_cache_by  # a render's activations, freed but still cached
        if fail:
            raise RuntimeError("render failed")
        return "song"


def test_ray_gpu_but_cpu_only_torch_refuses_to_start(ray_assigns, no_cuda, monkeypatch):
    ray_assigns(["0"], 0.25)
    monkeypatch.setattr(torch.version, "cuda", None)
    RecordingEngine.loaded = False
    with pytest.raises(GPUUnavailable) as exc:
        RecordingEngine(EngineArgs(model="Qwen/Qwen2-7B-Instruct"))
    msg = str(exc.value)
    assert "Ray assigned GPU ids ['0'] to this replica but torch.cuda.is_available() is False" in msg
    assert "CPU-only build" in msg and f"torch {torch.__version__}" in msg
    assert "Refusing to load Qwen/Qwen2-7B-Instruct on the CPU" in msg
    assert not RecordingEngine.loaded  # refused before loading a single weight


def test_ray_gpu_but_old_or_missing_driver_names_cuda_and_driver(ray_assigns, no_cuda, monkeypatch, tmp_path):
    ray_assigns(["1"], 0.35)
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    with pytest.raises(GPUUnavailable, match="no NVIDIA driver is loaded") as exc:
        resolve_runtime(EngineArgs(model="m"))
    assert "built for CUDA 12.8" in str(exc.value) and "CUDA_VISIBLE_DEVICES='1'" in str(exc.value)
    driver = tmp_path / "version"
    driver.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  470.82.01  Wed Oct 27 21:21:55 UTC 2021\n"
                      "GCC version:  gcc version 9.3.0\n")
    monkeypatch.setattr(runtime, "NVIDIA_DRIVER_VERSION_FILE", driver)
    with pytest.raises(GPUUnavailable) as exc:
        resolve_runtime(EngineArgs(model="m"))
    msg = str(exc.value)
    assert "Ray assigned GPU ids ['1']" in msg and "NVIDIA driver is 470.82.01" in msg and "older than CUDA 12.8" in msg


def test_explicit_cuda_device_without_cuda_refuses(no_cuda):
    with pytest.raises(GPUUnavailable, match=r"device 'cuda' is configured \(Ray assigned no GPU\)"):
        resolve_runtime(EngineArgs(model="m", device="cuda"))


def test_no_ray_gpu_means_cpu_and_no_cuda_calls(ray_assigns, no_cuda):
    assert resolve_runtime(EngineArgs(model="m")).device.type == "cpu"  # not a Ray worker (dev, tests)
    ray_assigns([], 0.0)  # a CPU replica (the ingress, configs/dev.yaml)
    rt = resolve_runtime(EngineArgs(model="m"))
    assert rt.device.type == "cpu" and rt.memory_fraction is None and rt.gpu_share is None


def test_ray_gpu_share_caps_the_process_context_included(ray_assigns, cuda):
    ray_assigns(["0"], 0.25)
    rt = resolve_runtime(EngineArgs(model="m"), half=torch.bfloat16)
    assert rt.device.type == "cuda" and rt.dtype == torch.bfloat16 and rt.gpu_share == 0.25
    assert cuda.fractions == [pytest.approx(0.25 - CUDA_CONTEXT_RESERVE_BYTES / (80 * GiB))]
    assert rt.memory_fraction == cuda.fractions[0]
    # The shares Ray may pack onto one GPU (at most 1.0 together) then fit it, contexts included.
    caps = [share - CUDA_CONTEXT_RESERVE_BYTES / (80 * GiB) for share in (0.25, 0.35, 0.15, 0.25)]
    assert sum(caps) * 80 * GiB + len(caps) * CUDA_CONTEXT_RESERVE_BYTES == pytest.approx(80 * GiB)


def test_whole_gpus_are_not_capped_and_tiny_shares_refuse(ray_assigns, cuda):
    ray_assigns(["0"], 1.0)
    assert resolve_runtime(EngineArgs(model="m")).memory_fraction is None
    ray_assigns(["0", "1"], 2.0)
    assert resolve_runtime(EngineArgs(model="m")).memory_fraction is None
    assert cuda.fractions == []
    ray_assigns(["0"], 0.01)  # 0.8 GiB of 80: less than the CUDA context alone
    with pytest.raises(GPUUnavailable, match="num_gpus 0.01 of a 80.0 GiB GPU leaves nothing"):
        resolve_runtime(EngineArgs(model="m"))


def test_renders_return_large_cached_blocks_on_cuda(ray_assigns, cuda):
    ray_assigns(["0"], 0.35)
    RecordingEngine.cuda_state = cuda
    cuda.reserved = GiB  # loading temporaries, freed but cached
    engine = RecordingEngine(EngineArgs(model="m"))
    after_load = cuda.empties  # TorchEngine empties the cache once after load and warm-up
    assert after_load == 1 and cuda.reserved == 0
    cuda.allocated = cuda.reserved = 10 * GiB  # the weights
    assert engine.generate(grow_cache_by=256 * 2**20) == "song"  # a small render: its cache stays for the next
    assert cuda.empties == after_load
    engine.generate(grow_cache_by=3 * GiB)  # a long song: 3 GiB of freed activations go back to the driver
    assert cuda.empties == after_load + 1 and cuda.reserved == cuda.allocated
    with pytest.raises(RuntimeError, match="render failed"):
        engine.generate(grow_cache_by=2 * GiB, fail=True)  # a failed (e.g. out-of-memory) render too
    assert cuda.empties == after_load + 2


def test_cpu_renders_make_no_cuda_calls(no_cuda):
    RecordingEngine.cuda_state = SimpleNamespace(reserved=0)
    assert RecordingEngine(EngineArgs(model="m")).generate(grow_cache_by=GiB) == "song"


def test_every_real_engine_render_goes_through_the_shared_path():
    from deployments.cover import CoverEngine
    from deployments.llm import LLMEngine
    from deployments.music import MusicEngine

    for cls, name in ((CoverEngine, "generate_batch"), (MusicEngine, "generate"), (LLMEngine, "complete_batch")):
        if issubclass(cls, TorchEngine) and name in cls.__dict__:
            assert getattr(getattr(cls, name), "_returns_gpu_cache", False), (cls.__name__, name)
    assert CoverEngine.generate_batch._returns_gpu_cache and MusicEngine.generate._returns_gpu_cache


@pytest.mark.serve  # starts a (tiny) local Ray cluster with a fake GPU: what the engines read is Ray's real answer
def test_a_ray_actor_reads_its_fractional_gpu_share(tmp_path):
    script = textwrap.dedent(
        """
        import json, os, ray
        ray.init(address="local", num_cpus=1, num_gpus=1, include_dashboard=False)

        @ray.remote(num_gpus=0.25, num_cpus=0)
        class Replica:
            def assignment(self):
                from deployments.runtime import ray_gpu_assignment
                return ray_gpu_assignment()

        print(json.dumps(ray.get(Replica.remote().assignment.remote())))
        from deployments.runtime import ray_gpu_assignment
        print(json.dumps(ray_gpu_assignment()))  # the driver: Ray assigned it nothing
        ray.shutdown()
        """
    )
    env = {**__import__("os").environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    actor, driver = proc.stdout.strip().splitlines()[-2:]
    assert __import__("json").loads(actor) == [["0"], 0.25]
    assert __import__("json").loads(driver) == [[], 0.0]


@pytest.mark.parametrize(("model", "name"), [
    ("ACE-Step/acestep-v15-xl-turbo-diffusers", "ACE-Step/acestep-v15-xl-turbo-diffusers"),  # hub ids as they are
    ("/srv/songsmith/models/acestep-v15-turbo-kit", "acestep-v15-turbo-kit"),
    ("/srv/songsmith/models/qwen2-tiny-kit/", "qwen2-tiny-kit"),
    ("./models/sdxl-turbo-kit", "sdxl-turbo-kit"),
    ("../elsewhere/llm", "llm"),
])
def test_results_name_a_local_model_by_its_folder_never_its_path(model, name):
    from deployments.config import EngineArgs

    assert EngineArgs(model=model).model_name == name
