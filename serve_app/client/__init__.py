"""Songsmith's clients: a typed Python client (sync and async), the `songsmith` command line and
an MCP server (`songsmith mcp`). Importing this package needs only httpx (the MCP server also
needs `mcp`, imported when it starts): no torch, no ray.

    from serve_app.client import Songsmith
    with Songsmith("http://127.0.0.1:8000", token) as api:
        job = api.generate(full_described_song="a slow waltz about the sea", audio_duration=30)
        api.download(job, "out/")
"""

from ._common import (
    DEFAULT_URL,
    TOKEN_ENV,
    URL_ENV,
    Downloaded,
    SongEvent,
    SongFailed,
    SongsmithConnectionError,
    SongsmithError,
)
from .client import AsyncSongsmith, EditFields, SongFields, Songsmith, WaitTimeout

__all__ = [
    "DEFAULT_URL", "TOKEN_ENV", "URL_ENV", "AsyncSongsmith", "Downloaded", "EditFields", "SongEvent", "SongFailed",
    "SongFields", "Songsmith", "SongsmithConnectionError", "SongsmithError", "WaitTimeout",
]
