"""What leaked to anyone who asked (issue 16, item 5): unauthenticated /health showed the models'
filesystem paths and every tenant's queue counts; error texts carried the job database URL, the
storage root, a library's path."""

from __future__ import annotations

import logging

import pytest

from serve_app.auth import owner_digest
from serve_app.jobs import StoreUnavailable
from serve_app.redact import redact
from serve_app.storage import StorageError
from serve_app.storage.local import LocalStore
from tests.support.fakes import API_TOKEN
from tests.unit.serve_app.api.conftest import AUTH

BODY = {"prompt": "lofi, piano", "lyrics": "[verse]\nrain", "audio_duration": 10}
DB_URL = "postgresql+psycopg://songsmith:***@db.internal:5432/jobs"
ROOT = "/srv/songsmith/storage"
SECRETS = ("postgresql+psycopg://", "songsmith:", "db.internal", "5432", "/srv/songsmith", ROOT, "/opt/conda", "10.0.0.5", "hunter2")


def assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked: {text}"


# -- /health -----------------------------------------------------------------------------------


@pytest.fixture
def model_paths(stack):
    async def llm():
        return "/work/main/models/qwen2-tiny-kit on cpu"

    stack.services.probes["llm"] = llm


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-a-real-token-at-all"}, {"Authorization": "x"}])
async def test_health_without_a_valid_token_says_only_ok_or_degraded(client, stack, model_paths, headers):
    r = await client.get("/health", headers=headers)
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    stack.models.ready_error = RuntimeError("replica died")
    r = await client.get("/health", headers=headers)
    assert r.status_code == 503 and r.json() == {"status": "degraded"}


async def test_health_details_need_a_valid_token_and_carry_no_paths(client, stack, model_paths):
    r = await client.get("/health", headers=AUTH)
    body = r.json()
    assert r.status_code == 200 and body["status"] == "ok"
    assert set(body["deployments"]) == {"llm", "music", "cover", "storage", "jobs"}
    assert body["deployments"]["llm"] == {"ready": True, "detail": "…/qwen2-tiny-kit on cpu"}
    assert "/work/main" not in r.text


# -- error texts -------------------------------------------------------------------------------


async def test_a_job_store_outage_answers_503_without_the_database_url(client, stack, monkeypatch):
    def down(*args, **kwargs):
        raise StoreUnavailable(f"job store unavailable ({DB_URL}): connection to server at \"db.internal\" "
                               "(10.0.0.5), port 5432 failed: password=hunter2")

    monkeypatch.setattr(stack.jobs, "create", down)
    r = await client.post("/v1/songs", json=BODY, headers=AUTH)
    assert r.status_code == 503 and r.headers["retry-after"]
    assert r.json()["message"].startswith("job store unavailable")
    assert_clean(r.text)


async def test_a_storage_failure_leaves_no_path_in_the_job_its_answer_or_the_log(client, stack, caplog):
    stack.store.fail_puts = StorageError(f"local storage could not write 'songs/x/a.wav' under {ROOT}: "
                                         "No space left on device", code="io")
    with caplog.at_level(logging.INFO, logger="ray.serve"):
        r = await client.post("/generate-with-lyrics", json=BODY, headers=AUTH)
    assert r.status_code == 502 and "No space left on device" in r.json()["message"]
    assert_clean(r.text)
    (failed,) = stack.jobs.list(owner_digest(API_TOKEN))[0]
    assert failed.status == "failed" and failed.attempts == 3  # retried, then failed for good
    assert_clean(failed.error)
    logged = "\n".join(rec.getMessage() for rec in caplog.records)
    assert "No space left on device" in logged
    assert_clean(logged)


async def test_an_engine_error_naming_a_library_path_is_told_without_it(client, stack):
    stack.models.failures["music"] = RuntimeError("CUDA error: an illegal memory access at "
                                                  "/opt/conda/lib/python3.11/site-packages/torch/lib/libtorch.so")
    r = await client.post("/v1/songs", json=BODY, headers=AUTH)
    job = await stack.runner.wait(r.json()["id"], 5)
    assert job.status == "failed" and "CUDA error" in job.error and "libtorch.so" in job.error
    assert_clean(job.error)
    shown = (await client.get(f"/v1/songs/{job.id}", headers=AUTH)).json()["error"]
    assert_clean(shown)


async def test_local_storage_errors_do_not_name_its_root(tmp_path):
    root = tmp_path / "private-root"
    store = LocalStore(str(root), signing_secret=b"k" * 32)
    (root / "objects").mkdir(parents=True, exist_ok=True)
    (root / "objects" / "songs").write_text("a file where a folder must be")
    with pytest.raises(StorageError) as put:
        await store.put("songs/x/a.wav", b"data", "audio/wav")
    assert str(tmp_path) not in str(put.value) and "songs/x/a.wav" in str(put.value)
    (root / "tmp").rmdir() if (root / "tmp").is_dir() else None
    (root / "tmp").write_text("not a folder")
    with pytest.raises(StorageError) as check:
        await store.check()
    assert str(tmp_path) not in str(check.value)


@pytest.mark.parametrize(("text", "kept"), [
    (f"job store unavailable ({DB_URL}): connection refused", "job store unavailable (<postgresql+psycopg URL>)"),
    ("job store busy (sqlite:////work/main/var/jobs.db): database is locked", "database is locked"),
    (f"could not write 'songs/a.wav' under {ROOT}: No space left", "'songs/a.wav' under …/storage"),
    ("cannot reach S3 endpoint minio.internal:9000 during put", "S3 endpoint <host> during put"),
    ("Error opening '/tmp/tmpab12.wav': Format not recognised.", "'…/tmpab12.wav'"),
    (r"C:\data\store\x.wav broke", "<path> broke"),
    ("from 10.0.0.5 and fe80::1%eth0", "from <address> and <address>"),
    ("password=hunter2 token: abc Authorization: Bearer xyz", "password=*** token: *** Authorization: ***"),
    ("song ab is still running after 30 s; follow it at /v1/songs/ab", "follow it at /v1/songs/ab"),
    ("time 4/4, 16:9, and/or 3.5 s, v1.2.3, at 12:30:45", "time 4/4, 16:9, and/or 3.5 s, v1.2.3, at 12:30:45"),
])
def test_redact_removes_urls_paths_addresses_and_secrets_and_keeps_the_words(text, kept):
    out = redact(text)
    assert kept in out and redact(out) == out
    assert_clean(out)
