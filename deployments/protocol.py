"""What a model engine is, what it takes and returns: one contract for the three Serve deployments.

An engine loads its model in its constructor (from its pydantic args), reports what it runs on
with `ready()`, and answers plain dataclasses. The Serve classes (deployments/serving.py does their
shared plumbing) only ever see this surface, so a test can hand them a fake engine without torch.
Nothing here imports torch: the ingress imports these modules.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from deployments.audio_codec import AudioFormat
from deployments.lyrics_text import Chat
from deployments.memory import release_free_memory

if TYPE_CHECKING:
    from deployments.runtime import Runtime

# Random seeds are drawn from [0, MAX_SEED): torch generators take any 64-bit value, but a seed
# that fits a signed 32-bit integer is stored and sent back unchanged by every database and client.
MAX_SEED = 2**31 - 1


def resolve_seed(seed: int | None) -> int:
    """The caller's seed, or a fresh random one when it left it unset (None or negative)."""
    return secrets.randbelow(MAX_SEED) if seed is None or seed < 0 else int(seed)


ProgressFn = Callable[[int, int], None]  # (steps done, steps in all), called on the engine's thread


class SongCancelled(Exception):
    """Raised between diffusion steps when the caller cancelled the song."""


class EngineError(RuntimeError):
    """The model could not render this song (e.g. out of memory); the replica stays usable."""


# -- the LLM (lyrics, tags, title) --


@dataclass
class Completion:
    chat: Chat
    max_new_tokens: int


@dataclass
class Answer:
    text: str
    truncated: bool  # stopped by its token budget, so its last line or tag is likely cut short


@dataclass
class Written:
    """One LLM product (tags, lyrics or title+categories) with the raw answer kept for the manifest."""

    kind: str
    tags: list[str] = field(default_factory=list)
    lyrics: str = ""
    title: str = ""
    categories: list[str] = field(default_factory=list)
    raw: str = ""
    repaired: bool = False
    model: str = ""
    started_at: float = 0.0
    finished_at: float = 0.0


# -- music (ACE-Step) --


@dataclass
class MusicRequest:
    tags: str
    lyrics: str = ""
    instrumental: bool = False
    duration_s: float = 30.0
    steps: int | None = None
    guidance_scale: float | None = None
    seed: int = -1
    audio_format: AudioFormat = "wav"
    vocal_language: str = "en"


@dataclass
class MusicResult:
    audio: bytes
    audio_format: AudioFormat
    extension: str
    content_type: str
    sample_rate: int
    channels: int
    num_samples: int
    duration_s: float
    seed: int
    steps: int
    guidance_scale: float
    model: str
    notes: list[str] = field(default_factory=list)
    started_at: float = 0.0
    finished_at: float = 0.0
    model_s: float = 0.0
    encode_s: float = 0.0


# -- covers (SDXL) --


@dataclass
class CoverRequest:
    prompt: str
    seed: int = -1
    steps: int | None = None


@dataclass
class CoverResult:
    png: bytes
    width: int
    height: int
    seed: int
    steps: int
    prompt: str
    model: str
    started_at: float
    finished_at: float
    model_s: float


# -- the engines --


@runtime_checkable
class Engine(Protocol):
    """Every engine: `Engine(args)` loads the model (never lazily, so a replica is ready when
    Serve says so); `ready()` says which model runs on what, for the health endpoint."""

    args: Any

    def __init__(self, args: Any) -> None: ...

    def ready(self) -> str: ...


class LLMProtocol(Engine, Protocol):
    def complete_batch(self, items: list[Completion]) -> list[Answer]:
        """One answer per chat, in order; blocking."""
        ...


class MusicProtocol(Engine, Protocol):
    def generate(
        self, req: MusicRequest, progress: ProgressFn | None = None, cancel: threading.Event | None = None
    ) -> MusicResult:
        """Blocking; calls `progress` after every step and raises SongCancelled once `cancel` is set."""
        ...


class CoverProtocol(Engine, Protocol):
    def generate_batch(self, reqs: list[CoverRequest]) -> list[CoverResult]:
        """One cover per request, in order; blocking."""
        ...


class TorchEngine:
    """The one way the real engines load: pick device and dtype, `load()` the model, warm it up
    (`warm_up()`, when args.warmup) and give the loading temporaries back to the OS.

    Subclasses set `half` (their CUDA dtype) and implement `load` and `warm_up`.
    """

    half = "bfloat16"
    runtime: Runtime

    def __init__(self, args: Any) -> None:
        import torch

        from deployments.runtime import resolve_runtime

        self.args = args
        self.runtime = resolve_runtime(args, half=getattr(torch, self.half))
        self.load()
        if args.warmup:
            self.warm_up()
        release_free_memory()  # loading and warm-up temporaries

    def load(self) -> None:
        raise NotImplementedError

    def warm_up(self) -> None:
        raise NotImplementedError

    def ready(self) -> str:
        return f"{self.args.model} on {self.runtime.device}"
