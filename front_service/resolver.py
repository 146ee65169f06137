"""Upstream addresses served from memory, refreshed in the background (stale-while-revalidate).

On a swarm, `prod.api` and `coupon.api` are answered by Docker's embedded DNS, which is dockerd
itself; while dockerd is busy starting and stopping tasks its answers can take a long time. A
client that looks a name up again once its cache has expired makes the next request that
needs a new connection wait for that answer. aiohttp's own DNS cache does exactly that (an
expired entry is looked up again on the request path), so the front gives its connector this
resolver instead and turns aiohttp's cache off: every new connection asks here, and is answered
at once from memory while a refresh runs beside it.
"""

import asyncio
import socket
from dataclasses import dataclass, field
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult

# How long addresses may be served after their refresh began failing (the name stopped
# resolving, or DNS stopped answering): past this, a lookup is on the request path again and
# its error reaches the caller, rather than connections going on to addresses that old.
MAX_STALE_SECONDS = 30.0

Key = tuple[str, int, socket.AddressFamily]


@dataclass
class _Entry:
    addresses: list[ResolveResult]
    fetched_at: float
    turn: int = 0  # where the next answer's rotation starts
    refresh: asyncio.Task[None] | None = field(default=None, repr=False)


class CachingResolver(AbstractResolver):
    """Addresses from memory; a background refresh once they are `refresh_after` seconds old.

    Only a name seen for the first time (or whose addresses are older than MAX_STALE_SECONDS)
    waits for DNS, and concurrent waiters share one lookup. Each answer starts one address
    further along the list, so that new connections take turns over the replicas of a dnsrr
    service.
    """

    def __init__(self, resolver: AbstractResolver, refresh_after: float) -> None:
        self._resolver = resolver
        self._refresh_after = refresh_after
        self._entries: dict[Key, _Entry] = {}
        self._lookups: dict[Key, asyncio.Future[list[ResolveResult]]] = {}

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        key = (host, port, family)
        entry = self._entries.get(key)
        now = asyncio.get_running_loop().time()
        if entry is None or now - entry.fetched_at > MAX_STALE_SECONDS:
            await self._lookup(key)
            entry = self._entries[key]
        elif now - entry.fetched_at > self._refresh_after and entry.refresh is None:
            entry.refresh = asyncio.create_task(self._refresh(key, entry))
        return self._take_turn(entry)

    def _take_turn(self, entry: _Entry) -> list[ResolveResult]:
        addresses = entry.addresses
        start = entry.turn % len(addresses)
        entry.turn += 1
        return addresses[start:] + addresses[:start]

    async def _lookup(self, key: Key) -> list[ResolveResult]:
        """One lookup per name at a time; a waiter that gives up does not cancel it."""
        lookup = self._lookups.get(key)
        if lookup is None:
            lookup = self._lookups[key] = asyncio.ensure_future(self._fetch(key))
            lookup.add_done_callback(lambda _: self._lookups.pop(key, None))
        return await asyncio.shield(lookup)

    async def _fetch(self, key: Key) -> list[ResolveResult]:
        host, port, family = key
        addresses = await self._resolver.resolve(host, port, family)
        if not addresses:
            raise OSError(f"no addresses for {host}")
        previous = self._entries.get(key)
        self._entries[key] = _Entry(addresses, asyncio.get_running_loop().time(),
                                    turn=previous.turn if previous else 0)
        return addresses

    async def _refresh(self, key: Key, entry: _Entry) -> None:
        try:
            await self._lookup(key)
        except OSError:
            # Keep serving what we have; the next resolve after refresh_after tries again,
            # and MAX_STALE_SECONDS bounds how long.
            pass
        finally:
            entry.refresh = None

    async def close(self) -> None:
        pending: list[asyncio.Future[Any]] = [
            entry.refresh for entry in self._entries.values() if entry.refresh]
        pending += self._lookups.values()
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self._resolver.close()
