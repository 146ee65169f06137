from collections.abc import Iterable

from front_service.models import UpstreamCoupon


def coupon_price(price: int, coupon: UpstreamCoupon) -> int | None:
    """The price after one coupon, or None for a coupon type this release does not know."""
    if coupon.type == "RATE":
        return price * (100 - coupon.value) // 100
    if coupon.type == "PRICE":
        return max(price - coupon.value, 0)
    return None


def best_coupon_price(price: int, coupons: Iterable[UpstreamCoupon]) -> int:
    """The lowest price any one applicable coupon gives; the price itself without coupons."""
    prices = (coupon_price(price, coupon) for coupon in coupons)
    return min((p for p in prices if p is not None), default=price)
