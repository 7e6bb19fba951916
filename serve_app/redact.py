"""What an error text may not carry when it leaves the process: URLs (a job database URL, a storage
endpoint), filesystem paths (the storage root, a model's directory, a temp file), internal
addresses, and `password=...`-style secrets.

`redact` is applied where another component's words reach a caller or a log: API error bodies
(serve_app.api.errors.describe), a job's `error` and the runner's log lines, the stream's logs,
/health details. The API's own routes (`/v1/...`, `/files/...`) are kept: messages point at them.
"""

from __future__ import annotations

import re

# The API's own paths: messages written for callers name them ("follow it at /v1/songs/<id>").
API_PATHS = ("/v1/", "/files/", "/health", "/generate-", "/studio", "/auth-status", "/docs", "/openapi.json")

_URL = re.compile(r"\b([A-Za-z][A-Za-z0-9+.\-]*)://[^\s'\"<>`()]*")
_WINDOWS_PATH = re.compile(r"(?<![\w])[A-Za-z]:\\[^\s'\"<>`]*")
_PATH = re.compile(r"(?<![\w.~/:\-…])~?/(?:[^\s/'\"<>`:,;()\[\]]+/)*[^\s/'\"<>`:,;()\[\]]*")
_SECRET = re.compile(
    r"(?i)\b(password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|authorization|signature|sig)"
    r"(\s*[=:]\s*)(?:bearer\s+)?[^\s,;&'\"]+"
)
_HOST_PORT = re.compile(r"\b(?:localhost|[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+):\d{2,5}\b")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.])")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?:%\w+)?(?![\w:])")


def _url(match: re.Match) -> str:
    text = match.group(0)
    tail = text[len(text.rstrip(".,:;")):]  # sentence punctuation after the URL stays
    return f"<{match.group(1).lower()} URL>{tail}"


def _path(match: re.Match) -> str:
    text = match.group(0)
    if text in ("/", "~/") or text.startswith(API_PATHS):
        return text
    name = text.rstrip("/").rsplit("/", 1)[-1]
    return f"…/{name}" if name else "<path>"


def _ipv6(match: re.Match) -> str:
    text = match.group(0)
    return "<address>" if "::" in text or text.count(":") >= 5 else text


def redact(text: str | None) -> str:
    """`text` without URLs, paths (a path keeps its last segment: `…/jobs.db`), addresses or
    secrets. Idempotent; None gives ""."""
    if not text:
        return ""
    text = _URL.sub(_url, str(text))
    text = _SECRET.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)
    text = _WINDOWS_PATH.sub("<path>", text)
    text = _PATH.sub(_path, text)
    text = _HOST_PORT.sub("<host>", text)
    text = _IPV4.sub("<address>", text)
    return _IPV6.sub(_ipv6, text)
