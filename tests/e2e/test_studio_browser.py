"""The studio in a real browser (headless Debian chromium driven by Playwright) on the dev stack:
paste the token, create a song, watch it live to the end (the first event stream is cut short: the
page must resume it with Last-Event-ID), play it, pick a repaint range on its waveform, delete it.

Never `playwright install` (it downloads a browser): the system chromium is used. Without
/usr/bin/chromium this skips, unless REQUIRE_BROWSER_TESTS is set (`make test` sets it), then it
fails. SONGSMITH_UPDATE_SCREENSHOT=1 also copies the finished song's screenshot to docs/studio.png.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.serve

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
DOCS_SHOT = Path(__file__).resolve().parents[2] / "docs" / "studio.png"
DURATION_S = 10
STEPS = 2
SONG_TIMEOUT_MS = 240_000

if not CHROMIUM.exists() and not os.environ.get("REQUIRE_BROWSER_TESTS"):
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium, or `make browser`); "
                "set REQUIRE_BROWSER_TESTS=1 to fail instead", allow_module_level=True)

# Every text the song's status line shows, in order: removed text nodes keep their text, so the
# observer's records hold each one, however many changes land between two callbacks.
RECORD_STATUS = """() => {
  window.statusHistory = [];
  const node = document.getElementById('song-status');
  new MutationObserver((records) => {
    for (const r of records) for (const n of r.removedNodes) window.statusHistory.push(n.textContent);
  }).observe(node, {childList: true});
}"""

FIRST_EVENT = 'id: 1\nevent: status\ndata: {"seq":1,"type":"status","data":{"status":"queued"},"created_at":""}\n\n'

AUDIO_READY = """() => {
  const a = document.querySelector('#takes audio');
  return a !== null && a.readyState >= 1 && Number.isFinite(a.duration) && a.duration > 0;
}"""


@pytest.fixture
def shots(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("studio-screenshots")
    print(f"studio screenshots: {d}")
    return d


def test_create_watch_play_and_delete_a_song_in_the_studio(song_api, shots):
    if not CHROMIUM.exists():
        pytest.fail(f"REQUIRE_BROWSER_TESTS is set but {CHROMIUM} is missing (run `make browser`)")
    from playwright.sync_api import expect, sync_playwright

    base, token = song_api["base_url"].rstrip("/"), song_api["token"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            urls: list[str] = []
            errors: list[str] = []
            page.on("request", lambda r: urls.append(r.url))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("dialog", lambda d: d.accept())  # the delete confirmation
            # The first event stream ends after one event, as a restart or a proxy would end it:
            # the page must reconnect with Last-Event-ID and carry on live.
            streams: list[dict] = []

            def cut_first_stream(route):
                streams.append(route.request.headers)
                if len(streams) > 1:
                    return route.continue_()
                route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=FIRST_EVENT)

            page.route("**/v1/songs/*/events", cut_first_stream)

            page.goto(f"{base}/studio")
            expect(page.locator("body")).to_have_attribute("data-ready", "true")
            page.get_by_label("API token").fill(token)
            page.get_by_role("button", name="Use token").click()
            expect(page.locator("#token-state")).to_have_text("Token set for this tab.")

            form = page.locator("#create-form")
            form.get_by_label("Tags and lyrics").check()
            form.get_by_label("Tags", exact=True).fill("lofi, piano")
            form.get_by_label("Lyrics", exact=True).fill("[verse]\nrain on the window")
            form.get_by_label("Duration (s)").fill(str(DURATION_S))
            form.get_by_label("Diffusion steps").fill(str(STEPS))
            page.evaluate(RECORD_STATUS)
            form.get_by_role("button", name="Create song").click()

            status = page.locator("#song-status")
            expect(status).to_have_attribute("data-status", re.compile("running|succeeded"), timeout=60_000)
            page.screenshot(path=shots / "1-running.png", full_page=True)
            expect(status).to_have_attribute("data-status", "succeeded", timeout=SONG_TIMEOUT_MS)
            expect(status).to_have_text("Status: succeeded")
            song_id = page.locator("#song").get_attribute("data-id")
            assert song_id and len(song_id) == 32

            # Watched live: the stages went by and the diffusion steps counted up to the last one.
            history = page.evaluate("window.statusHistory")
            assert any("composing" in h for h in history), history
            assert any(f"step {STEPS} of {STEPS}" in h for h in history), history
            composing = page.locator('#song-stages li[data-stage="composing"]')
            expect(composing).to_have_text(f"composing (step {STEPS} of {STEPS})")
            for stage in page.locator("#song-stages li").all():
                expect(stage).to_have_attribute("data-state", "done")
            assert page.locator("#song-progress").evaluate("p => p.value === p.max")

            # Playable: the <audio> loads the signed link and knows the song's length.
            page.wait_for_function(AUDIO_READY, timeout=60_000)
            duration = page.locator("#takes audio").first.evaluate("a => a.duration")
            assert abs(duration - DURATION_S) < 0.1, duration
            expect(page.locator("#song-cover")).to_be_visible()
            assert page.locator("#song-cover").evaluate("img => img.complete && img.naturalWidth > 0")
            # The manifest link fetches the stored manifest of this song.
            manifest = page.evaluate("async () => (await fetch(document.getElementById('manifest-download').href)).json()")
            assert manifest["song_id"] == song_id, manifest
            expect(page.locator("#library-list li", has_text="succeeded").first).to_be_visible()
            assert page.locator(f'#library-list li[data-id="{song_id}"]').count() == 1

            # The waveform decodes the take; dragging across it sets the repaint range.
            page.get_by_text("Edit this song").click()
            expect(page.locator("#e-wave-note")).to_contain_text("Drag across the waveform", timeout=30_000)
            box = page.locator("#e-wave").bounding_box()
            page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] / 2)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] / 2, steps=5)
            page.mouse.up()
            start, end = float(page.locator("#e-start").input_value()), float(page.locator("#e-end").input_value())
            assert abs(start - 0.2 * DURATION_S) <= 0.2 and abs(end - 0.6 * DURATION_S) <= 0.2, (start, end)
            page.screenshot(path=shots / "2-succeeded.png", full_page=True)

            page.locator("#song").get_by_role("button", name="Delete").click()
            expect(page.locator("#flash")).to_contain_text("Deleted")
            expect(page.locator("#song")).to_be_hidden()
            expect(page.locator(f'#library-list li[data-id="{song_id}"]')).to_have_count(0)
            with page.expect_response(lambda r: "/v1/songs?" in r.url and r.status == 200):
                page.get_by_role("button", name="Refresh").click()
            expect(page.locator(f'#library-list li[data-id="{song_id}"]')).to_have_count(0)
            page.screenshot(path=shots / "3-deleted.png", full_page=True)

            # The token stayed in the tab's session storage and headers: never a URL, never localStorage.
            assert page.evaluate("sessionStorage.getItem('songsmith.studio.token')") == token
            assert page.evaluate("localStorage.length") == 0
            assert not [u for u in urls if token in u]
            assert any(u.endswith(f"/v1/songs/{song_id}/events") for u in urls)
            assert errors == []
            assert len(streams) >= 2, streams  # reconnected once the first stream ended
            assert all(h.get("authorization") == f"Bearer {token}" for h in streams)
            assert [h.get("last-event-id") for h in streams[:2]] == ["1", "1"]
        finally:
            browser.close()

    r = httpx.get(f"{base}/v1/songs/{song_id}", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code == 404
    if os.environ.get("SONGSMITH_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(shots / "2-succeeded.png", DOCS_SHOT)


def _wav(path: Path, seconds: float, rate: int = 44_100) -> Path:
    import numpy as np
    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, np.stack([0.3 * np.sin(2 * np.pi * 220 * t), 0.2 * np.sin(2 * np.pi * 330 * t)], 1), rate)
    return path


def test_an_uploaded_file_becomes_a_cover_and_the_tasks_follow_the_server(song_api, shots, tmp_path):
    """Upload a 4 s 44.1 kHz wav from the page, make a cover of it, play it; the edit tasks offered
    are the server's (/v1/capabilities): with music_base every task, without it the base-only ones
    disabled with the server's reason."""
    if not CHROMIUM.exists():
        pytest.fail(f"REQUIRE_BROWSER_TESTS is set but {CHROMIUM} is missing (run `make browser`)")
    from playwright.sync_api import expect, sync_playwright

    base, token = song_api["base_url"].rstrip("/"), song_api["token"]
    source = _wav(tmp_path / "hum.wav", 4.0)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{base}/studio")
            expect(page.locator("body")).to_have_attribute("data-ready", "true")
            page.get_by_label("API token").fill(token)
            with page.expect_response(lambda r: r.url.endswith("/v1/capabilities") and r.status == 200):
                page.get_by_role("button", name="Use token").click()
            # The e2e stack has music_base: extract is offered, enabled.
            assert page.locator('#u-task option[value="extract"]').is_enabled()
            assert page.locator('#e-task option[value="complete"]').is_enabled()
            tracks = page.locator("#e-track option").all_inner_texts()
            assert len(tracks) == 12 and page.locator("#u-track option").all_inner_texts() == tracks

            form = page.locator("#upload-form")
            form.get_by_label("Audio file").set_input_files(str(source))
            form.get_by_label("Make").select_option("cover")
            form.get_by_label("Tags").fill("jazz, brushes")
            form.get_by_label("Diffusion steps").fill(str(STEPS))
            form.get_by_role("button", name="Upload and start").click()
            expect(page.locator("#u-note")).to_contain_text("Uploaded hum.wav: 4.0 s")
            status = page.locator("#song-status")
            expect(status).to_have_attribute("data-status", "succeeded", timeout=SONG_TIMEOUT_MS)
            page.wait_for_function(AUDIO_READY, timeout=60_000)
            duration = page.locator("#takes audio").first.evaluate("a => a.duration")
            assert abs(duration - 4.0) < 0.1, duration  # resampled to 48 kHz, same length
            song_id = page.locator("#song").get_attribute("data-id")
            page.screenshot(path=shots / "4-upload-cover.png", full_page=True)

            # A server without the base tasks: they stay listed, disabled, with its reason.
            turbo = httpx.get(f"{base}/v1/capabilities", headers={"Authorization": f"Bearer {token}"}).json()
            turbo["tasks"] = ["text2music", "cover", "repaint", "extend"]
            turbo["unavailable"] = {t: "needs a base (non-turbo) ACE-Step 1.5 checkpoint" for t in
                                    ("extract", "lego", "complete")}
            page.route("**/v1/capabilities", lambda route: route.fulfill(json=turbo))
            page.reload()
            expect(page.locator("body")).to_have_attribute("data-ready", "true")
            expect(page.locator('#u-task option[value="extract"]')).to_be_disabled()
            assert page.locator('#e-task option[value="lego"]').get_attribute("title").startswith("lego needs a base")
            assert page.locator("#u-task").input_value() == "cover"
            assert errors == []
        finally:
            browser.close()

    job = httpx.get(f"{base}/v1/songs/{song_id}", headers={"Authorization": f"Bearer {token}"}, timeout=30).json()
    assert job["mode"] == "cover" and job["request"]["prompt"] == "jazz, brushes"
    assert set(job["result"]["parent"]) == {"upload_id"}
