from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Response

from coupon_service.coupons import Coupon, CouponBook
from coupon_service.settings import CouponSettings
from shop_common.app import app_state, build_app
from shop_common.errors import error_responses
from shop_common.prodno import ProdNo

CouponBookDep = Annotated[CouponBook, Depends(app_state("coupon_book"))]

router = APIRouter(prefix="/products", tags=["coupons"])


# The coupons were validated against Coupon when they were loaded and each product's list is
# kept serialised: the route sends those bytes, and response_model documents their shape.
@router.get("/{prodNo}/coupons", response_model=list[Coupon], responses=error_responses(400))
async def list_coupons_for_product(prodNo: ProdNo, book: CouponBookDep) -> Response:
    """The coupons that apply to a product (an empty list when none do)."""
    return Response(book.json_for_product(prodNo), media_type="application/json")


def create_app(settings: CouponSettings | None = None) -> FastAPI:
    settings = settings or CouponSettings()
    return build_app(
        service="coupon", title="Shop coupon service",
        description="Coupons by product: RATE (percent off) and PRICE (won off).",
        settings=settings, routers=[router], simulate_latency=True,
        state={"coupon_book": CouponBook.from_file(settings.coupons_file)},
    )
