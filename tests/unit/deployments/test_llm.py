"""The lyrics/tags LLM engine: real SmolLM2-135M-Instruct weights, and the tiny Qwen2 kit."""

from __future__ import annotations

import re

import pytest

from deployments import lyrics_text as lt
from deployments.config import LLMArgs
from deployments.llm import (
    Completion,
    LLMEngine,
    finish_lyrics,
    finish_meta,
    finish_tags,
    lyrics_completion,
    meta_completion,
    tags_completion,
)
from serve_app.localdev.cluster import MODELS

pytestmark = pytest.mark.models  # runs real model code on the kits: the slower unit tests

DESCRIPTIONS = [
    ("an upbeat synthwave song about driving through a neon city at night", False),
    ("a sad country ballad about an old dog waiting at the door", False),
    ("calm piano music for studying late at night", True),
    ("una canción de reggaetón sobre el verano en la playa", False),
    ("日本の春の桜についての優しいポップソング", False),
    ("an aggressive heavy metal track about a thunderstorm", False),
]


@pytest.fixture(scope="module")
def smollm(kits) -> LLMEngine:
    return LLMEngine(LLMArgs(model=str(MODELS / "smollm2-135m-instruct"), num_threads=2, max_new_tokens_lyrics=160,
                             max_new_tokens_tags=48, max_new_tokens_meta=32))


@pytest.fixture(scope="module")
def written(smollm):
    """Every description's tags and lyrics in one batched generate, then titles/categories in another."""
    args = smollm.args
    first = [tags_completion(args, d, inst) for d, inst in DESCRIPTIONS] + [
        lyrics_completion(args, d) for d, _ in DESCRIPTIONS
    ]
    raw = smollm.complete_batch(first)
    n = len(DESCRIPTIONS)
    tags = [finish_tags(raw[i], d, inst, args.model) for i, (d, inst) in enumerate(DESCRIPTIONS)]
    lyrics = [finish_lyrics(raw[n + i], d, args.model) for i, (d, _) in enumerate(DESCRIPTIONS)]
    meta_raw = smollm.complete_batch([meta_completion(args, d, t.tags) for (d, _), t in zip(DESCRIPTIONS, tags)])
    metas = [finish_meta(r, d, t.tags, ly.lyrics, args.model)
             for r, (d, _), t, ly in zip(meta_raw, DESCRIPTIONS, tags, lyrics)]
    return tags, lyrics, metas


@pytest.mark.parametrize("i", range(len(DESCRIPTIONS)), ids=[d[:24] for d, _ in DESCRIPTIONS])
def test_smollm2_output_is_well_formed(written, i):
    description, instrumental = DESCRIPTIONS[i]
    tags, lyrics, metas = (x[i] for x in written)
    assert lt.MIN_TAGS <= len(tags.tags) <= lt.MAX_TAGS, tags
    assert all(t == t.strip().lower() and 0 < len(t) <= 32 for t in tags.tags)
    assert len(set(tags.tags)) == len(tags.tags)
    if instrumental:
        assert "instrumental" in tags.tags and not any(lt.is_vocal_tag(t) for t in tags.tags)
    text = lyrics.lyrics
    heads = re.findall(r"^\[([a-z-]+)\]$", text, re.MULTILINE)
    assert heads and heads[0] in lt.SECTION_NAMES and set(heads) <= set(lt.SECTION_NAMES), text
    assert "chorus" in heads, text
    body = [ln for ln in text.splitlines() if ln and not ln.startswith("[")]
    assert len(body) >= 4
    assert not re.match(r"(?i)^(sure|here|certainly|okay)\b", body[0])
    assert 0 < len(metas.title) <= lt.MAX_TITLE_CHARS
    assert lt.MIN_CATEGORIES <= len(metas.categories) <= lt.MAX_CATEGORIES
    assert len({c.lower() for c in metas.categories}) == len(metas.categories)


def test_smollm2_words_are_used_not_only_fallbacks(written):
    """Repair keeps the model's own lines: most songs must not be the built-in fallback lyrics."""
    _, lyrics, _ = written
    fallback_marker = lt.fallback_lyrics("x").splitlines()[2]
    own = [ly for ly in lyrics if fallback_marker not in ly.lyrics]
    assert len(own) >= len(lyrics) - 2, [ly.raw[:80] for ly in lyrics]


def test_row_budgets_are_respected_in_one_batch(kits):
    engine = LLMEngine(LLMArgs(model=str(MODELS / "qwen2-tiny-kit"), num_threads=1))
    chat = [{"role": "user", "content": "hello"}]
    short, long = engine.complete_batch([Completion(chat, 4), Completion(chat, 40)])
    n_short = len(engine.tokenizer(short.text, add_special_tokens=False)["input_ids"])
    n_long = len(engine.tokenizer(long.text, add_special_tokens=False)["input_ids"])
    assert n_short <= 6 and n_long > n_short  # a random model never stops early, so budgets bound it
    assert short.truncated and long.truncated
    # The single-use helpers always return usable products, even from a random-weight model.
    t = engine.write_tags("a jazz song with saxophone", instrumental=True)
    assert "instrumental" in t.tags and "jazz" in t.tags
    ly = engine.write_lyrics("rain")
    assert "[verse]" in ly.lyrics and "[chorus]" in ly.lyrics
