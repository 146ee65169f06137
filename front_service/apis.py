"""The front's two upstream APIs, as thin typed wrappers over the shared UpstreamClient."""

from typing import Any

from pydantic import TypeAdapter, ValidationError

from front_service.models import UpstreamCoupon, UpstreamProduct
from front_service.upstream import UpstreamClient, UpstreamError

_coupon_list = TypeAdapter(list[UpstreamCoupon])


class ProdApi:
    """The product service, as the front sees it."""

    def __init__(self, upstream: UpstreamClient, base_url: str) -> None:
        self.upstream = upstream
        self.base_url = base_url

    async def get_product(self, prod_no: int) -> UpstreamProduct | None:
        """The product, None when the product service says it does not exist."""
        return await self.upstream.get("prod", f"{self.base_url}/products/{prod_no}",
                                       _parse_product)


def _parse_product(status: int, body: bytes) -> UpstreamProduct | None:
    if status == 404:
        return None
    if status != 200:
        raise UpstreamError("prod", f"http_{status}", f"prod service answered {status}",
                            status=status)
    try:
        return UpstreamProduct.model_validate_json(body)
    except ValidationError as exc:
        raise UpstreamError("prod", "invalid_body",
                            f"prod service sent an invalid product: {_first_error(exc)}") from exc


class CouponApi:
    """The coupon service, as the front sees it."""

    def __init__(self, upstream: UpstreamClient, base_url: str) -> None:
        self.upstream = upstream
        self.base_url = base_url

    async def list_coupons_for_product(self, prod_no: int) -> list[UpstreamCoupon]:
        return await self.upstream.get(
            "coupon", f"{self.base_url}/products/{prod_no}/coupons", _parse_coupons)


def _parse_coupons(status: int, body: bytes) -> list[UpstreamCoupon]:
    if status != 200:
        raise UpstreamError("coupon", f"http_{status}", f"coupon service answered {status}",
                            status=status)
    try:
        return _coupon_list.validate_json(body)
    except ValidationError as exc:
        raise UpstreamError("coupon", "invalid_body",
                            f"coupon service sent invalid coupons: {_first_error(exc)}") from exc


def _first_error(exc: ValidationError) -> str:
    first: dict[str, Any] = dict(exc.errors()[0])
    where = ".".join(str(part) for part in first.get("loc", ())) or "body"
    return f"{where}: {first.get('msg')}"
