"""Audio files to edit: upload (checked before it costs GPU time), read, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from serve_app.api.deps import Owner, Svc
from serve_app.api.errors import UnsupportedMediaType, UploadNotFound, UploadRejected, UploadsDirectOnly
from serve_app.api.schemas import PresignedUpload, UploadPublic
from serve_app.songs.sources import (
    UploadError,
    delete_upload,
    finish_presigned,
    get_upload,
    incoming_key,
    new_upload_id,
    store_upload,
)
from serve_app.storage import SignedUploads

router = APIRouter(prefix="/v1/uploads", tags=["uploads"])
UploadId = Annotated[str, Path(min_length=32, max_length=32, pattern="^[0-9a-f]{32}$", description="Upload id.")]
ACCEPTED_TYPES = ("audio/", "application/octet-stream", "application/ogg", "video/ogg")
PRESIGN_TTL_S = 900
PRESIGN_CONTENT_TYPE = "application/octet-stream"


@router.post("", response_model=UploadPublic, status_code=201, operation_id="create_upload",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "audio/*": {"schema": {"type": "string", "format": "binary"}},
                 "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}})
async def create_upload(
    request: Request,
    svc: Svc,
    owner: Owner,
    filename: Annotated[str | None, Query(max_length=200, description="The file's name, kept in the record.")] = None,
) -> UploadPublic:
    """Send a wav, flac, mp3 or ogg file as the raw body. It is decoded and checked (length 1-600 s)
    and stored at 48 kHz stereo; edits name it by `upload_id`."""
    content_type = (request.headers.get("content-type") or "application/octet-stream").split(";")[0].strip().lower()
    if not content_type.startswith(ACCEPTED_TYPES):
        raise UnsupportedMediaType(f"Content-Type {content_type!r} is not audio; send the file's bytes as "
                                   "audio/wav, audio/flac, audio/mpeg, audio/ogg or application/octet-stream")
    data = await request.body()
    try:
        record = await store_upload(svc.store, owner, data, filename=filename, max_s=svc.max_upload_s)
    except UploadError as exc:
        raise UploadRejected(f"file: {exc}") from None
    return UploadPublic.model_validate(record)


@router.post("/presign", response_model=PresignedUpload, status_code=201, operation_id="presign_upload")
async def presign_upload(svc: Svc, owner: Owner) -> PresignedUpload:
    """For large files with S3/R2 storage: PUT the file to `put_url` (with `Content-Type:
    application/octet-stream`), then `POST /v1/uploads/{upload_id}/complete` to have it checked.
    With local storage, upload directly instead (409)."""
    if not isinstance(svc.store, SignedUploads):
        raise UploadsDirectOnly()
    upload_id = new_upload_id()
    url = svc.store.signed_put_url(incoming_key(owner, upload_id), PRESIGN_TTL_S, PRESIGN_CONTENT_TYPE)
    return PresignedUpload(upload_id=upload_id, put_url=url, method="PUT", content_type=PRESIGN_CONTENT_TYPE,
                           expires_in_s=PRESIGN_TTL_S, max_bytes=svc.max_upload_bytes)


@router.post("/{upload_id}/complete", response_model=UploadPublic, status_code=201, operation_id="complete_upload")
async def complete_upload(upload_id: UploadId, svc: Svc, owner: Owner) -> UploadPublic:
    """Check the file PUT to a presigned link and keep it as an upload (404 when nothing was PUT)."""
    try:
        record = await finish_presigned(svc.store, owner, upload_id, max_s=svc.max_upload_s,
                                        max_bytes=svc.max_upload_bytes)
    except UploadError as exc:
        raise UploadRejected(f"file: {exc}") from None
    if record is None:
        existing = await get_upload(svc.store, owner, upload_id)
        if existing is None:
            raise UploadNotFound()
        return UploadPublic.model_validate(existing)  # completed before: the same answer
    return UploadPublic.model_validate(record)


@router.get("/{upload_id}", response_model=UploadPublic, operation_id="get_upload")
async def read_upload(upload_id: UploadId, svc: Svc, owner: Owner) -> UploadPublic:
    record = await get_upload(svc.store, owner, upload_id)
    if record is None:
        raise UploadNotFound()
    return UploadPublic.model_validate(record)


@router.delete("/{upload_id}", status_code=204, operation_id="delete_upload")
async def remove_upload(upload_id: UploadId, svc: Svc, owner: Owner) -> Response:
    """Removes the file; songs already made from it keep their own audio."""
    if not await delete_upload(svc.store, owner, upload_id):
        raise UploadNotFound()
    return Response(status_code=204)
