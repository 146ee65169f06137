"""The front's upstream HTTP/1.1 client: keep-alive connections on asyncio protocols, responses
parsed by httptools (the C parser uvicorn already uses for the requests it serves).

Why not a general-purpose client: the front sends small GETs to two backends on a private
network, many thousands per second, and every microsecond and megabyte spent there is taken
from the front's own requests. httpx's default transport is an order of magnitude too slow
under 64 concurrent requests; aiohttp's session was 37 % of the front's CPU and 9 MiB of its
memory (bench/README.md). This is the part of a client the front uses, and no more: a bounded
pool per upstream, connect and pool timeouts, a DNS cache of one second with round robin over
the addresses (swarm's dnsrr aliases resolve to the task addresses), one transparent retry of
an idempotent request whose reused keep-alive connection turns out closed before any byte of
an answer, and hard limits on the response head and body. It is also an httpx transport, so the
front keeps the httpx client API and its tests swap in injected transports or respx.
"""

import asyncio
import contextlib
import functools
import itertools
import re
import socket
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httptools
import httpx

# The status line and headers of one response. uvicorn allows requests 64 KiB of head
# (h11's limit); a backend's answer to the front has a dozen short headers.
MAX_HEAD_BYTES = 16 * 1024
# How long a resolved upstream address list is used: with dnsrr, the alias resolves to the
# task addresses, so new replicas get new connections within a second.
DNS_TTL_SECONDS = 1.0
_CHUNK_BYTES = 16 * 1024
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_FRAMING_HEADERS = frozenset({b"host", b"content-length", b"transfer-encoding"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token: a method
_FORBIDDEN_IN_HEADER = re.compile(rb"[\r\n\x00]")


class BodyTooLarge(Exception):
    """The response body is over the caller's limit (declared or as it arrived)."""


class InvalidResponse(httpx.RemoteProtocolError):
    """Not HTTP, or HTTP this client does not read: a bad status line, broken chunked framing,
    a head over MAX_HEAD_BYTES. The same server would answer the same: not worth a retry."""


class _ClosedBeforeAnswer(httpx.RemoteProtocolError):
    """The connection closed before any byte of the answer (retried once if it was reused)."""


class _ResetBeforeAnswer(httpx.ReadError):
    """The connection was reset before any byte of the answer (retried once if reused)."""


class _NoPool:
    """Where a connection points before it is handed out and after it is discarded, so its
    callbacks then change no pool's count."""

    def lost(self, conn: "_Connection") -> None:
        pass


_GONE: Any = _NoPool()


class _Connection(asyncio.Protocol):
    """One keep-alive connection; reads one response at a time into memory."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # No pool until the connection is handed out: a connect that fails or is cancelled
        # half-way frees its slot in _HostPool._connect, never here.
        self.pool: _HostPool | _NoPool = _GONE
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self.reused = False
        self.waiter: asyncio.Future[tuple[int, list[tuple[bytes, bytes]], bytes]] | None = None
        self._reset_response(0, expect_body=True)

    def _reset_response(self, limit: int, *, expect_body: bool) -> None:
        self.limit = limit
        self.expect_body = expect_body
        self.received = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_bytes = 0
        self.body: list[bytes] = []
        self.body_bytes = 0
        self.headers_done = False
        self.until_close = False  # no Content-Length, not chunked: the body ends at EOF
        self.keep_alive = False
        self.error: BaseException | None = None
        self.complete = False
        self.chunks = 0

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            self.close()  # bytes nobody asked for: the connection is no longer in step
            return
        self.received += len(data)
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            error = self.error or InvalidResponse(f"unreadable HTTP response: {exc}")
            self.close()
            if not waiter.done():
                waiter.set_exception(error)
            return
        # Everything but the body (heads, trailers, chunk-size lines) is bounded: httptools
        # gathers a header that has not ended yet in memory.
        if self.received - self.body_bytes > MAX_HEAD_BYTES + 64 * self.chunks:
            self.close()
            if not waiter.done():
                waiter.set_exception(
                    InvalidResponse(f"response head over {MAX_HEAD_BYTES} bytes"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.lost(self)
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if exc is None and self.headers_done and self.until_close:
            self.keep_alive = False
            waiter.set_result(self._result())
        elif not self.received:
            waiter.set_exception(
                _ClosedBeforeAnswer("server closed the connection without answering")
                if exc is None else _ResetBeforeAnswer(f"connection reset: {exc}"))
        elif exc is None:
            waiter.set_exception(
                httpx.RemoteProtocolError("server closed the connection mid-answer"))
        else:
            waiter.set_exception(httpx.ReadError(f"connection reset mid-answer: {exc}"))

    # -- httptools callbacks (called from feed_data)

    def on_message_begin(self) -> None:
        if self.complete:  # a second message in the same read: no longer in step
            self.keep_alive = False
            self.error = InvalidResponse("bytes after the response")
            raise self.error

    def on_chunk_header(self) -> None:
        self.chunks += 1

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_bytes += len(name) + len(value) + 4
        if self.head_bytes > MAX_HEAD_BYTES:
            self.error = InvalidResponse(f"response head over {MAX_HEAD_BYTES} bytes")
            raise self.error
        if not self.headers_done:  # trailers are counted, not merged into the head
            self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.headers_done = True
        status = self.parser.get_status_code()
        if status < 200:
            return  # informational: skipped in on_message_complete
        if not self.expect_body:  # a HEAD: no body follows, whatever the headers say
            self.keep_alive = False
            self._finish()
            return
        if status in (204, 304):  # no body by definition; the parser knows it too
            return
        framed = False
        for name, value in self.headers:
            lowered = name.lower()
            if lowered == b"content-length":
                framed = True
                if value.isdigit() and int(value) > self.limit:
                    self.error = BodyTooLarge()
                    raise self.error
            elif lowered == b"transfer-encoding":
                framed = True
        self.until_close = not framed

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        if self.body_bytes > self.limit:
            self.error = BodyTooLarge()
            raise self.error
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.parser.get_status_code() < 200:  # 1xx: the answer is still to come
            if self.parser.get_status_code() == 101:
                self.error = InvalidResponse("101 Switching Protocols")
                raise self.error
            self.headers = []
            self.headers_done = False
            return
        self.complete = True
        if self.expect_body:  # after a HEAD the parser cannot tell where the answer ended
            self.keep_alive = self.parser.should_keep_alive()
        self._finish()

    # --

    def _finish(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(self._result())

    def _result(self) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        return self.parser.get_status_code(), self.headers, b"".join(self.body)

    def close(self) -> None:
        transport = self.transport
        if transport is not None:
            # A clean close (FIN) for a connection with nothing left to send; one still holding
            # unsent bytes (a peer that stopped reading) is dropped at once, not kept until
            # the buffer drains.
            if transport.get_write_buffer_size():
                transport.abort()
            else:
                transport.close()

    async def exchange(self, head: bytes, body: bytes, limit: int, *, expect_body: bool,
                       ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Send one request, wait for its whole response."""
        if self.closed or self.transport is None or self.transport.is_closing():
            raise _ClosedBeforeAnswer("server closed the connection without answering")
        self._reset_response(limit, expect_body=expect_body)
        waiter = self.waiter = self.loop.create_future()
        self.transport.write(head + body if body else head)
        try:
            return await waiter
        finally:
            self.waiter = None


class _HostPool:
    """The connections to one scheme://host:port: at most the owner's `max_connections` open
    (or opening) at once; `open` counts them, idle ones included."""

    def __init__(self, owner: "Http1Transport", scheme: str, host: str, port: int) -> None:
        self.owner = owner
        self.loop = asyncio.get_running_loop()
        self.scheme = scheme
        self.host = host
        self.port = port
        self.idle: deque[_Connection] = deque()
        self.open = 0
        self.waiters: deque[asyncio.Future[_Connection | None]] = deque()
        self.sweep: asyncio.TimerHandle | None = None

    async def acquire(self, connect_timeout: float | None, pool_timeout: float | None,
                      ) -> _Connection:
        now = time.monotonic()
        expiry = self.owner.keepalive_expiry
        while self.idle:
            conn = self.idle.popleft()  # oldest first: load spreads over every connection
            if not conn.closed and now - conn.idle_since < expiry:
                conn.reused = True
                return conn
            self.discard(conn)
        if self.open < self.owner.max_connections:
            self.open += 1
            return await self._connect(connect_timeout)
        waiter: asyncio.Future[_Connection | None] = self.loop.create_future()
        self.waiters.append(waiter)
        try:
            async with asyncio.timeout(pool_timeout):
                handed = await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                given = waiter.result()  # handed over as this wait ended: pass it on
                if given is None:
                    self.open -= 1  # the slot counted for this waiter
                    self._slot_freed()
                else:
                    self.release(given)
            if isinstance(exc, TimeoutError):
                raise httpx.PoolTimeout("no upstream connection free in time") from None
            raise
        if handed is not None:
            handed.reused = True
            return handed
        return await self._connect(connect_timeout)  # a slot, counted in self.open already

    async def _connect(self, connect_timeout: float | None) -> _Connection:
        try:
            async with asyncio.timeout(connect_timeout):
                return await self._open_connection()
        except BaseException as exc:
            self.open -= 1
            self._slot_freed()
            if isinstance(exc, TimeoutError):
                raise httpx.ConnectTimeout(
                    f"no connection to {self.host}:{self.port} within {_seconds(connect_timeout)}",
                ) from None
            if isinstance(exc, OSError):
                raise httpx.ConnectError(f"{self.host}:{self.port}: {exc}") from exc
            raise

    async def _open_connection(self) -> _Connection:
        addresses = await self.owner.resolve(self.host, self.port)
        ssl_context = self.owner.ssl_context() if self.scheme == "https" else None
        last: OSError | None = None
        for family, address in addresses:
            try:
                _, conn = await self.loop.create_connection(
                    functools.partial(_Connection, self.loop), address[0], address[1],
                    family=family, ssl=ssl_context,
                    server_hostname=self.host if ssl_context else None)
            except OSError as exc:  # refused or unreachable: the next address may answer
                last = exc
                continue
            conn.pool = self  # from here on, discarding it frees the slot
            return conn
        raise last or OSError(f"no address for {self.host}")

    def release(self, conn: _Connection) -> None:
        """Back to the pool after a whole response (or closed, if it cannot be reused)."""
        if (conn.closed or not conn.keep_alive or self.owner.closed
                or conn.transport is None or conn.transport.is_closing()):
            self.discard(conn)
            return
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        conn.idle_since = time.monotonic()
        self.idle.append(conn)
        if self.sweep is None:
            self.sweep = self.loop.call_later(self.owner.keepalive_expiry, self._sweep)

    def discard(self, conn: _Connection) -> None:
        """Close a connection for good and free its slot (once, however often it is called)."""
        conn.close()
        if conn.pool is self:
            conn.pool = _GONE
            self.open -= 1
            self._slot_freed()

    def lost(self, conn: _Connection) -> None:
        """The peer closed: an idle connection leaves the pool at once (one in use is
        discarded by its request)."""
        if conn.waiter is None and conn.pool is self:
            with contextlib.suppress(ValueError):
                self.idle.remove(conn)
            self.discard(conn)

    def _slot_freed(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                self.open += 1
                waiter.set_result(None)
                return

    def _sweep(self) -> None:
        self.sweep = None
        expiry = self.owner.keepalive_expiry
        now = time.monotonic()
        while self.idle and now - self.idle[0].idle_since >= expiry:
            self.discard(self.idle.popleft())
        if self.idle:
            self.sweep = self.loop.call_later(
                expiry - (now - self.idle[0].idle_since), self._sweep)

    def close(self, error: Exception) -> None:
        """Close the idle connections, fail every request waiting for one."""
        if self.sweep is not None:
            self.sweep.cancel()
            self.sweep = None
        while self.idle:
            self.discard(self.idle.popleft())
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)


@functools.lru_cache(maxsize=256)
def _target(url: str) -> tuple[tuple[str, str, int], bytes]:
    """Pool key and the request line plus Host header of a GET to `url`, worked out once."""
    parsed = httpx.URL(url)
    return _key_and_head(parsed, "GET")


def _seconds(timeout: float | None) -> str:
    return "no limit" if timeout is None else f"{timeout:g} s"


def _key_and_head(url: httpx.URL, method: str, host_header: bytes | None = None,
                  ) -> tuple[tuple[str, str, int], bytes]:
    if url.scheme not in ("http", "https"):
        raise httpx.UnsupportedProtocol(f"{url.scheme!r} URLs are not supported")
    if not _TOKEN.fullmatch(method):
        raise httpx.LocalProtocolError(f"invalid method {method!r}")
    default_port = 443 if url.scheme == "https" else 80
    port = url.port or default_port
    if host_header is None:
        host = b"[%s]" % url.raw_host if b":" in url.raw_host else url.raw_host  # IPv6
        host_header = host if port == default_port else b"%s:%d" % (host, port)
    elif _FORBIDDEN_IN_HEADER.search(host_header):
        raise httpx.LocalProtocolError("Host header holds CR, LF or NUL")
    head = b"%s %s HTTP/1.1\r\nhost: %s\r\n" % (method.encode("ascii"), url.raw_path,
                                                 host_header)
    return (url.scheme, url.host, port), head


def _header_block(headers: Sequence[tuple[bytes, bytes]]) -> bytes:
    block = b"".join([b"%s: %s\r\n" % header for header in headers])
    # Each line brings exactly one CR and one LF: any more came from inside a name or value.
    if block.count(b"\n") != len(headers) or block.count(b"\r") != len(headers) \
            or b"\x00" in block:
        raise httpx.LocalProtocolError("a request header holds CR, LF or NUL")
    return block


class _Chunks(httpx.AsyncByteStream):
    """A body already in memory, handed out in chunks (so a decoder sees it piecewise)."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.body), _CHUNK_BYTES):
            yield self.body[start:start + _CHUNK_BYTES]


async def decoded_body(status: int, headers: list[tuple[bytes, bytes]], body: bytes,
                       max_body_bytes: int) -> bytes:
    """The body with its content-encoding undone by httpx's decoders, checked against the
    limit after each 16 KiB of input (so a small gzip bomb stops early)."""
    response = httpx.Response(status, headers=headers, stream=_Chunks(body))
    return await read_limited(response.aiter_bytes(), max_body_bytes)


async def read_limited(chunks: AsyncIterator[bytes], max_body_bytes: int) -> bytes:
    """The chunks joined, or BodyTooLarge as soon as they add up to more than the limit."""
    parts = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > max_body_bytes:
            raise BodyTooLarge
        parts.append(chunk)
    return b"".join(parts)


class Http1Transport(httpx.AsyncBaseTransport):
    """An httpx transport over the front's own HTTP/1.1 connection pools.

    `get_body` is the front's upstream GET, without httpx's Request and Response objects:
    status and the whole body (content-encoding undone), or the httpx error an httpx client
    would raise (ConnectError, ConnectTimeout, PoolTimeout, ReadError, RemoteProtocolError;
    InvalidResponse for what is not readable HTTP; BodyTooLarge over the limit).
    `handle_async_request` serves any request an httpx client sends through it, reading the
    whole response before it returns (fine for small JSON, not a streaming client).
    """

    def __init__(self, *, max_connections: int, keepalive_expiry: float,
                 max_body_bytes: int = 16 * 1024 * 1024) -> None:
        self.max_connections = max_connections
        self.keepalive_expiry = keepalive_expiry
        self.max_body_bytes = max_body_bytes
        self.pools: dict[tuple[str, str, int], _HostPool] = {}
        self._dns: dict[tuple[str, int], tuple[float, list[tuple[int, Any]]]] = {}
        self._lookups: dict[tuple[str, int], asyncio.Future[list[tuple[int, Any]]]] = {}
        self._turn = itertools.count()
        self._ssl: ssl.SSLContext | None = None
        self.closed = False

    def connections(self) -> dict[str, int]:
        """Connections open or being opened, per "host:port"."""
        return {f"{host}:{port}": pool.open for (_, host, port), pool in self.pools.items()}

    def ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:  # built on first use: loading the CA bundle costs 0.8 MiB
            self._ssl = ssl.create_default_context()
        return self._ssl

    async def resolve(self, host: str, port: int) -> list[tuple[int, Any]]:
        """The addresses to try for host:port, rotated by one on every new connection."""
        key = (host, port)
        cached = self._dns.get(key)
        if cached is None or cached[0] <= time.monotonic():
            lookup = self._lookups.get(key)
            if lookup is None:  # one lookup however many connections wait for it
                lookup = self._lookups[key] = asyncio.ensure_future(self._lookup(host, port))
                lookup.add_done_callback(lambda done: self._lookup_done(key, done))
            addresses = await asyncio.shield(lookup)
        else:
            addresses = cached[1]
        turn = next(self._turn) % len(addresses)
        return addresses[turn:] + addresses[:turn]

    async def _lookup(self, host: str, port: int) -> list[tuple[int, Any]]:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys((family, address[:2])
                                       for family, _, _, _, address in infos))
        if not addresses:
            raise OSError(f"no address for {host}")
        self._dns[(host, port)] = (time.monotonic() + DNS_TTL_SECONDS, addresses)
        return addresses

    def _lookup_done(self, key: tuple[str, int], lookup: asyncio.Future[Any]) -> None:
        del self._lookups[key]
        if not lookup.cancelled():
            lookup.exception()  # seen by every waiter; marked retrieved if all gave up

    def _pool(self, key: tuple[str, str, int]) -> _HostPool:
        pool = self.pools.get(key)
        if pool is None:
            pool = self.pools[key] = _HostPool(self, *key)
        return pool

    async def get_body(self, url: str, headers: Sequence[tuple[bytes, bytes]], *,
                       connect_timeout: float | None, pool_timeout: float | None,
                       max_body_bytes: int) -> tuple[int, bytes]:
        """GET `url`: status and body. No read timeout of its own: the caller's deadline
        bounds the whole call (the front's total upstream budget)."""
        key, line = _target(url)
        head = line + _header_block(headers) + b"\r\n"
        status, response_headers, body = await self._exchange(
            key, head, b"", "GET", connect_timeout, pool_timeout, None, max_body_bytes)
        for name, _ in response_headers:
            if name.lower() == b"content-encoding":
                body = await decoded_body(status, response_headers, body, max_body_bytes)
                break
        return status, body

    async def _exchange(self, key: tuple[str, str, int], head: bytes, body: bytes, method: str,
                        connect_timeout: float | None, pool_timeout: float | None,
                        read_timeout: float | None, limit: int,
                        ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        if self.closed:
            raise RuntimeError("the upstream transport is closed")
        pool = self._pool(key)
        expect_body = method != "HEAD"
        for attempt in (1, 2):
            conn = await pool.acquire(connect_timeout, pool_timeout)
            try:
                if read_timeout is None:  # the front's GETs: the caller's deadline covers it
                    result = await conn.exchange(head, body, limit, expect_body=expect_body)
                else:
                    async with asyncio.timeout(read_timeout):
                        result = await conn.exchange(head, body, limit, expect_body=expect_body)
            except (_ClosedBeforeAnswer, _ResetBeforeAnswer):
                pool.discard(conn)
                # A reused keep-alive connection the server closed as this request went out:
                # nothing was processed, so an idempotent request goes again on a new one.
                if conn.reused and attempt == 1 and method in _IDEMPOTENT:
                    continue
                raise
            except TimeoutError:
                pool.discard(conn)
                raise httpx.ReadTimeout(f"no answer within {_seconds(read_timeout)}") from None
            except BaseException:
                pool.discard(conn)
                raise
            pool.release(conn)
            return result
        raise AssertionError("unreachable")

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        host = request.headers.get("host")
        key, line = _key_and_head(request.url, request.method,
                                  host.encode("ascii") if host else None)
        body = await request.aread()  # whole, so it goes with a Content-Length
        headers = [(name, value) for name, value in request.headers.raw
                   if name.lower() not in _FRAMING_HEADERS]
        if body or request.method in _BODY_METHODS:
            headers.append((b"content-length", b"%d" % len(body)))
        head = line + _header_block(headers) + b"\r\n"
        status, response_headers, content = await self._exchange(
            key, head, body, request.method, timeouts.get("connect"), timeouts.get("pool"),
            timeouts.get("read"), self.max_body_bytes)
        return httpx.Response(status, headers=response_headers, stream=_Chunks(content),
                              extensions={"http_version": b"HTTP/1.1"})

    async def aclose(self) -> None:
        self.closed = True  # connections still in use close when their request ends
        for pool in self.pools.values():
            pool.close(RuntimeError("the upstream transport is closed"))
        self.pools.clear()
