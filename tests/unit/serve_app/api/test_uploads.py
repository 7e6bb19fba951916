"""/v1/uploads: audio is decoded and checked before it can cost GPU time, stored at 48 kHz stereo
under the owner's folder; bad files are 4xx that say what is wrong; others' uploads are 404s."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from tests.unit.serve_app.api.conftest import AUTH, OTHER
from tests.unit.serve_app.api.test_edits import wav

AUDIO = {**AUTH, "Content-Type": "audio/wav"}


@pytest.fixture
def stack_options():
    return {"max_upload_bytes": 2 * 1024 * 1024}


async def test_an_upload_is_stored_resampled_and_can_be_read_and_deleted(client, stack):
    r = await client.post("/v1/uploads?filename=take.wav", content=wav(2.0, rate=44_100, channels=1), headers=AUDIO)
    assert r.status_code == 201, r.text
    up = r.json()
    assert up["sample_rate"] == 48_000 and up["channels"] == 2 and up["duration_s"] == pytest.approx(2.0, abs=1e-3)
    assert up["original"] | {"bytes": 0} == {"format": "wav", "sample_rate": 44_100, "channels": 1, "bytes": 0,
                                             "duration_s": 2.0, "filename": "take.wav"}
    keys = await stack.store.list("uploads/")
    assert len(keys) == 2 and all(f"/{up['upload_id']}/" in k for k in keys)
    frames, rate = sf.read(io.BytesIO(await stack.store.get(next(k for k in keys if k.endswith(".flac")))))
    assert rate == 48_000 and frames.shape == (96_000, 2)
    assert (await client.get(f"/v1/uploads/{up['upload_id']}", headers=AUTH)).json()["upload_id"] == up["upload_id"]
    assert (await client.get(f"/v1/uploads/{up['upload_id']}", headers=OTHER)).status_code == 404
    assert (await client.delete(f"/v1/uploads/{up['upload_id']}", headers=OTHER)).status_code == 404
    assert (await client.delete(f"/v1/uploads/{up['upload_id']}", headers=AUTH)).status_code == 204
    assert (await client.get(f"/v1/uploads/{up['upload_id']}", headers=AUTH)).status_code == 404
    assert await stack.store.list("uploads/") == []


def flac(seconds: float) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.zeros((int(seconds * 8000), 2), np.float32), 8000, format="FLAC")
    return buf.getvalue()


@pytest.mark.parametrize(("data", "status", "words"), [
    (b"", 422, "file: the file is empty"),
    (b"not audio at all, just text" * 10, 422, "file: source audio is not a readable wav, flac, mp3 or ogg file"),
    (wav(0.5), 422, "at least 1 s is needed"),
    (wav(0.0) , 422, "no samples"),
])
async def test_unusable_files_are_422s_that_say_why(client, data, status, words):
    r = await client.post("/v1/uploads", content=data, headers=AUDIO)
    assert r.status_code == status and words in r.json()["message"], r.text
    assert "/" not in r.json()["message"].split("file: ", 1)[1].replace("wav, flac", "")  # no paths


async def test_too_long_too_big_and_not_audio_are_refused(client, stack):
    stack.services.max_upload_s = 5.0
    r = await client.post("/v1/uploads", content=flac(6.0), headers=AUDIO)
    assert r.status_code == 422 and "at most 5 s is accepted" in r.json()["message"]
    r = await client.post("/v1/uploads", content=b"\0" * (2 * 1024 * 1024 + 1), headers=AUDIO)
    assert r.status_code == 413
    r = await client.post("/v1/uploads", content=wav(2.0), headers={**AUTH, "Content-Type": "text/plain"})
    assert r.status_code == 415 and "is not audio" in r.json()["message"]
    # Other routes keep the small JSON limit.
    r = await client.post("/v1/songs", content=b"{" + b" " * 70_000 + b"}",
                          headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 413


async def test_uploads_need_a_token(client):
    assert (await client.post("/v1/uploads", content=wav(2.0), headers={"Content-Type": "audio/wav"})).status_code == 401


async def test_presigned_uploads_need_s3_storage_and_unknown_ids_are_404(client):
    r = await client.post("/v1/uploads/presign", headers=AUTH)
    assert r.status_code == 409 and "POST the file to /v1/uploads" in r.json()["message"]
    r = await client.post(f"/v1/uploads/{'e' * 32}/complete", headers=AUTH)
    assert r.status_code == 404
