"""Property-based fuzzing of every operation in the app's own OpenAPI schema (schemathesis).

Properties, for every generated request (valid and invalid, with a valid token):
- never a 5xx;
- every 4xx is JSON with a `detail` and a `message`; a 422's `message` names every bad field.

Bounded for CI: 25 examples per operation in the fuzzing phase, no stateful phase. Valid song
bodies are tamed (10 s, at most 2 diffusion steps, no webhook) and queued jobs are cancelled at
once; the three synchronous /generate-* endpoints only get invalid bodies, so the fuzzer never
waits on dozens of renders.
"""

from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

pytestmark = pytest.mark.serve

MAX_EXAMPLES = 25
SONG_PATHS = ("/generate-from-description", "/generate-with-lyrics", "/generate-with-described-lyrics",
              "/v1/songs", "/v1/edits")


def _app_openapi() -> dict:
    """The schema the app serves, built in-process (the pytest plugin needs it at collection time;
    test_served_schema_is_the_fuzzed_one checks the running app serves the same document)."""
    from types import SimpleNamespace

    from serve_app.api import create_api

    return create_api(SimpleNamespace(max_body_bytes=64 * 1024, max_upload_bytes=100 * 1024 * 1024, rate_limit=None,
                                      tokens=None, links=object())).openapi()


OPENAPI = _app_openapi()
schema = schemathesis.openapi.from_dict(OPENAPI, config=schemathesis.Config.from_dict({
    "request-timeout": 60,
    "max-stream-events": 3,
    "generation": {"max-examples": MAX_EXAMPLES, "database": "none"},
    "phases": {"stateful": {"enabled": False}},
    # The synchronous endpoints wait for the song: only invalid bodies there.
    "operations": [{"include-path-regex": "^/generate-", "generation": {"mode": "negative"}}],
}))


def test_served_schema_is_the_fuzzed_one(client):
    assert client.get("/openapi.json").json() == json.loads(json.dumps(OPENAPI))


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _tame(case) -> None:
    """Keep valid song bodies cheap without turning an invalid body into a valid one."""
    if case.method.upper() != "POST" or case.path not in SONG_PATHS or not isinstance(case.body, dict):
        return
    body = case.body
    d = body.get("audio_duration", 180.0)
    if _number(d) and 10 <= d <= 600:
        body["audio_duration"] = 10.0
    s = body.get("infer_step")
    if s is None:  # absent or null: the model's recommendation (8 steps)
        body["infer_step"] = 1
    elif _number(s) and 2 < s <= 200 and float(s).is_integer():
        body["infer_step"] = 2
    v = body.get("variations")
    if _number(v) and 1 < v <= 4 and float(v).is_integer():
        body["variations"] = 1
    if isinstance(body.get("webhook_url"), str):
        body.pop("webhook_url")  # no outbound calls to made-up hosts


def check_error_shape(status: int, content_type: str, text: str) -> None:
    assert status < 500, f"server error {status}: {text[:500]}"
    if 400 <= status < 500:
        assert content_type.startswith("application/json"), (status, content_type, text[:200])
        payload = json.loads(text)
        assert isinstance(payload, dict) and payload.get("detail"), (status, text[:500])
        assert isinstance(payload.get("message"), str) and payload["message"], text[:500]
        if status == 422 and isinstance(payload["detail"], list):
            # A validation error's message names every offending field (or "body" for the whole).
            for err in payload["detail"]:
                names = [str(p) for p in err["loc"] if p != "body"]
                assert (names[-1] if names else "body") in payload["message"], text[:500]


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_well_formed_client_errors(case, song_api, client):
    _tame(case)
    response = case.call(base_url=song_api["base_url"],
                         headers={"Authorization": f"Bearer {song_api['token']}"})
    try:
        check_error_shape(response.status_code, (response.headers.get("content-type") or [""])[0], response.text)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nrequest: {case.as_curl_command()}") from None
    # A job the fuzzer queued is cancelled at once: nothing keeps rendering after this test.
    if case.path in ("/v1/songs", "/v1/edits") and case.method.upper() == "POST" and response.status_code in (200, 202):
        client.post(f"/v1/songs/{response.json()['id']}/cancel")
