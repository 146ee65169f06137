"""The front's HTTP/1.1 transport (front_service/http1.py) on its own, against TCP servers on
127.0.0.1: keep-alive reuse and its one retry, the pool's bound and timeouts, expiry, framing,
limits, DNS rotation, and the httpx client path. The front's behaviour under broken sockets is
in test_fault_matrix.py, its pool under bursts in test_pool_bounds.py."""

import asyncio
import gzip
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from faults import RawServer, closed_port, http_reply, keeps_answering, raw_reply, read_request

from front_service.http1 import (
    MAX_HEAD_BYTES,
    BodyTooLarge,
    Http1Transport,
    InvalidResponse,
    _key_and_head,
)

Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
pytestmark = pytest.mark.anyio
OK = http_reply(200, b'{"ok":true}', keep_alive=True)
LIMIT = 64 * 1024


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def transport(max_connections: int = 4, keepalive_expiry: float = 5.0,
                    ) -> AsyncIterator[Http1Transport]:
    client = Http1Transport(max_connections=max_connections, keepalive_expiry=keepalive_expiry)
    try:
        yield client
    finally:
        await client.aclose()


async def get(client: Http1Transport, url: str, *, pool_timeout: float = 5.0,
              limit: int = LIMIT, headers: list[tuple[bytes, bytes]] | None = None,
              ) -> tuple[int, bytes]:
    return await client.get_body(url, headers or [], connect_timeout=1.0,
                                 pool_timeout=pool_timeout, max_body_bytes=limit)


