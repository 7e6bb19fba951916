"""S3Store against a real S3 server (SeaweedFS ``weed mini``, SigV4 enforced).

One server per session (``s3_server`` fixture); each test works under its own random prefix.
"""

from __future__ import annotations

import os
import time
import uuid
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from serve_app.storage import (
    ObjectNotFound,
    S3Settings,
    S3Store,
    StorageArgs,
    StorageConfigError,
    StorageError,
    content_type_for,
    make_store,
)
from tests.support.fixtures import s3_env, s3_server  # noqa: F401 - fixtures
from tests.support.s3_server import WeedS3Server, free_ports

pytestmark = pytest.mark.s3


def settings_for(server: WeedS3Server, **overrides) -> S3Settings:
    values = {
        "bucket": server.bucket,
        "endpoint_url": server.endpoint_url,
        "access_key_id": server.access_key,
        "secret_access_key": server.secret_key,
        "max_attempts": 2,
        "connect_timeout_s": 2.0,
        "read_timeout_s": 30.0,
    }
    values.update(overrides)
    return S3Settings(**values)


@pytest.fixture
def store(s3_server: WeedS3Server):  # noqa: F811
    s = S3Store(settings_for(s3_server), url_ttl_s=600)
    yield s
    s.close()


@pytest.fixture
def prefix() -> str:
    return f"t-{uuid.uuid4().hex[:12]}/"


async def test_round_trip_list_delete(store: S3Store, prefix: str) -> None:
    await store.check()
    await store.put(prefix + "a/audio.wav", b"RIFFdata", "audio/wav", {"song-id": "a"})
    await store.put(prefix + "a/cover.png", b"\x89PNG", "image/png")
    await store.put(prefix + "ab/manifest.json", b"{}", "application/json")
    assert await store.get(prefix + "a/audio.wav") == b"RIFFdata"
    assert await store.exists(prefix + "a/cover.png")
    assert not await store.exists(prefix + "a/nope.png")
    assert await store.list(prefix + "a/") == [prefix + "a/audio.wav", prefix + "a/cover.png"]
    assert len(await store.list(prefix + "a")) == 3
    with pytest.raises(ObjectNotFound):
        await store.get(prefix + "missing.wav")
    await store.delete(prefix + "ab/manifest.json")
    await store.delete(prefix + "ab/manifest.json")  # idempotent
    assert await store.delete_prefix(prefix + "a/") == 2
    assert await store.list(prefix) == []
    with pytest.raises(ValueError):
        await store.delete_prefix("")


@pytest.mark.parametrize(
    "name",
    ["audio.wav", "audio.flac", "audio.mp3", "audio.ogg", "cover.png", "manifest.json"],
)
async def test_content_type_and_metadata_stored(store: S3Store, prefix: str, name: str) -> None:
    key = prefix + name
    await store.put(key, b"payload", content_type_for(name), {"song-id": "s1"})
    head = await store.head(key)
    assert head.content_type == content_type_for(name)
    assert head.size == len(b"payload")
    assert head.metadata == {"song-id": "s1"}


async def test_presigned_url_over_http(store: S3Store, prefix: str) -> None:
    key = prefix + "song one/audio.flac"  # a space must survive presigning
    await store.put(key, b"fLaC-bytes", "audio/flac")
    url = store.signed_url(key, ttl_s=60)
    assert store.settings.secret_access_key not in url
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(url)
        assert response.status_code == 200
        assert response.content == b"fLaC-bytes"
        assert response.headers["content-type"] == "audio/flac"

        parts = urlsplit(url)
        query = parse_qs(parts.query)
        sig = query["X-Amz-Signature"][0]
        query["X-Amz-Signature"] = [("0" if sig[0] != "0" else "1") + sig[1:]]
        tampered = urlunsplit(parts._replace(query=urlencode(query, doseq=True)))
        assert (await http.get(tampered)).status_code == 403

        other = urlunsplit(parts._replace(path=parts.path.replace("audio.flac", "other.flac")))
        assert (await http.get(other)).status_code == 403


async def test_expired_presigned_url_rejected(store: S3Store, prefix: str) -> None:
    await store.put(prefix + "x.wav", b"1", "audio/wav")
    url = store.signed_url(prefix + "x.wav", ttl_s=1)
    time.sleep(2.1)  # SigV4 expiry has 1 s granularity
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(url)
    assert response.status_code == 403


async def test_large_multipart_round_trip(s3_server: WeedS3Server, prefix: str) -> None:  # noqa: F811
    store = S3Store(settings_for(s3_server, multipart_threshold_bytes=5 * 1024 * 1024))
    data = os.urandom(1024 * 1024) * 20  # 20 MiB -> 4 parts of 5 MiB
    key = prefix + "big.wav"
    await store.put(key, data, "audio/wav", {"kind": "big"})
    head = await store.head(key)
    assert head.size == len(data)
    assert head.content_type == "audio/wav"
    assert head.etag.strip('"').endswith("-4")  # proves multipart was used
    assert head.metadata == {"kind": "big"}
    assert await store.get(key) == data
    store.close()


