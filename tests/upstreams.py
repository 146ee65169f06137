from collections.abc import Awaitable, Callable

import httpx

from coupon_service.app import create_app as create_coupon_app
from coupon_service.settings import CouponSettings
from prod_service.app import create_app as create_prod_app
from prod_service.settings import ProdSettings

Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


class Upstreams(httpx.AsyncBaseTransport):
    """The front's upstreams in-process: the real prod and coupon apps, with faults on demand.

    `faults[host]` is a list of handlers used (and removed) one per request before the real
    app answers, so a test can say "the first call to prod is refused, then it recovers".
    `always[host]` replaces the real app for every request.
    """

    def __init__(self) -> None:
        self.apps = {
            "prod.api": httpx.ASGITransport(create_prod_app(ProdSettings(instance="prod-1"))),
            "coupon.api": httpx.ASGITransport(
                create_coupon_app(CouponSettings(instance="coupon-1"))),
        }
        self.faults: dict[str, list[Handler]] = {"prod.api": [], "coupon.api": []}
        self.always: dict[str, Handler] = {}
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        host = request.url.host
        if self.faults[host]:
            return await self.faults[host].pop(0)(request)
        if host in self.always:
            return await self.always[host](request)
        return await self.apps[host].handle_async_request(request)

    def calls_to(self, host: str) -> int:
        return sum(1 for request in self.requests if request.url.host == host)