async def until(condition: Callable[[], bool], seconds: float = 3.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def answers_then(after: Behaviour, answered: int = 1) -> Behaviour:
    """Answers `answered` keep-alive requests on a connection, then does `after`."""
    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(answered):
            await read_request(reader)
            writer.write(OK)
            await writer.drain()
        await after(reader, writer)
    return behaviour


async def close_on_next_request(reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.close()


async def close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


async def test_reuses_one_keep_alive_connection() -> None:
    async with RawServer(keeps_answering(OK)) as server, transport() as client:
        for _ in range(5):
            assert await get(client, server.url + "/products/2") == (200, b'{"ok":true}')
        assert server.accepted == 1
        assert client.connections() == {server.url.removeprefix("http://"): 1}


async def test_reused_connection_closed_before_the_answer_is_retried_once() -> None:
    """The keep-alive race: the server closes an idle connection as a request goes out on
    it. Nothing was processed, so the GET goes again on a new connection, once."""
    async with RawServer(answers_then(close_on_next_request)) as server, transport() as client:
        assert (await get(client, server.url + "/a"))[0] == 200
        assert (await get(client, server.url + "/b"))[0] == 200  # retried on connection 2
        assert server.accepted == 2


async def test_no_second_retry_and_no_retry_on_a_new_connection() -> None:
    async with RawServer(close_on_next_request) as server, transport() as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await get(client, server.url + "/a")
        assert server.accepted == 1  # a new connection that fails is the caller's to retry


async def test_idle_connection_closed_by_the_server_leaves_the_pool() -> None:
    async with RawServer(answers_then(close_at_once)) as server, transport() as client:
        assert (await get(client, server.url + "/a"))[0] == 200
        await until(lambda: client.connections()[server.url.removeprefix("http://")] == 0)
        assert (await get(client, server.url + "/b"))[0] == 200
        assert server.accepted == 2


async def test_idle_connections_expire() -> None:
    async with RawServer(keeps_answering(OK)) as server, \
            transport(keepalive_expiry=0.2) as client:
        await asyncio.gather(*(get(client, server.url + "/a") for _ in range(3)))
        assert server.open == 3
        await until(lambda: server.open == 0, seconds=2)
        assert client.connections()[server.url.removeprefix("http://")] == 0


async def test_pool_bound_queues_requests_and_pool_timeout() -> None:
    async with RawServer(keeps_answering(OK, hold=0.05)) as server, \
            transport(max_connections=2) as client:
        results = await asyncio.gather(*(get(client, server.url + "/a") for _ in range(10)))
        assert {status for status, _ in results} == {200}
        assert server.max_open == 2
        assert server.accepted == 2
        slow = [asyncio.ensure_future(get(client, server.url + "/a")) for _ in range(2)]
        await asyncio.sleep(0)  # one loop turn: both take an idle connection and send
        with pytest.raises(httpx.PoolTimeout):
            await get(client, server.url + "/a", pool_timeout=0.01)
        assert [(await call)[0] for call in slow] == [200, 200]


async def test_cancelled_requests_give_their_connection_and_slot_back() -> None:
    """Cancelled while waiting for an answer (the front's total deadline) or for a slot:
    the bound holds and the next request still gets through."""
    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read(1)  # b"" once the client hangs up

    async with RawServer(hold) as stuck, RawServer(keeps_answering(OK)) as good, \
            transport(max_connections=1) as client:
        calls = [asyncio.ensure_future(get(client, stuck.url + "/a")) for _ in range(5)]
        await until(lambda: stuck.open == 1)  # one holds the connection, four wait for it
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
        key = stuck.url.removeprefix("http://")
        assert client.connections()[key] == 0
        await until(lambda: stuck.open == 0)
        stuck.behaviour = keeps_answering(OK)
        assert (await get(client, stuck.url + "/a"))[0] == 200
        assert (await get(client, good.url + "/a"))[0] == 200
        assert client.connections()[key] == 1


@pytest.mark.parametrize(("reply", "body"), [
    (b"HTTP/1.1 200 OK\r\n\r\nuntil close", b"until close"),
    (b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\n{}", b"{}"),
    (b"HTTP/1.1 204 No Content\r\n\r\n", b""),
    (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", b"{}"),
], ids=["until-close", "http-1.0", "204", "chunked"])
async def test_framings(reply: bytes, body: bytes) -> None:
    async with RawServer(raw_reply(reply)) as server, transport() as client:
        status, got = await get(client, server.url + "/a")
    assert (status, got) == (int(reply.split()[1]), body)


@pytest.mark.parametrize(("reply", "body"), [
    (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n"
     b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}", b"{}"),
    (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n"
     b"content-encoding: gzip\r\n\r\n", b"{}"),
    (b"HTTP/1.1 304 Not Modified\r\ncontent-length: 999999999\r\n\r\n", b""),
], ids=["1xx-skipped", "trailer-not-a-header", "304-declared-length"])
async def test_interim_answers_trailers_and_bodiless_statuses(reply: bytes, body: bytes) -> None:
    async with RawServer(raw_reply(reply)) as server, transport() as client:
        assert (await get(client, server.url + "/a"))[1] == body


async def test_bytes_after_the_answer_make_the_connection_unusable() -> None:
    """A response followed in the same read by bytes nobody asked for: this answer stands,
    the connection is closed rather than reused out of step with the server."""
    async def extra(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(OK + b"HTTP/1.1 200 OK\r\nx-stale: yes\r\ncontent-length: 9\r\n\r\n{")

    async with RawServer(extra) as server, transport() as client:
        assert await get(client, server.url + "/a") == (200, b'{"ok":true}')
        assert await get(client, server.url + "/b") == (200, b'{"ok":true}')
        assert server.accepted == 2


async def test_connection_close_answer_is_not_reused() -> None:
    async with RawServer(raw_reply(http_reply(200, b"{}"))) as server, transport() as client:
        for _ in range(2):
            assert (await get(client, server.url + "/a"))[0] == 200
        assert server.accepted == 2


@pytest.mark.parametrize(("reply", "error"), [
    (http_reply(200, b"x" * (LIMIT + 1)), BodyTooLarge),
    (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
     + (b"%x\r\n" % 4096 + b"x" * 4096 + b"\r\n") * 20, BodyTooLarge),
    (http_reply(200, gzip.compress(b" " * (LIMIT * 16)), b"content-encoding: gzip"),
     BodyTooLarge),
    (b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n", InvalidResponse),
    (b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * MAX_HEAD_BYTES, InvalidResponse),
    (b"not http at all\r\n\r\n", InvalidResponse),
    (b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
     InvalidResponse),
    (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nx-t: "
     + b"a" * (2 * MAX_HEAD_BYTES), InvalidResponse),
    (http_reply(200, b"not gzip", b"content-encoding: gzip"), httpx.DecodingError),
], ids=["declared", "chunked", "gzip-bomb", "big-head", "endless-head", "not-http",
        "upgrade", "endless-trailer", "bad-gzip"])
async def test_limits_and_unreadable_answers(reply: bytes, error: type[Exception]) -> None:
    async with RawServer(raw_reply(reply)) as server, transport() as client:
        with pytest.raises(error):
            await get(client, server.url + "/a")
        assert client.connections()[server.url.removeprefix("http://")] == 0


async def test_gzip_body_is_decoded() -> None:
    reply = http_reply(200, gzip.compress(b'{"a":1}' * 1000), b"content-encoding: gzip")
    async with RawServer(raw_reply(reply)) as server, transport() as client:
        assert await get(client, server.url + "/a") == (200, b'{"a":1}' * 1000)


async def test_refused_connect_error() -> None:
    url = closed_port()
    async with transport() as client:
        with pytest.raises(httpx.ConnectError):
            await get(client, url + "/a")
        assert client.connections() == {url.removeprefix("http://"): 0}


async def test_closed_transport_refuses_requests_and_fails_waiters() -> None:
    async with RawServer(keeps_answering(OK, hold=0.2)) as server:
        client = Http1Transport(max_connections=1, keepalive_expiry=5)
        busy = asyncio.ensure_future(get(client, server.url + "/a"))
        waiting = asyncio.ensure_future(get(client, server.url + "/b"))
        await until(lambda: server.open == 1)  # busy holds the one connection, waiting waits
        await client.aclose()
        with pytest.raises(RuntimeError, match="closed"):
            await waiting
        assert (await busy)[0] == 200  # in flight: finishes, then its connection closes
        with pytest.raises(RuntimeError, match="closed"):
            await get(client, server.url + "/c")
        await until(lambda: server.open == 0)


async def test_header_injection_is_refused() -> None:
    async with RawServer(keeps_answering(OK)) as server, transport() as client:
        with pytest.raises(httpx.LocalProtocolError):
            await get(client, server.url + "/a", headers=[(b"x-a", b"1\r\nx-b: 2")])
        assert server.accepted == 0


def fake_dns(monkeypatch: pytest.MonkeyPatch, answers: list[tuple[str, int]],
             delay: float = 0.0) -> list[str]:
    """Makes every name resolve to `answers` (127.0.0.1 ports); returns the names asked."""
    asked: list[str] = []

    async def getaddrinfo(self: Any, host: str, port: int, **_: Any) -> list[Any]:
        asked.append(host)
        await asyncio.sleep(delay)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", address) for address in answers]

    monkeypatch.setattr(asyncio.get_running_loop().__class__, "getaddrinfo", getaddrinfo)
    return asked


async def test_new_connections_rotate_over_the_addresses(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """dnsrr: the alias resolves to every replica; new connections take turns, and an
    address that refuses is skipped for the next."""
    async with RawServer(keeps_answering(OK, hold=0.05)) as one, \
            RawServer(keeps_answering(OK, hold=0.05)) as two:
        ports = [int(server.url.rsplit(":", 1)[1]) for server in (one, two)]
        dead = int(closed_port().rsplit(":", 1)[1])
        asked = fake_dns(monkeypatch, [("127.0.0.1", ports[0]), ("127.0.0.1", dead),
                                       ("127.0.0.1", ports[1])])
        async with transport(max_connections=6) as client:
            results = await asyncio.gather(*(get(client, "http://prod.api:3001/a")
                                              for _ in range(6)))
        assert {status for status, _ in results} == {200}
        # Turns start at addresses 1, 2, 3, 1, 2, 3; the dead second one passes its turns on
        # to the third.
        assert (one.accepted, two.accepted) == (2, 4)
        assert asked == ["prod.api"]  # one lookup for six concurrent connects


async def test_slow_dns_is_a_connect_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(monkeypatch, [("127.0.0.1", 9)], delay=5)
    async with transport() as client:
        with pytest.raises(httpx.ConnectTimeout):
            await client.get_body("http://prod.api:3001/a", [], connect_timeout=0.05,
                                  pool_timeout=1, max_body_bytes=LIMIT)
        assert client.connections() == {"prod.api:3001": 0}


async def test_as_an_httpx_transport() -> None:
    """Any request an httpx client sends: the method, headers and body arrive as sent (the
    body with a Content-Length), the answer reads as httpx's own."""
    seen: list[bytes] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            seen.append(head + await reader.readexactly(length))
            body = gzip.compress(b"echo")
            writer.write(http_reply(200, body, b"content-encoding: gzip", keep_alive=True))

    async with RawServer(echo) as server, httpx.AsyncClient(
            transport=Http1Transport(max_connections=2, keepalive_expiry=5),
            base_url=server.url) as client:
        posted = await client.post("/orders?x=1", content=b'{"n":1}',
                                   headers={"x-request-id": "abc"})
        head = await client.head("/orders")
        got = await client.get("/orders", timeout=1)
    assert (posted.status_code, posted.content) == (200, b"echo")
    assert seen[0].startswith(b"POST /orders?x=1 HTTP/1.1\r\nhost: 127.0.0.1:")
    assert b"\r\nx-request-id: abc\r\n" in seen[0]
    assert seen[0].endswith(b"\r\ncontent-length: 7\r\n\r\n{\"n\":1}")
    assert head.status_code == 200
    assert head.content == b""
    assert got.content == b"echo"
    assert server.accepted == 2  # the HEAD's connection is not reused (its body is unread)


def test_request_line_and_host_header() -> None:
    """The method must be a token; an IPv6 host goes in brackets; a caller's Host stands."""
    client = Http1Transport(max_connections=1, keepalive_expiry=1)
    with pytest.raises(httpx.LocalProtocolError):
        asyncio.run(client.handle_async_request(
            httpx.Request("GET / HTTP/1.1\r\nx-a: 1\r\nGET", "http://127.0.0.1:9/")))
    key, head = _key_and_head(httpx.URL("http://[::1]:8080/a?b=1"), "GET")
    assert (key, head) == (("http", "::1", 8080), b"GET /a?b=1 HTTP/1.1\r\nhost: [::1]:8080\r\n")
    assert _key_and_head(httpx.URL("https://shop.example/"), "GET",
                         b"front.example")[1].endswith(b"host: front.example\r\n")
