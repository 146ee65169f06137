"""Upstream faults for the front's tests: httpx handlers (for an injected transport) and a raw
TCP server on 127.0.0.1 (for the real transport, front_service/http1.py), both misbehaving on
demand."""

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Self

import httpx

Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]

MiB = 1024 * 1024


class _Stream(httpx.AsyncByteStream):
    """A body that sends `chunks`, then stalls `stall` seconds, then raises `error` if set."""

    def __init__(self, chunks: list[bytes], error: Exception | None = None,
                 stall: float = 0.0) -> None:
        self.chunks = chunks
        self.error = error
        self.stall = stall

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
        if self.stall:
            await asyncio.sleep(self.stall)
        if self.error is not None:
            raise self.error


def json_response(status: int, body: bytes, **headers: str) -> Handler:
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body,
                              headers={"content-type": "application/json", **headers})
    return handler


async def refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("[Errno 111] Connection refused", request=request)


async def connect_timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectTimeout("connect timed out", request=request)


async def dropped(request: httpx.Request) -> httpx.Response:
    raise httpx.RemoteProtocolError("Server disconnected without sending a response.",
                                    request=request)


async def reset_mid_body(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "application/json"}, stream=_Stream(
        [b'{"prodNo": 2, "name": "LG'], httpx.ReadError("[Errno 104] Connection reset by peer")))


async def hangs(request: httpx.Request) -> httpx.Response:
    await asyncio.sleep(30)
    raise AssertionError("the front should have given up long before")


async def stalls_mid_body(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "application/json"},
                          stream=_Stream([b"["], stall=30))


async def oversized_streamed(request: httpx.Request) -> httpx.Response:
    """Just over 1 MiB in 64 KiB chunks, with no Content-Length to warn the reader."""
    chunk = b" " * (64 * 1024)
    return httpx.Response(200, headers={"content-type": "application/json"},
                          stream=_Stream([b"[", *[chunk] * 16, b"]"]))


async def oversized_declared(request: httpx.Request) -> httpx.Response:
    """A Content-Length of 2 MiB: the front need not read any of it."""
    return httpx.Response(200, headers={"content-type": "application/json",
                                        "content-length": str(2 * MiB)},
                          stream=_Stream([b"[]"]))


class RawServer:
    """A TCP server on 127.0.0.1 that runs `behaviour` on every accepted connection and
    counts connections: accepted in all, open now, most open at once."""

    def __init__(self, behaviour: Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                                           Awaitable[None]]) -> None:
        self.behaviour = behaviour
        self.accepted = 0
        self.open = 0
        self.max_open = 0
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        try:
            await self.behaviour(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client went away first, or the test is over: both expected here
        finally:
            self.open -= 1
            writer.transport.abort()

    async def __aenter__(self) -> Self:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=1024)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self.server is not None
        self.server.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.server.wait_closed(), 1)


def abort_with_rst(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a crashed or killed process does."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def read_request(reader: asyncio.StreamReader) -> None:
    await reader.readuntil(b"\r\n\r\n")


def raw_reply(data: bytes, *, then_rst: bool = False,
              ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    """A behaviour that reads one request, writes `data` as is, then closes (or resets)."""
    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(data)
        await writer.drain()
        if then_rst:
            abort_with_rst(writer)
    return behaviour


async def resets_on_accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    abort_with_rst(writer)


async def resets_after_request(reader: asyncio.StreamReader,
                               writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    abort_with_rst(writer)


async def closes_after_request(reader: asyncio.StreamReader,
                               writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.close()


async def never_answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    await asyncio.sleep(30)


def closed_port() -> str:
    """The URL of a port on 127.0.0.1 that nothing listens on (refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def http_reply(status: int, body: bytes, *headers: bytes, keep_alive: bool = False) -> bytes:
    """A whole HTTP/1.1 response as bytes (`Connection: close` unless `keep_alive`)."""
    head = [f"HTTP/1.1 {status} X".encode(), b"content-type: application/json",
            f"content-length: {len(body)}".encode(), *headers]
    if not keep_alive:
        head.append(b"connection: close")
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def keeps_answering(data: bytes, hold: float = 0.0,
                    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    """A keep-alive server: every request on the connection gets `data` after `hold` s."""
    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)  # IncompleteReadError when the client hangs up
            if hold:
                await asyncio.sleep(hold)
            writer.write(data)
            await writer.drain()
    return behaviour


def holds_then_resets(hold: float,
                      ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    """A failing server that keeps each connection busy for `hold` s before resetting it
    (sooner if the client hangs up, so `RawServer.open` counts what the client holds)."""
    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(reader.read(1), hold)  # b"" at once on the client's FIN
        abort_with_rst(writer)
    return behaviour
