"""Hostile paths, methods and headers against the real ASGI stack of all three services.

Requests are handed to the app as raw ASGI scopes, built the way uvicorn builds them
(`raw_path` as sent, `path` percent-decoded), so `..` segments, encoded slashes, bytes that
are not UTF-8 and header values no HTTP client would send all reach the app unchanged.
"""

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import anyio
import orjson
import pytest
from fastapi import FastAPI

from coupon_service.app import create_app as create_coupon_app
from coupon_service.settings import CouponSettings
from front_service.app import create_app as create_front_app
from prod_service.app import create_app as create_prod_app
from prod_service.settings import ProdSettings
from tests.support.upstreams import Upstreams, front_settings_for

ROUTES = {"prod": "/products/{}", "coupon": "/products/{}/coupons", "front": "/product-detail/{}"}
SERVICES = sorted(ROUTES)
CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}
FRESH_REQUEST_ID = re.compile(r"[0-9a-f]{32}")

# (what it is, the product number as sent on the wire, expected status)
BAD_PROD_NOS = [
    ("non-numeric", "abc", 400),
    ("negative", "-1", 400),
    ("zero", "0", 400),
    ("leading zero", "02", 400),
    ("float", "1.5", 400),
    ("exponent", "1e3", 400),
    ("hex", "0x10", 400),
    ("plus sign", "+2", 400),
    ("just above the range", "2147483648", 400),
    ("40 digits", "9" * 40, 400),
    ("percent-encoded float", "%31%2E%35", 400),
    ("percent-encoded space", "%202", 400),
    ("NUL byte", "2%00", 400),
    ("CRLF header injection", "2%0D%0AX-Injected:%201", 400),
    ("invalid UTF-8", "%FF%FE", 400),
    ("fullwidth digit", "%EF%BC%92", 400),
    ("arabic-indic digit", "%D9%A2", 400),
    ("emoji", "%F0%9F%98%80", 400),
    ("hangul", "%EC%83%81%ED%92%88", 400),
    ("U+2028 line separator", "2%E2%80%A8", 400),
    ("encoded dot-dot", "%2E%2E", 400),
    ("markup", "%3Cimg%20src=x%20onerror=alert(1)%3E", 400),
    ("SQL", "2'%20OR%20'1'='1", 400),
    ("8 KB of digits", "7" * 8192, 400),
    ("encoded slash", "1%2F2", 404),
    ("empty", "", 404),
]

# (what it is, the whole request target; {} is replaced by the service's route prefix)
BAD_PATHS = [
    ("dot-dot segments", "{}/../../etc/passwd", 404),
    ("dot-dot back into the route", "{}/../2", 404),
    ("encoded dot-dot segments", "{}/%2E%2E/%2E%2E/etc/passwd", 404),
    ("double slash", "{}//2", 404),
    ("trailing slash", "{}/", 404),
    ("8 KB path", "/" + "a" * 8192, 404),
    ("8 KB of segments", "{}/" + "a/" * 4096, 404),
    ("unknown route", "/admin", 404),
]

