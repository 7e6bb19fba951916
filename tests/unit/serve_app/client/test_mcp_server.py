"""The MCP server in-process (the SDK's own `mcp.Client` on the server object) over AsyncSongsmith
and the real app on the fakes: the tools and the song resource template are listed,
generate_song reports progress and returns the song, errors are tool errors carrying the
server's message, and the resource is the job record."""

from __future__ import annotations

import json

import pytest
from mcp import Client

from serve_app.client import AsyncSongsmith
from serve_app.client.mcp_server import build_server
from tests.unit.serve_app.client.conftest import API_TOKEN, BASE_URL

MISSING = "0" * 32


@pytest.fixture
def server(asgi):
    return build_server(lambda: AsyncSongsmith(BASE_URL, API_TOKEN, transport=asgi, poll_interval_s=0.02))


def text_of(result) -> str:
    return "\n".join(c.text for c in result.content if getattr(c, "text", None))


async def test_the_tools_and_the_song_resource_are_listed(server):
    async with Client(server) as mcp:
        tools = {t.name: t for t in (await mcp.list_tools()).tools}
        assert set(tools) == {"generate_song", "get_song", "list_songs", "edit_song", "cancel_song",
                              "server_capabilities"}
        assert {"description", "tags", "lyrics", "duration_s"} <= set(tools["generate_song"].input_schema["properties"])
        templates = (await mcp.list_resource_templates()).resource_templates
        assert [t.uri_template for t in templates] == ["song://{song_id}"]


async def test_generate_song_reports_progress_and_returns_the_song_and_its_resource(server, stack, tmp_path):
    progress = []

    async def on_progress(value, total, message):
        progress.append((value, total, message))

    async with Client(server) as mcp:
        result = await mcp.call_tool("generate_song", {"tags": "lofi, piano", "lyrics": "[verse]\nrain",
                                                       "duration_s": 10, "variations": 2,
                                                       "download_dir": str(tmp_path)},
                                     progress_callback=on_progress)
        assert not result.is_error, text_of(result)
        song = result.structured_content
        assert song["status"] == "succeeded" and song["title"] == "Fake Title" and len(song["audio_urls"]) == 2
        assert [p.rsplit("/", 1)[1] for p in song["files"]] == ["audio.wav", "audio-1.wav", "cover.png", "manifest.json", "song.json"]
        values = [v for v, _, _ in progress]
        assert values == sorted(values) and values[-1] == 100 and all(t == 100 for _, t, _ in progress)
        assert any("composing step" in m for _, _, m in progress)

        resource = await mcp.read_resource(song["resource"])
        record = json.loads(resource.contents[0].text)
        assert record["id"] == song["id"] and record["result"]["manifest_r2_key"]

        listed = (await mcp.call_tool("list_songs", {"limit": 5})).structured_content
        assert [s["id"] for s in listed["items"]] == [song["id"]]
        caps = (await mcp.call_tool("server_capabilities", {})).structured_content
        assert caps["tasks"] == ["text2music", "cover", "repaint", "extend"] and "extract" in caps["unavailable"]
        got = (await mcp.call_tool("get_song", {"song_id": song["id"]})).structured_content
        assert "rain" in got["lyrics"] and got["status"] == "succeeded"

        edit = await mcp.call_tool("edit_song", {"task": "extend", "song_id": song["id"], "take": 1, "extend_s": 5})
        assert not edit.is_error, text_of(edit)
        assert edit.structured_content["mode"] == "extend" and edit.structured_content["parent_id"] == song["id"]


async def test_errors_are_tool_errors_with_the_servers_message(server, stack):
    async with Client(server) as mcp:
        r = await mcp.call_tool("get_song", {"song_id": MISSING})
        assert r.is_error and "no such song job (HTTP 404)" in text_of(r)
        r = await mcp.call_tool("edit_song", {"task": "cover"})
        assert r.is_error and "exactly one source" in text_of(r)
        r = await mcp.call_tool("generate_song", {"description": "x", "duration_s": 5})
        assert r.is_error and "audio_duration: Input should be greater than or equal to 10" in text_of(r)
        stack.models.failures["music"] = RuntimeError("out of GPU memory")
        r = await mcp.call_tool("generate_song", {"description": "x", "duration_s": 10})
        assert r.is_error and "failed: music failed: RuntimeError: out of GPU memory" in text_of(r)
        with pytest.raises(Exception, match="no such song"):
            await mcp.read_resource(f"song://{MISSING}")


async def test_cancel_song_cancels_a_running_song(server, stack, api):
    gate = stack.models.gate("music:1")
    job = await api.create_song(prompt="lofi", lyrics="", audio_duration=10)
    await gate.reached.wait()
    async with Client(server) as mcp:
        r = await mcp.call_tool("cancel_song", {"song_id": job["id"]})
        assert not r.is_error and r.structured_content["status"] == "running"
    assert (await api.wait(job["id"]))["status"] == "cancelled"


async def test_a_cancelled_generate_call_cancels_its_song(server, stack, api):
    import anyio

    gate = stack.models.gate("music:1")
    async with Client(server) as mcp:
        with anyio.move_on_after(5) as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(mcp.call_tool, "generate_song", {"tags": "lofi", "lyrics": "", "duration_s": 10})
                await gate.reached.wait()
                tg.cancel_scope.cancel()  # the assistant gives up on the call
        assert not scope.cancelled_caught
    [job] = (await api.list_songs())["items"]
    for _ in range(250):  # polled: the in-process event stream would answer only when the song ends
        job = await api.get_song(job["id"])
        if job["status"] != "running":
            break
        await anyio.sleep(0.02)
    assert job["status"] == "cancelled" and job["error"] == "cancelled by the client"
    gate.release()
