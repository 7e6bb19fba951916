"""Bearer-token parsing and checking: only digests are held, every malformed header is no token."""

from __future__ import annotations

import hashlib
import statistics
import time

import pytest

from serve_app.auth import MIN_TOKEN_CHARS, MissingSecret, TokenDigests, bearer_from_header, digest, load_tokens

TOKEN = "tok_0123456789abcdefghijklmnop"
OTHER = "another-valid-token-ABCDEFGHIJ"


@pytest.fixture
def digests() -> TokenDigests:
    return TokenDigests((digest(TOKEN), digest(OTHER)))


@pytest.mark.parametrize("header,expected", [
    (f"Bearer {TOKEN}", TOKEN),
    (f"bearer {TOKEN}", TOKEN),
    (f"BEARER {TOKEN}", TOKEN),
    (f"Bearer   {TOKEN}  ", TOKEN),
    ("bearer  x", "x"),
    (None, None),
    ("", None),
    ("Bearer", None),
    ("Bearer ", None),
    ("Bearer    ", None),
    (f"Basic {TOKEN}", None),
    ("Basic dXNlcjpwYXNz", None),
    (TOKEN, None),
    (f"Token {TOKEN}", None),
    (f"Bearer{TOKEN}", None),
    (f"Bearer\t{TOKEN}", None),
])
def test_bearer_from_header(header, expected):
    assert bearer_from_header(header) == expected


def test_verify_accepts_every_configured_token_and_nothing_else(digests):
    assert digests.verify(TOKEN) and digests.verify(OTHER)
    near = TOKEN[:-1] + ("A" if TOKEN[-1] != "A" else "B")
    for bad in (None, "", " ", near, TOKEN + " ", TOKEN[:-1], TOKEN.upper(), "x" * 10_000,
                "caf\xe9", "tök\u00e9n-🎵", "\ud800", hashlib.sha256(TOKEN.encode()).hexdigest()):
        assert not digests.verify(bad), bad


def test_no_tokens_configured_accepts_nothing():
    empty = TokenDigests(())
    assert not empty.verify(TOKEN) and not empty.verify(None) and not empty.verify("")


def test_digests_never_hold_the_token(digests):
    assert TOKEN not in repr(digests) and TOKEN.encode() not in b"".join(digests.digests)
    assert digests.digests[0] == hashlib.sha256(TOKEN.encode()).digest()


def test_verify_time_does_not_depend_on_closeness(digests):
    """SHA-256 first, then a constant-time compare against every digest: a near miss costs what a
    wild guess costs (medians over many calls; bounds are generous for noisy CI machines)."""
    near = TOKEN[:-1] + "A"
    far = "z" * len(TOKEN)

    def median_ns(candidate) -> float:
        runs = []
        for _ in range(30):
            t0 = time.perf_counter_ns()
            for _ in range(200):
                digests.verify(candidate)
            runs.append(time.perf_counter_ns() - t0)
        return statistics.median(runs)

    times = {k: median_ns(v) for k, v in {"near": near, "far": far, "valid": TOKEN}.items()}
    assert max(times.values()) / min(times.values()) < 1.5, times


def test_load_tokens(monkeypatch):
    monkeypatch.setenv("T_ENV", f" {TOKEN} , {OTHER},, ")
    tokens, generated = load_tokens("T_ENV", generate_if_missing=False)
    assert generated is None and tokens.verify(TOKEN) and tokens.verify(OTHER)
    assert not tokens.verify(" " + TOKEN)


@pytest.mark.parametrize("value", ["", " , ", "short", "x" * (MIN_TOKEN_CHARS - 1), "changeme", "CHANGE_ME",
                                   f"{TOKEN},short"])
def test_load_tokens_refuses_missing_short_or_placeholder(monkeypatch, value):
    monkeypatch.setenv("T_ENV", value)
    with pytest.raises(MissingSecret) as exc:
        load_tokens("T_ENV", generate_if_missing=False)
    assert TOKEN not in str(exc.value)  # the error never repeats a configured token


def test_dev_generates_a_token_when_unset(monkeypatch):
    monkeypatch.delenv("T_ENV", raising=False)
    tokens, generated = load_tokens("T_ENV", generate_if_missing=True)
    assert generated and len(generated) >= MIN_TOKEN_CHARS and tokens.verify(generated)
