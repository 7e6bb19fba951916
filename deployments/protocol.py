"""What a model engine is, what it takes and returns: one contract for the three Serve deployments.

An engine loads its model in its constructor (from its pydantic args), reports what it runs on
with `ready()`, and answers plain dataclasses. The Serve classes (deployments/serving.py does their
shared plumbing) only ever see this surface, so a test can hand them a fake engine without torch.
Nothing here imports torch: the ingress imports these modules.
"""

from __future__ import annotations

import hashlib
import functools
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

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
    # None: greedy decoding (deterministic, the behaviour before seeds); an int: sampled with the
    # engine's temperature/top_p from this seed, so the same seed gives the same words.
    seed: int | None = None


LLMProduct = Literal["tags", "lyrics", "meta"]
_PRODUCT_SALT = {"tags": 1, "lyrics": 2, "meta": 3}


def product_seed(song_seed: int | None, kind: LLMProduct) -> int | None:
    """The one place a song's seed becomes the seed of one of its LLM products.

    Tags, lyrics and meta each get their own (a stable hash of song seed and product, in
    [0, MAX_SEED)), so the three answers are not drawn from the same random stream; None stays None
    (greedy). Stable across processes and Python versions (no `hash()`): a song's words can be
    reproduced from its manifest's seed.
    """
    if song_seed is None:
        return None
    digest = hashlib.blake2b(f"{int(song_seed)}:{_PRODUCT_SALT[kind]}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % MAX_SEED


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


# What ACE-Step 1.5 can be asked to do (diffusers' `AceStepPipeline(task_type=...)`, plus `extend`,
# which is ours: pad the source and repaint the new part, since the pipeline clamps repaint windows
# to the source's length). Defined once; the API's vocabulary imports it.
MusicTask = Literal["text2music", "cover", "repaint", "extend", "extract", "lego", "complete"]
EDIT_TASKS: tuple[str, ...] = ("cover", "repaint", "extend", "extract", "lego", "complete")  # need a source
BASE_ONLY_TASKS = frozenset({"extract", "lego", "complete"})  # trained into base checkpoints, not turbo
# The stems ACE-Step 1.5 base knows (`track_name` of extract/lego, `complete_track_classes`).
TRACK_NAMES: tuple[str, ...] = ("woodwinds", "brass", "fx", "synth", "strings", "percussion", "keyboard", "guitar",
                                "bass", "drums", "backing_vocals", "vocals")
MAX_TAKES = 4  # takes of one request, rendered as one pipeline batch


def take_seed(seed: int, take: int) -> int:
    """Take k of a song renders from seed + k: take 0 is the song's own seed, so a one-take song
    renders exactly as before takes existed, and each take can be reproduced alone from its seed."""
    return (int(seed) + int(take)) % MAX_SEED


@dataclass
class MusicRequest:
    tags: str
    lyrics: str = ""
    instrumental: bool = False
    duration_s: float = 30.0  # for edits with a source: the output's length (extend: source + extend_s)
    steps: int | None = None
    guidance_scale: float | None = None
    seed: int = -1
    audio_format: AudioFormat = "wav"
    vocal_language: str = "en"
    # Takes: seeds take_seed(seed, 0..takes-1), rendered together; one result per take, in order.
    takes: int = 1
    # Musical controls (None: the model decides). timesignature is beats per bar: "2", "3", "4", "6".
    bpm: int | None = None
    keyscale: str | None = None
    timesignature: str | None = None
    # Edits: the task and its source (an encoded audio file: wav/flac/mp3/ogg at any rate).
    task: MusicTask = "text2music"
    source_audio: bytes | None = None
    repaint_start_s: float | None = None  # repaint: the window to write anew; the rest is the source's
    repaint_end_s: float | None = None
    extend_s: float = 0.0  # extend: seconds added after the source
    cover_strength: float = 1.0  # cover: 1 = follow the source closely, lower = restyle more
    track_name: str | None = None  # extract / lego: one of TRACK_NAMES
    complete_tracks: list[str] | None = None  # complete: TRACK_NAMES to add


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
    take: int = 0  # which take of the request this is (its seed is take_seed(request seed, take))
    task: str = "text2music"


@dataclass
class MusicCapabilities:
    """What the configured music model can do: the ingress checks an edit against it before the
    song is queued, so a task the checkpoint lacks is a 422 at once, not noise after a render."""

    model: str
    is_turbo: bool
    sample_rate: int
    tasks: list[str]
    track_names: list[str]
    max_takes: int = MAX_TAKES
    unavailable: dict[str, str] = field(default_factory=dict)  # task -> why this checkpoint cannot run it


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


@runtime_checkable
class AsyncLLMProtocol(Engine, Protocol):
    """An engine that schedules requests itself (vLLM: continuous batching): each chat is its own
    awaitable request, answered as soon as its own tokens are done, whatever else is running."""

    async def complete(self, item: Completion) -> Answer:
        """The answer to one chat; awaitable on the replica's event loop, never blocking it."""
        ...

    def shutdown(self) -> None:
        """Stop the engine's background processes (vLLM's engine core) now."""
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


# The engines' render calls (the protocols above): TorchEngine returns the GPU memory they cached.
RENDER_METHODS = ("generate", "render", "generate_batch", "complete_batch")


def _returning_gpu_cache(method: Callable) -> Callable:
    @functools.wraps(method)
    def render(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        finally:  # also after a failed or cancelled render (an out-of-memory one above all)
            runtime = getattr(self, "runtime", None)
            if runtime is not None and runtime.device.type == "cuda":
                from deployments.runtime import return_cached_gpu_memory

                return_cached_gpu_memory(runtime.device)

    render._returns_gpu_cache = True  # type: ignore[attr-defined]
    return render


class TorchEngine:
    """The one way the real engines load: pick device and dtype (refusing to start on the CPU when
    Ray gave the replica a GPU torch cannot see), cap the process's GPU memory at the `num_gpus`
    share Ray assigned, `load()` the model, warm it up (`warm_up()`, when args.warmup) and give the
    loading temporaries back to the OS. On CUDA, every render call (RENDER_METHODS a subclass
    defines) hands the allocator's large unused cache back to the driver when it returns, so a long
    song's activations do not stay reserved in the memory its GPU neighbours were promised.

    Subclasses set `half` (their CUDA dtype) and implement `load` and `warm_up`.
    """

    half = "bfloat16"
    runtime: Runtime

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in RENDER_METHODS:
            method = cls.__dict__.get(name)
            if callable(method) and not getattr(method, "_returns_gpu_cache", False):
                setattr(cls, name, _returning_gpu_cache(method))

    def __init__(self, args: Any) -> None:
        import torch

        from deployments.runtime import resolve_runtime

        self.args = args
        self.runtime = resolve_runtime(args, half=getattr(torch, self.half))
        self.load()
        if args.warmup:
            self.warm_up()
        release_free_memory()  # loading and warm-up temporaries
        if self.runtime.device.type == "cuda":
            from deployments.runtime import return_cached_gpu_memory

            return_cached_gpu_memory(self.runtime.device, above=0)  # the same, in the GPU's allocator

    def load(self) -> None:
        raise NotImplementedError

    def warm_up(self) -> None:
        raise NotImplementedError

    def ready(self) -> str:
        return f"{self.args.model_name} on {self.runtime.device}"
