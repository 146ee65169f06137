"""The front app with its lifespan (and so its aiohttp session) running on the test's own
event loop, driven through httpx's ASGI transport; its upstreams are real sockets."""

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
from fastapi import FastAPI

from front_service.app import create_app
from front_service.settings import FrontSettings


@dataclass
class Front:
    app: FastAPI
    client: httpx.AsyncClient
    elapsed: list[float] = field(default_factory=list)

    async def get(self, path: str = "/product-detail/2") -> httpx.Response:
        start = time.perf_counter()
        response = await self.client.get(path)
        self.elapsed.append(time.perf_counter() - start)
        return response

    def counter(self, name: str, **labels: str) -> float:
        return self.app.state.metrics.registry.get_sample_value(name, labels) or 0.0


@asynccontextmanager
async def running_front(settings: FrontSettings) -> AsyncIterator[Front]:
    """The front with its lifespan (and so its aiohttp session) running on the test's loop."""
    app = create_app(settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url="http://front.test") as client:
        yield Front(app, client)


