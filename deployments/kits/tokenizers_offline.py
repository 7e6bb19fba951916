"""Offline tokenizer training for the kits (no hub access).

Two byte-level BPE tokenizers, trained on `corpus.py` (pre-tokenized with the `tokenizers` library,
merges learned by a small deterministic BPE trainer here) and wrapped as transformers tokenizers:

* `train_qwen2_tokenizer()` → a `transformers.Qwen2Tokenizer` (== `Qwen2TokenizerFast` in
  transformers 5): Qwen2's NFC normalizer, split regex and byte-level pre-tokenizer, no unk, the
  `<|endoftext|>`, `<|im_start|>`, `<|im_end|>` special tokens. Any UTF-8 text encodes (every byte
  has a token), so non-Latin lyrics never fail.
* `train_clip_tokenizer()` → a `transformers.CLIPTokenizer`: CLIP's lowercase + whitespace
  normalizer, CLIP's split regex, BPE with the `</w>` end-of-word suffix. The vocab holds every
  byte-level symbol both bare and with `</w>` (so no word can fall back to unk), then the learned
  merges, then `<|startoftext|>` / `<|endoftext|>` last, like OpenAI's CLIP vocab.
"""

from __future__ import annotations


from .corpus import corpus_lines

# Bump when the training code changes: it is part of the kits' spec hashes (forces a rebuild).
TRAINER_VERSION = 2

QWEN2_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

# Qwen2-7B-Instruct's chat template (ChatML with a default system prompt).
QWEN2_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}"
    "{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP byte -> printable unicode char map (the byte-level BPE alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def byte_alphabet() -> list[str]:
    """The 256 byte-level symbols, in byte order."""
    table = bytes_to_unicode()
    return [table[b] for b in range(256)]


def _pieces(tok, lines) -> dict[str, int]:
    """Normalize + pre-tokenize lines with `tok`'s pipeline; count the byte-level pieces."""
    counts: dict[str, int] = {}
    for line in lines:
        text = tok.normalizer.normalize_str(line) if tok.normalizer is not None else line
        for piece, _ in tok.pre_tokenizer.pre_tokenize_str(text):
            if piece:
                counts[piece] = counts.get(piece, 0) + 1
    return counts


def train_bpe_merges(
    pieces: dict[str, int], num_merges: int, min_frequency: int = 2, end_of_word_suffix: str = ""
) -> list[tuple[str, str]]:
    """Plain BPE training with deterministic tie-breaking (highest count, then smallest pair).

    The `tokenizers` Rust trainer breaks count ties by hash-map order when `end_of_word_suffix` is
    set, so its output changes from run to run; this small trainer always gives the same merges.
    """
    import heapq
    from collections import defaultdict

    words: list[list[str]] = []
    freqs: list[int] = []
    for piece, freq in sorted(pieces.items()):
        syms = list(piece)
        if end_of_word_suffix:
            syms[-1] = syms[-1] + end_of_word_suffix
        words.append(syms)
        freqs.append(freq)

    pair_counts: dict[tuple[str, str], int] = defaultdict(int)
    where: dict[tuple[str, str], set[int]] = defaultdict(set)
    for i, syms in enumerate(words):
        for pair in zip(syms, syms[1:]):
            pair_counts[pair] += freqs[i]
            where[pair].add(i)
    heap = [(-c, pair) for pair, c in pair_counts.items()]
    heapq.heapify(heap)

    merges: list[tuple[str, str]] = []
    while heap and len(merges) < num_merges:
        neg, pair = heapq.heappop(heap)
        count = pair_counts.get(pair, 0)
        if count != -neg:  # stale entry
            if count > 0:
                heapq.heappush(heap, (-count, pair))
            continue
        if count < min_frequency:
            break
        merges.append(pair)
        a, b = pair
        new = a + b
        for i in sorted(where.pop(pair, ())):
            syms, f = words[i], freqs[i]
            for p in zip(syms, syms[1:]):
                pair_counts[p] -= f
            out: list[str] = []
            j = 0
            while j < len(syms):
                if j + 1 < len(syms) and syms[j] == a and syms[j + 1] == b:
                    out.append(new)
                    j += 2
                else:
                    out.append(syms[j])
                    j += 1
            words[i] = out
            for p in zip(out, out[1:]):
                pair_counts[p] += f
                where[p].add(i)
                heapq.heappush(heap, (-pair_counts[p], p))
        pair_counts.pop(pair, None)
    return merges


def train_qwen2_tokenizer(vocab_size: int = 1536, model_max_length: int = 32768):
    """Train a small Qwen2-style byte-level BPE and wrap it as `transformers.Qwen2Tokenizer`."""
    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import BPE
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tok = Tokenizer(BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    alphabet = byte_alphabet()
    specials = list(QWEN2_SPECIAL_TOKENS)
    merges = train_bpe_merges(_pieces(tok, corpus_lines()), vocab_size - len(specials) - len(alphabet))
    vocab: dict[str, int] = {}
    for sym in [*specials, *alphabet, *(a + b for a, b in merges)]:
        vocab.setdefault(sym, len(vocab))

    qtok = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=["<|im_start|>", "<|im_end|>"],
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )
    qtok.chat_template = QWEN2_CHAT_TEMPLATE
    return qtok


def train_clip_tokenizer(vocab_size: int = 1280, model_max_length: int = 77):
    """Train a small CLIP BPE (`</w>` suffix) and wrap it as `transformers.CLIPTokenizer`."""
    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import BPE
    from transformers import CLIPTokenizer

    bos, eos = "<|startoftext|>", "<|endoftext|>"
    tok = Tokenizer(BPE(unk_token=eos, end_of_word_suffix="</w>", fuse_unk=False))
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(
                Regex(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""),
                behavior="removed",
                invert=True,
            ),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    alphabet = byte_alphabet()
    suffix = "</w>"
    merges = train_bpe_merges(
        _pieces(tok, corpus_lines()), vocab_size - 2 * len(alphabet) - 2, end_of_word_suffix=suffix
    )
    # OpenAI CLIP's vocab layout: bytes, bytes + "</w>", merge results, then the two specials.
    vocab: dict[str, int] = {}
    for sym in [*alphabet, *(c + suffix for c in alphabet), *(a + b for a, b in merges)]:
        vocab.setdefault(sym, len(vocab))
    vocab.setdefault(bos, len(vocab))
    vocab.setdefault(eos, len(vocab))

    ctok = CLIPTokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=eos,
        bos_token=bos,
        eos_token=eos,
        pad_token=eos,
        model_max_length=model_max_length,
    )
    return ctok
