"""Route tests: the real app (`create_api`) over fake models and storage, in the test's event loop."""

from __future__ import annotations

import httpx
import pytest

from serve_app.api import create_api
from tests.support.fakes import API_TOKEN, OTHER_TOKEN, fake_services

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
OTHER = {"Authorization": f"Bearer {OTHER_TOKEN}"}


@pytest.fixture
def stack_options() -> dict:
    """Override in a test module to change how the stack is built."""
    return {}


@pytest.fixture
async def stack(tmp_path, stack_options):
    s = fake_services(tmp_path / "jobs.db", **stack_options)
    s.runner.start()
    s.services.webhooks.start()
    yield s
    await s.runner.drain()
    await s.services.webhooks.stop()


@pytest.fixture
async def client(stack):
    transport = httpx.ASGITransport(app=create_api(stack.services))
    async with httpx.AsyncClient(transport=transport, base_url="http://songsmith.test") as c:
        yield c
