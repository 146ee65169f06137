import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.middleware import Middleware
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from shop_common.errors import error_responses, exception_handlers, without_validation_errors
from shop_common.lifecycle import Lifecycle
from shop_common.logs import make_log
from shop_common.metrics import ServiceMetrics
from shop_common.middleware import ShopMiddleware
from shop_common.settings import ServiceSettings

ServiceLifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


class Health(BaseModel):
    status: Literal["OK", "DRAINING"]
    service: str
    release: str
    instance: str


class ServiceInfo(BaseModel):
    """Who answers: the fields /health reports besides its status."""

    service: str
    release: str
    instance: str


def app_state(name: str) -> Callable[[Request], Awaitable[Any]]:
    """A dependency that gives the app-scoped object kept as `app.state.<name>` (built once,
    at start-up or in the lifespan), e.g. `Annotated[Catalogue, Depends(app_state(...))]`."""
    async def dependency(request: Request) -> Any:  # async: no thread-pool hop per request
        return getattr(request.app.state, name)
    dependency.__name__ = f"get_{name}"
    return dependency


SettingsDep = Annotated[ServiceSettings, Depends(app_state("settings"))]
MetricsDep = Annotated[ServiceMetrics, Depends(app_state("metrics"))]
LifecycleDep = Annotated[Lifecycle, Depends(app_state("lifecycle"))]
ServiceInfoDep = Annotated[ServiceInfo, Depends(app_state("service_info"))]

ops_router = APIRouter(tags=["operations"])


@ops_router.get("/health", responses={503: {"model": Health,
                                            "description": "draining before shutdown"}})
async def health(lifecycle: LifecycleDep, info: ServiceInfoDep, response: Response) -> Health:
    """Liveness and readiness: 200 while serving, 503 while draining. Calls nothing else."""
    if lifecycle.draining:
        response.status_code = 503
    return Health(status="DRAINING" if lifecycle.draining else "OK", **info.model_dump())


@ops_router.get("/metrics", include_in_schema=False)
async def metrics(service_metrics: MetricsDep) -> Response:
    """Prometheus metrics of this instance."""
    return Response(generate_latest(service_metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def simulated_latency(settings: SettingsDep) -> None:
    """Waits SHOP_SIMULATED_LATENCY_MS before an API answer."""
    await asyncio.sleep(settings.simulated_latency_ms / 1000)


def build_app(*, service: str, title: str, description: str, settings: ServiceSettings,
              routers: Sequence[APIRouter], lifespan: ServiceLifespan | None = None,
              simulate_latency: bool = False, state: dict[str, Any] | None = None) -> FastAPI:
    """A shop service: its routers plus what every service has (health, metrics, request ids,
    JSON logs, the error shape, drain state).

    `state`: the service's own app-scoped objects (its data, its clients), which its
    dependencies read from `app.state`. `simulate_latency`: the routers' answers wait
    SHOP_SIMULATED_LATENCY_MS (a dependency added only when a latency is set).
    """
    log = make_log(service, settings.instance, settings.release, settings.log_level)
    service_metrics = ServiceMetrics(service, settings.release)
    lifecycle = Lifecycle(service_metrics.draining)

    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        if lifespan is None:
            log.info("startup", message=f"{service} ready on port {settings.port}")
            yield
        else:
            async with lifespan(app):
                log.info("startup", message=f"{service} ready on port {settings.port}")
                yield
        log.info("shutdown", message=f"{service} stopped")

    # FastAPI's documented self-hosting of the docs' assets, packaged: /docs and /redoc load
    # Swagger UI and ReDoc from the service itself (under /static-offline-docs), not from a
    # CDN, so they work on a machine or a swarm without internet access.
    app = FastAPIOffline(
        title=title,
        description=description,
        version=settings.release,
        lifespan=run,
        middleware=[Middleware(
            ShopMiddleware, service=service, instance=settings.instance,
            release=settings.release, log=log, metrics=service_metrics, lifecycle=lifecycle,
            access_log=settings.access_log)],
        exception_handlers=exception_handlers(),
        responses=error_responses(400, 404),
        # No 307 to the slash-less path: its Location is built from the client's Host header,
        # and every shop path is spelt without a trailing slash anyway (a 404 JSON instead).
        redirect_slashes=False,
        # The shop exports its own Prometheus metrics and JSON logs; FastAPI's OpenTelemetry
        # instrumentation, with no provider configured, would only ask on every request
        # whether one has appeared since.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    without_validation_errors(app)
    app.state.settings = settings
    app.state.log = log
    app.state.metrics = service_metrics
    app.state.lifecycle = lifecycle
    app.state.service_info = ServiceInfo(service=service, release=settings.release,
                                         instance=settings.instance)
    for name, value in (state or {}).items():
        setattr(app.state, name, value)
    latency = ([Depends(simulated_latency)]
               if simulate_latency and settings.simulated_latency_ms else [])
    for router in routers:
        app.include_router(router, dependencies=latency)
    # After the service's own routes: routes are matched in order, and /health is asked for
    # once a second or so, the API on every request.
    app.include_router(ops_router)
    return app
