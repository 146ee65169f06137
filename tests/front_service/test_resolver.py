"""The front's upstream addresses: served from memory, refreshed beside the requests."""

import asyncio
import socket

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from front_service import resolver as resolver_module
from front_service.resolver import CachingResolver


def result(address: str) -> ResolveResult:
    return ResolveResult(hostname="prod.api", host=address, port=3001, family=socket.AF_INET,
                         proto=0, flags=0)


class SlowDns(AbstractResolver):
    """Answers what `answers` holds after `delay` seconds; counts lookups; can fail."""

    def __init__(self, *answers: str, delay: float = 0.0) -> None:
        self.answers = list(answers)
        self.delay = delay
        self.lookups = 0
        self.failing = False
        self.closed = False

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        self.lookups += 1
        await asyncio.sleep(self.delay)
        if self.failing:
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return [result(address) for address in self.answers]

    async def close(self) -> None:
        self.closed = True


@pytest.fixture
def anyio_backend() -> str:
    """The front runs on asyncio."""
    return "asyncio"


def hosts(results: list[ResolveResult]) -> list[str]:
    return [r["host"] for r in results]


@pytest.mark.anyio
async def test_a_new_name_waits_once_and_concurrent_waiters_share_the_lookup() -> None:
    """The first resolve of a name is a lookup; ten at once share that one lookup."""
    dns = SlowDns("10.0.1.2", delay=0.05)
    cache = CachingResolver(dns, refresh_after=1.0)
    answers = await asyncio.gather(*(cache.resolve("prod.api", 3001) for _ in range(10)))
    assert dns.lookups == 1
    assert all(set(hosts(a)) == {"10.0.1.2"} for a in answers)


@pytest.mark.anyio
async def test_expired_addresses_are_served_at_once_while_a_refresh_runs() -> None:
    """Past refresh_after, a resolve answers from memory without waiting for DNS (which is
    slow here), starts one refresh, and the next resolves see the refreshed addresses."""
    dns = SlowDns("10.0.1.2", delay=0.0)
    cache = CachingResolver(dns, refresh_after=0.01)
    await cache.resolve("prod.api", 3001)
    dns.answers, dns.delay = ["10.0.1.3"], 0.2
    await asyncio.sleep(0.02)
    loop = asyncio.get_running_loop()
    began = loop.time()
    served = [await cache.resolve("prod.api", 3001) for _ in range(5)]
    assert loop.time() - began < 0.05  # nobody waited for the 0.2 s lookup
    assert all(hosts(s) == ["10.0.1.2"] for s in served)
    await asyncio.sleep(0.25)
    assert dns.lookups == 2  # one refresh, not five
    assert hosts(await cache.resolve("prod.api", 3001)) == ["10.0.1.3"]


@pytest.mark.anyio
async def test_a_failing_refresh_keeps_the_addresses_until_they_are_too_old(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """While DNS fails, the last addresses are served; past MAX_STALE_SECONDS the resolve
    waits for DNS again, and its error reaches the caller."""
    monkeypatch.setattr(resolver_module, "MAX_STALE_SECONDS", 0.1)
    dns = SlowDns("10.0.1.2")
    cache = CachingResolver(dns, refresh_after=0.01)
    await cache.resolve("prod.api", 3001)
    dns.failing = True
    await asyncio.sleep(0.02)
    assert hosts(await cache.resolve("prod.api", 3001)) == ["10.0.1.2"]
    await asyncio.sleep(0)  # the refresh fails in the background
    assert hosts(await cache.resolve("prod.api", 3001)) == ["10.0.1.2"]
    await asyncio.sleep(0.1)
    with pytest.raises(OSError, match="name resolution"):
        await cache.resolve("prod.api", 3001)


@pytest.mark.anyio
async def test_answers_take_turns_over_the_addresses() -> None:
    """Each answer starts one address further along, so new connections go round the
    replicas of a dnsrr service."""
    cache = CachingResolver(SlowDns("10.0.1.2", "10.0.1.3", "10.0.1.4"), refresh_after=60)
    firsts = [hosts(await cache.resolve("prod.api", 3001))[0] for _ in range(6)]
    assert firsts == ["10.0.1.2", "10.0.1.3", "10.0.1.4"] * 2


@pytest.mark.anyio
async def test_no_addresses_is_an_error_not_an_empty_list() -> None:
    """A name with no address fails the connect with an OSError the client reports."""
    cache = CachingResolver(SlowDns(), refresh_after=1.0)
    with pytest.raises(OSError, match="no addresses"):
        await cache.resolve("prod.api", 3001)


@pytest.mark.anyio
async def test_close_ends_refreshes_and_closes_the_wrapped_resolver() -> None:
    """Closing the session's connector leaves no refresh running."""
    dns = SlowDns("10.0.1.2")
    cache = CachingResolver(dns, refresh_after=0.0)
    await cache.resolve("prod.api", 3001)
    dns.delay = 10
    await asyncio.sleep(0.001)
    await cache.resolve("prod.api", 3001)  # starts a refresh that would take 10 s
    await asyncio.wait_for(cache.close(), 1)
    assert dns.closed
