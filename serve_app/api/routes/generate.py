"""The seed's synchronous endpoints: each queues a job and answers when the song is done."""

from __future__ import annotations

from fastapi import APIRouter, Request

from serve_app.api.deps import Owner, Svc
from serve_app.api.schemas import (
    BODY_MODES,
    GenerateFromDescription,
    GenerateWithDescribedLyrics,
    GenerateWithLyrics,
    SongOptions,
    SongPublic,
)
from serve_app.api.submit import finished_song, submit
from serve_app.api.views import song_public

router = APIRouter(tags=["songs (synchronous)"])


async def _make_song(body: SongOptions, request: Request, svc: Svc, owner: str) -> SongPublic:
    job, _ = await submit(svc, owner, BODY_MODES[type(body)], body.model_dump())
    return song_public(await finished_song(svc, job), request, svc)


@router.post("/generate-from-description", response_model=SongPublic)
async def generate_from_description(body: GenerateFromDescription, request: Request, svc: Svc, owner: Owner):
    """The LLM writes tags, lyrics, title and categories from your description; waits for the song."""
    return await _make_song(body, request, svc, owner)


@router.post("/generate-with-lyrics", response_model=SongPublic)
async def generate_with_lyrics(body: GenerateWithLyrics, request: Request, svc: Svc, owner: Owner):
    """Your tags and lyrics, sung as written; waits for the song."""
    return await _make_song(body, request, svc, owner)


@router.post("/generate-with-described-lyrics", response_model=SongPublic)
async def generate_with_described_lyrics(body: GenerateWithDescribedLyrics, request: Request, svc: Svc,
                                         owner: Owner):
    """Your tags; the LLM writes lyrics about what you describe; waits for the song."""
    return await _make_song(body, request, svc, owner)
