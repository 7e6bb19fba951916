"""Model configs: `bench/model_configs/*.json` as constructor kwargs (full or reduced size), with the
ties between components checked, and the ACE-Step DiT's parameter count in closed form."""

from __future__ import annotations

import copy
import json
from typing import Any

from bench.gpu.settings import CONFIG_DIR


def load_spec(name: str) -> dict[str, Any]:
    return json.loads((CONFIG_DIR / f"{name}.json").read_text())


def component_config(comp: dict[str, Any], size: str) -> dict[str, Any]:
    cfg = copy.deepcopy(comp["config"])
    if size == "reduced":
        cfg.update(copy.deepcopy(comp.get("reduced", {})))
    return cfg


_HF_META_KEYS = ("architectures", "torch_dtype", "model_type", "transformers_version", "_name_or_path")


def _hf_kwargs(cfg: dict[str, Any]) -> dict[str, Any]:
    """A transcribed transformers config.json as constructor kwargs (rope_theta -> rope_parameters)."""
    out = {k: v for k, v in cfg.items() if k not in _HF_META_KEYS}
    if "rope_theta" in out:
        out["rope_parameters"] = {"rope_type": "default", "rope_theta": float(out.pop("rope_theta"))}
    return out


def chatml_ids(tok) -> tuple[int, int]:
    end_id = tok.convert_tokens_to_ids("<|endoftext|>")
    im_end_id = tok.convert_tokens_to_ids("<|im_end|>")
    if end_id is None or im_end_id is None or end_id == tok.unk_token_id:
        raise ValueError("the LLM tokenizer needs ChatML special tokens <|endoftext|> and <|im_end|>")
    return end_id, im_end_id


def _fit_vocab(kw: dict[str, Any], tok, what: str) -> None:
    """A text model's vocab_size: the tokenizer's where the config leaves it out (the reduced
    configs do), never smaller than the tokenizer; without a tokenizer (meta-device counts) the
    config must give it."""
    if tok is not None:
        if kw.get("vocab_size") is None:
            kw["vocab_size"] = len(tok)
        if kw["vocab_size"] < len(tok):
            raise ValueError(f"{what} vocab_size {kw['vocab_size']} < tokenizer size {len(tok)}")
    elif kw.get("vocab_size") is None:
        raise ValueError(f"reduced {what} config takes its vocab_size from the tokenizer")


def llm_config(spec: dict[str, Any], size: str, tok=None):
    from transformers import Qwen2Config

    raw = copy.deepcopy(spec["config"])
    if size == "reduced":
        raw.update(copy.deepcopy(spec["reduced"]["config"]))
    kw = _hf_kwargs(raw)
    if tok is not None:
        end_id, im_end_id = chatml_ids(tok)
        kw.update(bos_token_id=end_id, eos_token_id=im_end_id, pad_token_id=end_id)
    _fit_vocab(kw, tok, "LLM")
    return Qwen2Config(**kw)


def music_configs(spec: dict[str, Any], size: str, tok=None) -> dict[str, Any]:
    """Constructor kwargs of the four ACE-Step modules (+ scheduler), with their ties checked."""
    comps = spec["components"]
    tr = component_config(comps["transformer"], size)
    ce = component_config(comps["condition_encoder"], size)
    vae = component_config(comps["vae"], size)
    te = _hf_kwargs(component_config(comps["text_encoder"], size))
    if tok is not None:
        te.update(pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None)
    _fit_vocab(te, tok, "text encoder")
    acoustic = tr["audio_acoustic_hidden_dim"]
    ties = {
        "condition_encoder.hidden_size == transformer.encoder_hidden_size":
            ce["hidden_size"] == (tr.get("encoder_hidden_size") or tr["hidden_size"]),
        "condition_encoder.text_hidden_dim == text_encoder.hidden_size": ce["text_hidden_dim"] == te["hidden_size"],
        "condition_encoder.timbre_hidden_dim == transformer.audio_acoustic_hidden_dim":
            ce["timbre_hidden_dim"] == acoustic,
        "vae.decoder_input_channels == transformer.audio_acoustic_hidden_dim":
            vae["decoder_input_channels"] == acoustic,
        "transformer.in_channels == 3 * audio_acoustic_hidden_dim": tr["in_channels"] == 3 * acoustic,
    }
    broken = [k for k, ok in ties.items() if not ok]
    if broken:
        raise ValueError(f"{spec['model_id']} ({size}): inconsistent configs: {broken}")
    return {"transformer": tr, "condition_encoder": ce, "text_encoder": te, "vae": vae,
            "scheduler": dict(comps["scheduler"]["config"])}


def cover_configs(spec: dict[str, Any], size: str, tok=None, tok2=None) -> dict[str, Any]:
    comps = spec["components"]
    unet = component_config(comps["unet"], size)
    vae = component_config(comps["vae"], size)
    tes = {}
    for name, t in (("text_encoder", tok), ("text_encoder_2", tok2)):
        cfg = _hf_kwargs(component_config(comps[name], size))
        if t is not None:
            cfg.update(bos_token_id=t.bos_token_id, eos_token_id=t.eos_token_id, pad_token_id=t.pad_token_id)
        _fit_vocab(cfg, t, name)
        tes[name] = cfg
    te, te2 = tes["text_encoder"], tes["text_encoder_2"]
    ties = {
        "unet.cross_attention_dim == te.hidden + te2.hidden":
            unet["cross_attention_dim"] == te["hidden_size"] + te2["hidden_size"],
        "unet.projection_class_embeddings_input_dim == 6 * addition_time_embed_dim + te2.projection_dim":
            unet["projection_class_embeddings_input_dim"]
            == 6 * unet["addition_time_embed_dim"] + te2["projection_dim"],
    }
    broken = [k for k, ok in ties.items() if not ok]
    if broken:
        raise ValueError(f"{spec['model_id']} ({size}): inconsistent configs: {broken}")
    return {"unet": unet, "vae": vae, "text_encoder": te, "text_encoder_2": te2,
            "scheduler": dict(comps["scheduler"]["config"])}


def dit_params_formula(cfg: dict[str, Any]) -> int:
    """AceStepTransformer1DModel's parameter count in closed form (independent of diffusers' code)."""
    h, inter, n = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    hd, nh, nkv = cfg["head_dim"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    enc = cfg.get("encoder_hidden_size") or h
    p, cin, aco = cfg["patch_size"], cfg["in_channels"], cfg["audio_acoustic_hidden_dim"]
    bias = 1 if cfg.get("attention_bias") else 0
    attn = h * nh * hd + 2 * h * nkv * hd + nh * hd * h + 2 * hd  # q, k, v, o + per-head q/k RMSNorm
    attn += bias * (nh * hd + 2 * nkv * hd + h)
    layer = 2 * attn + 3 * h + 3 * h * inter + 6 * h  # self + cross attn, 3 RMSNorms, SwiGLU MLP, AdaLN table
    time_embed = (256 * h + h) + (h * h + h) + (h * 6 * h + 6 * h)
    top = (cin * h * p + h) + 2 * time_embed + (enc * h + h) + h + (h * aco * p + aco) + 2 * h
    return n * layer + top


def llm_tokenizer_rel(spec: dict[str, Any], size: str) -> str:
    return spec["tokenizer"]["full" if size == "full" else "reduced"]
