"""A song generated through the API lands in a real S3 bucket (SeaweedFS, SigV4 credentials enforced)."""

from __future__ import annotations

import io
import os
import json

import httpx
import pytest
import soundfile as sf

from tests.conftest import fast_app_args

pytestmark = [pytest.mark.serve, pytest.mark.s3]


@pytest.fixture(scope="module")
def s3_app(serve_cluster, s3_server, api_token, tmp_path_factory):
    env = s3_server.env()
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # build_app validates the R2_* settings on the driver
    args = fast_app_args(str(tmp_path_factory.mktemp("unused")), storage={"backend": "s3", "url_ttl_s": 600})
    # Replicas read R2 secrets from their environment, as production nodes do.
    args["ingress"]["deployment"]["runtime_env"] = {"env_vars": env}
    try:
        base = serve_cluster.deploy(args, name="songsmith-s3", route_prefix="/s3", token=api_token)
        yield {"base_url": base, "token": api_token}
    finally:
        serve_cluster.delete("songsmith-s3")
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_song_lands_in_the_bucket(s3_app, s3_server):
    body = {"prompt": "lofi, piano", "lyrics": "[verse]\nrain on the roof", "audio_duration": 10.0, "audio_format": "mp3"}
    r = httpx.post(s3_app["base_url"] + "/generate-with-lyrics", json=body,
                   headers={"Authorization": f"Bearer {s3_app['token']}"}, timeout=300)
    assert r.status_code == 200, r.text
    song = r.json()
    s3 = s3_server.client()
    obj = s3.get_object(Bucket=s3_server.bucket, Key=song["r2_key"])
    audio = obj["Body"].read()
    assert obj["ContentType"] == "audio/mpeg"
    info = sf.info(io.BytesIO(audio))
    assert info.samplerate == 48000 and abs(info.duration - 10.0) < 0.05
    head = s3.head_object(Bucket=s3_server.bucket, Key=song["cover_image_r2_key"])
    assert head["ContentType"] == "image/png"
    manifest = json.loads(s3.get_object(Bucket=s3_server.bucket, Key=song["manifest_r2_key"])["Body"].read())
    assert manifest["result"]["r2_key"] == song["r2_key"]
    listed = s3.list_objects_v2(Bucket=s3_server.bucket, Prefix=f"songs/{song['song_id']}/")
    assert sorted(o["Key"].rsplit("/", 1)[1] for o in listed["Contents"]) == ["audio.mp3", "cover.png", "manifest.json"]
    # The response's links are real presigned S3 URLs that serve the stored bytes.
    assert "X-Amz-Signature" in song["audio_url"] and s3_server.endpoint_url in song["audio_url"]
    fetched = httpx.get(song["audio_url"], timeout=30)
    assert fetched.status_code == 200 and fetched.content == audio
    assert s3_app["token"] not in r.text and s3_server.secret_key not in r.text


def test_health_reports_the_bucket(s3_app):
    r = httpx.get(s3_app["base_url"] + "/health", timeout=30, headers={"Authorization": f"Bearer {s3_app['token']}"})
    assert r.status_code == 200 and r.json()["deployments"]["storage"]["detail"] == "s3"


def test_a_large_upload_goes_straight_to_the_bucket_through_a_presigned_put(s3_app, s3_server):
    import numpy as np

    auth = {"Authorization": f"Bearer {s3_app['token']}"}
    r = httpx.post(s3_app["base_url"] + "/v1/uploads/presign", headers=auth, timeout=30)
    assert r.status_code == 201, r.text
    link = r.json()
    assert link["method"] == "PUT" and "X-Amz-Signature" in link["put_url"]
    buf = io.BytesIO()
    sf.write(buf, np.zeros((3 * 22_050, 1), np.float32), 22_050, format="FLAC")
    put = httpx.put(link["put_url"], content=buf.getvalue(), headers={"Content-Type": link["content_type"]}, timeout=30)
    assert put.status_code == 200, put.text
    done = httpx.post(s3_app["base_url"] + f"/v1/uploads/{link['upload_id']}/complete", headers=auth, timeout=60)
    assert done.status_code == 201, done.text
    up = done.json()
    assert (up["sample_rate"], up["channels"], up["original"]["sample_rate"]) == (48_000, 2, 22_050)
    s3 = s3_server.client()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_server.bucket, Prefix="uploads/")["Contents"]]
    assert sorted(k.rsplit("/", 1)[1] for k in keys if link["upload_id"] in k) == ["audio.flac", "upload.json"]
    # A PUT that is not audio is refused when completed, and leaves nothing behind.
    r = httpx.post(s3_app["base_url"] + "/v1/uploads/presign", headers=auth, timeout=30).json()
    httpx.put(r["put_url"], content=b"not audio" * 100, headers={"Content-Type": r["content_type"]}, timeout=30)
    bad = httpx.post(s3_app["base_url"] + f"/v1/uploads/{r['upload_id']}/complete", headers=auth, timeout=30)
    assert bad.status_code == 422 and bad.json()["message"].startswith("file: ")
    listed = s3.list_objects_v2(Bucket=s3_server.bucket, Prefix="uploads/").get("Contents", [])
    assert not [o for o in listed if r["upload_id"] in o["Key"]]
