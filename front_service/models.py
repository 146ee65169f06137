"""What the front reads from its upstreams and what it answers, as pydantic models."""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shop_common.prodno import MAX_PROD_NO

# Integers from upstream JSON stay within what every JSON reader holds exactly (2**53 - 1), so
# a validated value can always be written back out and read by the front's own clients.
JsonInt = Annotated[int, Field(ge=-(2**53 - 1), le=2**53 - 1)]


class UpstreamProduct(BaseModel):
    # Fields a newer product service adds pass through untouched (releases run side by side).
    model_config = ConfigDict(extra="allow")

    prodNo: int = Field(ge=1, le=MAX_PROD_NO)
    name: str
    category: str
    desc: str
    price: int = Field(ge=0, le=2**53 - 1, description="price in won")


class UpstreamCoupon(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: JsonInt
    type: str = Field(description="RATE (percent off) or PRICE (won off); others are ignored "
                                  "for pricing")
    prodNos: list[JsonInt]
    value: int = Field(ge=0, le=2**53 - 1)

    @model_validator(mode="after")
    def _rate_is_a_percentage(self) -> "UpstreamCoupon":
        if self.type == "RATE" and self.value > 100:
            raise ValueError("RATE coupon above 100 percent")
        return self


class ProductDetail(BaseModel):
    """The front's answer: the product page's data."""

    prod: UpstreamProduct
    coupons: list[UpstreamCoupon]
    couponsAvailable: bool = Field(
        description="false when the coupon service could not be asked: coupons is then empty "
                    "and couponPrice is the plain price (the X-Degraded header says so too)")
    couponPrice: int | None = Field(
        default=None,
        description="the price after the best coupon; only when the front computes coupon "
                    "prices (SHOP_COUPON_PRICE, on in release 2 images)")
