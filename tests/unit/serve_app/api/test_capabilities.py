"""GET /v1/capabilities: what the studio and the clients offer comes from the server's models."""

from __future__ import annotations

from serve_app.vocabulary import TRACK_NAMES
from tests.unit.serve_app.api.conftest import AUTH


async def test_a_turbo_server_lists_its_tasks_and_why_the_others_are_missing(client):
    r = await client.get("/v1/capabilities", headers=AUTH)
    assert r.status_code == 200
    caps = r.json()
    assert caps["tasks"] == ["text2music", "cover", "repaint", "extend"]
    assert set(caps["unavailable"]) == {"extract", "lego", "complete"}
    assert all("music_base" in why for why in caps["unavailable"].values())  # says how to get them
    assert caps["max_variations"] == 4 and (caps["min_duration_s"], caps["max_duration_s"]) == (10.0, 600.0)
    assert caps["audio_formats"] == ["wav", "flac", "mp3", "opus"] and "en" in caps["vocal_languages"]
    # What it lists is what POST /v1/edits accepts: the same words in the 422.
    r = await client.post("/v1/edits", json={"task": "extract", "source": {"song_id": "0" * 32},
                                             "track_name": "vocals"}, headers=AUTH)
    assert r.status_code == 422 and caps["unavailable"]["extract"] in r.json()["message"]


async def test_a_base_server_offers_every_task_and_the_stems(client, stack):
    stack.models.base_model = True
    caps = (await client.get("/v1/capabilities", headers=AUTH)).json()
    assert caps["tasks"][-3:] == ["extract", "lego", "complete"] and caps["unavailable"] == {}
    assert caps["track_names"] == list(TRACK_NAMES)


async def test_capabilities_need_a_token(client):
    assert (await client.get("/v1/capabilities")).status_code == 401
