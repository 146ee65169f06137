import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.middleware import Middleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from starlette.responses import Response

from shop_common.errors import error_responses, install_error_handlers
from shop_common.lifecycle import Lifecycle
from shop_common.logs import JsonLog
from shop_common.metrics import ServiceMetrics
from shop_common.middleware import ShopMiddleware
from shop_common.settings import ServiceSettings

ServiceLifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


class Health(BaseModel):
    status: Literal["OK", "DRAINING"]
    service: str
    release: str
    instance: str


async def _lifecycle(request: Request) -> Lifecycle:
    return request.app.state.lifecycle


async def simulated_latency(request: Request) -> None:
    """Waits SHOP_SIMULATED_LATENCY_MS before an API answer."""
    await asyncio.sleep(request.app.state.settings.simulated_latency_ms / 1000)


LifecycleDep = Annotated[Lifecycle, Depends(_lifecycle)]

ops_router = APIRouter(tags=["operations"])


@ops_router.get("/health", response_model=Health,
                responses={503: {"model": Health, "description": "draining before shutdown"}})
async def health(request: Request, lifecycle: LifecycleDep) -> Response:
    """Liveness and readiness: 200 while serving, 503 while draining. Calls nothing else."""
    body = request.app.state.health_body
    if lifecycle.draining:
        return Response(body[True], status_code=503, media_type="application/json")
    return Response(body[False], media_type="application/json")


@ops_router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus metrics of this instance."""
    return Response(generate_latest(request.app.state.metrics.registry),
                    media_type=CONTENT_TYPE_LATEST)


def build_app(*, service: str, title: str, description: str, settings: ServiceSettings,
              routers: Sequence[APIRouter], lifespan: ServiceLifespan | None = None,
              simulate_latency: bool = False) -> FastAPI:
    """A shop service: its routers plus what every service has (health, metrics, request ids,
    JSON logs, the error shape, drain state).

    `simulate_latency`: the routers' answers wait SHOP_SIMULATED_LATENCY_MS. The dependency is
    added only when a latency is set: FastAPI solves dependencies on every request.
    """
    log = JsonLog(service, settings.instance, settings.release)
    service_metrics = ServiceMetrics(service, settings.release)
    lifecycle = Lifecycle(service_metrics.draining)

    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        if lifespan is None:
            log.event("startup", message=f"{service} ready on port {settings.port}")
            yield
        else:
            async with lifespan(app):
                log.event("startup", message=f"{service} ready on port {settings.port}")
                yield
        log.event("shutdown", message=f"{service} stopped")

    app = FastAPI(
        title=title,
        description=description,
        version=settings.release,
        lifespan=run,
        middleware=[Middleware(
            ShopMiddleware, service=service, instance=settings.instance,
            release=settings.release, log=log, metrics=service_metrics, lifecycle=lifecycle,
            access_log=settings.access_log,
        )],
        responses=error_responses(400, 404),
        # No 307 to the slash-less path: its Location is built from the client's Host header,
        # and every shop path is spelt without a trailing slash anyway (a 404 JSON instead).
        redirect_slashes=False,
    )
    install_error_handlers(app)
    app.state.settings = settings
    app.state.log = log
    app.state.metrics = service_metrics
    app.state.lifecycle = lifecycle
    app.state.health_body = {
        draining: Health(status="DRAINING" if draining else "OK", service=service,
                         release=settings.release, instance=settings.instance)
        .model_dump_json().encode()
        for draining in (False, True)
    }
    app.include_router(ops_router)
    latency = ([Depends(simulated_latency)]
               if simulate_latency and settings.simulated_latency_ms else [])
    for router in routers:
        app.include_router(router, dependencies=latency)
    return app
