"""Seeds: one song seed -> a distinct, stable seed per LLM product; the transformers fallback engine
samples from it (same seed, same words; another seed, other words); no seed = greedy as before."""

from __future__ import annotations

import pytest

from deployments.config import LLMArgs
from deployments.protocol import MAX_SEED, product_seed


def test_product_seeds_are_distinct_stable_and_in_range():
    seeds = {kind: product_seed(1234, kind) for kind in ("tags", "lyrics", "meta")}
    assert len(set(seeds.values())) == 3
    assert all(0 <= s < MAX_SEED for s in seeds.values())
    assert seeds == {kind: product_seed(1234, kind) for kind in ("tags", "lyrics", "meta")}
    assert product_seed(1235, "lyrics") != seeds["lyrics"]
    assert product_seed(None, "lyrics") is None
    assert product_seed(1234, "lyrics") == 1057338563  # stable across processes: a manifest's seed replays


def test_completions_carry_the_product_seed():
    from deployments.llm import lyrics_completion, meta_completion, tags_completion

    args = LLMArgs(model="x")
    assert tags_completion(args, "d", False).seed is None  # seed omitted: greedy, as before
    assert tags_completion(args, "d", False, seed=7).seed == product_seed(7, "tags")
    assert lyrics_completion(args, "d", seed=7).seed == product_seed(7, "lyrics")
    assert meta_completion(args, "d", ["pop"], seed=7).seed == product_seed(7, "meta")


@pytest.mark.models
def test_transformers_engine_same_seed_same_words_other_seed_other_words(kits):
    from deployments.llm import LLMEngine, lyrics_completion
    from serve_app.localdev.cluster import MODELS

    engine = LLMEngine(LLMArgs(model=str(MODELS / "smollm2-135m-instruct"), num_threads=2, max_new_tokens_lyrics=48,
                               dtype="bfloat16"))
    subject = "a song about the sea at dawn"

    def words(seed):
        return engine.complete_batch([lyrics_completion(engine.args, subject, seed)])[0].text

    a, a2, b = words(11), words(11), words(12)
    assert a == a2
    assert a != b
    assert words(None) == words(None)  # greedy
