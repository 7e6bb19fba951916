"""The OpenAPI document reads well as a generated SDK: stable, unique operation ids (the route
functions' names), every operation tagged, request bodies with examples."""

from __future__ import annotations

from types import SimpleNamespace

from serve_app.api import create_api

OPERATION_IDS = {
    ("get", "/health"): "health",
    ("post", "/auth-status"): "auth_status",
    ("post", "/generate-from-description"): "generate_from_description",
    ("post", "/generate-with-lyrics"): "generate_with_lyrics",
    ("post", "/generate-with-described-lyrics"): "generate_with_described_lyrics",
    ("post", "/v1/songs"): "create_song",
    ("get", "/v1/songs"): "list_songs",
    ("get", "/v1/songs/{job_id}"): "get_song",
    ("post", "/v1/songs/{job_id}/cancel"): "cancel_song",
    ("delete", "/v1/songs/{job_id}"): "delete_song",
    ("get", "/v1/songs/{job_id}/edits"): "list_song_edits",
    ("get", "/v1/songs/{job_id}/events"): "stream_song_events",
    ("post", "/v1/edits"): "create_edit",
    ("post", "/v1/uploads"): "create_upload",
    ("post", "/v1/uploads/presign"): "presign_upload",
    ("post", "/v1/uploads/{upload_id}/complete"): "complete_upload",
    ("get", "/v1/uploads/{upload_id}"): "get_upload",
    ("delete", "/v1/uploads/{upload_id}"): "delete_upload",
    ("get", "/v1/usage"): "get_usage",
    ("get", "/v1/capabilities"): "get_capabilities",
    ("get", "/files/{key}"): "download_file",
}


def openapi() -> dict:
    svc = SimpleNamespace(max_body_bytes=64 * 1024, max_upload_bytes=1 << 20, rate_limit=None, tokens=None,
                          links=object())
    return create_api(svc).openapi()


def test_operation_ids_are_the_stable_names_and_every_operation_is_tagged():
    ops = {(m, p): op for p, item in openapi()["paths"].items() for m, op in item.items()}
    assert {k: op["operationId"] for k, op in ops.items()} == OPERATION_IDS
    assert all(op.get("tags") for op in ops.values()), [k for k, op in ops.items() if not op.get("tags")]


def test_song_and_edit_bodies_carry_examples():
    schemas = openapi()["components"]["schemas"]
    assert len(schemas["SongCreate"]["examples"]) == 3 and len(schemas["EditCreate"]["examples"]) == 3
