"""The front's two upstream APIs, as thin typed wrappers over the shared UpstreamClient."""

from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from front_service.models import UpstreamCoupon, UpstreamProduct
from front_service.upstream import UpstreamClient, UpstreamError

T = TypeVar("T")

_product = TypeAdapter(UpstreamProduct)
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
    return _parse_ok("prod", "an invalid product", _product, status, body)


class CouponApi:
    """The coupon service, as the front sees it."""

    def __init__(self, upstream: UpstreamClient, base_url: str) -> None:
        self.upstream = upstream
        self.base_url = base_url

    async def list_coupons_for_product(self, prod_no: int) -> list[UpstreamCoupon]:
        return await self.upstream.get(
            "coupon", f"{self.base_url}/products/{prod_no}/coupons", _parse_coupons)


def _parse_coupons(status: int, body: bytes) -> list[UpstreamCoupon]:
    return _parse_ok("coupon", "invalid coupons", _coupon_list, status, body)


def _parse_ok(upstream: str, what: str, model: TypeAdapter[T], status: int, body: bytes) -> T:
    """A 200's body validated as `model`; UpstreamError for any other status or a body that
    is not one (kind `http_<status>` or `invalid_body`)."""
    if status != 200:
        raise UpstreamError(upstream, f"http_{status}", f"{upstream} service answered {status}",
                            status=status)
    try:
        return model.validate_json(body)
    except ValidationError as exc:
        raise UpstreamError(upstream, "invalid_body",
                            f"{upstream} service sent {what}: {_first_error(exc)}") from exc


def _first_error(exc: ValidationError) -> str:
    first: dict[str, Any] = dict(exc.errors()[0])
    where = ".".join(str(part) for part in first.get("loc", ())) or "body"
    return f"{where}: {first.get('msg')}"
