from fastapi import APIRouter, FastAPI, Request
from starlette.responses import Response

from coupon_service.coupons import Coupon, CouponBook
from coupon_service.settings import CouponSettings
from shop_common.app import build_app
from shop_common.errors import error_responses
from shop_common.prodno import parse_prod_no

router = APIRouter(prefix="/products", tags=["coupons"])


@router.get("/{prodNo}/coupons", response_model=list[Coupon], responses=error_responses(400))
async def list_coupons_for_product(prodNo: str, request: Request) -> Response:
    """The coupons that apply to a product (an empty list when none do)."""
    book: CouponBook = request.app.state.coupon_book  # app state, not Depends: see prod_service
    return Response(book.json_for_product(parse_prod_no(prodNo)), media_type="application/json")


def create_app(settings: CouponSettings | None = None) -> FastAPI:
    settings = settings or CouponSettings()
    book = CouponBook.from_file(settings.coupons_file)
    app = build_app(
        service="coupon", title="Shop coupon service",
        description="Coupons by product: RATE (percent off) and PRICE (won off).",
        settings=settings, routers=[router], simulate_latency=True,
        direct_paths=["/products/{prodNo}/coupons"],
    )
    app.state.coupon_book = book
    return app
