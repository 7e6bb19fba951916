"""Signed download links of the local storage backend: no forging, extending or re-pointing a link,
and no way out of the storage directory through `/files/{key}`."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.e2e.security.rawhttp import raw_request

pytestmark = pytest.mark.serve

CANARY = b"CANARY-" + secrets.token_hex(16).encode()


def sign(key: str, expires: int) -> str:
    """What the app signs (LocalStore._signature), with the secret the test cluster gave it."""
    secret = os.environ["STORAGE_SIGNING_SECRET"].encode()
    return hmac.new(secret, f"v1\n{key}\n{expires}".encode(), hashlib.sha256).hexdigest()


@pytest.fixture(scope="module")
def canaries(song_api):
    """Secret files outside `objects/`: next to the storage root, and in the root itself."""
    root = Path(song_api["storage_dir"])
    paths = [root.parent / "canary.txt", root / "canary.txt"]
    for p in paths:
        p.write_bytes(CANARY)
    yield paths
    for p in paths:
        p.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def song(stored_song) -> dict:
    return stored_song["result"]


def _get(url: str) -> httpx.Response:
    return httpx.get(url, timeout=30)


def test_a_genuine_link_works(song):
    r = _get(song["audio_url"])
    assert r.status_code == 200 and r.content


@pytest.mark.parametrize("mutate", ["zeros", "flip-last", "flip-first", "truncated", "empty", "not-hex", "longer"])
def test_tampered_signatures_are_403(song, mutate):
    url = httpx.URL(song["audio_url"])
    sig = url.params["sig"]
    flip = {"0": "1"}.get(sig[-1], "0")
    forged = {
        "zeros": "0" * len(sig),
        "flip-last": sig[:-1] + flip,
        "flip-first": {"0": "1"}.get(sig[0], "0") + sig[1:],
        "truncated": sig[:-2],
        "empty": "",
        "not-hex": "z" * len(sig),
        "longer": sig + "00",
    }[mutate]
    r = _get(str(url.copy_merge_params({"sig": forged})))
    assert r.status_code in (403, 422), r.text
    assert r.json()["detail"]


@pytest.mark.parametrize("delta", [1, 3600, 10 * 365 * 86400])
def test_links_cannot_be_extended(song, delta):
    url = httpx.URL(song["audio_url"])
    expires = int(url.params["expires"])
    r = _get(str(url.copy_merge_params({"expires": str(expires + delta)})))
    assert r.status_code == 403 and "signature" in r.json()["detail"]


def test_an_expired_link_is_403_even_when_correctly_signed(song_api, song):
    key, expires = song["r2_key"], int(time.time()) - 5
    r = _get(f"{song_api['base_url']}/files/{quote(key)}?expires={expires}&sig={sign(key, expires)}")
    assert r.status_code == 403 and "expired" in r.json()["detail"]


def test_links_cannot_be_pointed_at_another_key(song_api, song):
    params = httpx.URL(song["audio_url"]).params
    for key in (song["cover_image_r2_key"], song["manifest_r2_key"], song["r2_key"] + ".json",
                song["r2_key"].upper()):
        r = _get(f"{song_api['base_url']}/files/{quote(key)}?{params}")
        assert r.status_code == 403, (key, r.status_code)


def _targets(song_api, canaries) -> list[str]:
    """Ways to name a file outside objects/ (the canaries, jobs.db, /etc/passwd) in the URL path."""
    root = Path(song_api["storage_dir"])
    abs_canary = str(canaries[0])
    return [
        "../canary.txt", "../../canary.txt", "../jobs.db", "../meta", "songs/../../canary.txt",
        "%2e%2e/canary.txt", "%2e%2e/%2e%2e/canary.txt", "%2E%2E%2Fcanary.txt", "..%2f..%2fcanary.txt",
        "%2e%2e%2f%2e%2e%2fcanary.txt", "songs%2f..%2f..%2f..%2fcanary.txt",
        "%252e%252e/%252e%252e/canary.txt", "..%252f..%252fcanary.txt",  # double-encoded
        "..\\..\\canary.txt", "..%5c..%5ccanary.txt", "%255c..%255ccanary.txt",
        "/etc/passwd", "%2fetc%2fpasswd", "//etc/passwd", abs_canary, quote(abs_canary, safe=""),
        f"{root}/canary.txt".lstrip("/"), "./../canary.txt", "songs/./../../canary.txt",
        "..%00/canary.txt", "canary.txt%00.wav", "%c0%ae%c0%ae/canary.txt", "\uff0e\uff0e/canary.txt",
        "....//....//canary.txt", "..;/canary.txt",
    ]


def test_files_route_never_leaves_the_storage_directory(song_api, canaries):
    """Every spelling of `..`, separators and absolute paths, unsigned AND correctly signed for the
    decoded key: always 403/404, never a byte of the canaries or of another file."""
    from urllib.parse import unquote

    expires = int(time.time()) + 600
    for target in _targets(song_api, canaries):
        path = "/files/" + quote(target, safe="/%\\;:")
        decoded = unquote(target)  # what the server hands the route (decoded exactly once)
        for sig in ("0" * 64, sign(decoded, expires)):
            status, _, body = raw_request(song_api["base_url"], "GET", f"{path}?expires={expires}&sig={sig}")
            assert status in (403, 404), (target, status, body[:200])
            assert CANARY not in body and b"root:" not in body and b"SQLite" not in body, target


def test_symlinks_inside_storage_cannot_reach_outside(song_api, canaries):
    """Even an object the store never wrote (a planted symlink) is not followed out of objects/."""
    objects = Path(song_api["storage_dir"]) / "objects"
    planted = objects / "planted"
    planted.mkdir(parents=True, exist_ok=True)
    (planted / "link.wav").symlink_to(canaries[0])
    (planted / "dir").symlink_to(canaries[0].parent, target_is_directory=True)
    (planted / "real.wav").write_bytes(b"RIFF-not-a-canary")
    try:
        expires = int(time.time()) + 600
        control = _get(f"{song_api['base_url']}/files/planted/real.wav?expires={expires}"
                       f"&sig={sign('planted/real.wav', expires)}")
        assert control.status_code == 200 and control.content == b"RIFF-not-a-canary"  # signing works
        for key in ("planted/link.wav", f"planted/dir/{canaries[0].name}"):
            r = _get(f"{song_api['base_url']}/files/{quote(key)}?expires={expires}&sig={sign(key, expires)}")
            assert r.status_code in (403, 404), (key, r.status_code)
            assert CANARY not in r.content
    finally:
        (planted / "link.wav").unlink()
        (planted / "dir").unlink()
        (planted / "real.wav").unlink()
        planted.rmdir()


def test_signed_link_to_a_directory_is_404(song_api, song):
    key = f"songs/{song['song_id']}"
    expires = int(time.time()) + 600
    r = _get(f"{song_api['base_url']}/files/{quote(key)}?expires={expires}&sig={sign(key, expires)}")
    assert r.status_code == 404