async def test_wrong_secret_gives_clear_error_without_secrets(
    s3_server: WeedS3Server,  # noqa: F811
    prefix: str,
) -> None:
    wrong_secret = "WRONG-" + s3_server.secret_key[::-1]
    store = S3Store(settings_for(s3_server, secret_access_key=wrong_secret))
    for call in (
        lambda: store.put(prefix + "x.wav", b"1", "audio/wav"),
        lambda: store.get(prefix + "x.wav"),
        lambda: store.list(prefix),
        lambda: store.check(),
        lambda: store.put(prefix + "big.wav", b"0" * (9 * 1024 * 1024), "audio/wav"),
    ):
        with pytest.raises(StorageError) as info:
            await call()
        message = str(info.value)
        assert "R2_ACCESS_KEY_ID" in message and "R2_SECRET_ACCESS_KEY" in message, message
        assert info.value.code in ("credentials", "denied")
        for secret in (wrong_secret, s3_server.secret_key, s3_server.access_key):
            assert secret not in message
        assert info.value.__cause__ is None
    with pytest.raises(StorageError, match="SignatureDoesNotMatch"):
        await store.check()  # startup health check names the precise cause
    store.close()


async def test_unknown_access_key(s3_server: WeedS3Server, prefix: str) -> None:  # noqa: F811
    store = S3Store(settings_for(s3_server, access_key_id="AKNOTAKEY0000"))
    with pytest.raises(StorageError, match="rejected the credentials") as info:
        await store.get(prefix + "x.wav")
    assert "AKNOTAKEY0000" not in str(info.value)
    store.close()


async def test_missing_bucket_named(s3_server: WeedS3Server, prefix: str) -> None:  # noqa: F811
    store = S3Store(settings_for(s3_server, bucket="no-such-bucket-xyz"))
    with pytest.raises(StorageError, match="no-such-bucket-xyz") as info:
        await store.check()
    assert info.value.code == "no_such_bucket"
    with pytest.raises(StorageError, match="no-such-bucket-xyz"):
        await store.put(prefix + "x.json", b"{}", "application/json")
    store.close()


async def test_unreachable_endpoint_names_host() -> None:
    (port,) = free_ports(1)
    settings = S3Settings(
        bucket="some-bucket",
        endpoint_url=f"http://127.0.0.1:{port}",
        access_key_id="AKUNREACHABLE",
        secret_access_key="secret-unreachable",
        max_attempts=1,
        connect_timeout_s=1.0,
    )
    store = S3Store(settings)
    with pytest.raises(StorageError, match=f"cannot reach S3 endpoint 127.0.0.1:{port}") as info:
        await store.check()
    assert info.value.code == "unreachable"
    assert "secret-unreachable" not in str(info.value) and "AKUNREACHABLE" not in str(info.value)
    store.close()


async def test_make_store_from_env(s3_env: dict[str, str], prefix: str) -> None:  # noqa: F811
    store = make_store(StorageArgs(backend="s3", max_attempts=2))
    assert isinstance(store, S3Store) and store.bucket == s3_env["R2_BUCKET_NAME"]
    await store.check()
    await store.put(prefix + "m.json", b'{"ok": true}', "application/json")
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(store.signed_url(prefix + "m.json"))
    assert response.json() == {"ok": True}
    assert response.headers["content-type"] == "application/json"
    store.close()


def test_make_store_s3_without_env_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("R2_BUCKET_NAME", "R2_ENDPOINT_URL", "R2_ACCESS_KEY_ID", "R2_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(StorageConfigError, match="R2_ACCESS_KEY_ID"):
        make_store(StorageArgs(backend="s3"))


async def test_outage_and_recovery_same_store(tmp_path) -> None:
    """S3 crashes (SIGKILL) and comes back on the same ports and data: the same store object
    reports 'unreachable' meanwhile, then works again with the old data (no rebuild needed)."""
    with WeedS3Server(base_dir=tmp_path / "weed", bucket="fault-bucket") as server:
        store = S3Store(settings_for(server, max_attempts=1, connect_timeout_s=1.0))
        await store.put("songs/s1/audio.wav", b"before", "audio/wav")
        server.stop(graceful=False)
        with pytest.raises(StorageError) as info:
            await store.get("songs/s1/audio.wav")
        assert info.value.code == "unreachable"
        assert server.endpoint_url.removeprefix("http://") in str(info.value)
        server.start()
        assert await store.get("songs/s1/audio.wav") == b"before"
        await store.put("songs/s1/cover.png", b"after", "image/png")
        assert await store.list("songs/s1/") == ["songs/s1/audio.wav", "songs/s1/cover.png"]
        store.close()
        server.stop(graceful=False)  # instant teardown; the with-block's stop is then a no-op