METHODS = ["POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "BREW"]

# Request ids that must be replaced, never echoed nor logged.
BAD_REQUEST_IDS = [
    ("65 chars", b"a" * 65),
    ("8 KB", b"b" * 8192),
    ("empty", b""),
    ("spaces", b"my request id"),
    ("CRLF", b"abc\r\nx-injected: 1"),
    ("NUL", b"abc\x00def"),
    ("JSON log injection", b'x","event":"error","level":"error'),
    ("markup", b"<script>alert(1)</script>"),
    ("path", b"../../etc/passwd"),
    ("percent-encoded", b"%41%42%43"),
    ("latin-1", "r\u00e9qu\u00eate".encode("latin-1")),
    ("UTF-8", "요청-123".encode()),
]


@dataclass
class Answer:
    status: int
    headers: dict[bytes, bytes]
    body: bytes

    def header(self, name: str) -> str:
        return self.headers[name.encode()].decode("latin-1")


@dataclass
class Service:
    name: str
    app: FastAPI
    upstreams: Upstreams | None

    def route(self, prod_no: str) -> str:
        return ROUTES[self.name].format(prod_no)

    @property
    def prefix(self) -> str:
        return ROUTES[self.name].split("/{}")[0]


async def call(app: FastAPI, method: str, target: str,
               headers: list[tuple[bytes, bytes]] | None = None, body: bytes = b"") -> Answer:
    """One request through the app's ASGI interface, scoped as uvicorn would scope it."""
    raw_path, _, query = target.encode("ascii").partition(b"?")
    scope: dict[str, Any] = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1", "method": method, "scheme": "http",
        "path": unquote(raw_path.decode("ascii")), "raw_path": raw_path, "query_string": query,
        "root_path": "", "headers": [(b"host", b"shop.test"), *(headers or [])],
        "client": ("127.0.0.1", 40000), "server": ("shop.test", 80), "state": {},
    }
    request_sent = False
    response_done = anyio.Event()
    start: dict[str, Any] = {}
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal request_sent
        if not request_sent:
            request_sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await response_done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                response_done.set()

    with anyio.fail_after(5):
        await app(scope, receive, send)
    return Answer(start["status"], dict(start.get("headers", [])), b"".join(chunks))


def log_events(output: str) -> list[dict[str, Any]]:
    # split on "\n" only: a logged path may hold U+2028 or U+0085, which splitlines() splits on
    return [orjson.loads(line) for line in output.split("\n") if line.startswith("{")]


def assert_error_answer(answer: Answer, status: int) -> None:
    assert answer.status == status
    assert answer.header("content-type") == "application/json"
    assert b"Traceback" not in answer.body
    assert b'File "' not in answer.body
    assert len(answer.body) < 512  # a message, not an echo of the input
    body = orjson.loads(answer.body)
    assert set(body) == {"error"}
    assert set(body["error"]) == {"status", "code", "message", "request_id"}
    assert body["error"]["status"] == status
    assert body["error"]["code"] == CODES[status]
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    assert body["error"]["request_id"] == answer.header("x-request-id")


def assert_logged_cleanly(output: str, status: int) -> None:
    events = log_events(output)
    assert not [event for event in events if event["event"] == "error"]
    requests = [event for event in events if event["event"] == "request"]
    assert len(requests) == 1
    assert requests[0]["status"] == status
    assert len(requests[0]["path"]) <= 512


@pytest.fixture
def anyio_backend() -> str:
    """These tests drive asyncio apps; one backend is enough."""
    return "asyncio"


@pytest.fixture(params=SERVICES)
async def service(request: pytest.FixtureRequest,
                  upstreams: Upstreams) -> AsyncIterator[Service]:
    """One of the three apps with its lifespan running; the front talks to the test
    upstreams."""
    front_upstreams = None
    if request.param == "prod":
        app = create_prod_app(ProdSettings(instance="prod-hostile"))
    elif request.param == "coupon":
        app = create_coupon_app(CouponSettings(instance="coupon-hostile"))
    else:
        front_upstreams = upstreams
        app = create_front_app(front_settings_for(upstreams, instance="front-hostile"))
    async with app.router.lifespan_context(app):
        yield Service(request.param, app, front_upstreams)


@pytest.mark.anyio
@pytest.mark.parametrize(("prod_no", "status"), [(raw, status) for _, raw, status in BAD_PROD_NOS],
                         ids=[what for what, _, _ in BAD_PROD_NOS])
async def test_bad_product_number_is_a_client_error(
        service: Service, prod_no: str, status: int, capsys: pytest.CaptureFixture[str]) -> None:
    """A product number that is not 1..2^31-1 in plain digits gets a JSON 4xx, never a 5xx,
    and the front does not bother its upstreams with it."""
    answer = await call(service.app, "GET", service.route(prod_no))
    assert_error_answer(answer, status)
    assert_logged_cleanly(capsys.readouterr().out, status)
    if service.upstreams is not None:
        assert service.upstreams.requests == []


