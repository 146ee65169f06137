"""Misbehaving upstreams for the front's tests, over real sockets on 127.0.0.1.

A behaviour is what a server does with one accepted connection: answer raw bytes, reset,
close, hang, stall mid-body. `RawServer` runs one behaviour for every connection; the fault
servers in upstreams.py run them on demand in front of the real apps.
"""

import asyncio
import contextlib
import socket
import struct
from collections.abc import Awaitable, Callable, Iterator
from typing import Self

Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

MiB = 1024 * 1024
HANG_LIMIT = 30.0  # s: a hanging behaviour gives up by itself after this, whatever the client


class RawServer:
    """A TCP server on 127.0.0.1 that runs `behaviour` on every accepted connection and
    counts connections: accepted in all, open now, most open at once."""

    def __init__(self, behaviour: Behaviour) -> None:
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


async def until_client_leaves(reader: asyncio.StreamReader) -> None:
    """Wait for the client's FIN (it gave up), at most HANG_LIMIT seconds."""
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(reader.read(), HANG_LIMIT)


def raw_reply(data: bytes, *, then_rst: bool = False) -> Behaviour:
    """A behaviour that reads one request, writes `data` as is, then closes (or resets)."""
    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(data)
        await writer.drain()
        if then_rst:
            abort_with_rst(writer)
    return behaviour


def http_reply(status: int, body: bytes, *headers: bytes, keep_alive: bool = False) -> bytes:
    """A whole HTTP/1.1 response as bytes (`Connection: close` unless `keep_alive`)."""
    head = [f"HTTP/1.1 {status} X".encode(), b"content-type: application/json",
            f"content-length: {len(body)}".encode(), *headers]
    if not keep_alive:
        head.append(b"connection: close")
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def answers(status: int, body: bytes, *headers: bytes) -> Behaviour:
    """One HTTP answer, then the connection closes."""
    return raw_reply(http_reply(status, body, *headers))


def after(seconds: float, behaviour: Behaviour) -> Behaviour:
    """`behaviour`, `seconds` late: a replica short of CPU that still answers."""
    async def late(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(seconds)
        await behaviour(reader, writer)
    return late


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
    await until_client_leaves(reader)


async def stalls_mid_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                 b"content-length: 100\r\n\r\n[")
    await writer.drain()
    await until_client_leaves(reader)


async def oversized_streamed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Just over 1 MiB in 64 KiB chunks, chunked, with no Content-Length to warn the reader."""
    await read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                 b"transfer-encoding: chunked\r\n\r\n")
    chunk = b" " * (64 * 1024)
    for part in [b"[", *[chunk] * 16, b"]"]:
        writer.write(b"%x\r\n%s\r\n" % (len(part), part))
        await writer.drain()
    writer.write(b"0\r\n\r\n")
    await writer.drain()


def keeps_answering(data: bytes, hold: float = 0.0) -> Behaviour:
    """A keep-alive server: every request on the connection gets `data` after `hold` s."""
    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)  # IncompleteReadError when the client hangs up
            if hold:
                await asyncio.sleep(hold)
            writer.write(data)
            await writer.drain()
    return behaviour


def holds_then_resets(hold: float) -> Behaviour:
    """A failing server that keeps each connection busy for `hold` s before resetting it
    (sooner if the client hangs up, so `RawServer.open` counts what the client holds)."""
    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(reader.read(1), hold)  # b"" at once on the client's FIN
        abort_with_rst(writer)
    return behaviour


def closed_port() -> str:
    """The URL of a port on 127.0.0.1 that nothing listens on (refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def black_hole() -> Iterator[str]:
    """The URL of a port whose connects never complete: a listener that accepts nothing and
    whose one-place queue is already taken (the kernel then drops new SYNs, as a dead host
    answers nothing)."""
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        filler.connect(listener.getsockname())
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
