"""Signed, expiring download links of the local storage backend (mounted only for it; S3 presigns)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from serve_app.api.deps import Svc
from serve_app.storage import LinkInvalid

router = APIRouter(tags=["files"])


@router.get("/files/{key:path}", operation_id="download_file")
async def download(
    key: str,
    svc: Svc,
    expires: Annotated[int, Query(description="Link expiry (unix seconds).")],
    sig: Annotated[str, Query(min_length=1, max_length=128, description="Link signature.")],
) -> FileResponse:
    """The object behind a link this service signed: 403 when expired or forged, 404 when gone."""
    try:
        path = svc.links.verify(key, expires, sig)
    except ValueError:  # a malformed key: as good as a forged signature
        raise LinkInvalid() from None
    return FileResponse(path, media_type=svc.links.content_type(key))
