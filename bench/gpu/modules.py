"""The production architectures as torch modules (random weights, or the meta device for counting)."""

from __future__ import annotations

import contextlib
from typing import Any

from bench.gpu.measure import lazy_torch


def count_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def make_llm(cfg, device, dtype):
    from transformers import Qwen2ForCausalLM

    torch = lazy_torch()
    with torch.device(device):
        if device == "meta" or str(device) == "meta":
            return Qwen2ForCausalLM(cfg)
        return Qwen2ForCausalLM._from_config(cfg, dtype=dtype).eval()


def make_music_modules(cfgs: dict[str, Any], device, dtype, seed: int = 1234) -> dict[str, Any]:
    from diffusers import AceStepConditionEncoder, AceStepTransformer1DModel, AutoencoderOobleck
    from transformers import Qwen3Config, Qwen3Model

    torch = lazy_torch()
    meta = str(device) == "meta"
    out = {}
    makers = {
        "vae": lambda: AutoencoderOobleck(**cfgs["vae"]),
        "text_encoder": lambda: Qwen3Model(Qwen3Config(**cfgs["text_encoder"])),
        "transformer": lambda: AceStepTransformer1DModel(**cfgs["transformer"]),
        "condition_encoder": lambda: AceStepConditionEncoder(**cfgs["condition_encoder"]),
    }
    with torch.device(device), _quiet_weight_norm():
        for i, (name, make) in enumerate(makers.items()):
            torch.manual_seed(seed + i)
            m = make()
            if name == "condition_encoder" and not meta:
                # The real checkpoint stores VAE-encoded silence here; small noise keeps the timbre
                # encoder's input non-degenerate (as the kit does).
                sl = m.silence_latent
                g = torch.Generator(device=sl.device).manual_seed(seed + 10)
                sl.copy_(0.1 * torch.randn(sl.shape, generator=g, device=sl.device))
            # Cast each module as soon as it exists: the full-size DiT alone is 17 GB in float32.
            out[name] = m if meta else m.to(dtype).eval()
    return out


def make_cover_modules(cfgs: dict[str, Any], device, dtype, seed: int = 0) -> dict[str, Any]:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch = lazy_torch()
    makers = {
        "unet": lambda: UNet2DConditionModel(**cfgs["unet"]),
        "vae": lambda: AutoencoderKL(**cfgs["vae"]),
        "text_encoder": lambda: CLIPTextModel(CLIPTextConfig(**cfgs["text_encoder"])),
        "text_encoder_2": lambda: CLIPTextModelWithProjection(CLIPTextConfig(**cfgs["text_encoder_2"])),
    }
    meta = str(device) == "meta"
    out = {}
    with torch.device(device):
        for i, (name, make) in enumerate(makers.items()):
            torch.manual_seed(seed + i)
            m = make()
            out[name] = m if meta else m.to(dtype).eval()
    return out


@contextlib.contextmanager
def _quiet_weight_norm():
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*weight_norm.*", category=FutureWarning)
        yield
