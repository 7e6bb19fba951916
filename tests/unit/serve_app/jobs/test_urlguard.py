"""Webhook destinations: no internal networks (however the address is spelled), no credentials,
only http(s); and the sender never follows a redirect."""

from __future__ import annotations

import asyncio
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from serve_app.jobs.urlguard import check_webhook_url
from serve_app.jobs.webhooks import WebhookSender

INTERNAL = [
    "http://127.0.0.1/hook",
    "http://127.0.0.1:8000/hook",
    "http://127.1/",  # short form of 127.0.0.1
    "http://[::1]/hook",
    "http://localhost/hook",
    "http://LOCALHOST:8080/hook",
    "http://169.254.169.254/latest/meta-data/",  # AWS/GCP/Azure metadata
    "http://[fe80::1]/",
    "http://10.0.0.1/",
    "http://10.255.255.255/",
    "http://172.16.0.1/",
    "http://172.31.255.254/",
    "http://192.168.1.1/",
    "http://[fc00::1]/",  # IPv6 unique local
    "http://[::ffff:127.0.0.1]/",  # IPv4-mapped IPv6
    "http://[::ffff:7f00:1]/",
    "http://[::ffff:169.254.169.254]/",
    "http://[::ffff:10.0.0.1]/",
    "http://[2002:7f00:1::]/",  # 6to4 wrapping 127.0.0.1
    "http://[2002:a9fe:a9fe::1]/",  # 6to4 wrapping 169.254.169.254
    "http://0.0.0.0/",
    "http://0/",
    "http://[::]/",
    "http://2130706433/",  # decimal 127.0.0.1
    "http://0x7f000001/",  # hex
    # "http://0177.0.0.1/" (octal): httpx cannot send it at all, so it is malformed (test_holes_webhooks)
    "http://017700000001/",
    "http://3232235777/",  # decimal 192.168.1.1
    "http://100.64.0.1/",  # carrier-grade NAT shared space
    "http://100.100.100.200/",  # Alibaba Cloud metadata
    "http://224.0.0.1/",  # multicast
    "http://255.255.255.255/",
    "https://127.0.0.1:443/hook",
]


@pytest.mark.parametrize("url", INTERNAL)
async def test_internal_destinations_are_refused(url):
    with pytest.raises(PermissionError, match="private, loopback or link-local"):
        await check_webhook_url(url, allow_private=False)


@pytest.mark.parametrize("url", INTERNAL)
async def test_internal_destinations_are_allowed_when_configured(url):
    await check_webhook_url(url, allow_private=True)


@pytest.mark.parametrize("url", ["http://93.184.215.14/hook", "https://1.1.1.1/", "http://[2606:4700:4700::1111]/",
                                 "http://[::ffff:8.8.8.8]/", "http://[2002:808:808::1]/"])
async def test_public_addresses_are_allowed(url):
    await check_webhook_url(url, allow_private=False)


@pytest.fixture
def fake_dns(monkeypatch):
    """Resolve made-up names to chosen addresses (no network in tests)."""
    table: dict[str, list[str]] = {}

    async def getaddrinfo(self, host, port, *args, **kwargs):
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        out = []
        for ip in table[host]:
            family = socket.AF_INET6 if ":" in ip else socket.AF_INET
            sockaddr = (ip, port, 0, 0) if family == socket.AF_INET6 else (ip, port)
            out.append((family, socket.SOCK_STREAM, 6, "", sockaddr))
        return out

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", getaddrinfo)
    return table


async def test_a_name_resolving_to_any_internal_address_is_refused(fake_dns):
    fake_dns["hooks.example"] = ["93.184.215.14"]
    fake_dns["rebind.example"] = ["93.184.215.14", "169.254.169.254"]  # one bad answer is enough
    fake_dns["v6.example"] = ["2606:4700:4700::1111", "::1"]
    await check_webhook_url("https://hooks.example/x", allow_private=False)
    for name in ("rebind.example", "v6.example"):
        with pytest.raises(PermissionError):
            await check_webhook_url(f"https://{name}/x", allow_private=False)


async def test_unresolvable_names_are_refused(fake_dns):
    with pytest.raises(ValueError, match="does not resolve"):
        await check_webhook_url("https://nowhere.invalid/x", allow_private=False)


@pytest.mark.parametrize("allow_private", [False, True])
@pytest.mark.parametrize("url", [
    "http://user:pass@93.184.215.14/",
    "http://user@93.184.215.14/",
    "http://:pass@93.184.215.14/",
    "http://@93.184.215.14/",
    "https://token:x-oauth-basic@hooks.example/",
])
async def test_credentials_in_the_url_are_refused(url, allow_private):
    with pytest.raises(ValueError, match="credentials"):
        await check_webhook_url(url, allow_private=allow_private)


@pytest.mark.parametrize("allow_private", [False, True])
@pytest.mark.parametrize("url", [
    "ftp://93.184.215.14/", "file:///etc/passwd", "gopher://127.0.0.1:6379/_FLUSHALL", "javascript:alert(1)",
    "data:text/plain,hi", "dict://127.0.0.1:11211/", "ws://93.184.215.14/", "//93.184.215.14/hook",
    "93.184.215.14/hook", "http:///hook", "http://", "", "http://[::1/", "http://93.184.215.14:99999/",
    "http://93.184.215.14:port/",
])
async def test_non_http_or_malformed_urls_are_refused(url, allow_private):
    with pytest.raises(ValueError, match="webhook_url"):
        await check_webhook_url(url, allow_private=allow_private)


# ---------------------------------------------------------------- the sender and redirects


class _Hits(BaseHTTPRequestHandler):
    hits: list = []
    location = ""

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).hits.append(self.path)
        if self.path.startswith("/redirect"):
            self.send_response(307)
            self.send_header("Location", type(self).location)
        else:
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


class _FakeStore:
    def __init__(self):
        self.attempts = []

    def record_attempt(self, delivery_id, worker_id, **kw):
        self.attempts.append(kw)


def _delivery(url: str):
    """The fields of a WebhookDelivery that the sender reads."""
    return SimpleNamespace(id=1, job_id="0" * 32, url=url, event="job.succeeded", payload={"id": "0" * 32},
                           attempts=0)


@pytest.fixture
def hook_server():
    _Hits.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hits)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    _Hits.location = base + "/internal-target"  # stands in for an internal service
    yield base
    server.shutdown()
    server.server_close()


async def test_the_sender_does_not_follow_redirects(hook_server):
    store = _FakeStore()
    sender = WebhookSender(store, b"s" * 32, "worker-1")
    try:
        await sender._deliver(_delivery(hook_server + "/redirect"))
    finally:
        await sender.client.aclose()
    assert _Hits.hits == ["/redirect"]  # the redirect target was never contacted
    (attempt,) = store.attempts
    assert attempt["status_code"] == 307 and attempt["error"] == "redirects are not followed"
    assert attempt["give_up"] is False


async def test_the_sender_checks_the_destination_before_each_attempt(hook_server):
    store = _FakeStore()

    async def guard(url):
        await check_webhook_url(url, allow_private=False)

    sender = WebhookSender(store, b"s" * 32, "worker-1", url_guard=guard)
    try:
        await sender._deliver(_delivery(hook_server + "/hook"))
    finally:
        await sender.client.aclose()
    assert _Hits.hits == []  # refused before any connection
    (attempt,) = store.attempts
    assert attempt["give_up"] is True and "loopback" in attempt["error"]
