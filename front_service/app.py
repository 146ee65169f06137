import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, FastAPI, Response

from front_service.apis import CouponApi, ProdApi
from front_service.metrics import FrontMetrics
from front_service.models import ProductDetail, UpstreamCoupon
from front_service.pricing import best_coupon_price
from front_service.settings import FrontSettings
from front_service.upstream import UpstreamClient, UpstreamError, open_sessions, warm_up
from shop_common.app import app_state, build_app
from shop_common.errors import ApiError, error_responses
from shop_common.prodno import ProdNo


class ProductDetailService:
    """Builds a product-detail answer: asks both upstream APIs, prices the coupons if asked to."""

    def __init__(self, prod_api: ProdApi, coupon_api: CouponApi, metrics: FrontMetrics,
                 coupon_price: bool) -> None:
        self.prod_api = prod_api
        self.coupon_api = coupon_api
        self.metrics = metrics
        self.coupon_price = coupon_price

    async def coupons_or_none(self, prod_no: int) -> list[UpstreamCoupon] | None:
        try:
            return await self.coupon_api.list_coupons_for_product(prod_no)
        except UpstreamError:
            return None  # already logged and counted by the upstream client

    async def for_product(self, prod_no: int) -> tuple[dict[str, object], bool]:
        """The answer's fields, and whether it lacks the coupons. Product and coupons are
        asked concurrently; a product error wins, and the coupon call is then cancelled."""
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
        if self.coupon_price:
            detail["couponPrice"] = best_coupon_price(product.price, coupons or ())
        if coupons is None:
            self.metrics.degraded.labels("coupons").inc()
        return detail, coupons is None


# Built in the lifespan around the upstream session. One dependency that carries both upstream
# APIs rather than one each: FastAPI solves every dependency on every request.
ProductDetailServiceDep = Annotated[ProductDetailService, Depends(app_state("product_details"))]

router = APIRouter(tags=["product detail"])

_STATUS_FOR_KIND = {"timeout": 504, "connect": 503, "connect_timeout": 503, "http_503": 503}


@router.get("/product-detail/{prodNo}", response_model=ProductDetail,
            responses=error_responses(400, 404, 502, 503, 504))
async def get_product_detail(prodNo: ProdNo, details: ProductDetailServiceDep) -> Response:
    """A product with the coupons that apply to it (and, if the front prices coupons, its best
    price)."""
    try:
        detail, degraded = await details.for_product(prodNo)
    except UpstreamError as exc:
        raise ApiError(_STATUS_FOR_KIND.get(exc.kind, 502), exc.message) from exc
    try:
        body = orjson.dumps(detail)
    except orjson.JSONEncodeError as exc:
        # Upstream JSON that validates but cannot be written back, e.g. an integer beyond
        # 64 bits in a passed-through field: bad upstream data, not a front bug.
        raise ApiError(502, "an upstream service sent a value out of range") from exc
    # Built from models validated on the way in; response_model documents the shape.
    return Response(body, media_type="application/json",
                    headers={"x-degraded": "coupons"} if degraded else None)


def create_app(settings: FrontSettings | None = None) -> FastAPI:
    settings = settings or FrontSettings()

    @asynccontextmanager
    async def upstream_session(app: FastAPI) -> AsyncIterator[None]:
        async with open_sessions(settings) as sessions:
            await warm_up(sessions.pooled, (settings.prod_api_url, settings.coupon_api_url),
                          settings.upstream_warmup_seconds, app.state.log)
            upstream = UpstreamClient(
                sessions, hedge_delay=settings.upstream_hedge_delay_seconds,
                attempt_timeout=settings.upstream_attempt_timeout_seconds,
                total_timeout=settings.upstream_timeout_seconds,
                retries=settings.upstream_retries,
                max_body_bytes=settings.max_upstream_body_bytes,
                log=app.state.log, metrics=app.state.front_metrics,
            )
            app.state.product_details = ProductDetailService(
                ProdApi(upstream, settings.prod_api_url),
                CouponApi(upstream, settings.coupon_api_url),
                app.state.front_metrics, coupon_price=settings.coupon_price)
            yield

    app = build_app(
        service="front", title="Shop front",
        description="Product detail pages: the product and its coupons, asked of the product "
                    "and coupon services concurrently.",
        settings=settings, routers=[router], lifespan=upstream_session,
    )
    app.state.front_metrics = FrontMetrics(app.state.metrics.registry)
    return app
