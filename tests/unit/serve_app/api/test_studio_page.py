"""The studio page (/studio): served without a token, its assets load, it stays out of the OpenAPI
document, and its option lists are the service's vocabulary."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from serve_app.vocabulary import AUDIO_FORMATS, EDIT_TASKS, KEYSCALES, TIME_SIGNATURES, TRACK_NAMES, VOCAL_LANGUAGES


class Page(HTMLParser):
    """Ids, label targets, asset links and each select's option values."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.label_for: set[str] = set()
        self.controls: list[tuple[str, dict]] = []
        self.assets: list[str] = []
        self.options: dict[str, list[str]] = {}
        self._select: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "label" and "for" in a:
            self.label_for.add(a["for"])
        if tag in ("input", "select", "textarea"):
            self.controls.append((tag, a))
        if tag == "script" and "src" in a:
            self.assets.append(a["src"])
        if tag == "link" and a.get("rel") == "stylesheet":
            self.assets.append(a["href"])
        if tag == "select":
            self._select = a["id"]
            self.options[a["id"]] = []
        if tag == "option" and self._select:
            self.options[self._select].append(a.get("value", ""))

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None


async def page(client) -> Page:
    r = await client.get("/studio")
    assert r.status_code == 200
    p = Page()
    p.feed(r.text)
    return p


async def test_the_page_is_html_without_a_token_and_locks_itself_down(client):
    r = await client.get("/studio")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.text.lstrip().lower().startswith("<!doctype html>") and "<title>Songsmith Studio</title>" in r.text
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    head = await client.head("/studio")
    assert head.status_code == 200 and head.content == b""


async def test_every_asset_the_page_names_loads_with_its_type(client):
    p = await page(client)
    assert sorted(p.assets) == ["studio/app.js", "studio/style.css"]  # relative: works under a route prefix
    types = {"studio/app.js": "text/javascript", "studio/style.css": "text/css"}
    for src in p.assets:
        r = await client.get(f"/{src}")
        assert r.status_code == 200, src
        assert r.headers["content-type"].split(";")[0] == types[src]
        assert r.headers["x-content-type-options"] == "nosniff" and len(r.content) > 500


async def test_nothing_is_loaded_from_another_host(client):
    html = (await client.get("/studio")).text
    css = (await client.get("/studio/style.css")).text
    links = re.findall(r'\b(?:src|href)="([^"]*)"', html) + re.findall(r"url\(([^)]*)\)", css)
    assert links and [u for u in links if re.match(r"(?i)([a-z]+:)?//", u)] == []
    assert "@import" not in css and "@font-face" not in css


async def test_unknown_assets_are_404_and_the_slash_form_redirects(client):
    for path in ("/studio/nope.js", "/studio/index.html.bak", "/studio/..%2f..%2fpyproject.toml", "/studio/%2e%2e"):
        r = await client.get(path)
        assert r.status_code == 404, path
        assert r.json()["message"]
    r = await client.get("/studio/", follow_redirects=False)
    assert r.status_code == 308 and r.headers["location"] == "../studio"


async def test_the_studio_is_not_in_the_openapi_document(client):
    doc = (await client.get("/openapi.json")).json()
    assert not [p for p in doc["paths"] if p.startswith("/studio")]
    assert "/v1/songs" in doc["paths"]


async def test_every_control_has_a_label_and_every_id_is_unique(client):
    r = await client.get("/studio")
    ids = re.findall(r'\bid="([^"]+)"', r.text)
    assert len(ids) == len(set(ids))
    p = await page(client)
    unlabelled = [a.get("id") for tag, a in p.controls
                  if a.get("type") != "radio" and a.get("id") not in p.label_for]
    assert unlabelled == []
    assert p.label_for <= p.ids


async def test_the_options_are_the_services_vocabulary(client):
    p = await page(client)
    assert p.options["f-format"] == list(AUDIO_FORMATS) == p.options["e-format"]
    assert p.options["f-key"] == ["", *KEYSCALES]
    assert p.options["f-timesig"] == ["", *TIME_SIGNATURES]
    assert p.options["f-language"] == ["", *VOCAL_LANGUAGES]
    assert sorted(p.options["e-task"]) == sorted(EDIT_TASKS)  # every task; the server's capabilities disable some
    assert set(p.options["u-task"]) <= set(EDIT_TASKS)
    assert p.options["e-track"] == list(TRACK_NAMES)
    assert p.options["e-tracks"] == p.options["u-track"] == []  # copied from e-track by the page (data-options-from)
    html = (await client.get("/studio")).text
    assert html.count('data-options-from="e-track"') == 2


async def test_the_token_never_goes_to_a_url_or_local_storage(client):
    js = (await client.get("/studio/app.js")).text
    assert "localStorage" not in js and "new EventSource" not in js
    assert "sessionStorage.setItem(TOKEN_KEY, token)" in js
    assert "Last-Event-ID" in js and "getReader()" in js
    assert not re.search(r"[?&](token|access_token|auth)=", js)
