"""`songsmith mcp`: an MCP server (official SDK, `mcp.server.mcpserver.MCPServer`) on stdio, so a
desktop assistant can make and edit songs through the Songsmith API.

Tools: generate_song and edit_song (return when the song is done, sending progress
notifications from the job's event stream; cancelling the call cancels the song), get_song,
list_songs, cancel_song. Resources: `song://{song_id}`, each song's job record with its result
(inputs, words, seeds, takes, fresh links to the audio, cover and manifest), as JSON.

Every call goes through `AsyncSongsmith` (SONGSMITH_URL / SONGSMITH_TOKEN or the `--url` and
`--token` of `songsmith mcp`). Nothing is written to stdout but the protocol.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError

from ._common import JOB_ID, SongEvent, SongsmithError, drop_none, resolve_settings, song_mode_fields
from .client import AsyncSongsmith
from .progress import JobProgress

ClientFactory = Callable[[], AsyncSongsmith]
CANCEL_ON_ABORT_S = 10.0
INSTRUCTIONS = """Songsmith makes songs (audio, cover art, title, lyrics) from a description, or from
tags with lyrics, and edits finished songs (cover: restyle; repaint: rewrite a time range; extend:
add seconds after the end). generate_song and edit_song wait until the song is done (tens of
seconds to minutes) and report progress. Songs are also readable as resources song://<id>."""


def song_summary(job: dict) -> dict[str, Any]:
    """What a model needs of a job: status, the error, or the song with its links."""
    result = job.get("result") or {}
    summary: dict[str, Any] = {
        "id": job["id"], "status": job["status"], "mode": job["mode"], "stage": job.get("stage"),
        "progress": job.get("progress"), "error": job.get("error"), "parent_id": job.get("parent_id"),
        "created_at": job.get("created_at"), "finished_at": job.get("finished_at"), "resource": f"song://{job['id']}",
    }
    if result:
        summary.update({
            "title": result.get("title"), "tags": result.get("tags"), "categories": result.get("categories"),
            "lyrics": result.get("lyrics"), "duration_s": result.get("duration_s"),
            "audio_format": result.get("audio_format"), "seed": result.get("seed"),
            "audio_urls": [t["audio_url"] for t in result.get("takes") or []] or [result.get("audio_url")],
            "cover_image_url": result.get("cover_image_url"), "links_expire_in_s": result.get("links_expire_in_s"),
            "controls": result.get("controls"), "notes": result.get("notes"),
        })
    return drop_none(summary) | {"status": job["status"]}


def _tool_error(exc: SongsmithError) -> ToolError:
    return ToolError(f"{exc.message} (HTTP {exc.status})" if exc.status else exc.message)


async def _follow(api: AsyncSongsmith, job: dict, ctx: Context | None, download_dir: str | None) -> dict[str, Any]:
    """Wait for a submitted job, reporting progress; cancel it when the call is cancelled."""
    progress = JobProgress()

    async def on_event(event: SongEvent) -> None:
        if progress.update(event) and ctx is not None:
            await ctx.report_progress(progress.percent, 100.0, f"song {job['id'][:8]}: {progress.label}")

    try:
        final = await api.wait(job["id"], on_event=on_event)
    except anyio.get_cancelled_exc_class():
        with anyio.CancelScope(shield=True), anyio.move_on_after(CANCEL_ON_ABORT_S):
            try:
                await api.cancel(job["id"])
            except SongsmithError:
                pass
        raise
    if final["status"] != "succeeded":
        raise ToolError(f"song {final['id']} {final['status']}: {final.get('error') or final['status']}")
    summary = song_summary(final)
    if download_dir:
        downloaded = await api.download(final, Path(download_dir).expanduser() / final["id"])
        summary["files"] = [str(p) for p in downloaded.files]
    return summary


