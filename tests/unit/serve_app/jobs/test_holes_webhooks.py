"""Holes in webhook delivery found by probing the dev stack (issue 16, items 3 and 4):

- a URL with characters the guard's parser dropped (tab, newline) but the HTTP client refuses
  raised outside the sender's error handling: no attempt recorded, the lease expired, the
  delivery was claimed again, forever;
- DNS rebinding: the guard resolved the host, then the HTTP client resolved it again and could
  get a private address the guard never saw.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import httpx
import pytest

from serve_app.jobs.urlguard import check_webhook_url
from serve_app.jobs.webhooks import WebhookSender

PUBLIC = "93.184.215.14"

UNSENDABLE = [
    "http://127.0.0.1:9/a\tb",
    "http://127.0.0.1:9/hook\n",
    "http://127.0.0.1:9/ho\r\nok",
    "http://exa\tmple.com/",
    " http://127.0.0.1:9/hook",
    "http://127.0.0.1:9/hook ",
    "http://127.0.0.1:9/a b",
    "http://127.0.0.1:9\\@example.com/",
    "http://127.0.0.1:9/caf\u00e9",
    "http://127.0.0.1:99999/",
    "http://127.0.0.1:0/",
    "http://0177.0.0.1/",  # octal: urlsplit and getaddrinfo take it, httpx cannot send it
]


class _Store:
    def __init__(self):
        self.attempts = []

    def record_attempt(self, delivery_id, worker_id, **kw):
        self.attempts.append(kw)


def _delivery(url: str):
    return SimpleNamespace(id=1, job_id="0" * 32, url=url, event="job.succeeded", payload={"id": "0" * 32},
                           attempts=0)


@pytest.mark.parametrize("allow_private", [False, True])
@pytest.mark.parametrize("url", UNSENDABLE)
async def test_the_guard_refuses_what_the_client_would_send_differently_or_not_at_all(url, allow_private):
    with pytest.raises(ValueError, match="webhook_url"):
        await check_webhook_url(url, allow_private=allow_private)


@pytest.mark.parametrize("url", UNSENDABLE[:4])
async def test_an_unsendable_url_already_stored_ends_in_a_recorded_attempt_and_gives_up(url):
    store = _Store()
    sender = WebhookSender(store, b"s" * 32, "worker-1")  # no guard: the client's own refusal
    try:
        await asyncio.wait_for(sender._deliver(_delivery(url)), 5)
    finally:
        await sender.client.aclose()
    (attempt,) = store.attempts
    assert attempt["status_code"] is None and attempt["error"] and attempt["give_up"] is True


@pytest.mark.parametrize("where", ["guard", "client"])
async def test_any_error_in_a_delivery_is_a_recorded_attempt_that_will_be_retried(where):
    store = _Store()

    async def guard(url):
        if where == "guard":
            raise RuntimeError("resolver exploded")

    sender = WebhookSender(store, b"s" * 32, "worker-1", url_guard=guard)

    async def broken_post(*args, **kwargs):
        raise RuntimeError("client exploded")

    sender.client.post = broken_post
    try:
        await sender._deliver(_delivery("http://127.0.0.1:9/hook"))
    finally:
        await sender.client.aclose()
    (attempt,) = store.attempts
    assert attempt["status_code"] is None and "RuntimeError" in attempt["error"]
    assert attempt["give_up"] is False  # the normal backoff; max_attempts ends it


async def test_a_name_that_does_not_resolve_now_is_retried_not_dropped(monkeypatch):
    async def nowhere(self, host, port, *args, **kwargs):
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", nowhere)
    store = _Store()
    sender = WebhookSender(store, b"s" * 32, "worker-1",
                           url_guard=functools.partial(check_webhook_url, allow_private=False))
    try:
        await sender._deliver(_delivery("https://hooks.example/x"))
    finally:
        await sender.client.aclose()
    (attempt,) = store.attempts
    assert "does not resolve" in attempt["error"] and attempt["give_up"] is False


# -- DNS rebinding ------------------------------------------------------------------------------


class _Hits(BaseHTTPRequestHandler):
    hits: list = []

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).hits.append(self.path)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def internal_service():
    """Stands in for something on the internal network (it listens on 127.0.0.1)."""
    _Hits.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hits)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_port
    server.shutdown()
    server.server_close()


@pytest.fixture
def rebinding_dns(monkeypatch):
    """`rebind.example` answers a public address the first time, then 127.0.0.1 (a rebinding DNS
    server with TTL 0); address literals resolve to themselves. Every resolution in this process
    (the guard's and the HTTP client's) goes through it."""
    asked: list[str] = []

    async def getaddrinfo(self, host, port, *args, **kwargs):
        host = host.decode() if isinstance(host, bytes) else host
        try:
            ips = [str(ipaddress.ip_address(host))]
        except ValueError:
            if host != "rebind.example":
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
            asked.append(host)
            ips = [PUBLIC] if len(asked) == 1 else ["127.0.0.1"]
        out = []
        for ip in ips:
            family = socket.AF_INET6 if ":" in ip else socket.AF_INET
            sockaddr = (ip, port, 0, 0) if family == socket.AF_INET6 else (ip, port)
            out.append((family, socket.SOCK_STREAM, 6, "", sockaddr))
        return out

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", getaddrinfo)
    return asked


class _Network(httpx.AsyncBaseTransport):
    """The real HTTP transport, except that the public address answers 204 itself (no internet in
    tests): a request sent by name is resolved and connected for real."""

    def __init__(self):
        self.real = httpx.AsyncHTTPTransport()
        self.seen: list[tuple[str, str, str | None]] = []

    async def handle_async_request(self, request):
        self.seen.append((request.url.host, request.headers["host"], request.extensions.get("sni_hostname")))
        if request.url.host == PUBLIC:
            return httpx.Response(204)
        return await self.real.handle_async_request(request)

    async def aclose(self):
        await self.real.aclose()


async def _send(url: str) -> tuple[_Store, _Network]:
    store, network = _Store(), _Network()
    sender = WebhookSender(store, b"s" * 32, "worker-1",
                           url_guard=functools.partial(check_webhook_url, allow_private=False))
    await sender.client.aclose()
    sender.client = httpx.AsyncClient(transport=network, timeout=5, follow_redirects=False)
    try:
        await sender._deliver(_delivery(url))
    finally:
        await sender.client.aclose()
    return store, network


async def test_the_client_connects_to_the_address_the_guard_checked(rebinding_dns, internal_service):
    store, network = await _send(f"http://rebind.example:{internal_service}/hook")
    assert _Hits.hits == []  # the second answer (127.0.0.1) was never used
    assert rebinding_dns == ["rebind.example"]  # resolved once, by the guard
    assert network.seen == [(PUBLIC, f"rebind.example:{internal_service}", None)]
    (attempt,) = store.attempts
    assert attempt["status_code"] == 204 and attempt["error"] is None


async def test_https_keeps_the_name_for_sni_and_the_certificate(rebinding_dns):
    _, network = await _send("https://rebind.example/hook")
    assert network.seen == [(PUBLIC, "rebind.example", "rebind.example")]


async def test_a_rebinding_answer_at_the_check_itself_is_refused(rebinding_dns):
    rebinding_dns.append("earlier lookup")  # the next answer is the private one
    store, network = await _send("http://rebind.example/hook")
    assert network.seen == []
    (attempt,) = store.attempts
    assert "private" in attempt["error"] and attempt["give_up"] is True
