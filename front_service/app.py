import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import orjson
from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from front_service.http1 import Http1Transport
from front_service.metrics import FrontMetrics
from front_service.pricing import best_coupon_price
from front_service.settings import FrontSettings
from front_service.upstream import (
    CouponApi,
    ProdApi,
    UpstreamClient,
    UpstreamCoupon,
    UpstreamError,
    UpstreamProduct,
)
from shop_common.app import build_app
from shop_common.errors import ApiError, error_responses
from shop_common.prodno import parse_prod_no


class ProductDetail(BaseModel):
    prod: UpstreamProduct
    coupons: list[UpstreamCoupon]
    couponsAvailable: bool = Field(
        description="false when the coupon service could not be asked: coupons is then empty "
                    "and couponPrice is the plain price (the X-Degraded header says so too)")
    couponPrice: int | None = Field(
        default=None, description="release 2 only: the price after the best coupon")


class Front:
    """What a product-detail request needs: both upstream APIs and the release's behaviour."""

    def __init__(self, prod_api: ProdApi, coupon_api: CouponApi, release: str,
                 metrics: FrontMetrics) -> None:
        self.prod_api = prod_api
        self.coupon_api = coupon_api
        self.computes_coupon_price = release != "1"
        self.metrics = metrics

    async def coupons_or_none(self, prod_no: int) -> list[UpstreamCoupon] | None:
        try:
            return await self.coupon_api.list_coupons_for_product(prod_no)
        except UpstreamError:
            return None  # already logged and counted by the upstream client

    async def product_detail(self, prod_no: int) -> tuple[dict[str, object], bool]:
        coupons_call = asyncio.ensure_future(self.coupons_or_none(prod_no))
        try:
            product = await self.prod_api.get_product(prod_no)
        except BaseException:
            coupons_call.cancel()
            raise
        if product is None:
            coupons_call.cancel()
            raise ApiError(404, f"product {prod_no} does not exist")
        coupons = await coupons_call
        detail: dict[str, object] = {
            "prod": product.model_dump(),
            "coupons": [coupon.model_dump() for coupon in coupons or ()],
            "couponsAvailable": coupons is not None,
        }
        if self.computes_coupon_price:
            detail["couponPrice"] = best_coupon_price(product.price, coupons or ())
        if coupons is None:
            self.metrics.degraded.labels("coupons").inc()
        return detail, coupons is None


router = APIRouter(tags=["product detail"])

_STATUS_FOR_KIND = {"timeout": 504, "connect": 503, "connect_timeout": 503, "http_503": 503}


@router.get("/product-detail/{prodNo}", response_model=ProductDetail,
            responses=error_responses(400, 404, 502, 503, 504))
async def get_product_detail(prodNo: str, request: Request) -> Response:
    """A product with the coupons that apply to it (and, in release 2, its best price)."""
    prod_no = parse_prod_no(prodNo)
    # Read from app state rather than through Depends: FastAPI solves a dependency on every
    # request, 2% of the front's whole cost (bench/README.md), and this one never varies.
    front: Front = request.app.state.front
    try:
        detail, degraded = await front.product_detail(prod_no)
    except UpstreamError as exc:
        raise ApiError(_STATUS_FOR_KIND.get(exc.kind, 502), exc.message) from exc
    try:
        body = orjson.dumps(detail)
    except orjson.JSONEncodeError as exc:
        # Upstream JSON that validates but cannot be written back, e.g. an integer beyond
        # 64 bits in a passed-through field: bad upstream data, not a front bug.
        raise ApiError(502, "an upstream service sent a value out of range") from exc
    return Response(body, media_type="application/json",
                    headers={"x-degraded": "coupons"} if degraded else None)


def create_app(settings: FrontSettings | None = None, *,
               transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    """The front app; `transport` replaces its HTTP/1.1 transport (tests inject one)."""
    settings = settings or FrontSettings()

    @asynccontextmanager
    async def upstream_client(app: FastAPI) -> AsyncIterator[None]:
        timeout = httpx.Timeout(settings.upstream_timeout_seconds,
                                connect=settings.upstream_connect_timeout_seconds)
        limits = httpx.Limits(max_connections=settings.upstream_max_connections,
                              max_keepalive_connections=settings.upstream_max_connections,
                              keepalive_expiry=settings.keepalive_expiry_seconds)
        async with httpx.AsyncClient(
            transport=transport or Http1Transport(
                max_connections=settings.upstream_max_connections,
                keepalive_expiry=settings.keepalive_expiry_seconds),
            timeout=timeout, limits=limits,
            headers={"user-agent": f"shop-front/{settings.release}"},
        ) as client:
            upstream = UpstreamClient(
                client, total_timeout=settings.upstream_timeout_seconds,
                retries=settings.upstream_retries,
                max_body_bytes=settings.max_upstream_body_bytes,
                log=app.state.log, metrics=front_metrics,
            )
            app.state.front = Front(ProdApi(upstream, settings.prod_api_url),
                                    CouponApi(upstream, settings.coupon_api_url),
                                    settings.release, front_metrics)
            yield

    app = build_app(
        service="front", title="Shop front",
        description="Product detail pages: the product and its coupons, asked of the product "
                    "and coupon services concurrently.",
        settings=settings, routers=[router], lifespan=upstream_client,
        direct_paths=["/product-detail/{prodNo}"],
    )
    front_metrics = FrontMetrics(app.state.metrics.registry)
    return app
