"""The studio: a small web page over this API, served at /studio (its assets under /studio/...).

Loading the page needs no token; everything it does goes through the API with the bearer token
the user pastes (kept in the tab's sessionStorage). Plain files from the package, no build step;
kept out of the OpenAPI document, which describes the API only.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

router = APIRouter(include_in_schema=False)

STATIC = Path(__file__).resolve().parent.parent / "static" / "studio"
PAGE = "index.html"
ASSETS = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}

# Only its own scripts and styles; audio and covers are signed links (this origin with local
# storage, an S3/R2 host otherwise), which the waveform also fetches.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self' http: https:; "
       "img-src 'self' http: https: data: blob:; media-src 'self' http: https: blob:; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


@router.api_route("/studio", methods=["GET", "HEAD"])
async def studio_page() -> FileResponse:
    return FileResponse(STATIC / PAGE, media_type="text/html; charset=utf-8",
                        headers={**HEADERS, "Content-Security-Policy": CSP})


@router.api_route("/studio/", methods=["GET", "HEAD"])
async def studio_slash() -> RedirectResponse:
    # The page's links are relative to /studio (assets at studio/..., the API at v1/...).
    return RedirectResponse("../studio", status_code=308)


@router.api_route("/studio/{name}", methods=["GET", "HEAD"])
async def studio_asset(name: str) -> FileResponse:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise StarletteHTTPException(status_code=404, detail="Not Found")
    return FileResponse(STATIC / name, media_type=media_type, headers=HEADERS)