def build_server(client: ClientFactory) -> MCPServer:
    """The MCP server; `client()` makes the AsyncSongsmith each call uses (and closes)."""
    server = MCPServer(name="songsmith", title="Songsmith", version="0.1.0", instructions=INSTRUCTIONS)

    @server.tool()
    async def generate_song(
        ctx: Context,
        description: str | None = None,
        tags: str | None = None,
        lyrics: str | None = None,
        described_lyrics: str | None = None,
        instrumental: bool = False,
        duration_s: float = 60.0,
        audio_format: Literal["wav", "flac", "mp3", "opus"] = "wav",
        variations: int = 1,
        seed: int | None = None,
        infer_step: int | None = None,
        bpm: int | None = None,
        keyscale: str | None = None,
        timesignature: Literal["2", "3", "4", "6"] | None = None,
        vocal_language: str | None = None,
        download_dir: str | None = None,
    ) -> dict[str, Any]:
        """Make a song and wait until it is done (progress is reported). Give a `description`
        (the service writes tags, lyrics and title), or `tags` with `lyrics` (sung as written) or
        with `described_lyrics` (what the lyrics should be about); tags with a description: lyrics
        about the description. duration_s 10-600; variations 1-4 takes; keyscale like "A minor";
        timesignature beats per bar. With download_dir, the files are saved on this machine under
        download_dir/<song id>/. Returns the song: title, lyrics, audio_urls (short-lived), cover."""
        try:
            mode = song_mode_fields(description, tags, lyrics, described_lyrics)
        except ValueError as exc:
            raise ToolError(str(exc)) from None
        fields = drop_none({**mode, "instrumental": instrumental or None, "audio_duration": duration_s,
                            "audio_format": audio_format, "variations": variations, "seed": seed,
                            "infer_step": infer_step, "bpm": bpm, "keyscale": keyscale,
                            "timesignature": timesignature, "vocal_language": vocal_language})
        async with client() as api:
            try:
                job = await api.create_song(**fields)
                return await _follow(api, job, ctx, download_dir)
            except SongsmithError as exc:
                raise _tool_error(exc) from None

    @server.tool()
    async def edit_song(
        ctx: Context,
        task: Literal["cover", "repaint", "extend", "extract", "lego", "complete"],
        song_id: str | None = None,
        take: int = 0,
        upload_id: str | None = None,
        audio_file: str | None = None,
        tags: str | None = None,
        lyrics: str | None = None,
        repaint_start_s: float | None = None,
        repaint_end_s: float | None = None,
        extend_s: float | None = None,
        cover_strength: float | None = None,
        track_name: str | None = None,
        complete_tracks: list[str] | None = None,
        seed: int | None = None,
        infer_step: int | None = None,
        audio_format: Literal["wav", "flac", "mp3", "opus"] | None = None,
        variations: int | None = None,
        download_dir: str | None = None,
    ) -> dict[str, Any]:
        """Make a new song from a finished one (`song_id`, optionally `take`), an upload
        (`upload_id`) or a local audio file (`audio_file`, uploaded first), and wait until it is
        done. Tasks: cover (tags restyle it; cover_strength 0-1, 1 = close to the source), repaint
        (repaint_start_s..repaint_end_s written anew), extend (extend_s seconds added at the end);
        extract / lego (track_name) and complete (complete_tracks) need a base checkpoint. Tags and
        lyrics default to the source song's (a file needs tags)."""
        given = [name for name, value in (("song_id", song_id), ("upload_id", upload_id),
                                          ("audio_file", audio_file)) if value]
        if len(given) != 1:
            raise ToolError("give exactly one source: song_id, upload_id or audio_file")
        fields = drop_none({"prompt": tags, "lyrics": lyrics, "repaint_start_s": repaint_start_s,
                            "repaint_end_s": repaint_end_s, "extend_s": extend_s, "cover_strength": cover_strength,
                            "track_name": track_name, "complete_tracks": complete_tracks, "seed": seed,
                            "infer_step": infer_step, "audio_format": audio_format, "variations": variations})
        async with client() as api:
            try:
                if audio_file:
                    upload_id = (await api.upload(Path(audio_file).expanduser()))["upload_id"]
                source = {"song_id": song_id, "take": take or None} if song_id else {"upload_id": upload_id}
                job = await api.create_edit(task, **source, **fields)
                return await _follow(api, job, ctx, download_dir)
            except SongsmithError as exc:
                raise _tool_error(exc) from None

    @server.tool()
    async def get_song(song_id: str) -> dict[str, Any]:
        """A song's status (queued, running with its stage and progress, succeeded, failed with
        its error, cancelled) and, once done, the song with fresh links."""
        async with client() as api:
            try:
                return song_summary(await api.get_song(song_id))
            except SongsmithError as exc:
                raise _tool_error(exc) from None

    @server.tool()
    async def list_songs(
        limit: int = 10,
        status: list[Literal["queued", "running", "succeeded", "failed", "cancelled"]] | None = None,
        mode: list[str] | None = None,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """Your songs, newest first (limit 1-100), optionally only some statuses or kinds (mode:
        description, lyrics, described_lyrics, cover, repaint, extend, ...). Pass next_cursor as
        cursor for the next page."""
        async with client() as api:
            try:
                page = await api.list_songs(limit=limit, status=status, mode=mode, cursor=cursor)
            except SongsmithError as exc:
                raise _tool_error(exc) from None
        return {"items": [song_summary(j) for j in page["items"]], "next_cursor": page.get("next_cursor")}

    @server.tool()
    async def cancel_song(song_id: str) -> dict[str, Any]:
        """Cancel a queued song (at once) or a running one (at its next step)."""
        async with client() as api:
            try:
                return song_summary(await api.cancel(song_id))
            except SongsmithError as exc:
                raise _tool_error(exc) from None

    @server.tool()
    async def server_capabilities() -> dict[str, Any]:
        """What this Songsmith server can make: the edit tasks it runs (and why not the others),
        the stems extract/lego take, the number of takes, durations and formats. Ask before an
        edit_song with extract, lego or complete."""
        async with client() as api:
            try:
                return await api.capabilities()
            except SongsmithError as exc:
                raise _tool_error(exc) from None

    @server.resource("song://{song_id}", name="song", title="A song's job record and result",
                     description="The job with its result: inputs, tags, lyrics, seed, takes, timings, "
                                 "fresh audio, cover and manifest links.",
                     mime_type="application/json")
    async def song_resource(song_id: str) -> str:
        if not JOB_ID.match(song_id):
            raise ResourceNotFoundError(f"no such song: {song_id!r} is not a song id")
        async with client() as api:
            try:
                return json.dumps(await api.get_song(song_id), indent=2, ensure_ascii=False)
            except SongsmithError as exc:
                if exc.status == 404:
                    raise ResourceNotFoundError(f"no such song: {song_id}") from None
                raise ResourceError(exc.message) from None

    return server


def run(base_url: str | None = None, token: str | None = None) -> None:
    """Serve on stdio until the client closes the connection."""
    resolve_settings(base_url, token)  # a bad URL fails now, not at the first call
    server = build_server(lambda: AsyncSongsmith(base_url, token, timeout=60.0))
    server.run("stdio")


if __name__ == "__main__":
    run()
