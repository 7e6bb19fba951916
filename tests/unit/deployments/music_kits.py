"""Variants of the dev ACE-Step kit that the music edit tests need, built in a temporary directory.

Since kit v2 the dev kit itself reads sources (an encoder as wide as its latents, an audio
tokenizer/detokenizer); `edit_kit` builds the same from kit v1's parts and, with `turbo=False`,
marks the transformer as a base checkpoint (the pipeline reads `is_turbo` / `model_version` from
its config), which is all that tells base from turbo at run time: the same weights then run
guided (CFG) and may be asked for extract, lego and complete.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from serve_app.localdev.cluster import MODELS

KIT = MODELS / "acestep-v15-turbo-kit"
SHARED = ("condition_encoder", "scheduler", "text_encoder", "tokenizer")
TOKENIZER = dict(hidden_size=32, intermediate_size=64, audio_acoustic_hidden_dim=16, pool_window_size=5,
                 num_attention_pooler_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                 sliding_window=16)


def edit_kit(dest: Path, *, turbo: bool = True, seed: int = 0) -> Path:
    import torch
    from diffusers import AutoencoderOobleck
    from diffusers.pipelines.ace_step.modeling_ace_step import AceStepAudioTokenDetokenizer, AceStepAudioTokenizer

    dest.mkdir(parents=True, exist_ok=True)
    for name in SHARED:
        (dest / name).symlink_to(KIT / name, target_is_directory=True)
    (dest / "transformer").mkdir()
    for f in (KIT / "transformer").iterdir():
        if f.name != "config.json":
            (dest / "transformer" / f.name).symlink_to(f)
    config = json.loads((KIT / "transformer" / "config.json").read_text())
    config.update(is_turbo=turbo, model_version="turbo" if turbo else "base")
    (dest / "transformer" / "config.json").write_text(json.dumps(config, indent=2))

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        kit_vae = AutoencoderOobleck.from_pretrained(KIT / "vae")
        vae_config = {k: v for k, v in kit_vae.config.items() if not k.startswith("_")}
        vae_config["encoder_hidden_size"] = 2 * vae_config["decoder_input_channels"]
        vae = AutoencoderOobleck(**vae_config)
        vae.decoder.load_state_dict(kit_vae.decoder.state_dict())
        vae.save_pretrained(dest / "vae")
        fsq_dim = TOKENIZER["hidden_size"]
        AceStepAudioTokenizer(**TOKENIZER, fsq_dim=fsq_dim).save_pretrained(dest / "audio_tokenizer")
        AceStepAudioTokenDetokenizer(**TOKENIZER).save_pretrained(dest / "audio_token_detokenizer")

    index = json.loads((KIT / "model_index.json").read_text())
    index["audio_tokenizer"] = ["ace_step", "AceStepAudioTokenizer"]
    index["audio_token_detokenizer"] = ["ace_step", "AceStepAudioTokenDetokenizer"]
    (dest / "model_index.json").write_text(json.dumps(index, indent=2))
    shutil.copy(KIT / "kit.json", dest / "kit.json")
    return dest


class PipeSpy:
    """Stands in for an engine's `pipe`: records every call's keyword arguments, then runs it."""

    def __init__(self, pipe) -> None:
        self._pipe = pipe
        self.calls: list[dict] = []

    def __getattr__(self, name: str):
        return getattr(self._pipe, name)

    def __call__(self, **kwargs):
        self.calls.append(kwargs)
        return self._pipe(**kwargs)
