"""Pytest fixtures for a real S3 server; import them into a conftest.py to enable them.

    # tests/conftest.py
    from tests.support.fixtures import s3_env, s3_server  # noqa: F401

``s3_server`` is session-scoped: one ``weed mini`` for the whole run (~1-2 s to start, killed
at the end); tests isolate themselves with unique key prefixes. It is shared process-wide
and ref-counted, because pytest caches a session fixture per *definition site*: importing it
in a conftest and again in a test module would otherwise start two servers.

A missing ``weed`` binary skips the tests, unless ``REQUIRE_S3_TESTS=1`` (CI) makes it fail.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .s3_server import WeedNotFound, WeedS3Server, find_weed_binary, weed_s3_server

_shared: dict[str, Any] = {"server": None, "refs": 0}


def _require_weed() -> None:
    try:
        find_weed_binary()
    except WeedNotFound as exc:
        if os.environ.get("REQUIRE_S3_TESTS") == "1":
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WeedS3Server]:
    """The shared S3 server (bucket ``server.bucket``; ``server.env()`` gives R2_* vars)."""
    _require_weed()
    if _shared["server"] is None:
        server = WeedS3Server(base_dir=tmp_path_factory.mktemp("weed"))
        try:
            server.start()
        except BaseException:
            server.close(graceful=False)
            raise
        _shared["server"] = server
    _shared["refs"] += 1
    try:
        yield _shared["server"]
    finally:
        _shared["refs"] -= 1
        if _shared["refs"] == 0:
            server, _shared["server"] = _shared["server"], None
            server.close(graceful=False)


def make_s3_server_fixture(scope: str = "module", **server_kwargs: Any) -> Callable[..., Any]:
    """Build a fixture yielding a *private* started ``WeedS3Server``, e.g. for fault-injection
    tests that ``stop()``/``start()`` it without disturbing the shared one::

        s3_faulty = make_s3_server_fixture("module", bucket="faulty")
    """

    @pytest.fixture(scope=scope)
    def _fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WeedS3Server]:
        _require_weed()
        yield from weed_s3_server(base_dir=tmp_path_factory.mktemp("weed"), **server_kwargs)

    return _fixture


@pytest.fixture
def s3_env(s3_server: WeedS3Server, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Set the ``R2_*`` env vars to the shared server for one test; returns them."""
    env = s3_server.env()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env
