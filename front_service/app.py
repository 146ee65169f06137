import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, FastAPI, Response
from pydantic import BaseModel, Field

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
    open_session,
)
from shop_common.app import ServiceInfoDep, app_state, build_app
from shop_common.errors import ApiError, error_responses
from shop_common.prodno import ProdNo


class ProductDetail(BaseModel):
    prod: UpstreamProduct
    coupons: list[UpstreamCoupon]
    couponsAvailable: bool = Field(
        description="false when the coupon service could not be asked: coupons is then empty "
                    "and couponPrice is the plain price (the X-Degraded header says so too)")
    couponPrice: int | None = Field(
        default=None, description="release 2 only: the price after the best coupon")


# Built in the lifespan, with the upstream session they share.
ProdApiDep = Annotated[ProdApi, Depends(app_state("prod_api"))]
CouponApiDep = Annotated[CouponApi, Depends(app_state("coupon_api"))]
FrontMetricsDep = Annotated[FrontMetrics, Depends(app_state("front_metrics"))]


async def coupons_or_none(coupon_api: CouponApi, prod_no: int) -> list[UpstreamCoupon] | None:
    try:
        return await coupon_api.list_coupons_for_product(prod_no)
    except UpstreamError:
        return None  # already logged and counted by the upstream client


async def product_with_coupons(prod_no: int, prod_api: ProdApi, coupon_api: CouponApi,
                               ) -> tuple[UpstreamProduct, list[UpstreamCoupon] | None]:
    """The product and its coupons, asked concurrently; None for coupons the coupon service
    could not give. A product error wins: the coupon call is then cancelled."""
    coupons_call = asyncio.ensure_future(coupons_or_none(coupon_api, prod_no))
    try:
        product = await prod_api.get_product(prod_no)
    except BaseException:
        coupons_call.cancel()
        raise
    if product is None:
        coupons_call.cancel()
        raise ApiError(404, f"product {prod_no} does not exist")
    return product, await coupons_call


router = APIRouter(tags=["product detail"])

_STATUS_FOR_KIND = {"timeout": 504, "connect": 503, "connect_timeout": 503, "http_503": 503}


@router.get("/product-detail/{prodNo}", response_model=ProductDetail,
            responses=error_responses(400, 404, 502, 503, 504))
async def get_product_detail(prodNo: ProdNo, prod_api: ProdApiDep, coupon_api: CouponApiDep,
                             metrics: FrontMetricsDep, info: ServiceInfoDep) -> Response:
    """A product with the coupons that apply to it (and, in release 2, its best price)."""
    try:
        product, coupons = await product_with_coupons(prodNo, prod_api, coupon_api)
    except UpstreamError as exc:
        raise ApiError(_STATUS_FOR_KIND.get(exc.kind, 502), exc.message) from exc
    detail: dict[str, object] = {
        "prod": product.model_dump(),
        "coupons": [coupon.model_dump() for coupon in coupons or ()],
        "couponsAvailable": coupons is not None,
    }
    if info.release != "1":
        detail["couponPrice"] = best_coupon_price(product.price, coupons or ())
    if coupons is None:
        metrics.degraded.labels("coupons").inc()
    try:
        body = orjson.dumps(detail)
    except orjson.JSONEncodeError as exc:
        # Upstream JSON that validates but cannot be written back, e.g. an integer beyond
        # 64 bits in a passed-through field: bad upstream data, not a front bug.
        raise ApiError(502, "an upstream service sent a value out of range") from exc
    # Built from models validated on the way in; response_model documents the shape.
    return Response(body, media_type="application/json",
                    headers={"x-degraded": "coupons"} if coupons is None else None)


def create_app(settings: FrontSettings | None = None) -> FastAPI:
    settings = settings or FrontSettings()

    @asynccontextmanager
    async def upstream_session(app: FastAPI) -> AsyncIterator[None]:
        async with open_session(settings) as session:
            upstream = UpstreamClient(
                session, attempt_timeout=settings.upstream_attempt_timeout_seconds,
                total_timeout=settings.upstream_timeout_seconds,
                retries=settings.upstream_retries,
                max_body_bytes=settings.max_upstream_body_bytes,
                log=app.state.log, metrics=app.state.front_metrics,
            )
            app.state.prod_api = ProdApi(upstream, settings.prod_api_url)
            app.state.coupon_api = CouponApi(upstream, settings.coupon_api_url)
            yield

    app = build_app(
        service="front", title="Shop front",
        description="Product detail pages: the product and its coupons, asked of the product "
                    "and coupon services concurrently.",
        settings=settings, routers=[router], lifespan=upstream_session,
    )
    app.state.front_metrics = FrontMetrics(app.state.metrics.registry)
    return app