@pytest.mark.anyio
@pytest.mark.parametrize(("target", "status"), [(raw, status) for _, raw, status in BAD_PATHS],
                         ids=[what for what, _, _ in BAD_PATHS])
async def test_bad_path_is_a_client_error(
        service: Service, target: str, status: int, capsys: pytest.CaptureFixture[str]) -> None:
    """Traversal, doubled or trailing slashes and 8 KB paths get a JSON 4xx (no redirect)."""
    answer = await call(service.app, "GET", target.format(service.prefix))
    assert_error_answer(answer, status)
    assert_logged_cleanly(capsys.readouterr().out, status)
    if service.upstreams is not None:
        assert service.upstreams.requests == []


@pytest.mark.anyio
@pytest.mark.parametrize("method", METHODS)
async def test_unsupported_method_is_405(
        service: Service, method: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Anything but GET on a route gets a JSON 405 naming the allowed method; a body sent
    with it is not read."""
    answer = await call(service.app, method, service.route("2"),
                        headers=[(b"content-type", b"application/json")],
                        body=b'{"price": 0}' * 100_000)
    assert_error_answer(answer, 405)
    assert answer.header("allow") == "GET"
    assert_logged_cleanly(capsys.readouterr().out, 405)


@pytest.mark.anyio
@pytest.mark.parametrize("bad_id", [value for _, value in BAD_REQUEST_IDS],
                         ids=[what for what, _ in BAD_REQUEST_IDS])
async def test_bad_request_id_is_replaced_not_echoed(
        service: Service, bad_id: bytes, capsys: pytest.CaptureFixture[str]) -> None:
    """An X-Request-ID that is too long or not [A-Za-z0-9._-] is replaced by a fresh id in
    the answer, the log line and the front's upstream calls; the bad value appears nowhere."""
    answer = await call(service.app, "GET", service.route("2"),
                        headers=[(b"x-request-id", bad_id)])
    assert answer.status == 200
    fresh = answer.header("x-request-id")
    assert FRESH_REQUEST_ID.fullmatch(fresh)
    output = capsys.readouterr().out
    if bad_id:
        assert bad_id.decode("latin-1") not in output
        assert bad_id not in answer.body
        assert bad_id not in b"".join(answer.headers.values())
    events = log_events(output)
    assert not [event for event in events if event["event"] == "error"]
    ours = [event for event in events
            if event["service"] == service.name and event["event"] == "request"]
    assert [event["request_id"] for event in ours] == [fresh]
    if service.upstreams is not None:
        forwarded = {request.headers["x-request-id"] for request in service.upstreams.requests}
        assert forwarded == {fresh}


@pytest.mark.anyio
async def test_bad_request_id_on_a_bad_request(
        service: Service, capsys: pytest.CaptureFixture[str]) -> None:
    """The error body carries the fresh id too, not the rejected one."""
    answer = await call(service.app, "GET", service.route("abc"),
                        headers=[(b"x-request-id", b"<" * 100)])
    assert_error_answer(answer, 400)
    assert FRESH_REQUEST_ID.fullmatch(answer.header("x-request-id"))
    assert "<<<" not in capsys.readouterr().out


@pytest.mark.anyio
@pytest.mark.parametrize("good_id", [b"a", b"req-42.retry_1", b"Z" * 64])
async def test_plain_request_id_is_kept(service: Service, good_id: bytes) -> None:
    """The control: a short id of safe characters is kept as sent."""
    answer = await call(service.app, "GET", service.route("2"),
                        headers=[(b"x-request-id", good_id)])
    assert answer.status == 200
    assert answer.headers[b"x-request-id"] == good_id
