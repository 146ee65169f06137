import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.middleware import Middleware
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from shop_common.errors import ApiError, api_error_response, error_responses, install_error_handlers
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


Endpoint = Callable[..., Awaitable[Response]]


class _DirectRoute:
    """A GET route whose endpoint is called without FastAPI's request machinery.

    Only for endpoints that take their path parameters as plain strings plus the Request,
    validate the strings themselves and return a ready Response: FastAPI would add nothing
    to such a call but its cost (middleware layers, routing, dependency solving), about a
    quarter of a whole request (bench/README.md).
    """

    def __init__(self, route: APIRoute) -> None:
        self.route = route
        self.endpoint: Endpoint = route.endpoint
        self.request_name: str | None = None
        for name, parameter in inspect.signature(self.endpoint).parameters.items():
            if parameter.annotation in (Request, "Request"):
                self.request_name = name
            elif name not in route.param_convertors or parameter.annotation not in (str, "str"):
                raise TypeError(f"{route.path}: a direct route takes str path parameters and "
                                f"the Request only, not {name}")
        if route.dependencies or route.dependant.dependencies:
            raise TypeError(f"{route.path}: a direct route cannot have dependencies")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        kwargs: dict[str, Any] = dict(scope["path_params"])
        if self.request_name is not None:
            kwargs[self.request_name] = request
        try:
            response = await self.endpoint(**kwargs)
        except ApiError as exc:
            response = api_error_response(exc)
        await response(scope, receive, send)


class ShopApp(FastAPI):
    """FastAPI, with the service's hot GET routes answered directly.

    A request that matches a direct route (by the route's own path regex: the requests
    FastAPI's router gives that endpoint, as long as no route registered before it matches
    the same paths, which tests/shop_common/test_direct_routes.py checks for each service by
    comparing both paths) goes through the shop middleware to the endpoint; everything else
    takes FastAPI's whole path. Both end in the same endpoint function, the same error bodies
    and the same headers, logs and metrics.
    """

    # Each direct route with its own shop middleware instance around it.
    direct_routes: list[tuple[_DirectRoute, ASGIApp]]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and not scope.get("root_path"):
            path = scope["path"]
            for direct, stack in self.direct_routes:
                match = direct.route.path_regex.match(path)
                if match is not None:
                    scope["app"] = self
                    scope["route"] = direct.route  # the metrics label, as the router sets it
                    scope["path_params"] = match.groupdict()
                    await stack(scope, receive, send)
                    return
        await super().__call__(scope, receive, send)


def build_app(*, service: str, title: str, description: str, settings: ServiceSettings,
              routers: Sequence[APIRouter], lifespan: ServiceLifespan | None = None,
              simulate_latency: bool = False, direct_paths: Sequence[str] = ()) -> FastAPI:
    """A shop service: its routers plus what every service has (health, metrics, request ids,
    JSON logs, the error shape, drain state).

    `simulate_latency`: the routers' answers wait SHOP_SIMULATED_LATENCY_MS. The dependency is
    added only when a latency is set: FastAPI solves dependencies on every request.
    `direct_paths`: GET routes (path templates) answered without FastAPI's request machinery
    (see ShopApp); not while a simulated latency is set, which needs the dependency.
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

    shop_middleware = {
        "service": service, "instance": settings.instance, "release": settings.release,
        "log": log, "metrics": service_metrics, "lifecycle": lifecycle,
        "access_log": settings.access_log,
    }
    app = ShopApp(
        title=title,
        description=description,
        version=settings.release,
        lifespan=run,
        middleware=[Middleware(ShopMiddleware, **shop_middleware)],
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
    directs = [] if latency else [_DirectRoute(_get_route(routers, path)) for path in direct_paths]
    app.direct_routes = [(direct, ShopMiddleware(direct, **shop_middleware))
                         for direct in directs]
    return app


def _get_route(routers: Sequence[APIRouter], path: str) -> APIRoute:
    """The GET route `path` of one of the routers (included at the root, so the same path)."""
    for router in routers:
        for route in router.routes:
            if isinstance(route, APIRoute) and route.path == path and route.methods == {"GET"}:
                return route
    raise LookupError(f"no GET route {path}")
