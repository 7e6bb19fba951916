"""`songsmith mcp` as a stdio MCP server, driven by the SDK's own client (stdio_client +
ClientSession) against the dev stack: the tools are listed, generate_song makes a 10 s song
while sending progress notifications, and the song is readable as the resource song://<id>."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

pytestmark = pytest.mark.serve

ROOT = Path(__file__).resolve().parents[2]


async def test_generate_song_over_stdio_with_progress_and_the_song_resource(song_api):
    params = StdioServerParameters(command=sys.executable, args=["-m", "serve_app.client.cli", "mcp"], cwd=ROOT,
                                   env={"SONGSMITH_URL": song_api["base_url"], "SONGSMITH_TOKEN": song_api["token"]})
    progress = []

    async def on_progress(value, total, message):
        progress.append((value, total, message))

    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        tools = {t.name for t in (await session.list_tools()).tools}
        assert tools == {"generate_song", "edit_song", "get_song", "list_songs", "cancel_song", "server_capabilities"}

        result = await session.call_tool("generate_song", {"tags": "lofi, piano", "lyrics": "[verse]\nrain",
                                                           "duration_s": 10, "infer_step": 2, "seed": 5},
                                         read_timeout_seconds=300, progress_callback=on_progress)
        assert not result.is_error, result.content
        song = result.structured_content
        assert song["status"] == "succeeded" and song["duration_s"] == 10 and len(song["audio_urls"]) == 1
        assert progress and progress[-1][0] == 100 and any("composing" in m for _, _, m in progress)

        resource = await session.read_resource(f"song://{song['id']}")
        record = json.loads(resource.contents[0].text)
        assert record["id"] == song["id"] and record["result"]["seed"] == 5

        missing = await session.call_tool("get_song", {"song_id": "f" * 32})
        assert missing.is_error and "no such song job" in missing.content[0].text
