"""The SSE parser (complete events only, keep-alives, CRLF, multi-line data), the progress a job's
events add up to, the mode rules shared by the CLI and the MCP tools, and that the client package
imports without the server's heavy dependencies."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from serve_app.client._common import KEEPALIVE, SongEvent, SSEParser, error_from, song_mode_fields
from serve_app.client.progress import JobProgress, ProgressBar


def feed(parser: SSEParser, text: str) -> list:
    return [item for line in text.splitlines() for item in parser.feed(line)]


def test_the_parser_yields_complete_events_and_keepalives_only():
    p = SSEParser()
    text = ('id: 1\nevent: status\ndata: {"seq":1,"type":"status","data":{"status":"queued"},"created_at":"t"}\n\n'
            ": keep-alive\n\n"
            'id: 2\r\nevent: progress\r\ndata: {"seq":2,"type":"progress",\r\n'
            'data: "data":{"step":1,"total":8}}\r\n\r\n'
            'id: 3\nevent: stage\ndata: {"seq":3,')  # cut mid-event
    items = feed(p, text)
    assert items == [SongEvent(1, "status", {"status": "queued"}, "t"), KEEPALIVE,
                     SongEvent(2, "progress", {"step": 1, "total": 8}, None)]
    assert items[0].terminal is False
    assert SongEvent(9, "status", {"status": "failed"}).terminal


def test_server_error_bodies_become_their_message():
    e = error_from(404, json.dumps({"detail": "no such song job", "message": "no such song job"}).encode())
    assert (e.status, e.message) == (404, "no such song job")
    e = error_from(502, b"<html>Bad Gateway</html>")
    assert (e.status, e.message) == (502, "<html>Bad Gateway</html>")
    e = error_from(404, json.dumps({"detail": "Not Found"}).encode())
    assert e.message == "Not Found"


def events(*specs) -> list[SongEvent]:
    return [SongEvent(k + 1, t, d) for k, (t, d) in enumerate(specs)]


def test_progress_goes_through_the_stages_and_never_back():
    p = JobProgress()
    shown = []
    for ev in events(("status", {"status": "queued"}), ("status", {"status": "running", "attempt": 1}),
                     ("stage", {"stage": "painting"}), ("stage", {"stage": "composing"}),
                     ("progress", {"stage": "composing", "step": 4, "total": 8}),
                     ("stage", {"stage": "encoding"}), ("stage", {"stage": "uploading"}),
                     ("status", {"status": "succeeded"})):
        p.update(ev)
        shown.append((round(p.percent), p.label))
    assert shown == [(0, "queued"), (1, "running"), (12, "painting"), (20, "composing"),
                     (55, "composing step 4/8"), (90, "encoding"), (95, "uploading"), (100, "succeeded")]
    p = JobProgress()
    p.update(SongEvent(1, "stage", {"stage": "composing"}))
    p.update(SongEvent(2, "status", {"status": "queued", "retry": True}))  # a retry: the bar holds its place
    assert p.percent == 20 and p.label == "queued"


def test_the_bar_draws_on_a_terminal_only():
    class Tty(list):
        def write(self, s):
            self.append(s)

        def flush(self):
            pass

        def isatty(self):
            return True

    tty, p = Tty(), JobProgress()
    p.update(SongEvent(1, "progress", {"stage": "composing", "step": 2, "total": 8}))
    bar = ProgressBar(tty, width=10)
    bar.show(p)
    bar.close()
    assert tty[0].startswith("\r[####......]  38%  composing step 2/8") and tty[-1] == "\n"
    quiet = Tty()
    quiet.isatty = lambda: False
    bar = ProgressBar(quiet)
    bar.show(p)
    bar.close()
    assert quiet == []


@pytest.mark.parametrize(("given", "fields"), [
    ({"description": "sea waltz"}, {"full_described_song": "sea waltz"}),
    ({"description": "lofi", "lyrics": "la"}, {"prompt": "lofi", "lyrics": "la"}),
    ({"tags": "lofi", "lyrics": ""}, {"prompt": "lofi", "lyrics": ""}),
    ({"tags": "lofi", "described_lyrics": "rain"}, {"prompt": "lofi", "described_lyrics": "rain"}),
    ({"tags": "lofi", "description": "rain"}, {"prompt": "lofi", "described_lyrics": "rain"}),
    ({"tags": "lofi"}, {"prompt": "lofi"}),
])
def test_what_a_person_gives_maps_to_one_api_mode(given, fields):
    assert song_mode_fields(**given) == fields


@pytest.mark.parametrize("given", [{}, {"lyrics": "la"}, {"lyrics": "a", "described_lyrics": "b", "tags": "t"},
                                   {"tags": "t", "description": "d", "lyrics": "l"}])
def test_ambiguous_or_empty_requests_are_refused_before_sending(given):
    with pytest.raises(ValueError):
        song_mode_fields(**given)


def test_the_client_imports_without_torch_ray_or_the_server():
    code = ("import sys, serve_app.client, serve_app.client.cli; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'ray', 'fastapi', 'numpy', 'mcp', "
            "'deployments', 'sqlalchemy'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
