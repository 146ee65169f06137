import re
import time
import traceback
from random import getrandbits
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shop_common.context import access_fields_var, request_id_var
from shop_common.errors import error_body
from shop_common.lifecycle import Lifecycle
from shop_common.logs import Logger
from shop_common.metrics import ServiceMetrics

# A client-sent id is kept only if it is short and plain: it goes into headers, logs and
# upstream calls, so anything else is replaced rather than echoed.
_SAFE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}")
# Probes and scrapes are neither counted nor logged when they succeed: they would drown the
# traffic that matters (a healthcheck every few seconds per task, a scrape every 15 s).
_QUIET_PATHS = frozenset({"/health", "/metrics"})
_MAX_LOGGED_PATH = 512


def incoming_request_id(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"x-request-id":
            return value.decode("ascii") if _SAFE_REQUEST_ID.fullmatch(value) else None
    return None


def new_request_id() -> str:
    """32 random hex digits, like uuid4().hex: an id to correlate log lines by, not a secret,
    so from the process's seeded generator (no system call and no UUID object per request)."""
    return f"{getrandbits(128):032x}"


class ShopMiddleware:
    """Request id, instance/release headers, access log, metrics and drain signalling.

    Plain ASGI rather than BaseHTTPMiddleware: the request id context variable must reach the
    endpoint (and the front's upstream calls), and the per-request cost stays small.
    """

    def __init__(self, app: ASGIApp, *, service: str, instance: str, release: str,
                 log: Logger, metrics: ServiceMetrics, lifecycle: Lifecycle,
                 access_log: bool) -> None:
        self.app = app
        self.log = log
        self.metrics = metrics
        self.lifecycle = lifecycle
        self.access_log = access_log
        self.static_headers = [
            (b"x-service", service.encode()),
            (b"x-instance", instance.encode()),
            (b"x-release", release.encode()),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = incoming_request_id(scope["headers"]) or new_request_id()
        token = request_id_var.set(request_id)
        fields: dict[str, Any] = {}
        fields_token = access_fields_var.set(fields)
        extra_headers = [*self.static_headers, (b"x-request-id", request_id.encode())]
        status = 500
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                headers = [*message.get("headers", ()), *extra_headers]
                if self.lifecycle.draining:
                    # Make keep-alive clients reconnect, so their next request goes to a
                    # replica that is not about to stop.
                    headers.append((b"connection", b"close"))
                message = {**message, "headers": headers}
            await send(message)

        start = time.perf_counter()
        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:
            status = 500
            self.log.error("error", message=f"unhandled {type(exc).__name__} on {scope['method']}",
                           exception=traceback.format_exc(limit=20))
            if started:
                raise  # half a response is out: let the server drop the connection
            await send_with_headers({
                "type": "http.response.start", "status": 500,
                "headers": [(b"content-type", b"application/json")],
            })
            await send({"type": "http.response.body",
                        "body": error_body(500, "internal error; the request id is in the logs")})
        finally:
            seconds = time.perf_counter() - start
            self.metrics.in_flight.dec()
            path = scope["path"]
            if not (path in _QUIET_PATHS and status < 300):
                route = getattr(scope.get("route"), "path", None) or "unmatched"
                if route not in _QUIET_PATHS:
                    self.metrics.observe(route, scope["method"], status, seconds)
                if self.access_log:
                    client = scope.get("client")
                    self.log.info(
                        "request", method=scope["method"], path=path[:_MAX_LOGGED_PATH],
                        status=status, duration_ms=round(seconds * 1000, 2),
                        client=client[0] if client else None, **fields,
                    )
            access_fields_var.reset(fields_token)
            request_id_var.reset(token)
